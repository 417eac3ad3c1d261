//! The decoder: embedding, `n_layers` pre-norm blocks (attention, gated MLP), final norm,
//! LM head. Family differences are the config's [`crate::config::Features`] and optional
//! weights, each applied at one line below.

use ndarray::{Array1, Array2, Array3, ArrayView2, Axis, Ix1, Ix2};

use crate::config::{Config, RopeScaling};
use crate::error::{Error, Result};
use crate::kv_cache::KvCache;
use crate::ops::{self, rope, softcap};
use crate::weights::{LayerWeights, Weights};

/// A validated model: the config, its weights and the rotary frequencies they imply.
#[derive(Debug, Clone)]
pub struct Model {
    config: Config,
    weights: Weights,
    /// (head_dim / 2)
    inv_freq: Array1<f32>,
    /// (head_dim / 2): the sliding layers' frequencies where they have a RoPE of their own
    /// (Gemma 3's local base)
    inv_freq_local: Option<Array1<f32>>,
    /// (head_dim / 2): LongRoPE's long-factor frequencies, taken by a KV cache longer than
    /// `original_max_position_embeddings` ([`crate::config::RopeScaling::longrope_long`])
    inv_freq_long: Option<Array1<f32>>,
}

/// Every intermediate of one forward pass that the conformance suite compares.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// n_layers + 1 entries, each (seq, hidden): `[0]` the embedding output, `[i + 1]` the
    /// output of decoder layer i (the residual stream, before the final norm).
    pub hidden: Vec<Array2<f32>>,
    /// (seq, hidden), after the final norm.
    pub final_hidden: Array2<f32>,
    /// (seq, vocab)
    pub logits: Array2<f32>,
}

