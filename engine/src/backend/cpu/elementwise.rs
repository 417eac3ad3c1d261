//! Elementwise ops: SwiGLU (`silu(gate) · up`) and the residual add.

use super::CpuTensor;
use crate::backend::check_tensor;
use crate::error::Result;
use crate::tensor::DType;

pub fn swiglu(gate: &CpuTensor, up: &CpuTensor, out: &mut CpuTensor, n: usize) -> Result<()> {
    const OP: &str = "swiglu";
    for (what, t) in [("gate", gate), ("up", up)] {
        check_tensor("cpu", OP, what, t, n, &[DType::F32])?;
    }
    check_tensor("cpu", OP, "out", out, n, &[DType::F32])?;
    let (g, u) = (&gate.f32(OP, "gate")?[..n], &up.f32(OP, "up")?[..n]);
    swiglu_slices(g, u, &mut out.f32_mut(OP, "out")?[..n]);
    Ok(())
}

/// `out[i] = silu(gate[i]) · up[i]` over the shortest of the three.
pub fn swiglu_slices(gate: &[f32], up: &[f32], out: &mut [f32]) {
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        // silu(g) = g · σ(g) = g / (1 + e^(−g))
        *o = g / (1.0 + (-g).exp()) * u;
    }
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
