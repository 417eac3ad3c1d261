//! A linear projection in PyTorch layout.

use ndarray::{Array2, ArrayView1, ArrayView2, Axis};

/// `x` (seq, in), `w` (out, in), `bias` (out) → `x · wᵀ + bias`, (seq, out).
///
/// One row (a decode step) is computed as the matrix-vector product `w · x`: as a GEMM it
/// would pack all of `w` and waste most of each tile, several times slower. The two paths
/// sum in different orders, which changes results only by f32 reassociation.
pub fn linear(
    x: ArrayView2<f32>,
    w: ArrayView2<f32>,
    bias: Option<ArrayView1<f32>>,
) -> Array2<f32> {
    let y = match x.nrows() {
        1 => w.dot(&x.row(0)).insert_axis(Axis(0)), // (1, out)
        _ => x.dot(&w.t()),                         // (seq, out)
    };
    match bias {
        Some(b) => y + b,
        None => y,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{s, Array, Array1};

    /// y[t][o] = Σ_i x[t][i] · w[o][i] + b[o], in f64 with explicit loops.
    fn explicit(x: ArrayView2<f32>, w: &Array2<f32>, b: Option<&Array1<f32>>) -> Vec<f64> {
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
                                                             // Several rows (the GEMM path) and one row (the matrix-vector path).
        for x in [x.view(), x.slice(s![1..2, ..])] {
            for bias in [None, Some(&b)] {
                let y = linear(x, w.view(), bias.map(|b| b.view()));
                assert_eq!(y.dim(), (x.nrows(), 4));
                for (got, want) in y.iter().zip(explicit(x, &w, bias)) {
                    assert!((*got as f64 - want).abs() < 1e-5, "{got} vs {want}");
                }
            }
        }
    }
}
