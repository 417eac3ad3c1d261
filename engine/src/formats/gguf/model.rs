//! From a parsed GGUF file to a [`LoadedModel`]: the config from `{arch}.*` metadata, the
//! tensors under canonical names, and Q/K rows un-permuted for the Llama family.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::reader::{GgufFile, GgufTensorInfo};
use crate::config::{names, Activation, Arch, LongRope, ModelConfig};
use crate::error::{Error, Result};
use crate::formats::{Format, LoadedModel};
use crate::tensor::{DType, HostTensor, Storage};

/// The rotary frequency factors tensor (Llama 3 rope scaling as llama.cpp stores it).
const ROPE_FREQS: &str = "rope_freqs.weight";
/// LongRoPE's factors as llama.cpp's converter writes them for Phi-3 (`Phi3MiniModel`:
/// `rope_factors_long.weight`, `rope_factors_short.weight`, f32, head_dim / 2 each).
const ROPE_FACTORS_LONG: &str = "rope_factors_long.weight";
const ROPE_FACTORS_SHORT: &str = "rope_factors_short.weight";

pub fn load(path: &Path) -> Result<LoadedModel> {
    let file = super::read(path)?;
    let config = model_config(&file)?;
    let tensors = model_tensors(&file, &config)?;
    let tokenizer = crate::tokenizer::gguf::from_gguf(&file)?;
    Ok(LoadedModel {
        path: path.into(),
        format: Format::Gguf,
        config,
        tensors,
        tokenizer,
    })
}

