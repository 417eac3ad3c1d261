//! `config.json` (+ `generation_config.json`) → [`ModelConfig`], with transformers' semantics:
//! per-class defaults for absent fields (`LlamaConfig`, `MistralConfig`, `Qwen2Config`,
//! `Qwen3Config`, `Gemma2Config`, `Gemma3TextConfig` in transformers 5), JSON `null` meaning `None`, and RoPE parameters in both spellings
//! (4.x `rope_theta` + `rope_scaling`, 5.x `rope_parameters`).

use std::path::Path;

use serde_json::{Map, Value};

use crate::config::{Activation, Arch, Llama3RopeScaling, LongRope, ModelConfig};
use crate::error::{Error, Result};

/// Fields that `config.json` must carry: transformers would silently fall back to the 7B
/// defaults, which is never what a checkpoint means.
pub const REQUIRED_FIELDS: [&str; 5] = [
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
];

/// The transformers config class a checkpoint maps to. Each has its own defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Llama,
    Mistral,
    Qwen2,
    Qwen3,
    Gemma2,
    Gemma3,
    Phi3,
}

impl Family {
    fn from_model_type(t: &str) -> Option<Family> {
        match t {
            "llama" => Some(Family::Llama),
            "mistral" => Some(Family::Mistral),
            "qwen2" => Some(Family::Qwen2),
            "qwen3" => Some(Family::Qwen3),
            "gemma2" => Some(Family::Gemma2),
            "gemma3_text" => Some(Family::Gemma3),
            "phi3" => Some(Family::Phi3),
            _ => None,
        }
    }

    fn from_architecture(a: &str) -> Option<Family> {
        match a {
            "LlamaForCausalLM" => Some(Family::Llama),
            "MistralForCausalLM" => Some(Family::Mistral),
            "Qwen2ForCausalLM" => Some(Family::Qwen2),
            "Qwen3ForCausalLM" => Some(Family::Qwen3),
            "Gemma2ForCausalLM" => Some(Family::Gemma2),
            "Gemma3ForCausalLM" => Some(Family::Gemma3),
            "Phi3ForCausalLM" => Some(Family::Phi3),
            _ => None,
        }
    }

    fn arch(self) -> Arch {
        match self {
            Family::Llama | Family::Mistral => Arch::Llama,
            Family::Qwen2 => Arch::Qwen2,
            Family::Qwen3 => Arch::Qwen3,
            Family::Gemma2 => Arch::Gemma2,
            Family::Gemma3 => Arch::Gemma3,
            Family::Phi3 => Arch::Phi3,
        }
    }

    /// `num_key_value_heads` when the field is absent (not when it is `null`, which means
    /// "as many as the query heads" in every class).
    fn default_kv_heads(self, n_heads: usize) -> usize {
        match self {
            Family::Llama | Family::Phi3 => n_heads,
            Family::Mistral => 8,
            Family::Qwen2 | Family::Qwen3 => 32,
            Family::Gemma2 | Family::Gemma3 => 4,
        }
    }

    /// `head_dim` when absent: `Qwen3Config`, `Gemma2Config` and `Gemma3TextConfig` have their
    /// own defaults (128, 256, 256); the others derive it as hidden / heads.
    fn default_head_dim(self) -> Option<usize> {
        match self {
            Family::Qwen3 => Some(128),
            Family::Gemma2 | Family::Gemma3 => Some(256),
            Family::Llama | Family::Mistral | Family::Qwen2 | Family::Phi3 => None,
        }
    }

    fn default_max_position_embeddings(self) -> usize {
        match self {
            Family::Llama => 2048,
            Family::Phi3 => 4096,
            Family::Mistral => 4096 * 32,
            Family::Qwen2 | Family::Qwen3 => 32768,
            Family::Gemma2 => 8192,
            Family::Gemma3 => 131_072,
        }
    }

    /// (bos, eos) when absent.
    fn default_bos_eos(self) -> (Option<u32>, Vec<u32>) {
        match self {
            Family::Llama | Family::Mistral => (Some(1), vec![2]),
            Family::Qwen2 | Family::Qwen3 => (None, vec![]),
            Family::Gemma2 | Family::Gemma3 => (Some(2), vec![1]),
            Family::Phi3 => (Some(1), vec![32000]),
        }
    }

