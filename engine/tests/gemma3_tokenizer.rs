//! Gemma 3 270M (`--model gemma3`, Q4_K_M GGUF, fetched on first use): its SentencePiece
//! tokenizer (262,144 pieces, Gemma's respelled spaces and position-ordered merges) agrees with
//! what transformers makes of the same file (fixtures/gen/gemma3_goldens.py). The engine does
//! not run the Gemma 3 architecture yet; the tokenizer is read from the file on its own.

use std::path::{Path, PathBuf};

use wavefront::formats::gguf;
use wavefront::tokenizer::gguf::from_gguf;

mod common;

fn goldens() -> serde_json::Value {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/gemma3/tokenizer_goldens.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn encode_and_decode_match_transformers() {
    let path = wavefront::fetch::resolve(Some(Path::new("gemma3"))).expect("the Gemma 3 file");
    let file = gguf::read(&path).unwrap_or_else(|e| panic!("{e}"));
    let tok = from_gguf(&file)
        .unwrap_or_else(|e| panic!("{e}"))
        .expect("the file carries a tokenizer");
    assert_eq!(tok.vocab_size(), 262_144);
    let g = goldens();
    assert_eq!(g["gguf_file"], "gemma-3-270m-q4_k_m.gguf");
    assert!(g["cases"].as_array().unwrap().len() >= 30);
    let failures = common::tokenizer::mismatches(&tok, &g);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
