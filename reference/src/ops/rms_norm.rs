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

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{arr1, arr2};

    #[test]
    fn a_constant_row_becomes_the_weight_times_its_sign() {
        // mean(x²) = c², so x / rms = sign(c) exactly when eps = 0 and c² is exact.
        let x = arr2(&[[3.0, 3.0, 3.0, 3.0], [-0.5, -0.5, -0.5, -0.5]]);
        let w = arr1(&[1.0, 2.0, -3.0, 0.25]);
        let y = rms_norm(x.view(), w.view(), 0.0);
        assert_eq!(y, arr2(&[[1.0, 2.0, -3.0, 0.25], [-1.0, -2.0, 3.0, -0.25]]));
    }

    #[test]
    fn eps_is_added_to_the_mean_square() {
        // Row of ones, eps = 3: 1 / sqrt(1 + 3) = 0.5 exactly.
        let x = arr2(&[[1.0, 1.0]]);
        let y = rms_norm(x.view(), arr1(&[1.0, 4.0]).view(), 3.0);
        assert_eq!(y, arr2(&[[0.5, 2.0]]));
    }

    #[test]
    fn each_row_is_normalised_by_its_own_rms() {
        // (3, 4, 0, 0): mean square 25 / 4, rms 2.5; (2, -2, 2, -2): rms 2.
        let x = arr2(&[[3.0, 4.0, 0.0, 0.0], [2.0, -2.0, 2.0, -2.0]]);
        let y = rms_norm(x.view(), arr1(&[1.0; 4]).view(), 0.0);
        let want = [[1.2f32, 1.6, 0.0, 0.0], [1.0, -1.0, 1.0, -1.0]];
        for (g, w) in y.iter().zip(want.iter().flatten()) {
            assert!((g - w).abs() <= 1e-7, "{g} vs {w}");
        }
    }
}
