//! The default model (SmolLM2-135M-Instruct, Q4_1 GGUF): its GGUF tokenizer, chat template and
//! config agree with what transformers makes of the same file (fixtures/gen/smollm2_goldens.py).

use std::path::PathBuf;
use std::sync::OnceLock;

use wavefront::tokenizer::ChatMessage;
use wavefront::{Arch, LoadedModel};

mod common;

fn goldens(name: &str) -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/smollm2")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn model() -> &'static LoadedModel {
    static MODEL: OnceLock<LoadedModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        let path = wavefront::fetch::default_model().expect("the default model");
        wavefront::load(&path).unwrap_or_else(|e| panic!("{e}"))
    })
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn encode_and_decode_match_transformers() {
    let g = goldens("tokenizer_goldens.json");
    let tok = model()
        .tokenizer
        .as_ref()
        .expect("SmolLM2 carries a tokenizer");
    assert!(g["cases"].as_array().unwrap().len() >= 24);
    let failures = common::tokenizer::mismatches(tok, &g);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn chat_template_renders_and_encodes_like_transformers() {
    let g = goldens("chat_goldens.json");
    let tok = model().tokenizer.as_ref().unwrap();
    let chats = g["chats"].as_array().unwrap();
    assert!(chats.len() >= 2);
    for chat in chats {
        let messages: Vec<ChatMessage> = serde_json::from_value(chat["messages"].clone()).unwrap();
        let text = tok.apply_chat_template(&messages, true).unwrap();
        assert_eq!(text, chat["text"].as_str().unwrap());
        assert_eq!(
            tok.encode(&text, false).unwrap(),
            ids(&chat["ids"]),
            "{text:?}"
        );
    }
}

#[test]
fn config_matches_transformers() {
    let g = goldens("greedy_goldens.json");
    let want = &g["config"];
    let n = |k: &str| want[k].as_u64().unwrap() as usize;
    let c = &model().config;
    assert_eq!(c.arch, Arch::Llama);
    assert_eq!(c.n_layers, n("num_hidden_layers"));
    assert_eq!(c.hidden_size, n("hidden_size"));
    assert_eq!(c.intermediate_size, n("intermediate_size"));
    assert_eq!(c.n_heads, n("num_attention_heads"));
    assert_eq!(c.n_kv_heads, n("num_key_value_heads"));
    assert_eq!(c.head_dim, n("head_dim"));
    assert_eq!(c.vocab_size, n("vocab_size"));
    assert_eq!(c.max_position_embeddings, n("max_position_embeddings"));
    assert_eq!(c.rope_theta, want["rope_theta"].as_f64().unwrap() as f32);
    assert_eq!(want["rope_type"], "default");
    assert_eq!(c.rope_freq_factors, None);
    assert_eq!(
        c.rms_norm_eps,
        want["rms_norm_eps"].as_f64().unwrap() as f32
    );
    assert_eq!(
        c.tie_word_embeddings,
        want["tie_word_embeddings"].as_bool().unwrap()
    );
    assert_eq!(c.bos_token_id, Some(n("bos_token_id") as u32));
    assert_eq!(c.eos_token_ids, vec![n("eos_token_id") as u32]);
    assert!(!c.attention_bias);
    let tok = model().tokenizer.as_ref().unwrap();
    assert_eq!(tok.vocab_size(), c.vocab_size);
    assert!(tok.is_eos(n("eos_token_id") as u32));
}

#[test]
fn padding_the_vocabulary_gives_every_new_id_its_own_text_and_leaves_the_rest_alone() {
    // `serve --shape llama-3.2-1b` speaks through this tokenizer padded to 128256 ids.
    let path = wavefront::fetch::default_model().expect("the default model");
    let mut tok = wavefront::load(&path).unwrap().tokenizer.unwrap();
    let text = "1, 2, 3, 4, 5, the quick brown fox <|im_end|>";
    let before = tok.encode(text, true).unwrap();
    let decoded = tok.decode(&before, false).unwrap();
    let have = tok.vocab_size();
    assert_eq!(have, 49152);
    tok.pad_vocab(128256).unwrap();
    assert_eq!(tok.vocab_size(), 128256);
    assert_eq!(tok.encode(text, true).unwrap(), before);
    for id in [have as u32, 90000, 128255] {
        assert_eq!(tok.id_to_token(id), Some(format!("<r{id}>")));
        assert_eq!(tok.decode(&[id], true).unwrap(), format!("<r{id}>"));
    }
    assert_eq!(tok.decode(&before, false).unwrap(), decoded);
    // Never shrinks.
    assert!(tok.pad_vocab(1000).is_err());
}
