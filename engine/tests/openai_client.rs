//! The official `openai` Python client against `wavefront serve` (CPU backend, the default
//! model, an ephemeral loopback port, an API key): `tests/clients/openai_client.py` completes
//! streamed and non-streamed chats (the same text, finish reason and usage for the same seed),
//! a text completion with a stop string, and gets OpenAI's errors for a bad field and a wrong
//! key; this test then asks the same chat over raw HTTP and compares the client's text with it.
//!
//! The interpreter and when the test skips: `common::openai`. The same client reads tool
//! calls in `serve_tool_calls.rs`.

mod common;

use std::process::Command;

use common::http::*;
use serde_json::{json, Value};

const KEY: &str = "sk-wavefront-test";

#[test]
fn the_openai_python_client_completes_streamed_and_whole_chats() {
    let Some(py) = common::openai::python() else {
        return;
    };
    let s = Server::start(&["--api-key", KEY]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/openai_client.py"
    );
    let out = Command::new(&py)
        .args([script, &s.base, KEY])
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "openai_client.py failed ({}):\n{stdout}\n{}\nserver:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        s.stderr.lock().unwrap()
    );
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap();
    eprintln!("{report}");

    // The same request over raw HTTP: the client's parsed text is the server's JSON.
    let body = json!({
        "model": report["model"],
        "messages": user("Write one sentence about the sea."),
        "max_tokens": 24, "temperature": 0.8, "seed": 42,
    });
    let r = post_raw(&s.url("/v1/chat/completions"), &body.to_string(), Some(KEY));
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["choices"][0]["message"]["content"], report["text"]);
    assert_eq!(v["choices"][0]["finish_reason"], report["finish_reason"]);
    assert_eq!(
        v["usage"]["completion_tokens"],
        report["usage"]["completion_tokens"]
    );
}
