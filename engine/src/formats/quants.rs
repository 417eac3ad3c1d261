//! Dequantization of llama.cpp block formats, following ggml's block formulas.
//! Stub: implemented by the formats work.

use crate::tensor::DType;

/// Dequantizes `n` elements of `dtype` from `bytes` into f32.
/// Errors (as a message) when `bytes` does not hold exactly `n` elements.
pub fn dequantize(dtype: DType, bytes: &[u8], n: usize) -> Result<Vec<f32>, String> {
    let _ = (dtype, bytes, n);
    Err("dequantize: not implemented yet".into())
}
