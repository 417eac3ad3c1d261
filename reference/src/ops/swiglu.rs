//! The gated activation of the Llama MLP (Shazeer 2020): `silu(gate) * up`.

use ndarray::{Array2, ArrayView2, Zip};

/// SiLU, as PyTorch computes it: `x / (1 + e^(-x))`.
pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// `gate`, `up` (seq, intermediate) → `silu(gate) * up`, (seq, intermediate).
pub fn swiglu(gate: ArrayView2<f32>, up: ArrayView2<f32>) -> Array2<f32> {
    Zip::from(&gate).and(&up).map_collect(|&g, &u| silu(g) * u)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::arr2;

    #[test]
    fn silu_known_values() {
        assert_eq!(silu(0.0), 0.0);
        // silu(x) = x·σ(x), in f64: σ(1) = 0.7310585786300049, σ(-2) = 0.11920292202211755.
        assert!((silu(1.0) - 0.731_058_6).abs() < 1e-7);
        assert!((silu(-2.0) - (-2.0 * 0.119_202_92)).abs() < 1e-7);
        // Large arguments saturate instead of overflowing: silu(x) → x, silu(-x) → -0.
        assert_eq!(silu(100.0), 100.0);
        assert_eq!(silu(-200.0), 0.0);
    }

    #[test]
    fn swiglu_is_silu_of_gate_times_up() {
        let gate = arr2(&[[0.0, 1.0], [-2.0, 3.0]]);
        let up = arr2(&[[5.0, 2.0], [-1.0, 0.5]]);
        let y = swiglu(gate.view(), up.view());
        let want = [0.0, 2.0 * silu(1.0), -silu(-2.0), 0.5 * silu(3.0)];
        assert_eq!(y.iter().copied().collect::<Vec<_>>(), want);
    }
}
