//! Linear layers and logits: x (f32) converted on the device to the weights' type (bf16 or f16;
//! f32 weights take x as it is), then one BLAS call with those inputs, f32 output and f32
//! accumulation (the ABI): column-major
//! `gemm(opA = T, opB = N, M = out, N = rows, K = in, A = W, lda = in, B = x_bf16, ldb = in,
//! C = out, ldc = out)`, which is row-major `out (rows, out) = x (rows, in) · Wᵀ`; then the bias.
//! Up to `GEMV_MAX_ROWS` rows (batch-1 decode, a batched decode pass) take the GEMV kernels
//! instead (`gemv.rs`: the same arithmetic, no convert pass, W read from HBM about once, each
//! row computed as it is alone).

use super::elementwise::{launch_bias_add, launch_convert, launch_softcap, launch_swiglu};
use super::gemv::{launch_gemv, launch_gemv_swiglu, Gemv, NormPrologue};
use super::qgemv::{self, launch_dequant, launch_qgemv, launch_qgemv_swiglu, QGemv, Rows};
use crate::backend::gpu::quant::QuantSeg;
use crate::backend::gpu::vendor::{DevicePtr, Gemm};
use crate::backend::gpu::{bad, int, scratch_ptr, GpuBackend, GpuTensor};
use crate::backend::{
    check_tensor, unfused, Activation, LinearParams, LogitsParams, PreNorm, TensorInfo,
};
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
    single(b, "linear", "out", x, w, bias, out, p, Fuse::NONE)
}

/// `acc += x · Wᵀ (+ bias)`: up to `GEMV_MAX_ROWS` rows a GEMV whose epilogue adds into acc in place (no tmp,
/// no add pass), else the separate ops.
pub(in crate::backend::gpu) fn linear_residual(
    b: &GpuBackend,
    x: &GpuTensor,
    w: &GpuTensor,
    bias: Option<&GpuTensor>,
    acc: &mut GpuTensor,
    tmp: &mut GpuTensor,
    p: LinearParams,
) -> Result<()> {
    if !b.uses_gemv(p.rows, w.dtype()) {
        return unfused::linear_residual(b, x, w, bias, acc, tmp, p);
    }
    let fuse = Fuse {
        norm: None,
        residual: true,
    };
    single(b, "linear_residual", "acc", x, w, bias, acc, p, fuse)
}

/// One matrix: `out (rows, out) = x · Wᵀ (+ bias)` (added into `out` with `fuse.residual`),
/// every length checked first.
#[allow(clippy::too_many_arguments)]
fn single(
    b: &GpuBackend,
    op: &str,
    out_name: &str,
    x: &GpuTensor,
    w: &GpuTensor,
    bias: Option<&GpuTensor>,
    out: &mut GpuTensor,
    p: LinearParams,
    fuse: Fuse,
) -> Result<()> {
    let (n, k, m) = (p.rows, p.in_features, p.out_features);
    check_tensor("gpu", op, "x", x, n * k, &[DType::F32])?;
    check_tensor("gpu", op, "w", w, m * k, WEIGHTS)?;
    check_tensor("gpu", op, out_name, out, n * m, &[DType::F32])?;
    if let Some(bias) = bias {
        // Biases stay f32 on every backend (model::is_matrix).
        check_tensor("gpu", op, "bias", bias, m, &[DType::F32])?;
    }
    let stack = Stack {
        w: w.ptr(),
        dtype: w.dtype(),
        segs: w.quant_segs(),
        bias: bias.map(|t| t.ptr()),
        outs: &[out.ptr()],
        parts: &[m],
    };
    launch_stacked(b, op, x.ptr(), &stack, n, k, Route::Auto, fuse)
}

/// The norm weights of a fused prologue: f32, one per input feature.
fn prologue(op: &str, norm: &PreNorm<'_, GpuTensor>, k: usize) -> Result<NormPrologue> {
    check_tensor("gpu", op, "norm weight", norm.weight, k, &[DType::F32])?;
    Ok(NormPrologue {
        w: norm.weight.ptr(),
        eps: norm.eps,
    })
}

