//! The engine's one error type. Every variant names what went wrong and where: the file, the
//! tensor, the field, the op. Bad user input always ends here, never in a panic.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The cause is printed once, in this message: it is deliberately not a `source()`, so
    /// that a chain printer (anyhow's `{:#}`) does not repeat it.
    #[error("{path}: {}", io_reason(.error))]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },

    /// A path that is neither of the two model formats: a directory without `config.json`, a
    /// file without GGUF's magic.
    #[error("{path} is neither a GGUF file nor a Hugging Face model directory ({detail})")]
    NotAModel { path: PathBuf, detail: String },

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

    /// A Hugging Face directory whose weights disagree with its `config.json`: a tensor the
    /// config implies is absent (`found: None`) or has another shape. Either file may be the
    /// broken one, so both are named.
    #[error("{weights}: {}; {config} implies {expected:?}", weights_found(.tensor, .found))]
    WeightsMismatch {
        config: PathBuf,
        weights: PathBuf,
        tensor: String,
        expected: Vec<usize>,
        found: Option<Vec<usize>>,
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

    /// Encoding or decoding failed (a tokenizer that loaded, given text or ids it refuses).
    #[error("tokenizer: {0}")]
    Tokenizer(String),

    /// A tokenizer file (`tokenizer.json`, a GGUF's `tokenizer.ggml.*`) that does not build.
    #[error("{path}: tokenizer: {detail}")]
    TokenizerFile { path: PathBuf, detail: String },

    #[error("chat template: {0}")]
    ChatTemplate(String),

    /// Fetching the default model failed (offline, checksum mismatch, bad archive).
    #[error("fetching the default model: {0}")]
    Fetch(String),

    /// The KV cache cannot take the tokens asked of it.
    #[error("context full: {requested} positions requested, KV cache capacity is {capacity}")]
    ContextFull { capacity: usize, requested: usize },

    /// A rollback of the KV cache to more positions than it holds.
    #[error("KV cache rollback to {requested} positions: it holds {len}")]
    KvRollForward { len: usize, requested: usize },

    /// A draft model that cannot draft for the target (another vocabulary or tokenizer).
    #[error("{draft} cannot draft for {target}: {detail}")]
    DraftMismatch {
        target: PathBuf,
        draft: PathBuf,
        detail: String,
    },

    /// A request the engine refuses before running it (an empty prompt, a token outside the
    /// vocabulary...).
    #[error("invalid request: {0}")]
    InvalidRequest(String),

    /// A request parameter outside its range: `field` is the parameter's name (`top_p`,
    /// `max_tokens`), `expected` its range, `value` what was given.
    #[error("{field} must be {expected}, got {value}")]
    InvalidParam {
        field: &'static str,
        value: String,
        expected: String,
    },

    /// A backend op failed; `detail` carries the vendor call and status where there is one.
    #[error("backend {backend}: {op}: {detail}")]
    Backend {
        backend: &'static str,
        op: String,
        detail: String,
    },
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            error,
        }
    }

    pub fn invalid_param(
        field: &'static str,
        value: impl std::fmt::Display,
        expected: impl Into<String>,
    ) -> Self {
        Error::InvalidParam {
            field,
            value: value.to_string(),
            expected: expected.into(),
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

/// `tensor `x` has shape [..]` or `no tensor `x``.
fn weights_found(tensor: &str, found: &Option<Vec<usize>>) -> String {
    match found {
        Some(shape) => format!("tensor `{tensor}` has shape {shape:?}"),
        None => format!("no tensor `{tensor}`"),
    }
}

/// An io error as one phrase, as a path's suffix reads best: `no such file or directory`
/// (the OS message without its ` (os error 2)` code, first letter lowered); other errors as
/// they display.
fn io_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = match e.raw_os_error() {
        Some(code) => text
            .strip_suffix(&format!(" (os error {code})"))
            .unwrap_or(&text)
            .to_string(),
        None => text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => format!("{:?}", e.kind()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_print_their_cause_once_in_lowercase() {
        let os = std::io::Error::from_raw_os_error(2); // ENOENT
        let err = Error::io("/x/y.gguf", os);
        assert_eq!(err.to_string(), "/x/y.gguf: no such file or directory");
        assert!(std::error::Error::source(&err).is_none());
        let custom = std::io::Error::new(std::io::ErrorKind::NotFound, "Nothing here");
        assert_eq!(Error::io("d", custom).to_string(), "d: nothing here");
    }
}
