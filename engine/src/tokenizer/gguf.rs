//! Tokenizer from GGUF metadata (stub; see the formats work).