    /// `tie_word_embeddings` when absent (`Gemma2Config`, `Gemma3TextConfig`: true; the
    /// others false).
    fn default_tied(self) -> bool {
        matches!(self, Family::Gemma2 | Family::Gemma3)
    }
}

/// Typed access to a JSON object, every error naming the file and the field.
struct Fields<'a> {
    path: &'a Path,
    obj: &'a Map<String, Value>,
    /// Prefix for nested objects (`rope_scaling.`), empty at the top level.
    prefix: &'a str,
}

impl<'a> Fields<'a> {
    fn err(&self, field: &str, detail: impl Into<String>) -> Error {
        Error::config(self.path, format!("{}{field}", self.prefix), detail)
    }

    /// The value of `field`; `None` when absent or `null`.
    fn get(&self, field: &str) -> Option<&'a Value> {
        self.obj.get(field).filter(|v| !v.is_null())
    }

    fn usize(&self, field: &str) -> Result<Option<usize>> {
        self.get(field)
            .map(|v| {
                v.as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| {
                        self.err(field, format!("expected a non-negative integer, found {v}"))
                    })
            })
            .transpose()
    }

    fn required_usize(&self, field: &str) -> Result<usize> {
        let n = self
            .usize(field)?
            .ok_or_else(|| self.err(field, "missing (required)"))?;
        self.positive(field, n)
    }

    fn positive(&self, field: &str, n: usize) -> Result<usize> {
        if n == 0 {
            return Err(self.err(field, "must be positive, found 0"));
        }
        Ok(n)
    }

    fn f64(&self, field: &str) -> Result<Option<f64>> {
        self.get(field)
            .map(|v| {
                v.as_f64()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| self.err(field, format!("expected a finite number, found {v}")))
            })
            .transpose()
    }

    fn bool(&self, field: &str) -> Result<Option<bool>> {
        self.get(field)
            .map(|v| {
                v.as_bool()
                    .ok_or_else(|| self.err(field, format!("expected true or false, found {v}")))
            })
            .transpose()
    }

    fn str(&self, field: &str) -> Result<Option<&'a str>> {
        self.get(field)
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| self.err(field, format!("expected a string, found {v}")))
            })
            .transpose()
    }

    fn object(&self, field: &str) -> Result<Option<&'a Map<String, Value>>> {
        self.get(field)
            .map(|v| {
                v.as_object()
                    .ok_or_else(|| self.err(field, format!("expected an object, found {v}")))
            })
            .transpose()
    }

    /// A token id field: an integer or a list of integers (`eos_token_id`). `Ok(None)` when
    /// absent; `Ok(Some(vec![]))` when `null`.
    fn token_ids(&self, field: &str) -> Result<Option<Vec<u32>>> {
        let Some(v) = self.obj.get(field) else {
            return Ok(None);
        };
        let one = |x: &Value| {
            x.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| self.err(field, format!("expected a token id, found {x}")))
        };
        let ids = match v {
            Value::Null => vec![],
            Value::Array(xs) => xs.iter().map(one).collect::<Result<_>>()?,
            x => vec![one(x)?],
        };
        Ok(Some(ids))
    }
}

fn object_of<'a>(path: &Path, v: &'a Value) -> Result<&'a Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| Error::corrupt(path, "expected a JSON object at the top level"))
}

/// Reads and parses a JSON file.
pub(crate) fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_slice(&text).map_err(|e| Error::corrupt(path, format!("not valid JSON: {e}")))
}

/// `config.json` (and `generation_config.json` when present) in `dir`.
pub fn load_config(dir: &Path) -> Result<ModelConfig> {
    let path = dir.join(super::CONFIG_FILE);
    let config = read_json(&path)?;
    let gen_path = dir.join("generation_config.json");
    let generation = if gen_path.is_file() {
        Some(read_json(&gen_path)?)
    } else {
        None
    };
    parse_config(
        &path,
        &config,
        generation.as_ref().map(|g| (gen_path.as_path(), g)),
    )
}