/// `rms_norm(x) · norm` then the stacked projections: up to `GEMV_MAX_ROWS` rows one GEMV launch that
/// normalises x in its prologue (h untouched), else the separate ops.
#[allow(clippy::too_many_arguments)]
pub(in crate::backend::gpu) fn norm_linear_stacked(
    b: &GpuBackend,
    x: &mut GpuTensor,
    norm: PreNorm<'_, GpuTensor>,
    h: &mut GpuTensor,
    w: &GpuTensor,
    bias: Option<&GpuTensor>,
    outs: &mut [&mut GpuTensor],
    parts: &[usize],
    rows: usize,
    in_features: usize,
) -> Result<()> {
    if !b.uses_gemv(rows, w.dtype()) {
        return unfused::norm_linear_stacked(
            b,
            x,
            norm,
            h,
            w,
            bias,
            outs,
            parts,
            rows,
            in_features,
        );
    }
    let fuse = Fuse {
        norm: Some(prologue("norm_linear_stacked", &norm, in_features)?),
        residual: false,
    };
    stacked(
        b,
        Route::Auto,
        x,
        w,
        bias,
        outs,
        parts,
        rows,
        in_features,
        fuse,
    )
}

/// `rms_norm(x) · norm` then gate/up + SwiGLU: up to `GEMV_MAX_ROWS` rows one GEMV launch with the norm in its
/// prologue (h untouched), else the separate ops.
#[allow(clippy::too_many_arguments)]
pub(in crate::backend::gpu) fn norm_gate_up_swiglu(
    b: &GpuBackend,
    x: &mut GpuTensor,
    norm: PreNorm<'_, GpuTensor>,
    h: &mut GpuTensor,
    w: &GpuTensor,
    tmp: &mut GpuTensor,
    out: &mut GpuTensor,
    rows: usize,
    in_features: usize,
    inter: usize,
    act: Activation,
) -> Result<()> {
    if !b.uses_gemv(rows, w.dtype()) {
        return unfused::norm_gate_up_swiglu(
            b,
            x,
            norm,
            h,
            w,
            tmp,
            out,
            rows,
            in_features,
            inter,
            act,
        );
    }
    let n = prologue("norm_gate_up_swiglu", &norm, in_features)?;
    gate_up(
        b,
        Route::Auto,
        x,
        w,
        tmp,
        out,
        rows,
        in_features,
        inter,
        Some(n),
        act,
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
    let stack = Stack {
        w: w.ptr(),
        dtype: w.dtype(),
        segs: w.quant_segs(),
        bias: None,
        outs: &[out.ptr()],
        parts: &[lp.out_features],
    };
    if let Some(c) = p.softcap.filter(|c| !(c.is_finite() && *c > 0.0)) {
        return Err(bad(
            OP,
            format!("softcap {c} is not a finite positive number"),
        ));
    }
    // The selected rows start row0·hidden elements into x.
    launch_stacked(
        b,
        OP,
        x.ptr_at(p.row0 * hidden),
        &stack,
        lp.rows,
        hidden,
        Route::Auto,
        Fuse::NONE,
    )?;
    match p.softcap {
        Some(c) if p.rows * vocab > 0 => {
            launch_softcap(b, out.ptr(), super::count(p.rows * vocab), c)
        }
        _ => Ok(()),
    }
}

/// What a GEMV launch fuses around its product (the GEMV route only).
#[derive(Debug, Clone, Copy)]
struct Fuse {
    norm: Option<NormPrologue>,
    residual: bool,
}

impl Fuse {
    const NONE: Fuse = Fuse {
        norm: None,
        residual: false,
    };
}

/// Which implementation a projection takes: the engine's choice ([`uses_gemv`]), or BLAS at
/// every row count (the GEMV microbenchmark's baseline: convert + GEMM with N = 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::backend::gpu) enum Route {
    Auto,
    Blas,
}

/// Weight types the products take.
const WEIGHTS: &[DType] = &super::WEIGHT_TYPES;

