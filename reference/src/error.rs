//! The reference's typed errors: each names the tensor, token, field or parameter at fault.

/// Everything that can go wrong in the reference on bad input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// A weight tensor does not have the shape the config implies.
    #[error("tensor {tensor}: shape {actual:?}, expected {expected:?}")]
    Shape {
        tensor: String,
        expected: Vec<usize>,
        actual: Vec<usize>,
    },
    /// A tensor that the other weights imply is absent (e.g. `k_norm` beside a `q_norm`).
    #[error("tensor {tensor} is missing: {reason}")]
    MissingWeight { tensor: String, reason: String },
    /// The config itself is inconsistent (e.g. `n_heads` not a multiple of `n_kv_heads`).
    #[error("config field {field}: {reason}")]
    BadConfig { field: &'static str, reason: String },
    /// A token id at `index` of the input is not below the vocabulary size.
    #[error("token {token} at index {index} is out of range for a vocabulary of {vocab_size}")]
    TokenOutOfRange {
        token: u32,
        index: usize,
        vocab_size: usize,
    },
    /// An input that must not be empty was (the token list of a forward, the logits of a sample).
    #[error("{what} is empty")]
    Empty { what: &'static str },
    /// Appending to the KV cache would pass its capacity; the cache is left unchanged.
    #[error("KV cache full: capacity {capacity}, requested {requested}")]
    CacheFull { capacity: usize, requested: usize },
    /// A rollback of the KV cache to more positions than it holds.
    #[error("KV cache rollback to {requested} positions: it holds {len}")]
    RollForward { len: usize, requested: usize },
    /// A sampling parameter (or the coin) outside its domain.
    #[error("sampling parameter {param} = {value}: {reason}")]
    BadSamplingParam {
        param: &'static str,
        value: f32,
        reason: &'static str,
    },
    /// Logits the sampler cannot turn into a distribution (NaN, +inf, all -inf).
    #[error("logit {index} = {value}: {reason}")]
    BadLogits {
        index: usize,
        value: f32,
        reason: &'static str,
    },
}

pub type Result<T> = std::result::Result<T, Error>;
