//! `wavefront serve` refusing what it must: every kind of bad input answered with an
//! OpenAI-style error naming the field while a good stream runs beside it, the API key, and a
//! public address without one.

mod common;

use std::io::Read;
use std::time::Duration;

use common::http::*;
use serde_json::{json, Value};

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
            with(json!({"presence_penalty": 2.5})),
            400,
            Some("presence_penalty"),
        ),
        (
            &chat,
            with(json!({"frequency_penalty": -2.01})),
            400,
            Some("frequency_penalty"),
        ),
        (&chat, with(json!({"n": 2})), 400, Some("n")),
        // Chat's logprobs is a boolean, and top_logprobs (0 to 20) needs it.
        (&chat, with(json!({"logprobs": 1})), 400, Some("logprobs")),
        (
            &chat,
            with(json!({"top_logprobs": 2})),
            400,
            Some("top_logprobs"),
        ),
        (
            &chat,
            with(json!({"logprobs": true, "top_logprobs": 21})),
            400,
            Some("top_logprobs"),
        ),
        (
            &chat,
            with(json!({"logprobs": true, "top_logprobs": -1})),
            400,
            Some("top_logprobs"),
        ),
        // Completions' logprobs is the number of alternatives.
        (
            &completions,
            json!({"prompt": "Hi", "logprobs": true}).to_string(),
            400,
            Some("logprobs"),
        ),
        (
            &completions,
            json!({"prompt": "Hi", "logprobs": 21}).to_string(),
            400,
            Some("logprobs"),
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
            Some("tools[0].function"),
        ),
        (
            &chat,
            with(json!({"tools": [{"type": "function", "function": {"name": 5}}]})),
            400,
            Some("tools[0].function.name"),
        ),
        (&chat, with(json!({"tools": {"type": "function"}})), 400, Some("tools")),
        // A well-formed tool, but this model's template never reads `tools`.
        (
            &chat,
            with(json!({"tools": [{"type": "function", "function": {"name": "f"}}]})),
            400,
            Some("tools"),
        ),
        (
            &chat,
            json!({"messages": [{"role": "tool", "content": "42"}]}).to_string(),
            400,
            Some("messages[0].tool_call_id"),
        ),
        (
            &chat,
            json!({"messages": [{"role": "assistant", "content": null, "tool_calls": [{"type": "function", "function": {"name": "f"}}]}]}).to_string(),
            400,
            Some("messages[0].tool_calls[0].function.arguments"),
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
    // Tools are refused, not dropped, when the template has no place for them.
    let r = post(
        &chat,
        &json!({"messages": msgs, "tools": [{"type": "function", "function": {"name": "f"}}]}),
    );
    assert_eq!(r.status, 400);
    let m = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(m.contains("chat template does not take tools"), "{m}");
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
