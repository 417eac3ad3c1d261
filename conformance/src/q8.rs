//! The KV cache's Q8_0 (`DType::Q8_0Kv`, `wavefront::kv_quant`) judged on its own grid: stored
//! rows against the f32 values they quantize. An NMSE bound would have to allow a whole quantum
//! on every element (a relative 2·10⁻³), far above the size of real bugs (a scale of amax / 128
//! instead of / 127 moves every value by 0.8%); instead each block must be exactly what
//! llama.cpp's arithmetic gives, up to the slack the engine's own f32 rounding leaves:
//!
//! - `slack[i] = 0` (a value the engine stores as given, V): the block must be bit-exact
//!   (the scale, `1/d` and the products are correctly rounded IEEE operations on both sides);
//! - otherwise (a rotated K) the engine's f32 value lies within `slack[i]` of `want[i]`, so its
//!   block maximum within `Δ = max slack` of the reference's, its scale any f16 rounding of a
//!   `d` in `[(amax − Δ) / 127, (amax + Δ) / 127]`, and each quant any rounding of
//!   `x·(1/d)` over those ranges: a value near a rounding tie may land on either side, nothing
//!   else may move.

use half::f16;
use wavefront::kv_quant::{quantize_block, BLOCK};

use crate::compare::Comparison;
use crate::tolerance::U_F32;

/// `got` (the stored rows, dequantized; blocks of 32 from index 0) against `want` (the
/// reference's f32 values before quantization), `slack[i]` bounding |engine's value − want[i]|.
pub fn q8_rows(want: &[f32], slack: &[f64], got: &[f32]) -> Comparison {
    if want.len() != got.len() || slack.len() != want.len() || !want.len().is_multiple_of(BLOCK) {
        return Comparison::fail(format!(
            "{} stored values for {} reference values ({} slacks): not whole Q8_0 blocks",
            got.len(),
            want.len(),
            slack.len()
        ));
    }
    if let Some(i) = got.iter().position(|x| !x.is_finite()) {
        return Comparison::fail(format!("stored element {i} is {}", got[i]));
    }
    let mut flips = 0usize;
    for (b, ((w, s), g)) in want
        .chunks_exact(BLOCK)
        .zip(slack.chunks_exact(BLOCK))
        .zip(got.chunks_exact(BLOCK))
        .enumerate()
    {
        let delta = s.iter().copied().fold(0.0f64, f64::max);
        if delta == 0.0 {
            let (d, q) = quantize_block(w);
            let d = d.to_f32();
            if let Some(i) = (0..BLOCK).find(|&i| (q[i] as f32 * d).to_bits() != g[i].to_bits()) {
                return Comparison::fail(format!(
                    "element {}: stored {} where Q8_0 of {} is {} (scale {d})",
                    b * BLOCK + i,
                    g[i],
                    w[i],
                    q[i] as f32 * d
                ));
            }
            continue;
        }
        let amax = w.iter().fold(0.0f64, |m, &x| m.max((x as f64).abs()));
        let (lo, hi) = ((amax - delta).max(0.0), amax + delta);
        if g.iter().all(|&x| x == 0.0) {
            if lo == 0.0 {
                continue;
            }
            return Comparison::fail(format!(
                "block {b} stored as zeros; its largest magnitude is {amax}"
            ));
        }
        // The engine's d = amax' / 127 (one rounding), then f16: every scale it can have.
        let d_lo = lo / 127.0 * (1.0 - 2.0 * U_F32);
        let d_hi = hi / 127.0 * (1.0 + 2.0 * U_F32);
        let mut scales = vec![f16::from_f64(d_lo).to_f32(), f16::from_f64(d_hi).to_f32()];
        scales.dedup();
        let Some(&scale) = scales.iter().find(|&&d| {
            d > 0.0
                && g.iter().all(|&x| {
                    let q = (x / d).round();
                    q.abs() <= 127.0 && (q * d).to_bits() == x.to_bits()
                })
        }) else {
            return Comparison::fail(format!(
                "block {b} ({:?}…) is no Q8_0 block with a scale in {scales:?} (the reference's \
                 amax {amax} ± {delta:.2e})",
                &g[..4]
            ));
        };
        // id = 1 / d' over the range of d' (one more rounding).
        let (id_lo, id_hi) = (
            1.0 / d_hi * (1.0 - 2.0 * U_F32),
            1.0 / d_lo.max(f64::MIN_POSITIVE) * (1.0 + 2.0 * U_F32),
        );
        for i in 0..BLOCK {
            let (x_lo, x_hi) = (w[i] as f64 - s[i], w[i] as f64 + s[i]);
            let ts = [x_lo * id_lo, x_lo * id_hi, x_hi * id_lo, x_hi * id_hi];
            let t_min = ts.iter().copied().fold(f64::INFINITY, f64::min) * (1.0 + 2.0 * U_F32);
            let t_max = ts.iter().copied().fold(f64::NEG_INFINITY, f64::max) * (1.0 + 2.0 * U_F32);
            let (t_min, t_max) = (t_min.min(t_max), t_max.max(t_min));
            let q = (g[i] / scale).round() as f64;
            // (f64::round: half away from zero, as the quantizer rounds)
            let (q_lo, q_hi) = (t_min.round().max(-127.0), t_max.round().min(127.0));
            if q < q_lo || q > q_hi {
                return Comparison::fail(format!(
                    "element {}: quant {q} outside [{q_lo}, {q_hi}] (reference value {}, slack \
                     {:.2e}, scale {scale})",
                    b * BLOCK + i,
                    w[i],
                    s[i]
                ));
            }
            if q_lo != q_hi {
                flips += 1;
            }
        }
    }
    Comparison::exact().with_note(
        (flips > 0)
            .then(|| format!("{flips} element(s) within the f32 slack of a Q8_0 rounding tie")),
    )
}

