//! The decode loop on SmolLM2 (CPU): finish reasons, stop strings, UTF-8-safe streaming,
//! determinism, and requests refused before they run.

use std::sync::OnceLock;

use wavefront::backend::cpu::CpuBackend;
use wavefront::detok::IncrementalDecoder;
use wavefront::{
    Engine, EngineOptions, Error, FinishReason, GenerationRequest, Generator, LoadedModel,
    SamplingParams,
};

fn model() -> &'static LoadedModel {
    static M: OnceLock<LoadedModel> = OnceLock::new();
    M.get_or_init(|| wavefront::load(&wavefront::fetch::default_model().unwrap()).unwrap())
}

fn engine() -> Engine<CpuBackend> {
    Engine::new(CpuBackend::default(), model(), EngineOptions::default()).unwrap()
}

fn repo_file(rel: &str) -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(rel),
    )
    .unwrap()
}

/// Streams every step's text and returns (streamed text, generator).
fn stream<'a>(
    e: &'a Engine<CpuBackend>,
    req: GenerationRequest,
) -> (String, Generator<'a, CpuBackend>) {
    let mut g = Generator::new(e, model().tokenizer.as_ref(), req).unwrap();
    let mut text = String::new();
    while let Some(step) = g.step().unwrap() {
        text.push_str(&step.text);
    }
    (text, g)
}

fn prompt(text: &str) -> Vec<u32> {
    model()
        .tokenizer
        .as_ref()
        .unwrap()
        .encode(text, true)
        .unwrap()
}

#[test]
fn streamed_pieces_reassemble_every_golden_string_without_broken_characters() {
    let tok = model().tokenizer.as_ref().unwrap();
    let goldens: serde_json::Value =
        serde_json::from_str(&repo_file("fixtures/smollm2/tokenizer_goldens.json")).unwrap();
    let mut multi_byte_held_back = 0;
    for case in goldens["cases"].as_array().unwrap() {
        let ids: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        let want = case["decoded_skip_special"].as_str().unwrap();
        let mut d = IncrementalDecoder::new(true);
        let mut got = String::new();
        for &id in &ids {
            let piece = d.push(tok, id).unwrap();
            assert!(
                !piece.contains('\u{FFFD}'),
                "{:?}: broken character in {piece:?}",
                case["text"]
            );
            if piece.is_empty() {
                multi_byte_held_back += 1;
            }
            got.push_str(&piece);
        }
        got.push_str(&d.flush(tok).unwrap());
        assert_eq!(got, want, "{:?}", case["text"]);
    }
    // The emoji and CJK strings split characters across byte tokens: some pieces must wait.
    assert!(multi_byte_held_back > 0);
}

#[test]
fn greedy_generation_reaches_eos_and_matches_transformers_text() {
    let greedy: serde_json::Value =
        serde_json::from_str(&repo_file("fixtures/smollm2/greedy_goldens.json")).unwrap();
    let first = &greedy["prompts"][0];
    assert_eq!(first["prompt"], "The capital of France is");
    let e = engine();
    let req = GenerationRequest {
        max_tokens: 64,
        ..GenerationRequest::new(prompt("The capital of France is"))
    };
    let (text, g) = stream(&e, req);
    assert_eq!(g.finish_reason(), Some(&FinishReason::Eos));
    // transformers' text runs past <|im_end|>; ours stops there and omits it.
    let golden = first["text"].as_str().unwrap();
    let upto = golden.split("<|im_end|>").next().unwrap();
    assert_eq!(text, upto);
    assert_eq!(g.text(), text);
    let t = g.timings();
    assert_eq!(t.prompt_tokens, 5);
    assert_eq!(t.generated_tokens, g.generated().len());
}

#[test]
fn stop_strings_end_generation_before_the_stop_text() {
    let e = engine();
    let req = GenerationRequest {
        max_tokens: 64,
        stop: vec!["\n\n".into(), "never appears".into()],
        ..GenerationRequest::new(prompt("The capital of France is"))
    };
    let (text, g) = stream(&e, req);
    assert_eq!(g.finish_reason(), Some(&FinishReason::Stop("\n\n".into())));
    assert_eq!(text, " Paris.");
}

#[test]
fn max_tokens_and_context_full_are_finish_reasons() {
    let e = engine();
    let p = prompt("The capital of France is");
    let (_, g) = stream(
        &e,
        GenerationRequest {
            max_tokens: 3,
            ..GenerationRequest::new(p.clone())
        },
    );
    assert_eq!(g.finish_reason(), Some(&FinishReason::MaxTokens));
    assert_eq!(g.generated().len(), 3);
    let (_, g) = stream(
        &e,
        GenerationRequest {
            max_tokens: 100,
            context: Some(p.len() + 4),
            ..GenerationRequest::new(p)
        },
    );
    assert_eq!(g.finish_reason(), Some(&FinishReason::ContextFull));
    // The prefill's logits give one token, then each decode step fills one position.
    assert_eq!(g.generated().len(), 5);
}