/// Builds the config from parsed `config.json` (`path` is named in errors) and optionally
/// `generation_config.json`, whose EOS ids are added to the config's.
pub fn parse_config(
    path: &Path,
    config: &Value,
    generation: Option<(&Path, &Value)>,
) -> Result<ModelConfig> {
    let f = Fields {
        path,
        obj: object_of(path, config)?,
        prefix: "",
    };
    let family = family(&f)?;
    check_supported(&f, family)?;

    let vocab_size = f.required_usize("vocab_size")?;
    let hidden_size = f.required_usize("hidden_size")?;
    let intermediate_size = f.required_usize("intermediate_size")?;
    let n_layers = f.required_usize("num_hidden_layers")?;
    let n_heads = f.required_usize("num_attention_heads")?;
    let n_kv_heads = match f.obj.get("num_key_value_heads") {
        None => family.default_kv_heads(n_heads),
        Some(_) => f.usize("num_key_value_heads")?.unwrap_or(n_heads),
    };
    let n_kv_heads = f.positive("num_key_value_heads", n_kv_heads)?;
    if n_heads % n_kv_heads != 0 {
        return Err(f.err(
            "num_key_value_heads",
            format!("{n_kv_heads} does not divide num_attention_heads = {n_heads}"),
        ));
    }
    let head_dim = match (f.usize("head_dim")?, family.default_head_dim()) {
        (Some(d), _) => f.positive("head_dim", d)?,
        (None, Some(d)) => d,
        (None, None) if hidden_size % n_heads == 0 => hidden_size / n_heads,
        (None, None) => {
            return Err(f.err(
                "hidden_size",
                format!("{hidden_size} is not a multiple of num_attention_heads = {n_heads}"),
            ))
        }
    };
    if head_dim % 2 != 0 {
        return Err(f.err(
            "head_dim",
            format!("RoPE needs an even head_dim, found {head_dim}"),
        ));
    }
    // The query width (heads × head_dim) is a product the rest of the engine takes for granted
    // (as for GGUF: at most u32::MAX).
    if n_heads
        .checked_mul(head_dim)
        .is_none_or(|d| d > u32::MAX as usize)
    {
        return Err(f.err(
            "num_attention_heads",
            format!("{n_heads} heads of head_dim {head_dim} overflow"),
        ));
    }
    let rms_norm_eps = f.f64("rms_norm_eps")?.unwrap_or(1e-6);
    if rms_norm_eps < 0.0 {
        return Err(f.err(
            "rms_norm_eps",
            format!("must be >= 0, found {rms_norm_eps}"),
        ));
    }
    let trained_context = f
        .usize("max_position_embeddings")?
        .unwrap_or(family.default_max_position_embeddings());
    let trained_context = f.positive("max_position_embeddings", trained_context)?;
    let (bos_token_id, eos_token_ids) = special_ids(&f, family, generation)?;
    let gemma = match family {
        Family::Gemma2 => Some(gemma2(&f, n_layers)?),
        Family::Gemma3 => Some(gemma3(&f, n_layers)?),
        _ => None,
    };
    let (window, sliding_layers) = match (&gemma, family) {
        (Some(g), _) => (Some(g.window), Some(g.sliding_layers.clone())),
        (None, Family::Qwen2 | Family::Qwen3) => match qwen_window(&f, n_layers)? {
            Some((w, slides)) => (Some(w), Some(slides)),
            None => (None, None),
        },
        (None, _) => (sliding_window(&f, family)?, None),
    };
    let (rope_theta, rope_scaling, rope_longrope) =
        match gemma.as_ref().and_then(|g| g.global_theta) {
            Some(theta) => (theta, None, None),
            None => rope(&f, family, trained_context, head_dim)?,
        };
    if family == Family::Gemma2 && rope_scaling.is_some() {
        return Err(unsupported(&f, "rope scaling (Gemma 2: only default)"));
    }

    Ok(ModelConfig {
        arch: family.arch(),
        vocab_size,
        hidden_size,
        intermediate_size,
        n_layers,
        n_heads,
        n_kv_heads,
        head_dim,
        rms_norm_eps: rms_norm_eps as f32,
        rope_theta,
        rope_scaling,
        rope_freq_factors: None,
        rope_longrope,
        max_position_embeddings: trained_context,
        sliding_window: window,
        sliding_layers,
        rope_local_theta: gemma.as_ref().and_then(|g| g.local_theta),
        activation: match &gemma {
            Some(_) => Activation::GeluTanh,
            None => Activation::Silu,
        },
        // Gemma3TextModel: `embed_scale = hidden_size ** 0.5`, an f32 tensor of the double.
        embed_scale: gemma.as_ref().map(|_| (hidden_size as f64).sqrt() as f32),
        query_pre_attn_scalar: gemma.as_ref().map(|g| g.query_pre_attn_scalar),
        attn_logit_softcap: gemma.as_ref().and_then(|g| g.attn_logit_softcap),
        final_logit_softcap: gemma.as_ref().and_then(|g| g.final_logit_softcap),
        post_norms: gemma.is_some(),
        tie_word_embeddings: f
            .bool("tie_word_embeddings")?
            .unwrap_or(family.default_tied()),
        attention_bias: family == Family::Qwen2,
        qk_norm: family == Family::Qwen3 || family == Family::Gemma3,
        bos_token_id,
        eos_token_ids,
    })
}

