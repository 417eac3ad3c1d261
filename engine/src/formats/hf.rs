//! Hugging Face directories (stub; see the formats work).
use std::path::Path;

use crate::error::{Error, Result};
use crate::formats::LoadedModel;

pub fn load(path: &Path) -> Result<LoadedModel> {
    Err(Error::UnsupportedModel {
        path: path.into(),
        detail: "HF loader not implemented yet".into(),
    })
}
