//! The tokenizer of a Hugging Face directory against transformers 5
//! (`fixtures/gen/hf_tokenizer.py` writes the directory and `goldens.json` from
//! `AutoTokenizer.from_pretrained`).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use wavefront::tokenizer::{hf, ChatMessage, Tokenizer};
use wavefront::Error;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tokenizers/bpe_tiny")
}

#[derive(Deserialize)]
struct Goldens {
    vocab_size: usize,
    bos_token: String,
    bos_token_id: u32,
    eos_token: String,
    eos_token_id: u32,
    strings: Vec<StringCase>,
    chats: Vec<ChatCase>,
}

#[derive(Deserialize)]
struct StringCase {
    text: String,
    ids: Vec<u32>,
    ids_no_special: Vec<u32>,
    decode: String,
    decode_skip_special: String,
}

#[derive(Deserialize)]
struct ChatCase {
    messages: Vec<ChatMessage>,
    text: String,
    ids: Vec<u32>,
}

fn goldens() -> Goldens {
    let text = std::fs::read_to_string(fixture_dir().join("goldens.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn load(dir: &Path) -> Tokenizer {
    hf::from_dir(dir).unwrap().expect("tokenizer.json is there")
}

#[test]
fn encode_matches_transformers() {
    let (g, tok) = (goldens(), load(&fixture_dir()));
    assert_eq!(g.strings.len(), 20);
    for case in &g.strings {
        assert_eq!(
            tok.encode(&case.text, true).unwrap(),
            case.ids,
            "{:?}",
            case.text
        );
        assert_eq!(
            tok.encode(&case.text, false).unwrap(),
            case.ids_no_special,
            "{:?}",
            case.text
        );
    }
}

#[test]
fn decode_matches_transformers() {
    let (g, tok) = (goldens(), load(&fixture_dir()));
    for case in &g.strings {
        assert_eq!(
            tok.decode(&case.ids, false).unwrap(),
            case.decode,
            "{:?}",
            case.text
        );
        assert_eq!(
            tok.decode(&case.ids, true).unwrap(),
            case.decode_skip_special,
            "{:?}",
            case.text
        );
    }
}

/// tokenizer_config.json says `add_bos_token: false, add_eos_token: true`; transformers 5
/// ignores both when tokenizer.json exists, and so must we: BOS first, no EOS last.
#[test]
fn add_bos_eos_flags_follow_transformers_5() {
    let (g, tok) = (goldens(), load(&fixture_dir()));
    let cfg = std::fs::read_to_string(fixture_dir().join("tokenizer_config.json")).unwrap();
    assert!(cfg.contains("\"add_bos_token\": false") && cfg.contains("\"add_eos_token\": true"));
    let ids = tok.encode("Hello world", true).unwrap();
    assert_eq!(ids.first(), Some(&g.bos_token_id));
    assert_ne!(ids.last(), Some(&g.eos_token_id));
}

#[test]
fn special_tokens_match_transformers() {
    let (g, tok) = (goldens(), load(&fixture_dir()));
    assert_eq!(tok.vocab_size(), g.vocab_size);
    assert_eq!(tok.special.bos_token.as_deref(), Some(g.bos_token.as_str()));
    assert_eq!(tok.special.eos_token.as_deref(), Some(g.eos_token.as_str()));
    assert_eq!(tok.special.bos_token_id, Some(g.bos_token_id));
    assert_eq!(tok.special.eos_token_ids, vec![g.eos_token_id]);
    assert!(tok.is_eos(g.eos_token_id));
}

#[test]
fn chat_template_matches_transformers() {
    let (g, tok) = (goldens(), load(&fixture_dir()));
    assert_eq!(g.chats.len(), 2);
    for case in &g.chats {
        let text = tok.apply_chat_template(&case.messages, true).unwrap();
        assert_eq!(text, case.text);
        // Chat-templated text is encoded without special tokens (the template has them).
        assert_eq!(tok.encode(&text, false).unwrap(), case.ids);
    }
}

/// chat_template.jinja wins over the (decoy) `chat_template` in tokenizer_config.json.
#[test]
fn chat_template_jinja_file_wins() {
    let tok = load(&fixture_dir());
    let jinja = std::fs::read_to_string(fixture_dir().join("chat_template.jinja")).unwrap();
    assert_eq!(tok.chat_template.as_deref(), Some(jinja.as_str()));
}

/// A copy of the fixture directory with tokenizer_config.json replaced.
fn with_config(config: serde_json::Value, keep_jinja: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture_dir().join("tokenizer.json"),
        dir.path().join("tokenizer.json"),
    )
    .unwrap();
    if keep_jinja {
        std::fs::copy(
            fixture_dir().join("chat_template.jinja"),
            dir.path().join("chat_template.jinja"),
        )
        .unwrap();
    }
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        serde_json::to_vec(&config).unwrap(),
    )
    .unwrap();
    dir
}

