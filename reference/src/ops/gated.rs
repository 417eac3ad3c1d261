//! The gated activation of the MLP (Shazeer 2020): `act(gate) * up`, with SiLU (SwiGLU: Llama,
//! Qwen, Mistral) or GELU-tanh (GeGLU: Gemma).

use ndarray::{Array2, ArrayView2, Zip};

use crate::config::Activation;

/// SiLU, as PyTorch computes it: `x / (1 + e^(-x))`.
pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// GELU with the tanh approximation (Hendrycks & Gimpel 2016), in f32 as PyTorch's CPU
/// `gelu(x, approximate="tanh")` computes it (`GeluKernel.cpp`): with
/// `β = √2 · (2/√π) · 0.5 = √(2/π)` and `κ = 0.044715`,
/// `0.5 · x · (1 + tanh(β · (x + κ · x³)))`.
pub fn gelu_tanh(x: f32) -> f32 {
    const BETA: f32 = (std::f64::consts::SQRT_2 * std::f64::consts::FRAC_2_SQRT_PI * 0.5) as f32;
    const KAPPA: f32 = 0.044715;
    let inner = BETA * (x + KAPPA * (x * x * x));
    0.5 * x * (1.0 + inner.tanh())
}

/// The activation `act` of one gate value.
pub fn activate(act: Activation, x: f32) -> f32 {
    match act {
        Activation::Silu => silu(x),
        Activation::GeluTanh => gelu_tanh(x),
    }
}

/// `gate`, `up` (seq, intermediate) → `silu(gate) * up`, (seq, intermediate).
pub fn swiglu(gate: ArrayView2<f32>, up: ArrayView2<f32>) -> Array2<f32> {
    gated(gate, up, Activation::Silu)
}

/// `gate`, `up` (seq, intermediate) → `gelu_tanh(gate) * up` (GeGLU), (seq, intermediate).
pub fn geglu(gate: ArrayView2<f32>, up: ArrayView2<f32>) -> Array2<f32> {
    gated(gate, up, Activation::GeluTanh)
}

/// `gate`, `up` (seq, intermediate) → `act(gate) * up`, (seq, intermediate).
pub fn gated(gate: ArrayView2<f32>, up: ArrayView2<f32>, act: Activation) -> Array2<f32> {
    Zip::from(&gate)
        .and(&up)
        .map_collect(|&g, &u| activate(act, g) * u)
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
    fn gelu_tanh_known_values() {
        assert_eq!(gelu_tanh(0.0), 0.0);
        // In f64: 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))) at 1 is 0.8411919906082768, at -2
        // -0.04540230591222; large arguments saturate to x and -0.
        assert!((gelu_tanh(1.0) - 0.841_192).abs() < 1e-6);
        assert!((gelu_tanh(-2.0) - (-0.045_402_306)).abs() < 1e-6);
        assert_eq!(gelu_tanh(50.0), 50.0);
        assert_eq!(gelu_tanh(-50.0), -0.0);
        // It is not SiLU (which gives 0.7310586 at 1).
        assert!((gelu_tanh(1.0) - silu(1.0)).abs() > 0.1);
    }

    #[test]
    fn gated_applies_the_chosen_activation() {
        let gate = arr2(&[[1.0, -2.0]]);
        let up = arr2(&[[3.0, 0.5]]);
        let y = gated(gate.view(), up.view(), Activation::GeluTanh);
        assert_eq!(y, arr2(&[[3.0 * gelu_tanh(1.0), 0.5 * gelu_tanh(-2.0)]]));
        let s = gated(gate.view(), up.view(), Activation::Silu);
        assert_eq!(s, swiglu(gate.view(), up.view()));
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
