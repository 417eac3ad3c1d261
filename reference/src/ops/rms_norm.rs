//! RMSNorm (Zhang & Sennrich 2019), as transformers' `LlamaRMSNorm` computes it in f32:
//! `w * (x * 1/sqrt(mean(x²) + eps))`.

use ndarray::{Array2, ArrayView1, ArrayView2, Axis};

/// `x` (seq, hidden), `w` (hidden) → (seq, hidden), each row normalised by its RMS.
pub fn rms_norm(x: ArrayView2<f32>, w: ArrayView1<f32>, eps: f32) -> Array2<f32> {
    let hidden = x.ncols() as f32;
    let mut out = x.to_owned(); // (seq, hidden)
    for mut row in out.axis_iter_mut(Axis(0)) {
        let mean_sq = row.iter().map(|&v| v * v).sum::<f32>() / hidden;
        let inv_rms = 1.0 / (mean_sq + eps).sqrt();
        row.mapv_inplace(|v| v * inv_rms);
    }
    out * w // broadcast (hidden) over rows
}