#[test]
fn chat_template_string_in_config_is_used_without_jinja_file() {
    let dir = with_config(
        serde_json::json!({"chat_template": "{{ messages[0].content }}!"}),
        false,
    );
    let tok = load(dir.path());
    let out = tok
        .apply_chat_template(&[ChatMessage::user("hi")], false)
        .unwrap();
    assert_eq!(out, "hi!");
}

#[test]
fn chat_template_list_picks_default() {
    let dir = with_config(
        serde_json::json!({"chat_template": [
            {"name": "tool_use", "template": "TOOLS"},
            {"name": "default", "template": "DEFAULT {{ messages | length }}"},
        ]}),
        false,
    );
    let tok = load(dir.path());
    assert_eq!(
        tok.chat_template.as_deref(),
        Some("DEFAULT {{ messages | length }}")
    );
    let out = tok
        .apply_chat_template(&[ChatMessage::user("a")], false)
        .unwrap();
    assert_eq!(out, "DEFAULT 1");
}

#[test]
fn token_objects_in_config_are_read() {
    let dir = with_config(
        serde_json::json!({
            "bos_token": {"__type": "AddedToken", "content": "<|bos|>", "lstrip": false,
                          "normalized": false, "rstrip": false, "single_word": false},
            "eos_token": {"content": "<|im_end|>"},
        }),
        true,
    );
    let tok = load(dir.path());
    let fixture = load(&fixture_dir());
    assert_eq!(tok.special.bos_token_id, fixture.token_to_id("<|bos|>"));
    assert_eq!(tok.special.eos_token.as_deref(), Some("<|im_end|>"));
    assert_eq!(
        tok.special.eos_token_ids,
        vec![fixture.token_to_id("<|im_end|>").unwrap()]
    );
}

/// A named special token that tokenizer.json lacks is added (transformers' `__init__` adds
/// it): it gets the next free id and is matched whole in text.
#[test]
fn missing_special_token_is_added() {
    let dir = with_config(serde_json::json!({"eos_token": "<|brand_new|>"}), false);
    let tok = load(dir.path());
    assert_eq!(tok.vocab_size(), 401);
    assert_eq!(tok.special.eos_token_ids, vec![400]);
    assert_eq!(tok.encode("<|brand_new|>", false).unwrap(), vec![400]);
    assert_eq!(tok.decode(&[400], true).unwrap(), "");
}

#[test]
fn no_tokenizer_json_is_none() {
    let dir = tempfile::tempdir().unwrap();
    assert!(hf::from_dir(dir.path()).unwrap().is_none());
}

