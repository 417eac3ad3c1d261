//! `wavefront serve --lookup` / `--draft` over real HTTP on loopback (CPU backend, the default
//! model): a speculating server returns, request for request, what the library generator gives
//! — with prompt lookup the plain tokens (greedy and seeded sampling, alone, together in one
//! round and resumed on a cached prefix), with a draft model `run --draft`'s tokens — and
//! counts its drafts in `/metrics`, which shows the speculation ran.

mod common;

use std::sync::{Arc, Barrier, OnceLock};

use common::http::*;
use serde_json::{json, Value};
use wavefront::backend::cpu::CpuBackend;
use wavefront::speculative::DraftParams;
use wavefront::tokenizer::ChatMessage;
use wavefront::{Engine, EngineOptions, GenerationRequest, Generator, LoadedModel, SamplingParams};

fn model() -> &'static LoadedModel {
    static M: OnceLock<LoadedModel> = OnceLock::new();
    M.get_or_init(|| wavefront::load(&wavefront::fetch::default_model().unwrap()).unwrap())
}

fn tokenizer() -> &'static wavefront::Tokenizer {
    model().tokenizer.as_ref().unwrap()
}

/// How the library generator speculates for the expected answer.
#[derive(Clone, Copy)]
enum Spec {
    Plain,
    /// The default model drafting for itself.
    SelfDraft(usize),
}

/// The library's answer: its text and token count.
fn library(request: GenerationRequest, spec: Spec) -> (String, usize) {
    let engine = Engine::new(CpuBackend::default(), model(), EngineOptions::default()).unwrap();
    let draft = Engine::new(CpuBackend::default(), model(), EngineOptions::default()).unwrap();
    let mut g = Generator::new(&engine, Some(tokenizer()), request).unwrap();
    if let Spec::SelfDraft(k) = spec {
        g = g.with_draft(&draft, DraftParams::new(k)).unwrap();
    }
    while g.step().unwrap().is_some() {}
    (g.text().to_string(), g.generated().len())
}

/// A request that copies from its prompt: where lookup drafts well.
const PASSAGE: &str = "The lighthouse keeper climbed the spiral stairs every evening at dusk, \
     trimmed the wick, polished the great lens and wrote the weather in a leather book: wind \
     from the west, sea calm, two ships passing north.";

fn copy_prompt() -> Vec<u32> {
    tokenizer()
        .encode_chat(&[ChatMessage::user(format!(
            "Repeat this text exactly, word for word:\n\n{PASSAGE}"
        ))])
        .unwrap()
}

fn sampled() -> SamplingParams {
    SamplingParams {
        temperature: 0.7,
        top_k: 40,
        top_p: 0.95,
        min_p: 0.05,
        repeat_penalty: 1.1,
        ..SamplingParams::default()
    }
}

/// The body of a chat request with `copy_prompt`'s message.
fn copy_body(max_tokens: usize, sampled: bool) -> Value {
    let messages = user(&format!(
        "Repeat this text exactly, word for word:\n\n{PASSAGE}"
    ));
    if sampled {
        json!({"messages": messages, "max_tokens": max_tokens, "temperature": 0.7, "top_k": 40,
               "top_p": 0.95, "min_p": 0.05, "repeat_penalty": 1.1, "seed": 77})
    } else {
        json!({"messages": messages, "max_tokens": max_tokens, "temperature": 0})
    }
}

fn content(v: &Value) -> String {
    v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_else(|| panic!("no content in {v}"))
        .to_string()
}

fn request(max_tokens: usize, sampling: Option<SamplingParams>) -> GenerationRequest {
    GenerationRequest {
        max_tokens,
        sampling: sampling.unwrap_or_else(SamplingParams::greedy),
        seed: if sampling.is_some() { 77 } else { 0 },
        context: Some(CONTEXT),
        ..GenerationRequest::new(copy_prompt())
    }
}