fn unsupported(f: &Fields, detail: impl Into<String>) -> Error {
    Error::UnsupportedModel {
        path: f.path.into(),
        detail: detail.into(),
    }
}

/// `model_type`, or failing that the first of `architectures`.
fn family(f: &Fields) -> Result<Family> {
    if let Some(t) = f.str("model_type")? {
        return Family::from_model_type(t).ok_or_else(|| {
            unsupported(
                f,
                format!(
                    "model_type `{t}` (supported: llama, mistral, qwen2, qwen3, gemma2, \
                     gemma3_text, phi3)"
                ),
            )
        });
    }
    let archs = match f.get("architectures") {
        None => return Err(f.err("model_type", "missing (and no `architectures` either)")),
        Some(Value::Array(a)) => a,
        Some(v) => return Err(f.err("architectures", format!("expected a list, found {v}"))),
    };
    let first = archs.first().and_then(Value::as_str).unwrap_or_default();
    Family::from_architecture(first).ok_or_else(|| {
        unsupported(
            f,
            format!("architecture `{first}` (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Gemma2ForCausalLM, Gemma3ForCausalLM, Phi3ForCausalLM)"),
        )
    })
}

/// Variants of the families that the single forward pass does not compute.
fn check_supported(f: &Fields, family: Family) -> Result<()> {
    if family == Family::Gemma2 || family == Family::Gemma3 {
        return check_gemma(f, family);
    }
    // transformers' ACT2FN maps both names to SiLU.
    if let Some(act) = f.str("hidden_act")? {
        if act != "silu" && act != "swish" {
            return Err(unsupported(f, format!("hidden_act `{act}` (only silu)")));
        }
    }
    if family == Family::Llama && f.bool("mlp_bias")? == Some(true) {
        return Err(unsupported(f, "mlp_bias = true"));
    }
    if family == Family::Llama || family == Family::Qwen3 {
        // LlamaAttention puts the bias on o_proj too, which ModelConfig cannot express.
        if f.bool("attention_bias")? == Some(true) {
            return Err(unsupported(
                f,
                "attention_bias = true (Llama and Qwen3 put a bias on o_proj as well as q/k/v)",
            ));
        }
    }
    Ok(())
}

/// Mistral's window, every layer's (`MistralConfig.sliding_window`, 4096 when absent, none when
/// `null`): the engine's attention masks keys outside it.
fn sliding_window(f: &Fields, family: Family) -> Result<Option<usize>> {
    let window = match (family, f.obj.get("sliding_window")) {
        (Family::Mistral, None) => Some(4096),
        (Family::Mistral | Family::Phi3, Some(_)) => f.usize("sliding_window")?,
        _ => None,
    };
    if window == Some(0) {
        return Err(f.err("sliding_window", "must be positive, found 0"));
    }
    Ok(window)
}

