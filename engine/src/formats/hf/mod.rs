//! Hugging Face model directories: `config.json` (+ `generation_config.json`), weights in
//! `model.safetensors` or `model.safetensors.index.json` + shards, and the tokenizer files.
//!
//! Tensor names in these files are already the canonical names (Gemma's norms are renamed and
//! their `(1 + w)` gains resolved, [`gemma_gains`]); weights stay in the files' memory maps.

pub mod config;
pub mod safetensors;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use crate::config::{names, Arch};
use crate::error::{Error, Result};
use crate::formats::{Format, LoadedModel};
use crate::tensor::{DType, HostTensor, Storage};

pub use config::{load_config, parse_config, REQUIRED_FIELDS};

pub const CONFIG_FILE: &str = "config.json";
pub const SINGLE_FILE: &str = "model.safetensors";
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// Loads the model in `dir`: every tensor the config implies must be in the weights with the
/// implied shape, in a loadable dtype ([`crate::formats::load`] then checks byte lengths).
pub fn load(dir: &Path) -> Result<LoadedModel> {
    let config = load_config(dir)?;
    let mut weights = load_weights(dir)?;
    if matches!(config.arch, Arch::Gemma2 | Arch::Gemma3) {
        weights.tensors = gemma_gains(std::mem::take(&mut weights.tensors))?;
    }
    if config.arch == Arch::Phi3 {
        let tensors = std::mem::take(&mut weights.tensors);
        weights.tensors = split_fused(tensors, &config, dir, &weights.root)?;
    }
    // Each layer has tensors of its own: more layers than the weights hold tensors is a broken
    // config (and would make the expected-tensor list as long as the count says).
    let held = weights.tensors.len() + weights.unsupported.len();
    if config.n_layers > held {
        return Err(Error::config(
            dir.join(CONFIG_FILE),
            "num_hidden_layers",
            format!(
                "{} layers, but the weights hold {held} tensors",
                config.n_layers
            ),
        ));
    }
    // Every tensor the config implies, present with the implied shape, in a loadable dtype.
    let config_path = dir.join(CONFIG_FILE);
    let mut tensors = BTreeMap::new();
    for (name, expected) in config.expected_tensors() {
        let (weights_path, unsupported) = weights.locate(&name);
        let found = match weights.tensors.get(&name) {
            Some(t) if t.shape == expected => {
                tensors.insert(name, t.clone());
                continue;
            }
            Some(t) => Some(t.shape.clone()),
            None => None,
        };
        return Err(match unsupported {
            Some(dtype) => Error::UnsupportedDtype {
                path: weights_path,
                tensor: name,
                dtype,
            },
            None => Error::WeightsMismatch {
                config: config_path,
                weights: weights_path,
                tensor: name,
                expected,
                found,
            },
        });
    }
    let mut tokenizer = crate::tokenizer::hf::from_dir(dir)?;
    if let Some(t) = tokenizer.as_mut() {
        // Generation stops on the config's EOS ids as well as the tokenizer's.
        for &id in &config.eos_token_ids {
            if !t.special.eos_token_ids.contains(&id) {
                t.special.eos_token_ids.push(id);
            }
        }
    }
    Ok(LoadedModel {
        path: dir.to_path_buf(),
        format: Format::HuggingFace,
        config,
        tensors,
        tokenizer,
    })
}

/// Gemma's norms under the canonical names, each gain `1 + w` in f32 as `Gemma3RMSNorm`
/// computes it (`output * (1.0 + self.weight.float())`): Gemma's `post_attention_layernorm`
/// (the attention output's norm) becomes [`names::POST_ATTN_NORM`] and its
/// `pre_feedforward_layernorm` the MLP's pre-norm [`names::MLP_NORM`] (Llama's
/// `post_attention_layernorm`). Every `*norm.weight` (input, the four a layer, QK-norm, final)
/// is a Gemma RMSNorm gain.
fn gemma_gains(tensors: BTreeMap<String, HostTensor>) -> Result<BTreeMap<String, HostTensor>> {
    let mut out = BTreeMap::new();
    for (name, mut t) in tensors {
        let name = if let Some(layer) = name.strip_suffix("post_attention_layernorm.weight") {
            format!("{layer}{}", names::POST_ATTN_NORM)
        } else if let Some(layer) = name.strip_suffix("pre_feedforward_layernorm.weight") {
            format!("{layer}{}", names::MLP_NORM)
        } else {
            name
        };
        if name.ends_with("norm.weight") {
            let gains: Vec<u8> = t
                .to_f32()?
                .into_iter()
                .flat_map(|w| (1.0 + w).to_le_bytes())
                .collect();
            t.dtype = DType::F32;
            t.storage = Storage::Owned(Arc::new(gains));
        }
        t.name = name.clone();
        out.insert(name, t);
    }
    Ok(out)
}