/// The model config from `general.architecture` and the `{arch}.*` keys.
pub fn model_config(file: &GgufFile) -> Result<ModelConfig> {
    let path = &file.path;
    let arch_name = file.architecture()?;
    let arch = match arch_name {
        "llama" => Arch::Llama,
        "qwen2" => Arch::Qwen2,
        "qwen3" => Arch::Qwen3,
        "gemma2" => Arch::Gemma2,
        "gemma3" => Arch::Gemma3,
        "phi3" => Arch::Phi3,
        other => {
            return Err(Error::UnsupportedModel {
                path: path.clone(),
                detail: format!(
                    "GGUF architecture `{other}` (supported: llama, qwen2, qwen3, gemma2, gemma3, phi3)"
                ),
            })
        }
    };
    let key = |k: &str| format!("{arch_name}.{k}");
    let bad = |k: &str, detail: String| Error::config(path, key(k), detail);

    let n_layers = file.get_usize(&key("block_count"))?;
    let hidden_size = file.get_usize(&key("embedding_length"))?;
    let intermediate_size = file.get_usize(&key("feed_forward_length"))?;
    let n_heads = file.get_usize(&key("attention.head_count"))?;
    let n_kv_heads = file
        .opt_usize(&key("attention.head_count_kv"))?
        .unwrap_or(n_heads);
    // Each layer has tensors of its own: a block count beyond the tensor count is corrupt (and
    // would make the expected-tensor list as long as the count says).
    if n_layers > file.tensors.len() {
        return Err(bad(
            "block_count",
            format!(
                "{n_layers} layers, but the file holds {} tensors",
                file.tensors.len()
            ),
        ));
    }
    if n_heads == 0 || hidden_size == 0 {
        return Err(bad(
            "attention.head_count",
            format!("{n_heads} heads of a {hidden_size}-wide model"),
        ));
    }
    if n_kv_heads == 0 || n_heads % n_kv_heads != 0 {
        return Err(bad(
            "attention.head_count_kv",
            format!("{n_kv_heads} KV heads do not divide {n_heads} query heads"),
        ));
    }
    let head_dim = match file.opt_usize(&key("attention.key_length"))? {
        Some(d) => d,
        None if hidden_size % n_heads == 0 => hidden_size / n_heads,
        None => {
            return Err(bad(
                "attention.key_length",
                format!("missing, and {hidden_size} is not a multiple of {n_heads} heads"),
            ))
        }
    };
    if head_dim == 0 || head_dim % 2 != 0 {
        return Err(bad(
            "attention.key_length",
            format!("head dim {head_dim} is not even"),
        ));
    }
    // q_dim and kv_dim are products the rest of the engine takes for granted.
    if n_heads
        .checked_mul(head_dim)
        .is_none_or(|d| d > u32::MAX as usize)
    {
        return Err(bad(
            "attention.key_length",
            format!("{n_heads} heads of {head_dim} overflow"),
        ));
    }
    if let Some(v) = file.opt_usize(&key("attention.value_length"))? {
        if v != head_dim {
            return Err(Error::UnsupportedModel {
                path: path.clone(),
                detail: format!("value head dim {v} differs from key head dim {head_dim}"),
            });
        }
    }
    if let Some(r) = file.opt_usize(&key("rope.dimension_count"))? {
        if r != head_dim {
            return Err(Error::UnsupportedModel {
                path: path.clone(),
                detail: format!("partial rotary embedding ({r} of {head_dim} dims)"),
            });
        }
    }
    if let Some(t) = file.opt_str(&key("rope.scaling.type"))? {
        if t != "none" {
            return Err(Error::UnsupportedModel {
                path: path.clone(),
                detail: format!("rope scaling type `{t}`"),
            });
        }
    }
    let rms_norm_eps = file.get_f32(&key("attention.layer_norm_rms_epsilon"))?;
    let rope_theta = file.opt_f32(&key("rope.freq_base"))?.unwrap_or(10000.0);
    let max_position_embeddings = file.get_usize(&key("context_length"))?;

    let vocab_size = match file.opt_usize(&key("vocab_size"))? {
        Some(v) => v,
        None => match file.opt_str_array("tokenizer.ggml.tokens")? {
            Some(tokens) => tokens.len(),
            None => match file.tensor_info("token_embd.weight") {
                Some(t) if t.shape.len() == 2 => t.shape[0],
                _ => {
                    return Err(bad(
                        "vocab_size",
                        "missing, and no vocabulary or embedding to count".into(),
                    ))
                }
            },
        },
    };

    let rope_freq_factors = match file.tensor_info(ROPE_FREQS) {
        None => None,
        Some(info) => Some(rope_freq_factors(file, info, head_dim)?),
    };

    let eos: Vec<u32> = ["eos_token_id", "eot_token_id", "eom_token_id"]
        .iter()
        .filter_map(|k| file.opt_u32(&format!("tokenizer.ggml.{k}")).transpose())
        .collect::<Result<_>>()?;
    let mut eos_token_ids = Vec::new();
    for id in eos {
        if !eos_token_ids.contains(&id) {
            eos_token_ids.push(id);
        }
    }

    let rope_longrope = match arch {
        Arch::Phi3 => longrope(file, head_dim, max_position_embeddings)?,
        _ => None,
    };
    // Phi-3's window (`phi3.attention.sliding_window`; the converter writes 0 for none).
    // transformers masks with it (Phi-3-mini-4k: 2047); the engine follows transformers.
    let phi3_window = match arch {
        Arch::Phi3 => file
            .opt_usize(&key("attention.sliding_window"))?
            .filter(|&w| w > 0),
        _ => None,
    };

    let gemma = match arch {
        Arch::Gemma2 => Some(gemma2_features(file, n_layers, hidden_size, n_heads)?),
        Arch::Gemma3 => Some(gemma3_features(file, n_layers, hidden_size, n_heads)?),
        _ => None,
    };

    Ok(ModelConfig {
        arch,
        vocab_size,
        hidden_size,
        intermediate_size,
        n_layers,
        n_heads,
        n_kv_heads,
        head_dim,
        rms_norm_eps,
        rope_theta,
        rope_scaling: None,
        rope_freq_factors,
        rope_longrope,
        max_position_embeddings,
        // llama.cpp's converter writes no window for the llama architecture (Mistral v0.1), and
        // llama.cpp reads none for qwen2 / qwen3 (`use_sliding_window` models run full there).
        sliding_window: gemma.as_ref().map(|g| g.window).or(phi3_window),
        sliding_layers: gemma.as_ref().map(|g| g.sliding_layers.clone()),
        rope_local_theta: (arch == Arch::Gemma3).then_some(GEMMA3_LOCAL_ROPE_THETA),
        activation: match gemma {
            Some(_) => Activation::GeluTanh,
            None => Activation::Silu,
        },
        // llama.cpp's gemma2 and gemma3 graphs: `ggml_scale(inpL, sqrtf(n_embd))`.
        embed_scale: gemma.as_ref().map(|_| (hidden_size as f32).sqrt()),
        query_pre_attn_scalar: gemma.as_ref().and_then(|g| g.query_pre_attn_scalar),
        attn_logit_softcap: gemma.as_ref().and_then(|g| g.attn_logit_softcap),
        final_logit_softcap: gemma.as_ref().and_then(|g| g.final_logit_softcap),
        post_norms: gemma.is_some(),
        // llama.cpp writes `output.weight` only when the head is not the embedding.
        tie_word_embeddings: file.tensor_info("output.weight").is_none(),
        attention_bias: arch == Arch::Qwen2,
        // llama.cpp's `qwen3` and `gemma3` graphs always apply `attn_q_norm` / `attn_k_norm`.
        qk_norm: arch == Arch::Qwen3 || arch == Arch::Gemma3,
        bos_token_id: file.opt_u32("tokenizer.ggml.bos_token_id")?,
        eos_token_ids,
    })
}

