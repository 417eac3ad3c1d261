//! Linear layers: `out (rows, out) = x (rows, in) · wᵀ + bias`, weights in f32, bf16, f16 or a
//! GGUF block type ([`super::NATIVE_WEIGHTS`]), f32 accumulation. Parallel over output features;
//! at batch 1 a quantized row is dequantized in registers inside the dot product; otherwise
//! each weight row is converted to f32 once and reused for every input row (prefill).

use super::pool::pool;
use super::q8dot::{self, Q8Rows};
use super::{qrow, simd, CpuTensor, Dots};
use crate::backend::{check_tensor, Activation, LinearParams, TensorInfo};
use crate::error::{Error, Result};
use crate::tensor::DType;

const OP: &str = "linear";
/// Output features per task: enough work to amortize scheduling, small enough to balance.
const CHUNK: usize = 16;

pub fn linear(
    x: &CpuTensor,
    w: &CpuTensor,
    bias: Option<&CpuTensor>,
    out: &mut CpuTensor,
    p: LinearParams,
    dots: Dots,
) -> Result<()> {
    let (n, k, m) = (p.rows, p.in_features, p.out_features);
    check_tensor("cpu", OP, "x", x, n * k, &[DType::F32])?;
    check_weight(OP, w, m * k, k)?;
    check_tensor("cpu", OP, "out", out, n * m, &[DType::F32])?;
    let x = &x.f32(OP, "x")?[..n * k];
    let bias = match bias {
        Some(b) => {
            check_tensor("cpu", OP, "bias", b, m, PLAIN)?;
            Some(b.to_f32_vec())
        }
        None => None,
    };
    let out = &mut out.f32_mut(OP, "out")?[..n * m];
    linear_into(x, w, 0, bias.as_deref(), out, p, dots);
    Ok(())
}

/// Bias types the CPU reads, and the plain weight types (besides [`super::NATIVE_WEIGHTS`]).
const PLAIN: &[DType] = &[DType::F32, DType::F16, DType::BF16];

/// Stacked projections: part `i` is exactly what [`linear`] computes with the rows
/// `row0_i .. row0_i + parts[i]` of `w` (and of `bias`) as its own weight (and bias).
#[allow(clippy::too_many_arguments)]
pub fn linear_stacked(
    x: &CpuTensor,
    w: &CpuTensor,
    bias: Option<&CpuTensor>,
    outs: &mut [&mut CpuTensor],
    parts: &[usize],
    rows: usize,
    in_features: usize,
    dots: Dots,
) -> Result<()> {
    const OP: &str = "linear_stacked";
    crate::backend::check_parts("cpu", OP, outs.len(), parts)?;
    let total = parts
        .iter()
        .try_fold(0usize, |s, &p| s.checked_add(p))
        .ok_or_else(|| bad(OP, format!("parts {parts:?} overflow")))?;
    let (n, k) = (rows, in_features);
    check_tensor("cpu", OP, "x", x, mul(OP, n, k)?, &[DType::F32])?;
    check_weight(OP, w, mul(OP, total, k)?, k)?;
    for (i, (o, &m)) in outs.iter().zip(parts).enumerate() {
        check_tensor(
            "cpu",
            OP,
            &format!("outs[{i}]"),
            &**o,
            mul(OP, n, m)?,
            &[DType::F32],
        )?;
    }
    let bias = match bias {
        Some(b) => {
            check_tensor("cpu", OP, "bias", b, total, PLAIN)?;
            Some(b.to_f32_vec())
        }
        None => None,
    };
    let x = &x.f32(OP, "x")?[..n * k];
    // All parts as one product (one trip through the thread pool), then split: each element is
    // computed exactly as the part's own product computes it (per row, per output feature).
    let mut all = vec![0.0f32; n * total];
    let p = LinearParams {
        rows: n,
        in_features: k,
        out_features: total,
    };
    linear_into(x, w, 0, bias.as_deref(), &mut all, p, dots);
    let mut col0 = 0;
    for (o, &m) in outs.iter_mut().zip(parts) {
        let out = &mut o.f32_mut(OP, "out")?[..n * m];
        for (i, dst) in out.chunks_exact_mut(m.max(1)).enumerate().take(n) {
            dst.copy_from_slice(&all[i * total + col0..i * total + col0 + m]);
        }
        col0 += m;
    }
    Ok(())
}

