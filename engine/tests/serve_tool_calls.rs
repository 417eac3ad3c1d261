//! Tool calls read out of replies, over HTTP on loopback: `wavefront serve`'s router (request
//! checks, chat templates, the response and chunk assembly) in front of a scripted engine — a
//! thread that answers each queued request with the next scripted reply, cut into the pieces
//! given — so a reply is a tool call on demand, which no small real model gives. The tokenizer is
//! the `bpe_tiny` fixture's with the fixture tool templates: `chatml_tools.jinja` (tagged
//! `<call>` calls), `compact_tools.jinja` (Mistral's `[TOOL_CALLS]` list), `last_user_tools.jinja`
//! (Llama's JSON) and `probe.jinja` (takes tools, shows no call format). The real model's round
//! trip (CPU backend) is in `serve_tools.rs`; the official `openai` client reads these calls in
//! `openai_client.rs`.

mod common;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::http::*;
use serde_json::{json, Value};
use wavefront::generate::FinishReason;
use wavefront::serve::api::Usage;
use wavefront::serve::http::{router, Shared};
use wavefront::serve::metrics::Metrics;
use wavefront::serve::scheduler::{Event, Queue};

/// A reply: its pieces (each one `Event::Piece`) and how it ends.
#[derive(Clone)]
pub struct Script {
    pub pieces: Vec<String>,
    pub finish: FinishReason,
}

impl Script {
    pub fn eos(pieces: &[&str]) -> Script {
        Script {
            pieces: pieces.iter().map(|p| p.to_string()).collect(),
            finish: FinishReason::Eos,
        }
    }

    /// `text` one character a piece.
    pub fn chars(text: &str) -> Script {
        Script {
            pieces: text.chars().map(String::from).collect(),
            finish: FinishReason::Eos,
        }
    }
}

/// The router on an ephemeral loopback port over a scripted engine.
pub struct Scripted {
    pub base: String,
    script: Arc<Mutex<VecDeque<Script>>>,
    /// The prompt tokens of each request served, in order.
    pub prompts: Arc<Mutex<Vec<Vec<u32>>>>,
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

impl Scripted {
    pub fn start(template: &str) -> Scripted {
        let mut tokenizer =
            wavefront::tokenizer::hf::from_dir(&fixtures().join("tokenizers/bpe_tiny"))
                .unwrap()
                .unwrap();
        let source = fixtures().join("chat_templates").join(template);
        tokenizer.chat_template = Some(std::fs::read_to_string(source).unwrap());
        let metrics = Arc::new(Metrics::new(1));
        let (queue, jobs) = Queue::bounded(4);
        let shared = Arc::new(Shared {
            model_id: "scripted".into(),
            started: 0,
            tokenizer: Arc::new(tokenizer),
            vocab_size: 405,
            capacity: 4096,
            queue,
            metrics,
            api_key_digest: None,
            timeout: Duration::from_secs(60),
            body_limit: 1 << 20,
            draining: Arc::new(AtomicBool::new(false)),
            next_id: AtomicU64::new(0),
        });
        let script: Arc<Mutex<VecDeque<Script>>> = Default::default();
        let prompts: Arc<Mutex<Vec<Vec<u32>>>> = Default::default();
        let (s, p) = (script.clone(), prompts.clone());
        std::thread::spawn(move || {
            for job in jobs {
                p.lock().unwrap().push(job.request.prompt.clone());
                let reply = s.lock().unwrap().pop_front().expect("a scripted reply");
                let n = reply.pieces.len();
                for text in reply.pieces {
                    let _ = job.events.send(Event::Piece {
                        text,
                        logprobs: None,
                    });
                }
                let usage = Usage {
                    prompt_tokens: job.request.prompt.len(),
                    completion_tokens: n,
                };
                let _ = job.events.send(Event::Done {
                    finish: reply.finish,
                    usage,
                });
            }
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = router(shared);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        });
        Scripted {
            base,
            script,
            prompts,
        }
    }

    pub fn script(&self, reply: Script) {
        self.script.lock().unwrap().push_back(reply);
    }

