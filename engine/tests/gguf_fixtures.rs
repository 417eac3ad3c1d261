//! The tiny Llama GGUF fixtures (fixtures/gen/gguf_fixtures.py): F32, F16 and BF16 files of one
//! model load, and every tensor equals, bit for bit, the Hugging Face safetensors it was written
//! from (after the loader undoes llama.cpp's Q/K permutation). Their SentencePiece tokenizer
//! reproduces transformers' ids and decodes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use wavefront::config::names;
use wavefront::{Arch, DType, HostTensor};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/gguf")
}

fn f32_bits(dtype: DType, bytes: &[u8]) -> Vec<u32> {
    match dtype {
        DType::F32 => bytes
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        DType::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32().to_bits())
            .collect(),
        DType::BF16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32().to_bits())
            .collect(),
        d => panic!("unexpected dtype {d}"),
    }
}

/// name → (shape, f32 bit patterns) from the HF directory's bf16 safetensors.
fn hf_tensors() -> BTreeMap<String, (Vec<usize>, Vec<u32>)> {
    let bytes = std::fs::read(fixtures().join("tiny_llama/model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            assert_eq!(view.dtype(), safetensors::Dtype::BF16, "{name}");
            let bits = f32_bits(DType::BF16, view.data());
            (name, (view.shape().to_vec(), bits))
        })
        .collect()
}

