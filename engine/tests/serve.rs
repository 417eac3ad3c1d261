//! `wavefront serve` over real HTTP on loopback (CPU backend, the default model, an ephemeral
//! port): OpenAI's response and chunk shapes, streamed = non-streamed, the served tokens = the
//! library generator's and `wavefront run`'s, concurrent clients = each alone, disconnects,
//! the full queue, timeouts, every kind of bad input, the API key, the public-bind refusal
//! and a graceful SIGTERM.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wavefront::backend::cpu::CpuBackend;
use wavefront::tokenizer::ChatMessage;
use wavefront::{Engine, EngineOptions, GenerationRequest, Generator, LoadedModel, SamplingParams};

/// Each slot's KV capacity in these tests.
const CONTEXT: usize = 256;

/// A counting prompt: greedy decoding goes on counting, never ending early.
const COUNTING: &str = "1, 2, 3, 4, 5,";

/// A server process; killed when dropped.
struct Server {
    child: Child,
    base: String,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    /// `wavefront serve` on the CPU, an ephemeral port and [`CONTEXT`], plus `extra` flags.
    fn start(extra: &[&str]) -> Server {
        Self::start_with_context(CONTEXT, extra)
    }

    fn start_with_context(context: usize, extra: &[&str]) -> Server {
        let model = common::cli::default_model();
        let context = context.to_string();
        let mut child = Command::new(env!("CARGO_BIN_EXE_wavefront"))
            .args([
                "serve",
                "--model",
                &model,
                "--backend",
                "cpu",
                "--port",
                "0",
            ])
            .args(["--context", &context])
            .args(extra)
            .env("WAVEFRONT_GPU", "off")
            .env_remove("WAVEFRONT_API_KEY")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the wavefront binary runs");
        let mut reader = BufReader::new(child.stderr.take().unwrap());
        let mut seen = String::new();
        let base = loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap() == 0 {
                let _ = child.wait();
                panic!("the server exited before listening:\n{seen}");
            }
            seen.push_str(&line);
            if let Some(i) = line.find("listening on http://") {
                let addr = line[i + "listening on ".len()..]
                    .trim()
                    .trim_end_matches(']');
                break addr.to_string();
            }
        };
        let stderr = Arc::new(Mutex::new(seen));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = reader.read_to_string(&mut rest);
            sink.lock().unwrap().push_str(&rest);
        });
        Server {
            child,
            base,
            stderr,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// One value of /metrics.
    fn metric(&self, name: &str) -> f64 {
        metric_in(&get(&self.url("/metrics"), None).text, name)
    }

    /// Waits (up to 30 s) until `name` reads `value`.
    fn wait_metric(&self, name: &str, value: f64) {
        let start = Instant::now();
        while self.metric(name) != value {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{name} never reached {value}: {}",
                self.metric(name)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The value of the line `name value` of a Prometheus text.
fn metric_in(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_read(Duration::from_secs(300))
        .build()
}

struct Reply {
    status: u16,
    text: String,
    retry_after: Option<String>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
}

fn reply(r: Result<ureq::Response, ureq::Error>) -> Reply {
    let r = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport error: {e}"),
    };
    Reply {
        status: r.status(),
        retry_after: r.header("retry-after").map(str::to_string),
        text: r.into_string().unwrap(),
    }
}

fn get(url: &str, key: Option<&str>) -> Reply {
    let mut req = agent().get(url);
    if let Some(k) = key {
        req = req.set("Authorization", &format!("Bearer {k}"));
    }
    reply(req.call())
}

fn post_raw(url: &str, body: &str, key: Option<&str>) -> Reply {
    let mut req = agent().post(url).set("Content-Type", "application/json");
    if let Some(k) = key {
        req = req.set("Authorization", &format!("Bearer {k}"));
    }
    reply(req.send_string(body))
}

fn post(url: &str, body: &Value) -> Reply {
    post_raw(url, &body.to_string(), None)
}

/// The `data:` payloads of a stream, read as they come.
struct Sse {
    lines: std::io::Lines<BufReader<Box<dyn Read + Send + Sync>>>,
}

impl Sse {
    fn open(url: &str, body: &Value) -> Sse {
        let r = agent()
            .post(url)
            .send_string(&body.to_string())
            .expect("the stream opens");
        assert_eq!(r.status(), 200);
        assert_eq!(r.content_type(), "text/event-stream");
        Sse {
            lines: BufReader::new(r.into_reader()).lines(),
        }
    }
}

impl Iterator for Sse {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        loop {
            let line = self.lines.next()?.ok()?;
            if let Some(d) = line.strip_prefix("data: ") {
                return Some(d.to_string());
            }
        }
    }
}

/// A streamed chat's deltas joined, its finish reason, its usage (with include_usage) and
/// whether it ended with `[DONE]`; checks each chunk's shape on the way.
struct Streamed {
    text: String,
    finish: Value,
    usage: Value,
    done: bool,
    chunks: usize,
}

fn stream_chat(url: &str, body: &Value) -> Streamed {
    let mut s = Streamed {
        text: String::new(),
        finish: Value::Null,
        usage: Value::Null,
        done: false,
        chunks: 0,
    };
    let mut id = None;
    for (i, d) in Sse::open(url, body).enumerate() {
        assert!(!s.done, "data after [DONE]: {d}");
        if d == "[DONE]" {
            s.done = true;
            continue;
        }
        let c: Value = serde_json::from_str(&d).unwrap();
        assert_eq!(c["object"], "chat.completion.chunk", "{c}");
        assert!(c["created"].is_u64(), "{c}");
        assert_eq!(
            *id.get_or_insert(c["id"].clone()),
            c["id"],
            "one id per stream"
        );
        s.chunks += 1;
        let choices = c["choices"].as_array().unwrap();
        if choices.is_empty() {
            s.usage = c["usage"].clone();
            continue;
        }
        let delta = &choices[0]["delta"];
        assert_eq!(
            delta.get("role").is_some(),
            i == 0,
            "the role comes in the first chunk only: {c}"
        );
        if let Some(t) = delta.get("content").and_then(Value::as_str) {
            s.text.push_str(t);
        }
        if !choices[0]["finish_reason"].is_null() {
            s.finish = choices[0]["finish_reason"].clone();
        }
    }
    s
}

fn model() -> &'static LoadedModel {
    static M: OnceLock<LoadedModel> = OnceLock::new();
    M.get_or_init(|| wavefront::load(&wavefront::fetch::default_model().unwrap()).unwrap())
}