#[allow(clippy::too_many_arguments)]
pub(in crate::backend::gpu) fn linear_stacked(
    b: &GpuBackend,
    route: Route,
    x: &GpuTensor,
    w: &GpuTensor,
    bias: Option<&GpuTensor>,
    outs: &mut [&mut GpuTensor],
    parts: &[usize],
    rows: usize,
    in_features: usize,
) -> Result<()> {
    stacked(
        b,
        route,
        x,
        w,
        bias,
        outs,
        parts,
        rows,
        in_features,
        Fuse::NONE,
    )
}

#[allow(clippy::too_many_arguments)]
fn stacked(
    b: &GpuBackend,
    route: Route,
    x: &GpuTensor,
    w: &GpuTensor,
    bias: Option<&GpuTensor>,
    outs: &mut [&mut GpuTensor],
    parts: &[usize],
    rows: usize,
    in_features: usize,
    fuse: Fuse,
) -> Result<()> {
    const OP: &str = "linear_stacked";
    crate::backend::check_parts("gpu", OP, outs.len(), parts)?;
    let total = checked_sum(OP, parts)?;
    let k = in_features;
    check_tensor("gpu", OP, "x", x, checked_mul(OP, rows, k)?, &[DType::F32])?;
    check_tensor("gpu", OP, "w", w, checked_mul(OP, total, k)?, WEIGHTS)?;
    if let Some(bias) = bias {
        check_tensor("gpu", OP, "bias", bias, total, &[DType::F32])?;
    }
    for (i, (o, &m)) in outs.iter().zip(parts).enumerate() {
        let need = checked_mul(OP, rows, m)?;
        check_tensor("gpu", OP, &format!("outs[{i}]"), &**o, need, &[DType::F32])?;
    }
    let ptrs: Vec<DevicePtr> = outs.iter().map(|o| o.ptr()).collect();
    let stack = Stack {
        w: w.ptr(),
        dtype: w.dtype(),
        segs: w.quant_segs(),
        bias: bias.map(|t| t.ptr()),
        outs: &ptrs,
        parts,
    };
    launch_stacked(b, OP, x.ptr(), &stack, rows, k, route, fuse)
}

#[allow(clippy::too_many_arguments)]
pub(in crate::backend::gpu) fn gate_up_swiglu(
    b: &GpuBackend,
    route: Route,
    x: &GpuTensor,
    w: &GpuTensor,
    tmp: &mut GpuTensor,
    out: &mut GpuTensor,
    rows: usize,
    in_features: usize,
    inter: usize,
    act: Activation,
) -> Result<()> {
    gate_up(
        b,
        route,
        x,
        w,
        tmp,
        out,
        rows,
        in_features,
        inter,
        None,
        act,
    )
}

#[allow(clippy::too_many_arguments)]
fn gate_up(
    b: &GpuBackend,
    route: Route,
    x: &GpuTensor,
    w: &GpuTensor,
    tmp: &mut GpuTensor,
    out: &mut GpuTensor,
    rows: usize,
    in_features: usize,
    inter: usize,
    norm: Option<NormPrologue>,
    act: Activation,
) -> Result<()> {
    const OP: &str = "gate_up_swiglu";
    let k = in_features;
    let n = checked_mul(OP, rows, inter)?;
    let two_inter = checked_mul(OP, 2, inter)?;
    check_tensor("gpu", OP, "x", x, checked_mul(OP, rows, k)?, &[DType::F32])?;
    check_tensor("gpu", OP, "w", w, checked_mul(OP, two_inter, k)?, WEIGHTS)?;
    check_tensor("gpu", OP, "tmp", tmp, checked_mul(OP, 2, n)?, &[DType::F32])?;
    check_tensor("gpu", OP, "out", out, n, &[DType::F32])?;
    if n == 0 {
        return Ok(());
    }
    if route == Route::Auto && b.uses_gemv(rows, w.dtype()) {
        let (inter_i, k_i) = (int(OP, "inter", inter)?, int(OP, "in", k)?);
        let rows_i = int(OP, "rows", rows)?;
        let (wp, xp, op) = (w.ptr(), x.ptr(), out.ptr());
        match w.quant_segs() {
            [] => {
                let dt = w.dtype();
                return launch_gemv_swiglu(b, OP, dt, wp, xp, norm, op, inter_i, k_i, rows_i, act);
            }
            [seg] => {
                return launch_qgemv_swiglu(b, OP, seg, wp, xp, norm, op, inter_i, k_i, rows_i, act)
            }
            _ => {
                // Gate and up of different block types: both products into tmp (the norm in
                // each launch's prologue), then the swiglu kernel.
                let (gate, up) = (tmp.ptr(), tmp.ptr_at(n));
                let stack = Stack {
                    w: wp,
                    dtype: w.dtype(),
                    segs: w.quant_segs(),
                    bias: None,
                    outs: &[gate, up],
                    parts: &[inter, inter],
                };
                let fuse = Fuse {
                    norm,
                    residual: false,
                };
                launch_stacked(b, OP, xp, &stack, rows, k, Route::Auto, fuse)?;
                return launch_swiglu(b, gate, up, op, super::count(n), act);
            }
        }
    }
    if norm.is_some() {
        return Err(bad(OP, "a fused norm needs the GEMV route".into()));
    }
    // BLAS: gate into tmp[..n], up into tmp[n..2n], then the swiglu kernel.
    let (gate, up) = (tmp.ptr(), tmp.ptr_at(n));
    let stack = Stack {
        w: w.ptr(),
        dtype: w.dtype(),
        segs: w.quant_segs(),
        bias: None,
        outs: &[gate, up],
        parts: &[inter, inter],
    };
    launch_stacked(b, OP, x.ptr(), &stack, rows, k, Route::Blas, Fuse::NONE)?;
    launch_swiglu(b, gate, up, out.ptr(), super::count(n), act)
}

