//! The adapter through shimmy's traits against the engine's own generator (the path `wavefront
//! run` takes), on the CPU with the default model: the same text piece for piece, the same
//! usage and finish; models cached across loads; options refused by name.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use shimmy::engine::{GenOptions, InferenceEngine, LoadedModel, ModelSpec};
use shimmy::templates::TemplateFamily;
use wavefront::backend::cpu::CpuBackend;
use wavefront::backend::gpu::BackendChoice;
use wavefront::tokenizer::ChatMessage;
use wavefront::{
    Engine, EngineOptions, FinishReason, GenerationRequest, Generator, SamplingParams, Tokenizer,
};
use wavefront_shimmy::{Options, WavefrontEngine, REPEAT_LAST_N};

/// Each generation's context in these tests (small: the tests are about tokens, not memory).
const CTX: usize = 256;

fn model_path() -> PathBuf {
    wavefront::fetch::default_model().unwrap()
}

fn spec(ctx_len: usize) -> ModelSpec {
    ModelSpec {
        name: "smollm2".into(),
        base_path: model_path(),
        lora_path: None,
        template: None,
        chat_template: None,
        ctx_len,
        n_threads: None,
    }
}

fn cpu_engine() -> WavefrontEngine {
    WavefrontEngine::new(Options {
        backend: BackendChoice::Cpu,
        ..Options::default()
    })
}

/// What the engine's generator gives for `prompt` under `opts` (mapped by hand here, as the
/// adapter documents it) in a context of `context`: the non-empty text of each step, the
/// number of generated tokens, the finish.
fn engine_run(
    prompt: Vec<u32>,
    opts: &GenOptions,
    context: usize,
) -> (Vec<String>, usize, FinishReason) {
    let model = wavefront::load(&model_path()).unwrap();
    let engine = Engine::new(CpuBackend::default(), &model, EngineOptions::default()).unwrap();
    let request = GenerationRequest {
        prompt,
        max_tokens: opts.max_tokens,
        sampling: SamplingParams {
            temperature: opts.temperature,
            top_k: opts.top_k as usize,
            top_p: opts.top_p,
            min_p: 0.0,
            repeat_penalty: opts.repeat_penalty,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
        },
        seed: u64::from(opts.seed.unwrap()),
        stop: opts.stop_tokens.clone(),
        repeat_last_n: REPEAT_LAST_N,
        context: Some(context),
        logprobs: None,
    };
    let mut g = Generator::new(&engine, model.tokenizer.as_ref(), request).unwrap();
    let mut pieces = Vec::new();
    while let Some(step) = g.step().unwrap() {
        if !step.text.is_empty() {
            pieces.push(step.text);
        }
    }
    (
        pieces,
        g.generated().len(),
        g.finish_reason().unwrap().clone(),
    )
}

fn tokenizer() -> Tokenizer {
    wavefront::load(&model_path()).unwrap().tokenizer.unwrap()
}

/// The adapter's answer through `generate_with_metadata`, and the pieces `on_token` got.
async fn adapter_run(
    model: &dyn LoadedModel,
    prompt: &str,
    opts: GenOptions,
) -> (shimmy::engine::GenerationOutput, Vec<String>) {
    let pieces = Arc::new(Mutex::new(Vec::new()));
    let sink = pieces.clone();
    let out = model
        .generate_with_metadata(
            prompt,
            opts,
            Some(Box::new(move |p| sink.lock().unwrap().push(p))),
        )
        .await
        .unwrap();
    let pieces = pieces.lock().unwrap().clone();
    (out, pieces)
}

