//! Hyper-parameters of a Llama-family decoder: everything the forward pass needs and nothing else.

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
}
