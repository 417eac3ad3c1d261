//! `wavefront serve` as the server tests run it: the binary on the CPU, an ephemeral port and
//! a small context, and a blocking HTTP client (ureq) with the answers' shapes checked.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Each slot's KV capacity in these tests.
pub const CONTEXT: usize = 256;

/// A counting prompt: greedy decoding goes on counting, never ending early.
pub const COUNTING: &str = "1, 2, 3, 4, 5,";

/// A server process; killed when dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub stderr: Arc<Mutex<String>>,
}

impl Server {
    /// `wavefront serve` on the CPU, an ephemeral port and [`CONTEXT`], plus `extra` flags.
    pub fn start(extra: &[&str]) -> Server {
        Self::start_with_context(CONTEXT, extra)
    }

    pub fn start_with_context(context: usize, extra: &[&str]) -> Server {
        Self::start_model(&super::cli::default_model(), context, extra)
    }

    /// `wavefront serve --model model` on the CPU, an ephemeral port and `context`.
    pub fn start_model(model: &str, context: usize, extra: &[&str]) -> Server {
        let context = context.to_string();
        let mut child = Command::new(env!("CARGO_BIN_EXE_wavefront"))
            .args(["serve", "--model", model, "--backend", "cpu", "--port", "0"])
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

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// One value of /metrics.
    pub fn metric(&self, name: &str) -> f64 {
        metric_in(&get(&self.url("/metrics"), None).text, name)
    }

    /// Waits (up to 30 s) until `name` reads `value`.
    pub fn wait_metric(&self, name: &str, value: f64) {
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
pub fn metric_in(text: &str, name: &str) -> f64 {
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

pub fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_read(Duration::from_secs(300))
        .build()
}

pub struct Reply {
    pub status: u16,
    pub text: String,
    pub retry_after: Option<String>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
}

pub fn reply(r: Result<ureq::Response, ureq::Error>) -> Reply {
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

pub fn get(url: &str, key: Option<&str>) -> Reply {
    let mut req = agent().get(url);
    if let Some(k) = key {
        req = req.set("Authorization", &format!("Bearer {k}"));
    }
    reply(req.call())
}

pub fn post_raw(url: &str, body: &str, key: Option<&str>) -> Reply {
    let mut req = agent().post(url).set("Content-Type", "application/json");
    if let Some(k) = key {
        req = req.set("Authorization", &format!("Bearer {k}"));
    }
    reply(req.send_string(body))
}

pub fn post(url: &str, body: &Value) -> Reply {
    post_raw(url, &body.to_string(), None)
}

/// The `data:` payloads of a stream, read as they come.
pub struct Sse {
    lines: std::io::Lines<BufReader<Box<dyn Read + Send + Sync>>>,
}

impl Sse {
    pub fn open(url: &str, body: &Value) -> Sse {
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
pub struct Streamed {
    pub text: String,
    pub finish: Value,
    pub usage: Value,
    pub done: bool,
    pub chunks: usize,
}

pub fn stream_chat(url: &str, body: &Value) -> Streamed {
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

/// One user message.
pub fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}