impl Model {
    /// Checks the config and the shape of every tensor against it.
    pub fn new(config: Config, weights: Weights) -> Result<Model> {
        config.validate()?;
        validate_weights(&config, &weights)?;
        let inv_freq = rope::inv_freq(config.head_dim, &config.rope);
        let inv_freq_local = (config.features.rope_local.as_ref())
            .map(|local| rope::inv_freq(config.head_dim, local));
        let inv_freq_long = matches!(config.rope.scaling, RopeScaling::LongRope { .. })
            .then(|| rope::inv_freq_for_context(config.head_dim, &config.rope, usize::MAX));
        Ok(Model {
            config,
            weights,
            inv_freq,
            inv_freq_local,
            inv_freq_long,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn weights(&self) -> &Weights {
        &self.weights
    }

    /// The rotary inverse frequencies, (head_dim / 2) (of the global layers, where sliding
    /// layers have their own: [`Model::layer_inv_freq`]).
    pub fn inv_freq(&self) -> &Array1<f32> {
        &self.inv_freq
    }

    /// The rotary inverse frequencies of layer `l`, (head_dim / 2) ([`Config::layer_rope`]);
    /// LongRoPE's short set (a KV cache of any capacity: [`Model::layer_inv_freq_for_context`]).
    pub fn layer_inv_freq(&self, l: usize) -> &Array1<f32> {
        self.layer_inv_freq_for_context(l, 0)
    }

    /// The rotary inverse frequencies of layer `l` in a KV cache of `context` positions,
    /// (head_dim / 2): LongRoPE's long set when `context` exceeds its
    /// `original_max_position_embeddings`, else as [`Model::layer_inv_freq`].
    pub fn layer_inv_freq_for_context(&self, l: usize, context: usize) -> &Array1<f32> {
        match (&self.inv_freq_local, &self.inv_freq_long) {
            (Some(local), _) if self.config.layer_window(l).is_some() => local,
            (_, Some(long)) if self.config.rope.scaling.longrope_long(context) => long,
            _ => &self.inv_freq,
        }
    }

    /// An empty KV cache for `capacity` positions, shaped for this model.
    pub fn new_cache(&self, capacity: usize) -> KvCache {
        let c = &self.config;
        KvCache::new(c.n_layers, c.n_kv_heads, capacity, c.head_dim)
    }

    /// Logits (seq, vocab) of `tokens` placed at positions `cache.len()..`; their keys and
    /// values are appended to `cache`. On error the cache is unchanged.
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Array2<f32>> {
        Ok(self.run(tokens, cache, None)?.1)
    }

    /// [`Model::forward`], keeping every hidden state.
    pub fn forward_traced(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Trace> {
        let mut hidden = Vec::with_capacity(self.config.n_layers + 1);
        let (final_hidden, logits) = self.run(tokens, cache, Some(&mut hidden))?;
        Ok(Trace {
            hidden,
            final_hidden,
            logits,
        })
    }

    /// The prompt in one pass: the same as [`Model::forward`].
    pub fn prefill(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Array2<f32>> {
        self.forward(tokens, cache)
    }

    /// One token at position `cache.len()`: its logits (vocab).
    pub fn decode(&self, token: u32, cache: &mut KvCache) -> Result<Array1<f32>> {
        let logits = self.forward(&[token], cache)?; // (1, vocab)
        Ok(logits.index_axis_move(Axis(0), 0))
    }

    /// The forward pass; returns (final hidden, logits), both per new token.
    fn run(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        mut trace: Option<&mut Vec<Array2<f32>>>,
    ) -> Result<(Array2<f32>, Array2<f32>)> {
        let (c, w) = (&self.config, &self.weights);
        if tokens.is_empty() {
            return Err(Error::Empty { what: "tokens" });
        }
        cache.check_room(tokens.len())?;
        // 1. Look up the token embeddings: the residual stream x (Gemma: scaled by √hidden).
        let mut x = ops::embedding(w.embed.view(), tokens)?; // (seq, hidden)
        if let Some(s) = c.features.embed_scale {
            x.mapv_inplace(|v| v * s);
        }
        let start = cache.len();
        let positions: Vec<usize> = (start..start + tokens.len()).collect();
        for (l, lw) in w.layers.iter().enumerate() {
            if let Some(t) = trace.as_deref_mut() {
                t.push(x.clone());
            }
            // 2. Attention block: x += wo · attention(rope(q), rope(k), v) of rms_norm(x)
            //    (Gemma: the block's output normalised again before the add).
            let h = ops::rms_norm(x.view(), lw.attn_norm.view(), c.rms_norm_eps); // (seq, hidden)
            let attn = self.attention_block(l, lw, h.view(), &positions, cache); // (seq, hidden)
            x = x + post_norm(attn, lw.post_attn_norm.as_ref(), c.rms_norm_eps);
            // 3. MLP block: x += w_down · (act(w_gate · h) * w_up · h), h = rms_norm(x), act
            //    SiLU or GELU-tanh (Gemma: the output normalised before the add).
            let h = ops::rms_norm(x.view(), lw.mlp_norm.view(), c.rms_norm_eps); // (seq, hidden)
            let gate = ops::linear(h.view(), lw.w_gate.view(), None); // (seq, intermediate)
            let up = ops::linear(h.view(), lw.w_up.view(), None); // (seq, intermediate)
            let act = ops::gated(gate.view(), up.view(), c.features.activation); // (seq, intermediate)
            let mlp = ops::linear(act.view(), lw.w_down.view(), None); // (seq, hidden)
            x = x + post_norm(mlp, lw.post_mlp_norm.as_ref(), c.rms_norm_eps);
        }
        if let Some(t) = trace {
            t.push(x.clone());
        }
        // 4. The new positions are now in every layer's cache.
        cache.advance(tokens.len());
        // 5. Final norm, then the LM head (the embedding table when tied).
        let final_hidden = ops::rms_norm(x.view(), w.final_norm.view(), c.rms_norm_eps); // (seq, hidden)
        let mut logits = ops::linear(final_hidden.view(), w.head().view(), None); // (seq, vocab)
        if let Some(cap) = c.features.final_logit_softcap {
            logits.mapv_inplace(|l| softcap(l, cap)); // Gemma 2
        }
        Ok((final_hidden, logits))
    }

    /// Self-attention of layer `l` on the normalised input `h` (seq, hidden); writes this
    /// layer's keys and values into the cache. Returns (seq, hidden).
    fn attention_block(
        &self,
        l: usize,
        lw: &LayerWeights,
        h: ArrayView2<f32>,
        positions: &[usize],
        cache: &mut KvCache,
    ) -> Array2<f32> {
        let c = &self.config;
        // Project to heads and rotate queries and keys by their positions.
        let q = ops::linear(h, lw.wq.view(), lw.bq.as_ref().map(|b| b.view())); // (seq, n_heads * hd)
        let k = ops::linear(h, lw.wk.view(), lw.bk.as_ref().map(|b| b.view())); // (seq, n_kv_heads * hd)
        let v = ops::linear(h, lw.wv.view(), lw.bv.as_ref().map(|b| b.view())); // (seq, n_kv_heads * hd)
        let q = split_heads(q, c.n_heads); // (n_heads, seq, hd)
        let k = split_heads(k, c.n_kv_heads); // (n_kv_heads, seq, hd)
        let v = split_heads(v, c.n_kv_heads); // (n_kv_heads, seq, hd)
                                              // Qwen3: RMSNorm over each head's head_dim, before RoPE (no-op where absent).
        let q = qk_norm(q, lw.q_norm.as_ref(), c.rms_norm_eps); // (n_heads, seq, hd)
        let k = qk_norm(k, lw.k_norm.as_ref(), c.rms_norm_eps); // (n_kv_heads, seq, hd)
                                                                // Gemma 3: the sliding layers rotate with a base of their own; LongRoPE
                                                                // (Phi-3): factors chosen by the cache's context, cos/sin scaled.
        let inv_freq = self.layer_inv_freq_for_context(l, cache.capacity()).view(); // (hd / 2)
        let af = c.layer_rope(l).scaling.attention_factor();
        let q = rope::apply_scaled(q.view(), positions, inv_freq, af); // (n_heads, seq, hd)
        let k = rope::apply_scaled(k.view(), positions, inv_freq, af); // (n_kv_heads, seq, hd)

        // Attend over every cached position plus the new ones (this layer's window, if any).
        let (k_all, v_all) = cache.write(l, k.view(), v.view()); // (n_kv_heads, start + seq, hd)
        let scores = ops::Scores {
            scale: c.attn_scale(),
            softcap: c.features.attn_logit_softcap,
            window: c.layer_window(l),
        };
        let o = ops::attention_with(q.view(), k_all, v_all, positions[0], scores); // (n_heads, seq, hd)
        ops::linear(merge_heads(o).view(), lw.wo.view(), None) // (seq, hidden)
    }
}

/// Gemma's post-norm: `rms_norm(y) · w` of a block's output before the residual add
/// (`post_attention_layernorm`, `post_feedforward_layernorm` in `Gemma3DecoderLayer.forward`);
/// `y` unchanged when `w` is `None`.
fn post_norm(y: Array2<f32>, w: Option<&Array1<f32>>, eps: f32) -> Array2<f32> {
    match w {
        Some(w) => ops::rms_norm(y.view(), w.view(), eps),
        None => y,
    }
}

/// QK-norm (Qwen3, Gemma 3): each head's vector `x[h, t, ..]` (head_dim) normalised by its own RMS and
/// scaled by the one gain `w` (head_dim) shared by all heads; `x` unchanged when `w` is `None`.
///
/// transformers `Qwen3Attention.forward`:
/// `query_states = self.q_norm(self.q_proj(hidden_states).view(hidden_shape)).transpose(1, 2)`
/// (and the same for keys with `k_norm`), where `q_norm = Qwen3RMSNorm(head_dim, eps=rms_norm_eps)`
/// is `LlamaRMSNorm`'s formula; RoPE is applied afterwards.
fn qk_norm(x: Array3<f32>, w: Option<&Array1<f32>>, eps: f32) -> Array3<f32> {
    let Some(w) = w else { return x };
    let (heads, seq, hd) = x.dim();
    let rows = x
        .into_shape_with_order((heads * seq, hd))
        .expect("standard layout from split_heads"); // (heads * seq, hd)
    ops::rms_norm(rows.view(), w.view(), eps)
        .into_shape_with_order((heads, seq, hd))
        .expect("same number of elements") // (heads, seq, hd)
}

/// (seq, heads * hd) → (heads, seq, hd): head j is columns `j*hd..(j+1)*hd`.
fn split_heads(x: Array2<f32>, heads: usize) -> Array3<f32> {
    let (seq, width) = x.dim();
    let x = x
        .to_shape((seq, heads, width / heads))
        .expect("width = heads * hd, checked in Model::new"); // (seq, heads, hd)
    x.permuted_axes([1, 0, 2]).as_standard_layout().into_owned()
}

/// (heads, seq, hd) → (seq, heads * hd), the inverse of [`split_heads`].
fn merge_heads(x: Array3<f32>) -> Array2<f32> {
    let (heads, seq, hd) = x.dim();
    let x = x.permuted_axes([1, 0, 2]); // (seq, heads, hd)
    x.to_shape((seq, heads * hd))
        .expect("same number of elements")
        .into_owned()
}

fn validate_weights(c: &Config, w: &Weights) -> Result<()> {
    let (h, i, v) = (c.hidden_size, c.intermediate_size, c.vocab_size);
    let (q, kv) = (c.q_dim(), c.kv_dim());
    check2("embed", &w.embed, [v, h])?;
    if w.layers.len() != c.n_layers {
        return Err(Error::Shape {
            tensor: "layers".into(),
            expected: vec![c.n_layers],
            actual: vec![w.layers.len()],
        });
    }
    for (l, lw) in w.layers.iter().enumerate() {
        let name = |t: &str| format!("layers.{l}.{t}");
        // QK-norm normalises queries and keys together or not at all (Qwen3).
        if lw.q_norm.is_some() != lw.k_norm.is_some() {
            let (have, lack) = if lw.q_norm.is_some() {
                ("q_norm", "k_norm")
            } else {
                ("k_norm", "q_norm")
            };
            return Err(Error::MissingWeight {
                tensor: name(lack),
                reason: format!("{} is present: QK-norm needs both", name(have)),
            });
        }
        check1(&name("attn_norm"), &lw.attn_norm, h)?;
        check2(&name("wq"), &lw.wq, [q, h])?;
        check2(&name("wk"), &lw.wk, [kv, h])?;
        check2(&name("wv"), &lw.wv, [kv, h])?;
        let hd = c.head_dim;
        for (t, b, n) in [
            ("bq", &lw.bq, q),
            ("bk", &lw.bk, kv),
            ("bv", &lw.bv, kv),
            ("q_norm", &lw.q_norm, hd),
            ("k_norm", &lw.k_norm, hd),
            ("post_attn_norm", &lw.post_attn_norm, h),
            ("post_mlp_norm", &lw.post_mlp_norm, h),
        ] {
            if let Some(b) = b {
                check1(&name(t), b, n)?;
            }
        }
        check2(&name("wo"), &lw.wo, [h, q])?;
        check1(&name("mlp_norm"), &lw.mlp_norm, h)?;
        check2(&name("w_gate"), &lw.w_gate, [i, h])?;
        check2(&name("w_up"), &lw.w_up, [i, h])?;
        check2(&name("w_down"), &lw.w_down, [h, i])?;
    }
    check1("final_norm", &w.final_norm, h)?;
    if let Some(head) = &w.lm_head {
        check2("lm_head", head, [v, h])?;
    }
    Ok(())
}

fn check1(tensor: &str, a: &ndarray::Array<f32, Ix1>, n: usize) -> Result<()> {
    check(tensor, a.shape(), &[n])
}

fn check2(tensor: &str, a: &ndarray::Array<f32, Ix2>, shape: [usize; 2]) -> Result<()> {
    check(tensor, a.shape(), &shape)
}

fn check(tensor: &str, actual: &[usize], expected: &[usize]) -> Result<()> {
    if actual == expected {
        return Ok(());
    }
    Err(Error::Shape {
        tensor: tensor.to_string(),
        expected: expected.to_vec(),
        actual: actual.to_vec(),
    })
}