/// Qwen2's and Qwen3's window and the layers it applies to (`Qwen2Config` / `Qwen3Config`
/// `__post_init__`): the window is `sliding_window` (4096 when absent, none when `null`) only
/// with `use_sliding_window`; `layer_types` names the sliding layers, by default those from
/// `max_window_layers` (28 when absent) on when there is a window, none otherwise. `None` when
/// no layer slides. A `layer_types` that names sliding layers with no window is refused, as
/// transformers' forward refuses it (`create_sliding_window_causal_mask`).
fn qwen_window(f: &Fields, n_layers: usize) -> Result<Option<(usize, Vec<bool>)>> {
    let window = match (f.bool("use_sliding_window")?, f.obj.get("sliding_window")) {
        (Some(true), None) => Some(4096),
        (Some(true), Some(_)) => f.usize("sliding_window")?,
        _ => None,
    };
    if window.is_none() && f.get("layer_types").is_none() {
        return Ok(None);
    }
    let from = match f.obj.get("max_window_layers") {
        None => 28,
        Some(_) => f
            .usize("max_window_layers")?
            .ok_or_else(|| f.err("max_window_layers", "null (the sliding layers start there)"))?,
    };
    let slides = layer_types(f, n_layers, |l| window.is_some() && l >= from)?;
    if !slides.contains(&true) {
        return Ok(None);
    }
    let window = window.ok_or_else(|| {
        f.err(
            "layer_types",
            "names sliding layers, but there is no window (use_sliding_window is not true or \
             sliding_window is null)",
        )
    })?;
    Ok(Some((f.positive("sliding_window", window)?, slides)))
}

/// Gemma 2 and 3 variants the engine does not compute: another activation
/// (`hidden_activation` decides in `Gemma2MLP` / `Gemma3MLP`), Gemma 2's soft-capping on a
/// Gemma 3 config (its forward has none), bidirectional attention, biases.
fn check_gemma(f: &Fields, family: Family) -> Result<()> {
    let act = f.str("hidden_activation")?.unwrap_or("gelu_pytorch_tanh");
    if act != "gelu_pytorch_tanh" {
        return Err(unsupported(
            f,
            format!("hidden_activation `{act}` (Gemma: only gelu_pytorch_tanh)"),
        ));
    }
    if family == Family::Gemma3 {
        for cap in ["attn_logit_softcapping", "final_logit_softcapping"] {
            if let Some(c) = f.f64(cap)? {
                return Err(unsupported(
                    f,
                    format!("{cap} = {c} (Gemma 2's soft-capping on a Gemma 3 config)"),
                ));
            }
        }
    }
    for flag in ["use_bidirectional_attention", "attention_bias"] {
        if f.bool(flag)? == Some(true) {
            return Err(unsupported(f, format!("{flag} = true")));
        }
    }
    Ok(())
}

/// The most layers a config with a per-layer window pattern may name (Gemma 3 27B has 62).
const MAX_PATTERN_LAYERS: usize = 4096;

/// What Gemma 2's and 3's configs add: the window and which layers slide, the RoPE bases (Gemma
/// 3: two; Gemma 2: `None`, the one of [`rope`]), the score scale, and Gemma 2's soft-caps.
struct Gemma {
    window: usize,
    sliding_layers: Vec<bool>,
    global_theta: Option<f32>,
    local_theta: Option<f32>,
    query_pre_attn_scalar: f32,
    attn_logit_softcap: Option<f32>,
    final_logit_softcap: Option<f32>,
}

/// Which layers slide: `layer_types` (`sliding_attention` / `full_attention`, one a layer), or
/// where absent `default(layer)`. A layer count no checkpoint has (the weights are checked
/// against it only after the config) is refused before the list is allocated.
fn layer_types(f: &Fields, n_layers: usize, default: impl Fn(usize) -> bool) -> Result<Vec<bool>> {
    if n_layers > MAX_PATTERN_LAYERS {
        return Err(f.err(
            "num_hidden_layers",
            format!("{n_layers} layers (at most {MAX_PATTERN_LAYERS} with per-layer windows)"),
        ));
    }
    match f.get("layer_types") {
        None => Ok((0..n_layers).map(default).collect()),
        Some(Value::Array(types)) if types.len() == n_layers => types
            .iter()
            .map(|t| match t.as_str() {
                Some("sliding_attention") => Ok(true),
                Some("full_attention") => Ok(false),
                _ => Err(f.err(
                    "layer_types",
                    format!("expected sliding_attention or full_attention, found {t}"),
                )),
            })
            .collect(),
        Some(v) => Err(f.err(
            "layer_types",
            format!("expected a list of {n_layers} layer types, found {v}"),
        )),
    }
}

/// `sliding_window`: 4096 when absent; Gemma's sliding layers need one (`null` is refused).
fn gemma_window(f: &Fields) -> Result<usize> {
    let window = match f.obj.get("sliding_window") {
        None => 4096,
        Some(_) => f
            .usize("sliding_window")?
            .ok_or_else(|| f.err("sliding_window", "null (Gemma's sliding layers need one)"))?,
    };
    f.positive("sliding_window", window)
}

