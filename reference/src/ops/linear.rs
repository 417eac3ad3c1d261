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

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array;

    /// y[t][o] = Σ_i x[t][i] · w[o][i] + b[o], in f64 with explicit loops.
    fn explicit(x: &Array2<f32>, w: &Array2<f32>, b: Option<&ndarray::Array1<f32>>) -> Vec<f64> {
        let mut y = vec![];
        for t in 0..x.nrows() {
            for o in 0..w.nrows() {
                let mut acc = b.map_or(0.0, |b| b[o] as f64);
                for i in 0..x.ncols() {
                    acc += x[[t, i]] as f64 * w[[o, i]] as f64;
                }
                y.push(acc);
            }
        }
        y
    }

    #[test]
    fn matches_an_explicit_loop_with_and_without_bias() {
        let x = Array::from_shape_fn((3, 5), |(t, i)| ((t * 5 + i) as f32 * 0.37).sin()); // (seq, in)
        let w = Array::from_shape_fn((4, 5), |(o, i)| ((o * 7 + i) as f32 * 0.91).cos()); // (out, in)
        let b = Array::from_shape_fn(4, |o| o as f32 - 1.5); // (out)
        for bias in [None, Some(&b)] {
            let y = linear(x.view(), w.view(), bias.map(|b| b.view()));
            assert_eq!(y.dim(), (3, 4));
            for (got, want) in y.iter().zip(explicit(&x, &w, bias)) {
                assert!((*got as f64 - want).abs() < 1e-5, "{got} vs {want}");
            }
        }
    }
}
