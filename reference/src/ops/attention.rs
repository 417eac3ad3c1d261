//! Causal scaled dot-product attention with grouped-query heads (Vaswani et al. 2017;
//! Ainslie et al. 2023).

use ndarray::{s, Array3, ArrayView3, Axis};

use super::softmax::softmax;

/// `q` (n_heads, seq, hd) at absolute positions `q_start..q_start + seq`; `k`, `v`
/// (n_kv_heads, kv_len, hd) at positions `0..kv_len`. Returns (n_heads, seq, hd).
///
/// The query at position p sees keys `0..=p`; scores are scaled by `1/sqrt(hd)`. Query head
/// `h` reads KV head `h / (n_heads / n_kv_heads)`, as transformers' `repeat_kv` lays them out.
pub fn attention(
    q: ArrayView3<f32>,
    k: ArrayView3<f32>,
    v: ArrayView3<f32>,
    q_start: usize,
) -> Array3<f32> {
    let (n_heads, seq, head_dim) = q.dim();
    let (n_kv_heads, kv_len, _) = k.dim();
    assert!(
        n_kv_heads > 0 && n_heads % n_kv_heads == 0,
        "attention: GQA ratio"
    );
    assert!(
        q_start + seq <= kv_len,
        "attention: queries past the last key"
    );
    let group = n_heads / n_kv_heads;
    // transformers: `self.scaling = head_dim**-0.5` (a Python double, used as f32).
    let scale = (head_dim as f64).powf(-0.5) as f32;
    let mut out = Array3::zeros((n_heads, seq, head_dim));
    for h in 0..n_heads {
        let (k_h, v_h) = (
            k.index_axis(Axis(0), h / group),
            v.index_axis(Axis(0), h / group),
        ); // (kv_len, hd)
        let scores = q.index_axis(Axis(0), h).dot(&k_h.t()) * scale; // (seq, kv_len)
        for t in 0..seq {
            let visible = q_start + t + 1; // keys 0..=position
            let p = softmax(scores.slice(s![t, ..visible])); // (visible)
            let o = p.dot(&v_h.slice(s![..visible, ..])); // (hd)
            out.slice_mut(s![h, t, ..]).assign(&o);
        }
    }
    out
}
