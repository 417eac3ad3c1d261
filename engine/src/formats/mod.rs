//! Model files: Hugging Face directories (`hf`) and GGUF (`gguf`). Each loader produces a
//! [`LoadedModel`]: the config, the tensors under canonical names (raw bytes, memory-mapped
//! where possible) and the tokenizer. Nothing downstream knows which format a model came from.

pub mod gguf;
pub mod hf;
pub mod quants;
pub mod random;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::tensor::HostTensor;
use crate::tokenizer::Tokenizer;

/// Which kind of file a model came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    HuggingFace,
    Gguf,
    /// Generated in memory (`random::random_model`).
    Random,
}

#[derive(Debug)]
pub struct LoadedModel {
    /// The file or directory the model was loaded from (named in errors).
    pub path: PathBuf,
    pub format: Format,
    pub config: ModelConfig,
    /// Canonical name → tensor. Validated against `config.expected_tensors()`.
    pub tensors: BTreeMap<String, HostTensor>,
    /// `None` when the model carries no tokenizer (some test fixtures).
    pub tokenizer: Option<Tokenizer>,
}

impl LoadedModel {
    /// The tensor `name`, or a typed error naming the model file and the tensor.
    pub fn tensor(&self, name: &str) -> Result<&HostTensor> {
        self.tensors.get(name).ok_or_else(|| Error::MissingTensor {
            path: self.path.clone(),
            tensor: name.to_string(),
        })
    }

    /// Checks that every tensor the config implies is present with the implied shape, and that
    /// each tensor's byte length matches its dtype and shape.
    pub fn validate(&self) -> Result<()> {
        for (name, expected) in self.config.expected_tensors() {
            let t = self.tensor(&name)?;
            if t.shape != expected {
                return Err(Error::ShapeMismatch {
                    path: self.path.clone(),
                    tensor: name,
                    expected,
                    found: t.shape.clone(),
                });
            }
            let inner = *t.shape.last().unwrap_or(&1);
            let rows: usize = t.shape.iter().rev().skip(1).product();
            let need = t.dtype.row_bytes(inner).map(|r| r * rows);
            if need != Some(t.bytes().len()) {
                return Err(Error::corrupt(
                    &self.path,
                    format!(
                        "tensor `{name}` ({} {:?}) has {} bytes of data, expected {:?}",
                        t.dtype,
                        t.shape,
                        t.bytes().len(),
                        need
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Bytes of weight data as stored.
    pub fn weight_bytes(&self) -> usize {
        self.tensors.values().map(|t| t.bytes().len()).sum()
    }
}

/// Loads a model from a GGUF file or a Hugging Face directory, validated. A path that is
/// neither (a directory without `config.json`, a file without GGUF's magic) is
/// [`Error::NotAModel`].
/// Phi-3's fused projections under the canonical names, sharing the fused tensor's bytes
/// ([`HostTensor::rows`]): each layer's [`names::QKV_FUSED`] (q_dim + 2·kv_dim, hidden) is q,
/// k, v by rows (transformers' `Phi3Attention.forward` slices `qkv[..., :query_pos]`, then the
/// next `kv_dim`, then the rest; llama.cpp's `attn_qkv` likewise) and [`names::GATE_UP_FUSED`]
/// (2·intermediate, hidden) is gate then up (`Phi3MLP.forward`: `gate, up_states =
/// up_states.chunk(2, dim=-1)`; llama.cpp's fused `ffn_up` under SwiGLU likewise). A fused
/// tensor of another shape is `mismatch(name, expected, found)`; other tensors pass through.
pub(crate) fn split_fused(
    tensors: BTreeMap<String, HostTensor>,
    config: &ModelConfig,
    mismatch: impl Fn(&str, Vec<usize>, Vec<usize>) -> Error,
) -> Result<BTreeMap<String, HostTensor>> {
    use crate::config::names;
    let (h, i) = (config.hidden_size, config.intermediate_size);
    let (q, kv) = (config.q_dim(), config.kv_dim());
    let mut out = BTreeMap::new();
    for (name, t) in tensors {
        let (layer, parts): (&str, &[(&str, usize)]) =
            if let Some(layer) = name.strip_suffix(names::QKV_FUSED) {
                (layer, &[(names::WQ, q), (names::WK, kv), (names::WV, kv)])
            } else if let Some(layer) = name.strip_suffix(names::GATE_UP_FUSED) {
                (layer, &[(names::GATE, i), (names::UP, i)])
            } else {
                out.insert(name, t);
                continue;
            };
        let rows: usize = parts.iter().map(|p| p.1).sum();
        let bad = || mismatch(&name, vec![rows, h], t.shape.clone());
        if t.shape != [rows, h] {
            return Err(bad());
        }
        let mut start = 0;
        for &(suffix, n) in parts {
            let part_name = format!("{layer}{suffix}");
            let part = t.rows(&part_name, start, n).ok_or_else(bad)?;
            out.insert(part_name, part);
            start += n;
        }
    }
    Ok(out)
}

pub fn load(path: &Path) -> Result<LoadedModel> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let model = if meta.is_dir() {
        if !path.join(hf::CONFIG_FILE).is_file() {
            return Err(Error::NotAModel {
                path: path.into(),
                detail: format!("no {}", hf::CONFIG_FILE),
            });
        }
        hf::load(path)?
    } else {
        gguf::load(path).map_err(|e| not_gguf(path, e))?
    };
    model.validate()?;
    Ok(model)
}

/// A bad magic in the file the user named means "not a model file", said with what was
/// expected; beside a `config.json` it was likely one file of a Hugging Face directory.
fn not_gguf(path: &Path, e: Error) -> Error {
    match e {
        Error::BadMagic { path: p, found, .. } if p == path => {
            let mut detail = format!("it begins with {found}, not GGUF's magic \"GGUF\"");
            if let Some(dir) = path.parent().filter(|d| d.join(hf::CONFIG_FILE).is_file()) {
                let dir = if dir.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    dir
                };
                detail.push_str(&format!(
                    "; for the Hugging Face model beside it, pass its directory {}",
                    dir.display()
                ));
            }
            Error::NotAModel { path: p, detail }
        }
        e => e,
    }
}
