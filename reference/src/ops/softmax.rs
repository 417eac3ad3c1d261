//! Softmax with the maximum subtracted first, so logits of any size give finite results.

use ndarray::{Array1, ArrayView1};

/// `x` (n) → `e^(x - max) / Σ e^(x - max)`, (n). Entries at -inf get probability 0; at least
/// one entry must be finite.
pub fn softmax(x: ArrayView1<f32>) -> Array1<f32> {
    let max = x.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let e = x.mapv(|v| (v - max).exp()); // (n), each in [0, 1]
    let sum = e.sum();
    e / sum
}
