//! The oracle: a Llama-family decoder (Llama 2/3, Mistral, SmolLM2, TinyLlama, Qwen2, Qwen3,
//! Gemma 2/3, Phi-3) in f32 on ndarray, written to be read. Every other implementation is judged
//! against it. The families differ by data ([`config::Features`]) and optional weights, listed
//! after the steps.
//!
//! The forward pass ([`Model::forward`]) for tokens at positions `p0..p0 + seq`:
//! 1. `x = embed[tokens]`, the residual stream, (seq, hidden).
//! 2. For each layer: `h = rms_norm(x)`; `q, k, v = h·Wqᵀ (+bq), h·Wkᵀ (+bk), h·Wvᵀ (+bv)`, split
//!    into heads; with QK-norm (Qwen3) each q and k head is RMS-normalised over head_dim; RoPE
//!    rotates q and k by their absolute positions (rotate-half pairs
//!    `(i, i + d/2)`, frequencies `theta^(-2i/d)`, optionally Llama 3 scaled); k and v are
//!    appended to the KV cache; each query head attends causally (position p sees keys 0..=p,
//!    scale `1/sqrt(d)`) to its KV head (`h / (n_heads / n_kv_heads)`, grouped-query
//!    attention); `x += concat(heads)·Woᵀ`.
//! 3. Then the MLP: `h = rms_norm(x)`; `x += (silu(h·W_gateᵀ) * h·W_upᵀ)·W_downᵀ`.
//! 4. `logits = rms_norm(x)·W_headᵀ`, where `W_head` is the embedding table when tied.
//!
//! Family departures, each one line of the forward pass: Gemma scales the embedding by
//! √hidden, normalises each block's output again before its residual add (post-norms), gates
//! the MLP with GELU-tanh, scales scores by `query_pre_attn_scalar^-0.5`, applies QK-norm
//! (Gemma 3), slides a window over some layers only with a RoPE base of their own (Gemma 3)
//! and soft-caps scores and logits (Gemma 2). Gemma's `(1 + w)` norm gains are resolved at load.
//! Phi-3's LongRoPE divides each frequency by a short or a long factor (chosen by the KV
//! cache's capacity) and scales cos and sin by an attention factor; its fused `qkv_proj` and
//! `gate_up_proj` are split by whoever loads the weights.
//!
//! Arithmetic follows transformers' formulas and their order where it changes f32 rounding
//! (RMSNorm, inverse frequencies, RoPE angles), so the logits agree with transformers' f32
//! forward to reassociation error. [`sampler`] turns logits into a token with the same
//! warpers as transformers, in a fixed order, taking its randomness as an argument.

pub mod config;
pub mod error;
pub mod kv_cache;
pub mod model;
pub mod ops;
pub mod sampler;
pub mod weights;

pub use config::{Activation, Config, Features, RopeConfig, RopeScaling};
pub use error::{Error, Result};
pub use kv_cache::KvCache;
pub use model::{Model, Trace};
pub use sampler::{distribution, sample, SamplingParams};
pub use weights::{LayerWeights, Weights};
