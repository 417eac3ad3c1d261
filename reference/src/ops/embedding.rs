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

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{arr2, Array2};

    #[test]
    fn picks_one_row_per_token() {
        let table = Array2::from_shape_fn((5, 3), |(v, h)| (10 * v + h) as f32); // (vocab, hidden)
        let x = embedding(table.view(), &[4, 0, 4]).unwrap();
        assert_eq!(
            x,
            arr2(&[[40.0, 41.0, 42.0], [0.0, 1.0, 2.0], [40.0, 41.0, 42.0]])
        );
    }

    #[test]
    fn a_token_past_the_vocabulary_is_an_error() {
        let table = Array2::<f32>::ones((5, 3));
        let err = embedding(table.view(), &[1, 5]).unwrap_err();
        let want = Error::TokenOutOfRange {
            token: 5,
            index: 1,
            vocab_size: 5,
        };
        assert_eq!(err, want);
    }
}