fn checked_mul(op: &str, a: usize, b: usize) -> Result<usize> {
    a.checked_mul(b)
        .ok_or_else(|| bad(op, format!("{a} × {b} elements overflow")))
}

fn checked_sum(op: &str, parts: &[usize]) -> Result<usize> {
    parts
        .iter()
        .try_fold(0usize, |s, &p| s.checked_add(p))
        .ok_or_else(|| bad(op, format!("parts {parts:?} overflow")))
}

/// Matrices stacked along the output dimension in one weight buffer: `parts[i]` rows each (of
/// the same `in` columns), part `i`'s product written to `outs[i]`; the bias (f32) stacked
/// the same way.
struct Stack<'a> {
    w: DevicePtr,
    dtype: DType,
    /// The segments of a block-quantized W (empty otherwise).
    segs: &'a [QuantSeg],
    bias: Option<DevicePtr>,
    outs: &'a [DevicePtr],
    parts: &'a [usize],
}

/// `outs[i] (rows, parts[i]) = x (rows, k) · W_iᵀ (+ b_i)`: one GEMV launch for all parts when
/// [`uses_gemv`], else x converted once and one GEMM (+ bias add) per part at its offset into
/// the stacked weight and bias; block-quantized weights take the same two routes through
/// [`launch_quant_gemv`] and [`launch_quant_gemm`]. Callers checked every length.
#[allow(clippy::too_many_arguments)]
fn launch_stacked(
    b: &GpuBackend,
    op: &str,
    x: DevicePtr,
    s: &Stack,
    rows: usize,
    k: usize,
    route: Route,
    fuse: Fuse,
) -> Result<()> {
    let total: usize = s.parts.iter().sum();
    if rows == 0 || total == 0 {
        return Ok(());
    }
    let (rows_i, k_i) = (int(op, "rows", rows)?, int(op, "in", k)?);
    int(op, "out", total)?;
    let gemv = route == Route::Auto && b.uses_gemv(rows, s.dtype);
    if !gemv && (fuse.norm.is_some() || fuse.residual) {
        return Err(bad(
            op,
            "a fused norm or residual needs the GEMV route".into(),
        ));
    }
    match (s.segs.is_empty(), gemv) {
        (false, true) => return launch_quant_gemv(b, op, x, s, rows_i, k, fuse),
        (false, false) => return launch_quant_gemm(b, op, x, s, rows, k),
        (true, _) => {}
    }
    if gemv {
        let mut g = Gemv {
            dtype: s.dtype,
            w: s.w,
            x,
            norm: fuse.norm,
            bias: s.bias,
            outs: [0; 3],
            parts: [0; 3],
            k: k_i,
            residual: fuse.residual,
            n_in: rows_i,
        };
        for (i, (&o, &m)) in s.outs.iter().zip(s.parts).enumerate() {
            g.outs[i] = o;
            g.parts[i] = int(op, "out", m)?;
        }
        return launch_gemv(b, op, &g);
    }
    let mut scratch = b
        .scratch
        .lock()
        .map_err(|_| bad(op, "scratch lock poisoned".into()))?;
    // (rows, in) in the weights' type
    let x_in = if s.dtype == DType::F32 {
        x
    } else {
        let p = scratch_ptr(&b.vendor, &mut scratch.bf16, rows * k * 2)?;
        launch_convert(b, DType::F32, s.dtype, x, p, super::count(rows * k))?;
        p
    };
    let elem = s.dtype.block_bytes() as u64;
    let mut row0 = 0usize; // first row of the part in the stacked W
    for (&out, &m) in s.outs.iter().zip(s.parts) {
        if m > 0 {
            let m_i = int(op, "out", m)?;
            let g = Gemm {
                inputs: s.dtype,
                trans_a: true,
                trans_b: false,
                m: m_i,
                n: rows_i,
                k: k_i,
                a: s.w + (row0 * k) as u64 * elem,
                lda: k_i,
                b: x_in,
                ldb: k_i,
                c: out,
                ldc: m_i,
            };
            // SAFETY: W holds (row0 + m)·k elements of its type, x_in rows·k of the same, out
            // rows·m f32 (checked by callers).
            unsafe { b.vendor.gemm_f32_out(&g)? };
            if let Some(bias) = s.bias {
                launch_bias_add(b, out, bias + (row0 * 4) as u64, rows_i, m_i)?;
            }
        }
        row0 += m;
    }
    drop(scratch);
    Ok(())
}

