//! A real model in a Hugging Face directory (SmolLM2-135M-Instruct, converted from the default
//! GGUF by transformers: `fixtures/gen/hf_from_gguf.py`, ~270 MB, not committed). Ignored by
//! default; run with `WAVEFRONT_HF_DIR=DIR cargo test -p wavefront --test hf_real -- --ignored`.

use std::path::PathBuf;

use serde::Deserialize;
use wavefront::tokenizer::ChatMessage;
use wavefront::{Arch, DType};

#[derive(Deserialize)]
struct Check {
    strings: Vec<StringCase>,
    chat_text: String,
    probes: std::collections::BTreeMap<String, Vec<f32>>,
}

#[derive(Deserialize)]
struct StringCase {
    text: String,
    ids: Vec<u32>,
    decode: String,
}

#[test]
#[ignore = "needs WAVEFRONT_HF_DIR (fixtures/gen/hf_from_gguf.py)"]
fn hf_real_model() {
    let dir = PathBuf::from(std::env::var("WAVEFRONT_HF_DIR").expect("WAVEFRONT_HF_DIR"));
    let check: Check =
        serde_json::from_str(&std::fs::read_to_string(dir.join("check.json")).unwrap()).unwrap();
    let start = std::time::Instant::now();
    let m = wavefront::load(&dir).unwrap();
    eprintln!("loaded in {:?}", start.elapsed());

    // SmolLM2-135M (config.json as transformers 5 writes it: rope_parameters).
    let c = &m.config;
    assert_eq!(c.arch, Arch::Llama);
    assert_eq!(
        (c.vocab_size, c.hidden_size, c.intermediate_size),
        (49152, 576, 1536)
    );
    assert_eq!(
        (c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim),
        (30, 9, 3, 64)
    );
    assert_eq!((c.rope_theta, c.rope_scaling), (100000.0, None));
    assert!(c.tie_word_embeddings);
    assert_eq!(c.max_position_embeddings, 8192);

    for (name, expected) in &check.probes {
        let t = m.tensor(name).unwrap();
        assert_eq!(t.dtype, DType::BF16, "{name}");
        let got = t.to_f32().unwrap();
        assert_eq!(&got[..expected.len()], expected.as_slice(), "{name}");
    }

    let tok = m.tokenizer.as_ref().unwrap();
    for case in &check.strings {
        assert_eq!(
            tok.encode(&case.text, true).unwrap(),
            case.ids,
            "{:?}",
            case.text
        );
        assert_eq!(
            tok.decode(&case.ids, false).unwrap(),
            case.decode,
            "{:?}",
            case.text
        );
    }
    let chat = tok
        .apply_chat_template(&[ChatMessage::user("What is the capital of France?")], true)
        .unwrap();
    assert_eq!(chat, check.chat_text);
    // tokenizer_config.json's eos (<|im_end|>) and config.json's eos id 2 both stop generation.
    assert!(tok.is_eos(2) && tok.is_eos(tok.token_to_id("<|im_end|>").unwrap()));
}
