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
