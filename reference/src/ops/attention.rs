//! Causal scaled dot-product attention with grouped-query heads (Vaswani et al. 2017;
//! Ainslie et al. 2023).

use ndarray::{s, Array3, ArrayView3, Axis};

use super::softcap::softcap;
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
    attention_windowed(q, k, v, q_start, None)
}

/// [`attention`] with an optional sliding window of `w` keys: the query at position p sees keys
/// `j` with `p − w < j ≤ p` (the last `w` positions, itself included); `None` is causal only.
pub fn attention_windowed(
    q: ArrayView3<f32>,
    k: ArrayView3<f32>,
    v: ArrayView3<f32>,
    q_start: usize,
    window: Option<usize>,
) -> Array3<f32> {
    // transformers: `self.scaling = head_dim**-0.5` (a Python double, used as f32).
    let scale = (q.dim().2 as f64).powf(-0.5) as f32;
    attention_with(
        q,
        k,
        v,
        q_start,
        Scores {
            scale,
            softcap: None,
            window,
        },
    )
}

/// How [`attention_with`] turns `q·kᵀ` into the scores the softmax sees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scores {
    /// Multiplies `q·kᵀ`: `head_dim ** -0.5`, or Gemma's `query_pre_attn_scalar ** -0.5`.
    pub scale: f32,
    /// Gemma 2's soft-capping of the scaled scores ([`softcap`]), before the mask.
    pub softcap: Option<f32>,
    /// A sliding window of `w` keys ([`window_start`]).
    pub window: Option<usize>,
}

/// The general form: scores `s = (q·kᵀ) · scale`, soft-capped if asked, softmax over the keys
/// `window_start(p) ..= p` of the query at position p, times V.
pub fn attention_with(
    q: ArrayView3<f32>,
    k: ArrayView3<f32>,
    v: ArrayView3<f32>,
    q_start: usize,
    opts: Scores,
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
    let mut out = Array3::zeros((n_heads, seq, head_dim));
    for h in 0..n_heads {
        let (k_h, v_h) = (
            k.index_axis(Axis(0), h / group),
            v.index_axis(Axis(0), h / group),
        ); // (kv_len, hd)
        let mut scores = q.index_axis(Axis(0), h).dot(&k_h.t()) * opts.scale; // (seq, kv_len)
        if let Some(c) = opts.softcap {
            scores.mapv_inplace(|s| softcap(s, c));
        }
        for t in 0..seq {
            let end = q_start + t + 1; // causal: keys ..=position
            let first = window_start(q_start + t, opts.window); // and none before the window
            let p = softmax(scores.slice(s![t, first..end])); // (end - first)
            let o = p.dot(&v_h.slice(s![first..end, ..])); // (hd)
            out.slice_mut(s![h, t, ..]).assign(&o);
        }
    }
    out
}

