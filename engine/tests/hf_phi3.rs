//! Phi-3 Hugging Face directories: the fused `qkv_proj` and `gate_up_proj` tensors split at
//! load into row views of the file, LongRoPE read from `config.json`, and typed errors for
//! broken fused tensors and factor lists. The model is the committed transformers fixture
//! `fixtures/models/phi3_longrope`, copied into a temporary directory and broken there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use serde_json::Value;
use wavefront::config::{names, Arch};
use wavefront::tensor::Storage;
use wavefront::Error;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/models/phi3_longrope")
}

/// The fixture's config.json and generation_config.json, with the weights rewritten by
/// `weights` (name → (shape, bf16 bytes)) and the config by `config`.
fn broken_copy(
    weights: impl FnOnce(&mut BTreeMap<String, (Vec<usize>, Vec<u8>)>),
    config: impl FnOnce(&mut Value),
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture().join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: BTreeMap<String, (Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, (t.shape().to_vec(), t.data().to_vec())))
        .collect();
    weights(&mut tensors);
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, (shape, data))| {
            (
                n.clone(),
                TensorView::new(Dtype::BF16, shape.clone(), data).unwrap(),
            )
        })
        .collect();
    let out = safetensors::serialize(views, &None).unwrap();
    std::fs::write(dir.path().join("model.safetensors"), out).unwrap();
    let mut cfg: Value =
        serde_json::from_slice(&std::fs::read(fixture().join("config.json")).unwrap()).unwrap();
    config(&mut cfg);
    std::fs::write(dir.path().join("config.json"), cfg.to_string()).unwrap();
    dir
}

fn bf16_rows(bytes: &[u8], cols: usize, from: usize, n: usize) -> Vec<u8> {
    bytes[from * cols * 2..(from + n) * cols * 2].to_vec()
}

#[test]
fn fused_tensors_split_into_row_views_of_the_file() {
    let m = wavefront::load(&fixture()).unwrap();
    let c = &m.config;
    assert_eq!(c.arch, Arch::Phi3);
    assert_eq!(c.arch.name(), "phi3");
    let bytes = std::fs::read(fixture().join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (h, q, kv, i) = (c.hidden_size, c.q_dim(), c.kv_dim(), c.intermediate_size);
    assert_eq!((q, kv, i), (64, 32, 96));
    for l in 0..c.n_layers {
        let fused = |s: &str| {
            st.tensor(&format!("model.layers.{l}.{s}"))
                .unwrap()
                .data()
                .to_vec()
        };
        let (qkv, gate_up) = (
            fused("self_attn.qkv_proj.weight"),
            fused("mlp.gate_up_proj.weight"),
        );
        for (name, src, from, rows) in [
            (names::WQ, &qkv, 0, q),
            (names::WK, &qkv, q, kv),
            (names::WV, &qkv, q + kv, kv),
            (names::GATE, &gate_up, 0, i),
            (names::UP, &gate_up, i, i),
        ] {
            let t = m.tensor(&names::layer(l, name)).unwrap();
            assert_eq!(t.shape, vec![rows, h], "{name}");
            assert!(
                matches!(t.storage, Storage::Mapped { .. }),
                "{name}: a view"
            );
            assert_eq!(t.bytes(), bf16_rows(src, h, from, rows), "layer {l} {name}");
        }
        assert!(m
            .tensor(&format!("model.layers.{l}.self_attn.qkv_proj.weight"))
            .is_err());
    }
}

#[test]
fn longrope_is_read_with_transformers_attention_factor() {
    let c = wavefront::load(&fixture()).unwrap().config;
    let r = c.rope_longrope.as_ref().expect("longrope");
    assert_eq!(r.original_max_position_embeddings, 8);
    assert_eq!(r.short_factor, vec![1.0, 1.1, 1.3, 1.7, 2.2, 3.0, 4.0, 5.0]);
    assert_eq!(
        r.long_factor,
        vec![1.0, 1.5, 2.5, 4.0, 6.0, 9.0, 14.0, 20.0]
    );
    // _compute_longrope_parameters: factor = 128 / 8, √(1 + ln 16 / ln 8), as f32.
    let want = (1.0 + 16f64.ln() / 8f64.ln()).sqrt() as f32;
    assert_eq!(r.attention_factor, want);
    assert!(c.longrope_long(9) && !c.longrope_long(8));
    assert_eq!(c.sliding_window, Some(6));
    assert!(c.features().contains(&"longrope scaling"));
    // The short and long tables differ where the factors do, and the short one is the default.
    let short = wavefront::rope::inv_freq(&c);
    let long = wavefront::rope::longrope_inv_freq(&c, true).unwrap();
    assert_eq!(
        short,
        wavefront::rope::longrope_inv_freq(&c, false).unwrap()
    );
    assert_eq!(short[0], long[0]); // both factors 1.0
    assert!(short[1..].iter().zip(&long[1..]).all(|(s, l)| s > l));
}

#[test]
fn a_fused_tensor_of_the_wrong_shape_is_a_typed_error() {
    for (tensor, drop_rows) in [
        ("self_attn.qkv_proj.weight", 1),
        ("mlp.gate_up_proj.weight", 3),
    ] {
        let name = format!("model.layers.1.{tensor}");
        let dir = broken_copy(
            |w| {
                let (shape, data) = w.get_mut(&name).unwrap();
                shape[0] -= drop_rows;
                data.truncate(shape[0] * shape[1] * 2);
            },
            |_| {},
        );
        match wavefront::load(dir.path()) {
            Err(Error::WeightsMismatch {
                tensor: t,
                expected,
                found: Some(found),
                ..
            }) => {
                assert_eq!(t, name);
                assert_eq!(found[0] + drop_rows, expected[0], "{name}");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn a_missing_fused_tensor_is_named_by_its_first_part() {
    let dir = broken_copy(
        |w| {
            w.remove("model.layers.0.self_attn.qkv_proj.weight");
        },
        |_| {},
    );
    let err = wavefront::load(dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::WeightsMismatch { tensor, found: None, .. }
            if tensor == "model.layers.0.self_attn.q_proj.weight"),
        "{err:?}"
    );
}

/// A config edit: its name and what it breaks.
type Breakage = (&'static str, fn(&mut Value));

#[test]
fn broken_longrope_parameters_are_typed_errors() {
    let cases: [Breakage; 6] = [
        ("short_factor", |c| {
            c["rope_parameters"]["short_factor"]
                .as_array_mut()
                .unwrap()
                .pop();
        }),
        ("long_factor", |c| {
            c["rope_parameters"]["long_factor"]
                .as_array_mut()
                .unwrap()
                .push(2.0.into());
        }),
        ("long_factor", |c| {
            c["rope_parameters"]["long_factor"][3] = (-1.0).into();
        }),
        ("short_factor", |c| {
            c["rope_parameters"]["short_factor"] = "1.0".into();
        }),
        ("long_factor", |c| {
            c["rope_parameters"]
                .as_object_mut()
                .unwrap()
                .remove("long_factor");
        }),
        ("original_max_position_embeddings", |c| {
            c["original_max_position_embeddings"] = 1.into();
        }),
    ];
    for (field, mutate) in cases {
        let dir = broken_copy(|_| {}, mutate);
        match wavefront::load(dir.path()) {
            Err(Error::Config { field: f, .. }) => assert!(f.ends_with(field), "{f} vs {field}"),
            other => panic!("{field}: {other:?}"),
        }
    }
}