/// The slack of rotated values (`rope.hip`'s `x·cos ∓ y·sin`, the reference's the same in f32
/// with its own sin/cos): 3 roundings and 2 ulp of each of sin and cos, `8u·(|x| + |y|)`
/// (the pair's magnitudes; the tolerance table's 8u, made absolute). `k` is `(…, head_dim)`
/// rows of the unrotated values.
pub fn rotation_slack(k: &[f32], head_dim: usize) -> Vec<f64> {
    let half = head_dim / 2;
    k.chunks_exact(head_dim)
        .flat_map(|row| {
            (0..head_dim).map(move |d| {
                let pair = if d < half { d + half } else { d - half };
                8.0 * U_F32 * ((row[d] as f64).abs() + (row[pair] as f64).abs())
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use wavefront::tensor::round_to;
    use wavefront::DType;

    fn values(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0)
            .collect()
    }

    fn q8(v: &[f32]) -> Vec<f32> {
        let mut v = v.to_vec();
        round_to(DType::Q8_0Kv, &mut v);
        v
    }

    #[test]
    fn exact_rows_pass_and_any_moved_quantum_fails_without_slack() {
        let w = values(64);
        let got = q8(&w);
        assert!(q8_rows(&w, &[0.0; 64], &got).pass());
        let mut off = got.clone();
        off[40] += (off[40].abs().max(1e-3)) * 0.05;
        assert!(!q8_rows(&w, &[0.0; 64], &off).pass());
    }

    #[test]
    fn a_wrong_scale_fails_even_with_rotation_slack() {
        // amax / 128 instead of / 127: every value 0.8% small
        let w = values(64);
        let slack = vec![1e-6; 64];
        let got: Vec<f32> = q8(&w).iter().map(|x| x * 127.0 / 128.0).collect();
        assert!(!q8_rows(&w, &slack, &got).pass());
        assert!(q8_rows(&w, &slack, &q8(&w)).pass());
    }

    #[test]
    fn a_value_at_a_tie_may_flip_within_its_slack_only() {
        // amax 127 → d = 1: the value 2.5 rounds to 3; with slack it may be 2, never 1.
        let mut w = vec![0.0f32; 32];
        w[0] = 127.0;
        w[1] = 2.5;
        let mut got = q8(&w);
        assert_eq!(got[1], 3.0);
        got[1] = 2.0;
        let mut slack = vec![0.0; 32];
        assert!(!q8_rows(&w, &slack, &got).pass(), "no slack: exact");
        slack[1] = 1e-4;
        let c = q8_rows(&w, &slack, &got);
        assert!(c.pass(), "{c:?}");
        assert!(c.note.is_some());
        got[1] = 1.0;
        assert!(!q8_rows(&w, &slack, &got).pass());
    }

    #[test]
    fn unrounded_values_are_no_q8_block() {
        let w = values(32);
        assert!(!q8_rows(&w, &vec![1e-6; 32], &w).pass());
    }

    #[test]
    fn rotation_slack_pairs_each_dim_with_its_rotation_partner() {
        let s = rotation_slack(&[1.0, 2.0, -3.0, 4.0], 4);
        let u8 = 8.0 * U_F32;
        assert_eq!(s, vec![4.0 * u8, 6.0 * u8, 4.0 * u8, 6.0 * u8]);
    }
}
