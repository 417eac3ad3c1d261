//! Linear layers: `out (rows, out) = x (rows, in) · wᵀ + bias`, weights in f32, bf16 or f16,
//! f32 accumulation. Parallel over output features; each weight row is converted to f32 once
//! and reused for every input row (the batched prefill case).

use rayon::prelude::*;

use super::{simd, CpuTensor};
use crate::backend::{check_tensor, LinearParams};
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
) -> Result<()> {
    let (n, k, m) = (p.rows, p.in_features, p.out_features);
    check_tensor("cpu", OP, "x", x, n * k, &[DType::F32])?;
    check_tensor("cpu", OP, "w", w, m * k, WEIGHTS)?;
    check_tensor("cpu", OP, "out", out, n * m, &[DType::F32])?;
    let x = &x.f32(OP, "x")?[..n * k];
    let bias = match bias {
        Some(b) => {
            check_tensor("cpu", OP, "bias", b, m, WEIGHTS)?;
            Some(b.to_f32_vec())
        }
        None => None,
    };
    let out = &mut out.f32_mut(OP, "out")?[..n * m];
    linear_into(x, w, 0, bias.as_deref(), out, p);
    Ok(())
}

/// Weight (and bias) types the CPU reads.
const WEIGHTS: &[DType] = &[DType::F32, DType::F16, DType::BF16];

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
) -> Result<()> {
    const OP: &str = "linear_stacked";
    crate::backend::check_parts("cpu", OP, outs.len(), parts)?;
    let total = parts
        .iter()
        .try_fold(0usize, |s, &p| s.checked_add(p))
        .ok_or_else(|| bad(OP, format!("parts {parts:?} overflow")))?;
    let (n, k) = (rows, in_features);
    check_tensor("cpu", OP, "x", x, mul(OP, n, k)?, &[DType::F32])?;
    check_tensor("cpu", OP, "w", w, mul(OP, total, k)?, WEIGHTS)?;
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
            check_tensor("cpu", OP, "bias", b, total, WEIGHTS)?;
            Some(b.to_f32_vec())
        }
        None => None,
    };
    let x = &x.f32(OP, "x")?[..n * k];
    let mut row0 = 0;
    for (o, &m) in outs.iter_mut().zip(parts) {
        let out = &mut o.f32_mut(OP, "out")?[..n * m];
        let b = bias.as_ref().map(|b| &b[row0..row0 + m]);
        let p = LinearParams {
            rows: n,
            in_features: k,
            out_features: m,
        };
        linear_into(x, w, row0, b, out, p);
        row0 += m;
    }
    Ok(())
}

/// `out = silu(x · W_gᵀ) ⊙ (x · W_uᵀ)`: the gate and up products into the two halves of `tmp`
/// exactly as [`linear`] computes them, then SwiGLU exactly as the `swiglu` op.
#[allow(clippy::too_many_arguments)]
pub fn gate_up_swiglu(
    x: &CpuTensor,
    w: &CpuTensor,
    tmp: &mut CpuTensor,
    out: &mut CpuTensor,
    rows: usize,
    in_features: usize,
    inter: usize,
) -> Result<()> {
    const OP: &str = "gate_up_swiglu";
    let (n, k) = (rows, in_features);
    let len = mul(OP, n, inter)?;
    check_tensor("cpu", OP, "x", x, mul(OP, n, k)?, &[DType::F32])?;
    check_tensor("cpu", OP, "w", w, mul(OP, mul(OP, 2, inter)?, k)?, WEIGHTS)?;
    check_tensor("cpu", OP, "tmp", tmp, mul(OP, 2, len)?, &[DType::F32])?;
    check_tensor("cpu", OP, "out", out, len, &[DType::F32])?;
    let x = &x.f32(OP, "x")?[..n * k];
    let (gate, up) = tmp.f32_mut(OP, "tmp")?[..2 * len].split_at_mut(len);
    let p = LinearParams {
        rows: n,
        in_features: k,
        out_features: inter,
    };
    linear_into(x, w, 0, None, gate, p);
    linear_into(x, w, inter, None, up, p);
    super::elementwise::swiglu_slices(gate, up, &mut out.f32_mut(OP, "out")?[..len]);
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

/// `out (rows, m) = x (rows, k) · W[row0 .. row0 + m]ᵀ (+ bias (m))`; lengths checked by callers.
fn linear_into(
    x: &[f32],
    w: &CpuTensor,
    row0: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
    p: LinearParams,
) {
    let (n, k, m) = (p.rows, p.in_features, p.out_features);
    if n == 0 || m == 0 {
        return;
    }
    // (m, n): one contiguous run of n results per output feature.
    let mut out_t = if n == 1 {
        Vec::new()
    } else {
        vec![0.0f32; m * n]
    };
    let target: &mut [f32] = if n == 1 { out } else { &mut out_t };
    target
        .par_chunks_mut(CHUNK * n)
        .enumerate()
        .for_each(|(c, block)| {
            let mut row = vec![0.0f32; k];
            for (jj, res) in block.chunks_mut(n).enumerate() {
                let j = c * CHUNK + jj;
                w.read_f32((row0 + j) * k, &mut row); // (k) ← w[row0 + j]
                let b = bias.map_or(0.0, |b| b[j]);
                for (i, r) in res.iter_mut().enumerate() {
                    *r = simd::dot(&x[i * k..(i + 1) * k], &row) + b;
                }
            }
        });
    if n > 1 {
        // (rows, m) ← (m, rows)ᵀ
        out.par_chunks_mut(m).enumerate().for_each(|(i, o)| {
            for (j, v) in o.iter_mut().enumerate() {
                *v = out_t[j * n + i];
            }
        });
    }
}
