//! Hyper-parameters of a Llama-family decoder: everything the forward pass needs and nothing else.

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
        self.rope.scaling.validate(self.head_dim)
    }
}

impl RopeScaling {
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
