//! A tiny random Llama in a Hugging Face directory, written with the `safetensors` crate, and
//! helpers to break it.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};
use serde_json::{json, Value};

pub fn config_json() -> Value {
    json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": 64,
        "hidden_size": 16,
        "intermediate_size": 40,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-5,
        "max_position_embeddings": 128,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": false,
        "bos_token_id": 1,
        "eos_token_id": 2,
    })
}

/// Tensor names and shapes of the config above (hand-written, independent of the engine's
/// `expected_tensors`).
pub fn tensor_shapes() -> Vec<(String, Vec<usize>)> {
    let (v, h, i, q, kv) = (64, 16, 40, 16, 8);
    let mut t = vec![("model.embed_tokens.weight".to_string(), vec![v, h])];
    for l in 0..2 {
        let p = |s: &str| format!("model.layers.{l}.{s}");
        t.push((p("input_layernorm.weight"), vec![h]));
        t.push((p("self_attn.q_proj.weight"), vec![q, h]));
        t.push((p("self_attn.k_proj.weight"), vec![kv, h]));
        t.push((p("self_attn.v_proj.weight"), vec![kv, h]));
        t.push((p("self_attn.o_proj.weight"), vec![h, q]));
        t.push((p("post_attention_layernorm.weight"), vec![h]));
        t.push((p("mlp.gate_proj.weight"), vec![i, h]));
        t.push((p("mlp.up_proj.weight"), vec![i, h]));
        t.push((p("mlp.down_proj.weight"), vec![h, i]));
    }
    t.push(("model.norm.weight".to_string(), vec![h]));
    t.push(("lm_head.weight".to_string(), vec![v, h]));
    t
}

/// Deterministic non-zero values in (-1, 1) \ {0}.
pub fn random_values(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = ((s >> 40) as f32 + 0.5) / (1u64 << 24) as f32; // (0, 1)
            2.0 * u - 1.0 // never 0: u is never exactly 0.5
        })
        .collect()
}

/// One tensor to write: name, dtype, shape, raw little-endian bytes.
#[derive(Clone)]
pub struct RawTensor {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

/// The model's tensors, all F32 with random values.
pub fn tensors() -> Vec<RawTensor> {
    tensor_shapes()
        .into_iter()
        .enumerate()
        .map(|(k, (name, shape))| {
            let n = shape.iter().product();
            let data = random_values(k as u64 + 1, n)
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect();
            RawTensor {
                name,
                dtype: Dtype::F32,
                shape,
                data,
            }
        })
        .collect()
}

pub fn write_safetensors(path: &Path, tensors: &[RawTensor]) {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                TensorView::new(t.dtype, t.shape.clone(), &t.data).unwrap(),
            )
        })
        .collect();
    safetensors::tensor::serialize_to_file(views, &None, path).unwrap();
}

pub fn write_config(dir: &Path, config: &Value) {
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_vec_pretty(config).unwrap(),
    )
    .unwrap();
}

/// A complete model directory: config.json + model.safetensors.
pub fn write_model(dir: &Path) -> PathBuf {
    write_config(dir, &config_json());
    let path = dir.join("model.safetensors");
    write_safetensors(&path, &tensors());
    path
}

pub fn model_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let st = write_model(dir.path());
    (dir, st)
}

/// Splits a safetensors file into (header JSON, data section).
pub fn split(bytes: &[u8]) -> (Value, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    (header, bytes[8 + n..].to_vec())
}

/// Reassembles a safetensors file from a header and a data section.
pub fn join(header: &Value, data: &[u8]) -> Vec<u8> {
    let h = serde_json::to_vec(header).unwrap();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out
}

/// Rewrites the header of the safetensors file at `path` with `edit`.
pub fn edit_header(path: &Path, edit: impl FnOnce(&mut BTreeMap<String, Value>)) {
    let (header, data) = split(&std::fs::read(path).unwrap());
    let mut map: BTreeMap<String, Value> = serde_json::from_value(header).unwrap();
    edit(&mut map);
    std::fs::write(path, join(&serde_json::to_value(map).unwrap(), &data)).unwrap();
}
