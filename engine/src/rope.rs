//! Rotary inverse frequencies, computed on the host once per model as transformers does
//! (f32: `1 / theta^(2i/d)`), with Llama 3 scaling or GGUF per-frequency factors applied.

use crate::config::ModelConfig;

/// The rotary table the backends' RoPE takes: `freqs` (head_dim / 2), then the attention
/// factor cos and sin are multiplied by (LongRoPE's [`crate::config::LongRope::attention_factor`],
/// else 1, a no-op in f32). The rotation is linear, so the factor could as well scale q and k:
/// it rides in the table so that the kernels, the KV cache and the reference see the same
/// values with no rounding of weights.
pub fn table(mut freqs: Vec<f32>, attention_factor: f32) -> Vec<f32> {
    freqs.push(attention_factor);
    freqs
}

/// The attention factor of `config`'s rotary table (1 without LongRoPE).
pub fn attention_factor(config: &ModelConfig) -> f32 {
    config
        .rope_longrope
        .as_ref()
        .map_or(1.0, |r| r.attention_factor)
}

/// The unscaled inverse frequencies of Gemma 3's sliding layers (base
/// [`ModelConfig::rope_local_theta`]), `None` where the model has no local base.
pub fn local_inv_freq(config: &ModelConfig) -> Option<Vec<f32>> {
    let theta = config.rope_local_theta?;
    let d = config.head_dim;
    Some(default_inv_freq(d, theta))
}

/// `1 / theta^(2i/d)`, i in 0..d/2, in f32 as transformers computes it.
fn default_inv_freq(d: usize, theta: f32) -> Vec<f32> {
    (0..d / 2)
        .map(|i| 1.0 / theta.powf((2 * i) as f32 / d as f32))
        .collect()
}

/// LongRoPE's frequencies with its short (`long` false) or long factors, `None` without
/// LongRoPE: transformers' `1.0 / (ext_factors * base**inv_freq_shape)` in f32 (the divisor
/// multiplies the power before the reciprocal, so the rounding agrees).
pub fn longrope_inv_freq(config: &ModelConfig, long: bool) -> Option<Vec<f32>> {
    let r = config.rope_longrope.as_ref()?;
    let ext = if long {
        &r.long_factor
    } else {
        &r.short_factor
    };
    let d = config.head_dim as f32;
    Some(
        ext.iter()
            .take(config.head_dim / 2)
            .enumerate()
            .map(|(i, e)| 1.0 / (e * config.rope_theta.powf((2 * i) as f32 / d)))
            .collect(),
    )
}

/// `head_dim / 2` inverse frequencies for `config` (its global layers, where sliding layers
/// have a base of their own: [`local_inv_freq`]; LongRoPE's short set, the long one is
/// [`longrope_inv_freq`]).
pub fn inv_freq(config: &ModelConfig) -> Vec<f32> {
    if let Some(f) = longrope_inv_freq(config, false) {
        return f;
    }
    let base = default_inv_freq(config.head_dim, config.rope_theta);
    if let Some(f) = &config.rope_freq_factors {
        return base.iter().zip(f).map(|(b, f)| b / f).collect();
    }
    let Some(s) = config.rope_scaling else {
        return base;
    };
    // transformers `_compute_llama3_parameters`: long wavelengths divided by `factor`,
    // short ones kept, a smooth blend in between.
    let old = s.original_max_position_embeddings as f32;
    let low_freq_wavelen = old / s.low_freq_factor;
    let high_freq_wavelen = old / s.high_freq_factor;
    base.iter()
        .map(|&f| {
            let wavelen = 2.0 * std::f32::consts::PI / f;
            let scaled = if wavelen > low_freq_wavelen {
                f / s.factor
            } else {
                f
            };
            let medium = wavelen >= high_freq_wavelen && wavelen <= low_freq_wavelen;
            if medium {
                let smooth =
                    (old / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
                (1.0 - smooth) * scaled / s.factor + smooth * scaled
            } else {
                scaled
            }
        })
        .collect()
}