/// Checks the adapter's answer against the engine's.
fn assert_same(
    (out, pieces): &(shimmy::engine::GenerationOutput, Vec<String>),
    (want, generated, finish): &(Vec<String>, usize, FinishReason),
    prompt_tokens: usize,
) {
    assert_eq!(pieces, want, "on_token's pieces");
    assert_eq!(out.text, want.concat());
    let usage = out.usage.as_ref().expect("usage");
    assert_eq!(usage.prompt_tokens, prompt_tokens);
    assert_eq!(usage.completion_tokens, *generated);
    assert_eq!(usage.total_tokens, prompt_tokens + generated);
    let reason = match finish {
        FinishReason::Eos | FinishReason::Stop(_) => "stop",
        FinishReason::MaxTokens | FinishReason::ContextFull => "length",
    };
    assert_eq!(out.finish_reason.as_deref(), Some(reason));
}

fn sampled(seed: u32) -> GenOptions {
    GenOptions {
        max_tokens: 40,
        temperature: 0.8,
        top_p: 0.95,
        top_k: 40,
        repeat_penalty: 1.1,
        seed: Some(seed),
        ..GenOptions::default()
    }
}

#[tokio::test]
async fn generate_equals_the_engines_generator_for_a_raw_prompt_and_a_chat() {
    let engine = cpu_engine();
    let model = engine.load(&spec(CTX)).await.unwrap();
    let tok = tokenizer();

    // A raw prompt (how shimmy's routes pass what they rendered): `wavefront run PROMPT`.
    let prompt = "The capital of France is";
    let opts = GenOptions {
        raw_prompt: true,
        ..sampled(7)
    };
    let ids = tok.encode(prompt, true).unwrap();
    let want = engine_run(ids.clone(), &opts, CTX);
    let got = adapter_run(&*model, prompt, opts).await;
    assert!(
        want.0.len() > 3,
        "too short a generation to compare: {want:?}"
    );
    assert_same(&got, &want, ids.len());

    // Not raw, no template in the spec: the model's own chat template (`wavefront run --chat`).
    let prompt = "Write a haiku about the sea.";
    let opts = sampled(11);
    assert!(!opts.raw_prompt);
    let ids = tok.encode_chat(&[ChatMessage::user(prompt)]).unwrap();
    let want = engine_run(ids.clone(), &opts, CTX);
    let got = adapter_run(&*model, prompt, opts).await;
    assert!(
        want.0.len() > 3,
        "too short a generation to compare: {want:?}"
    );
    assert_same(&got, &want, ids.len());

    // Another seed, another text: the seed reaches the sampler.
    let other = adapter_run(&*model, prompt, sampled(12)).await;
    assert_ne!(other.0.text, got.0.text);
}

#[tokio::test]
async fn max_tokens_a_stop_string_and_a_full_context_end_as_the_engine_ends() {
    let engine = cpu_engine();
    let tok = tokenizer();
    let prompt = "1, 2, 3, 4, 5,";
    let ids = tok.encode(prompt, true).unwrap();
    let greedy = GenOptions {
        max_tokens: 24,
        temperature: 0.0,
        seed: Some(0),
        raw_prompt: true,
        ..GenOptions::default()
    };
    let model = engine.load(&spec(CTX)).await.unwrap();

    // max_tokens: `length`, after exactly that many tokens.
    let want = engine_run(ids.clone(), &greedy, CTX);
    assert_eq!(want.2, FinishReason::MaxTokens);
    let got = adapter_run(&*model, prompt, greedy.clone()).await;
    assert_same(&got, &want, ids.len());

    // A stop string taken from the middle of that text: the text before it, `stop`.
    let text = want.0.concat();
    let at = (text.len() / 2..text.len() - 2)
        .find(|&i| text.is_char_boundary(i) && text.is_char_boundary(i + 2))
        .unwrap();
    let stop = text[at..at + 2].to_string();
    let with_stop = GenOptions {
        stop_tokens: vec![stop.clone()],
        ..greedy.clone()
    };
    let want = engine_run(ids.clone(), &with_stop, CTX);
    assert_eq!(want.2, FinishReason::Stop(stop.clone()));
    let got = adapter_run(&*model, prompt, with_stop).await;
    assert_same(&got, &want, ids.len());
    assert!(!got.0.text.contains(&stop), "{:?}", got.0.text);

    // ctx_len is the context: a small one fills before max_tokens, `length`.
    let small = ids.len() + 6;
    let model = engine.load(&spec(small)).await.unwrap();
    let want = engine_run(ids.clone(), &greedy, small);
    assert_eq!(want.2, FinishReason::ContextFull);
    let got = adapter_run(&*model, prompt, greedy).await;
    assert_same(&got, &want, ids.len());
}