/// `query_pre_attn_scalar` (256 when absent): scores are scaled by its `** -0.5`, so it must be
/// a positive number.
fn query_pre_attn_scalar(f: &Fields) -> Result<f32> {
    let qpas = f.f64("query_pre_attn_scalar")?.unwrap_or(256.0);
    if qpas <= 0.0 || !(qpas as f32).is_finite() {
        return Err(f.err(
            "query_pre_attn_scalar",
            format!("must be a positive number, found {qpas}"),
        ));
    }
    Ok(qpas as f32)
}

/// A Gemma 2 soft-cap: `default` when absent, off when `null`, else a positive number (the
/// cap divides: 0 or a negative cap is no model).
fn softcap(f: &Fields, field: &str, default: f64) -> Result<Option<f32>> {
    let c = match f.obj.get(field) {
        None => default,
        Some(_) => match f.f64(field)? {
            None => return Ok(None),
            Some(c) => c,
        },
    };
    if c <= 0.0 || !(c as f32).is_finite() {
        return Err(f.err(field, format!("must be a positive number, found {c}")));
    }
    Ok(Some(c as f32))
}

/// `Gemma2Config`: `sliding_window` (4096 when absent) on the layers `layer_types` names
/// sliding (when absent the even ones: `(i + 1) % 2` in `Gemma2Config.__post_init__`), one RoPE
/// base ([`rope`], 10 000 when absent), `query_pre_attn_scalar` (256), `attn_logit_softcapping`
/// (50) and `final_logit_softcapping` (30), each `null` for none.
fn gemma2(f: &Fields, n_layers: usize) -> Result<Gemma> {
    let sliding_layers = layer_types(f, n_layers, |l| (l + 1) % 2 != 0)?;
    Ok(Gemma {
        window: gemma_window(f)?,
        sliding_layers,
        global_theta: None,
        local_theta: None,
        query_pre_attn_scalar: query_pre_attn_scalar(f)?,
        attn_logit_softcap: softcap(f, "attn_logit_softcapping", 50.0)?,
        final_logit_softcap: softcap(f, "final_logit_softcapping", 30.0)?,
    })
}

/// `Gemma3TextConfig`: `sliding_window` (4096 when absent), `layer_types` (when absent every
/// `sliding_window_pattern`-th layer, 6 by default, is global), the RoPE bases from
/// `rope_parameters.{full_attention, sliding_attention}.rope_theta` (5.x) or `rope_theta` and
/// `rope_local_base_freq` (4.x; 10⁶ and 10⁴ when absent), and `query_pre_attn_scalar` (256),
/// whatever head_dim is (27B's differs).
fn gemma3(f: &Fields, n_layers: usize) -> Result<Gemma> {
    let window = gemma_window(f)?;
    let sliding_layers = match f.get("layer_types") {
        Some(_) => layer_types(f, n_layers, |_| true)?,
        None => {
            let pattern = f.usize("sliding_window_pattern")?.unwrap_or(6);
            let pattern = f.positive("sliding_window_pattern", pattern)?;
            layer_types(f, n_layers, |l| (l + 1) % pattern != 0)?
        }
    };
    let theta = |params: Option<&Map<String, Value>>, prefix: &str, fallback: f64| {
        let empty = Map::new();
        let p = Fields {
            path: f.path,
            obj: params.unwrap_or(&empty),
            prefix,
        };
        let rope_type = p.str("rope_type")?.unwrap_or("default");
        if rope_type != "default" {
            return Err(unsupported(
                f,
                format!("{prefix}rope_type `{rope_type}` (Gemma 3: only default)"),
            ));
        }
        let t = p.f64("rope_theta")?.unwrap_or(fallback);
        if t <= 0.0 {
            return Err(p.err("rope_theta", format!("must be positive, found {t}")));
        }
        Ok(t as f32)
    };
    if let Some(scaling) = f.object("rope_scaling")?.filter(|m| !m.is_empty()) {
        theta(Some(scaling), "rope_scaling.", 1.0)?; // refuses any scaling but "default"
    }
    let nested = f.object("rope_parameters")?;
    let by_type = |t: &str| -> Result<Option<&Map<String, Value>>> {
        match nested.and_then(|n| n.get(t)) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(v) => Err(f.err(
                &format!("rope_parameters.{t}"),
                format!("expected an object, found {v}"),
            )),
        }
    };
    let global_default = f.f64("rope_theta")?.unwrap_or(1_000_000.0);
    let local_default = f.f64("rope_local_base_freq")?.unwrap_or(10_000.0);
    let global_theta = theta(
        by_type("full_attention")?,
        "rope_parameters.full_attention.",
        global_default,
    )?;
    let local_theta = theta(
        by_type("sliding_attention")?,
        "rope_parameters.sliding_attention.",
        local_default,
    )?;
    let qpas = query_pre_attn_scalar(f)?;
    Ok(Gemma {
        window,
        sliding_layers,
        global_theta: Some(global_theta),
        local_theta: Some(local_theta),
        query_pre_attn_scalar: qpas,
        attn_logit_softcap: None,
        final_logit_softcap: None,
    })
}

