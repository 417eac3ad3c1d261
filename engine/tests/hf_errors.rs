//! Bad input for the Hugging Face directory loader: every broken file is a typed error that
//! names the file (and the tensor or field), never a panic. The model is a tiny random Llama
//! that the tests write themselves (`common/tiny_hf.rs`).

mod common;

use std::path::Path;

use common::tiny_hf::*;
use proptest::prelude::*;
use safetensors::tensor::Dtype;
use serde_json::json;
use wavefront::formats::{hf, Format};
use wavefront::tensor::Storage;
use wavefront::Error;

fn load(dir: &Path) -> wavefront::Result<wavefront::LoadedModel> {
    wavefront::load(dir)
}

fn assert_names(err: &Error, what: &str) {
    assert!(
        err.to_string().contains(what),
        "`{err}` does not name {what}"
    );
}

#[test]
fn valid_model_loads_zero_copy_with_its_values() {
    let (dir, _) = model_dir();
    let m = load(dir.path()).unwrap();
    assert_eq!(m.format, Format::HuggingFace);
    assert_eq!(
        (m.config.n_layers, m.config.n_heads, m.config.n_kv_heads),
        (2, 4, 2)
    );
    assert_eq!(m.tensors.len(), tensor_shapes().len());
    assert!(m.tokenizer.is_none());
    for (k, (name, shape)) in tensor_shapes().into_iter().enumerate() {
        let t = m.tensor(&name).unwrap();
        assert_eq!(t.shape, shape, "{name}");
        assert!(matches!(t.storage, Storage::Mapped { .. }), "{name}");
        let n = shape.iter().product();
        assert_eq!(
            t.to_f32().unwrap(),
            random_values(k as u64 + 1, n),
            "{name}"
        );
    }
}

#[test]
fn truncated_safetensors_at_several_cut_points() {
    let (dir, st) = model_dir();
    let full = std::fs::read(&st).unwrap();
    let header_end = 8 + u64::from_le_bytes(full[..8].try_into().unwrap()) as usize;
    for cut in [
        0,
        3,
        7,
        8,
        header_end / 2,
        header_end - 1,
        header_end,
        header_end + 5,
        full.len() - 1,
    ] {
        std::fs::write(&st, &full[..cut]).unwrap();
        let err = load(dir.path()).unwrap_err();
        assert!(matches!(err, Error::Truncated { .. }), "cut {cut}: {err}");
        assert_names(&err, "model.safetensors");
    }
    // Past the header, the error names the first tensor whose data is cut off.
    std::fs::write(&st, &full[..full.len() - 1]).unwrap();
    let err = load(dir.path()).unwrap_err();
    assert!(err.to_string().contains("tensor `"), "{err}");
}

