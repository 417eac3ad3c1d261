//! config.json → ModelConfig against transformers 5 (`fixtures/gen/hf_configs.py` records how
//! `AutoConfig` / `AutoModelForCausalLM` resolve each case), plus the configs the engine
//! refuses.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{json, Value};
use wavefront::formats::hf;
use wavefront::{Arch, Error, ModelConfig};

#[derive(Deserialize)]
struct Case {
    name: String,
    config: Value,
    expected: Expected,
}

#[derive(Deserialize)]
struct Expected {
    num_key_value_heads: usize,
    head_dim: usize,
    rms_norm_eps: f64,
    max_position_embeddings: usize,
    sliding_window: Option<usize>,
    tie_word_embeddings: bool,
    bos_token_id: Option<u32>,
    eos_token_id: Vec<u32>,
    qkv_bias: bool,
    o_bias: bool,
    rope_theta: f64,
    rope_type: String,
    rope_factor: Option<f64>,
    rope_low_freq_factor: Option<f64>,
    rope_high_freq_factor: Option<f64>,
    rope_original_max_position_embeddings: Option<usize>,
    /// Recorded for the families file only (Qwen3): the attention has q_norm / k_norm.
    #[serde(default)]
    qk_norm: bool,
    /// Recorded for Qwen2/Qwen3: each layer's window (`None`: full attention).
    #[serde(default)]
    layer_windows: Option<Vec<Option<usize>>>,
}

/// `fixtures/configs/<file>`: cases.json (Llama, Mistral, Qwen2), families.json (Qwen3).
fn cases(file: &str) -> Vec<Case> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/configs")
        .join(file);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn parse(config: &Value) -> wavefront::Result<ModelConfig> {
    hf::parse_config(Path::new("dir/config.json"), config, None)
}

#[test]
fn configs_resolve_as_in_transformers() {
    check_cases("cases.json", 18);
}

#[test]
fn family_configs_resolve_as_in_transformers() {
    check_cases("families.json", 5);
}

fn check_cases(file: &str, n_cases: usize) {
    let cases = cases(file);
    assert!(cases.len() >= n_cases, "{file}: {} cases", cases.len());
    for case in cases {
        let (c, e) = (parse(&case.config).unwrap(), &case.expected);
        let name = &case.name;
        let model_type = case.config["model_type"].as_str().unwrap();
        let arch = match model_type {
            "qwen2" => Arch::Qwen2,
            "qwen3" => Arch::Qwen3,
            _ => Arch::Llama,
        };
        assert_eq!(c.arch, arch, "{name}");
        assert_eq!(c.qk_norm, e.qk_norm, "{name}");
        assert_eq!(
            c.vocab_size,
            case.config["vocab_size"].as_u64().unwrap() as usize,
            "{name}"
        );
        assert_eq!(c.n_kv_heads, e.num_key_value_heads, "{name}");
        assert_eq!(c.head_dim, e.head_dim, "{name}");
        assert_eq!(c.rms_norm_eps, e.rms_norm_eps as f32, "{name}");
        // Windows are the attention's (Mistral: every layer; Qwen: the layers layer_types
        // names): the whole context stays.
        assert_eq!(c.sliding_window, e.sliding_window, "{name}");
        assert_eq!(
            c.max_position_embeddings, e.max_position_embeddings,
            "{name}"
        );
        if let Some(windows) = &e.layer_windows {
            let ours: Vec<_> = (0..c.n_layers).map(|l| c.layer_window(l)).collect();
            assert_eq!(&ours, windows, "{name}");
        } else {
            assert_eq!(c.sliding_layers, None, "{name}");
        }
        if model_type == "qwen2" || model_type == "qwen3" {
            assert!(
                e.layer_windows.is_some(),
                "{name}: no layer_windows recorded"
            );
            // No layer slides: no window at all (not a list of falses).
            assert_eq!(
                c.sliding_window.is_none(),
                c.sliding_layers.is_none(),
                "{name}"
            );
        }
        assert_eq!(c.tie_word_embeddings, e.tie_word_embeddings, "{name}");
        assert_eq!(c.bos_token_id, e.bos_token_id, "{name}");
        assert_eq!(c.eos_token_ids, e.eos_token_id, "{name}");
        assert_eq!(c.attention_bias, e.qkv_bias, "{name}");
        assert!(
            !e.o_bias,
            "{name}: the oracle has an o_proj bias the engine cannot run"
        );
        assert_eq!(c.rope_theta, e.rope_theta as f32, "{name}");
        assert_eq!(c.rope_freq_factors, None, "{name}");
        match (e.rope_type.as_str(), c.rope_scaling) {
            ("default", None) => {}
            ("llama3", Some(s)) => {
                assert_eq!(Some(s.factor as f64), e.rope_factor, "{name}");
                assert_eq!(
                    Some(s.low_freq_factor as f64),
                    e.rope_low_freq_factor,
                    "{name}"
                );
                assert_eq!(
                    Some(s.high_freq_factor as f64),
                    e.rope_high_freq_factor,
                    "{name}"
                );
                assert_eq!(
                    Some(s.original_max_position_embeddings),
                    e.rope_original_max_position_embeddings,
                    "{name}"
                );
            }
            (t, s) => panic!("{name}: transformers says rope type {t}, we have {s:?}"),
        }
    }
}

