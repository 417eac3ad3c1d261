//! Wavefront as a [Shimmy](https://crates.io/crates/shimmy) inference engine: shimmy's
//! `InferenceEngine` and `LoadedModel` over the engine's public generation API, so that
//! shimmy's own server (its OpenAI and Ollama routes) runs on Wavefront — on a ROCm or CUDA
//! GPU, or the CPU.
//!
//! Shimmy calls `load` on every request: a model is loaded once, on its own thread, and cached
//! by (file, `ctx_len`, `n_threads`); every later `load` of it returns the same one
//! ([`WavefrontEngine::loads`] counts the real loads). That thread runs the engine's server
//! scheduler (`wavefront::serve::scheduler`, the one `wavefront serve` runs): up to
//! [`Options::slots`] generations of the model at once, each the same tokens as `wavefront
//! run` gives for the same prompt, settings and seed, with prompt caching between requests.
//!
//! `generate` maps shimmy's `GenOptions` ([`request_settings`]), tokenizes the prompt
//! ([`encode`]), streams each piece of text to `on_token` as the engine emits it, and answers
//! with the usage and OpenAI's finish reason through `generate_with_metadata`.

mod error;
mod model;
mod options;
mod worker;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use shimmy::engine::{InferenceEngine, LoadedModel, ModelSpec};
use wavefront::backend::gpu::BackendChoice;
use wavefront::EngineOptions;

pub use error::{Error, Result};
pub use model::WavefrontModel;
pub use options::{encode, family, family_of, request_settings, Template, REPEAT_LAST_N};

/// How every model this engine loads runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Auto: the GPU when one is usable (ROCm or CUDA), else the CPU.
    pub backend: BackendChoice,
    /// The engine's options (the KV cache's element type).
    pub engine: EngineOptions,
    /// Generations of one model at once, each with its own KV cache of `ctx_len` positions.
    pub slots: usize,
    /// Generations waiting for a slot; one more is refused ([`Error::QueueFull`]).
    pub queue: usize,
    /// From a generation's start to its end, waiting included; past it, it fails.
    pub timeout: Duration,
}

impl Default for Options {
    /// `wavefront serve`'s defaults: 4 slots, a queue of 16, 10 minutes.
    fn default() -> Self {
        Options {
            backend: BackendChoice::Auto,
            engine: EngineOptions::default(),
            slots: 4,
            queue: 16,
            timeout: Duration::from_secs(600),
        }
    }
}

/// What a loaded model is cached by: the same file with another context or thread count is
/// another engine.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    path: PathBuf,
    ctx_len: usize,
    n_threads: Option<usize>,
}

/// Shimmy's `InferenceEngine` over Wavefront.
pub struct WavefrontEngine {
    options: Options,
    /// Held across a load, so that concurrent loads of one model load it once.
    models: tokio::sync::Mutex<HashMap<Key, Arc<worker::Worker>>>,
    loads: AtomicUsize,
}

impl WavefrontEngine {
    pub fn new(options: Options) -> Self {
        WavefrontEngine {
            options,
            models: tokio::sync::Mutex::new(HashMap::new()),
            loads: AtomicUsize::new(0),
        }
    }

    /// Models loaded so far: a `load` of a cached model does not count.
    pub fn loads(&self) -> usize {
        self.loads.load(Relaxed)
    }

    /// `spec`'s model, loaded on first use. Refused: `lora_path` (no adapters), `ctx_len`
    /// below 2, `n_threads` below 1, a `template` that is not one of shimmy's families.
    /// `ctx_len` is each slot's KV capacity, capped to the model's context length; refused
    /// when the slots' caches cannot fit in the backend's free memory. `n_threads` sizes the
    /// CPU backend's thread pool (default: one thread per core).
    pub async fn load_model(&self, spec: &ModelSpec) -> Result<WavefrontModel> {
        if let Some(p) = &spec.lora_path {
            return Err(Error::Unsupported {
                option: "lora_path",
                value: p.display().to_string(),
                why: "LoRA adapters are not implemented; merge the adapter into the weights",
            });
        }
        if spec.ctx_len < 2 {
            return Err(Error::InvalidSpec {
                option: "ctx_len",
                value: spec.ctx_len.to_string(),
                expected: "at least 2 (one prompt token and one generated)",
            });
        }
        let n_threads = match spec.n_threads {
            None => None,
            Some(n) => Some(usize::try_from(n).ok().filter(|&n| n > 0).ok_or_else(|| {
                Error::InvalidSpec {
                    option: "n_threads",
                    value: n.to_string(),
                    expected: "at least 1",
                }
            })?),
        };
        let template = Template::of(spec)?;
        let key = Key {
            path: std::fs::canonicalize(&spec.base_path).unwrap_or_else(|_| spec.base_path.clone()),
            ctx_len: spec.ctx_len,
            n_threads,
        };
        let mut models = self.models.lock().await;
        let worker = match models.get(&key) {
            Some(w) => w.clone(),
            None => {
                tracing::info!(
                    "loading {} (ctx_len {}, n_threads {:?})",
                    key.path.display(),
                    key.ctx_len,
                    key.n_threads
                );
                let w = Arc::new(
                    worker::Worker::start(key.path.clone(), key.ctx_len, n_threads, &self.options)
                        .await?,
                );
                self.loads.fetch_add(1, Relaxed);
                models.insert(key, w.clone());
                w
            }
        };
        Ok(WavefrontModel::new(worker, template))
    }
}

#[async_trait]
impl InferenceEngine for WavefrontEngine {
    async fn load(&self, spec: &ModelSpec) -> anyhow::Result<Box<dyn LoadedModel>> {
        Ok(Box::new(self.load_model(spec).await?))
    }
}
