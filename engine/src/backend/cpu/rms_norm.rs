//! RMSNorm with the residual add fused: `x += residual; out = x / sqrt(mean(x²) + eps) · w`.

use rayon::prelude::*;

use super::CpuTensor;
use crate::backend::{check_tensor, RmsNormParams};
use crate::error::Result;
use crate::tensor::DType;

const OP: &str = "rms_norm";

pub fn rms_norm(
    x: &mut CpuTensor,
    residual: Option<&CpuTensor>,
    w: &CpuTensor,
    out: &mut CpuTensor,
    p: RmsNormParams,
) -> Result<()> {
    let n = p.rows * p.dim;
    check_tensor("cpu", OP, "x", x, n, &[DType::F32])?;
    check_tensor(
        "cpu",
        OP,
        "w",
        w,
        p.dim,
        &[DType::F32, DType::F16, DType::BF16],
    )?;
    check_tensor("cpu", OP, "out", out, n, &[DType::F32])?;
    let x = &mut x.f32_mut(OP, "x")?[..n];
    if let Some(r) = residual {
        check_tensor("cpu", OP, "residual", r, n, &[DType::F32])?;
        // (rows, dim) += (rows, dim)
        x.iter_mut()
            .zip(&r.f32(OP, "residual")?[..n])
            .for_each(|(a, b)| *a += b);
    }
    let w = w.to_f32_vec();
    let out = &mut out.f32_mut(OP, "out")?[..n];
    let norm = |(o, row): (&mut [f32], &[f32])| {
        let inv = inv_rms(row, p.eps);
        for ((o, &v), &g) in o.iter_mut().zip(row).zip(&w) {
            *o = g * (v * inv);
        }
    };
    if p.rows <= 1 {
        // One row: not worth a trip through the thread pool (decode).
        out.chunks_mut(p.dim).zip(x.chunks(p.dim)).for_each(norm);
    } else {
        out.par_chunks_mut(p.dim)
            .zip(x.par_chunks(p.dim))
            .for_each(norm);
    }
    Ok(())
}

/// QK-norm's form: `x = x / sqrt(mean(x²) + eps) · w` in place, each of `p.rows` rows of `p.dim`.
pub fn rms_norm_in_place(x: &mut CpuTensor, w: &CpuTensor, p: RmsNormParams) -> Result<()> {
    const OP: &str = "rms_norm_in_place";
    let n = p.rows * p.dim;
    check_tensor("cpu", OP, "x", x, n, &[DType::F32])?;
    check_tensor(
        "cpu",
        OP,
        "w",
        w,
        p.dim,
        &[DType::F32, DType::F16, DType::BF16],
    )?;
    let w = w.to_f32_vec();
    let norm = |row: &mut [f32]| {
        let inv = inv_rms(row, p.eps);
        for (v, &g) in row.iter_mut().zip(&w) {
            *v = g * (*v * inv);
        }
    };
    let x = &mut x.f32_mut(OP, "x")?[..n];
    if p.rows <= 8 {
        x.chunks_mut(p.dim).for_each(norm);
    } else {
        x.par_chunks_mut(p.dim).for_each(norm);
    }
    Ok(())
}

/// `1 / sqrt(mean(row²) + eps)`, the sum in row order.
fn inv_rms(row: &[f32], eps: f32) -> f32 {
    let mean_sq = row.iter().map(|v| v * v).sum::<f32>() / row.len() as f32;
    1.0 / (mean_sq + eps).sqrt()
}
