//! Incremental detokenization that never emits a broken UTF-8 character.
//!
//! Decoding token by token breaks in two ways: a character split over several byte tokens
//! (emoji in byte-level BPE, `<0xF0>`-style byte fallback) decodes to U+FFFD until its last
//! byte arrives, and SentencePiece drops the leading space of a lone token. So each step
//! decodes a short window — from `prefix` (already emitted, kept for context) to the end —
//! and emits only what the window adds beyond the prefix, once it no longer ends in U+FFFD.

use crate::error::Result;
use crate::tokenizer::Tokenizer;

#[derive(Debug, Clone, Default)]
pub struct IncrementalDecoder {
    ids: Vec<u32>,
    /// Start of the context window.
    prefix: usize,
    /// End of what has been emitted.
    read: usize,
    skip_special_tokens: bool,
}

impl IncrementalDecoder {
    pub fn new(skip_special_tokens: bool) -> Self {
        IncrementalDecoder {
            skip_special_tokens,
            ..Default::default()
        }
    }

    /// Adds `id`; returns the text it completes (possibly empty).
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> Result<String> {
        self.ids.push(id);
        let before = tok.decode(&self.ids[self.prefix..self.read], self.skip_special_tokens)?;
        let after = tok.decode(&self.ids[self.prefix..], self.skip_special_tokens)?;
        if after.ends_with('\u{FFFD}') {
            return Ok(String::new()); // an incomplete character: wait for more bytes
        }
        let new = match after.strip_prefix(before.as_str()) {
            Some(rest) => rest.to_string(),
            // The window re-segmented differently (rare): emit what is new by length.
            None => after.get(before.len()..).unwrap_or_default().to_string(),
        };
        if !new.is_empty() {
            self.prefix = self.read;
            self.read = self.ids.len();
        }
        Ok(new)
    }

    /// Whatever is still held back (e.g. a byte sequence the model never completed).
    pub fn flush(&mut self, tok: &Tokenizer) -> Result<String> {
        let before = tok.decode(&self.ids[self.prefix..self.read], self.skip_special_tokens)?;
        let after = tok.decode(&self.ids[self.prefix..], self.skip_special_tokens)?;
        self.prefix = self.read;
        self.read = self.ids.len();
        Ok(after.get(before.len()..).unwrap_or_default().to_string())
    }
}