#[tokio::test]
async fn a_second_load_returns_the_cached_model() {
    let engine = cpu_engine();
    assert_eq!(engine.loads(), 0);
    let first = engine.load(&spec(CTX)).await.unwrap();
    assert_eq!(engine.loads(), 1);
    let second = engine.load(&spec(CTX)).await.unwrap();
    assert_eq!(engine.loads(), 1, "the second load loaded again");
    // Both handles generate on the one model.
    let opts = GenOptions {
        max_tokens: 4,
        temperature: 0.0,
        raw_prompt: true,
        ..GenOptions::default()
    };
    let a = first.generate("Hello", opts.clone(), None).await.unwrap();
    let b = second.generate("Hello", opts, None).await.unwrap();
    assert_eq!(a, b);
    // Loads at once load once.
    let fresh = cpu_engine();
    let s = spec(CTX);
    let (x, y) = tokio::join!(fresh.load(&s), fresh.load(&s));
    assert!(x.is_ok() && y.is_ok());
    assert_eq!(fresh.loads(), 1);
    // Another context is another engine; so is another thread count, with the same tokens.
    engine.load(&spec(CTX / 2)).await.unwrap();
    assert_eq!(engine.loads(), 2);
    let one_thread = ModelSpec {
        n_threads: Some(1),
        ..spec(CTX)
    };
    let c = engine.load(&one_thread).await.unwrap();
    assert_eq!(engine.loads(), 3);
    let opts = GenOptions {
        max_tokens: 4,
        temperature: 0.0,
        raw_prompt: true,
        ..GenOptions::default()
    };
    assert_eq!(c.generate("Hello", opts, None).await.unwrap(), a);
}

#[tokio::test]
async fn a_full_queue_and_the_timeout_are_errors() {
    // One slot and one waiting: of three at once, at least one is refused, the others finish.
    let engine = WavefrontEngine::new(Options {
        backend: BackendChoice::Cpu,
        slots: 1,
        queue: 1,
        ..Options::default()
    });
    let model = engine.load(&spec(CTX)).await.unwrap();
    let opts = GenOptions {
        max_tokens: 64,
        temperature: 0.0,
        raw_prompt: true,
        ..GenOptions::default()
    };
    let run = || model.generate("1, 2, 3, 4, 5,", opts.clone(), None);
    let (a, b, c) = tokio::join!(run(), run(), run());
    let results = [a, b, c];
    let refused: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err().map(|e| e.to_string()))
        .collect();
    assert!(!refused.is_empty(), "none refused");
    for e in &refused {
        assert!(e.contains("requests are already waiting"), "{e}");
    }
    let done: Vec<&String> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert!(!done.is_empty());
    assert!(done.iter().all(|t| *t == done[0]), "{done:?}");

    // Past the timeout, the generation is cancelled and says so.
    let engine = WavefrontEngine::new(Options {
        backend: BackendChoice::Cpu,
        timeout: std::time::Duration::from_millis(1),
        ..Options::default()
    });
    let model = engine.load(&spec(CTX)).await.unwrap();
    let e = model
        .generate("1, 2, 3, 4, 5,", opts.clone(), None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("timeout"), "{e:#}");
}