/// The RoPE base of Gemma 3's sliding layers: llama.cpp sets it in code
/// (`rope_freq_base_train_swa = 10000` for `LLM_ARCH_GEMMA3`), as transformers'
/// `rope_local_base_freq` default; the file carries only the global base.
const GEMMA3_LOCAL_ROPE_THETA: f32 = 10_000.0;
/// Gemma 3's layer pattern: every sixth layer is global, the others slide (llama.cpp's
/// `set_swa_pattern(6)`, transformers' `sliding_window_pattern`).
const GEMMA3_SWA_PATTERN: usize = 6;

/// Gemma 2's layer pattern: the even layers slide (llama.cpp's `set_swa_pattern(2)`,
/// transformers' `layer_types` default).
const GEMMA2_SWA_PATTERN: usize = 2;
/// Gemma 2's window where the file has no `gemma2.attention.sliding_window` (llama.cpp's
/// `n_swa = 4096`, transformers' default).
const GEMMA2_WINDOW: usize = 4096;
/// Gemma 2's soft-caps where the file has no key (llama.cpp's hparams defaults, transformers'
/// `Gemma2Config` defaults).
const GEMMA2_ATTN_SOFTCAP: f32 = 50.0;
const GEMMA2_FINAL_SOFTCAP: f32 = 30.0;
/// The layer counts of llama.cpp's 27B types (`LLM_TYPE_27B`), which scale scores by
/// `(hidden / heads) ** -0.5` instead of `head_dim ** -0.5`.
const GEMMA2_27B_LAYERS: usize = 46;
const GEMMA3_27B_LAYERS: usize = 62;

struct GemmaFeatures {
    window: usize,
    sliding_layers: Vec<bool>,
    /// `Some(hidden / heads)` where llama.cpp scales scores by its `** -0.5` (27B).
    query_pre_attn_scalar: Option<f32>,
    attn_logit_softcap: Option<f32>,
    final_logit_softcap: Option<f32>,
}

/// The score scale of llama.cpp's Gemma graphs (`f_attention_scale`): `(hidden / heads) **
/// -0.5` for the 27B layer count, else head_dim's (`None`).
fn gemma_score_scalar(
    n_layers: usize,
    layers_27b: usize,
    hidden: usize,
    n_heads: usize,
) -> Option<f32> {
    (n_layers == layers_27b).then_some((hidden / n_heads) as f32)
}