/// Each part of a block-quantized stack located in its segment: `(segment, first row in it,
/// first row in the stack, rows)`. Errors when a part is not within one segment.
fn locate(op: &str, s: &Stack, k: usize) -> Result<Vec<(usize, usize, usize, usize)>> {
    let seg_rows: Vec<usize> = s.segs.iter().map(|g| g.elems / k.max(1)).collect();
    let mut out = Vec::with_capacity(s.parts.len());
    let (mut seg, mut seg_row0, mut row) = (0usize, 0usize, 0usize);
    for &m in s.parts {
        while seg < seg_rows.len() && m > 0 && row >= seg_row0 + seg_rows[seg] {
            seg_row0 += seg_rows[seg];
            seg += 1;
        }
        if m > 0 && (seg == seg_rows.len() || row + m > seg_row0 + seg_rows[seg]) {
            return Err(bad(
                op,
                format!(
                    "stacked parts {:?} do not follow the weight's segments",
                    s.parts
                ),
            ));
        }
        out.push((seg.min(seg_rows.len() - 1), row - seg_row0, row, m));
        row += m;
    }
    Ok(out)
}

/// [`launch_stacked`]'s GEMV route over block-quantized weights (up to
/// [`super::gemv::GEMV_MAX_ROWS`] rows): one `qgemv` launch per segment's run of parts (up to
/// three).
fn launch_quant_gemv(
    b: &GpuBackend,
    op: &str,
    x: DevicePtr,
    s: &Stack,
    rows: i32,
    k: usize,
    fuse: Fuse,
) -> Result<()> {
    let k_i = int(op, "in", k)?;
    let located = locate(op, s, k)?;
    let mut i = 0;
    while i < located.len() {
        let (seg, row_in_seg, stack_row, _) = located[i];
        let mut g = QGemv {
            seg: s.segs[seg],
            base: s.w,
            row0: row_in_seg,
            x,
            norm: fuse.norm,
            bias: s.bias.map(|p| p + (stack_row * 4) as u64),
            outs: [0; 3],
            parts: [0; 3],
            k: k_i,
            residual: fuse.residual,
            n_in: rows,
        };
        let mut n = 0;
        while i < located.len() && n < 3 && located[i].0 == seg {
            g.outs[n] = s.outs[i];
            g.parts[n] = int(op, "out", located[i].3)?;
            n += 1;
            i += 1;
        }
        launch_qgemv(b, op, &g)?;
    }
    Ok(())
}

