//! Elementwise ops: the gated activation (`act(gate) · up`: SwiGLU, GeGLU) and the residual add.

use super::CpuTensor;
use crate::backend::{check_tensor, Activation};
use crate::error::Result;
use crate::tensor::DType;

pub fn swiglu(
    gate: &CpuTensor,
    up: &CpuTensor,
    out: &mut CpuTensor,
    n: usize,
    act: Activation,
) -> Result<()> {
    const OP: &str = "swiglu";
    for (what, t) in [("gate", gate), ("up", up)] {
        check_tensor("cpu", OP, what, t, n, &[DType::F32])?;
    }
    check_tensor("cpu", OP, "out", out, n, &[DType::F32])?;
    let (g, u) = (&gate.f32(OP, "gate")?[..n], &up.f32(OP, "up")?[..n]);
    swiglu_slices(g, u, &mut out.f32_mut(OP, "out")?[..n], act);
    Ok(())
}

/// `out[i] = act(gate[i]) · up[i]` over the shortest of the three.
pub fn swiglu_slices(gate: &[f32], up: &[f32], out: &mut [f32], act: Activation) {
    let f = match act {
        Activation::Silu => silu,
        Activation::GeluTanh => gelu_tanh,
    };
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = f(g) * u;
    }
}

/// `silu(x) = x · σ(x) = x / (1 + e^(−x))`.
pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// GELU with the tanh approximation, in f32 as PyTorch's `gelu(x, approximate='tanh')`
/// (transformers' `gelu_pytorch_tanh`): `0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))`.
pub fn gelu_tanh(x: f32) -> f32 {
    // √(2/π) rounded to f32, as PyTorch's kernel forms it (M_SQRT2 · M_2_SQRTPI · 0.5), and
    // the same order of operations: x³ first, then κ·x³.
    const BETA: f32 = std::f32::consts::SQRT_2 * std::f32::consts::FRAC_2_SQRT_PI * 0.5;
    const KAPPA: f32 = 0.044_715;
    let inner = BETA * (x + KAPPA * (x * x * x));
    0.5 * x * (1.0 + inner.tanh())
}

pub fn add(x: &mut CpuTensor, y: &CpuTensor, n: usize) -> Result<()> {
    const OP: &str = "add";
    check_tensor("cpu", OP, "x", x, n, &[DType::F32])?;
    check_tensor("cpu", OP, "y", y, n, &[DType::F32])?;
    let y = &y.f32(OP, "y")?[..n];
    x.f32_mut(OP, "x")?[..n]
        .iter_mut()
        .zip(y)
        .for_each(|(a, b)| *a += b);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gelu_tanh_matches_pytorch_values() {
        // The formula in f64 (what PyTorch's f32 kernel approximates to a few ulps).
        for (x, want) in [
            (0.0f32, 0.0f32),
            (1.0, 0.841_192),
            (-1.0, -0.158_808),
            (3.0, 2.996_362_6),
            (-3.0, -0.003_637_4),
            (0.5, 0.345_714),
        ] {
            let got = gelu_tanh(x);
            assert!(
                (got - want).abs() <= 2e-6,
                "gelu_tanh({x}) = {got}, want {want}"
            );
        }
    }
}