#[tokio::test]
async fn unsupported_options_and_bad_specs_are_refused_by_name() {
    let engine = cpu_engine();
    let model = engine.load(&spec(CTX)).await.unwrap();
    for (opts, option) in [
        (
            GenOptions {
                grammar_mode: "json".into(),
                ..GenOptions::default()
            },
            "grammar_mode",
        ),
        (
            GenOptions {
                math_bypass: true,
                ..GenOptions::default()
            },
            "math_bypass",
        ),
    ] {
        let e = model.generate("Hello", opts, None).await.unwrap_err();
        assert!(e.to_string().starts_with(&format!("{option} = ")), "{e:#}");
        assert!(e.to_string().contains("not supported"), "{e:#}");
    }
    // A setting out of the engine's range: its message.
    let e = model
        .generate(
            "Hello",
            GenOptions {
                top_p: 1.5,
                ..GenOptions::default()
            },
            None,
        )
        .await
        .unwrap_err();
    assert!(
        e.to_string().starts_with("top_p must be in (0, 1]"),
        "{e:#}"
    );
    // A prompt of no tokens, and one that leaves no room for a generated token.
    let raw = GenOptions {
        raw_prompt: true,
        ..GenOptions::default()
    };
    let e = model.generate("", raw.clone(), None).await.unwrap_err();
    assert_eq!(e.to_string(), "the prompt has no tokens");
    let tiny = engine.load(&spec(4)).await.unwrap();
    let e = tiny
        .generate("1, 2, 3, 4, 5, 6", raw, None)
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("the context (ctx_len) holds 4"),
        "{e:#}"
    );

    let bad_specs = [
        (
            ModelSpec {
                lora_path: Some("adapter.gguf".into()),
                ..spec(CTX)
            },
            "lora_path = ",
        ),
        (
            ModelSpec {
                template: Some("alpaca".into()),
                ..spec(CTX)
            },
            "template = ",
        ),
        (spec(1), "ctx_len must be at least 2"),
        (
            ModelSpec {
                n_threads: Some(0),
                ..spec(CTX)
            },
            "n_threads must be at least 1",
        ),
        (
            ModelSpec {
                base_path: "/nonexistent/model.gguf".into(),
                ..spec(CTX)
            },
            "/nonexistent/model.gguf",
        ),
    ];
    let loads = engine.loads();
    for (s, message) in bad_specs {
        let e = engine.load(&s).await.err().expect("refused");
        assert!(e.to_string().starts_with(message), "{e:#}");
    }
    assert_eq!(engine.loads(), loads, "a refused spec loaded something");
}

#[tokio::test]
async fn a_specs_template_wraps_a_prompt_that_is_not_raw() {
    let tok = tokenizer();
    let prompt = "Name a colour.";
    // A shimmy family: shimmy's own rendering, encoded as a plain prompt.
    let chatml = TemplateFamily::ChatML.render(None, &[], Some(prompt));
    assert!(chatml.contains(prompt) && chatml.starts_with("<|im_start|>user"));
    let family = ModelSpec {
        template: Some("chatml".into()),
        ..spec(CTX)
    };
    // A Jinja chat template (a GGUF's `tokenizer.chat_template`): rendered by the engine, its
    // special tokens its own.
    let jinja = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n\
                 {% endfor %}<|im_start|>assistant\n";
    let rendered =
        wavefront::tokenizer::chat::render(jinja, &[ChatMessage::user(prompt)], true, &tok.special)
            .unwrap();
    let with_jinja = ModelSpec {
        chat_template: Some(jinja.into()),
        ..family.clone()
    };
    let engine = cpu_engine();
    let opts = GenOptions {
        max_tokens: 12,
        temperature: 0.0,
        seed: Some(0),
        ..GenOptions::default()
    };
    for (s, ids) in [
        (family, tok.encode(&chatml, true).unwrap()),
        (with_jinja, tok.encode(&rendered, false).unwrap()),
    ] {
        let model = engine.load(&s).await.unwrap();
        let want = engine_run(ids.clone(), &opts, CTX);
        let got = adapter_run(&*model, prompt, opts.clone()).await;
        assert_same(&got, &want, ids.len());
    }
    // The template is the spec's, not the cache's: one model loaded.
    assert_eq!(engine.loads(), 1);
}