/// `out = act(x · W_gᵀ) ⊙ (x · W_uᵀ)`: the gate and up products into the two halves of `tmp`
/// exactly as [`linear`] computes them, then the activation exactly as the `swiglu` op.
#[allow(clippy::too_many_arguments)]
pub fn gate_up_swiglu(
    x: &CpuTensor,
    w: &CpuTensor,
    tmp: &mut CpuTensor,
    out: &mut CpuTensor,
    rows: usize,
    in_features: usize,
    inter: usize,
    act: Activation,
    dots: Dots,
) -> Result<()> {
    const OP: &str = "gate_up_swiglu";
    let (n, k) = (rows, in_features);
    let len = mul(OP, n, inter)?;
    check_tensor("cpu", OP, "x", x, mul(OP, n, k)?, &[DType::F32])?;
    check_weight(OP, w, mul(OP, mul(OP, 2, inter)?, k)?, k)?;
    check_tensor("cpu", OP, "tmp", tmp, mul(OP, 2, len)?, &[DType::F32])?;
    check_tensor("cpu", OP, "out", out, len, &[DType::F32])?;
    let x = &x.f32(OP, "x")?[..n * k];
    let p = LinearParams {
        rows: n,
        in_features: k,
        out_features: inter,
    };
    if n == 1 {
        // One product over the stacked rows: [gate | up] is tmp's layout already.
        let both = LinearParams {
            out_features: 2 * inter,
            ..p
        };
        linear_into(
            x,
            w,
            0,
            None,
            &mut tmp.f32_mut(OP, "tmp")?[..2 * len],
            both,
            dots,
        );
    } else {
        let (gate, up) = tmp.f32_mut(OP, "tmp")?[..2 * len].split_at_mut(len);
        linear_into(x, w, 0, None, gate, p, dots);
        linear_into(x, w, inter, None, up, p, dots);
    }
    let (gate, up) = tmp.f32_mut(OP, "tmp")?[..2 * len].split_at_mut(len);
    super::elementwise::swiglu_slices(gate, up, &mut out.f32_mut(OP, "out")?[..len], act);
    Ok(())
}

fn mul(op: &str, a: usize, b: usize) -> Result<usize> {
    a.checked_mul(b)
        .ok_or_else(|| bad(op, format!("{a} × {b} elements overflow")))
}

fn bad(op: &str, detail: String) -> Error {
    Error::Backend {
        backend: "cpu",
        op: op.into(),
        detail,
    }
}

/// `out (rows, m) = x (rows, k) · W[row0 .. row0 + m]ᵀ (+ bias (m))`; lengths checked by callers
/// (for block-quantized weights also that `k` is whole blocks: [`check_weight`]).
fn linear_into(
    x: &[f32],
    w: &CpuTensor,
    row0: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
    p: LinearParams,
    dots: Dots,
) {
    let (n, k, m) = (p.rows, p.in_features, p.out_features);
    if n == 0 || m == 0 {
        return;
    }
    // Weight row `r`: its bytes when block-quantized (read in place), else converted to f32.
    let quant = quant_parts(w, k);
    let quant = quant.as_deref();
    match quant {
        Some(parts) if dots == Dots::Q8 => q8_product(x, parts, row0, bias, out, n, m),
        _ if n == 1 => gemv(x, w, quant, row0, bias, out, k, m),
        Some(parts) if n <= GEMV_ROWS && gemv_rows_on() => {
            gemv_rows(x, parts, row0, bias, out, n, m)
        }
        _ => gemm(x, w, quant, row0, bias, out, p),
    }
}

/// A block-quantized weight matrix as parts of rows: (first row, type, bytes, bytes per row).
/// One part, or one per part of a [`CpuTensor::Stack`].
type Part<'a> = (usize, DType, &'a [u8], usize);
type Quant<'a, 'b> = Option<&'b [Part<'a>]>;

fn quant_part(row0: usize, t: &CpuTensor, k: usize) -> Option<(Part<'_>, usize)> {
    match t {
        CpuTensor::Quant { dtype, bytes, len } => Some((
            (
                row0,
                *dtype,
                &**bytes,
                k / dtype.block_elems() * dtype.block_bytes(),
            ),
            len / k,
        )),
        _ => None,
    }
}

fn quant_parts(w: &CpuTensor, k: usize) -> Option<Vec<Part<'_>>> {
    let one = |row0, t| quant_part(row0, t, k);
    match w {
        CpuTensor::Quant { .. } => one(0, w).map(|(p, _)| vec![p]),
        CpuTensor::Stack(parts) => {
            let mut row0 = 0;
            parts
                .iter()
                .map(|t| {
                    let (p, rows) = one(row0, t)?;
                    row0 += rows;
                    Some(p)
                })
                .collect()
        }
        _ => None,
    }
}

