//! GGUF v2/v3 (stub; see the formats work).
use std::path::Path;

use crate::error::{Error, Result};
use crate::formats::LoadedModel;

pub fn load(path: &Path) -> Result<LoadedModel> {
    Err(Error::UnsupportedModel {
        path: path.into(),
        detail: "GGUF loader not implemented yet".into(),
    })
}
