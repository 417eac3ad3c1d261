//! RMSNorm with the residual add fused: `x += residual; out = x · rsqrt(mean(x²) + eps) · w`.

use crate::backend::gpu::int;
use crate::backend::gpu::vendor::{DevicePtr, KernelArg, LaunchConfig};
use crate::backend::gpu::{GpuBackend, GpuTensor};
use crate::backend::{check_tensor, RmsNormParams};
use crate::error::Result;
use crate::tensor::DType;

const OP: &str = "rms_norm";

pub(in crate::backend::gpu) fn rms_norm(
    b: &GpuBackend,
    x: &mut GpuTensor,
    residual: Option<&GpuTensor>,
    w: &GpuTensor,
    out: &mut GpuTensor,
    p: RmsNormParams,
) -> Result<()> {
    let n = p.rows * p.dim;
    let f32 = &[DType::F32];
    check_tensor("gpu", OP, "x", x, n, f32)?;
    // Norm weights stay f32 on every backend (model::is_matrix).
    check_tensor("gpu", OP, "w", w, p.dim, f32)?;
    check_tensor("gpu", OP, "out", out, n, f32)?;
    if let Some(r) = residual {
        check_tensor("gpu", OP, "residual", r, n, f32)?;
    }
    if n == 0 {
        return Ok(());
    }
    launch_rms_norm(
        b,
        x.ptr(),
        residual.map_or(0, |r| r.ptr()),
        w.ptr(),
        out.ptr(),
        int(OP, "rows", p.rows)?,
        int(OP, "dim", p.dim)?,
        p.eps,
        false,
    )
}

/// Gemma's post-norm residual add `x += norm(y) · w`: one launch with the kernel's `accumulate`
/// (its pass 2 adds into `out` = `x`; `y` is read only). `tmp` stays unwritten.
pub(in crate::backend::gpu) fn rms_norm_add(
    b: &GpuBackend,
    y: &GpuTensor,
    w: &GpuTensor,
    x: &mut GpuTensor,
    p: RmsNormParams,
) -> Result<()> {
    const OP: &str = "rms_norm_add";
    let n = p.rows * p.dim;
    let f32 = &[DType::F32];
    check_tensor("gpu", OP, "y", y, n, f32)?;
    check_tensor("gpu", OP, "w", w, p.dim, f32)?;
    check_tensor("gpu", OP, "x", x, n, f32)?;
    if n == 0 {
        return Ok(());
    }
    launch_rms_norm(
        b,
        y.ptr(),
        0,
        w.ptr(),
        x.ptr(),
        int(OP, "rows", p.rows)?,
        int(OP, "dim", p.dim)?,
        p.eps,
        true,
    )
}

/// `x = norm(x) · w` in place (QK-norm): the same kernel with `out = x`. Each thread reads the
/// elements it writes, and only after the block's sum of squares (`rms_norm_kernel`'s pass 2
/// walks the indices of pass 1), so the aliasing is safe.
pub(in crate::backend::gpu) fn rms_norm_in_place(
    b: &GpuBackend,
    x: &mut GpuTensor,
    w: &GpuTensor,
    p: RmsNormParams,
) -> Result<()> {
    const OP: &str = "rms_norm_in_place";
    let n = p.rows * p.dim;
    let f32 = &[DType::F32];
    check_tensor("gpu", OP, "x", x, n, f32)?;
    check_tensor("gpu", OP, "w", w, p.dim, f32)?;
    if n == 0 {
        return Ok(());
    }
    launch_rms_norm(
        b,
        x.ptr(),
        0,
        w.ptr(),
        x.ptr(),
        int(OP, "rows", p.rows)?,
        int(OP, "dim", p.dim)?,
        p.eps,
        false,
    )
}

/// `rms_norm`: one block of 256 threads per row; `residual` 0 means none; `accumulate`: `out
/// +=` the normalised rows (`out` must not alias `x` then).
#[allow(clippy::too_many_arguments)]
pub(in crate::backend::gpu) fn launch_rms_norm(
    b: &GpuBackend,
    x: DevicePtr,
    residual: DevicePtr,
    w: DevicePtr,
    out: DevicePtr,
    rows: i32,
    dim: i32,
    eps: f32,
    accumulate: bool,
) -> Result<()> {
    let cfg = LaunchConfig {
        grid: (rows as u32, 1, 1),
        block: (256, 1, 1),
        shared_bytes: 0,
    };
    let args = [
        KernelArg::Ptr(x),
        KernelArg::Ptr(residual),
        KernelArg::Ptr(w),
        KernelArg::Ptr(out),
        KernelArg::I32(rows),
        KernelArg::I32(dim),
        KernelArg::F32(eps),
        KernelArg::I32(i32::from(accumulate)),
    ];
    // SAFETY: the caller checked x, out (and residual) ≥ rows·dim and w ≥ dim, all f32 (and x,
    // out distinct with accumulate).
    unsafe { b.launch(OP, cfg, &args) }
}
