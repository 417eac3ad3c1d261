//! Hyper-parameters of a Llama-family decoder: everything the forward pass needs and nothing else.
//! What sets a family apart from Llama (Gemma's GELU-tanh, embedding scale, soft-capping,
//! per-layer windows and RoPE bases, ...) is data in [`Features`], never a fork of the forward
//! pass; tensors a family adds (Qwen3's QK-norm, Gemma's post-norms) are optional weights.

use crate::error::{Error, Result};

/// The shape of the model. `head_dim` is explicit: it is not always `hidden_size / n_heads`.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    /// Fewer than `n_heads` under grouped-query attention; must divide `n_heads`.
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f32,
    pub rope: RopeConfig,
    /// Sliding-window attention (Mistral): every layer's query at position p sees only the keys
    /// `p − w < j ≤ p`; `None`: full causal attention.
    pub sliding_window: Option<usize>,
    /// The family's departures from Llama; `Features::default()` is Llama.
    pub features: Features,
}

/// The gated MLP's activation: `act(gate) * up`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activation {
    /// `x / (1 + e^(−x))` (Llama, Qwen, Mistral: transformers' `"silu"`).
    #[default]
    Silu,
    /// GELU with the tanh approximation (Gemma: transformers' `"gelu_pytorch_tanh"`,
    /// PyTorch's `gelu(x, approximate="tanh")`).
    GeluTanh,
}

/// Family differences that are numbers, not tensors. Each is one small function of the
/// forward pass (see its field); the defaults are Llama's.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Features {
    /// The MLP's gate activation ([`crate::ops::gated`]).
    pub activation: Activation,
    /// The embedding rows are multiplied by this (Gemma: `hidden_size ** 0.5`, transformers'
    /// `Gemma3TextScaledWordEmbedding.embed_scale`, an f32 of the Python double).
    pub embed_scale: Option<f32>,
    /// Attention scores are scaled by `query_pre_attn_scalar ** -0.5` instead of
    /// `head_dim ** -0.5` (Gemma 2/3: `Gemma3Attention.scaling`).
    pub query_pre_attn_scalar: Option<f32>,
    /// Attention scores (after scaling, before the mask) become `c · tanh(s / c)` (Gemma 2's
    /// `attn_logit_softcapping`, [`crate::ops::softcap`]).
    pub attn_logit_softcap: Option<f32>,
    /// The logits become `c · tanh(l / c)` (Gemma 2's `final_logit_softcapping`).
    pub final_logit_softcap: Option<f32>,
    /// Which layers [`Config::sliding_window`] applies to (Gemma: `layer_types`, five
    /// `"sliding_attention"` to one `"full_attention"`; Qwen2/Qwen3 with `use_sliding_window`:
    /// the layers from `max_window_layers` on); `None`: every layer (Mistral).
    pub sliding_layers: Option<Vec<bool>>,
    /// The RoPE of the sliding layers where it differs from [`Config::rope`] (Gemma 3:
    /// `rope_parameters["sliding_attention"]`, theta 10 000 beside the global layers' 10⁶).
    pub rope_local: Option<RopeConfig>,
}

/// Rotary position embedding: base and an optional rescaling of the frequencies.
#[derive(Debug, Clone, PartialEq)]
pub struct RopeConfig {
    /// The base of the frequencies (`rope_theta`), e.g. 10000 or 500000.
    pub theta: f32,
    pub scaling: RopeScaling,
}

/// How the default inverse frequencies `theta^(-2i/d)` are rescaled.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// The original RoPE.
    None,
    /// Llama 3.1 frequency-dependent scaling (transformers' `rope_type = "llama3"`).
    Llama3 {
        factor: f32,
        low_freq_factor: f32,
        high_freq_factor: f32,
        original_max_position_embeddings: usize,
    },
    /// Per-frequency divisors as GGUF files store them (`rope_freqs.weight`, `head_dim / 2`
    /// values): `inv_freq[i] = theta^(-2i/d) / factors[i]`.
    FreqFactors(Vec<f32>),
    /// LongRoPE (Phi-3/3.5 mini, transformers' `rope_type = "longrope"`,
    /// `_compute_longrope_parameters`): per-frequency divisors,
    /// `inv_freq[i] = 1 / (ext[i] · theta^(2i/d))`, with `ext = short_factor` for a context of at
    /// most `original_max_position_embeddings` positions and `long_factor` beyond it
    /// ([`RopeScaling::longrope_long`]); cos and sin are multiplied by `attention_factor`
    /// (`Phi3RotaryEmbedding.attention_scaling`: the config's `attention_factor`, else
    /// `√(1 + ln(factor) / ln(original_max_position_embeddings))` with
    /// `factor = max_position_embeddings / original_max_position_embeddings`, or 1 when
    /// `factor ≤ 1`; resolved by whoever builds the config).
    LongRope {
        /// (head_dim / 2)
        short_factor: Vec<f32>,
        /// (head_dim / 2)
        long_factor: Vec<f32>,
        original_max_position_embeddings: usize,
        attention_factor: f32,
    },
}