#[test]
fn the_same_seed_gives_the_same_tokens() {
    let e = engine();
    let req = |seed| GenerationRequest {
        max_tokens: 12,
        seed,
        sampling: SamplingParams {
            temperature: 1.0,
            top_k: 40,
            ..Default::default()
        },
        ..GenerationRequest::new(prompt("Once upon a time"))
    };
    let (_, a) = stream(&e, req(5));
    let (_, b) = stream(&e, req(5));
    let (_, c) = stream(&e, req(6));
    assert_eq!(a.generated(), b.generated());
    assert_ne!(
        a.generated(),
        c.generated(),
        "different seeds should differ somewhere in 12 sampled tokens"
    );
}

#[test]
fn bad_requests_are_refused_before_running() {
    let e = engine();
    let tok = model().tokenizer.as_ref();
    let bad = |req: GenerationRequest| match Generator::new(&e, tok, req) {
        Err(m @ (Error::InvalidRequest(_) | Error::InvalidParam { .. })) => m.to_string(),
        Err(other) => panic!("wrong error {other}"),
        Ok(_) => panic!("accepted"),
    };
    assert!(bad(GenerationRequest::new(vec![])).contains("no tokens"));
    let long = GenerationRequest {
        context: Some(4),
        ..GenerationRequest::new(vec![1; 4])
    };
    assert!(bad(long).contains("context"));
    assert!(bad(GenerationRequest::new(vec![49152])).contains("vocabulary"));
    let sampling = GenerationRequest {
        sampling: SamplingParams {
            top_p: 0.0,
            ..Default::default()
        },
        ..GenerationRequest::new(vec![1])
    };
    assert!(bad(sampling).contains("top_p"));
    let stop = GenerationRequest {
        stop: vec![String::new()],
        ..GenerationRequest::new(vec![1])
    };
    assert!(bad(stop).contains("stop"));
    // A KV cache past the model's context length is refused (not allocated).
    let trained = e.config().max_position_embeddings;
    let over = GenerationRequest {
        context: Some(trained + 1),
        ..GenerationRequest::new(vec![1])
    };
    assert_eq!(
        bad(over),
        format!(
            "context must be at most the model's context length, {trained}, got {}",
            trained + 1
        )
    );
}

#[test]
fn a_long_prompt_is_prefilled_a_chunk_a_step_and_gives_one_forwards_first_token() {
    let e = engine();
    let text: String = (1..800).map(|i| format!("{i}, ")).collect();
    let mut ids = model()
        .tokenizer
        .as_ref()
        .unwrap()
        .encode(&text, false)
        .unwrap();
    ids.truncate(1100); // chunks of 512, 512 and 76
    assert_eq!(ids.len(), 1100);
    let request = GenerationRequest {
        max_tokens: 1,
        context: Some(2048),
        ..GenerationRequest::new(ids.clone())
    };
    let mut g = Generator::new(&e, model().tokenizer.as_ref(), request).unwrap();
    for chunk in 0..2 {
        let s = g.step().unwrap().expect("a prefill step");
        assert_eq!(s.token, None, "chunk {chunk}");
        assert!(s.text.is_empty(), "chunk {chunk}");
        assert_eq!(g.sequence().cache.len(), 512 * (chunk + 1));
    }
    let first = g
        .step()
        .unwrap()
        .and_then(|s| s.token)
        .expect("the first token");
    assert_eq!(g.timings().prompt_tokens, 1100);

    // The same prompt in one forward (the engine chunks it the same way inside), then argmax.
    let mut seq = e.new_sequence(2048).unwrap();
    e.forward(&mut seq, &ids, wavefront::Logits::Last).unwrap();
    let logits = e.last_logits(&seq).unwrap();
    let argmax = (0..logits.len())
        .max_by(|&a, &b| logits[a].total_cmp(&logits[b]).then(b.cmp(&a)))
        .unwrap() as u32;
    assert_eq!(first, argmax);
}