/// `(rope_theta, llama3 scaling, longrope scaling)` from `rope_scaling` (4.x) or
/// `rope_parameters` (5.x); a non-empty `rope_scaling` wins, as in transformers'
/// `convert_rope_params_to_dict`.
fn rope(
    f: &Fields,
    family: Family,
    max_position_embeddings: usize,
    head_dim: usize,
) -> Result<(f32, Option<Llama3RopeScaling>, Option<LongRope>)> {
    let (key, params) = match f.object("rope_scaling")?.filter(|m| !m.is_empty()) {
        Some(m) => ("rope_scaling", Some(m)),
        None => ("rope_parameters", f.object("rope_parameters")?),
    };
    let empty = Map::new();
    let prefix = format!("{key}.");
    let p = Fields {
        path: f.path,
        obj: params.unwrap_or(&empty),
        prefix: &prefix,
    };
    let theta = match p.f64("rope_theta")? {
        Some(t) => t,
        None => f.f64("rope_theta")?.unwrap_or(10_000.0),
    };
    if theta <= 0.0 {
        return Err(f.err("rope_theta", format!("must be positive, found {theta}")));
    }
    let partial = match p.f64("partial_rotary_factor")? {
        Some(x) => Some(x),
        None => f.f64("partial_rotary_factor")?,
    };
    if let Some(x) = partial.filter(|&x| x != 1.0) {
        return Err(unsupported(f, format!("partial_rotary_factor = {x}")));
    }
    let rope_type = match p.str("rope_type")? {
        Some(t) => t,
        None => p.str("type")?.unwrap_or("default"),
    };
    // Phi3Config renames the legacy "su" and "yarn" to "longrope".
    let rope_type = match (family, rope_type) {
        (Family::Phi3, "su" | "yarn") => "longrope",
        (_, t) => t,
    };
    if rope_type == "longrope" {
        let longrope = longrope(f, &p, family, max_position_embeddings, head_dim)?;
        return Ok((theta as f32, None, Some(longrope)));
    }
    let scaling = match rope_type {
        "default" => None,
        "llama3" => {
            let factor = |name: &str| -> Result<f32> {
                let x = p
                    .f64(name)?
                    .ok_or_else(|| p.err(name, "missing (required by llama3 rope)"))?;
                Ok(x as f32)
            };
            let (low, high) = (factor("low_freq_factor")?, factor("high_freq_factor")?);
            if high <= low {
                return Err(p.err(
                    "high_freq_factor",
                    format!("must exceed low_freq_factor = {low}, found {high}"),
                ));
            }
            // A top-level value wins (transformers' standardize_rope_params).
            let original = match f.usize("original_max_position_embeddings")? {
                Some(n) => n,
                None => p
                    .usize("original_max_position_embeddings")?
                    .unwrap_or(max_position_embeddings),
            };
            Some(Llama3RopeScaling {
                factor: factor("factor")?,
                low_freq_factor: low,
                high_freq_factor: high,
                original_max_position_embeddings: original,
            })
        }
        other => {
            return Err(unsupported(
                f,
                format!("rope type `{other}` (supported: default, llama3, longrope)"),
            ))
        }
    };
    Ok((theta as f32, scaling, None))
}

