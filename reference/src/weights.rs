//! The model's parameters, f32, in PyTorch layout: a linear weight is `(out, in)` and a
//! projection computes `y = x · Wᵀ + b`.

use ndarray::{Array1, Array2};

/// One decoder layer: pre-norm attention, then pre-norm gated MLP. The optional tensors are
/// the family differences (Qwen2's QKV bias, Qwen3's and Gemma 3's QK-norm, Gemma's
/// post-norms): present means applied. Gains are the factors the normalised values are
/// multiplied by: Gemma's `(1 + w)` convention is resolved when the weights are loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerWeights {
    /// (hidden)
    pub attn_norm: Array1<f32>,
    /// (n_heads * head_dim, hidden)
    pub wq: Array2<f32>,
    /// (n_kv_heads * head_dim, hidden)
    pub wk: Array2<f32>,
    /// (n_kv_heads * head_dim, hidden)
    pub wv: Array2<f32>,
    /// (n_heads * head_dim); Qwen2 only
    pub bq: Option<Array1<f32>>,
    /// (n_kv_heads * head_dim); Qwen2 only
    pub bk: Option<Array1<f32>>,
    /// (n_kv_heads * head_dim); Qwen2 only
    pub bv: Option<Array1<f32>>,
    /// (head_dim); Qwen3 only: the QK-norm gain applied to every query head before RoPE
    pub q_norm: Option<Array1<f32>>,
    /// (head_dim); Qwen3 only: the QK-norm gain applied to every key head before RoPE
    pub k_norm: Option<Array1<f32>>,
    /// (hidden, n_heads * head_dim)
    pub wo: Array2<f32>,
    /// (hidden); Gemma only: the attention block's output is normalised before the residual
    /// add (transformers' Gemma `post_attention_layernorm`)
    pub post_attn_norm: Option<Array1<f32>>,
    /// (hidden)
    pub mlp_norm: Array1<f32>,
    /// (intermediate, hidden)
    pub w_gate: Array2<f32>,
    /// (intermediate, hidden)
    pub w_up: Array2<f32>,
    /// (hidden, intermediate)
    pub w_down: Array2<f32>,
    /// (hidden); Gemma only: the MLP's output is normalised before the residual add
    /// (`post_feedforward_layernorm`)
    pub post_mlp_norm: Option<Array1<f32>>,
}

/// The whole model.
#[derive(Debug, Clone, PartialEq)]
pub struct Weights {
    /// (vocab, hidden)
    pub embed: Array2<f32>,
    pub layers: Vec<LayerWeights>,
    /// (hidden)
    pub final_norm: Array1<f32>,
    /// (vocab, hidden); `None` when the head is tied to `embed`.
    pub lm_head: Option<Array2<f32>>,
}

impl Weights {
    /// The output projection: `lm_head`, or the embedding table when tied. (vocab, hidden)
    pub fn head(&self) -> &Array2<f32> {
        self.lm_head.as_ref().unwrap_or(&self.embed)
    }
}
