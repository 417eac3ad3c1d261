//! Golden token streams: each backend's greedy tokens on SmolLM2 against transformers'
//! (f32, dequantized GGUF) under the top-5 divergence rule, then frozen as insta snapshots so a
//! change in any stream shows in review. The snapshot content is checked against the oracle in
//! the same test before it is compared.

mod common;

use wavefront::backend::cpu::CpuBackend;
use wavefront::backend::Backend;
use wavefront::{Engine, EngineOptions};
use wavefront_conformance::model::{check_greedy, engine_greedy};
use wavefront_conformance::models::greedy_gap;
use wavefront_conformance::tolerance::{tolerance, Kind};

fn golden_streams<B: Backend>(backend: B, label: &str) {
    let model = common::smollm2();
    let engine = Engine::new(backend, &model, EngineOptions::default()).unwrap();
    // The engine's weights are rounded to 16 bits where transformers' are f32: the 16-bit anchor.
    let tol = tolerance(Kind::Model16).nmse;
    let mut streams = Vec::new();
    let mut diverged = Vec::new();
    for (i, g) in common::smollm2_greedy_goldens().iter().enumerate() {
        let got = engine_greedy(&engine, &g.prompt_ids, g.stream.tokens.len()).unwrap();
        let cmp = check_greedy(&g.stream, &got, greedy_gap(tol, &g.stream));
        assert!(
            cmp.pass(),
            "{label} prompt {i} {:?}: {}",
            g.prompt,
            cmp.failure.unwrap()
        );
        if let Some(note) = cmp.note {
            diverged.push(format!("prompt {i}: {note}"));
        }
        streams.push(serde_json::json!({ "prompt": g.prompt, "tokens": got.tokens }));
    }
    println!(
        "{label}: {} of {} streams identical to transformers; {diverged:?}",
        streams.len() - diverged.len(),
        streams.len()
    );
    insta::assert_json_snapshot!(format!("smollm2_greedy_{label}"), streams);
}

#[test]
fn cpu_greedy_streams_match_transformers_on_smollm2() {
    golden_streams(CpuBackend::default(), "cpu");
}

/// Per runtime, arch and wave: kernels that differ in reduction order may break near-ties
/// differently, within the divergence rule.
#[test]
fn gpu_greedy_streams_match_transformers_on_smollm2() {
    for wave in common::gpu_waves() {
        let b = common::gpu(wave).unwrap();
        let i = b.info().clone();
        let label = format!("gpu_{:?}_{}_wave{wave}", i.runtime, i.arch)
            .to_lowercase()
            .replace(['.', ' '], "_");
        golden_streams(b, &label);
    }
}