/// Row `r` of a quantized matrix: its type and bytes. Also asks the cache for a row a few
/// kilobytes further on (`simd::prefetch_ahead`): the row loops read rows in order.
fn quant_row<'a>(parts: &[Part<'a>], r: usize) -> (DType, &'a [u8]) {
    let &(row0, dtype, bytes, rb) = parts
        .iter()
        .rev()
        .find(|p| p.0 <= r)
        .expect("the first part starts at row 0");
    let i = r - row0;
    simd::prefetch_ahead(bytes, i * rb, rb);
    (dtype, &bytes[i * rb..(i + 1) * rb])
}

/// Batch 1: one dot product per output feature; a quantized row is dequantized in registers
/// inside it, never stored.
#[allow(clippy::too_many_arguments)]
fn gemv(
    x: &[f32],
    w: &CpuTensor,
    quant: Quant,
    row0: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
    k: usize,
    m: usize,
) {
    // A few tasks per thread: enough to balance, few enough that scheduling stays cheap.
    let chunk = CHUNK.max(m.div_ceil(4 * pool().threads()));
    pool().chunks(&mut out[..m], chunk, |c, block| {
        let mut row = Vec::new();
        for (jj, res) in block.iter_mut().enumerate() {
            let (j, r) = (c * chunk + jj, row0 + c * chunk + jj);
            let b = bias.map_or(0.0, |b| b[j]);
            *res = match quant {
                Some(parts) => {
                    let (dtype, bytes) = quant_row(parts, r);
                    qrow::dot(dtype, bytes, x)
                }
                None => {
                    row.resize(k, 0.0);
                    w.read_f32(r * k, &mut row); // (k) ← w[r]
                    simd::dot(x, &row)
                }
            } + b;
        }
    });
}

/// [`Dots::Q8`]: the input rows quantized to 8 bits once ([`Q8Rows`]), then each task's weight
/// rows through [`q8dot::dot_matrix`] (each result the bits of one [`q8dot::dot`] of its input
/// row and output feature), parallel over output features; a row's results never depend on the
/// other rows (batch invariance), whatever their number.
fn q8_product(
    x: &[f32],
    parts: &[Part<'_>],
    row0: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
    n: usize,
    m: usize,
) {
    let k = x.len() / n;
    let xq = Q8Rows::new(x, n, k);
    let chunk = CHUNK.max(m.div_ceil(4 * pool().threads()));
    let rows: Vec<_> = (0..n).map(|i| xq.row(i)).collect();
    // Output features c·chunk .. of `block` ((features, n)): the weight rows of each part they
    // span in one call.
    let task = |c: usize, block: &mut [f32]| {
        let (first, count) = (c * chunk, block.len() / n);
        let mut jj = 0;
        while jj < count {
            let r = row0 + first + jj;
            let &(p0, dtype, bytes, rb) = parts
                .iter()
                .rev()
                .find(|p| p.0 <= r)
                .expect("the first part starts at row 0");
            let (i, take) = (r - p0, (bytes.len() / rb - (r - p0)).min(count - jj));
            let w = &bytes[i * rb..(i + take) * rb];
            q8dot::dot_matrix(dtype, w, &rows, &mut block[jj * n..(jj + take) * n]);
            jj += take;
        }
        if let Some(b) = bias {
            for (jj, res) in block.chunks_exact_mut(n).enumerate() {
                for v in res.iter_mut() {
                    *v += b[first + jj];
                }
            }
        }
    };
    if n == 1 {
        pool().chunks(&mut out[..m], chunk, task);
        return;
    }
    // (m, n): each task's results contiguous, then transposed into out (n, m).
    let mut t = vec![0.0f32; m * n];
    pool().chunks(&mut t, chunk * n, task);
    transpose_into(&t, out, n, m);
}

/// `out (n, m) ← t (m, n)`: the row loops' per-feature results in the products' layout.
fn transpose_into(t: &[f32], out: &mut [f32], n: usize, m: usize) {
    for (i, o) in out[..n * m].chunks_exact_mut(m).enumerate() {
        for (j, v) in o.iter_mut().enumerate() {
            *v = t[j * n + i];
        }
    }
}

/// A few rows of quantized weights (a speculative verification, a short prefill chunk, a small
/// batched pass): each weight row decoded once, in registers, for every input row
/// ([`qrow::dot_rows`]), parallel over output features as [`gemv`]; each result bit for bit
/// [`gemv`]'s for that row alone.
/// Most input rows [`gemv_rows`] takes (in groups of [`qrow::DOT_ROWS`]); more go through
/// [`gemm`], which converts each weight row to f32 once for all of them.
const GEMV_ROWS: usize = 16;

/// `WAVEFRONT_NO_GEMV_ROWS=1` sends a few rows through [`gemm`] instead (to compare; the
/// results are the same bits either way). Read once.
fn gemv_rows_on() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| !std::env::var("WAVEFRONT_NO_GEMV_ROWS").is_ok_and(|v| v.trim() == "1"))
}