/// LongRoPE's parameters (`p`: the rope object, prefixed in errors), as transformers'
/// `_compute_longrope_parameters` reads them: `short_factor` and `long_factor` of head_dim / 2
/// positive numbers each; `original_max_position_embeddings` from the top level (Phi-3's
/// field, default 4096) else the rope object; `attention_factor` as given, else from
/// `factor` (else max_position_embeddings / original): `√(1 + ln(factor) / ln(original))`
/// when `factor > 1`, else 1, in f64 and then f32 as torch multiplies cos by it.
fn longrope(
    f: &Fields,
    p: &Fields,
    family: Family,
    max_position_embeddings: usize,
    head_dim: usize,
) -> Result<LongRope> {
    let factors = |name: &str| -> Result<Vec<f32>> {
        let list = match p.get(name) {
            Some(Value::Array(a)) => a,
            Some(v) => return Err(p.err(name, format!("expected a list of numbers, found {v}"))),
            None => return Err(p.err(name, "missing (required by longrope)")),
        };
        if list.len() != head_dim / 2 {
            return Err(p.err(
                name,
                format!(
                    "{} values, expected head_dim / 2 = {}",
                    list.len(),
                    head_dim / 2
                ),
            ));
        }
        list.iter()
            .map(|x| match x.as_f64() {
                Some(v) if v > 0.0 && v.is_finite() => Ok(v as f32),
                _ => Err(p.err(name, format!("expected positive numbers, found {x}"))),
            })
            .collect()
    };
    let (short_factor, long_factor) = (factors("short_factor")?, factors("long_factor")?);
    let top = f.usize("original_max_position_embeddings")?;
    let original = match (top, p.usize("original_max_position_embeddings")?, family) {
        (Some(n), _, _) | (None, Some(n), _) => n,
        (None, None, Family::Phi3) => 4096,
        (None, None, _) => {
            return Err(p.err(
                "original_max_position_embeddings",
                "missing (required by longrope)",
            ))
        }
    };
    let original = p.positive("original_max_position_embeddings", original)?;
    let attention_factor = match p.f64("attention_factor")? {
        Some(a) if a > 0.0 => a,
        Some(a) => return Err(p.err("attention_factor", format!("must be positive, found {a}"))),
        None => {
            let factor = match p.f64("factor")? {
                Some(x) => x,
                None => max_position_embeddings as f64 / original as f64,
            };
            if factor <= 1.0 {
                1.0
            } else {
                (1.0 + factor.ln() / (original as f64).ln()).sqrt()
            }
        }
    };
    if !attention_factor.is_finite() {
        return Err(p.err(
            "original_max_position_embeddings",
            format!("{original} gives no finite attention factor (ln 1 = 0)"),
        ));
    }
    Ok(LongRope {
        short_factor,
        long_factor,
        original_max_position_embeddings: original,
        attention_factor: attention_factor as f32,
    })
}

/// BOS and EOS ids: the class default when absent, none when `null`; EOS ids of
/// `generation_config.json` are appended (it is what `generate` stops on).
fn special_ids(
    f: &Fields,
    family: Family,
    generation: Option<(&Path, &Value)>,
) -> Result<(Option<u32>, Vec<u32>)> {
    let (default_bos, default_eos) = family.default_bos_eos();
    let bos = match f.token_ids("bos_token_id")? {
        None => default_bos,
        Some(ids) => single_id(f, "bos_token_id", ids)?,
    };
    let mut eos = f.token_ids("eos_token_id")?.unwrap_or(default_eos);
    let mut bos = bos;
    if let Some((gen_path, g)) = generation {
        let gf = Fields {
            path: gen_path,
            obj: object_of(gen_path, g)?,
            prefix: "",
        };
        for id in gf.token_ids("eos_token_id")?.unwrap_or_default() {
            if !eos.contains(&id) {
                eos.push(id);
            }
        }
        if bos.is_none() {
            bos = match gf.token_ids("bos_token_id")? {
                Some(ids) => single_id(&gf, "bos_token_id", ids)?,
                None => None,
            };
        }
    }
    Ok((bos, eos))
}

fn single_id(f: &Fields, field: &str, ids: Vec<u32>) -> Result<Option<u32>> {
    match ids.as_slice() {
        [] => Ok(None),
        [id] => Ok(Some(*id)),
        _ => Err(f.err(field, format!("expected one token id, found {ids:?}"))),
    }
}