impl Config {
    /// Width of the concatenated query heads.
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    /// Width of the concatenated key (or value) heads.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// The sliding window of layer `l`, if it slides.
    pub fn layer_window(&self, l: usize) -> Option<usize> {
        match &self.features.sliding_layers {
            Some(slides) if !slides.get(l).copied().unwrap_or(false) => None,
            _ => self.sliding_window,
        }
    }

    /// The rotary embedding of layer `l`: [`Features::rope_local`] on a sliding layer that
    /// has one, else [`Config::rope`].
    pub fn layer_rope(&self, l: usize) -> &RopeConfig {
        match &self.features.rope_local {
            Some(local) if self.layer_window(l).is_some() => local,
            _ => &self.rope,
        }
    }

    /// The factor attention scores are multiplied by: `query_pre_attn_scalar ** -0.5` where the
    /// family sets it, else `head_dim ** -0.5` (each a Python double, used as f32).
    pub fn attn_scale(&self) -> f32 {
        let d = self
            .features
            .query_pre_attn_scalar
            .map_or(self.head_dim as f64, f64::from);
        d.powf(-0.5) as f32
    }

    /// Checks that the fields are consistent: sizes positive, `n_kv_heads` dividing
    /// `n_heads`, an even `head_dim`, and rope parameters that give finite frequencies.
    pub fn validate(&self) -> Result<()> {
        let bad = |field, reason: String| Err(Error::BadConfig { field, reason });
        let sizes = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("n_heads", self.n_heads),
            ("n_kv_heads", self.n_kv_heads),
            ("head_dim", self.head_dim),
        ];
        if let Some((field, _)) = sizes.iter().find(|(_, v)| *v == 0) {
            return bad(field, "must be positive".into());
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return bad(
                "n_kv_heads",
                format!("{} does not divide n_heads", self.n_kv_heads),
            );
        }
        if !self.head_dim.is_multiple_of(2) {
            return bad(
                "head_dim",
                format!("{} is odd; RoPE rotates pairs", self.head_dim),
            );
        }
        if !(self.rms_norm_eps >= 0.0 && self.rms_norm_eps.is_finite()) {
            return bad(
                "rms_norm_eps",
                format!("{} is not a number >= 0", self.rms_norm_eps),
            );
        }
        if self.sliding_window == Some(0) {
            return bad("sliding_window", "must be positive".into());
        }
        if !positive(self.rope.theta) {
            return bad("rope.theta", format!("{} is not positive", self.rope.theta));
        }
        self.rope.scaling.validate(self.head_dim)?;
        self.features.validate(self)
    }
}

impl Features {
    fn validate(&self, c: &Config) -> Result<()> {
        let bad = |field, reason: String| Err(Error::BadConfig { field, reason });
        for (field, v) in [
            ("features.embed_scale", self.embed_scale),
            ("features.query_pre_attn_scalar", self.query_pre_attn_scalar),
            ("features.attn_logit_softcap", self.attn_logit_softcap),
            ("features.final_logit_softcap", self.final_logit_softcap),
        ] {
            if let Some(x) = v.filter(|&x| !positive(x)) {
                return bad(field, format!("{x} is not positive"));
            }
        }
        if let Some(slides) = &self.sliding_layers {
            if slides.len() != c.n_layers {
                return bad(
                    "features.sliding_layers",
                    format!("{} entries for {} layers", slides.len(), c.n_layers),
                );
            }
            if c.sliding_window.is_none() {
                return bad(
                    "features.sliding_layers",
                    "set without a sliding_window".into(),
                );
            }
        }
        if let Some(local) = &self.rope_local {
            if !positive(local.theta) {
                return bad(
                    "features.rope_local.theta",
                    format!("{} is not positive", local.theta),
                );
            }
            local.scaling.validate(c.head_dim)?;
        }
        Ok(())
    }
}