#[test]
fn a_lookup_server_returns_the_plain_tokens_and_counts_its_drafts() {
    let s = Server::start(&["--slots", "2", "--lookup", "6"]);
    let url = s.url("/v1/chat/completions");
    let (greedy_text, greedy_n) = library(request(48, None), Spec::Plain);
    let (sampled_text, sampled_n) = library(request(48, Some(sampled())), Spec::Plain);
    // The library's seeded stream is the one the server must give (greedy's seed is unused).
    let greedy = post(&url, &copy_body(48, false)).json();
    assert_eq!(content(&greedy), greedy_text);
    assert_eq!(greedy["usage"]["completion_tokens"], greedy_n);
    let drafted = s.metric("wavefront_speculative_drafted_tokens_total");
    let accepted = s.metric("wavefront_speculative_accepted_tokens_total");
    let verifications = s.metric("wavefront_speculative_verifications_total");
    // It speculated, and well: the reply copies the prompt.
    assert!(
        verifications > 0.0 && drafted > 0.0,
        "{verifications} {drafted}"
    );
    assert!(
        accepted >= 0.5 * greedy_n as f64,
        "{accepted} drafts kept for {greedy_n} tokens"
    );
    assert!(
        verifications < greedy_n as f64,
        "{verifications} verifications for {greedy_n} tokens"
    );

    let one = post(&url, &copy_body(48, true)).json();
    assert_eq!(content(&one), sampled_text);
    assert_eq!(one["usage"]["completion_tokens"], sampled_n);
    assert!(s.metric("wavefront_speculative_verifications_total") > verifications);

    // Both at once, one streamed: each still its own alone (each verifies in its own pass).
    let barrier = Arc::new(Barrier::new(2));
    let together: Vec<String> = std::thread::scope(|scope| {
        let hs: Vec<_> = [false, true]
            .into_iter()
            .map(|sampled| {
                let (url, barrier) = (&url, barrier.clone());
                scope.spawn(move || {
                    barrier.wait();
                    if sampled {
                        let mut b = copy_body(48, true);
                        b["stream"] = json!(true);
                        stream_chat(url, &b).text
                    } else {
                        content(&post(url, &copy_body(48, false)).json())
                    }
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(together, [greedy_text.clone(), sampled_text]);
    assert_eq!(s.metric("wavefront_slots_active_peak"), 2.0);
}

#[test]
fn a_lookup_request_resumed_on_a_cached_prompt_gives_the_plain_tokens() {
    // Longer than the CPU engine's prefill chunk (512), so the second ask reuses 512 positions.
    let text = format!(
        "Repeat the last sentence of this text:\n\n{}",
        [PASSAGE; 14].join("\n")
    );
    let prompt = tokenizer().encode(&text, true).unwrap();
    assert!(prompt.len() > 600, "{} tokens", prompt.len());
    let (plain, n) = library(
        GenerationRequest {
            max_tokens: 24,
            context: Some(1024),
            ..GenerationRequest::new(prompt.clone())
        },
        Spec::Plain,
    );
    let s = Server::start_with_context(1024, &["--slots", "1", "--lookup", "4"]);
    let ask = || {
        let r = post(
            &s.url("/v1/completions"),
            &json!({"prompt": prompt, "max_tokens": 24, "temperature": 0}),
        );
        assert_eq!(r.status, 200, "{}", r.text);
        let v = r.json();
        assert_eq!(v["usage"]["completion_tokens"], n, "{v}");
        v["choices"][0]["text"].as_str().unwrap().to_string()
    };
    assert_eq!(ask(), plain);
    assert_eq!(s.metric("wavefront_prompt_tokens_cached_total"), 0.0);
    assert_eq!(ask(), plain);
    assert_eq!(s.metric("wavefront_prompt_tokens_cached_total"), 512.0);
    assert!(s.metric("wavefront_speculative_accepted_tokens_total") > 0.0);
}

#[test]
fn a_draft_model_server_returns_run_drafts_tokens() {
    let default = common::cli::default_model();
    let s = Server::start(&["--slots", "2", "--draft", &default, "--draft-k", "4"]);
    let url = s.url("/v1/chat/completions");
    // Greedy: the plain tokens. Sampled: the stream `run --draft` gives for the seed.
    let (greedy_text, greedy_n) = library(request(32, None), Spec::Plain);
    let (sampled_text, sampled_n) = library(request(32, Some(sampled())), Spec::SelfDraft(4));
    let greedy = post(&url, &copy_body(32, false)).json();
    assert_eq!(content(&greedy), greedy_text);
    assert_eq!(greedy["usage"]["completion_tokens"], greedy_n);
    let one = post(&url, &copy_body(32, true)).json();
    assert_eq!(content(&one), sampled_text);
    assert_eq!(one["usage"]["completion_tokens"], sampled_n);
    // A model drafting for itself, greedy: every draft is kept.
    let drafted = s.metric("wavefront_speculative_drafted_tokens_total");
    let accepted = s.metric("wavefront_speculative_accepted_tokens_total");
    assert!(drafted > 0.0, "nothing drafted");
    assert!(accepted > 0.5 * drafted, "{accepted} of {drafted} kept");
}

#[test]
fn bad_speculation_flags_fail_before_the_model_loads() {
    for (args, needle) in [
        (vec!["serve", "--lookup", "0"], "lookup"),
        (vec!["serve", "--lookup", "65"], "lookup"),
        (
            vec!["serve", "--lookup", "4", "--lookup-ngram", "0"],
            "lookup_ngram",
        ),
        (vec!["serve", "--draft-k", "3"], "--draft"),
        (
            vec!["serve", "--draft", "x.gguf", "--lookup", "4"],
            "--lookup",
        ),
        (
            vec!["serve", "--draft", "smollm2", "--draft-k", "0"],
            "draft",
        ),
    ] {
        let out = common::cli::wavefront(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}