/// Gemma 2's window (`gemma2.attention.sliding_window`, 4096 when absent) on the even layers,
/// its soft-caps (`gemma2.attn_logit_softcapping`, `gemma2.final_logit_softcapping`: 50 and 30
/// when absent; finite and positive, else a typed error) and the score scale.
fn gemma2_features(
    file: &GgufFile,
    n_layers: usize,
    hidden: usize,
    n_heads: usize,
) -> Result<GemmaFeatures> {
    let key = "gemma2.attention.sliding_window";
    let window = file.opt_usize(key)?.unwrap_or(GEMMA2_WINDOW);
    if window == 0 {
        return Err(Error::config(&file.path, key, "must be positive, found 0"));
    }
    let cap = |key: &str, default: f32| -> Result<Option<f32>> {
        let c = file.opt_f32(key)?.unwrap_or(default);
        if !(c.is_finite() && c > 0.0) {
            return Err(Error::config(
                &file.path,
                key,
                format!("must be a finite positive number, found {c}"),
            ));
        }
        Ok(Some(c))
    };
    Ok(GemmaFeatures {
        window,
        sliding_layers: (0..n_layers).map(|l| l % GEMMA2_SWA_PATTERN == 0).collect(),
        query_pre_attn_scalar: gemma_score_scalar(n_layers, GEMMA2_27B_LAYERS, hidden, n_heads),
        attn_logit_softcap: cap("gemma2.attn_logit_softcapping", GEMMA2_ATTN_SOFTCAP)?,
        final_logit_softcap: cap("gemma2.final_logit_softcapping", GEMMA2_FINAL_SOFTCAP)?,
    })
}

/// Gemma 3's window and layer pattern from `gemma3.attention.sliding_window`, and the score
/// scale (27B: llama.cpp uses `(hidden / heads) ** -0.5`).
fn gemma3_features(
    file: &GgufFile,
    n_layers: usize,
    hidden: usize,
    n_heads: usize,
) -> Result<GemmaFeatures> {
    let key = "gemma3.attention.sliding_window";
    let window = file.get_usize(key)?;
    if window == 0 {
        return Err(Error::config(&file.path, key, "must be positive, found 0"));
    }
    let sliding_layers = (0..n_layers)
        .map(|l| (l + 1) % GEMMA3_SWA_PATTERN != 0)
        .collect();
    Ok(GemmaFeatures {
        window,
        sliding_layers,
        query_pre_attn_scalar: gemma_score_scalar(n_layers, GEMMA3_27B_LAYERS, hidden, n_heads),
        attn_logit_softcap: None,
        final_logit_softcap: None,
    })
}

/// Phi-3's LongRoPE from `rope_factors_short.weight` / `rope_factors_long.weight` (both or
/// neither), `phi3.rope.scaling.original_context_length` and `phi3.rope.scaling.attn_factor`
/// (llama.cpp's converter computes it as transformers does; where absent, derived the same
/// way from `context_length / original`). `None` without factors (Phi-3-mini-4k).
fn longrope(file: &GgufFile, head_dim: usize, context: usize) -> Result<Option<LongRope>> {
    let (long, short) = match (
        file.tensor_info(ROPE_FACTORS_LONG),
        file.tensor_info(ROPE_FACTORS_SHORT),
    ) {
        (None, None) => return Ok(None),
        (Some(l), Some(s)) => (
            rope_freq_factors(file, l, head_dim)?,
            rope_freq_factors(file, s, head_dim)?,
        ),
        (Some(_), None) => {
            return Err(Error::MissingTensor {
                path: file.path.clone(),
                tensor: ROPE_FACTORS_SHORT.into(),
            })
        }
        (None, Some(_)) => {
            return Err(Error::MissingTensor {
                path: file.path.clone(),
                tensor: ROPE_FACTORS_LONG.into(),
            })
        }
    };
    for (name, f) in [(ROPE_FACTORS_LONG, &long), (ROPE_FACTORS_SHORT, &short)] {
        if let Some(x) = f.iter().find(|x| !(**x > 0.0 && x.is_finite())) {
            return Err(Error::corrupt(
                &file.path,
                format!("tensor `{name}`: factor {x} is not a positive number"),
            ));
        }
    }
    let orig_key = "phi3.rope.scaling.original_context_length";
    let original = file.get_usize(orig_key)?;
    if original == 0 {
        return Err(Error::config(
            &file.path,
            orig_key,
            "must be positive, found 0",
        ));
    }
    let af_key = "phi3.rope.scaling.attn_factor";
    let attention_factor = match file.opt_f32(af_key)? {
        Some(a) => a as f64,
        None => {
            let factor = context as f64 / original as f64;
            if factor <= 1.0 {
                1.0
            } else {
                (1.0 + factor.ln() / (original as f64).ln()).sqrt()
            }
        }
    };
    if !(attention_factor > 0.0 && attention_factor.is_finite()) {
        return Err(Error::config(
            &file.path,
            af_key,
            format!("{attention_factor} is not a positive number"),
        ));
    }
    Ok(Some(LongRope {
        short_factor: short,
        long_factor: long,
        original_max_position_embeddings: original,
        attention_factor: attention_factor as f32,
    }))
}

