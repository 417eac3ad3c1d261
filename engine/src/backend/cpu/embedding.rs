//! Token embedding: rows of the table, converted to f32, then times `p.scale` in f32.

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
        // (hidden) ← table[t] · scale
        let row = &mut out[i * p.hidden..(i + 1) * p.hidden];
        table.read_f32(t as usize * p.hidden, row);
        if p.scale != 1.0 {
            row.iter_mut().for_each(|v| *v *= p.scale);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;

    #[test]
    fn the_row_is_multiplied_by_the_scale_in_f32() {
        let b = super::super::CpuBackend::default();
        let table = b.upload_f32(&[1.0, -2.0, 3.0, 0.25, 5.0, 6.0]).unwrap();
        let mut out = b.alloc(DType::F32, 6).unwrap();
        let p = EmbeddingParams {
            vocab: 2,
            hidden: 3,
            scale: 640f32.sqrt(),
        };
        embedding(&table, &[1, 0], &mut out, p).unwrap();
        let s = 640f32.sqrt();
        let want = [0.25 * s, 5.0 * s, 6.0 * s, s, -2.0 * s, 3.0 * s];
        assert_eq!(b.download_f32(&out).unwrap(), want);
    }
}