fn base() -> Value {
    json!({
        "model_type": "llama", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 48,
        "num_hidden_layers": 2, "num_attention_heads": 4,
    })
}

fn with(changes: Value) -> Value {
    let mut c = base();
    for (k, v) in changes.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn unsupported(config: Value, what: &str) {
    match parse(&config) {
        Err(e @ Error::UnsupportedModel { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(what) && msg.contains("config.json"), "{msg}");
        }
        other => panic!("{what}: expected UnsupportedModel, got {other:?}"),
    }
}

/// LongRoPE is data for every family (transformers' `_compute_longrope_parameters` serves
/// any config): without its factor lists it is a config error naming the missing field.
#[test]
fn longrope_without_factors_names_the_missing_field() {
    for key in ["rope_scaling", "rope_parameters"] {
        let config = with(json!({key: {"rope_type": "longrope", "factor": 2.0}}));
        match parse(&config) {
            Err(Error::Config { field, .. }) => assert_eq!(field, format!("{key}.short_factor")),
            other => panic!("{key}: {other:?}"),
        }
    }
}

#[test]
fn unsupported_rope_types_are_named() {
    for t in ["linear", "dynamic", "yarn", "proportional"] {
        unsupported(
            with(json!({"rope_scaling": {"rope_type": t, "factor": 2.0}})),
            t,
        );
        unsupported(with(json!({"rope_scaling": {"type": t, "factor": 2.0}})), t);
        unsupported(
            with(json!({"rope_parameters": {"rope_type": t, "factor": 2.0}})),
            t,
        );
    }
    unsupported(
        with(json!({"partial_rotary_factor": 0.5})),
        "partial_rotary_factor",
    );
}

#[test]
fn unsupported_variants_are_named() {
    unsupported(with(json!({"hidden_act": "gelu"})), "gelu");
    unsupported(with(json!({"mlp_bias": true})), "mlp_bias");
    unsupported(with(json!({"attention_bias": true})), "attention_bias");
    // Qwen3Attention's attention_bias puts a bias on o_proj too.
    let qwen3_bias = json!({"model_type": "qwen3", "attention_bias": true, "head_dim": 8});
    unsupported(with(qwen3_bias), "attention_bias");
    unsupported(with(json!({"model_type": "gemma"})), "gemma");
    let mut c = base();
    c.as_object_mut().unwrap().remove("model_type");
    c["architectures"] = json!(["GPT2LMHeadModel"]);
    unsupported(c, "GPT2LMHeadModel");
}

#[test]
fn swish_is_silu_and_architectures_stand_in_for_model_type() {
    assert!(parse(&with(json!({"hidden_act": "swish"}))).is_ok());
    let mut c = base();
    c.as_object_mut().unwrap().remove("model_type");
    c["architectures"] = json!(["Qwen2ForCausalLM"]);
    c["num_key_value_heads"] = json!(2); // Qwen2Config's default is 32
    assert_eq!(parse(&c).unwrap().arch, Arch::Qwen2);
    c.as_object_mut().unwrap().remove("architectures");
    let err = parse(&c).unwrap_err();
    assert!(
        matches!(&err, Error::Config { field, .. } if field == "model_type"),
        "{err}"
    );
}

#[test]
fn llama3_rope_missing_a_factor_names_it() {
    for field in ["factor", "low_freq_factor", "high_freq_factor"] {
        let mut rope = json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                              "high_freq_factor": 4.0});
        rope.as_object_mut().unwrap().remove(field);
        let err = parse(&with(json!({"rope_scaling": rope.clone()}))).unwrap_err();
        let want = format!("rope_scaling.{field}");
        assert!(
            matches!(&err, Error::Config { field: f, .. } if *f == want),
            "{err}"
        );
        let err = parse(&with(json!({"rope_parameters": rope}))).unwrap_err();
        let want = format!("rope_parameters.{field}");
        assert!(
            matches!(&err, Error::Config { field: f, .. } if *f == want),
            "{err}"
        );
    }
}

