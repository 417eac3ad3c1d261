//! The crate's one error type. Shimmy's traits return `anyhow::Result`; these are what goes
//! inside, each naming the option, file or limit at fault.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A shimmy option Wavefront does not implement: refused, never ignored.
    #[error("{option} = {value:?} is not supported by the Wavefront engine ({why})")]
    Unsupported {
        /// The field of `GenOptions` or `ModelSpec` (`grammar_mode`, `lora_path`, …).
        option: &'static str,
        value: String,
        why: &'static str,
    },

    /// `ModelSpec.ctx_len` or `n_threads` out of range.
    #[error("{option} must be {expected}, got {value}")]
    InvalidSpec {
        option: &'static str,
        value: String,
        expected: &'static str,
    },

    #[error("{path}: the model carries no tokenizer, so it cannot take a text prompt")]
    NoTokenizer { path: PathBuf },

    #[error("the prompt has no tokens")]
    EmptyPrompt,

    #[error(
        "the prompt has {tokens} tokens; the context (ctx_len) holds {capacity} (the prompt and \
         at least one generated token must fit)"
    )]
    PromptTooLong { tokens: usize, capacity: usize },

    /// `--backend gpu` without a usable GPU, or a GPU that is there but failed to open.
    #[error(transparent)]
    Backend(#[from] wavefront::backend::gpu::SelectError),

    /// Loading, the chat template, tokenizing, a setting out of range (the engine's own
    /// message: `temperature must be finite and >= 0, got -1`).
    #[error(transparent)]
    Engine(#[from] wavefront::Error),

    /// The generation failed or timed out on the engine's thread.
    #[error("generation failed: {0}")]
    Generation(String),

    #[error("{queued} requests are already waiting for this model; try again later")]
    QueueFull { queued: usize },

    #[error("the model's engine thread has stopped")]
    EngineStopped,

    #[error("starting the model's CPU thread pool: {0}")]
    ThreadPool(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
