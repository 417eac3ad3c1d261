//! A linear projection in PyTorch layout.

use ndarray::{Array2, ArrayView1, ArrayView2};

/// `x` (seq, in), `w` (out, in), `bias` (out) → `x · wᵀ + bias`, (seq, out).
pub fn linear(
    x: ArrayView2<f32>,
    w: ArrayView2<f32>,
    bias: Option<ArrayView1<f32>>,
) -> Array2<f32> {
    let y = x.dot(&w.t()); // (seq, out)
    match bias {
        Some(b) => y + b,
        None => y,
    }
}
