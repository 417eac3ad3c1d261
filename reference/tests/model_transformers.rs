//! The whole forward pass against transformers' f32 forward on the same weights:
//! fixtures/reference/tiny_models.json (Llama, Qwen2) and families.json (Qwen3, Mistral, Gemma 3,
//! Gemma 2, Phi-3, Qwen2/Qwen3 with windows on some layers), made by
//! fixtures/gen/reference_goldens.py, which
//! draws the weights exactly as `common::random_weights` does.

mod common;

use common::random_weights_family;
use ndarray::{Array2, Axis};
use serde_json::Value;
use wavefront_reference::{Activation, Config, Features, Model, RopeConfig, RopeScaling};

/// The bound the conformance suite sets for whole-model f32 logits against transformers.
/// Both sides compute in f32 with different summation orders; transformers' own SDPA and
/// eager attention disagree at ~3e-14 on these models (recorded in the fixture).
const LOGITS_NMSE: f64 = 1e-9;

/// `fixtures/reference/<file>`: tiny_models.json (Llama, Qwen2), families.json (Qwen3, …).
fn goldens(file: &str) -> Value {
    let path = format!(
        "{}/../fixtures/reference/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).expect("valid JSON")
}

fn usize_of(v: &Value, k: &str) -> usize {
    v[k].as_u64().unwrap_or_else(|| panic!("{k}")) as usize
}

fn f32_of(v: &Value, k: &str) -> f32 {
    v[k].as_f64().unwrap_or_else(|| panic!("{k}")) as f32
}

fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn config(m: &Value) -> Config {
    let (c, r) = (&m["config"], &m["rope_parameters"]);
    let scaling = match r["rope_type"].as_str().unwrap() {
        "default" => RopeScaling::None,
        "llama3" => RopeScaling::Llama3 {
            factor: f32_of(r, "factor"),
            low_freq_factor: f32_of(r, "low_freq_factor"),
            high_freq_factor: f32_of(r, "high_freq_factor"),
            original_max_position_embeddings: usize_of(r, "original_max_position_embeddings"),
        },
        // The attention factor is the one transformers computed (`attention_scaling`, from
        // max_position_embeddings / original_max_position_embeddings), recorded in the golden.
        "longrope" => RopeScaling::LongRope {
            short_factor: f32s(&r["short_factor"]),
            long_factor: f32s(&r["long_factor"]),
            original_max_position_embeddings: usize_of(r, "original_max_position_embeddings"),
            attention_factor: f32_of(m, "attention_scaling"),
        },
        other => panic!("rope type {other}"),
    };
    Config {
        vocab_size: usize_of(c, "vocab_size"),
        hidden_size: usize_of(c, "hidden_size"),
        intermediate_size: usize_of(c, "intermediate_size"),
        n_layers: usize_of(c, "n_layers"),
        n_heads: usize_of(c, "n_heads"),
        n_kv_heads: usize_of(c, "n_kv_heads"),
        head_dim: usize_of(c, "head_dim"),
        rms_norm_eps: f32_of(c, "rms_norm_eps"),
        rope: RopeConfig {
            theta: f32_of(r, "rope_theta"),
            scaling,
        },
        sliding_window: c["sliding_window"].as_u64().map(|w| w as usize),
        features: features(&c["features"]),
    }
}

/// `features` of a Gemma golden (absent: Llama's defaults).
fn features(f: &Value) -> Features {
    let opt = |k: &str| f[k].as_f64().map(|x| x as f32);
    Features {
        activation: match f["activation"].as_str() {
            None | Some("silu") => Activation::Silu,
            Some("gelu_pytorch_tanh") => Activation::GeluTanh,
            Some(other) => panic!("activation {other}"),
        },
        embed_scale: opt("embed_scale"),
        query_pre_attn_scalar: opt("query_pre_attn_scalar"),
        attn_logit_softcap: opt("attn_logit_softcapping"),
        final_logit_softcap: opt("final_logit_softcapping"),
        sliding_layers: f["sliding_layers"].as_array().map(|a| {
            a.iter()
                .map(|b| b.as_bool().expect("sliding_layers: booleans"))
                .collect()
        }),
        rope_local: opt("rope_local_theta").map(|theta| RopeConfig {
            theta,
            scaling: RopeScaling::None,
        }),
    }
}

fn matrix(v: &Value) -> Array2<f32> {
    let rows: Vec<Vec<f32>> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect();
    Array2::from_shape_fn((rows.len(), rows[0].len()), |(i, j)| rows[i][j])
}

/// Σ(a − b)² / Σb², b the transformers side.
fn nmse(ours: &Array2<f32>, theirs: &Array2<f32>) -> f64 {
    assert_eq!(ours.dim(), theirs.dim());
    let num: f64 = ours
        .iter()
        .zip(theirs)
        .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
        .sum();
    num / theirs.iter().map(|b| (*b as f64).powi(2)).sum::<f64>()
}

#[test]
fn logits_and_hidden_states_match_transformers() {
    check_file("tiny_models.json", 4);
}

/// Qwen3 (QK-norm), Mistral (a sliding window of 64 over 300 positions), Gemma 3 (GELU-tanh,
/// post-norms, embedding scale, per-layer windows and RoPE bases, query_pre_attn_scalar),
/// Gemma 2 (soft-capped scores and logits), Phi-3 (LongRoPE, long factors over 300 positions
/// with original_max_position_embeddings 64, short ones with 512) and Qwen2/Qwen3 with
/// `use_sliding_window` (windows on the layers from max_window_layers on, or as layer_types
/// lists them): the same forward and the same bound as the Llama family.
#[test]
fn other_families_match_transformers() {
    check_file("families.json", 9);
}

/// The Qwen window goldens see the window and which layers it is on: the reference without the
/// window, or with it on every layer, misses them by far more than the bound.
#[test]
fn qwen_window_goldens_see_which_layers_slide() {
    let g = goldens("families.json");
    let mut seen = 0;
    for m in g["models"].as_array().unwrap() {
        let name = m["name"].as_str().unwrap();
        let c = config(m);
        if !name.starts_with("qwen") || c.sliding_window.is_none() {
            continue;
        }
        seen += 1;
        let slides = c.features.sliding_layers.clone().expect("sliding_layers");
        assert!(slides.contains(&false) && slides.contains(&true), "{name}");
        let mut no_window = c.clone();
        no_window.sliding_window = None;
        no_window.features.sliding_layers = None;
        let mut every_layer = c.clone();
        every_layer.features.sliding_layers = None;
        for (what, c) in [("no window", no_window), ("every layer", every_layer)] {
            let w = random_weights_family(
                &c,
                m["seed"].as_u64().unwrap(),
                m["bias"].as_bool().unwrap(),
                m["tied"].as_bool().unwrap(),
                m["qk_norm"].as_bool().unwrap_or(false),
                false,
            );
            let model = Model::new(c, w).unwrap();
            let tokens: Vec<u32> = m["tokens"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_u64().unwrap() as u32)
                .collect();
            let rows: Vec<usize> = m["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_u64().unwrap() as usize)
                .collect();
            let logits = model
                .forward(&tokens, &mut model.new_cache(tokens.len()))
                .unwrap()
                .select(Axis(0), &rows);
            let e = nmse(&logits, &matrix(&m["logits"]));
            eprintln!("{name}: {what}: logits NMSE {e:.2e}");
            assert!(
                e > 1e-5,
                "{name}: the goldens do not see {what} (NMSE {e:e})"
            );
        }
    }
    assert_eq!(seen, 2, "a Qwen2 and a Qwen3 window golden");
}

/// LongRoPE's frequencies are transformers' (`_compute_longrope_parameters`, recorded after its
/// 300-position forward): the long set where 300 > original_max_position_embeddings, the short
/// one otherwise, both present in the goldens.
#[test]
fn longrope_frequencies_are_transformers() {
    let g = goldens("families.json");
    let mut seen = (false, false);
    for m in g["models"].as_array().unwrap() {
        if m["rope_parameters"]["rope_type"] != "longrope" {
            continue;
        }
        let c = config(m);
        let long = m["longrope_long"].as_bool().unwrap();
        assert_eq!(c.rope.scaling.longrope_long(300), long);
        if long {
            seen.0 = true;
        } else {
            seen.1 = true;
        }
        let w = random_weights_family(&c, 1, false, false, false, false);
        let model = Model::new(c, w).unwrap();
        let ours = model.layer_inv_freq_for_context(0, 300);
        let theirs = f32s(&m["inv_freq"]);
        assert_eq!(ours.len(), theirs.len());
        for (a, b) in ours.iter().zip(&theirs) {
            assert!((a - b).abs() <= 2.0 * f32::EPSILON * b, "{a} vs {b}");
        }
    }
    assert_eq!(seen, (true, true), "a long and a short LongRoPE golden");
}

/// Every model of `file` (at least `n_models` of them) against its transformers goldens.
fn check_file(file: &str, n_models: usize) {
    let g = goldens(file);
    let models = g["models"].as_array().unwrap();
    assert!(models.len() >= n_models, "{file}: {} models", models.len());
    for m in models {
        let name = m["name"].as_str().unwrap();
        let c = config(m);
        let w = random_weights_family(
            &c,
            m["seed"].as_u64().unwrap(),
            m["bias"].as_bool().unwrap(),
            m["tied"].as_bool().unwrap(),
            m["qk_norm"].as_bool().unwrap_or(false),
            m["post_norms"].as_bool().unwrap_or(false),
        );
        let model = Model::new(c, w).unwrap();
        let tokens: Vec<u32> = m["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_u64().unwrap() as u32)
            .collect();
        let rows: Vec<usize> = m["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_u64().unwrap() as usize)
            .collect();
        let trace = model
            .forward_traced(&tokens, &mut model.new_cache(tokens.len()))
            .unwrap();
        let pick = |a: &Array2<f32>| a.select(Axis(0), &rows);
        let logits = nmse(&pick(&trace.logits), &matrix(&m["logits"]));
        let final_hidden = nmse(&pick(&trace.final_hidden), &matrix(&m["final_hidden"]));
        let hidden: Vec<f64> = m["hidden"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(l, h)| nmse(&pick(&trace.hidden[l]), &matrix(h)))
            .collect();
        eprintln!(
            "{name}: logits NMSE {logits:.2e}, final hidden {final_hidden:.2e}, hidden {hidden:?}"
        );
        assert!(logits <= LOGITS_NMSE, "{name}: logits NMSE {logits:e}");
        assert!(
            final_hidden <= LOGITS_NMSE,
            "{name}: final hidden NMSE {final_hidden:e}"
        );
        assert!(
            hidden.iter().all(|&e| e <= LOGITS_NMSE),
            "{name}: hidden NMSE {hidden:?}"
        );
        // The decode path (one token at a time after a prefill) against the same rows.
        let n = tokens.len();
        let mut cache = model.new_cache(n);
        model.prefill(&tokens[..n - 3], &mut cache).unwrap();
        let want = matrix(&m["logits"]);
        for (pos, &token) in tokens.iter().enumerate().skip(n - 3) {
            let row = rows
                .iter()
                .position(|&r| r == pos)
                .expect("the last 3 rows are recorded");
            let got = model
                .decode(token, &mut cache)
                .unwrap()
                .insert_axis(Axis(0)); // (1, vocab)
            let e = nmse(&got, &want.select(Axis(0), &[row]));
            assert!(e <= LOGITS_NMSE, "{name}: decode at {pos}: NMSE {e:e}");
        }
    }
}
