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

/// The rotary inverse frequencies, (head_dim / 2), after the configured scaling.
pub fn inv_freq(head_dim: usize, rope: &RopeConfig) -> Array1<f32> {
    let base = default_inv_freq(head_dim, rope.theta); // (head_dim / 2)
    match &rope.scaling {
        RopeScaling::None => base,
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
            // by `factor`, interpolate linearly (in 1/wavelength) in between.
            let old_len = original_max_position_embeddings as f32;
            let low_freq_wavelen = old_len / low_freq_factor;
            let high_freq_wavelen = old_len / high_freq_factor;
            base.mapv(|f| {
                let wavelen = 2.0 * PI / f;
                if wavelen < high_freq_wavelen {
                    f
                } else if wavelen > low_freq_wavelen {
                    f / factor
                } else {
                    let smooth = (old_len / wavelen - low_freq_factor)
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
                let (sin, cos) = (angle.sin(), angle.cos());
                let (a, b) = (x1[i], x2[i]);
                x1[i] = a * cos - b * sin;
                x2[i] = b * cos + a * sin;
            }
        }
    }
    out
}
