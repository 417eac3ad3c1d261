//! Dequantization of llama.cpp block formats, following ggml's block formulas.
//! (Interim: plain types only; the block formats land with the formats work.)

use crate::tensor::DType;

/// Dequantizes `n` elements of `dtype` from `bytes` into f32.
/// Errors (as a message) when `bytes` does not hold exactly `n` elements.
pub fn dequantize(dtype: DType, bytes: &[u8], n: usize) -> Result<Vec<f32>, String> {
    let need = dtype
        .row_bytes(n)
        .ok_or_else(|| format!("{n} elements is not a whole number of {dtype} blocks"))?;
    if bytes.len() != need {
        return Err(format!(
            "{n} {dtype} elements need {need} bytes, got {}",
            bytes.len()
        ));
    }
    let halves = || {
        bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
    };
    match dtype {
        DType::F32 => Ok(bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()),
        DType::F16 => Ok(halves().map(|h| half::f16::from_bits(h).to_f32()).collect()),
        DType::BF16 => Ok(halves()
            .map(|h| half::bf16::from_bits(h).to_f32())
            .collect()),
        other => Err(format!("dequantizing {other} is not implemented yet")),
    }
}
