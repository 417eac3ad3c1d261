//! Batch-1 projections over 16-bit weights (`kernels/gemv.hip`): `out = x · Wᵀ (+ bias)` for up
//! to three matrices stacked along the output dimension (fused QKV), and the fused gate/up
//! projection with SwiGLU; optionally with the RMSNorm of x as the prologue (every block
//! recomputes the norm's scale: no `rms_norm` launch, no pass over h) and the residual add as the
//! epilogue (`out += x · Wᵀ` in place: no `add` or residual pass). x is rounded to the weights'
//! type inside the kernel (staged once per block in LDS when K ≤ [`GEMV_LDS_MAX`]), so there is
//! no convert pass and W is read once, at HBM bandwidth. The `launch_*` functions only queue work
//! (no synchronization, no allocation): a decode step is captured into a graph around them.

use crate::backend::gpu::vendor::{DevicePtr, KernelArg, LaunchConfig};
use crate::backend::gpu::{bad, GpuBackend};
use crate::error::Result;
use crate::tensor::DType;

/// Threads per block of the GEMV kernels (ABI: `GEMV_BLOCK` in gemv.hip).
pub(in crate::backend::gpu) const GEMV_BLOCK: u32 = 256;

/// The most input elements staged in LDS (ABI: `GEMV_LDS_MAX` in gemv.hip): 2·K bytes ≤ 32 KiB,
/// so two blocks share a 64 KiB CDNA LDS. Longer inputs are read through the cache by every wave.
pub(in crate::backend::gpu) const GEMV_LDS_MAX: usize = 16384;

/// The dynamic shared memory of a GEMV over `k` inputs: 2·k bytes rounded up to 16 when staged.
pub(in crate::backend::gpu) fn gemv_shared_bytes(k: usize) -> u32 {
    if k <= GEMV_LDS_MAX {
        (2 * k).next_multiple_of(16) as u32
    } else {
        0
    }
}

/// The most input rows that take the GEMV kernels. 1: a GEMV reads all of W once per input row,
/// so at two rows it already reads W twice where the GEMM reads it once; batch-1 decode is
/// where the GEMM (N = 1, plus its convert pass) wastes bandwidth. Prefill stays on BLAS.
pub(in crate::backend::gpu) const GEMV_MAX_ROWS: usize = 1;

/// Whether a product of `rows` input rows with `w_dtype` weights runs on the GEMV kernels.
pub(in crate::backend::gpu) fn uses_gemv(rows: usize, w_dtype: DType) -> bool {
    rows <= GEMV_MAX_ROWS
        && (matches!(w_dtype, DType::F16 | DType::BF16)
            || crate::backend::gpu::quant::quant_range(w_dtype).is_some())
}

/// One wave per output row: `ceil(rows / (GEMV_BLOCK / wave))` blocks of `GEMV_BLOCK`.
pub(in crate::backend::gpu) fn gemv_grid(
    op: &str,
    rows: i64,
    k: usize,
    wave: u32,
) -> Result<LaunchConfig> {
    if wave == 0 || !GEMV_BLOCK.is_multiple_of(wave) {
        return Err(bad(op, format!("wave {wave} does not divide {GEMV_BLOCK}")));
    }
    let per_block = u64::from(GEMV_BLOCK / wave);
    let blocks = u64::try_from(rows)
        .ok()
        .map(|r| r.div_ceil(per_block))
        .and_then(|b| u32::try_from(b).ok().filter(|&b| b <= i32::MAX as u32))
        .ok_or_else(|| bad(op, format!("{rows} rows exceed a 1-D grid")))?;
    Ok(LaunchConfig {
        grid: (blocks, 1, 1),
        block: (GEMV_BLOCK, 1, 1),
        shared_bytes: gemv_shared_bytes(k),
    })
}

/// Kernel name of a family (`gemv`, `gemv_swiglu`) for 16-bit weights of `dtype`.
fn kernel_name(op: &str, family: &str, dtype: DType) -> Result<String> {
    match dtype {
        DType::F16 => Ok(format!("{family}_f16")),
        DType::BF16 => Ok(format!("{family}_bf16")),
        other => Err(bad(op, format!("no {family} kernel for {other} weights"))),
    }
}

/// The RMSNorm prologue of a GEMV: `x` normalised with these f32 weights (k of them) and eps.
#[derive(Debug, Clone, Copy)]
pub(in crate::backend::gpu) struct NormPrologue {
    pub w: DevicePtr,
    pub eps: f32,
}

/// One stacked GEMV: W holds `parts[0] + parts[1] + parts[2]` rows of `k` (a part may be 0),
/// row `r` of the product goes to the output of its part (added to it with `residual`).
#[derive(Debug, Clone, Copy)]
pub(in crate::backend::gpu) struct Gemv {
    pub dtype: DType,
    pub w: DevicePtr,
    pub x: DevicePtr,
    pub norm: Option<NormPrologue>,
    pub bias: Option<DevicePtr>,
    pub outs: [DevicePtr; 3],
    pub parts: [i32; 3],
    pub k: i32,
    pub residual: bool,
}

fn norm_args(norm: Option<NormPrologue>) -> [KernelArg; 2] {
    let n = norm.unwrap_or(NormPrologue { w: 0, eps: 0.0 });
    [KernelArg::Ptr(n.w), KernelArg::F32(n.eps)]
}