#[test]
fn inconsistent_dimensions_are_config_errors() {
    for (changes, field) in [
        (json!({"num_key_value_heads": 3}), "num_key_value_heads"),
        (json!({"num_key_value_heads": 0}), "num_key_value_heads"),
        (json!({"hidden_size": 30}), "hidden_size"),
        (json!({"head_dim": 7}), "head_dim"),
        (json!({"num_attention_heads": 0}), "num_attention_heads"),
        // heads × head_dim past u32 (and past u64: 2^62 × 4 would overflow the product)
        (json!({"head_dim": 1u64 << 62}), "num_attention_heads"),
        (json!({"head_dim": 1u64 << 31}), "num_attention_heads"),
        (json!({"bos_token_id": [1, 2]}), "bos_token_id"),
    ] {
        let err = parse(&with(changes.clone())).unwrap_err();
        assert!(
            matches!(&err, Error::Config { field: f, .. } if f == field),
            "{changes}: {err}"
        );
    }
    let err = parse(&json!([1, 2])).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
}

#[test]
fn generation_config_eos_ids_are_merged() {
    let dir = tempfile::tempdir().unwrap();
    let config = with(json!({"eos_token_id": 2, "bos_token_id": null}));
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let generation = json!({"bos_token_id": 5, "eos_token_id": [7, 2, 9]});
    std::fs::write(
        dir.path().join("generation_config.json"),
        generation.to_string(),
    )
    .unwrap();
    let c = hf::load_config(dir.path()).unwrap();
    assert_eq!(c.eos_token_ids, vec![2, 7, 9]);
    assert_eq!(c.bos_token_id, Some(5));

    std::fs::write(
        dir.path().join("generation_config.json"),
        "{\"eos_token_id\": \"x\"}",
    )
    .unwrap();
    let err = hf::load_config(dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::Config { field, .. } if field == "eos_token_id"),
        "{err}"
    );
    assert!(err.to_string().contains("generation_config.json"), "{err}");
}

