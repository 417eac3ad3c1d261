//! Elementwise kernels: the gated activation (SwiGLU, GeGLU), the residual add, the bias add, the
//! final logit soft-cap and the f32 → 16-bit conversion.
//! All are 1-D launches of `ceil(n/256)` blocks of 256 threads.

use super::{act_arg, count, linear_grid, ELEMENTWISE_BLOCK};
use crate::backend::gpu::vendor::{DevicePtr, KernelArg};
use crate::backend::gpu::{bad, GpuBackend, GpuTensor};
use crate::backend::{check_tensor, Activation};
use crate::error::Result;
use crate::tensor::DType;

const F32: &[DType] = &[DType::F32];

pub(in crate::backend::gpu) fn swiglu(
    b: &GpuBackend,
    gate: &GpuTensor,
    up: &GpuTensor,
    out: &mut GpuTensor,
    n: usize,
    act: Activation,
) -> Result<()> {
    const OP: &str = "swiglu";
    check_tensor("gpu", OP, "gate", gate, n, F32)?;
    check_tensor("gpu", OP, "up", up, n, F32)?;
    check_tensor("gpu", OP, "out", out, n, F32)?;
    if n == 0 {
        return Ok(());
    }
    launch_swiglu(b, gate.ptr(), up.ptr(), out.ptr(), count(n), act)
}

/// `swiglu`: `out = act(gate) · up` over `n` (silu: `gate / (1 + e^(−gate)) · up`).
pub(in crate::backend::gpu) fn launch_swiglu(
    b: &GpuBackend,
    gate: DevicePtr,
    up: DevicePtr,
    out: DevicePtr,
    n: i64,
    act: Activation,
) -> Result<()> {
    let cfg = linear_grid("swiglu", n, ELEMENTWISE_BLOCK)?;
    let args = [
        KernelArg::Ptr(gate),
        KernelArg::Ptr(up),
        KernelArg::Ptr(out),
        KernelArg::I64(n),
        act_arg(act),
    ];
    // SAFETY: the caller checked gate, up and out hold ≥ n f32.
    unsafe { b.launch("swiglu", cfg, &args) }
}

pub(in crate::backend::gpu) fn add(
    b: &GpuBackend,
    x: &mut GpuTensor,
    y: &GpuTensor,
    n: usize,
) -> Result<()> {
    const OP: &str = "add";
    check_tensor("gpu", OP, "x", x, n, F32)?;
    check_tensor("gpu", OP, "y", y, n, F32)?;
    if n == 0 {
        return Ok(());
    }
    launch_add(b, x.ptr(), y.ptr(), count(n))
}

/// `add`: `x += y` over `n`.
pub(in crate::backend::gpu) fn launch_add(
    b: &GpuBackend,
    x: DevicePtr,
    y: DevicePtr,
    n: i64,
) -> Result<()> {
    let cfg = linear_grid("add", n, ELEMENTWISE_BLOCK)?;
    let args = [KernelArg::Ptr(x), KernelArg::Ptr(y), KernelArg::I64(n)];
    // SAFETY: the caller checked x and y hold ≥ n f32.
    unsafe { b.launch("add", cfg, &args) }
}

/// `bias_add`: `out[r·cols + c] += bias[c]` over `rows · cols`.
pub(in crate::backend::gpu) fn launch_bias_add(
    b: &GpuBackend,
    out: DevicePtr,
    bias: DevicePtr,
    rows: i32,
    cols: i32,
) -> Result<()> {
    let cfg = linear_grid(
        "bias_add",
        i64::from(rows) * i64::from(cols),
        ELEMENTWISE_BLOCK,
    )?;
    let args = [
        KernelArg::Ptr(out),
        KernelArg::Ptr(bias),
        KernelArg::I32(rows),
        KernelArg::I32(cols),
    ];
    // SAFETY: the caller checked out ≥ rows·cols and bias ≥ cols, both f32.
    unsafe { b.launch("bias_add", cfg, &args) }
}

/// `softcap`: `x = c · tanh(x / c)` over `n` (Gemma 2's final logit soft-cap; `c` finite and
/// positive, checked by the caller).
pub(in crate::backend::gpu) fn launch_softcap(
    b: &GpuBackend,
    x: DevicePtr,
    n: i64,
    c: f32,
) -> Result<()> {
    let cfg = linear_grid("softcap", n, ELEMENTWISE_BLOCK)?;
    let args = [
        KernelArg::Ptr(x),
        KernelArg::I64(n),
        KernelArg::F32(c),
        KernelArg::F32(1.0 / c),
    ];
    // SAFETY: the caller checked x holds ≥ n f32.
    unsafe { b.launch("softcap", cfg, &args) }
}

/// `convert_f32_to_{D}` (f32 → f16/bf16) over `n`.
pub(in crate::backend::gpu) fn launch_convert(
    b: &GpuBackend,
    from: DType,
    to: DType,
    src: DevicePtr,
    dst: DevicePtr,
    n: i64,
) -> Result<()> {
    let name = match (from, to) {
        (DType::F32, DType::F16) => "convert_f32_to_f16",
        (DType::F32, DType::BF16) => "convert_f32_to_bf16",
        _ => {
            return Err(bad(
                "convert",
                format!("no conversion kernel {from} → {to}"),
            ))
        }
    };
    let cfg = linear_grid(name, n, ELEMENTWISE_BLOCK)?;
    let args = [KernelArg::Ptr(src), KernelArg::Ptr(dst), KernelArg::I64(n)];
    // SAFETY: the caller checked src and dst hold ≥ n elements of their dtypes.
    unsafe { b.launch(name, cfg, &args) }
}
