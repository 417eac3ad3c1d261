//! Chat templates with tools against transformers: `fixtures/gen/chat_tools.py` renders the
//! templates of `fixtures/chat_templates/` over its conversations (tools, calls, `tool` turns,
//! non-ASCII text, `< > & '`, nested schemas) with `apply_chat_template` on the `bpe_tiny`
//! tokenizer and writes `goldens.json`; Wavefront renders the same and must match to the byte.

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;
use wavefront::tokenizer::{chat, hf, ChatInput, ChatMessage, Tokenizer};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

#[derive(Deserialize)]
struct Goldens {
    conversations: Vec<Conversation>,
    cases: Vec<Case>,
    strftime: Vec<StrftimeCase>,
}

#[derive(Deserialize)]
struct Conversation {
    name: String,
    tools: Option<Vec<Value>>,
    messages: Vec<ChatMessage>,
}

#[derive(Deserialize)]
struct Case {
    template: String,
    conversation: String,
    add_generation_prompt: bool,
    text: String,
    ids: Vec<u32>,
}

#[derive(Deserialize)]
struct StrftimeCase {
    unix: i64,
    format: String,
    text: String,
}

fn goldens() -> Goldens {
    let path = fixtures().join("chat_templates/goldens.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The `bpe_tiny` tokenizer (its BOS and EOS are what the templates see) with `template`.
fn tokenizer_with(template: &str) -> Tokenizer {
    let mut tok = hf::from_dir(&fixtures().join("tokenizers/bpe_tiny"))
        .unwrap()
        .expect("tokenizer.json is there");
    tok.chat_template = Some(template.to_string());
    tok
}

#[test]
fn tool_templates_render_as_transformers_renders_them() {
    let g = goldens();
    assert_eq!(g.cases.len(), 48, "4 templates × 6 conversations × 2");
    for case in &g.cases {
        let conv = g
            .conversations
            .iter()
            .find(|c| c.name == case.conversation)
            .unwrap();
        let template =
            std::fs::read_to_string(fixtures().join("chat_templates").join(&case.template))
                .unwrap();
        let tok = tokenizer_with(&template);
        let input = ChatInput {
            messages: &conv.messages,
            tools: conv.tools.as_deref(),
            add_generation_prompt: case.add_generation_prompt,
        };
        let what = format!(
            "{} over {} (generation prompt: {})",
            case.template, case.conversation, case.add_generation_prompt
        );
        let text = tok
            .apply_chat_input(&input)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(text, case.text, "{what}");
        if case.add_generation_prompt {
            assert_eq!(tok.encode_chat_input(&input).unwrap(), case.ids, "{what}");
        }
    }
}

#[test]
fn the_goldens_hold_what_the_tests_need() {
    let g = goldens();
    let conv = |name: &str| g.conversations.iter().find(|c| c.name == name).unwrap();
    // An assistant turn of calls only (content null) and a tool turn, as OpenAI sends them.
    let m = &conv("openai_round_trip").messages;
    assert_eq!(m[2].content, None);
    assert!(m[2].tool_calls.is_some());
    assert_eq!(m[3].tool_call_id.as_deref(), Some("call_1"));
    // No tools (Python's None) and an empty list are different inputs.
    assert!(conv("no_tools").tools.is_none());
    assert_eq!(conv("empty_tools").tools.as_deref(), Some(&[][..]));
}

#[test]
fn strftime_matches_python() {
    let g = goldens();
    assert_eq!(g.strftime.len(), 25);
    for c in &g.strftime {
        assert_eq!(
            chat::strftime(&c.format, c.unix).unwrap(),
            c.text,
            "{:?} at {}",
            c.format,
            c.unix
        );
    }
}

#[test]
fn a_template_takes_tools_when_it_reads_them() {
    for name in [
        "chatml_tools.jinja",
        "compact_tools.jinja",
        "last_user_tools.jinja",
        "probe.jinja",
    ] {
        let t = std::fs::read_to_string(fixtures().join("chat_templates").join(name)).unwrap();
        assert!(chat::takes_tools(&t).unwrap(), "{name}");
    }
    let plain = std::fs::read_to_string(fixtures().join("tokenizers/bpe_tiny/chat_template.jinja"))
        .unwrap();
    assert!(!chat::takes_tools(&plain).unwrap());
    // Set by the template itself, or only in a string: not read from the caller.
    assert!(!chat::takes_tools("{% set tools = [] %}{{ tools }}").unwrap());
    assert!(!chat::takes_tools("{{ 'tools' }}{# tools #}").unwrap());
    // Read inside a macro or a loop.
    assert!(chat::takes_tools("{% macro m() %}{{ tools }}{% endmacro %}{{ m() }}").unwrap());
    assert!(chat::takes_tools("{% for t in tools %}{{ t }}{% endfor %}").unwrap());
    assert!(chat::takes_tools("{% for %}").is_err());
}
