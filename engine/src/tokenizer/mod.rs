//! Tokenizer: a `tokenizers::Tokenizer` plus what generation needs around it (special ids,
//! BOS policy, chat template). Built from `tokenizer.json` (`hf`) or from GGUF metadata (`gguf`).

pub mod chat;
pub mod gguf;
pub mod hf;

pub use chat::{ChatInput, ChatMessage};

use crate::error::{Error, Result};

/// Special tokens and policies that `tokenizers` does not carry by itself.
#[derive(Debug, Clone, Default)]
pub struct SpecialTokens {
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    pub bos_token_id: Option<u32>,
    /// All ids that end generation (a model may have several, e.g. `<|im_end|>` and `<|endoftext|>`).
    pub eos_token_ids: Vec<u32>,
}

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    pub special: SpecialTokens,
    /// Jinja chat template (Hugging Face `chat_template`), if the model ships one.
    pub chat_template: Option<String>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("special", &self.special)
            .field(
                "chat_template",
                &self.chat_template.as_ref().map(|t| t.len()),
            )
            .finish()
    }
}

impl Tokenizer {
    /// `inner` must already carry its post-processor (BOS insertion) so that
    /// `encode(text, true)` equals transformers' `tokenizer(text).input_ids`.
    pub fn new(
        inner: tokenizers::Tokenizer,
        special: SpecialTokens,
        chat_template: Option<String>,
    ) -> Self {
        Tokenizer {
            inner,
            special,
            chat_template,
        }
    }

    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Token ids for `text`. With `add_special_tokens`, the post-processor adds what the model
    /// expects around a plain prompt (e.g. BOS); chat-templated text is encoded without.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|e| Error::Tokenizer(format!("encoding failed: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text for `ids`; special tokens are skipped when `skip_special_tokens`.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| Error::Tokenizer(format!("decoding failed: {e}")))
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Pads the vocabulary to `vocab` ids with plain added tokens `<rN>` (N the id), so that
    /// a model with a larger vocabulary than this tokenizer's (random weights in a real
    /// model's shape, `serve --shape`) has text for every id it can generate. An error when the
    /// vocabulary is larger than `vocab` already or the new ids would not be consecutive.
    pub fn pad_vocab(&mut self, vocab: usize) -> Result<()> {
        let have = self.vocab_size();
        if have > vocab {
            return Err(Error::Tokenizer(format!(
                "cannot pad a vocabulary of {have} tokens to {vocab}"
            )));
        }
        let pads: Vec<tokenizers::AddedToken> = (have..vocab)
            .map(|id| tokenizers::AddedToken::from(format!("<r{id}>"), false))
            .collect();
        self.inner.add_tokens(&pads);
        let first_ok =
            have == vocab || self.token_to_id(&format!("<r{have}>")) == Some(have as u32);
        if self.vocab_size() != vocab || !first_ok {
            return Err(Error::Tokenizer(format!(
                "padding a vocabulary of {have} tokens to {vocab} gave {} tokens",
                self.vocab_size()
            )));
        }
        Ok(())
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    pub fn is_eos(&self, id: u32) -> bool {
        self.special.eos_token_ids.contains(&id)
    }

    /// The prompt of a chat: the template over `messages` with the generation prompt, encoded
    /// without adding special tokens (the template writes them). What `wavefront run --chat`
    /// prefills.
    pub fn encode_chat(&self, messages: &[ChatMessage]) -> Result<Vec<u32>> {
        self.encode_chat_input(&ChatInput {
            messages,
            tools: None,
            add_generation_prompt: true,
        })
    }

    /// [`Tokenizer::encode_chat`] of a chat with tools: what the server's chat completions
    /// prefill.
    pub fn encode_chat_input(&self, input: &ChatInput) -> Result<Vec<u32>> {
        let text = self.apply_chat_input(input)?;
        self.encode(&text, false)
    }

    /// Renders the chat template over `messages` (Hugging Face semantics, no tools).
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String> {
        self.apply_chat_input(&ChatInput {
            messages,
            tools: None,
            add_generation_prompt,
        })
    }

    /// Renders the chat template over `input`: transformers' `apply_chat_template(messages,
    /// tools=..., add_generation_prompt=..., tokenize=False)`.
    pub fn apply_chat_input(&self, input: &ChatInput) -> Result<String> {
        chat::render_input(self.template()?, input, &self.special)
    }

    /// Whether the chat template reads `tools` ([`chat::takes_tools`]).
    pub fn chat_template_takes_tools(&self) -> Result<bool> {
        chat::takes_tools(self.template()?)
    }

    fn template(&self) -> Result<&str> {
        self.chat_template
            .as_deref()
            .ok_or_else(|| Error::ChatTemplate("this model has no chat template".into()))
    }
}