fn gemv_rows(
    x: &[f32],
    parts: &[Part<'_>],
    row0: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
    n: usize,
    m: usize,
) {
    let chunk = CHUNK.max(m.div_ceil(4 * pool().threads()));
    // (m, n): each task's results contiguous, then transposed into out (n, m).
    let mut t = vec![0.0f32; m * n];
    pool().chunks(&mut t, chunk * n, |c, block| {
        for (jj, res) in block.chunks_exact_mut(n).enumerate() {
            let j = c * chunk + jj;
            let (dtype, bytes) = quant_row(parts, row0 + j);
            let k = x.len() / n;
            for (g, r) in res.chunks_mut(qrow::DOT_ROWS).enumerate() {
                let x0 = g * qrow::DOT_ROWS * k;
                qrow::dot_rows(dtype, bytes, &x[x0..x0 + r.len() * k], r.len(), r);
            }
            if let Some(b) = bias {
                for v in res.iter_mut() {
                    *v += b[j];
                }
            }
        }
    });
    transpose_into(&t, out, n, m);
}

/// Output features per task of the batched path: their f32 weights (`GEMM_COLS × k`) stay in
/// the L2 cache while every input row passes over them.
const GEMM_COLS: usize = 64;

/// Several rows (prefill): parallel over blocks of output features; each block's weight rows
/// converted to f32 once, then every input row dotted with them. Each result is bit for bit
/// what [`gemv`] computes for that row alone (`qrow::dots` keeps `qrow::dot`'s order; plain
/// weights use `simd::dot` in both), so no row depends on the batch it came in.
fn gemm(
    x: &[f32],
    w: &CpuTensor,
    quant: Quant,
    row0: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
    p: LinearParams,
) {
    let (n, k, m) = (p.rows, p.in_features, p.out_features);
    // (blocks of output features, n, GEMM_COLS): each task's results contiguous, then scattered.
    let mut tiles = vec![0.0f32; m.div_ceil(GEMM_COLS) * n * GEMM_COLS];
    pool().chunks(&mut tiles, n * GEMM_COLS, |c, tile| {
        let (j0, j1) = (c * GEMM_COLS, ((c + 1) * GEMM_COLS).min(m));
        let cols = j1 - j0;
        let mut wf = vec![0.0f32; cols * k];
        for (jj, row) in wf.chunks_exact_mut(k).enumerate() {
            let r = row0 + j0 + jj;
            match quant {
                Some(parts) => {
                    let (dtype, bytes) = quant_row(parts, r);
                    qrow::dequant(dtype, bytes, row)
                }
                None => w.read_f32(r * k, row),
            }
        }
        match quant {
            Some(_) => qrow::dots(x, n, k, &wf, cols, tile, GEMM_COLS),
            None => {
                for i in 0..n {
                    for (jj, wr) in wf.chunks_exact(k).enumerate() {
                        tile[i * GEMM_COLS + jj] = simd::dot(&x[i * k..(i + 1) * k], wr);
                    }
                }
            }
        }
        if let Some(b) = bias {
            for i in 0..n {
                for jj in 0..cols {
                    tile[i * GEMM_COLS + jj] += b[j0 + jj];
                }
            }
        }
    });
    // (n, m) ← the tiles
    pool().chunks(&mut out[..n * m], m, |i, o| {
        for (c, oc) in o.chunks_mut(GEMM_COLS).enumerate() {
            let t = &tiles[(c * n + i) * GEMM_COLS..];
            oc.copy_from_slice(&t[..oc.len()]);
        }
    });
}

/// Checks a weight operand: a dtype the CPU reads, at least `need` elements, and for a
/// block-quantized matrix, rows of `k` elements that are whole blocks.
fn check_weight(op: &str, w: &CpuTensor, need: usize, k: usize) -> Result<()> {
    check_tensor("cpu", op, "w", w, need, &super::weight_types())?;
    let parts = match w {
        CpuTensor::Stack(parts) => parts.as_slice(),
        one => std::slice::from_ref(one),
    };
    for p in parts.iter().filter(|p| p.dtype().is_quantized()) {
        let be = p.dtype().block_elems();
        if k == 0 || !k.is_multiple_of(be) || !p.len().is_multiple_of(k) {
            return Err(bad(
                op,
                format!(
                    "{} weights hold rows in {be}-element blocks; in_features {k} is not a multiple of {be} (or a part of {} elements is not whole rows)",
                    p.dtype(),
                    p.len()
                ),
            ));
        }
    }
    Ok(())
}
