//! Speculative identity on the CPU engine (issue 13): prompt-lookup speculation gives the plain
//! generation's steps exactly (tokens, text, log-probabilities by bits, finish reason) on every
//! fixture and on SmolLM2, greedy and sampled with seeds; and planted speculation bugs are
//! caught by the same check.

mod common;

use wavefront::backend::cpu::CpuBackend;
use wavefront::speculative::{LookupParams, SpecBug};
use wavefront::GenerationRequest;
use wavefront_conformance::models::sampling_settings;
use wavefront_conformance::speculative::{check_cases, check_speculation, SpecCase, SpecReport};

fn assert_identical(r: &SpecReport) {
    assert!(r.all_pass(), "{}", r.markdown());
    // Every case ran at least one verification.
    assert!(
        r.runs.iter().all(|run| run.verifications > 0),
        "{}",
        r.markdown()
    );
}

/// Whether the case asking adaptive k to give up did (and so continued on the plain path).
fn switched_off(r: &SpecReport) -> bool {
    r.runs
        .iter()
        .any(|run| run.setting.contains("switched off") && run.switched_off)
}

#[test]
fn lookup_speculation_is_the_plain_generation_on_every_fixture() {
    let make = || Ok(CpuBackend::default());
    let fixtures = common::fixture_models();
    assert!(fixtures.len() >= 6);
    let (mut drafted, mut accepted, mut off) = (0, 0, 0);
    for (path, _) in &fixtures {
        let r = check_speculation(&make, path, "cpu", None).unwrap();
        assert_identical(&r);
        off += usize::from(switched_off(&r));
        let (d, a) = r.totals();
        drafted += d;
        accepted += a;
    }
    // The streams above are a proof only if drafts were both kept and thrown away.
    assert!(
        accepted > 0 && drafted > accepted,
        "{accepted} of {drafted}"
    );
    assert!(off > 0, "adaptive k never switched speculation off");
}

/// Each planted speculation bug changes some stream the identity check compares.
#[test]
fn planted_speculation_bugs_are_caught() {
    let make = || Ok(CpuBackend::default());
    let fixtures = common::fixture_models();
    for bug in [SpecBug::AcceptUnchecked, SpecBug::NoRollback] {
        let caught = fixtures.iter().any(|(path, _)| {
            !check_speculation(&make, path, "cpu planted", Some(bug))
                .unwrap()
                .all_pass()
        });
        assert!(caught, "{bug:?} was not caught");
    }
}

/// SmolLM2 (the default model, Q4_1 blocks; kept short, CI decodes it at ~13 tok/s): an
/// input-grounded prompt (copy a text) where drafts are long and mostly accepted, greedy up to
/// a stop string, and sampled with penalties and log-probabilities.
#[test]
fn lookup_speculation_is_the_plain_generation_on_smollm2() {
    let path = wavefront::fetch::default_model().unwrap();
    let r = check_cases(&|| Ok(CpuBackend::default()), &path, "cpu", &|model| {
        let tok = model.tokenizer.as_ref().unwrap();
        let text = "Rust is a general-purpose programming language emphasizing performance, \
                    type safety and concurrency.";
        let copy = tok
            .encode(
                &format!("Copy the text exactly.\n\nText: {text}\n\nCopy: {text}\n\nCopy:"),
                true,
            )
            .unwrap();
        vec![
            SpecCase {
                name: "copy, greedy, stop \"safety\", k=8".into(),
                request: GenerationRequest {
                    max_tokens: 24,
                    stop: vec!["safety".into()],
                    ..GenerationRequest::new(copy.clone())
                },
                lookup: LookupParams::new(8),
            },
            SpecCase {
                name: "copy, sampled with penalties, logprobs 2, k=6".into(),
                request: GenerationRequest {
                    max_tokens: 16,
                    sampling: sampling_settings()[5],
                    repeat_last_n: 8,
                    seed: 9,
                    logprobs: Some(2),
                    ..GenerationRequest::new(copy)
                },
                lookup: LookupParams::new(6),
            },
        ]
    })
    .unwrap();
    println!("{}", r.markdown());
    assert_identical(&r);
    let greedy = &r.runs[0];
    assert!(greedy.finish.contains("Stop"), "{}", r.markdown());
    assert!(
        greedy.accepted * 2 > greedy.tokens,
        "copying accepts most drafts: {}",
        r.markdown()
    );
    let sampled = &r.runs[1];
    assert!(sampled.accepted > 0, "{}", r.markdown());
}

/// The GPU's check (`check_greedy_divergence`, run here on the CPU where the streams are
/// identical): it passes the speculative streams with no divergence to explain, and fails a
/// planted bug's.
#[test]
fn the_gpu_divergence_check_passes_identity_and_catches_a_planted_bug() {
    use wavefront_conformance::speculative::{cases, check_greedy_divergence, repeating_prompt};
    let make = || Ok(CpuBackend::default());
    let fixtures = common::fixture_models();
    let run = |path: &std::path::Path, bug| {
        check_greedy_divergence(&make, path, "cpu", &|m| {
            cases(&repeating_prompt(0x5bec, 40, m.config.vocab_size), bug)
        })
        .unwrap()
    };
    let clean = run(&fixtures[0].0, None);
    assert!(clean.all_pass(), "{}", clean.markdown());
    assert_eq!(clean.runs.len(), 3, "the greedy cases");
    assert!(
        clean.runs.iter().all(|r| !r.setting.contains("diverged")),
        "{}",
        clean.markdown()
    );
    let caught = fixtures
        .iter()
        .any(|(p, _)| !run(p, Some(SpecBug::AcceptUnchecked)).all_pass());
    assert!(
        caught,
        "AcceptUnchecked passed the divergence rule everywhere"
    );
}