    pub fn chat(&self) -> String {
        format!("{}/v1/chat/completions", self.base)
    }
}

fn weather_tool() -> Value {
    json!({"type": "function", "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }})
}

fn add_tool() -> Value {
    json!({"type": "function", "function": {
        "name": "add",
        "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}},
    }})
}

fn request(choice: Option<Value>) -> Value {
    let mut body = json!({
        "messages": user("What is the weather in Paris?"),
        "tools": [weather_tool(), add_tool()],
    });
    if let Some(c) = choice {
        body["tool_choice"] = c;
    }
    body
}

const CALL: &str = r#"<call>{"name": "get_weather", "arguments": {"city": "Paris"}}</call>"#;

/// A streamed chat: the content deltas joined, the tool calls assembled from their deltas as
/// a client does (by index), the finish reason; each chunk's shape checked.
struct StreamedCalls {
    content: String,
    calls: Vec<Value>,
    finish: Value,
    content_chunks: Vec<String>,
}

fn stream_calls(url: &str, body: &Value) -> StreamedCalls {
    let mut body = body.clone();
    body["stream"] = json!(true);
    let mut s = StreamedCalls {
        content: String::new(),
        calls: Vec::new(),
        finish: Value::Null,
        content_chunks: Vec::new(),
    };
    let mut done = false;
    for d in Sse::open(url, &body) {
        if d == "[DONE]" {
            done = true;
            continue;
        }
        let c: Value = serde_json::from_str(&d).unwrap();
        assert_eq!(c["object"], "chat.completion.chunk", "{c}");
        let choice = &c["choices"][0];
        let delta = &choice["delta"];
        if let Some(t) = delta.get("content").and_then(Value::as_str) {
            s.content.push_str(t);
            s.content_chunks.push(t.to_string());
        }
        if let Some(calls) = delta.get("tool_calls") {
            assert!(delta.get("content").is_none(), "{c}");
            let [call] = calls.as_array().unwrap().as_slice() else {
                panic!("one call a chunk: {c}")
            };
            let i = call["index"].as_u64().unwrap() as usize;
            if call.get("id").is_some() {
                // A call opens with its id, type and name, and no arguments yet.
                assert_eq!(i, s.calls.len(), "{c}");
                assert_eq!(call["type"], "function", "{c}");
                assert!(call["function"]["name"].is_string(), "{c}");
                assert_eq!(call["function"]["arguments"], "", "{c}");
                s.calls.push(call.clone());
            } else {
                assert_eq!(
                    i + 1,
                    s.calls.len(),
                    "arguments of the last call opened: {c}"
                );
                let fragment = call["function"]["arguments"].as_str().unwrap();
                let args = &mut s.calls[i]["function"]["arguments"];
                *args = json!(format!("{}{fragment}", args.as_str().unwrap()));
            }
        }
        if !choice["finish_reason"].is_null() {
            s.finish = choice["finish_reason"].clone();
        }
    }
    assert!(done, "the stream ends with [DONE]");
    s
}

/// `message.tool_calls` without the ids, arguments parsed: what a client compares.
fn calls_of(calls: &[Value]) -> Vec<(String, Value)> {
    calls
        .iter()
        .map(|c| {
            let f = &c["function"];
            let args = serde_json::from_str(f["arguments"].as_str().unwrap()).unwrap();
            (f["name"].as_str().unwrap().to_string(), args)
        })
        .collect()
}

#[test]
fn a_tagged_call_comes_back_as_tool_calls_whole_and_streamed() {
    let s = Scripted::start("chatml_tools.jinja");
    let text = format!("I will look it up.\n{CALL}");
    s.script(Script::eos(&[&text]));
    let r = post(&s.chat(), &request(None));
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{v}");
    let message = &choice["message"];
    assert_eq!(message["content"], "I will look it up.", "{v}");
    let calls = message["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "{v}");
    let id = calls[0]["id"].as_str().unwrap();
    assert!(id.starts_with("call_"), "{id}");
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(
        calls_of(calls),
        vec![("get_weather".into(), json!({"city": "Paris"}))]
    );

    // Streamed one character a piece, and in pieces cut inside the tags.
    for reply in [
        Script::chars(&text),
        Script::eos(&[
            "I will look",
            " it up.\n<ca",
            r#"ll>{"name": "get_"#,
            r#"weather", "arguments": {"city": "Paris"}}</c"#,
            "all>",
        ]),
    ] {
        s.script(reply);
        let st = stream_calls(&s.chat(), &request(None));
        assert_eq!(st.finish, "tool_calls");
        assert_eq!(st.content, "I will look it up.");
        for c in &st.content_chunks {
            assert!(
                !c.contains('<') && !c.contains('{'),
                "a half call leaked: {c:?}"
            );
        }
        assert_eq!(calls_of(&st.calls), calls_of(calls));
    }
}

#[test]
fn several_calls_and_each_format_of_the_fixture_templates() {
    let weather = ("get_weather".to_string(), json!({"city": "Paris"}));
    let add = ("add".to_string(), json!({"a": 1, "b": 2}));
    for (template, text) in [
        (
            "chatml_tools.jinja",
            format!(r#"{CALL}<call>{{"name": "add", "arguments": {{"a": 1, "b": 2}}}}</call>"#),
        ),
        (
            "compact_tools.jinja",
            r#"[TOOL_CALLS][{"name":"get_weather","arguments":{"city":"Paris"}},{"name":"add","arguments":{"a":1,"b":2}}]"#.to_string(),
        ),
        (
            "last_user_tools.jinja",
            r#"{"name": "get_weather", "parameters": {"city": "Paris"}}; {"name": "add", "parameters": {"a": 1, "b": 2}}"#.to_string(),
        ),
    ] {
        let s = Scripted::start(template);
        s.script(Script::eos(&[&text]));
        s.script(Script::chars(&text));
        let v = post(&s.chat(), &request(Some(json!("auto")))).json();
        let message = &v["choices"][0]["message"];
        assert!(message["content"].is_null(), "{template}: {v}");
        let calls = message["tool_calls"].as_array().unwrap();
        assert_eq!(calls_of(calls), vec![weather.clone(), add.clone()], "{template}");
        let ids: Vec<&str> = calls.iter().map(|c| c["id"].as_str().unwrap()).collect();
        assert_ne!(ids[0], ids[1], "{template}");
        if template == "compact_tools.jinja" {
            // Mistral's templates take back only ids of 9 alphanumerics.
            assert!(ids.iter().all(|i| i.len() == 9), "{ids:?}");
        }
        let st = stream_calls(&s.chat(), &request(None));
        assert_eq!(st.content, "", "{template}");
        assert_eq!(calls_of(&st.calls), vec![weather.clone(), add.clone()], "{template}");
        assert_eq!(st.finish, "tool_calls", "{template}");
    }
}

#[test]
fn what_is_no_valid_call_stays_text() {
    let s = Scripted::start("chatml_tools.jinja");
    let unknown = r#"<call>{"name": "rm", "arguments": {"path": "/"}}</call>"#;
    let malformed = r#"<call>{"name": "get_weather", "arguments": {"city": "Paris"</call>"#;
    let not_object = r#"<call>{"name": "get_weather", "arguments": "Paris"}</call>"#;
    for text in [unknown, malformed, not_object, "Hello <b>there</b>."] {
        s.script(Script::eos(&[text]));
        s.script(Script::chars(text));
        let v = post(&s.chat(), &request(None)).json();
        let choice = &v["choices"][0];
        assert_eq!(choice["message"]["content"], text, "{v}");
        assert!(choice["message"].get("tool_calls").is_none(), "{v}");
        assert_eq!(choice["finish_reason"], "stop", "{v}");
        let st = stream_calls(&s.chat(), &request(None));
        assert_eq!(st.content, text);
        assert!(st.calls.is_empty());
        assert_eq!(st.finish, "stop");
    }
    // A call cut by max_tokens: `length`, as OpenAI says of a cut reply.
    s.script(Script {
        pieces: vec![CALL.to_string()],
        finish: FinishReason::MaxTokens,
    });
    let v = post(&s.chat(), &request(None)).json();
    assert_eq!(v["choices"][0]["finish_reason"], "length", "{v}");
    assert_eq!(
        v["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
        "get_weather"
    );
}

#[test]
fn tool_choice_none_reads_no_calls_and_a_named_function_only_its_own() {
    let s = Scripted::start("chatml_tools.jinja");
    // "none": the call stays text; the prompt is the one "auto" renders (the tools in it).
    s.script(Script::eos(&[CALL]));
    let v = post(&s.chat(), &request(Some(json!("none")))).json();
    assert_eq!(v["choices"][0]["message"]["content"], CALL, "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
    s.script(Script::eos(&[CALL]));
    let v = post(&s.chat(), &request(Some(json!("required")))).json();
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls", "{v}");
    {
        let prompts = s.prompts.lock().unwrap();
        assert_eq!(
            prompts[0], prompts[1],
            "none and required render one prompt"
        );
    }
    // A named function: a call of another tool is text.
    let named = |n: &str| json!({"type": "function", "function": {"name": n}});
    s.script(Script::eos(&[CALL]));
    let v = post(&s.chat(), &request(Some(named("add")))).json();
    assert_eq!(v["choices"][0]["message"]["content"], CALL, "{v}");
    s.script(Script::eos(&[CALL]));
    let v = post(&s.chat(), &request(Some(named("get_weather")))).json();
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls", "{v}");
    // Refused before anything is queued.
    for (choice, param) in [
        (named("rm"), "tool_choice.function.name"),
        (json!({"type": "function"}), "tool_choice.function.name"),
        (json!("always"), "tool_choice"),
    ] {
        let r = post(&s.chat(), &request(Some(choice.clone())));
        assert_eq!(r.status, 400, "{choice}: {}", r.text);
        assert_eq!(r.json()["error"]["param"], param, "{choice}");
    }
    let r = post(
        &s.chat(),
        &json!({"messages": user("hi"), "tool_choice": "required"}),
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json()["error"]["param"], "tool_choice");
    assert_eq!(
        s.prompts.lock().unwrap().len(),
        4,
        "no refused request was queued"
    );
}

#[test]
fn a_template_with_no_call_format_answers_text_and_refuses_required() {
    let s = Scripted::start("probe.jinja");
    s.script(Script::eos(&[CALL]));
    let v = post(&s.chat(), &request(None)).json();
    assert_eq!(v["choices"][0]["message"]["content"], CALL, "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
    let r = post(&s.chat(), &request(Some(json!("required"))));
    assert_eq!(r.status, 400, "{}", r.text);
    let e = r.json();
    assert_eq!(e["error"]["param"], "tool_choice", "{e}");
    assert_eq!(e["error"]["code"], "unsupported_parameter", "{e}");
}

#[test]
fn malformed_tools_are_refused_naming_the_field() {
    let s = Scripted::start("chatml_tools.jinja");
    for (tool, param) in [
        (
            json!({"type": "function", "function": {"name": ""}}),
            "tools[1].function.name",
        ),
        (
            json!({"type": "function", "function": {"name": "f", "parameters": []}}),
            "tools[1].function.parameters",
        ),
        (json!({"type": "code_interpreter"}), "tools[1].type"),
    ] {
        let body = json!({"messages": user("hi"), "tools": [weather_tool(), tool]});
        let r = post(&s.chat(), &body);
        assert_eq!(r.status, 400, "{}", r.text);
        assert_eq!(r.json()["error"]["param"], param);
        assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    }
}

#[test]
fn the_openai_python_client_reads_the_calls() {
    let Some(py) = common::openai::python() else {
        return;
    };
    let s = Scripted::start("chatml_tools.jinja");
    let text = format!("I will look it up.\n{CALL}");
    s.script(Script::eos(&[&text]));
    s.script(Script::chars(&text));
    s.script(Script::eos(&["It is sunny", " in Paris."]));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/openai_tools.py");
    let out = std::process::Command::new(&py)
        .args([script, &s.base])
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "openai_tools.py failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap();
    eprintln!("{report}");
    assert_eq!(report["name"], "get_weather");
    assert_eq!(report["arguments"], r#"{"city":"Paris"}"#);
    // The third request carried the assistant's call and the tool's answer back.
    let prompts = s.prompts.lock().unwrap();
    assert_eq!(prompts.len(), 3);
    assert!(
        prompts[2].len() > prompts[0].len(),
        "the round trip's prompt holds the turns"
    );
}