/// `gemv_{T}`: one wave per row of the stacked W, one launch for all parts.
pub(in crate::backend::gpu) fn launch_gemv(b: &GpuBackend, op: &str, g: &Gemv) -> Result<()> {
    let rows: i64 = g.parts.iter().map(|&p| i64::from(p)).sum();
    if rows == 0 {
        return Ok(());
    }
    if rows > i64::from(i32::MAX) || g.parts.iter().any(|&p| p < 0) || g.k < 0 {
        return Err(bad(op, format!("parts {:?} of {} columns", g.parts, g.k)));
    }
    let name = kernel_name(op, "gemv", g.dtype)?;
    let cfg = gemv_grid(op, rows, g.k as usize, b.wave)?;
    let [norm_w, eps] = norm_args(g.norm);
    let args = [
        KernelArg::Ptr(g.w),
        KernelArg::Ptr(g.x),
        norm_w,
        eps,
        KernelArg::Ptr(g.bias.unwrap_or(0)),
        KernelArg::Ptr(g.outs[0]),
        KernelArg::Ptr(g.outs[1]),
        KernelArg::Ptr(g.outs[2]),
        KernelArg::I32(g.parts[0]),
        KernelArg::I32(g.parts[1]),
        KernelArg::I32(g.parts[2]),
        KernelArg::I32(g.k),
        KernelArg::I32(i32::from(g.residual)),
    ];
    // SAFETY: the caller checked W ≥ rows·k elements of `dtype`, x (and the norm weights) ≥ k
    // f32, bias ≥ rows f32, out_i ≥ parts[i] f32, and that x aliases no output; the kernel
    // reads only W before its dependency wait and writes nothing before it (overlapped).
    unsafe { b.launch_overlapped(&name, cfg, &args) }
}

/// `gemv_swiglu_{T}`: `out (inter) = silu(x · W_gᵀ) ⊙ (x · W_uᵀ)` for `w = [W_g; W_u]`.
#[allow(clippy::too_many_arguments)]
pub(in crate::backend::gpu) fn launch_gemv_swiglu(
    b: &GpuBackend,
    op: &str,
    dtype: DType,
    w: DevicePtr,
    x: DevicePtr,
    norm: Option<NormPrologue>,
    out: DevicePtr,
    inter: i32,
    k: i32,
) -> Result<()> {
    if inter == 0 {
        return Ok(());
    }
    let name = kernel_name(op, "gemv_swiglu", dtype)?;
    let cfg = gemv_grid(op, i64::from(inter), k.max(0) as usize, b.wave)?;
    let [norm_w, eps] = norm_args(norm);
    let args = [
        KernelArg::Ptr(w),
        KernelArg::Ptr(x),
        norm_w,
        eps,
        KernelArg::Ptr(out),
        KernelArg::I32(inter),
        KernelArg::I32(k),
    ];
    // SAFETY: the caller checked W ≥ 2·inter·k elements of `dtype`, x (and the norm weights) ≥ k
    // f32, out ≥ inter f32; W alone is read before the dependency wait (overlapped).
    unsafe { b.launch_overlapped(&name, cfg, &args) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_wave_per_row_at_both_waves() {
        // WAVE=32: 8 rows per 256-thread block; WAVE=64: 4.
        for (rows, wave, blocks) in [
            (1, 32, 1),
            (8, 32, 1),
            (9, 32, 2),
            (5000, 32, 625),
            (1, 64, 1),
            (4, 64, 1),
            (5, 64, 2),
            (128256, 64, 32064),
        ] {
            let c = gemv_grid("gemv", rows, 576, wave).unwrap();
            assert_eq!(c.grid, (blocks, 1, 1), "rows {rows} wave {wave}");
            assert_eq!(c.block, (256, 1, 1));
            assert_eq!(c.shared_bytes, 1152);
        }
        assert!(gemv_grid("gemv", -1, 8, 32).is_err());
        assert!(gemv_grid("gemv", 8, 8, 48).is_err());
        assert!(gemv_grid("gemv", 8, 8, 0).is_err());
    }

    #[test]
    fn inputs_up_to_16384_are_staged_in_at_most_32_kib() {
        for (k, bytes) in [(0, 0), (1, 16), (5, 16), (8, 16), (9, 32), (4096, 8192)] {
            assert_eq!(gemv_shared_bytes(k), bytes, "k {k}");
        }
        assert_eq!(gemv_shared_bytes(GEMV_LDS_MAX), 32768);
        assert_eq!(
            gemv_shared_bytes(GEMV_LDS_MAX + 1),
            0,
            "read through the cache"
        );
    }

    #[test]
    fn only_single_rows_of_16_bit_weights_take_the_gemv() {
        assert!(uses_gemv(1, DType::BF16) && uses_gemv(1, DType::F16));
        assert!(!uses_gemv(2, DType::BF16), "prefill stays on BLAS");
        assert!(!uses_gemv(1, DType::F32), "f32 weights stay on BLAS");
        assert!(uses_gemv(1, DType::Q4_K), "block types: qgemv.hip");
        assert!(!uses_gemv(2, DType::Q4_0), "prefill: dequantize + GEMM");
        assert_eq!(kernel_name("t", "gemv", DType::F16).unwrap(), "gemv_f16");
        assert_eq!(
            kernel_name("t", "gemv_swiglu", DType::BF16).unwrap(),
            "gemv_swiglu_bf16"
        );
        assert!(kernel_name("t", "gemv", DType::F32).is_err());
    }
}
