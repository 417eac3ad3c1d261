//! Linear layers and logits: x (f32) converted on the device to the weights' type (bf16 or f16;
//! f32 weights take x as it is), then one BLAS call with those inputs, f32 output and f32
//! accumulation (the ABI): column-major
//! `gemm(opA = T, opB = N, M = out, N = rows, K = in, A = W, lda = in, B = x_bf16, ldb = in,
//! C = out, ldc = out)`, which is row-major `out (rows, out) = x (rows, in) · Wᵀ`; then the bias.

use super::elementwise::{launch_bias_add, launch_convert};
use crate::backend::gpu::vendor::{DevicePtr, Gemm};
use crate::backend::gpu::{bad, int, scratch_ptr, GpuBackend, GpuTensor};
use crate::backend::{check_tensor, LinearParams, LogitsParams, TensorInfo};
use crate::error::Result;
use crate::tensor::DType;

pub(in crate::backend::gpu) fn linear(
    b: &GpuBackend,
    x: &GpuTensor,
    w: &GpuTensor,
    bias: Option<&GpuTensor>,
    out: &mut GpuTensor,
    p: LinearParams,
) -> Result<()> {
    const OP: &str = "linear";
    let (n, k, m) = (p.rows, p.in_features, p.out_features);
    check_tensor("gpu", OP, "x", x, n * k, &[DType::F32])?;
    check_tensor("gpu", OP, "w", w, m * k, WEIGHTS)?;
    check_tensor("gpu", OP, "out", out, n * m, &[DType::F32])?;
    if let Some(bias) = bias {
        // Biases stay f32 on every backend (model::is_matrix).
        check_tensor("gpu", OP, "bias", bias, m, &[DType::F32])?;
    }
    launch_linear(
        b,
        OP,
        x.ptr(),
        w.ptr(),
        w.dtype(),
        bias.map(|t| t.ptr()),
        out.ptr(),
        p,
    )
}

pub(in crate::backend::gpu) fn logits(
    b: &GpuBackend,
    x: &GpuTensor,
    w: &GpuTensor,
    out: &mut GpuTensor,
    p: LogitsParams,
) -> Result<()> {
    const OP: &str = "logits";
    let (rows_end, hidden, vocab) = (p.row0 + p.rows, p.hidden, p.vocab);
    check_tensor("gpu", OP, "x", x, rows_end * hidden, &[DType::F32])?;
    check_tensor("gpu", OP, "w", w, vocab * hidden, WEIGHTS)?;
    check_tensor("gpu", OP, "out", out, p.rows * vocab, &[DType::F32])?;
    let lp = LinearParams {
        rows: p.rows,
        in_features: hidden,
        out_features: vocab,
    };
    // The selected rows start row0·hidden elements into x.
    launch_linear(
        b,
        OP,
        x.ptr_at(p.row0 * hidden),
        w.ptr(),
        w.dtype(),
        None,
        out.ptr(),
        lp,
    )
}

/// Weight types the GEMM takes.
const WEIGHTS: &[DType] = &[DType::BF16, DType::F16, DType::F32];

/// Converts the (rows, in) f32 input to the weights' 16-bit type in scratch (if they have one),
/// runs the GEMM, adds the bias.
#[allow(clippy::too_many_arguments)]
fn launch_linear(
    b: &GpuBackend,
    op: &str,
    x: DevicePtr,
    w: DevicePtr,
    w_dtype: DType,
    bias: Option<DevicePtr>,
    out: DevicePtr,
    p: LinearParams,
) -> Result<()> {
    let (rows, k, m) = (p.rows, p.in_features, p.out_features);
    if rows == 0 || m == 0 {
        return Ok(());
    }
    let (rows_i, k_i, m_i) = (
        int(op, "rows", rows)?,
        int(op, "in", k)?,
        int(op, "out", m)?,
    );
    let mut scratch = b
        .scratch
        .lock()
        .map_err(|_| bad(op, "scratch lock poisoned".into()))?;
    // (rows, in) in the weights' type
    let x_in = if w_dtype == DType::F32 {
        x
    } else {
        let p = scratch_ptr(&b.vendor, &mut scratch.bf16, rows * k * 2)?;
        launch_convert(b, DType::F32, w_dtype, x, p, super::count(rows * k))?;
        p
    };
    let g = Gemm {
        inputs: w_dtype,
        trans_a: true,
        trans_b: false,
        m: m_i,
        n: rows_i,
        k: k_i,
        a: w,
        lda: k_i,
        b: x_in,
        ldb: k_i,
        c: out,
        ldc: m_i,
    };
    // SAFETY: W holds m·k elements of its type, x_in rows·k of the same, out rows·m f32
    // (checked by callers).
    unsafe { b.vendor.gemm_f32_out(&g)? };
    drop(scratch);
    match bias {
        Some(bias) => launch_bias_add(b, out, bias, rows_i, m_i),
        None => Ok(()),
    }
}
