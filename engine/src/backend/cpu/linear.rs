//! Linear layers: `out (rows, out) = x (rows, in) · wᵀ + bias`, weights in f32, bf16 or f16,
//! f32 accumulation. Parallel over output features; each weight row is converted to f32 once
//! and reused for every input row (the batched prefill case).

use rayon::prelude::*;

use super::{simd, CpuTensor};
use crate::backend::{check_tensor, LinearParams};
use crate::error::Result;
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
    check_tensor(
        "cpu",
        OP,
        "w",
        w,
        m * k,
        &[DType::F32, DType::F16, DType::BF16],
    )?;
    check_tensor("cpu", OP, "out", out, n * m, &[DType::F32])?;
    let x = &x.f32(OP, "x")?[..n * k];
    let bias = match bias {
        Some(b) => {
            check_tensor(
                "cpu",
                OP,
                "bias",
                b,
                m,
                &[DType::F32, DType::F16, DType::BF16],
            )?;
            Some(b.to_f32_vec())
        }
        None => None,
    };
    let out = &mut out.f32_mut(OP, "out")?[..n * m];

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
                w.read_f32(j * k, &mut row); // (k) ← w[j]
                let b = bias.as_ref().map_or(0.0, |b| b[j]);
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
    Ok(())
}
