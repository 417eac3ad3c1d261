//! Rotary position embedding (Su et al. 2021) in the Hugging Face "rotate half" layout: the
//! pair rotated by frequency `i` is `(x[i], x[i + d/2])`, not `(x[2i], x[2i + 1])`.

use std::f32::consts::PI;

use ndarray::{s, Array1, Array3, ArrayView1, ArrayView3, Axis};

use crate::config::{RopeConfig, RopeScaling};

/// The default inverse frequencies `1 / theta^(2i/d)`, i in 0..d/2, in f32 as transformers
/// computes them: `1.0 / (base ** (arange(0, d, 2).float() / d))`.
pub fn default_inv_freq(head_dim: usize, theta: f32) -> Array1<f32> {
    let d = head_dim as f32;
    Array1::from_iter((0..head_dim / 2).map(|i| 1.0 / theta.powf((2 * i) as f32 / d)))
}

/// The rotary inverse frequencies, (head_dim / 2), after the configured scaling; LongRoPE's
/// short factors (transformers' frequencies at initialisation, `seq_len=None`).
pub fn inv_freq(head_dim: usize, rope: &RopeConfig) -> Array1<f32> {
    inv_freq_for_context(head_dim, rope, 0)
}

/// The rotary inverse frequencies, (head_dim / 2), for a KV cache of `context` positions: as
/// [`inv_freq`], except that LongRoPE takes its long factors when `context` exceeds its
/// `original_max_position_embeddings` ([`RopeScaling::longrope_long`]).
pub fn inv_freq_for_context(head_dim: usize, rope: &RopeConfig, context: usize) -> Array1<f32> {
    let base = default_inv_freq(head_dim, rope.theta); // (head_dim / 2)
    match &rope.scaling {
        RopeScaling::None => base,
        RopeScaling::LongRope {
            short_factor,
            long_factor,
            ..
        } => {
            // transformers' `_compute_longrope_parameters`:
            // `inv_freq = 1.0 / (ext_factors * base**inv_freq_shape)`, all f32: the divisor
            // multiplies the power before the reciprocal (not `default / ext`), so the f32
            // rounding agrees.
            let ext = if rope.scaling.longrope_long(context) {
                long_factor
            } else {
                short_factor
            };
            let d = head_dim as f32;
            Array1::from_iter(
                (0..head_dim / 2).map(|i| 1.0 / (ext[i] * rope.theta.powf((2 * i) as f32 / d))),
            )
        }
        RopeScaling::FreqFactors(factors) => {
            Array1::from_iter(base.iter().zip(factors).map(|(&f, &div)| f / div))
        }
        &RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } => {
            // transformers' `_compute_llama3_parameters`: keep high frequencies, divide low ones
            // by `factor`, interpolate linearly (in 1/wavelength) in between. `c / tensor` is
            // `tensor.reciprocal() * c` in torch; written the same way so the f32 rounding agrees.
            let old_len = original_max_position_embeddings as f32;
            let low_freq_wavelen = old_len / low_freq_factor;
            let high_freq_wavelen = old_len / high_freq_factor;
            base.mapv(|f| {
                let wavelen = (1.0 / f) * (2.0 * PI);
                if wavelen < high_freq_wavelen {
                    f
                } else if wavelen > low_freq_wavelen {
                    f / factor
                } else {
                    let smooth = ((1.0 / wavelen) * old_len - low_freq_factor)
                        / (high_freq_factor - low_freq_factor);
                    (1.0 - smooth) * f / factor + smooth * f
                }
            })
        }
    }
}

/// Rotates `x` (heads, seq, head_dim) whose row `t` sits at absolute position `positions[t]`:
/// `x·cos + rotate_half(x)·sin`, with cos/sin of `position · inv_freq` (head_dim / 2) repeated
/// over both halves. Returns (heads, seq, head_dim).
pub fn apply(x: ArrayView3<f32>, positions: &[usize], inv_freq: ArrayView1<f32>) -> Array3<f32> {
    apply_scaled(x, positions, inv_freq, 1.0)
}

