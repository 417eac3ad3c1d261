//! `wavefront serve` with tools, on a model whose chat template takes them: the tiny Qwen2 of
//! `fixtures/models/qwen2_bias` with the `bpe_tiny` tokenizer and
//! `fixtures/chat_templates/chatml_tools.jinja`. Each conversation of
//! `fixtures/chat_templates/goldens.json` (tools, OpenAI tool calls and tool turns) sent as a
//! request prefills exactly the tokens of transformers' rendering of it, whatever the
//! `tool_choice`, and the reply goes through the tool-call reader (the template's `<call>`
//! format) on the real CPU backend. Refusals on a model whose template does not take tools are in
//! `serve_errors.rs`; replies that are calls (scripted) in `serve_tool_calls.rs`.

mod common;

use std::path::{Path, PathBuf};

use common::http::*;
use serde_json::{json, Value};

/// Each slot's context: the longest rendered conversation (2213 tokens of this small
/// vocabulary) fits.
const CONTEXT: usize = 4096;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

/// The model directory: the tiny Qwen2's weights and config (its position limit raised to
/// [`CONTEXT`]: RoPE has no table, and the assertions are on the prompt, not the logits), the
/// `bpe_tiny` tokenizer (405 tokens, below the model's 512) and the tools template.
fn model_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let copy = |from: &Path, name: &str| std::fs::copy(from.join(name), dir.path().join(name));
    let model = fixtures().join("models/qwen2_bias");
    copy(&model, "model.safetensors").unwrap();
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("config.json")).unwrap()).unwrap();
    config["max_position_embeddings"] = json!(CONTEXT);
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let tok = fixtures().join("tokenizers/bpe_tiny");
    copy(&tok, "tokenizer.json").unwrap();
    copy(&tok, "tokenizer_config.json").unwrap();
    std::fs::copy(
        fixtures().join("chat_templates/chatml_tools.jinja"),
        dir.path().join("chat_template.jinja"),
    )
    .unwrap();
    dir
}

fn goldens() -> Value {
    let path = fixtures().join("chat_templates/goldens.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn tools_and_tool_turns_prefill_transformers_rendering() {
    let dir = model_dir();
    let s = Server::start_model(dir.path().to_str().unwrap(), CONTEXT, &["--slots", "1"]);
    let chat = s.url("/v1/chat/completions");
    let g = goldens();
    let conversations = g["conversations"].as_array().unwrap();
    assert_eq!(conversations.len(), 6);
    for conv in conversations {
        let name = conv["name"].as_str().unwrap();
        let golden = g["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| {
                c["template"] == "chatml_tools.jinja"
                    && c["conversation"] == name
                    && c["add_generation_prompt"] == true
            })
            .unwrap();
        let golden_tokens = golden["ids"].as_array().unwrap().len();
        let mut body = json!({"messages": conv["messages"], "max_tokens": 1, "temperature": 0});
        if !conv["tools"].is_null() {
            body["tools"] = conv["tools"].clone();
        }
        // Every choice renders the same prompt.
        for choice in [None, Some("auto"), Some("none"), Some("required")] {
            if let Some(c) = choice {
                body["tool_choice"] = json!(c);
            }
            let r = post(&chat, &body);
            let has_tools = conv["tools"].as_array().is_some_and(|t| !t.is_empty());
            if choice == Some("required") && !has_tools {
                assert_eq!(r.status, 400, "{name}: {}", r.text);
                assert_eq!(r.json()["error"]["param"], "tool_choice", "{name}");
                continue;
            }
            assert_eq!(r.status, 200, "{name} {choice:?}: {}", r.text);
            let v = r.json();
            assert_eq!(
                v["usage"]["prompt_tokens"].as_u64().unwrap() as usize,
                golden_tokens,
                "{name} {choice:?}"
            );
            // The tiny model's one greedy token is no call: the reply is text.
            let message = &v["choices"][0]["message"];
            assert!(message["content"].is_string(), "{v}");
            assert!(message.get("tool_calls").is_none(), "{v}");
            let finish = &v["choices"][0]["finish_reason"];
            assert!(finish == "length" || finish == "stop", "{v}");
        }
    }
    // A named function must be one of the tools.
    let conv = &conversations[1];
    let choice = json!({"type": "function", "function": {"name": "no_such_tool"}});
    let r = post(
        &chat,
        &json!({"messages": conv["messages"], "tools": conv["tools"], "tool_choice": choice}),
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json()["error"]["param"], "tool_choice.function.name");
}

/// `--chat-template FILE` replaces the model's template: the default model's never reads
/// `tools` (a 400), the fixture's ChatML tools template does; a file that is missing or does
/// not parse stops the server before the model loads.
#[test]
fn a_chat_template_flag_gives_the_default_model_tools() {
    let template = fixtures().join("chat_templates/chatml_tools.jinja");
    let body = json!({
        "messages": user("What is the weather in Paris?"),
        "tools": [{"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "max_tokens": 1, "temperature": 0,
    });
    let plain = Server::start(&["--slots", "1"]);
    let r = post(&plain.url("/v1/chat/completions"), &body);
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json()["error"]["param"], "tools");
    drop(plain);
    let s = Server::start(&[
        "--slots",
        "1",
        "--chat-template",
        template.to_str().unwrap(),
    ]);
    let r = post(&s.url("/v1/chat/completions"), &body);
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json()["choices"][0]["message"]["content"].is_string());

    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.jinja");
    std::fs::write(&broken, "{% for m in messages %}").unwrap();
    let missing = dir.path().join("missing.jinja");
    for path in [&broken, &missing] {
        let out = common::cli::wavefront(&[
            "serve",
            "--port",
            "0",
            "--chat-template",
            path.to_str().unwrap(),
        ]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--chat-template"), "{err}");
        assert!(!err.contains("listening"), "{err}");
    }
}