fn gemma2(changes: Value) -> Value {
    let mut c = json!({
        "model_type": "gemma2", "vocab_size": 64, "hidden_size": 64, "intermediate_size": 48,
        "num_hidden_layers": 5, "num_attention_heads": 4,
    });
    for (k, v) in changes.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

#[test]
fn a_minimal_gemma2_config_takes_gemma2configs_defaults() {
    // transformers' Gemma2Config(vocab_size=64, hidden_size=64, intermediate_size=48,
    // num_hidden_layers=5, num_attention_heads=4): num_key_value_heads 4, head_dim 256,
    // max_position_embeddings 8192, sliding_window 4096 with layer_types sliding, full,
    // sliding, full, sliding; query_pre_attn_scalar 256, attn_logit_softcapping 50,
    // final_logit_softcapping 30, tied, bos 2, eos 1, rope_theta 10000, rms_norm_eps 1e-6,
    // hidden_activation gelu_pytorch_tanh.
    let c = parse(&gemma2(json!({}))).unwrap();
    assert_eq!(c.arch, Arch::Gemma2);
    assert_eq!((c.n_kv_heads, c.head_dim), (4, 256));
    assert_eq!(c.max_position_embeddings, 8192);
    assert_eq!(c.sliding_window, Some(4096));
    assert_eq!(c.sliding_layers, Some(vec![true, false, true, false, true]));
    assert_eq!(c.query_pre_attn_scalar, Some(256.0));
    assert_eq!(
        c.attn_scale(),
        None,
        "256 = head_dim: the kernels' own head_dim^-0.5"
    );
    assert_eq!(c.attn_logit_softcap, Some(50.0));
    assert_eq!(c.final_logit_softcap, Some(30.0));
    assert!(c.tie_word_embeddings);
    assert_eq!(
        (c.bos_token_id, c.eos_token_ids.clone()),
        (Some(2), vec![1])
    );
    assert_eq!(
        (c.rope_theta, c.rope_scaling, c.rope_local_theta),
        (10000.0, None, None)
    );
    assert_eq!(c.rms_norm_eps, 1e-6);
    assert_eq!(c.activation, wavefront::config::Activation::GeluTanh);
    assert_eq!(c.embed_scale, Some(8.0), "sqrt(64)");
    assert!(c.post_norms && !c.qk_norm && !c.attention_bias);
    // The architecture name stands in for model_type.
    let mut a = gemma2(json!({}));
    a.as_object_mut().unwrap().remove("model_type");
    a["architectures"] = json!(["Gemma2ForCausalLM"]);
    assert_eq!(parse(&a).unwrap(), c);
}

#[test]
fn gemma2_takes_its_scale_caps_and_layer_types_as_written() {
    // Gemma 2 27B's score scale: query_pre_attn_scalar 144 over head_dim 128.
    let c = parse(&gemma2(json!({
        "head_dim": 128, "query_pre_attn_scalar": 144, "attn_logit_softcapping": 20.0,
        "final_logit_softcapping": null, "sliding_window": 7,
        "layer_types": ["full_attention", "sliding_attention", "sliding_attention",
                        "full_attention", "full_attention"],
        "rope_theta": 500000.0,
    })))
    .unwrap();
    assert_eq!(c.head_dim, 128);
    assert_eq!(c.attn_scale(), Some((144f64).powf(-0.5) as f32));
    assert_eq!(c.attn_logit_softcap, Some(20.0));
    assert_eq!(c.final_logit_softcap, None, "null turns the cap off");
    assert_eq!(c.sliding_window, Some(7));
    assert_eq!(
        c.sliding_layers,
        Some(vec![false, true, true, false, false])
    );
    assert_eq!(c.layer_window(1), Some(7));
    assert_eq!(c.layer_window(0), None);
    assert_eq!(c.rope_theta, 500000.0);
    assert!(c.features().contains(&"attention logit soft-cap"));
    assert!(!c.features().contains(&"final logit soft-cap"));
}

#[test]
fn nonsense_gemma2_caps_and_scales_are_config_errors() {
    for (field, v) in [
        ("attn_logit_softcapping", json!(-1.0)),
        ("attn_logit_softcapping", json!(0.0)),
        ("attn_logit_softcapping", json!("NaN")),
        ("final_logit_softcapping", json!(-30.0)),
        ("final_logit_softcapping", json!(1e300)),
        ("final_logit_softcapping", json!("inf")),
        ("query_pre_attn_scalar", json!(0)),
        ("query_pre_attn_scalar", json!(-256)),
        ("sliding_window", json!(0)),
        ("sliding_window", json!(null)),
    ] {
        match parse(&gemma2(json!({ field: v.clone() }))) {
            Err(Error::Config { field: f, .. }) => assert_eq!(f, field, "{v}"),
            other => panic!("{field} = {v}: expected a config error, got {other:?}"),
        }
    }
    unsupported(
        gemma2(json!({"hidden_activation": "gelu"})),
        "hidden_activation",
    );
    unsupported(
        gemma2(
            json!({"rope_scaling": {"rope_type": "llama3", "factor": 8.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0}}),
        ),
        "rope scaling",
    );
}

#[test]
fn gemma3_takes_a_score_scale_other_than_head_dims_and_refuses_soft_caps() {
    let gemma3 = |changes: Value| {
        let mut c = json!({
            "model_type": "gemma3_text", "vocab_size": 64, "hidden_size": 64,
            "intermediate_size": 48, "num_hidden_layers": 6, "num_attention_heads": 4,
            "head_dim": 128,
        });
        for (k, v) in changes.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    // Gemma 3 27B: query_pre_attn_scalar 168 over head_dim 128.
    let c = parse(&gemma3(json!({"query_pre_attn_scalar": 168}))).unwrap();
    assert_eq!(c.arch, Arch::Gemma3);
    assert_eq!(c.attn_scale(), Some((168f64).powf(-0.5) as f32));
    assert_eq!((c.attn_logit_softcap, c.final_logit_softcap), (None, None));
    unsupported(
        gemma3(json!({"attn_logit_softcapping": 50.0})),
        "attn_logit_softcapping",
    );
    unsupported(
        gemma3(json!({"final_logit_softcapping": 30.0})),
        "final_logit_softcapping",
    );
}

fn qwen2(changes: Value) -> Value {
    let mut c = json!({
        "model_type": "qwen2", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 48,
        "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
        "max_position_embeddings": 1000,
    });
    for (k, v) in changes.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

/// Qwen2/Qwen3 window the layers from `max_window_layers` on (or those `layer_types` names)
/// and keep their whole context; without `use_sliding_window` nothing slides.
#[test]
fn qwen_windows_slide_some_layers_and_keep_the_context() {
    let c = parse(&qwen2(
        json!({"use_sliding_window": true, "sliding_window": 16,
                                "max_window_layers": 3}),
    ))
    .unwrap();
    assert_eq!(c.max_position_embeddings, 1000);
    assert_eq!(c.sliding_window, Some(16));
    assert_eq!(c.sliding_layers, Some(vec![false, false, false, true]));
    let explicit = json!({"use_sliding_window": true, "sliding_window": 16, "max_window_layers": 3,
        "layer_types": ["sliding_attention", "full_attention", "sliding_attention",
                        "full_attention"]});
    let c = parse(&qwen2(explicit)).unwrap();
    assert_eq!(c.sliding_layers, Some(vec![true, false, true, false]));
    for off in [
        json!({"use_sliding_window": false, "sliding_window": 16, "max_window_layers": 0}),
        json!({"sliding_window": 16, "max_window_layers": 0}),
        json!({"use_sliding_window": true, "sliding_window": null, "max_window_layers": 0}),
        json!({"use_sliding_window": true, "sliding_window": 16, "max_window_layers": 4}),
    ] {
        let c = parse(&qwen2(off.clone())).unwrap();
        assert_eq!((c.sliding_window, c.sliding_layers), (None, None), "{off}");
        assert_eq!(c.max_position_embeddings, 1000, "{off}");
    }
}

#[test]
fn nonsense_qwen_windows_are_config_errors() {
    let sliding_types = json!([
        "full_attention",
        "sliding_attention",
        "full_attention",
        "sliding_attention"
    ]);
    for (changes, field) in [
        (
            json!({"use_sliding_window": true, "sliding_window": 0, "max_window_layers": 1}),
            "sliding_window",
        ),
        (
            json!({"use_sliding_window": true, "max_window_layers": null}),
            "max_window_layers",
        ),
        // Sliding layers and no window: transformers' forward refuses it too.
        (
            json!({"use_sliding_window": false, "layer_types": sliding_types}),
            "layer_types",
        ),
        (
            json!({"use_sliding_window": true, "layer_types": ["full_attention"]}),
            "layer_types",
        ),
        (
            json!({"use_sliding_window": true, "layer_types": ["full_attention", "chunked_attention",
                "full_attention", "full_attention"]}),
            "layer_types",
        ),
    ] {
        match parse(&qwen2(changes.clone())) {
            Err(Error::Config { field: f, .. }) => assert_eq!(f, field, "{changes}"),
            other => panic!("{changes}: expected a config error, got {other:?}"),
        }
    }
}