#[test]
fn header_length_beyond_file() {
    let (dir, st) = model_dir();
    let mut bytes = std::fs::read(&st).unwrap();
    let len = bytes.len() as u64;
    bytes[..8].copy_from_slice(&(len).to_le_bytes());
    std::fs::write(&st, &bytes).unwrap();
    let err = load(dir.path()).unwrap_err();
    assert!(
        matches!(err, Error::Truncated { needed, .. } if needed == len + 8),
        "{err}"
    );
    assert_names(&err, "model.safetensors");

    bytes[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&st, &bytes).unwrap();
    let err = load(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert_names(&err, "model.safetensors");
}

#[test]
fn malformed_header_json() {
    let (dir, st) = model_dir();
    let bytes = std::fs::read(&st).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    for bad in [&b"{\"model.norm.weight\": "[..], b"[1, 2, 3]", b"\xff\xfe"] {
        let mut b = bytes.clone();
        b[8..8 + n].fill(b' ');
        b[8..8 + bad.len()].copy_from_slice(bad);
        std::fs::write(&st, &b).unwrap();
        let err = load(dir.path()).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        assert_names(&err, "model.safetensors");
    }
    // Structurally wrong entries name the tensor.
    std::fs::write(&st, &bytes).unwrap();
    edit_header(&st, |h| {
        h.insert(
            "model.norm.weight".into(),
            json!({"dtype": "F32", "shape": "16"}),
        );
    });
    let err = load(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert_names(&err, "model.norm.weight");
}

#[test]
fn unsupported_dtype_names_the_tensor() {
    for dtype in [Dtype::I64, Dtype::F64, Dtype::U8, Dtype::F8_E4M3] {
        let dir = tempfile::tempdir().unwrap();
        write_config(dir.path(), &config_json());
        let mut ts = tensors();
        let t = ts
            .iter_mut()
            .find(|t| t.name == "model.layers.1.mlp.up_proj.weight")
            .unwrap();
        let n: usize = t.shape.iter().product();
        t.dtype = dtype;
        t.data = vec![1u8; n * dtype.size()];
        write_safetensors(&dir.path().join("model.safetensors"), &ts);
        let err = load(dir.path()).unwrap_err();
        match &err {
            Error::UnsupportedDtype {
                tensor, dtype: d, ..
            } => {
                assert_eq!(tensor, "model.layers.1.mlp.up_proj.weight");
                assert_eq!(d, &format!("{dtype:?}"));
            }
            _ => panic!("{dtype:?}: {err}"),
        }
        assert_names(&err, "model.safetensors");
    }
}

#[test]
fn unknown_dtype_string_names_the_tensor() {
    let (dir, st) = model_dir();
    edit_header(&st, |h| {
        h.get_mut("model.layers.0.self_attn.k_proj.weight").unwrap()["dtype"] = json!("Q4_WHAT");
    });
    let err = load(dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::UnsupportedDtype { tensor, dtype, .. }
            if tensor == "model.layers.0.self_attn.k_proj.weight" && dtype == "Q4_WHAT"),
        "{err}"
    );
    assert_names(&err, "model.safetensors");
}

#[test]
fn unneeded_tensor_of_unsupported_dtype_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &config_json());
    let mut ts = tensors();
    ts.push(RawTensor {
        name: "model.position_ids".into(),
        dtype: Dtype::I64,
        shape: vec![4],
        data: vec![0; 32],
    });
    write_safetensors(&dir.path().join("model.safetensors"), &ts);
    let m = load(dir.path()).unwrap();
    assert!(!m.tensors.contains_key("model.position_ids"));
}

#[test]
fn data_offsets_out_of_range() {
    let (dir, st) = model_dir();
    let data_len = split(&std::fs::read(&st).unwrap()).1.len() as u64;
    // End past the data section.
    edit_header(&st, |h| {
        h.get_mut("model.norm.weight").unwrap()["data_offsets"] =
            json!([data_len - 32, data_len + 32]);
    });
    let err = load(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Truncated { .. }), "{err}");
    assert_names(&err, "model.norm.weight");
    assert_names(&err, "model.safetensors");

    // Begin after end, and offsets beyond u64 arithmetic.
    for offsets in [json!([64, 0]), json!([0, u64::MAX])] {
        let (dir, st) = model_dir();
        edit_header(&st, |h| {
            h.get_mut("model.norm.weight").unwrap()["data_offsets"] = offsets;
        });
        let err = load(dir.path()).unwrap_err();
        assert!(
            matches!(err, Error::Corrupt { .. } | Error::Truncated { .. }),
            "{err}"
        );
        assert_names(&err, "model.norm.weight");
    }

    // In range, but not the size the shape needs.
    let (dir, st) = model_dir();
    edit_header(&st, |h| {
        h.get_mut("model.norm.weight").unwrap()["data_offsets"] = json!([0, 60]);
    });
    let err = load(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert_names(&err, "model.norm.weight");
}

