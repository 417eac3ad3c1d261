//! GGUF (llama.cpp's model format), versions 2 and 3.
//!
//! - [`reader`]: the container (header, metadata, tensor infos, data section), memory-mapped;
//! - [`types`]: metadata values and ggml tensor types; [`metadata`]: typed getters;
//! - [`model`]: config, canonical tensor names and the Q/K un-permutation for Llama.
//!
//! The loader never dequantizes: tensors keep their file dtype and bytes (see `formats::quants`).

pub mod metadata;
pub mod model;
pub mod reader;
pub mod types;

#[cfg(test)]
pub(crate) mod builder;
#[cfg(test)]
mod tests;

use std::path::Path;

use crate::error::Result;
use crate::formats::LoadedModel;

pub use model::{canonical_name, model_config, permute_rows, unpermute_rows};
pub use reader::{read, GgufFile, GgufTensorInfo, DEFAULT_ALIGNMENT};
pub use types::{GgmlType, GgufArray, GgufType, GgufValue, Strings};

/// Loads a GGUF model: config, tensors under canonical names, and the tokenizer its metadata
/// describes. Not validated against the config here; `formats::load` does that.
pub fn load(path: &Path) -> Result<LoadedModel> {
    model::load(path)
}
