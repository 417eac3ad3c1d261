//! The model hyper-parameters the engine needs, whatever file they came from
//! (Hugging Face `config.json` or GGUF metadata).

pub use crate::backend::Activation;

/// Decoder families the engine runs. They differ only in the details recorded in
/// [`ModelConfig`] (QKV bias, QK-norm, tied head, rope scaling, Gemma's activation, scales,
/// post-norms and per-layer windows), so one forward pass serves all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// Llama 2/3/3.x, Mistral, SmolLM2, TinyLlama.
    Llama,
    /// Qwen2: Llama with a bias on the Q, K and V projections.
    Qwen2,
    /// Qwen3: Llama with QK-norm (an RMSNorm over head_dim on every query and key head, before
    /// RoPE), no QKV bias, and a head_dim of its own (not hidden / heads).
    Qwen3,
    /// Gemma 3 (text): GELU-tanh gate, embedding × √hidden, QK-norm, a norm after attention
    /// and after the MLP as well as before each, `(1 + w)` norm gains (resolved at load), and
    /// five sliding-window layers (RoPE base 10 000) to one global layer (10⁶).
    Gemma3,
    /// Gemma 2: Gemma 3's layer (four norms, `(1 + w)` gains, GELU-tanh, embedding × √hidden)
    /// without QK-norm, with attention logit and final logit soft-capping, a score scale of its
    /// own (`query_pre_attn_scalar`) and a sliding window on every other layer (the even ones),
    /// one RoPE base.
    Gemma2,
    /// Phi-3/3.5 mini: Llama's forward with fused `qkv_proj` and `gate_up_proj` tensors (split
    /// at load) and LongRoPE scaling ([`LongRope`]).
    Phi3,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
            Arch::Gemma3 => "gemma3",
            Arch::Gemma2 => "gemma2",
            Arch::Phi3 => "phi3",
        }
    }
}

/// Llama 3 style frequency-dependent RoPE scaling (`rope_type = "llama3"` in transformers).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Llama3RopeScaling {
    pub factor: f32,
    pub low_freq_factor: f32,
    pub high_freq_factor: f32,
    pub original_max_position_embeddings: usize,
}

/// LongRoPE (Phi-3/3.5, transformers' `rope_type = "longrope"`, `_compute_longrope_parameters`;
/// llama.cpp's `rope_factors_short` / `rope_factors_long`): `inv_freq[i] = 1 / (ext[i] ·
/// theta^(2i/d))` with `ext` the short factors for a context of at most
/// `original_max_position_embeddings` positions and the long ones beyond
/// ([`ModelConfig::longrope_long`]), and cos and sin multiplied by `attention_factor`.
#[derive(Debug, Clone, PartialEq)]
pub struct LongRope {
    /// (head_dim / 2)
    pub short_factor: Vec<f32>,
    /// (head_dim / 2)
    pub long_factor: Vec<f32>,
    pub original_max_position_embeddings: usize,
    /// transformers' `attention_scaling`: the config's `attention_factor`, else
    /// `√(1 + ln(factor) / ln(original))` for `factor = max_position_embeddings / original > 1`
    /// (else 1); GGUF's `rope.scaling.attn_factor`.
    pub attention_factor: f32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub arch: Arch,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    /// Per-head dimension; not always `hidden_size / n_heads`.
    pub head_dim: usize,
    pub rms_norm_eps: f32,
    pub rope_theta: f32,
    pub rope_scaling: Option<Llama3RopeScaling>,
    /// Per-frequency divisors of the rotary frequencies (`head_dim / 2` of them), as GGUF files
    /// store Llama 3 scaling (`rope_freqs.weight`): `inv_freq[i] = theta^(-2i/d) / factor[i]`.
    pub rope_freq_factors: Option<Vec<f32>>,
    /// LongRoPE scaling (Phi-3/3.5).
    pub rope_longrope: Option<LongRope>,
    /// The context length the model was trained for; the default KV capacity.
    pub max_position_embeddings: usize,
    /// Sliding-window attention (Mistral's, Gemma's and Qwen's `sliding_window`): the query at
    /// position p sees only the keys `p − w < j ≤ p`. `None`: full causal attention.
    pub sliding_window: Option<usize>,
    /// The layers the window applies to (Gemma's and Qwen's `layer_types`: true = sliding);
    /// `None`: every layer (Mistral). See [`ModelConfig::layer_window`].
    pub sliding_layers: Option<Vec<bool>>,
    /// The RoPE base of the sliding layers, where it differs from `rope_theta` (Gemma 3's
    /// local base, 10 000); unscaled.
    pub rope_local_theta: Option<f32>,
    /// The MLP's gate activation (Gemma: GELU-tanh).
    pub activation: Activation,
    /// The embedding rows are multiplied by this (Gemma: `hidden_size ** 0.5` as f32).
    pub embed_scale: Option<f32>,
    /// Attention scores are scaled by `query_pre_attn_scalar ** -0.5` instead of
    /// `head_dim ** -0.5` (Gemma 2/3; 27B's differs from its head_dim). See
    /// [`ModelConfig::attn_scale`].
    pub query_pre_attn_scalar: Option<f32>,
    /// Attention scores, after scaling and before the mask, become `c · tanh(s / c)` (Gemma 2's
    /// `attn_logit_softcapping`).
    pub attn_logit_softcap: Option<f32>,
    /// The logits become `c · tanh(l / c)` before sampling (Gemma 2's
    /// `final_logit_softcapping`).
    pub final_logit_softcap: Option<f32>,
    /// Each layer normalises its attention output and its MLP output before the residual adds
    /// (Gemma's `post_attention_layernorm` / `post_feedforward_layernorm`).
    pub post_norms: bool,
    /// The LM head is the token embedding (no separate `lm_head.weight`).
    pub tie_word_embeddings: bool,
    /// Q, K and V projections carry a bias (Qwen2).
    pub attention_bias: bool,
    /// Each layer's query and key heads are RMS-normalised over head_dim before RoPE, with the
    /// gains `self_attn.q_norm.weight` and `self_attn.k_norm.weight` (head_dim) (Qwen3).
    pub qk_norm: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
}