#[test]
fn missing_tensor_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &config_json());
    let ts: Vec<_> = tensors()
        .into_iter()
        .filter(|t| t.name != "model.layers.1.self_attn.v_proj.weight")
        .collect();
    write_safetensors(&dir.path().join("model.safetensors"), &ts);
    let err = load(dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::WeightsMismatch { tensor, found: None, .. } if tensor == "model.layers.1.self_attn.v_proj.weight"),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "{}: no tensor `model.layers.1.self_attn.v_proj.weight`; {} implies [8, 16]",
            dir.path().join("model.safetensors").display(),
            dir.path().join("config.json").display()
        )
    );
}

#[test]
fn tied_model_needs_no_lm_head() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config_json();
    cfg["tie_word_embeddings"] = json!(true);
    write_config(dir.path(), &cfg);
    let ts: Vec<_> = tensors()
        .into_iter()
        .filter(|t| t.name != "lm_head.weight")
        .collect();
    write_safetensors(&dir.path().join("model.safetensors"), &ts);
    let m = load(dir.path()).unwrap();
    assert!(m.config.tie_word_embeddings);
    assert!(!m.tensors.contains_key("lm_head.weight"));
    // ... while an untied one does.
    cfg["tie_word_embeddings"] = json!(false);
    write_config(dir.path(), &cfg);
    let err = load(dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::WeightsMismatch { tensor, found: None, .. } if tensor == "lm_head.weight"),
        "{err}"
    );
}

#[test]
fn shape_disagreeing_with_config() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &config_json());
    let mut ts = tensors();
    let t = ts
        .iter_mut()
        .find(|t| t.name == "model.layers.0.mlp.down_proj.weight")
        .unwrap();
    t.shape = vec![40, 16]; // transposed: the config implies (16, 40)
    write_safetensors(&dir.path().join("model.safetensors"), &ts);
    let err = load(dir.path()).unwrap_err();
    match &err {
        Error::WeightsMismatch {
            tensor,
            expected,
            found: Some(found),
            ..
        } => {
            assert_eq!(tensor, "model.layers.0.mlp.down_proj.weight");
            assert_eq!(
                (expected.as_slice(), found.as_slice()),
                (&[16, 40][..], &[40, 16][..])
            );
        }
        _ => panic!("{err}"),
    }
    // Both files are named: either may be the broken one.
    assert_eq!(
        err.to_string(),
        format!(
            "{}: tensor `model.layers.0.mlp.down_proj.weight` has shape [40, 16]; {} implies [16, 40]",
            dir.path().join("model.safetensors").display(),
            dir.path().join("config.json").display()
        )
    );
}

#[test]
fn config_missing_each_required_field() {
    assert_eq!(hf::REQUIRED_FIELDS.len(), 5);
    for field in hf::REQUIRED_FIELDS {
        let (dir, _) = model_dir();
        let mut cfg = config_json();
        cfg.as_object_mut().unwrap().remove(field);
        write_config(dir.path(), &cfg);
        let err = load(dir.path()).unwrap_err();
        assert!(
            matches!(&err, Error::Config { field: f, .. } if f == field),
            "{field}: {err}"
        );
        assert_names(&err, "config.json");
        assert_names(&err, field);
    }
}

#[test]
fn config_field_of_wrong_type() {
    for (field, value) in [
        ("hidden_size", json!("16")),
        ("num_attention_heads", json!(-4)),
        ("rms_norm_eps", json!("small")),
        ("tie_word_embeddings", json!(1)),
        ("eos_token_id", json!("two")),
        ("rope_scaling", json!("llama3")),
    ] {
        let (dir, _) = model_dir();
        let mut cfg = config_json();
        cfg[field] = value.clone();
        write_config(dir.path(), &cfg);
        let err = load(dir.path()).unwrap_err();
        assert!(
            matches!(&err, Error::Config { field: f, .. } if f == field),
            "{field}: {err}"
        );
        assert_names(&err, "config.json");
        assert_names(&err, &value.to_string());
    }
}