/// Phi-3's fused `qkv_proj` / `gate_up_proj` split by [`crate::formats::split_fused`]; a
/// fused tensor of another shape is a [`Error::WeightsMismatch`] naming it.
fn split_fused(
    tensors: BTreeMap<String, HostTensor>,
    config: &crate::config::ModelConfig,
    dir: &Path,
    weights_path: &Path,
) -> Result<BTreeMap<String, HostTensor>> {
    crate::formats::split_fused(tensors, config, |tensor, expected, found| {
        Error::WeightsMismatch {
            config: dir.join(CONFIG_FILE),
            weights: weights_path.to_path_buf(),
            tensor: tensor.to_string(),
            expected,
            found: Some(found),
        }
    })
}

/// Every tensor of the model's safetensors file(s).
pub struct Weights {
    /// By name, across all shards.
    pub tensors: BTreeMap<String, HostTensor>,
    /// Tensors present in a dtype the engine does not load: name → (file, dtype).
    unsupported: BTreeMap<String, (PathBuf, String)>,
    /// For a sharded model, the shard the index assigns each tensor to.
    index: Option<BTreeMap<String, PathBuf>>,
    /// The single file, or the index file.
    root: PathBuf,
}

impl Weights {
    /// The file a tensor is in (or should have been in), and its dtype if it is there but
    /// unsupported.
    fn locate(&self, name: &str) -> (PathBuf, Option<String>) {
        if let Some((file, dtype)) = self.unsupported.get(name) {
            return (file.clone(), Some(dtype.clone()));
        }
        let file = self.index.as_ref().and_then(|i| i.get(name));
        (file.unwrap_or(&self.root).clone(), None)
    }
}

/// `model.safetensors` if present (as transformers prefers it), else the sharded index.
pub fn load_weights(dir: &Path) -> Result<Weights> {
    let single = dir.join(SINGLE_FILE);
    if single.is_file() {
        let file = safetensors::open(&single)?;
        return Ok(Weights {
            tensors: file.tensors,
            unsupported: with_path(file.unsupported, &single),
            index: None,
            root: single,
        });
    }
    let index_path = dir.join(INDEX_FILE);
    if !index_path.is_file() {
        return Err(Error::io(
            &single,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no {SINGLE_FILE} or {INDEX_FILE} in the model directory"),
            ),
        ));
    }
    let weight_map = read_index(dir, &index_path)?;
    let mut shards: Vec<&PathBuf> = weight_map.values().collect();
    shards.sort();
    shards.dedup();
    let mut w = Weights {
        tensors: BTreeMap::new(),
        unsupported: BTreeMap::new(),
        index: None,
        root: index_path.clone(),
    };
    for shard in shards {
        let file = safetensors::open(shard)?;
        for (name, t) in file.tensors {
            if w.tensors.insert(name.clone(), t).is_some() {
                return Err(Error::corrupt(
                    shard,
                    format!("tensor `{name}` is also in another shard"),
                ));
            }
        }
        w.unsupported.extend(with_path(file.unsupported, shard));
    }
    for (name, shard) in &weight_map {
        if !w.tensors.contains_key(name) && !w.unsupported.contains_key(name) {
            return Err(Error::MissingTensor {
                path: shard.clone(),
                tensor: name.clone(),
            });
        }
    }
    w.index = Some(weight_map);
    Ok(w)
}

fn with_path(m: BTreeMap<String, String>, path: &Path) -> BTreeMap<String, (PathBuf, String)> {
    m.into_iter()
        .map(|(k, v)| (k, (path.to_path_buf(), v)))
        .collect()
}

/// `weight_map` of the index: tensor name → shard path (a plain file name in `dir`).
fn read_index(dir: &Path, index_path: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let index = config::read_json(index_path)?;
    let map = index
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::corrupt(index_path, "no `weight_map` object"))?;
    let mut out = BTreeMap::new();
    for (name, file) in map {
        let file = file.as_str().ok_or_else(|| {
            Error::corrupt(
                index_path,
                format!("`weight_map.{name}` is not a file name"),
            )
        })?;
        let plain = Path::new(file).file_name().is_some_and(|f| f == file);
        if !plain {
            return Err(Error::corrupt(
                index_path,
                format!(
                    "`weight_map.{name}`: shard `{file}` is not a file name in the model directory"
                ),
            ));
        }
        out.insert(name.clone(), dir.join(file));
    }
    Ok(out)
}
