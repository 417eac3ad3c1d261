//! Wavefront: an LLM inference engine for AMD GPUs.
//!
//! Model formats (`formats`), tokenizer (`tokenizer`), the default model (`fetch`), and the
//! engine proper. The reference transformer lives in its own crate and is never a dependency
//! of this one: the conformance crate compares the two.

pub mod backend;
pub mod bench;
pub mod config;
pub mod context;
pub mod detok;
pub mod error;
pub mod fetch;
pub mod formats;
pub mod generate;
pub mod kv_cache;
pub mod kv_quant;
pub mod model;
pub mod rope;
pub mod sampler;
pub mod serve;
pub mod speculative;
pub mod tensor;
pub mod tokenizer;

pub use config::{Arch, ModelConfig};
pub use error::{Error, Result};
pub use formats::{load, LoadedModel};
pub use generate::{FinishReason, GenerationRequest, Generator, Step, TokenLogprobs};
pub use model::{DecodeBatch, Engine, EngineOptions, Logits, Sequence};
pub use sampler::SamplingParams;
pub use tensor::{DType, HostTensor};
pub use tokenizer::Tokenizer;
