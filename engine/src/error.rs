//! The engine's one error type. Every variant names what went wrong and where: the file, the
//! tensor, the field, the op. Bad user input always ends here, never in a panic.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The file ends before a structure it declares (header, metadata, tensor data).
    #[error("{path}: truncated: {what} needs {needed} bytes, {available} available")]
    Truncated {
        path: PathBuf,
        what: String,
        needed: u64,
        available: u64,
    },

    #[error("{path}: not a {expected} file (magic {found})")]
    BadMagic {
        path: PathBuf,
        expected: &'static str,
        found: String,
    },

    #[error("{path}: unsupported {what} version {version}")]
    UnsupportedVersion {
        path: PathBuf,
        what: &'static str,
        version: u64,
    },

    /// Structurally invalid content: a malformed header, JSON that does not parse, an offset
    /// outside the data section, a string that is not UTF-8.
    #[error("{path}: corrupt: {detail}")]
    Corrupt { path: PathBuf, detail: String },

    #[error("{path}: tensor `{tensor}`: unsupported dtype {dtype}")]
    UnsupportedDtype {
        path: PathBuf,
        tensor: String,
        dtype: String,
    },

    #[error("{path}: missing tensor `{tensor}`")]
    MissingTensor { path: PathBuf, tensor: String },

    #[error("{path}: tensor `{tensor}` has shape {found:?}, the config implies {expected:?}")]
    ShapeMismatch {
        path: PathBuf,
        tensor: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },

    /// A config field (config.json or GGUF metadata) that is missing or has a bad value.
    #[error("{path}: config `{field}`: {detail}")]
    Config {
        path: PathBuf,
        field: String,
        detail: String,
    },

    /// A well-formed model this engine does not run (architecture, rope type, activation...).
    #[error("{path}: unsupported model: {detail}")]
    UnsupportedModel { path: PathBuf, detail: String },

    #[error("tokenizer: {0}")]
    Tokenizer(String),

    #[error("chat template: {0}")]
    ChatTemplate(String),

    /// Fetching the default model failed (offline, checksum mismatch, bad archive).
    #[error("fetching the default model: {0}")]
    Fetch(String),

    /// The KV cache cannot take the tokens asked of it.
    #[error("context full: {requested} positions requested, KV cache capacity is {capacity}")]
    ContextFull { capacity: usize, requested: usize },

    /// A request the engine refuses before running it (bad sampling parameters, empty prompt...).
    #[error("invalid request: {0}")]
    InvalidRequest(String),

    /// A backend op failed; `detail` carries the vendor call and status where there is one.
    #[error("backend {backend}: {op}: {detail}")]
    Backend {
        backend: &'static str,
        op: String,
        detail: String,
    },
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub fn corrupt(path: impl Into<PathBuf>, detail: impl Into<String>) -> Self {
        Error::Corrupt {
            path: path.into(),
            detail: detail.into(),
        }
    }

    pub fn config(
        path: impl Into<PathBuf>,
        field: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Error::Config {
            path: path.into(),
            field: field.into(),
            detail: detail.into(),
        }
    }
}