/// [`apply`] with cos and sin multiplied by `attention_factor` first (LongRoPE's
/// `attention_scaling`, transformers' `Phi3RotaryEmbedding.forward`:
/// `cos = emb.cos() * self.attention_scaling`, the same for sin, in f32); a factor of 1 is
/// [`apply`] exactly.
pub fn apply_scaled(
    x: ArrayView3<f32>,
    positions: &[usize],
    inv_freq: ArrayView1<f32>,
    attention_factor: f32,
) -> Array3<f32> {
    let half = inv_freq.len();
    assert_eq!(
        x.dim().2,
        2 * half,
        "rope: head_dim must be 2 * inv_freq.len()"
    );
    assert_eq!(x.dim().1, positions.len(), "rope: one position per row");
    let mut out = x.to_owned(); // (heads, seq, head_dim)
    for mut head in out.axis_iter_mut(Axis(0)) {
        for (mut row, &pos) in head.axis_iter_mut(Axis(0)).zip(positions) {
            let (mut x1, mut x2) = row.multi_slice_mut((s![..half], s![half..])); // (half) each
            for i in 0..half {
                let angle = pos as f32 * inv_freq[i];
                let (sin, cos) = (
                    angle.sin() * attention_factor,
                    angle.cos() * attention_factor,
                );
                let (a, b) = (x1[i], x2[i]);
                x1[i] = a * cos - b * sin;
                x2[i] = b * cos + a * sin;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{arr1, Array3};

    fn config(theta: f32, scaling: RopeScaling) -> RopeConfig {
        RopeConfig { theta, scaling }
    }

    fn sample_x(heads: usize, seq: usize, hd: usize) -> Array3<f32> {
        Array3::from_shape_fn((heads, seq, hd), |(h, t, i)| {
            ((h * 31 + t * 7 + i) as f32 * 0.73).sin()
        })
    }

    #[test]
    fn default_frequencies_by_hand() {
        // d = 4, theta = 10000: 10000^(-0/4) = 1, 10000^(-2/4) = 1/100.
        let f = inv_freq(4, &config(10000.0, RopeScaling::None));
        assert_eq!(f[0], 1.0);
        assert!((f[1] - 0.01).abs() < 1e-9);
    }

    #[test]
    fn freq_factors_divide_the_default_frequencies() {
        let factors = vec![1.0, 2.0, 4.0, 8.0];
        let base = inv_freq(8, &config(500000.0, RopeScaling::None));
        let f = inv_freq(
            8,
            &config(500000.0, RopeScaling::FreqFactors(factors.clone())),
        );
        for i in 0..4 {
            assert_eq!(f[i], base[i] / factors[i]);
        }
    }

    /// transformers' `_compute_llama3_parameters`, transcribed in f64.
    fn llama3_direct(d: usize, theta: f64, factor: f64, low: f64, high: f64, old: f64) -> Vec<f64> {
        (0..d / 2)
            .map(|i| {
                let f = 1.0 / theta.powf((2 * i) as f64 / d as f64);
                let wavelen = 2.0 * std::f64::consts::PI / f;
                let smooth = (old / wavelen - low) / (high - low);
                let smoothed = (1.0 - smooth) * f / factor + smooth * f;
                let scaled = if wavelen > old / low { f / factor } else { f };
                let medium = wavelen >= old / high && wavelen <= old / low; // no NaN here
                if medium {
                    smoothed
                } else {
                    scaled
                }
            })
            .collect()
    }

    #[test]
    fn llama3_scaling_matches_the_formula_in_all_three_bands() {
        for (d, theta) in [(64, 500000.0), (128, 500000.0), (96, 10000.0)] {
            let scaling = RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192,
            };
            let got = inv_freq(d, &config(theta, scaling));
            let want = llama3_direct(d, theta as f64, 8.0, 1.0, 4.0, 8192.0);
            assert_eq!(got.len(), d / 2);
            for (g, w) in got.iter().zip(&want) {
                assert!((*g as f64 - w).abs() <= 2e-6 * w, "d={d}: {g} vs {w}");
            }
            // The three bands are all exercised: unchanged, divided by 8, interpolated.
            let base = default_inv_freq(d, theta);
            let unchanged = got.iter().zip(&base).filter(|(g, b)| g == b).count();
            let divided = got
                .iter()
                .zip(&base)
                .filter(|(g, b)| **g == **b / 8.0)
                .count();
            assert!(
                unchanged > 0 && divided > 0 && unchanged + divided < d / 2,
                "d={d}"
            );
        }
    }

    fn longrope(original: usize, attention_factor: f32) -> RopeScaling {
        RopeScaling::LongRope {
            short_factor: vec![1.0, 2.0, 4.0, 8.0],
            long_factor: vec![3.0, 5.0, 7.0, 9.0],
            original_max_position_embeddings: original,
            attention_factor,
        }
    }

    #[test]
    fn longrope_takes_short_factors_up_to_the_original_context_and_long_ones_beyond() {
        let rope = config(10000.0, longrope(64, 1.5));
        let base = default_inv_freq(8, 10000.0);
        for (context, ext) in [
            (0, [1.0, 2.0, 4.0, 8.0]),
            (64, [1.0, 2.0, 4.0, 8.0]),
            (65, [3.0, 5.0, 7.0, 9.0]),
        ] {
            let f = inv_freq_for_context(8, &rope, context);
            for i in 0..4 {
                let want = base[i] / ext[i];
                assert!(
                    (f[i] - want).abs() <= 2.0 * f32::EPSILON * want,
                    "context {context}: {} vs {want}",
                    f[i]
                );
            }
        }
        assert_eq!(inv_freq(8, &rope), inv_freq_for_context(8, &rope, 64));
    }

    #[test]
    fn the_attention_factor_scales_the_rotated_vectors() {
        let x = sample_x(2, 3, 8);
        let f = inv_freq(8, &config(10000.0, RopeScaling::None));
        let plain = apply(x.view(), &[0, 5, 99], f.view());
        assert_eq!(apply_scaled(x.view(), &[0, 5, 99], f.view(), 1.0), plain);
        let scaled = apply_scaled(x.view(), &[0, 5, 99], f.view(), 1.5);
        for (s, p) in scaled.iter().zip(&plain) {
            assert!(
                (s - 1.5 * p).abs() <= 1e-6 * p.abs().max(1.0),
                "{s} vs 1.5 × {p}"
            );
        }
    }

    #[test]
    fn position_zero_is_the_identity() {
        let x = sample_x(3, 1, 8);
        let f = inv_freq(8, &config(10000.0, RopeScaling::None));
        assert_eq!(apply(x.view(), &[0], f.view()), x);
    }

    #[test]
    fn rotation_preserves_the_norm_of_each_pair() {
        let x = sample_x(2, 4, 16);
        let f = inv_freq(16, &config(10000.0, RopeScaling::None));
        let y = apply(x.view(), &[1, 17, 300, 4095], f.view());
        for ((h, t), _) in ndarray::indices((2, 4)).into_iter().map(|i| (i, ())) {
            for i in 0..8 {
                let n0 = x[[h, t, i]].hypot(x[[h, t, i + 8]]);
                let n1 = y[[h, t, i]].hypot(y[[h, t, i + 8]]);
                assert!((n0 - n1).abs() < 1e-6 * n0.max(1.0), "{n0} vs {n1}");
            }
        }
        assert_ne!(y, x);
    }

    #[test]
    fn a_known_vector_by_a_known_angle() {
        // head_dim 4, theta 10000: frequencies (1, 1/100); pairs are (0, 2) and (1, 3).
        // e0 at position 2 rotates by 2 rad in the plane (0, 2); e3 by 0.02 rad in (1, 3).
        let f = arr1(&[1.0f32, 0.01]);
        let x = Array3::from_shape_vec((1, 2, 4), vec![1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0])
            .unwrap();
        let y = apply(x.view(), &[2, 2], f.view());
        let want = [
            2f64.cos(),
            0.0,
            2f64.sin(),
            0.0,
            0.0,
            -(0.02f64.sin()),
            0.0,
            0.02f64.cos(),
        ];
        for (g, w) in y.iter().zip(want) {
            assert!((*g as f64 - w).abs() < 1e-6, "{g} vs {w}");
        }
    }
}
