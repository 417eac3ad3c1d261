//! Shimmy's `LoadedModel`: one generation, queued to the model's engine thread, its text
//! streamed to `on_token` piece by piece.

use std::sync::Arc;

use async_trait::async_trait;
use shimmy::engine::{GenOptions, GenerationOutput, LoadedModel, TokenUsage};
use wavefront::serve::api::finish_reason;
use wavefront::serve::scheduler::{Event, Job, SubmitError};

use crate::error::{Error, Result};
use crate::options::{encode, request_settings, Template};
use crate::worker::Worker;

/// A model `WavefrontEngine` loaded, with the template of the spec it was loaded for.
pub struct WavefrontModel {
    worker: Arc<Worker>,
    template: Template,
}

impl WavefrontModel {
    pub(crate) fn new(worker: Arc<Worker>, template: Template) -> Self {
        WavefrontModel { worker, template }
    }

    /// Backend, device, slots and context, in one line.
    pub fn describe(&self) -> &str {
        &self.worker.description
    }

    /// Each generation's KV capacity (prompt and generated tokens): `ctx_len`, capped to the
    /// model's context length.
    pub fn context(&self) -> usize {
        self.worker.capacity
    }

    /// The model's tokenizer (its chat template among it).
    pub fn tokenizer(&self) -> &wavefront::Tokenizer {
        &self.worker.tokenizer
    }

    /// `generate_with_metadata`, with the typed error. Refused before anything runs: an
    /// unsupported or out-of-range option ([`request_settings`]), an empty prompt, a prompt
    /// that leaves no room in the context for a generated token. A generation that reaches
    /// the end of the context stops there (finish reason `length`), as `max_tokens` does.
    pub async fn run(
        &self,
        prompt: &str,
        opts: GenOptions,
        mut on_token: Option<Box<dyn FnMut(String) + Send>>,
    ) -> Result<GenerationOutput> {
        let mut request = request_settings(&opts)?;
        let w = &self.worker;
        // Tokenizing and templating a long prompt takes a while: off the async runtime.
        let (tokenizer, template, text) = (w.tokenizer.clone(), self.template.clone(), prompt);
        let text = text.to_string();
        let raw = opts.raw_prompt;
        let ids = tokio::task::spawn_blocking(move || encode(&tokenizer, &template, raw, &text))
            .await
            .map_err(|e| Error::Generation(format!("tokenizing the prompt: {e}")))??;
        if ids.is_empty() {
            return Err(Error::EmptyPrompt);
        }
        if ids.len() >= w.capacity {
            return Err(Error::PromptTooLong {
                tokens: ids.len(),
                capacity: w.capacity,
            });
        }
        request.prompt = ids;
        request.context = Some(w.capacity);
        let (job, mut events) = Job::new(request, w.timeout);
        w.queue.submit(job, &w.metrics).map_err(|e| match e {
            SubmitError::Full { capacity } => Error::QueueFull { queued: capacity },
            SubmitError::Closed => Error::EngineStopped,
        })?;
        let mut text = String::new();
        while let Some(event) = events.recv().await {
            match event {
                Event::Piece { text: piece, .. } => {
                    text.push_str(&piece);
                    if let Some(f) = on_token.as_mut() {
                        f(piece);
                    }
                }
                Event::Done { finish, usage } => {
                    return Ok(GenerationOutput {
                        text,
                        usage: Some(TokenUsage {
                            prompt_tokens: usage.prompt_tokens,
                            completion_tokens: usage.completion_tokens,
                            total_tokens: usage.prompt_tokens + usage.completion_tokens,
                        }),
                        finish_reason: Some(finish_reason(&finish).to_string()),
                    })
                }
                Event::Failed(e) => return Err(Error::Generation(e.message)),
            }
        }
        Err(Error::EngineStopped)
    }
}

#[async_trait]
impl LoadedModel for WavefrontModel {
    async fn generate(
        &self,
        prompt: &str,
        opts: GenOptions,
        on_token: Option<Box<dyn FnMut(String) + Send>>,
    ) -> anyhow::Result<String> {
        Ok(self.run(prompt, opts, on_token).await?.text)
    }

    async fn generate_with_metadata(
        &self,
        prompt: &str,
        opts: GenOptions,
        on_token: Option<Box<dyn FnMut(String) + Send>>,
    ) -> anyhow::Result<GenerationOutput> {
        Ok(self.run(prompt, opts, on_token).await?)
    }
}