/// The first key a query at `pos` sees under a sliding window of `w` keys.
///
/// transformers `masking_utils.sliding_window_overlay` (Mistral's
/// `create_sliding_window_causal_mask`): `kv_idx > q_idx - sliding_window`, and'ed with the
/// causal `kv_idx <= q_idx`; so keys `pos + 1 − w ..= pos`.
pub fn window_start(pos: usize, window: Option<usize>) -> usize {
    match window {
        Some(w) => (pos + 1).saturating_sub(w),
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    fn filled(shape: (usize, usize, usize), seed: f32) -> Array3<f32> {
        Array3::from_shape_fn(shape, |(a, b, c)| {
            ((a * 131 + b * 17 + c) as f32 * 0.61 + seed).sin()
        })
    }

    /// The textbook definition in f64 with explicit loops: for each head, materialise
    /// `repeat_kv` (kv head j serves query heads j*group..(j+1)*group), mask, softmax, mix.
    fn naive(q: &Array3<f32>, k: &Array3<f32>, v: &Array3<f32>, q_start: usize) -> Array3<f64> {
        let (n_heads, seq, hd) = q.dim();
        let group = n_heads / k.dim().0;
        let mut out = Array3::zeros((n_heads, seq, hd));
        for h in 0..n_heads {
            let kv = h / group;
            for t in 0..seq {
                let visible = q_start + t + 1;
                let scores: Vec<f64> = (0..visible)
                    .map(|j| {
                        (0..hd)
                            .map(|i| q[[h, t, i]] as f64 * k[[kv, j, i]] as f64)
                            .sum::<f64>()
                            / (hd as f64).sqrt()
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let z: f64 = e.iter().sum();
                for i in 0..hd {
                    out[[h, t, i]] = (0..visible).map(|j| e[j] / z * v[[kv, j, i]] as f64).sum();
                }
            }
        }
        out
    }

    #[test]
    fn matches_the_textbook_definition_with_gqa_and_an_offset() {
        // 6 query heads on 2 KV heads; 3 queries at positions 4..7 of 7 keys.
        let (q, k, v) = (
            filled((6, 3, 8), 0.1),
            filled((2, 7, 8), 0.2),
            filled((2, 7, 8), 0.3),
        );
        let got = attention(q.view(), k.view(), v.view(), 4);
        for (g, w) in got.iter().zip(naive(&q, &k, &v, 4).iter()) {
            assert!((*g as f64 - w).abs() < 1e-6, "{g} vs {w}");
        }
    }

    /// The window's keys only: a query at p sees p − w < j ≤ p. Every key outside the window
    /// is replaced by a huge planted value; the outputs must not change, and must equal full
    /// attention over the window's keys alone.
    #[test]
    fn a_sliding_window_sees_exactly_the_last_w_keys() {
        let (q, k, v) = (
            filled((4, 6, 8), 0.1),
            filled((2, 9, 8), 0.2),
            filled((2, 9, 8), 0.3),
        );
        let w = 3;
        let got = attention_windowed(q.view(), k.view(), v.view(), 3, Some(w)); // positions 3..9
        for t in 0..6 {
            let pos = 3 + t;
            assert_eq!(window_start(pos, Some(w)), pos + 1 - w);
            let (mut k2, mut v2) = (k.clone(), v.clone());
            for j in 0..pos + 1 - w {
                k2.slice_mut(s![.., j, ..]).fill(50.0);
                v2.slice_mut(s![.., j, ..]).fill(1e6);
            }
            let planted = attention_windowed(q.view(), k2.view(), v2.view(), 3, Some(w));
            assert_eq!(
                planted.slice(s![.., t, ..]),
                got.slice(s![.., t, ..]),
                "pos {pos}"
            );
            // the window alone, as plain causal attention of its last query
            let (ks, vs) = (
                k.slice(s![.., pos + 1 - w..=pos, ..]),
                v.slice(s![.., pos + 1 - w..=pos, ..]),
            );
            let alone = attention(q.slice(s![.., t..=t, ..]), ks, vs, w - 1);
            for (a, b) in alone.iter().zip(got.slice(s![.., t, ..]).iter()) {
                assert!((a - b).abs() <= 1e-6, "pos {pos}: {a} vs {b}");
            }
        }
        // A window at least as long as the context is plain causal attention.
        let wide = attention_windowed(q.view(), k.view(), v.view(), 3, Some(9));
        assert_eq!(wide, attention(q.view(), k.view(), v.view(), 3));
        assert_eq!(window_start(1, Some(5)), 0);
    }

    #[test]
    fn one_key_returns_its_value() {
        let (q, k, v) = (
            filled((2, 1, 4), 0.0),
            filled((1, 1, 4), 1.0),
            filled((1, 1, 4), 2.0),
        );
        let o = attention(q.view(), k.view(), v.view(), 0);
        for h in 0..2 {
            assert_eq!(o.index_axis(Axis(0), h), v.index_axis(Axis(0), 0));
        }
    }

    #[test]
    fn a_kv_head_is_seen_only_by_its_group_of_query_heads() {
        // 4 query heads, 2 KV heads: heads 0, 1 read KV head 0 and heads 2, 3 read KV head 1
        // (repeat_kv), not heads 1, 3 (the interleaved mapping h % n_kv_heads).
        let (q, k) = (filled((4, 3, 4), 0.5), filled((2, 3, 4), 0.7));
        let mut v = filled((2, 3, 4), 0.9); // values in [-1, 1]
        v.index_axis_mut(Axis(0), 1).fill(100.0); // the planted head
        let o = attention(q.view(), k.view(), v.view(), 0);
        for h in 0..4 {
            let planted = o
                .index_axis(Axis(0), h)
                .iter()
                .all(|&x| (x - 100.0).abs() < 1e-3);
            let small = o.index_axis(Axis(0), h).iter().all(|&x| x.abs() <= 1.0);
            assert_eq!((planted, small), (h >= 2, h < 2), "head {h}");
        }
    }

    #[test]
    fn future_keys_and_values_do_not_change_earlier_outputs() {
        let (q, k, v) = (
            filled((2, 5, 4), 0.1),
            filled((2, 5, 4), 0.2),
            filled((2, 5, 4), 0.3),
        );
        let before = attention(q.view(), k.view(), v.view(), 0);
        let (mut k2, mut v2) = (k.clone(), v.clone());
        k2.slice_mut(s![.., 3.., ..]).mapv_inplace(|x| 5.0 - x);
        v2.slice_mut(s![.., 3.., ..])
            .mapv_inplace(|x| 7.0 * x + 1.0);
        let after = attention(q.view(), k2.view(), v2.view(), 0);
        assert_eq!(before.slice(s![.., ..3, ..]), after.slice(s![.., ..3, ..]));
        assert_ne!(before.slice(s![.., 3.., ..]), after.slice(s![.., 3.., ..]));
    }
}