impl ModelConfig {
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// The sliding window of layer `l`, if it slides.
    pub fn layer_window(&self, l: usize) -> Option<usize> {
        match &self.sliding_layers {
            Some(slides) if !slides.get(l).copied().unwrap_or(false) => None,
            _ => self.sliding_window,
        }
    }

    /// Whether a sequence of `context` positions (its KV capacity) rotates with LongRoPE's long
    /// factors: when `context` exceeds `original_max_position_embeddings`, llama.cpp's rule
    /// (`n_ctx_per_seq > n_ctx_orig_yarn`). transformers re-decides at every forward by
    /// `max(position_ids) + 1`; the two agree for a forward that fills the context, and the
    /// engine never switches a sequence's frequencies mid-way. False without LongRoPE.
    pub fn longrope_long(&self, context: usize) -> bool {
        self.rope_longrope
            .as_ref()
            .is_some_and(|r| context > r.original_max_position_embeddings)
    }

    /// Whether layer `l` rotates with [`ModelConfig::rope_local_theta`].
    pub fn layer_uses_local_rope(&self, l: usize) -> bool {
        self.rope_local_theta.is_some() && self.layer_window(l).is_some()
    }

    /// The factor on `q·k` where it is not `head_dim ** -0.5`: `query_pre_attn_scalar ** -0.5`
    /// (a double, used as f32, as transformers' `self.scaling`); `None` where the scalar is
    /// head_dim (the kernels' default is then the same number).
    pub fn attn_scale(&self) -> Option<f32> {
        self.query_pre_attn_scalar
            .filter(|&s| f64::from(s) != self.head_dim as f64)
            .map(|s| f64::from(s).powf(-0.5) as f32)
    }

    /// Query heads per KV head (the GQA ratio).
    pub fn gqa_ratio(&self) -> usize {
        self.n_heads / self.n_kv_heads
    }

    /// Every tensor the model needs, by canonical name, with its shape (outermost first, as
    /// PyTorch writes it: a linear weight is `(out_features, in_features)`).
    pub fn expected_tensors(&self) -> Vec<(String, Vec<usize>)> {
        let (h, i, v) = (self.hidden_size, self.intermediate_size, self.vocab_size);
        let mut t = vec![(names::EMBED.to_string(), vec![v, h])];
        for l in 0..self.n_layers {
            let n = |s: &str| names::layer(l, s);
            t.push((n(names::ATTN_NORM), vec![h]));
            t.push((n(names::WQ), vec![self.q_dim(), h]));
            t.push((n(names::WK), vec![self.kv_dim(), h]));
            t.push((n(names::WV), vec![self.kv_dim(), h]));
            if self.attention_bias {
                t.push((n(names::BQ), vec![self.q_dim()]));
                t.push((n(names::BK), vec![self.kv_dim()]));
                t.push((n(names::BV), vec![self.kv_dim()]));
            }
            if self.qk_norm {
                t.push((n(names::Q_NORM), vec![self.head_dim]));
                t.push((n(names::K_NORM), vec![self.head_dim]));
            }
            t.push((n(names::WO), vec![h, self.q_dim()]));
            if self.post_norms {
                t.push((n(names::POST_ATTN_NORM), vec![h]));
            }
            t.push((n(names::MLP_NORM), vec![h]));
            t.push((n(names::GATE), vec![i, h]));
            t.push((n(names::UP), vec![i, h]));
            t.push((n(names::DOWN), vec![h, i]));
            if self.post_norms {
                t.push((n(names::POST_MLP_NORM), vec![h]));
            }
        }
        t.push((names::FINAL_NORM.to_string(), vec![h]));
        if !self.tie_word_embeddings {
            t.push((names::LM_HEAD.to_string(), vec![v, h]));
        }
        t
    }

