//! `wavefront-shimmy` as a user runs it: shimmy's server on loopback (CPU, the default model),
//! its OpenAI chat route answering whole and streamed over real HTTP (ureq) with the text the
//! engine's generator gives for the prompt shimmy renders, and shimmy's own errors for bad
//! requests while it keeps serving.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use shimmy::prompt_render::{render_chat_prompt_with_extras, JinjaExtras};
use shimmy::templates::TemplateFamily;
use wavefront::backend::cpu::CpuBackend;
use wavefront::{Engine, EngineOptions, GenerationRequest, Generator, SamplingParams};
use wavefront_shimmy::REPEAT_LAST_N;

/// SHIMMY_MAX_CTX for the server: shimmy's registry gives it as the spec's `ctx_len`.
const CTX: usize = 512;

/// The server process; killed when dropped.
struct Server {
    child: Child,
    base: String,
    /// The line that says where it listens (and on what).
    banner: String,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    fn start() -> Server {
        let model = wavefront::fetch::default_model().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_wavefront-shimmy"))
            .arg("--model")
            .arg(&model)
            .args(["--bind", "127.0.0.1:0", "--backend", "cpu"])
            .env("WAVEFRONT_GPU", "off")
            .env("SHIMMY_MAX_CTX", CTX.to_string())
            // The adapter's loads among the log: one, however many requests.
            .env("RUST_LOG", "warn,wavefront_shimmy=info")
            .env_remove("SHIMMY_API_KEY")
            .env_remove("SHIMMY_ALLOWED_ORIGINS")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the wavefront-shimmy binary runs");
        let mut reader = BufReader::new(child.stderr.take().unwrap());
        let mut seen = String::new();
        let (base, banner) = loop {
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
                break (addr.to_string(), line.trim().to_string());
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
            banner,
            stderr,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn post(&self, path: &str, body: &Value) -> (u16, String) {
        self.post_text(path, &body.to_string())
    }

    fn post_text(&self, path: &str, body: &str) -> (u16, String) {
        let r = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(300))
            .build()
            .post(&self.url(path))
            .set("Content-Type", "application/json")
            .send_string(body);
        let r = match r {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("transport error: {e}\n{}", self.stderr.lock().unwrap()),
        };
        (r.status(), r.into_string().unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `data:` payloads of a server-sent event stream.
fn events(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| d.trim_start().to_string())
        .collect()
}

/// The reply the engine's generator gives to the chat shimmy's route renders for `messages`
/// (the ChatML family: the model's template's), under shimmy's defaults and `temperature` 0.
fn engine_reply(model_id: &str, messages: &[(String, String)], max_tokens: usize) -> String {
    let family = TemplateFamily::ChatML;
    let prompt = render_chat_prompt_with_extras(
        None,
        family,
        None,
        messages,
        None,
        &JinjaExtras::for_model(model_id),
    )
    .text;
    let model = wavefront::load(&wavefront::fetch::default_model().unwrap()).unwrap();
    let tok = model.tokenizer.as_ref().unwrap();
    let engine = Engine::new(CpuBackend::default(), &model, EngineOptions::default()).unwrap();
    let defaults = shimmy::engine::GenOptions::default();
    let request = GenerationRequest {
        prompt: tok.encode(&prompt, true).unwrap(),
        max_tokens,
        sampling: SamplingParams {
            temperature: 0.0,
            top_k: defaults.top_k as usize,
            top_p: defaults.top_p,
            min_p: 0.0,
            repeat_penalty: defaults.repeat_penalty,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
        },
        seed: 0,
        stop: family.stop_tokens(),
        repeat_last_n: REPEAT_LAST_N,
        context: Some(CTX),
        logprobs: None,
    };
    let mut g = Generator::new(&engine, Some(tok), request).unwrap();
    while g.step().unwrap().is_some() {}
    g.text().to_string()
}

#[test]
fn shimmys_server_answers_chats_whole_and_streamed_and_survives_bad_requests() {
    let mut server = Server::start();
    // ctx_len (SHIMMY_MAX_CTX through shimmy's registry) is the slots' context.
    assert!(
        server.banner.contains(&format!("slots of {CTX} tokens")),
        "{}",
        server.banner
    );
    assert!(
        server.banner.contains("chat template family: chatml"),
        "{}",
        server.banner
    );

    // The registry's one model, by shimmy's /v1/models.
    let models: Value = serde_json::from_str(
        &ureq::get(&server.url("/v1/models"))
            .call()
            .unwrap()
            .into_string()
            .unwrap(),
    )
    .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids.len(), 1, "{models}");
    let id = ids[0].to_string();
    assert_eq!(
        id,
        wavefront::serve::model_id(&wavefront::fetch::default_model().unwrap())
    );

    let question = "What is the capital of France?";
    let max_tokens = 24;
    let chat = |stream: bool| {
        json!({
            "model": id,
            "messages": [{"role": "user", "content": question}],
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "stream": stream,
            "stream_options": {"include_usage": true},
        })
    };
    let want = engine_reply(&id, &[("user".into(), question.into())], max_tokens);
    assert!(!want.is_empty());

    // Whole.
    let (status, body) = server.post("/v1/chat/completions", &chat(false));
    assert_eq!(status, 200, "{body}");
    let whole: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(whole["object"], "chat.completion", "{whole}");
    assert_eq!(whole["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        whole["choices"][0]["message"]["content"],
        want.as_str(),
        "{whole}"
    );
    let finish = whole["choices"][0]["finish_reason"].as_str().unwrap();
    assert!(finish == "stop" || finish == "length", "{whole}");
    let usage = &whole["usage"];
    let completion = usage["completion_tokens"].as_u64().unwrap();
    assert!(
        completion >= 1 && completion <= max_tokens as u64,
        "{usage}"
    );
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + completion
    );

    // A bad request (no messages) gets shimmy's error; the server keeps serving.
    let (status, body) = server.post(
        "/v1/chat/completions",
        &json!({"model": id, "messages": []}),
    );
    assert_eq!(status, 400, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["code"], "invalid_messages", "{error}");
    assert_eq!(error["error"]["param"], "messages", "{error}");
    // A body that does not parse: shimmy's (axum's) 400, in plain text.
    let (status, body) = server.post_text("/v1/chat/completions", r#"{"model": "#);
    assert_eq!(status, 400, "{body}");
    assert!(
        body.starts_with("Failed to parse the request body as JSON"),
        "{body}"
    );
    // A model not in the registry: shimmy's 404.
    let (status, body) = server.post(
        "/v1/chat/completions",
        &json!({"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("model_not_found"), "{body}");

    // Streamed: the role first, the text piece by piece (the whole answer's), the finish, the
    // usage, [DONE].
    let (status, body) = server.post("/v1/chat/completions", &chat(true));
    assert_eq!(status, 200, "{body}");
    let data = events(&body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{body}");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(
        chunks[0]["choices"][0]["delta"]["role"], "assistant",
        "{body}"
    );
    let pieces: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(pieces.len() > 1, "not streamed piece by piece: {body}");
    assert_eq!(pieces.concat(), want, "{body}");
    let finishes: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finishes, [&json!(finish)], "{body}");
    let last = &chunks[chunks.len() - 1];
    assert_eq!(last["choices"], json!([]), "{body}");
    assert_eq!(&last["usage"], usage, "{body}");

    // Shimmy loaded the model for every request: the one load was the binary's, at start.
    let log = server.stderr.lock().unwrap().clone();
    assert_eq!(log.matches("loading ").count(), 1, "{log}");
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the server exited:\n{}",
        server.stderr.lock().unwrap()
    );
}

#[test]
fn bad_flags_and_a_public_bind_without_a_key_fail_before_anything_loads() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_wavefront-shimmy"))
            .args(args)
            // A model that does not exist: the refusals come before it is read.
            .args(["--model", "/nonexistent/model.gguf"])
            .env("WAVEFRONT_GPU", "off")
            .env_remove("SHIMMY_API_KEY")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["--template", "alpaca", "--bind", "127.0.0.1:0"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.starts_with("error: template = \"alpaca\""), "{err}");
    // Shimmy's own rule.
    let (code, err) = run(&["--bind", "0.0.0.0:0"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("Non-loopback binds require SHIMMY_API_KEY"),
        "{err}"
    );
    let (code, err) = run(&["--backend", "gpu", "--bind", "127.0.0.1:0"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.starts_with("error: no usable GPU: the GPU is disabled"),
        "{err}"
    );
    // Past the flags, the model's own error, naming the file.
    let (code, err) = run(&["--backend", "cpu", "--bind", "127.0.0.1:0"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.starts_with("error: /nonexistent/model.gguf"), "{err}");
}