#[test]
fn config_not_json() {
    let (dir, _) = model_dir();
    std::fs::write(dir.path().join("config.json"), "{\"vocab_size\": 64,").unwrap();
    let err = load(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert_names(&err, "config.json");

    std::fs::remove_file(dir.path().join("config.json")).unwrap();
    let err = load(dir.path()).unwrap_err();
    assert!(matches!(err, Error::NotAModel { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "{} is neither a GGUF file nor a Hugging Face model directory (no config.json)",
            dir.path().display()
        )
    );
    // hf::load itself, told the directory is a Hugging Face one, names the missing file.
    let err = hf::load(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert_names(&err, "config.json");
}

#[test]
fn no_weights_file() {
    let (dir, st) = model_dir();
    std::fs::remove_file(st).unwrap();
    let err = load(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert_names(&err, "model.safetensors");
}

/// Splits the model over two shards with an index, returns the directory.
fn sharded_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &config_json());
    let ts = tensors();
    let (a, b) = ts.split_at(ts.len() / 2);
    let mut weight_map = serde_json::Map::new();
    for (file, part) in [
        ("model-00001-of-00002.safetensors", a),
        ("model-00002-of-00002.safetensors", b),
    ] {
        write_safetensors(&dir.path().join(file), part);
        for t in part {
            weight_map.insert(t.name.clone(), json!(file));
        }
    }
    let index = json!({"metadata": {"total_size": 0}, "weight_map": weight_map});
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    dir
}

#[test]
fn sharded_model_equals_unsharded() {
    let sharded = sharded_dir();
    let (single, _) = model_dir();
    let (a, b) = (load(sharded.path()).unwrap(), load(single.path()).unwrap());
    assert_eq!(a.config, b.config);
    assert_eq!(
        a.tensors.keys().collect::<Vec<_>>(),
        b.tensors.keys().collect::<Vec<_>>()
    );
    for (name, t) in &a.tensors {
        let u = &b.tensors[name];
        assert_eq!((t.dtype, &t.shape), (u.dtype, &u.shape), "{name}");
        assert_eq!(t.bytes(), u.bytes(), "{name}");
    }
}

#[test]
fn index_naming_a_missing_shard() {
    let dir = sharded_dir();
    let shard = dir.path().join("model-00002-of-00002.safetensors");
    std::fs::remove_file(&shard).unwrap();
    let err = load(dir.path()).unwrap_err();
    assert!(
        matches!(err, Error::Io { ref path, .. } if *path == shard),
        "{err}"
    );
    assert_names(&err, "model-00002-of-00002.safetensors");
}

#[test]
fn index_shard_outside_the_directory() {
    let dir = sharded_dir();
    let index = json!({"weight_map": {"model.norm.weight": "../elsewhere.safetensors"}});
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    let err = load(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert_names(&err, "model.safetensors.index.json");
}

#[test]
fn tensor_missing_from_its_shard() {
    let dir = sharded_dir();
    let shard = dir.path().join("model-00001-of-00002.safetensors");
    let ts = tensors();
    let first_half: Vec<_> = ts[..ts.len() / 2]
        .iter()
        .filter(|t| t.name != "model.layers.0.self_attn.o_proj.weight")
        .cloned()
        .collect();
    write_safetensors(&shard, &first_half);
    let err = load(dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::MissingTensor { path, tensor }
            if *path == shard && tensor == "model.layers.0.self_attn.o_proj.weight"),
        "{err}"
    );
    assert_names(&err, "model-00001-of-00002.safetensors");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Flipping bytes anywhere in a valid file yields Ok or a typed error, never a panic.
    #[test]
    fn flipped_bytes_never_panic(flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..8)) {
        let (dir, st) = model_dir();
        let mut bytes = std::fs::read(&st).unwrap();
        // Bias half the flips into the header, where the structure is.
        let header_end = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        for (k, (at, xor)) in flips.iter().enumerate() {
            let i = if k % 2 == 0 { at.index(header_end) } else { at.index(bytes.len()) };
            bytes[i] ^= xor;
        }
        std::fs::write(&st, &bytes).unwrap();
        match load(dir.path()) {
            Ok(m) => {
                for t in m.tensors.values() {
                    prop_assert!(t.to_f32().is_ok());
                }
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}

#[test]
fn qwen2_loads_with_qkv_biases_and_names_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config_json();
    cfg["model_type"] = json!("qwen2");
    cfg["architectures"] = json!(["Qwen2ForCausalLM"]);
    write_config(dir.path(), &cfg);
    let mut ts = tensors();
    for l in 0..2 {
        for (p, n) in [("q", 16), ("k", 8), ("v", 8)] {
            ts.push(RawTensor {
                name: format!("model.layers.{l}.self_attn.{p}_proj.bias"),
                dtype: Dtype::F32,
                shape: vec![n],
                data: random_values(100 + l, n)
                    .iter()
                    .flat_map(|x| x.to_le_bytes())
                    .collect(),
            });
        }
    }
    let path = dir.path().join("model.safetensors");
    write_safetensors(&path, &ts);
    let m = load(dir.path()).unwrap();
    assert!(m.config.attention_bias);
    assert_eq!(
        m.tensor("model.layers.1.self_attn.k_proj.bias")
            .unwrap()
            .shape,
        vec![8]
    );

    ts.retain(|t| t.name != "model.layers.1.self_attn.v_proj.bias");
    write_safetensors(&path, &ts);
    let err = load(dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::WeightsMismatch { tensor, found: None, .. } if tensor == "model.layers.1.self_attn.v_proj.bias"),
        "{err}"
    );
}

/// A Qwen3 directory: the tiny model's config as `qwen3` (head_dim 4, Qwen3Config's default
/// being 128) and its tensors plus each layer's QK-norm gains (head_dim).
fn qwen3_tensors(norm_len: usize) -> Vec<RawTensor> {
    let mut ts = tensors();
    for l in 0..2 {
        for (k, which) in ["q_norm", "k_norm"].iter().enumerate() {
            let data = random_values(100 + 2 * l as u64 + k as u64, norm_len)
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect();
            ts.push(RawTensor {
                name: format!("model.layers.{l}.self_attn.{which}.weight"),
                dtype: Dtype::F32,
                shape: vec![norm_len],
                data,
            });
        }
    }
    ts
}

fn qwen3_config() -> serde_json::Value {
    let mut cfg = config_json();
    cfg["model_type"] = json!("qwen3");
    cfg["architectures"] = json!(["Qwen3ForCausalLM"]);
    cfg["head_dim"] = json!(4);
    cfg
}

#[test]
fn qwen3_loads_with_its_qk_norm_and_names_a_missing_or_misshapen_one() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &qwen3_config());
    let st = dir.path().join("model.safetensors");
    write_safetensors(&st, &qwen3_tensors(4));
    let m = load(dir.path()).unwrap();
    assert!(m.config.qk_norm && m.config.arch == wavefront::Arch::Qwen3);
    assert!(m
        .tensors
        .contains_key("model.layers.1.self_attn.k_norm.weight"));
    for missing in [
        "model.layers.0.self_attn.q_norm.weight",
        "model.layers.1.self_attn.k_norm.weight",
    ] {
        let ts: Vec<_> = qwen3_tensors(4)
            .into_iter()
            .filter(|t| t.name != missing)
            .collect();
        write_safetensors(&st, &ts);
        let err = load(dir.path()).unwrap_err();
        assert!(
            matches!(&err, Error::WeightsMismatch { tensor, found: None, .. } if tensor == missing),
            "{err}"
        );
    }
    // A Llama checkpoint relabelled qwen3 (no QK-norm tensors at all) names the first.
    write_safetensors(&st, &tensors());
    let err = load(dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::WeightsMismatch { tensor, found: None, .. } if tensor == "model.layers.0.self_attn.q_norm.weight"),
        "{err}"
    );
    // Gains of any width but head_dim: a shape error naming them.
    write_safetensors(&st, &qwen3_tensors(8));
    let err = load(dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::WeightsMismatch { tensor, found: Some(_), .. } if tensor.ends_with("q_norm.weight")),
        "{err}"
    );
}
