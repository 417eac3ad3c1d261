//! Model-level conformance of the GPU engine (16-bit tolerances) on every fixture and on
//! SmolLM2, at every wave variant; and with a Q8_0 KV cache on the fixtures it takes. Skips, saying so, where no GPU is usable (CI).

mod common;

use wavefront_conformance::models::{
    check_model, check_model_with, sampling_settings, ModelCheckOptions,
};

#[test]
fn gpu_engine_matches_the_reference_on_fixtures_and_smollm2() {
    let waves = common::gpu_waves();
    if waves.is_empty() {
        return;
    }
    let smollm2 = wavefront::fetch::default_model().unwrap();
    let mut failures = Vec::new();
    for wave in waves {
        let make = move || common::gpu(wave);
        let mut reports: Vec<_> = common::fixture_models()
            .into_iter()
            .map(|(path, _)| check_model(&make, &path, &format!("WAVE={wave}")))
            .collect();
        let opts = ModelCheckOptions {
            sample_steps: 200,
            settings: sampling_settings(),
            greedy_tokens: 32,
            kv_dtype: None,
        };
        reports.push(check_model_with(
            &make,
            &smollm2,
            &format!("WAVE={wave}"),
            &opts,
        ));
        // A Q8_0 KV cache on the fixtures it takes and on SmolLM2.
        let q8 = ModelCheckOptions {
            kv_dtype: Some(wavefront::DType::Q8_0Kv),
            ..ModelCheckOptions::default()
        };
        for path in common::q8_fixture_models().iter().chain([&smollm2]) {
            reports.push(check_model_with(
                &make,
                path,
                &format!("WAVE={wave},kv=q8_0"),
                &q8,
            ));
        }
        for r in reports {
            println!("{}", r.markdown());
            if !r.all_pass() {
                failures.push(format!("{} WAVE={wave}", r.model));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Batch invariance on the GPU at every wave variant: sequences decoded together get each
/// one's own logits bit for bit (the engine's passes hold at most `decode_batch_rows`
/// sequences: the rows its products keep invariant), in batches of 2, 3, 5 and 11 (11: two
/// input groups of the several-row GEMVs, 8 and 3).
#[test]
fn gpu_batched_decode_gives_each_sequence_its_own_logits_bit_for_bit() {
    use wavefront_conformance::batch::check_batch_invariance;
    let waves = common::gpu_waves();
    if waves.is_empty() {
        return;
    }
    let smollm2 = wavefront::fetch::default_model().unwrap();
    let mut failures = Vec::new();
    for wave in waves {
        let make = move || common::gpu(wave);
        let mut paths: Vec<_> = common::fixture_models()
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        paths.extend(common::quant_fixture_models());
        paths.push(smollm2.clone());
        for path in &paths {
            let r = check_batch_invariance(&make, path, &format!("WAVE={wave}"), &[2, 3, 5, 11], 5)
                .unwrap();
            println!("{}", r.markdown());
            if !r.all_pass() {
                failures.push(format!("{} WAVE={wave}", r.model));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Every fixture's path, then SmolLM2's (fetched on first use).
fn fixtures_and_smollm2() -> Vec<std::path::PathBuf> {
    let mut paths: Vec<_> = common::fixture_models()
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    paths.push(wavefront::fetch::default_model().unwrap());
    paths
}

/// A verification's rows on the GPU (`Engine::forward_as_steps`) are the decode steps'
/// logits by bits, at every wave variant, on every fixture and SmolLM2, at 2, 3 (the one-row
/// GEMV grid over the rows), 5 and 11 rows (the several-row GEMVs); the check has teeth: the
/// prefill path's rows (BLAS, flash attention) differ from the steps' somewhere.
#[test]
fn gpu_speculation_rows_are_the_decode_steps_logits_by_bits() {
    let waves = common::gpu_waves();
    if waves.is_empty() {
        return;
    }
    let paths = fixtures_and_smollm2();
    let mut failures = Vec::new();
    let mut prefill_differs = 0;
    for wave in waves {
        let make = move || common::gpu(wave);
        for path in &paths {
            let r = wavefront_conformance::speculative::rows_as_steps(&make, path).unwrap();
            for (n, differ) in &r {
                let what = differ.as_deref().unwrap_or("identical");
                println!("| {} | WAVE={wave} | rows {n} | {what} |", path.display());
                if let Some(d) = differ {
                    failures.push(format!("{} WAVE={wave} rows {n}: {d}", path.display()));
                }
            }
            prefill_differs += usize::from(prefill_rows_differ(&make, path));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    println!("prefill path's rows differ from the steps' on {prefill_differs} model × wave runs");
    assert!(
        prefill_differs > 0,
        "the prefill path matched the steps everywhere"
    );
}

/// Whether 5 rows through `Engine::forward`'s prefill path differ from the same rows as steps.
fn prefill_rows_differ(
    make: &dyn Fn() -> wavefront::Result<wavefront::backend::gpu::GpuBackend>,
    path: &std::path::Path,
) -> bool {
    use wavefront::{Engine, EngineOptions, Logits};
    let model = wavefront::load(path).unwrap();
    let engine = Engine::new(make().unwrap(), &model, EngineOptions::default()).unwrap();
    let vocab = model.config.vocab_size;
    let prompt = wavefront_conformance::speculative::repeating_prompt(0x5bec, 40, vocab);
    let drafts = &wavefront_conformance::speculative::repeating_prompt(0x57e9, 5, vocab);
    let run = |as_steps: bool| {
        let mut seq = engine.new_sequence(prompt.len() + drafts.len()).unwrap();
        engine.forward(&mut seq, &prompt, Logits::Last).unwrap();
        if as_steps {
            engine.forward_as_steps(&mut seq, drafts).unwrap()
        } else {
            engine
                .forward(&mut seq, drafts, Logits::All)
                .unwrap()
                .unwrap()
        }
    };
    let (steps, prefill) = (run(true), run(false));
    steps
        .iter()
        .zip(&prefill)
        .any(|(a, b)| a.to_bits() != b.to_bits())
}

/// Speculation on the GPU gives the plain generation exactly, at every wave variant (issue 13),
/// as on the CPU: a verification's rows run as decode steps (`Engine::verify_forward`: the
/// batched pass's batch-invariant products, each row's fused decode attention at its own
/// position), so each row's logits are the plain decode step's by bits, and the speculative
/// steps (tokens, log-probabilities by bits, finish reasons) are the plain ones: prompt lookup
/// on every fixture's repeating-prompt cases (greedy and sampled with seeds) and on SmolLM2
/// copying a text (greedy up to a stop string, sampled with penalties and log-probabilities); a
/// draft model (each fixture drafted by itself with its final norm perturbed, on a second
/// backend of the device: greedy cases identical, sampled ones from the target's distribution);
/// and a planted bug (accepting every draft unchecked) caught by the same check.
#[test]
fn gpu_speculation_is_the_plain_generation_exactly() {
    use wavefront_conformance::speculative::{
        check_cases, check_draft_models, check_speculation, perturb_final_norm, smollm2_copy_cases,
        SpecReport,
    };
    let waves = common::gpu_waves();
    if waves.is_empty() {
        return;
    }
    if wavefront::model::verify_prefill() {
        println!("WAVEFRONT_VERIFY_PREFILL=1: verifications take the prefill path, not exact");
        return;
    }
    let smollm2 = wavefront::fetch::default_model().unwrap();
    let mut failures = Vec::new();
    let (mut drafted, mut accepted, mut verifications) = (0, 0, 0);
    let mut caught = false;
    for wave in waves {
        let make = move || common::gpu(wave);
        let label = format!("WAVE={wave}");
        let mut reports: Vec<SpecReport> = Vec::new();
        for (path, _) in common::fixture_models() {
            reports.push(check_speculation(&make, &path, &label, None).unwrap());
            let model = wavefront::load(&path).unwrap();
            let mut perturbed = wavefront::load(&path).unwrap();
            perturb_final_norm(&mut perturbed, 0.3, 7).unwrap();
            let names = format!("{} drafted by itself perturbed", path.display());
            reports
                .push(check_draft_models(&make, &model, &perturbed, &names, &label, None).unwrap());
            if !caught {
                let planted = check_speculation(
                    &make,
                    &path,
                    &format!("{label} planted"),
                    Some(wavefront::speculative::SpecBug::AcceptUnchecked),
                )
                .unwrap();
                caught = !planted.all_pass();
            }
        }
        reports.push(check_cases(&make, &smollm2, &label, &smollm2_copy_cases).unwrap());
        for r in reports {
            println!("{}", r.markdown());
            let (d, a) = r.totals();
            drafted += d;
            accepted += a;
            verifications += r.runs.iter().map(|run| run.verifications).sum::<usize>();
            if !r.all_pass() {
                failures.push(format!("{} {label}", r.model));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(
        caught,
        "the planted AcceptUnchecked passed the exact check everywhere"
    );
    assert!(
        verifications > 0 && accepted > 0 && drafted > accepted,
        "{accepted} of {drafted} in {verifications} verifications"
    );
}

/// Prompt-lookup speculation on the GPU at every wave variant (issue 13): greedy streams with
/// and without speculation on every fixture (the repeating prompt's greedy cases: k = 4, a
/// small max_tokens, a context that fills) and on SmolLM2 (copying a text, where drafts are
/// long), under the greedy divergence rule. Its subject is the prefill verification path
/// (`WAVEFRONT_VERIFY_PREFILL=1`, which `ci/device-session.sh steps` sets for it): the rows run
/// the prefill's kernels, the plain decode the decode step's, so the logits agree within the
/// derived bound, not by bits (`wavefront_conformance::speculative::check_greedy_divergence`
/// says why and how). On the default path the streams are identical, which the rule passes.
#[test]
fn gpu_lookup_speculation_keeps_greedy_streams_within_the_divergence_rule() {
    use wavefront::speculative::LookupParams;
    use wavefront::GenerationRequest;
    use wavefront_conformance::speculative::{
        cases, check_greedy_divergence, repeating_prompt, SpecCase,
    };
    let waves = common::gpu_waves();
    if waves.is_empty() {
        return;
    }
    let smollm2 = wavefront::fetch::default_model().unwrap();
    let copy_case = |model: &wavefront::LoadedModel| {
        let tok = model.tokenizer.as_ref().unwrap();
        let text = "Rust is a general-purpose programming language emphasizing performance, \
                    type safety and concurrency. It enforces memory safety without a garbage \
                    collector.";
        let prompt = tok
            .encode(
                &format!("Copy the text exactly.\n\nText: {text}\n\nCopy: {text}\n\nCopy:"),
                true,
            )
            .unwrap();
        vec![SpecCase {
            name: "copy, greedy, k=8".into(),
            request: GenerationRequest {
                max_tokens: 48,
                ..GenerationRequest::new(prompt)
            },
            lookup: LookupParams::new(8),
        }]
    };
    let mut failures = Vec::new();
    let (mut drafted, mut accepted) = (0, 0);
    for wave in waves {
        let make = move || common::gpu(wave);
        let label = format!("WAVE={wave}");
        let mut reports = Vec::new();
        for (path, _) in common::fixture_models() {
            reports.push(
                check_greedy_divergence(&make, &path, &label, &|m| {
                    cases(&repeating_prompt(0x5bec, 40, m.config.vocab_size), None)
                })
                .unwrap(),
            );
        }
        reports.push(check_greedy_divergence(&make, &smollm2, &label, &copy_case).unwrap());
        for r in reports {
            println!("{}", r.markdown());
            let (d, a) = r.totals();
            drafted += d;
            accepted += a;
            if !r.all_pass() {
                failures.push(format!("{} {label}", r.model));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(
        accepted > 0 && drafted > accepted,
        "{accepted} of {drafted}"
    );
}

/// Draft-model speculation on the GPU at every wave variant (issue 13): greedy streams with and
/// without a draft model on every fixture (drafted by itself, every draft kept, and by itself
/// with its final norm perturbed, some rejected) and on SmolLM2 drafted by itself, under the
/// greedy divergence rule (with `WAVEFRONT_VERIFY_PREFILL=1` the verification's rows run the
/// prefill's kernels, the plain decode the decode step's; on the default path the greedy streams
/// are identical). The draft model runs on a second backend of the device.
#[test]
fn gpu_draft_speculation_keeps_greedy_streams_within_the_divergence_rule() {
    use wavefront_conformance::speculative::{check_draft_greedy_divergence, perturb_final_norm};
    let waves = common::gpu_waves();
    if waves.is_empty() {
        return;
    }
    let paths = fixtures_and_smollm2();
    let mut failures = Vec::new();
    let (mut drafted, mut accepted) = (0, 0);
    for wave in waves {
        let make = move || common::gpu(wave);
        let label = format!("WAVE={wave}");
        for path in &paths {
            let model = wavefront::load(path).unwrap();
            let same = wavefront::load(path).unwrap();
            let mut perturbed = wavefront::load(path).unwrap();
            perturb_final_norm(&mut perturbed, 0.3, 7).unwrap();
            for (draft, how) in [(&same, "itself"), (&perturbed, "itself perturbed")] {
                let names = format!("{} drafted by {how}", path.display());
                let r = check_draft_greedy_divergence(&make, &model, draft, &names, &label, None)
                    .unwrap();
                println!("{}", r.markdown());
                let (d, a) = r.totals();
                drafted += d;
                accepted += a;
                if !r.all_pass() {
                    failures.push(format!("{names} {label}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(
        accepted > 0 && drafted > accepted,
        "{accepted} of {drafted}"
    );
}