fn hf_config() -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join("tiny_llama/config.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn check_file(file: &str, matrix_dtype: DType) {
    let path = fixtures().join(file);
    let m = wavefront::load(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
    let hf = hf_tensors();
    let cfg = hf_config();
    let c = &m.config;
    let n = |k: &str| cfg[k].as_u64().unwrap() as usize;
    assert_eq!(c.arch, Arch::Llama);
    assert_eq!(c.vocab_size, n("vocab_size"));
    assert_eq!(c.hidden_size, n("hidden_size"));
    assert_eq!(c.intermediate_size, n("intermediate_size"));
    assert_eq!(c.n_layers, n("num_hidden_layers"));
    assert_eq!(c.n_heads, n("num_attention_heads"));
    assert_eq!(c.n_kv_heads, n("num_key_value_heads"));
    assert_eq!(c.head_dim, n("head_dim"));
    assert_eq!(c.max_position_embeddings, n("max_position_embeddings"));
    assert_eq!(c.rms_norm_eps, cfg["rms_norm_eps"].as_f64().unwrap() as f32);
    let theta = cfg["rope_parameters"]["rope_theta"].as_f64().unwrap();
    assert_eq!(c.rope_theta, theta as f32);
    assert_eq!(
        c.tie_word_embeddings,
        cfg["tie_word_embeddings"].as_bool().unwrap()
    );
    assert_eq!(c.bos_token_id, Some(n("bos_token_id") as u32));
    assert_eq!(c.eos_token_ids, vec![n("eos_token_id") as u32]);

    assert_eq!(
        m.tensors.keys().collect::<Vec<_>>(),
        hf.keys().collect::<Vec<_>>(),
        "{file}: tensor names"
    );
    for (name, t) in &m.tensors {
        let HostTensor { dtype, shape, .. } = t;
        let want_dtype = if shape.len() == 1 {
            DType::F32
        } else {
            matrix_dtype
        };
        assert_eq!(*dtype, want_dtype, "{file}: {name}");
        let (hf_shape, hf_bits) = &hf[name];
        assert_eq!(shape, hf_shape, "{file}: {name}");
        let bits = f32_bits(*dtype, t.bytes());
        let differ = bits.iter().zip(hf_bits).filter(|(a, b)| a != b).count();
        assert_eq!(
            differ,
            0,
            "{file}: {name}: {differ} of {} values differ",
            bits.len()
        );
    }
    // Q and K were stored permuted: the file's raw rows are not the model's.
    let q_name = names::layer(0, names::WQ);
    let gguf = wavefront::formats::gguf::read(&path).unwrap();
    let raw = gguf.tensor_bytes(gguf.tensor_info("blk.0.attn_q.weight").unwrap());
    assert_ne!(
        f32_bits(matrix_dtype, raw),
        hf[&q_name].1,
        "{file}: Q rows not permuted in file"
    );
}

#[test]
fn f32_gguf_equals_hf_weights() {
    check_file("model.f32.gguf", DType::F32);
}

#[test]
fn f16_gguf_equals_hf_weights() {
    check_file("model.f16.gguf", DType::F16);
}

#[test]
fn bf16_gguf_equals_hf_weights() {
    check_file("model.bf16.gguf", DType::BF16);
}

#[derive(serde::Deserialize)]
struct TokenizerGoldens {
    gguf_file: String,
    cases: Vec<TokenizerCase>,
}

#[derive(serde::Deserialize)]
struct TokenizerCase {
    text: String,
    ids: Vec<u32>,
    decoded: String,
    decoded_skip_special: String,
}

#[test]
fn sentencepiece_tokenizer_matches_transformers() {
    let text = std::fs::read_to_string(fixtures().join("tokenizer_goldens.json")).unwrap();
    let goldens: TokenizerGoldens = serde_json::from_str(&text).unwrap();
    let m = wavefront::load(&fixtures().join(&goldens.gguf_file)).unwrap();
    let tok = m
        .tokenizer
        .as_ref()
        .expect("the fixture carries a tokenizer");
    assert!(goldens.cases.len() >= 15);
    let mut failures = Vec::new();
    for case in &goldens.cases {
        let ids = tok.encode(&case.text, true).unwrap();
        if ids != case.ids {
            failures.push(format!(
                "encode {:?}: {:?} != {:?}",
                case.text, ids, case.ids
            ));
        }
        let decoded = tok.decode(&case.ids, false).unwrap();
        if decoded != case.decoded {
            failures.push(format!(
                "decode {:?}: {:?} != {:?}",
                case.text, decoded, case.decoded
            ));
        }
        let skipped = tok.decode(&case.ids, true).unwrap();
        if skipped != case.decoded_skip_special {
            failures.push(format!(
                "decode (skip special) {:?}: {:?} != {:?}",
                case.text, skipped, case.decoded_skip_special
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(tok.special.bos_token.as_deref(), Some("<s>"));
    assert!(tok.chat_template.is_some());
}

#[derive(serde::Deserialize)]
struct ByteLevelGoldens {
    files: BTreeMap<String, Vec<TokenizerCase>>,
}

/// Byte-level BPE (`tokenizer.ggml.model = gpt2`) with the Llama 3 and Qwen2 split regexes,
/// control, user-defined, mislabeled and respelled tokens, BOS and EOS post-processing.
#[test]
fn byte_level_tokenizers_match_transformers() {
    let text =
        std::fs::read_to_string(fixtures().join("byte_level_tokenizer_goldens.json")).unwrap();
    let goldens: ByteLevelGoldens = serde_json::from_str(&text).unwrap();
    assert_eq!(goldens.files.len(), 2);
    let mut failures = Vec::new();
    for (file, cases) in &goldens.files {
        let gguf = wavefront::formats::gguf::read(&fixtures().join(file)).unwrap();
        let tok = wavefront::tokenizer::gguf::from_gguf(&gguf)
            .unwrap()
            .unwrap();
        for case in cases {
            let ids = tok.encode(&case.text, true).unwrap();
            if ids != case.ids {
                failures.push(format!(
                    "{file}: encode {:?}: {:?} != {:?}",
                    case.text, ids, case.ids
                ));
            }
            for (skip, want) in [(false, &case.decoded), (true, &case.decoded_skip_special)] {
                let decoded = tok.decode(&case.ids, skip).unwrap();
                if &decoded != want {
                    failures.push(format!(
                        "{file}: decode({skip}) {:?}: {decoded:?} != {want:?}",
                        case.text
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
