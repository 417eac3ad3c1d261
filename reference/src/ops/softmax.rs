//! Softmax with the maximum subtracted first, so logits of any size give finite results.

use ndarray::{Array1, ArrayView1};

/// `x` (n) → `e^(x - max) / Σ e^(x - max)`, (n). Entries at -inf get probability 0; at least
/// one entry must be finite.
pub fn softmax(x: ArrayView1<f32>) -> Array1<f32> {
    let max = x.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let e = x.mapv(|v| (v - max).exp()); // (n), each in [0, 1]
                                         // A plain sum in index order: the engine's sampler sums the same way, so sampled ids agree
                                         // bit for bit (ndarray's `sum` reassociates).
    let sum: f32 = e.iter().sum();
    e / sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::arr1;

    #[test]
    fn sums_to_one_and_is_finite_at_logits_near_1e4() {
        let x = arr1(&[1e4f32, 1e4 - 1.0, 0.0, -1e4]);
        let p = softmax(x.view());
        assert!(p.iter().all(|v| v.is_finite() && *v >= 0.0));
        assert!((p.sum() - 1.0).abs() < 1e-6);
        // p0 / p1 = e.
        assert!((p[0] / p[1] - std::f32::consts::E).abs() < 1e-5);
        // Without the max subtraction the same input overflows: e^1e4 = inf, inf / inf = NaN.
        let naive_sum: f32 = x.iter().map(|v| v.exp()).sum();
        assert!(naive_sum.is_infinite());
        assert!((x[0].exp() / naive_sum).is_nan());
    }

    #[test]
    fn known_values() {
        assert_eq!(softmax(arr1(&[7.0, 7.0]).view()).to_vec(), vec![0.5, 0.5]);
        let p = softmax(arr1(&[0.0, 3f32.ln(), f32::NEG_INFINITY]).view());
        assert!((p[0] - 0.25).abs() < 1e-7 && (p[1] - 0.75).abs() < 1e-7);
        assert_eq!(p[2], 0.0);
    }
}