#[test]
fn logprobs_report_each_tokens_log_softmax_without_changing_the_tokens() {
    let e = engine();
    let ids = prompt("The capital of France is");
    let request = |logprobs| GenerationRequest {
        max_tokens: 8,
        logprobs,
        ..GenerationRequest::new(ids.clone())
    };
    let (plain_text, plain) = stream(&e, request(None));
    let mut g = Generator::new(&e, model().tokenizer.as_ref(), request(Some(3))).unwrap();
    let mut steps = Vec::new();
    while let Some(s) = g.step().unwrap() {
        steps.push(s);
    }
    assert_eq!(
        g.generated(),
        plain.generated(),
        "logprobs changed the tokens"
    );
    assert_eq!(g.text(), plain_text);
    let reported: Vec<_> = steps.iter().filter_map(|s| s.logprobs.clone()).collect();
    assert_eq!(reported.len(), g.generated().len());
    for (lp, &id) in reported.iter().zip(g.generated()) {
        assert_eq!(lp.token, id);
        assert_eq!(lp.top.len(), 3);
        // Greedy: the token is the most likely one.
        assert_eq!(lp.top[0], (id, lp.logprob));
        assert!(lp.logprob <= 0.0 && lp.top.windows(2).all(|w| w[0].1 >= w[1].1));
    }
    // The first token's against the prompt's logits from one forward.
    let mut seq = e.new_sequence(256).unwrap();
    e.forward(&mut seq, &ids, wavefront::Logits::Last).unwrap();
    let logits = e.last_logits(&seq).unwrap();
    let first = wavefront::TokenLogprobs::from_logits(&logits, reported[0].token, 3);
    assert_eq!(first, reported[0]);
    // Too many alternatives are refused.
    let err = Generator::new(&e, model().tokenizer.as_ref(), request(Some(21)))
        .err()
        .expect("21 alternatives refused");
    assert!(err.to_string().contains("logprobs"), "{err}");
}

/// Generations stepped together (`Generator::step_batch`: their decode steps in batched passes)
/// give each one exactly the steps — tokens, text, log-probabilities, finish — it gives
/// stepped alone; with prompts of different lengths (one prefilled in several chunks while the
/// others decode), different settings and lengths (some finish early and keep being passed),
/// a stop string and one asking for log-probabilities.
#[test]
fn generations_stepped_in_batches_give_each_ones_own_steps() {
    let options = EngineOptions {
        max_batch: 16,
        ..EngineOptions::default()
    };
    let e = Engine::new(CpuBackend::default(), model(), options).unwrap();
    let texts = [
        "The capital of France is",
        "Write a haiku about the sea.",
        "Once upon a time, in a land far away, there lived a king who had three daughters and a very old dog",
        "1, 2, 3,",
        "The quick brown fox",
    ];
    let requests: Vec<GenerationRequest> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| GenerationRequest {
            max_tokens: [12, 20, 9, 16, 3][i],
            sampling: if i % 2 == 0 {
                SamplingParams::greedy()
            } else {
                wavefront::bench::BenchSampling::default_params().0
            },
            seed: 7 + i as u64,
            stop: if i == 3 { vec![" 6".into()] } else { vec![] },
            logprobs: (i == 1).then_some(2),
            context: Some(256),
            ..GenerationRequest::new(prompt(t))
        })
        .collect();
    assert!(requests[2].prompt.len() > 16, "a prompt of several chunks");
    let tok = model().tokenizer.as_ref();
    let alone: Vec<Vec<wavefront::Step>> = requests
        .iter()
        .map(|r| {
            let mut g = Generator::new(&e, tok, r.clone()).unwrap();
            std::iter::from_fn(|| g.step().unwrap()).collect()
        })
        .collect();
    let mut gens: Vec<Generator<'_, CpuBackend>> = requests
        .iter()
        .map(|r| Generator::new(&e, tok, r.clone()).unwrap())
        .collect();
    let mut batch = wavefront::DecodeBatch::new();
    let mut together: Vec<Vec<wavefront::Step>> = vec![Vec::new(); gens.len()];
    let mut done = vec![false; gens.len()];
    while done.iter().any(|d| !d) {
        let mut refs: Vec<&mut Generator<'_, CpuBackend>> = gens.iter_mut().collect();
        let steps = Generator::step_batch(&mut refs, &mut batch).unwrap();
        for (i, s) in steps.into_iter().enumerate() {
            match s.unwrap() {
                Some(s) => together[i].push(s),
                None => done[i] = true,
            }
        }
    }
    for (i, (a, t)) in alone.iter().zip(&together).enumerate() {
        assert_eq!(a, t, "generation {i}");
        assert!(gens[i].finish_reason().is_some(), "generation {i} finished");
    }
    let (passes, rows) = batch.counts();
    assert!(
        passes > 0 && rows > passes,
        "batched passes of several rows: {passes}, {rows}"
    );
    // Different engines do not share a batch.
    let other = Engine::new(CpuBackend::default(), model(), EngineOptions::default()).unwrap();
    let mut a = Generator::new(&e, tok, requests[0].clone()).unwrap();
    let mut b = Generator::new(&other, tok, requests[0].clone()).unwrap();
    let err =
        Generator::step_batch(&mut [&mut a, &mut b], &mut batch).expect_err("two engines refused");
    assert!(err.to_string().contains("one engine"), "{err}");
}