/// `rope_freqs.weight`: `head_dim / 2` factors, stored as floats.
fn rope_freq_factors(file: &GgufFile, info: &GgufTensorInfo, head_dim: usize) -> Result<Vec<f32>> {
    if info.shape != [head_dim / 2] {
        return Err(Error::ShapeMismatch {
            path: file.path.clone(),
            tensor: info.name.clone(),
            expected: vec![head_dim / 2],
            found: info.shape.clone(),
        });
    }
    let bytes = file.tensor_bytes(info);
    let dtype = info.ggml_type.dtype();
    Ok(match dtype {
        Some(DType::F32) => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Some(DType::F16) => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Some(DType::BF16) => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        _ => {
            return Err(Error::UnsupportedDtype {
                path: file.path.clone(),
                tensor: info.name.clone(),
                dtype: info.ggml_type.to_string(),
            })
        }
    })
}

/// llama.cpp's tensor name → the canonical (Hugging Face) name; `None` for tensors the engine
/// does not use.
pub fn canonical_name(gguf_name: &str) -> Option<String> {
    match gguf_name {
        "token_embd.weight" => return Some(names::EMBED.into()),
        "output_norm.weight" => return Some(names::FINAL_NORM.into()),
        "output.weight" => return Some(names::LM_HEAD.into()),
        _ => {}
    }
    let (layer, rest) = gguf_name.strip_prefix("blk.")?.split_once('.')?;
    let l: usize = layer.parse().ok()?;
    if l.to_string() != layer {
        return None; // `blk.01` is not llama.cpp's spelling
    }
    let suffix = match rest {
        "attn_norm.weight" => names::ATTN_NORM,
        "attn_q.weight" => names::WQ,
        // Phi-3's fused [q; k; v], split at load (formats::split_fused).
        "attn_qkv.weight" => names::QKV_FUSED,
        "attn_k.weight" => names::WK,
        "attn_v.weight" => names::WV,
        "attn_q.bias" => names::BQ,
        "attn_k.bias" => names::BK,
        "attn_v.bias" => names::BV,
        "attn_q_norm.weight" => names::Q_NORM,
        "attn_k_norm.weight" => names::K_NORM,
        "attn_output.weight" => names::WO,
        "ffn_norm.weight" => names::MLP_NORM,
        "ffn_gate.weight" => names::GATE,
        "ffn_up.weight" => names::UP,
        "ffn_down.weight" => names::DOWN,
        // Gemma's norms of the attention and MLP outputs (gains stored as 1 + w).
        "post_attention_norm.weight" => names::POST_ATTN_NORM,
        "post_ffw_norm.weight" => names::POST_MLP_NORM,
        _ => return None,
    };
    Some(names::layer(l, suffix))
}

