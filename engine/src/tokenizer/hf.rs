//! Tokenizer from `tokenizer.json` + `tokenizer_config.json` (stub; see the formats work).