    /// What sets this model apart from a plain Llama, in words (`wavefront info`): e.g.
    /// `["QK-norm", "tied LM head"]` for Qwen3-0.6B.
    pub fn features(&self) -> Vec<&'static str> {
        let mut f = Vec::new();
        if self.attention_bias {
            f.push("QKV bias");
        }
        if self.qk_norm {
            f.push("QK-norm");
        }
        match (&self.sliding_window, &self.sliding_layers) {
            (Some(_), Some(_)) => f.push("sliding-window attention on some layers"),
            (Some(_), None) => f.push("sliding-window attention"),
            _ => {}
        }
        if self.rope_local_theta.is_some() {
            f.push("local RoPE base on sliding layers");
        }
        if self.activation == Activation::GeluTanh {
            f.push("GELU-tanh MLP");
        }
        if self.embed_scale.is_some() {
            f.push("scaled embedding");
        }
        if self.post_norms {
            f.push("post-attention and post-MLP norms");
        }
        if self.attn_scale().is_some() {
            f.push("score scale query_pre_attn_scalar^-0.5");
        }
        if self.attn_logit_softcap.is_some() {
            f.push("attention logit soft-cap");
        }
        if self.final_logit_softcap.is_some() {
            f.push("final logit soft-cap");
        }
        if self.rope_longrope.is_some() {
            f.push("longrope scaling");
        }
        if self.rope_scaling.is_some() {
            f.push("llama3 rope scaling");
        } else if self.rope_freq_factors.is_some() {
            f.push("rope frequency factors");
        }
        if self.head_dim * self.n_heads != self.hidden_size {
            f.push("head_dim != hidden / heads");
        }
        if self.tie_word_embeddings {
            f.push("tied LM head");
        }
        f
    }

    /// Parameter count, from the tensor list.
    pub fn n_params(&self) -> usize {
        self.expected_tensors()
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }
}

/// Canonical tensor names: the Hugging Face Llama names. Every format maps onto these.
pub mod names {
    pub const EMBED: &str = "model.embed_tokens.weight";
    pub const FINAL_NORM: &str = "model.norm.weight";
    pub const LM_HEAD: &str = "lm_head.weight";

    pub const ATTN_NORM: &str = "input_layernorm.weight";
    pub const WQ: &str = "self_attn.q_proj.weight";
    pub const WK: &str = "self_attn.k_proj.weight";
    pub const WV: &str = "self_attn.v_proj.weight";
    pub const WO: &str = "self_attn.o_proj.weight";
    pub const BQ: &str = "self_attn.q_proj.bias";
    pub const BK: &str = "self_attn.k_proj.bias";
    pub const BV: &str = "self_attn.v_proj.bias";
    pub const Q_NORM: &str = "self_attn.q_norm.weight";
    pub const K_NORM: &str = "self_attn.k_norm.weight";
    /// The MLP's pre-norm (Llama's name; Gemma calls it `pre_feedforward_layernorm`).
    pub const MLP_NORM: &str = "post_attention_layernorm.weight";
    /// Gemma's norm of the attention output (Gemma's HF name is `post_attention_layernorm`,
    /// Llama's MLP_NORM: loaders rename it to this).
    pub const POST_ATTN_NORM: &str = "post_attention_norm.weight";
    /// Gemma's norm of the MLP output.
    pub const POST_MLP_NORM: &str = "post_feedforward_layernorm.weight";
    pub const GATE: &str = "mlp.gate_proj.weight";
    pub const UP: &str = "mlp.up_proj.weight";
    pub const DOWN: &str = "mlp.down_proj.weight";
    /// Phi-3's fused `[Wq; Wk; Wv]`, split into WQ, WK, WV at load.
    pub const QKV_FUSED: &str = "self_attn.qkv_proj.weight";
    /// Phi-3's fused `[W_gate; W_up]`, split into GATE, UP at load.
    pub const GATE_UP_FUSED: &str = "mlp.gate_up_proj.weight";

    /// `model.layers.{layer}.{suffix}`
    pub fn layer(layer: usize, suffix: &str) -> String {
        format!("model.layers.{layer}.{suffix}")
    }
}