impl RopeScaling {
    /// Whether LongRoPE takes its long factors for a context of `context` positions:
    /// transformers' `longrope_frequency_update` takes them when `max(position_ids) + 1 >
    /// original_max_position_embeddings`, re-deciding at every forward (keys already cached
    /// keep the rotation they were written with); the reference decides once per KV cache, by
    /// its capacity (llama.cpp's rule: `n_ctx_per_seq > n_ctx_orig_yarn`), which is
    /// transformers' choice for a forward that fills the cache (`context` = its length).
    /// False for every other scaling.
    pub fn longrope_long(&self, context: usize) -> bool {
        matches!(self, RopeScaling::LongRope { original_max_position_embeddings: n, .. } if context > *n)
    }

    /// The factor cos and sin are multiplied by: LongRoPE's `attention_factor`, else 1.
    pub fn attention_factor(&self) -> f32 {
        match self {
            RopeScaling::LongRope {
                attention_factor, ..
            } => *attention_factor,
            _ => 1.0,
        }
    }

    fn validate(&self, head_dim: usize) -> Result<()> {
        let bad = |reason: String| {
            Err(Error::BadConfig {
                field: "rope.scaling",
                reason,
            })
        };
        match self {
            RopeScaling::None => Ok(()),
            RopeScaling::FreqFactors(f) if f.len() != head_dim / 2 => bad(format!(
                "{} frequency factors, expected head_dim / 2",
                f.len()
            )),
            RopeScaling::FreqFactors(f) => match f.iter().find(|&&x| !positive(x)) {
                Some(x) => bad(format!("frequency factor {x} is not positive")),
                None => Ok(()),
            },
            RopeScaling::LongRope {
                short_factor,
                long_factor,
                original_max_position_embeddings: n,
                attention_factor,
            } => {
                for (name, f) in [("short_factor", short_factor), ("long_factor", long_factor)] {
                    if f.len() != head_dim / 2 {
                        return bad(format!(
                            "longrope: {} {name} values, expected head_dim / 2 = {}",
                            f.len(),
                            head_dim / 2
                        ));
                    }
                    if let Some(x) = f.iter().find(|&&x| !positive(x)) {
                        return bad(format!("longrope: {name} value {x} is not positive"));
                    }
                }
                if *n == 0 || !positive(*attention_factor) {
                    return bad("longrope: need original_max_position_embeddings > 0 and \
                         attention_factor > 0"
                        .into());
                }
                Ok(())
            }
            &RopeScaling::Llama3 {
                factor,
                low_freq_factor: low,
                high_freq_factor: high,
                original_max_position_embeddings: n,
            } => {
                if positive(factor) && positive(low) && positive(high) && high > low && n > 0 {
                    return Ok(());
                }
                bad(
                    "llama3: need factor > 0, high_freq_factor > low_freq_factor > 0 and \
                     original_max_position_embeddings > 0"
                        .into(),
                )
            }
        }
    }
}

/// A finite number > 0.
fn positive(x: f32) -> bool {
    x > 0.0 && x.is_finite()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn longrope(short: usize, long: usize, original: usize, af: f32) -> RopeScaling {
        RopeScaling::LongRope {
            short_factor: vec![1.0; short],
            long_factor: vec![2.0; long],
            original_max_position_embeddings: original,
            attention_factor: af,
        }
    }

    #[test]
    fn longrope_factor_lists_must_have_head_dim_over_2_positive_values() {
        assert!(longrope(4, 4, 64, 1.2).validate(8).is_ok());
        for (bad, what) in [
            (longrope(3, 4, 64, 1.2), "short_factor"),
            (longrope(4, 5, 64, 1.2), "long_factor"),
            (longrope(4, 4, 0, 1.2), "original_max_position_embeddings"),
            (longrope(4, 4, 64, 0.0), "attention_factor"),
        ] {
            match bad.validate(8) {
                Err(Error::BadConfig { field, reason }) => {
                    assert_eq!(field, "rope.scaling");
                    assert!(reason.contains(what), "{reason}");
                }
                other => panic!("{what}: {other:?}"),
            }
        }
        let mut negative = longrope(4, 4, 64, 1.2);
        if let RopeScaling::LongRope { long_factor, .. } = &mut negative {
            long_factor[2] = -1.0;
        }
        assert!(negative.validate(8).is_err());
    }

    #[test]
    fn only_longrope_has_an_attention_factor_and_a_long_set() {
        let l = longrope(4, 4, 64, 1.25);
        assert_eq!(l.attention_factor(), 1.25);
        assert!(!l.longrope_long(64) && l.longrope_long(65));
        assert_eq!(RopeScaling::None.attention_factor(), 1.0);
        assert!(!RopeScaling::None.longrope_long(usize::MAX));
    }
}
