//! Token embedding: rows of the table, converted to f32.

use super::CpuTensor;
use crate::backend::{check_tensor, EmbeddingParams};
use crate::error::{Error, Result};
use crate::tensor::DType;

const OP: &str = "embedding";

pub fn embedding(
    table: &CpuTensor,
    tokens: &[u32],
    out: &mut CpuTensor,
    p: EmbeddingParams,
) -> Result<()> {
    check_tensor(
        "cpu",
        OP,
        "table",
        table,
        p.vocab * p.hidden,
        &super::weight_types(),
    )?;
    check_tensor(
        "cpu",
        OP,
        "out",
        out,
        tokens.len() * p.hidden,
        &[DType::F32],
    )?;
    let out = out.f32_mut(OP, "out")?;
    for (i, &t) in tokens.iter().enumerate() {
        if t as usize >= p.vocab {
            return Err(Error::Backend {
                backend: "cpu",
                op: OP.into(),
                detail: format!(
                    "token id {t} at index {i} is outside the vocabulary ({})",
                    p.vocab
                ),
            });
        }
        // (hidden) ← table[t]
        table.read_f32(
            t as usize * p.hidden,
            &mut out[i * p.hidden..(i + 1) * p.hidden],
        );
    }
    Ok(())
}
