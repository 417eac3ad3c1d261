//! Speculative identity on the CPU engine (issue 13): prompt-lookup speculation gives the plain
//! generation's steps exactly (tokens, text, log-probabilities by bits, finish reason) on every
//! fixture and on SmolLM2, greedy and sampled with seeds; greedy output with a draft model is
//! the plain greedy output on every fixture; and planted speculation bugs are caught by the
//! same checks.

mod common;

use wavefront::backend::cpu::CpuBackend;
use wavefront::speculative::{DraftParams, LookupParams, SpecBug};
use wavefront::{GenerationRequest, Generator};
use wavefront_conformance::speculative::{
    check_cases, check_draft_models, check_draft_speculation, check_speculation,
    perturb_final_norm, smollm2_copy_cases, SpecReport,
};

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

/// A verification's rows (`Engine::forward_as_steps`) are the decode steps' logits by bits on
/// every fixture, at 2, 3, 5 and 11 rows.
#[test]
fn rows_as_decode_steps_are_the_steps_logits_by_bits_on_every_fixture() {
    let make = || Ok(CpuBackend::default());
    for (path, _) in common::fixture_models() {
        let r = wavefront_conformance::speculative::rows_as_steps(&make, &path).unwrap();
        assert_eq!(r.len(), 4);
        for (n, differ) in r {
            assert!(differ.is_none(), "{} rows {n}: {differ:?}", path.display());
        }
    }
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

/// SmolLM2 (the default model, Q4_1 blocks): `smollm2_copy_cases`, copying a text greedy up to
/// a stop string and sampled with penalties and log-probabilities.
#[test]
fn lookup_speculation_is_the_plain_generation_on_smollm2() {
    let path = wavefront::fetch::default_model().unwrap();
    let r = check_cases(
        &|| Ok(CpuBackend::default()),
        &path,
        "cpu",
        &smollm2_copy_cases,
    )
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

/// Each fixture's draft for the draft-model tests: itself, and the next fixture (cyclically)
/// that can draft for it (the same vocabulary and tokenizer), when there is one.
fn draft_pairs() -> Vec<(std::path::PathBuf, std::path::PathBuf)> {
    let models: Vec<_> = common::fixture_models()
        .into_iter()
        .map(|(p, _)| wavefront::load(&p).unwrap())
        .collect();
    let mut pairs = Vec::new();
    for (i, m) in models.iter().enumerate() {
        pairs.push((m.path.clone(), m.path.clone()));
        let other = (1..models.len())
            .map(|d| &models[(i + d) % models.len()])
            .find(|d| wavefront::speculative::check_draft_model(m, d).is_ok());
        if let Some(d) = other {
            pairs.push((m.path.clone(), d.path.clone()));
        }
    }
    pairs
}

/// The target model at `path` drafted by itself with its final norm perturbed
/// (`perturb_final_norm`, ±30%): greedy drafts kept at some positions and rejected at others.
fn check_perturbed_draft(path: &std::path::Path, planted: Option<SpecBug>) -> SpecReport {
    let model = wavefront::load(path).unwrap();
    let mut draft = wavefront::load(path).unwrap();
    perturb_final_norm(&mut draft, 0.3, 7).unwrap();
    let name = format!("{} drafted by itself perturbed", path.display());
    check_draft_models(
        &|| Ok(CpuBackend::default()),
        &model,
        &draft,
        &name,
        "cpu",
        planted,
    )
    .unwrap()
}

/// Greedy output with a draft model is the plain greedy output on every fixture (tokens,
/// log-probabilities by bits, finish reason), drafted by itself, by itself perturbed, and by
/// another fixture of the same vocabulary and tokenizer. A model drafting for itself proposes
/// its own distribution (on the CPU a draft row is bitwise the target's row), so the rule keeps
/// every draft, greedy or sampled.
#[test]
fn draft_model_greedy_is_the_plain_generation_on_every_fixture() {
    let make = || Ok(CpuBackend::default());
    let pairs = draft_pairs();
    let others = pairs.iter().filter(|(t, d)| t != d).count();
    assert!(others >= 6, "{pairs:?}");
    let (mut drafted, mut accepted, mut off, mut sampled_kept) = (0, 0, 0, 0);
    let mut greedy_partial = 0;
    let mut reports = Vec::new();
    for (target, draft) in &pairs {
        let r = check_draft_speculation(&make, target, draft, "cpu", None).unwrap();
        if target == draft {
            for run in &r.runs {
                assert!(
                    run.drafted > 0 && run.accepted == run.drafted,
                    "a self-draft must keep every draft: {}",
                    r.markdown()
                );
            }
            sampled_kept += r
                .runs
                .iter()
                .filter(|run| run.setting.starts_with("sampled"))
                .count();
            reports.push(check_perturbed_draft(target, None));
        }
        reports.push(r);
    }
    for r in &reports {
        println!("{}", r.markdown());
        assert!(r.all_pass(), "{}", r.markdown());
        assert!(
            r.runs.iter().all(|run| run.verifications > 0),
            "{}",
            r.markdown()
        );
        if r.runs.iter().any(|run| run.accepted < run.drafted) {
            off += usize::from(switched_off(r));
            let (d, a) = r.totals();
            drafted += d;
            accepted += a;
            greedy_partial += r
                .runs
                .iter()
                .filter(|run| {
                    run.setting.starts_with("greedy")
                        && 0 < run.accepted
                        && run.accepted < run.drafted
                })
                .count();
        }
    }
    assert!(sampled_kept > 0);
    // Drafts were both kept and rejected, within greedy runs too (so the rollback of both
    // caches after a partial acceptance is under the identity check), and adaptive k gave up
    // somewhere.
    assert!(
        accepted > 0 && drafted > accepted,
        "{accepted} of {drafted}"
    );
    assert!(greedy_partial >= pairs.len() / 2, "{greedy_partial}");
    assert!(off > 0, "adaptive k never switched draft speculation off");
}

/// The planted bugs the greedy identity check must catch with a draft model: drafts kept
/// unchecked or by the inverted comparison, the target's KV of rejected drafts kept. (The
/// rule's resampling bugs change sampled distributions only: the χ² test catches those.)
#[test]
fn planted_draft_speculation_bugs_are_caught() {
    let fixtures = common::fixture_models();
    for bug in [
        SpecBug::AcceptUnchecked,
        SpecBug::AcceptInverted,
        SpecBug::NoRollback,
    ] {
        let caught = fixtures
            .iter()
            .any(|(p, _)| !check_perturbed_draft(p, Some(bug)).all_pass());
        assert!(caught, "{bug:?} was not caught");
    }
}

/// A draft model must share the target's vocabulary and tokenizer: typed errors naming both.
#[test]
fn a_draft_model_of_another_tokenizer_is_refused() {
    use wavefront::speculative::check_draft_model;
    use wavefront::Error;
    let fixtures = common::fixture_models();
    let load = |name: &str| {
        let (p, _) = fixtures
            .iter()
            .find(|(p, _)| p.ends_with(name))
            .unwrap_or_else(|| panic!("fixture {name}"));
        wavefront::load(p).unwrap()
    };
    let (mha, gqa3) = (load("llama_mha"), load("llama_gqa3"));
    assert_ne!(mha.config.vocab_size, gqa3.config.vocab_size);
    let e = check_draft_model(&mha, &gqa3).unwrap_err();
    assert!(matches!(e, Error::DraftMismatch { .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains("vocabulary size 384, the target's is 256"),
        "{e}"
    );
    let e = Generator::new(
        &wavefront::Engine::new(CpuBackend::default(), &mha, Default::default()).unwrap(),
        None,
        GenerationRequest::new(vec![1, 2, 3]),
    )
    .unwrap()
    .with_draft(
        &wavefront::Engine::new(CpuBackend::default(), &gqa3, Default::default()).unwrap(),
        DraftParams::new(4),
    )
    .err()
    .expect("a draft of another vocabulary is refused");
    assert!(
        e.to_string().contains("384 tokens, the target's 256"),
        "{e}"
    );
    // SmolLM2 against itself with other special tokens, or without its tokenizer.
    let path = wavefront::fetch::default_model().unwrap();
    let smol = wavefront::load(&path).unwrap();
    assert!(check_draft_model(&smol, &wavefront::load(&path).unwrap()).is_ok());
    let mut other_eos = wavefront::load(&path).unwrap();
    if let Some(t) = other_eos.tokenizer.as_mut() {
        t.special.eos_token_ids = vec![0];
    }
    let e = check_draft_model(&smol, &other_eos).unwrap_err();
    assert!(e.to_string().contains("end-of-sequence ids [0]"), "{e}");
    let mut none = wavefront::load(&path).unwrap();
    none.tokenizer = None;
    let e = check_draft_model(&smol, &none).unwrap_err();
    assert!(e.to_string().contains("carries no tokenizer"), "{e}");
}

/// The GPU's check for draft models (`check_draft_greedy_divergence`, run here on the CPU
/// where the streams are identical): it passes a perturbed self-draft with no divergence to
/// explain, and fails a planted bug's streams.
#[test]
fn the_gpu_draft_divergence_check_passes_identity_and_catches_a_planted_bug() {
    use wavefront_conformance::speculative::check_draft_greedy_divergence;
    let make = || Ok(CpuBackend::default());
    let fixtures = common::fixture_models();
    let run = |path: &std::path::Path, bug| {
        let model = wavefront::load(path).unwrap();
        let mut draft = wavefront::load(path).unwrap();
        perturb_final_norm(&mut draft, 0.3, 7).unwrap();
        check_draft_greedy_divergence(&make, &model, &draft, "perturbed", "cpu", bug).unwrap()
    };
    let clean = run(&fixtures[0].0, None);
    println!("{}", clean.markdown());
    assert!(clean.all_pass(), "{}", clean.markdown());
    // Every greedy case, penalised ones judged on their penalised logits.
    assert_eq!(clean.runs.len(), 7, "the greedy cases");
    assert!(
        clean.runs.iter().all(|r| !r.setting.contains("diverged")),
        "{}",
        clean.markdown()
    );
    let (d, a) = clean.totals();
    assert!(a > 0 && d > a, "{a} of {d}");
    let caught = fixtures
        .iter()
        .any(|(p, _)| !run(p, Some(SpecBug::AcceptInverted)).all_pass());
    assert!(
        caught,
        "AcceptInverted passed the divergence rule everywhere"
    );
}

/// `Generator::logprobs_after_penalties`: with penalties, every greedy token is the first of
/// its step's top list (the row greedy picks from), where the raw logits' top list does not
/// always start with it; without the flag the lists are the raw ones; plain and lookup agree.
#[test]
fn penalised_logprobs_rank_the_greedy_choice_first() {
    use wavefront::{Engine, EngineOptions, SamplingParams};
    let model = wavefront::load(&common::fixture_models()[0].0).unwrap();
    let engine = Engine::new(CpuBackend::default(), &model, EngineOptions::default()).unwrap();
    let prompt =
        wavefront_conformance::speculative::repeating_prompt(0x5bec, 40, model.config.vocab_size);
    let request = GenerationRequest {
        max_tokens: 24,
        logprobs: Some(5),
        sampling: SamplingParams {
            repeat_penalty: 1.3,
            presence_penalty: 0.5,
            frequency_penalty: 0.25,
            ..SamplingParams::greedy()
        },
        repeat_last_n: 8,
        ..GenerationRequest::new(prompt)
    };
    let steps = |penalised: bool, lookup: bool| {
        let mut g = Generator::new(&engine, None, request.clone()).unwrap();
        if penalised {
            g = g.logprobs_after_penalties();
        }
        if lookup {
            g = g.with_lookup(LookupParams::new(4)).unwrap();
        }
        let mut out = Vec::new();
        while let Some(s) = g.step().unwrap() {
            if let Some(t) = s.token {
                out.push((t, s.logprobs.unwrap()));
            }
        }
        out
    };
    let (raw, penalised) = (steps(false, false), steps(true, false));
    assert_eq!(raw.len(), 24);
    let tokens =
        |v: &[(u32, wavefront::TokenLogprobs)]| -> Vec<u32> { v.iter().map(|(t, _)| *t).collect() };
    assert_eq!(tokens(&raw), tokens(&penalised));
    assert!(penalised.iter().all(|(t, lp)| lp.top[0].0 == *t));
    let raw_disagrees = raw.iter().filter(|(t, lp)| lp.top[0].0 != *t).count();
    assert!(raw_disagrees > 0, "the penalties never changed the choice");
    assert_eq!(steps(true, true), penalised);
}