/// [`launch_stacked`]'s GEMM route over block-quantized weights: per part, its rows
/// dequantized to f16 in slices and one f16 GEMM per slice (x converted to f16 once), then the
/// bias.
fn launch_quant_gemm(
    b: &GpuBackend,
    op: &str,
    x: DevicePtr,
    s: &Stack,
    rows: usize,
    k: usize,
) -> Result<()> {
    let k_i = int(op, "in", k)?;
    let located = locate(op, s, k)?;
    let rows_i = int(op, "rows", rows)?;
    let mut scratch = b
        .scratch
        .lock()
        .map_err(|_| bad(op, "scratch lock poisoned".into()))?;
    let x16 = scratch_ptr(&b.vendor, &mut scratch.bf16, rows * k * 2)?;
    launch_convert(b, DType::F32, DType::F16, x, x16, super::count(rows * k))?;
    let slice_rows = (qgemv::DEQUANT_SLICE / k.max(1)).max(1);
    for (&(seg, row_in_seg, stack_row, m), &out) in located.iter().zip(s.outs) {
        let m_i = int(op, "out", m)?;
        let mut r = 0;
        while r < m {
            let n = slice_rows.min(m - r);
            let w16 = scratch_ptr(&b.vendor, &mut scratch.dequant, n * k * 2)?;
            let from = Rows::Range {
                row0: row_in_seg + r,
            };
            launch_dequant(b, op, &s.segs[seg], s.w, from, n, k, w16, true, 1.0)?;
            let g = Gemm {
                inputs: DType::F16,
                trans_a: true,
                trans_b: false,
                m: int(op, "out", n)?,
                n: rows_i,
                k: k_i,
                a: w16,
                lda: k_i,
                b: x16,
                ldb: k_i,
                c: out + (r * 4) as u64,
                ldc: m_i,
            };
            // SAFETY: w16 holds n·k f16 (just written), x16 rows·k f16, out rows·m f32 of
            // which this slice writes columns r..r + n of every row (ldc = m).
            unsafe { b.vendor.gemm_f32_out(&g)? };
            r += n;
        }
        if let (Some(bias), true) = (s.bias, m > 0) {
            launch_bias_add(b, out, bias + (stack_row * 4) as u64, rows_i, m_i)?;
        }
    }
    drop(scratch);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(dtype: DType, rows: usize, k: usize) -> QuantSeg {
        QuantSeg {
            dtype,
            elems: rows * k,
            qa: 0,
            sa: 0,
        }
    }

    fn stack<'a>(segs: &'a [QuantSeg], parts: &'a [usize]) -> Stack<'a> {
        Stack {
            w: 0,
            dtype: segs[0].dtype,
            segs,
            bias: None,
            outs: &[0, 0, 0],
            parts,
        }
    }

    #[test]
    fn parts_are_located_in_their_segments() {
        let k = 256;
        // One segment (a uniform QKV stack): every part in it, at its row.
        let one = [seg(DType::Q4_0, 40, k)];
        let got = locate("t", &stack(&one, &[24, 8, 8]), k).unwrap();
        assert_eq!(got, [(0, 0, 0, 24), (0, 24, 24, 8), (0, 32, 32, 8)]);
        // A mixed stack, one segment a part (Q4_K query and key, Q6_K value).
        let mixed = [
            seg(DType::Q4_K, 24, k),
            seg(DType::Q4_K, 8, k),
            seg(DType::Q6_K, 8, k),
        ];
        let got = locate("t", &stack(&mixed, &[24, 8, 8]), k).unwrap();
        assert_eq!(got, [(0, 0, 0, 24), (1, 0, 24, 8), (2, 0, 32, 8)]);
        // An empty part takes no rows.
        let got = locate("t", &stack(&one, &[32, 0, 8]), k).unwrap();
        assert_eq!(got[2], (0, 32, 32, 8));
        // A part across two segments, or past the last, is refused.
        assert!(locate("t", &stack(&mixed, &[30, 10]), k).is_err());
        assert!(locate("t", &stack(&one, &[40, 1]), k).is_err());
    }
}