fn tokenizer() -> &'static wavefront::Tokenizer {
    model().tokenizer.as_ref().unwrap()
}

/// The library's answer to a request: its text and token count.
fn library(request: GenerationRequest) -> (String, usize) {
    let engine = Engine::new(CpuBackend::default(), model(), EngineOptions::default()).unwrap();
    let mut g = Generator::new(&engine, Some(tokenizer()), request).unwrap();
    while g.step().unwrap().is_some() {}
    (g.text().to_string(), g.generated().len())
}

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

#[test]
fn a_chat_completes_in_openais_shape_with_its_usage() {
    let s = Server::start(&[]);
    let models = get(&s.url("/v1/models"), None).json();
    let id = models["data"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(id, "SmolLM2-135M-Instruct.Q4_1");
    assert_eq!(models["object"], "list");
    assert_eq!(get(&s.url("/health"), None).json()["status"], "ok");

    let question = "What is the capital of France?";
    let r = post(
        &s.url("/v1/chat/completions"),
        &json!({"model": id, "messages": user(question), "max_tokens": 12, "temperature": 0}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"), "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], id.as_str());
    assert!(v["created"].as_u64().unwrap() > 1_700_000_000);
    let choice = &v["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    let content = choice["message"]["content"].as_str().unwrap();
    assert!(content.contains("Paris"), "{content}");
    let finish = choice["finish_reason"].as_str().unwrap();
    let u = &v["usage"];
    let prompt = tokenizer()
        .encode_chat(&[ChatMessage::user(question)])
        .unwrap();
    assert_eq!(u["prompt_tokens"], prompt.len());
    let completion = u["completion_tokens"].as_u64().unwrap();
    assert!((1..=12).contains(&completion), "{u}");
    assert_eq!(finish == "length", completion == 12, "{v}");
    assert_eq!(u["total_tokens"], prompt.len() as u64 + completion);

    // Content as text parts: the parts joined with newlines.
    let parts = json!([{"role": "user", "content": [
        {"type": "text", "text": "What is"}, {"type": "text", "text": "the capital of France?"}
    ]}]);
    let joined = user("What is\nthe capital of France?");
    let answer = |messages: &Value| {
        let r = post(
            &s.url("/v1/chat/completions"),
            &json!({"messages": messages, "max_tokens": 8, "temperature": 0}),
        );
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()
    };
    let (a, b) = (answer(&parts), answer(&joined));
    assert_eq!(a["choices"], b["choices"]);
    assert_eq!(a["usage"], b["usage"]);

    // A text completion, held back at a stop string.
    let r = post(
        &s.url("/v1/completions"),
        &json!({"prompt": COUNTING, "max_tokens": 16, "temperature": 0, "stop": [" 8,", " 7,"]}),
    );
    let v = r.json();
    assert_eq!(v["object"], "text_completion", "{v}");
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-"), "{v}");
    assert_eq!(v["choices"][0]["text"], " 6,", "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        v["usage"]["prompt_tokens"],
        tokenizer().encode(COUNTING, true).unwrap().len()
    );
}

#[test]
fn a_streamed_chat_equals_the_whole_one_and_ends_with_done() {
    let s = Server::start(&[]);
    let url = s.url("/v1/chat/completions");
    let body = json!({
        "messages": user("Write a short poem about the sea."),
        "max_tokens": 24, "temperature": 0.9, "top_k": 40, "top_p": 0.95, "min_p": 0.05,
        "seed": 42,
    });
    let whole = post(&url, &body).json();
    let mut streamed_body = body.clone();
    streamed_body["stream"] = json!(true);
    streamed_body["stream_options"] = json!({"include_usage": true});
    let streamed = stream_chat(&url, &streamed_body);
    assert!(streamed.done, "no [DONE]");
    let text = whole["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(!text.is_empty());
    assert_eq!(streamed.text, text);
    assert_eq!(streamed.finish, whole["choices"][0]["finish_reason"]);
    assert_eq!(streamed.usage, whole["usage"]);
    // Without include_usage: no usage chunk (the role, the pieces, the finish).
    streamed_body
        .as_object_mut()
        .unwrap()
        .remove("stream_options");
    let plain = stream_chat(&url, &streamed_body);
    assert_eq!(plain.text, text);
    assert!(plain.usage.is_null() && plain.done);
    assert_eq!(plain.chunks + 1, streamed.chunks);
    // Another seed, another text: the seed is used.
    let mut other = body.clone();
    other["seed"] = json!(43);
    let other = post(&url, &other).json();
    assert_ne!(other["choices"][0]["message"]["content"], text);

    // Streamed text completions too.
    let url = s.url("/v1/completions");
    let body = json!({"prompt": COUNTING, "max_tokens": 10, "temperature": 0});
    let whole = post(&url, &body).json();
    let mut text = String::new();
    let mut finish = Value::Null;
    let mut done = false;
    for d in Sse::open(
        &url,
        &json!({"prompt": COUNTING, "max_tokens": 10, "temperature": 0, "stream": true}),
    ) {
        if d == "[DONE]" {
            done = true;
            continue;
        }
        let c: Value = serde_json::from_str(&d).unwrap();
        assert_eq!(c["object"], "text_completion");
        text.push_str(c["choices"][0]["text"].as_str().unwrap());
        if !c["choices"][0]["finish_reason"].is_null() {
            finish = c["choices"][0]["finish_reason"].clone();
        }
    }
    assert!(done);
    assert_eq!(text, whole["choices"][0]["text"].as_str().unwrap());
    assert_eq!(finish, "length");
}

#[test]
fn served_tokens_equal_the_library_generator_and_wavefront_run() {
    let s = Server::start(&["--slots", "2"]);
    // A sampled chat with a system message.
    let (system, question) = ("You are a terse assistant.", "Name three fruits.");
    let sampling = SamplingParams {
        temperature: 0.9,
        top_k: 40,
        top_p: 0.95,
        min_p: 0.05,
        repeat_penalty: 1.1,
    };
    let body = json!({
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}],
        "max_tokens": 20, "temperature": 0.9, "top_k": 40, "top_p": 0.95, "min_p": 0.05,
        "repeat_penalty": 1.1, "seed": 1234,
    });
    let served = post(&s.url("/v1/chat/completions"), &body).json();
    let content = served["choices"][0]["message"]["content"].as_str().unwrap();
    let prompt = tokenizer()
        .encode_chat(&[
            ChatMessage::new("system", system),
            ChatMessage::user(question),
        ])
        .unwrap();
    let (text, n) = library(GenerationRequest {
        max_tokens: 20,
        sampling,
        seed: 1234,
        context: Some(CONTEXT),
        ..GenerationRequest::new(prompt)
    });
    assert_eq!(content, text);
    assert_eq!(served["usage"]["completion_tokens"], n);

    // The same request through `wavefront run --chat`.
    let out = common::cli::wavefront(&[
        "run",
        question,
        "--chat",
        "--system",
        system,
        "--model",
        &common::cli::default_model(),
        "--backend",
        "cpu",
        "--context",
        &CONTEXT.to_string(),
        "--max-tokens",
        "20",
        "--temperature",
        "0.9",
        "--top-k",
        "40",
        "--top-p",
        "0.95",
        "--min-p",
        "0.05",
        "--repeat-penalty",
        "1.1",
        "--seed",
        "1234",
        "--format",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(run["text"], content);
    assert_eq!(
        run["generated_tokens"].as_array().unwrap().len() as u64,
        served["usage"]["completion_tokens"].as_u64().unwrap()
    );

    // A greedy text completion with a stop string and a token-id prompt.
    let ids = tokenizer().encode(COUNTING, true).unwrap();
    let served = post(
        &s.url("/v1/completions"),
        &json!({"prompt": ids, "max_tokens": 12, "temperature": 0, "stop": " 9,"}),
    )
    .json();
    let (text, n) = library(GenerationRequest {
        max_tokens: 12,
        stop: vec![" 9,".into()],
        context: Some(CONTEXT),
        ..GenerationRequest::new(ids)
    });
    assert_eq!(served["choices"][0]["text"], text.as_str());
    assert_eq!(served["usage"]["completion_tokens"], n);
}

#[test]
fn concurrent_greedy_clients_each_get_what_they_get_alone() {
    let s = Server::start(&["--slots", "4"]);
    let url = s.url("/v1/chat/completions");
    let prompts = [
        "What is the capital of France?",
        "Write a haiku about rain.",
        "List three colours.",
        "How many legs does a spider have?",
    ];
    let body = |p: &str| json!({"messages": user(p), "max_tokens": 24, "temperature": 0});
    let alone: Vec<String> = prompts
        .iter()
        .map(|p| {
            post(&url, &body(p)).json()["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(s.metric("wavefront_slots_active_peak"), 1.0);
    let barrier = Arc::new(Barrier::new(prompts.len()));
    let together: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = prompts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let (url, barrier, b) = (&url, barrier.clone(), body(p));
                scope.spawn(move || {
                    barrier.wait();
                    // Half stream, half do not.
                    if i % 2 == 0 {
                        stream_chat(url, &json!({"stream": true, "messages": b["messages"], "max_tokens": 24, "temperature": 0})).text
                    } else {
                        post(url, &b).json()["choices"][0]["message"]["content"]
                            .as_str()
                            .unwrap()
                            .to_string()
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(together, alone);
    // They did run together.
    assert!(s.metric("wavefront_slots_active_peak") >= 2.0);
}

#[test]
fn a_disconnect_mid_stream_frees_the_slot_and_a_full_queue_answers_429() {
    let s = Server::start(&["--slots", "1", "--queue", "1"]);
    let url = s.url("/v1/completions");
    let long = json!({"prompt": COUNTING, "max_tokens": 200, "temperature": 0, "stream": true});
    let mut first = Sse::open(&url, &long);
    // Two pieces of text: the generation is in the one slot.
    first.next().unwrap();
    first.next().unwrap();
    assert_eq!(s.metric("wavefront_slots_active"), 1.0);

    // A second request waits in the queue; a third finds it full.
    let waiting = {
        let url = url.clone();
        std::thread::spawn(move || {
            post(
                &url,
                &json!({"prompt": "The sky is", "max_tokens": 3, "temperature": 0}),
            )
        })
    };
    s.wait_metric("wavefront_queue_depth", 1.0);
    let full = post(&url, &json!({"prompt": "Hello", "max_tokens": 3}));
    assert_eq!(full.status, 429, "{}", full.text);
    assert_eq!(full.retry_after.as_deref(), Some("1"));
    let e = full.json();
    assert_eq!(e["error"]["type"], "rate_limit_error");
    assert_eq!(e["error"]["code"], "queue_full");

    // The first client goes away: its slot goes to the waiting request.
    drop(first);
    let r = waiting.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["usage"]["completion_tokens"], 3);
    assert_eq!(s.metric("wavefront_requests_cancelled_total"), 1.0);
    // The cancelled generation stopped within a few tokens of the disconnect.
    let generated = s.metric("wavefront_generated_tokens_total");
    assert!(generated < 150.0, "{generated} tokens generated");
    assert_eq!(s.metric("wavefront_queue_depth"), 0.0);
    assert_eq!(
        s.metric("wavefront_requests_total{endpoint=\"/v1/completions\",status=\"429\"}"),
        1.0
    );
}

#[test]
fn a_request_past_the_timeout_is_cancelled() {
    // 1000 tokens take several seconds on any CPU.
    let s = Server::start_with_context(1024, &["--slots", "1", "--timeout", "1"]);
    let url = s.url("/v1/completions");
    let body = json!({"prompt": COUNTING, "max_tokens": 1000, "temperature": 0});
    let r = post(&url, &body);
    assert_eq!(r.status, 504, "{}", r.text);
    assert_eq!(r.json()["error"]["code"], "timeout");
    // In a stream: an error event, and no [DONE].
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let events: Vec<String> = Sse::open(&url, &streamed).collect();
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "timeout", "{last}");
    assert!(!events.iter().any(|e| e == "[DONE]"));
    assert_eq!(s.metric("wavefront_requests_timed_out_total"), 2.0);
    // A short one still completes.
    let ok = post(
        &url,
        &json!({"prompt": "Hi", "max_tokens": 2, "temperature": 0}),
    );
    assert_eq!(ok.status, 200, "{}", ok.text);
}

#[test]
fn bad_requests_get_an_error_naming_the_field_while_a_good_one_completes() {
    let s = Server::start(&["--slots", "2"]);
    let chat = s.url("/v1/chat/completions");
    let completions = s.url("/v1/completions");
    let good = {
        let chat = chat.clone();
        std::thread::spawn(move || {
            stream_chat(
                &chat,
                &json!({"messages": user("Tell me a story."), "max_tokens": 32, "temperature": 0, "stream": true}),
            )
        })
    };
    let msgs = user("Hi");
    let long_prompt = "word ".repeat(400);
    let with = |extra: Value| {
        let mut b = json!({"messages": msgs});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b.to_string()
    };
    // (url, body, status, param)
    let cases: Vec<(&str, String, u16, Option<&str>)> = vec![
        (&chat, "{\"messages\": [".into(), 400, None),
        (&chat, "[1, 2]".into(), 400, None),
        (&chat, "".into(), 400, None),
        (
            &chat,
            with(json!({"temperature": "hot"})),
            400,
            Some("temperature"),
        ),
        (
            &chat,
            with(json!({"temperature": -0.5})),
            400,
            Some("temperature"),
        ),
        (
            &chat,
            with(json!({"temperature": 1e39})),
            400,
            Some("temperature"),
        ),
        (&chat, with(json!({"top_p": 0})), 400, Some("top_p")),
        (&chat, with(json!({"top_p": 1.5})), 400, Some("top_p")),
        (&chat, with(json!({"min_p": -1})), 400, Some("min_p")),
        (
            &chat,
            with(json!({"repeat_penalty": 0})),
            400,
            Some("repeat_penalty"),
        ),
        (&chat, with(json!({"top_k": -1})), 400, Some("top_k")),
        (&chat, with(json!({"seed": -1})), 400, Some("seed")),
        (
            &chat,
            with(json!({"max_tokens": 0})),
            400,
            Some("max_tokens"),
        ),
        (
            &chat,
            with(json!({"max_tokens": 1.5})),
            400,
            Some("max_tokens"),
        ),
        (
            &chat,
            with(json!({"max_tokens": 250})),
            400,
            Some("max_tokens"),
        ),
        (
            &chat,
            with(json!({"max_completion_tokens": 250})),
            400,
            Some("max_completion_tokens"),
        ),
        (
            &chat,
            with(json!({"presence_penalty": 0.5})),
            400,
            Some("presence_penalty"),
        ),
        (
            &chat,
            with(json!({"frequency_penalty": -1})),
            400,
            Some("frequency_penalty"),
        ),
        (&chat, with(json!({"n": 2})), 400, Some("n")),
        (
            &chat,
            with(json!({"logprobs": true})),
            400,
            Some("logprobs"),
        ),
        (
            &chat,
            with(json!({"top_logprobs": 2})),
            400,
            Some("top_logprobs"),
        ),
        (&chat, with(json!({"stop": ""})), 400, Some("stop")),
        (
            &chat,
            with(json!({"stop": ["a", "b", "c", "d", "e"]})),
            400,
            Some("stop"),
        ),
        (
            &chat,
            with(json!({"stream_options": {"include_usage": true}})),
            400,
            Some("stream_options"),
        ),
        (&chat, with(json!({"stream": "yes"})), 400, Some("stream")),
        (
            &chat,
            with(json!({"frobnicate": 1})),
            400,
            Some("frobnicate"),
        ),
        (&chat, with(json!({"model": "gpt-4"})), 404, Some("model")),
        (
            &chat,
            with(json!({"tools": [{"type": "function"}]})),
            400,
            Some("tools"),
        ),
        (
            &chat,
            with(json!({"tool_choice": "required"})),
            400,
            Some("tool_choice"),
        ),
        (
            &chat,
            with(json!({"response_format": {"type": "json_object"}})),
            400,
            Some("response_format"),
        ),
        (
            &chat,
            with(json!({"logit_bias": {"42": -100}})),
            400,
            Some("logit_bias"),
        ),
        (
            &chat,
            with(json!({"max_tokens": 4, "max_completion_tokens": 5})),
            400,
            Some("max_completion_tokens"),
        ),
        (
            &chat,
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}).to_string(),
            400,
            Some("messages[0].content[0]"),
        ),
        (
            &chat,
            json!({"messages": []}).to_string(),
            400,
            Some("messages"),
        ),
        (
            &chat,
            json!({"max_tokens": 4}).to_string(),
            400,
            Some("messages"),
        ),
        (
            &chat,
            json!({"messages": "hi"}).to_string(),
            400,
            Some("messages"),
        ),
        (
            &chat,
            json!({"messages": [{"role": "robot", "content": "hi"}]}).to_string(),
            400,
            Some("messages[0].role"),
        ),
        (
            &chat,
            json!({"messages": [{"role": "user", "content": 5}]}).to_string(),
            400,
            Some("messages[0].content"),
        ),
        (
            &chat,
            json!({"messages": [{"role": "user"}]}).to_string(),
            400,
            Some("messages[0].content"),
        ),
        (
            &chat,
            json!({"messages": user(&long_prompt)}).to_string(),
            400,
            Some("messages"),
        ),
        (
            &completions,
            json!({"prompt": long_prompt}).to_string(),
            400,
            Some("prompt"),
        ),
        (
            &completions,
            json!({"prompt": [1, 99999999]}).to_string(),
            400,
            Some("prompt"),
        ),
        (
            &completions,
            json!({"prompt": ["a", "b"]}).to_string(),
            400,
            Some("prompt"),
        ),
        (
            &completions,
            json!({"prompt": ""}).to_string(),
            400,
            Some("prompt"),
        ),
        (
            &completions,
            json!({"prompt": "x", "echo": true}).to_string(),
            400,
            Some("echo"),
        ),
        (
            &completions,
            json!({"prompt": "x", "suffix": "y"}).to_string(),
            400,
            Some("suffix"),
        ),
        (
            &completions,
            json!({"prompt": "x", "best_of": 2}).to_string(),
            400,
            Some("best_of"),
        ),
        (
            &completions,
            json!({"prompt": "x", "messages": []}).to_string(),
            400,
            Some("messages"),
        ),
    ];
    for (url, body, status, param) in &cases {
        let r = post_raw(url, body, None);
        let shown = &body[..body.len().min(80)];
        assert_eq!(r.status, *status, "{shown}: {}", r.text);
        let e = r.json();
        let err = &e["error"];
        assert!(
            err["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{e}"
        );
        assert!(err["type"].is_string(), "{e}");
        assert!(err.get("code").is_some(), "{e}");
        assert_eq!(err["param"].as_str(), *param, "{shown}: {e}");
        if let Some(p) = param {
            let field = p.split(['.', '[']).next().unwrap();
            assert!(err["message"].as_str().unwrap().contains(field), "{e}");
        }
    }
    // A body past the limit (1 MiB) is refused from its length, before it is sent.
    let r = oversized(&s.base, 2 << 20);
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
    assert!(r.contains("\"code\":\"body_too_large\""), "{r}");
    // A route that does not exist, a method a route does not take.
    assert_eq!(get(&s.url("/v1/nothing"), None).status, 404);
    assert_eq!(get(&chat, None).status, 405);

    let good = good.join().unwrap();
    assert!(good.done && !good.text.is_empty());
    // Still serving.
    assert_eq!(get(&s.url("/health"), None).status, 200);
    let r = post(&chat, &json!({"messages": msgs, "max_tokens": 2}));
    assert_eq!(r.status, 200, "{}", r.text);
}

/// Sends the head of a POST of `length` bytes with `Expect: 100-continue` and returns what the
/// server answers before any of the body is sent.
fn oversized(base: &str, length: usize) -> String {
    use std::io::Write;
    let addr = base.strip_prefix("http://").unwrap();
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        tcp,
        "POST /v1/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {length}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn an_api_key_is_required_on_every_route_but_health() {
    let s = Server::start(&["--api-key", "s3cret"]);
    let body = json!({"messages": user("Hi"), "max_tokens": 2}).to_string();
    let chat = s.url("/v1/chat/completions");
    for key in [None, Some("wrong"), Some("s3cret2"), Some("")] {
        let r = post_raw(&chat, &body, key);
        assert_eq!(r.status, 401, "{key:?}: {}", r.text);
        assert_eq!(r.json()["error"]["type"], "authentication_error");
        assert_eq!(get(&s.url("/v1/models"), key).status, 401);
        assert_eq!(get(&s.url("/metrics"), key).status, 401);
    }
    assert_eq!(get(&s.url("/health"), None).status, 200);
    let r = post_raw(&chat, &body, Some("s3cret"));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(get(&s.url("/v1/models"), Some("s3cret")).status, 200);
    // The refused requests never reached the engine: its prompt tokens are the one request's.
    let metrics = get(&s.url("/metrics"), Some("s3cret")).text;
    assert_eq!(
        metric_in(
            &metrics,
            "wavefront_requests_total{endpoint=\"/v1/chat/completions\",status=\"401\"}"
        ),
        4.0
    );
    assert_eq!(
        metric_in(&metrics, "wavefront_prompt_tokens_total"),
        r.json()["usage"]["prompt_tokens"].as_f64().unwrap()
    );
}

#[test]
fn a_public_address_needs_a_key_or_the_insecure_flag() {
    let out = common::cli::wavefront(&["serve", "--host", "0.0.0.0", "--port", "0"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a loopback address")
            && err.contains("--api-key")
            && err.contains("--insecure-public"),
        "{err}"
    );
    let out = common::cli::wavefront(&["serve", "--host", "my-host.example", "--port", "0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--host"));
    // With a key it listens there.
    let s = Server::start(&["--host", "0.0.0.0", "--api-key", "k"]);
    assert!(s.base.starts_with("http://0.0.0.0:"), "{}", s.base);
}

#[test]
fn sigterm_finishes_the_stream_in_flight_then_exits() {
    let mut s = Server::start(&["--slots", "1"]);
    let url = s.url("/v1/chat/completions");
    let body = json!({"messages": user("Tell me a long story."), "max_tokens": 40, "temperature": 0, "stream": true});
    let mut events = Sse::open(&url, &body);
    events.next().unwrap(); // the role
    let term = Command::new("kill")
        .args(["-TERM", &s.child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let rest: Vec<String> = events.collect();
    assert_eq!(rest.last().map(String::as_str), Some("[DONE]"), "{rest:?}");
    let start = Instant::now();
    let status = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "still running");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    // Let the stderr reader catch up.
    std::thread::sleep(Duration::from_millis(100));
    assert!(s.stderr.lock().unwrap().contains("[shut down]"));
    assert!(agent().get(&s.url("/health")).call().is_err());
}
