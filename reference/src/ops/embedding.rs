//! Token embedding: one row of the table per token.

use ndarray::{Array2, ArrayView2, Axis};

use crate::error::{Error, Result};

/// `table` (vocab, hidden), `tokens` (seq) → (seq, hidden). A token `>= vocab` is an error.
pub fn embedding(table: ArrayView2<f32>, tokens: &[u32]) -> Result<Array2<f32>> {
    let vocab_size = table.nrows();
    let mut rows = Vec::with_capacity(tokens.len());
    for (index, &token) in tokens.iter().enumerate() {
        if token as usize >= vocab_size {
            return Err(Error::TokenOutOfRange {
                token,
                index,
                vocab_size,
            });
        }
        rows.push(token as usize);
    }
    Ok(table.select(Axis(0), &rows)) // (seq, hidden)
}
