//! Fixture and golden readers shared by the tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("conformance/ has a parent").to_path_buf()
}

/// Every tiny model the goldens cover: HF directories and GGUF files, with the directory that
/// holds their goldens.
pub fn fixture_models() -> Vec<(PathBuf, PathBuf)> {
    let mut out = Vec::new();
    for root in ["fixtures/models", "fixtures/gguf"] {
        let Ok(rd) = std::fs::read_dir(repo().join(root)) else { continue };
        let mut dirs: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect();
        dirs.sort();
        for d in dirs {
            if !d.join("golden.json").is_file() {
                continue;
            }
            if d.join("config.json").is_file() {
                out.push((d.clone(), d.clone()));
            }
            let mut ggufs: Vec<PathBuf> = std::fs::read_dir(&d)
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
                .collect();
            ggufs.sort();
            out.extend(ggufs.into_iter().map(|g| (g, d.clone())));
        }
    }
    out
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
    t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
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