#[test]
fn broken_files_are_typed_errors() {
    let dir = with_config(serde_json::json!({}), false);
    std::fs::write(dir.path().join("tokenizer_config.json"), "{ not json").unwrap();
    let err = hf::from_dir(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("tokenizer_config.json"), "{err}");

    let dir = with_config(serde_json::json!({"bos_token": 7}), false);
    let err = hf::from_dir(dir.path()).unwrap_err();
    assert!(
        matches!(err, Error::Config { ref field, .. } if field == "bos_token"),
        "{err}"
    );

    let dir = with_config(serde_json::json!({"chat_template": 3}), false);
    let err = hf::from_dir(dir.path()).unwrap_err();
    assert!(
        matches!(err, Error::Config { ref field, .. } if field == "chat_template"),
        "{err}"
    );

    let dir = with_config(serde_json::json!({}), false);
    std::fs::write(dir.path().join("tokenizer.json"), "{\"model\": 1}").unwrap();
    let err = hf::from_dir(dir.path()).unwrap_err();
    assert!(
        matches!(err, Error::TokenizerFile { ref path, .. } if path.ends_with("tokenizer.json")),
        "{err}"
    );
}

/// Inputs on which `tokenizers` 0.22 panics are refused first, with typed errors: a broken JSON
/// stream (a truncated file, a number out of range) and merges a `continuing_subword_prefix`
/// cannot slice.
#[test]
fn tokenizer_json_that_would_panic_tokenizers_is_refused() {
    let text = std::fs::read_to_string(fixture_dir().join("tokenizer.json")).unwrap();
    let original: serde_json::Value = serde_json::from_str(&text).unwrap();
    let dir = with_config(serde_json::json!({}), false);
    let path = dir.path().join("tokenizer.json");

    let decoder_at = text.find("\"decoder\"").unwrap();
    for broken in [
        text[..decoder_at + 40].to_string(),
        text.replacen("\"decoder\": {", "\"decoder\": 1e400, \"x\": {", 1),
    ] {
        std::fs::write(&path, broken).unwrap();
        let err = hf::from_dir(dir.path()).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
        assert!(
            err.to_string()
                .contains("tokenizer.json: corrupt: not valid JSON"),
            "{err}"
        );
    }

    // A one-byte prefix splits the first right token that begins with a multi-byte
    // character (`Ġ`, two bytes in UTF-8).
    let mut v = original.clone();
    v["model"]["continuing_subword_prefix"] = serde_json::json!("x");
    std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
    let err = hf::from_dir(dir.path()).unwrap_err();
    assert!(matches!(err, Error::TokenizerFile { .. }), "{err:?}");
    let rights = v["model"]["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| match m {
            serde_json::Value::Array(p) => p[1].as_str().unwrap().to_string(),
            m => m.as_str().unwrap().split(' ').nth(1).unwrap().to_string(),
        });
    let (i, right) = rights
        .enumerate()
        .find(|(_, r)| r.chars().next().is_some_and(|c| c.len_utf8() > 1))
        .unwrap();
    assert!(
        err.to_string().ends_with(&format!(
            "tokenizer: merge #{i}: its right token `{right}` does not begin with the continuing_subword_prefix `x`"
        )),
        "{err}"
    );

    // A template post-processor its encoder would index out of: a special token missing from
    // `special_tokens` (also inside a Sequence processor), sequence B in the single template.
    let pp = original["post_processor"].clone();
    let mut no_specials = pp.clone();
    no_specials["special_tokens"] = serde_json::json!({});
    let mut single_b = pp.clone();
    single_b["single"][1]["Sequence"]["id"] = serde_json::json!("B");
    let first_special = pp["single"][0]["SpecialToken"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    for (post_processor, message) in [
        (
            no_specials.clone(),
            format!("the single template names special token `{first_special}`, which special_tokens lacks"),
        ),
        (
            serde_json::json!({"type": "Sequence", "processors": [no_specials]}),
            format!("the single template names special token `{first_special}`, which special_tokens lacks"),
        ),
        (single_b, "the single template names sequence B".to_string()),
    ] {
        let mut v = original.clone();
        v["post_processor"] = post_processor;
        std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
        let err = hf::from_dir(dir.path()).unwrap_err();
        assert!(matches!(err, Error::TokenizerFile { .. }), "{err:?}");
        assert!(
            err.to_string().ends_with(&format!("tokenizer: post_processor: {message}")),
            "{err}"
        );
    }
}