/// Every tensor the engine uses, under its canonical name. Llama Q/K rows (weights and biases)
/// are un-permuted into owned buffers; everything else stays a range of the memory map.
pub fn model_tensors(
    file: &GgufFile,
    config: &ModelConfig,
) -> Result<BTreeMap<String, HostTensor>> {
    let mut out = BTreeMap::new();
    for info in &file.tensors {
        let Some(mut name) = canonical_name(&info.name) else {
            continue;
        };
        // Phi-3's `ffn_up` holds gate and up (llama.cpp's SwiGLU halves, gate first) where the
        // layer has no `ffn_gate`.
        if config.arch == Arch::Phi3 && name.ends_with(names::UP) {
            let gate = info.name.replace("ffn_up", "ffn_gate");
            if file.tensor_info(&gate).is_none() {
                name = name.replace(names::UP, names::GATE_UP_FUSED);
            }
        }
        let dtype = info
            .ggml_type
            .dtype()
            .ok_or_else(|| Error::UnsupportedDtype {
                path: file.path.clone(),
                tensor: info.name.clone(),
                dtype: info.ggml_type.to_string(),
            })?;
        let q = name.ends_with(names::WQ) || name.ends_with(names::BQ);
        let k = name.ends_with(names::WK) || name.ends_with(names::BK);
        let storage = if config.arch == Arch::Llama && (q || k) {
            let n_head = if q { config.n_heads } else { config.n_kv_heads };
            let rows = info.shape.first().copied().unwrap_or(1);
            let bytes = file.tensor_bytes(info);
            let unpermuted = unpermute_rows(bytes, rows, n_head).ok_or_else(|| {
                let want = if q { config.q_dim() } else { config.kv_dim() };
                let mut expected = info.shape.clone();
                match expected.first_mut() {
                    Some(e) => *e = want,
                    None => expected.push(want),
                }
                Error::ShapeMismatch {
                    path: file.path.clone(),
                    tensor: info.name.clone(),
                    expected,
                    found: info.shape.clone(),
                }
            })?;
            Storage::Owned(Arc::new(unpermuted))
        } else {
            file.tensor_storage(info)
        };
        out.insert(
            name.clone(),
            HostTensor {
                name,
                dtype,
                shape: info.shape.clone(),
                storage,
            },
        );
    }
    if config.arch != Arch::Phi3 {
        return Ok(out);
    }
    crate::formats::split_fused(out, config, |tensor, expected, found| {
        let gguf = if tensor.ends_with(names::QKV_FUSED) {
            "attn_qkv"
        } else {
            "ffn_up"
        };
        let layer = (tensor.strip_prefix("model.layers."))
            .and_then(|r| r.split('.').next())
            .unwrap_or("?");
        Error::ShapeMismatch {
            path: file.path.clone(),
            tensor: format!("blk.{layer}.{gguf}.weight"),
            expected,
            found,
        }
    })
}

/// Undoes llama.cpp's Q/K row permutation (`LlamaModel.permute` in convert_hf_to_gguf.py).
///
/// The converter views the `rows` rows as `(n_head, 2, half)` and swaps the last two axes, so the
/// file's row `h·2·half + 2i + j` is the model's row `h·2·half + j·half + i`
/// (`j` ∈ {0, 1}, `i` < `half`). Rows move whole, so any dtype whose rows are a whole number of
/// blocks un-permutes without decoding. `None` when the rows do not split into `n_head` pairs of
/// halves, or the bytes do not split into `rows` equal rows.
pub fn unpermute_rows(bytes: &[u8], rows: usize, n_head: usize) -> Option<Vec<u8>> {
    permute_with(bytes, rows, n_head, |h, i, j, half| {
        // (model row, file row)
        (h * 2 * half + j * half + i, h * 2 * half + 2 * i + j)
    })
}

/// llama.cpp's permutation itself (the inverse of [`unpermute_rows`]).
pub fn permute_rows(bytes: &[u8], rows: usize, n_head: usize) -> Option<Vec<u8>> {
    permute_with(bytes, rows, n_head, |h, i, j, half| {
        (h * 2 * half + 2 * i + j, h * 2 * half + j * half + i)
    })
}

/// Copies row `src` of `bytes` to row `dst` of the output for every `(dst, src)` that
/// `map(h, i, j, half)` gives.
fn permute_with(
    bytes: &[u8],
    rows: usize,
    n_head: usize,
    map: impl Fn(usize, usize, usize, usize) -> (usize, usize),
) -> Option<Vec<u8>> {
    if n_head == 0
        || rows == 0
        || !rows.is_multiple_of(2 * n_head)
        || !bytes.len().is_multiple_of(rows)
    {
        return None;
    }
    let half = rows / n_head / 2;
    let row_bytes = bytes.len() / rows;
    let mut out = vec![0u8; bytes.len()];
    for h in 0..n_head {
        for i in 0..half {
            for j in 0..2 {
                let (dst, src) = map(h, i, j, half);
                out[dst * row_bytes..(dst + 1) * row_bytes]
                    .copy_from_slice(&bytes[src * row_bytes..(src + 1) * row_bytes]);
            }
        }
    }
    Some(out)
}
