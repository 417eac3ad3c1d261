//! The oracle checked by an oracle nobody on the team wrote: the reference transformer against
//! Hugging Face transformers' f32 goldens on every tiny fixture, through every file format
//! (HF safetensors in bf16, GGUF in f32/f16/bf16 — all exact for these weights).

mod common;

use common::{fixture_models, golden, nmse};
use wavefront::DType;
use wavefront_conformance::bridge::reference_model;
use wavefront_conformance::model::reference_greedy;

/// f32 on both sides: only reassociation differs (measured ~1e-13; the issue asks ≤ 1e-9).
const NMSE_MAX: f64 = 1e-9;

#[test]
fn reference_matches_transformers_on_every_fixture() {
    let fixtures = fixture_models();
    assert!(fixtures.len() >= 6, "fixtures missing: {fixtures:?}");
    let mut table = String::from("| fixture | logits NMSE | worst hidden NMSE | final NMSE | greedy 16 |\n|---|---:|---:|---:|:---:|\n");
    let mut failures = Vec::new();
    for (path, dir) in &fixtures {
        let g = golden(dir);
        let model = wavefront::load(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let reference = reference_model(&model, DType::F32).unwrap();
        let mut cache = reference.new_cache(g.input_ids.len());
        let trace = reference.forward_traced(&g.input_ids, &mut cache).unwrap();
        let logits = nmse(&g.logits, trace.logits.as_slice().unwrap());
        assert_eq!(trace.hidden.len(), g.hidden.len(), "{}", path.display());
        let hidden = trace
            .hidden
            .iter()
            .zip(&g.hidden)
            .map(|(r, h)| nmse(h, r.as_slice().unwrap()))
            .fold(0.0, f64::max);
        let fin = nmse(&g.final_hidden, trace.final_hidden.as_slice().unwrap());
        let greedy = reference_greedy(&reference, &g.greedy_prompt, g.greedy_tokens.len()).unwrap();
        let same = greedy.tokens == g.greedy_tokens;
        let name = path
            .strip_prefix(common::repo())
            .unwrap_or(path)
            .display()
            .to_string();
        table.push_str(&format!(
            "| {name} | {logits:.2e} | {hidden:.2e} | {fin:.2e} | {} |\n",
            if same { "=" } else { "≠" }
        ));
        if !(logits <= NMSE_MAX && hidden <= NMSE_MAX && fin <= NMSE_MAX && same) {
            failures.push(format!("{name}: logits {logits:.2e}, hidden {hidden:.2e}, final {fin:.2e}, greedy {:?} vs {:?}", greedy.tokens, g.greedy_tokens));
        }
    }
    println!("{table}");
    assert!(failures.is_empty(), "{failures:#?}");
}

/// SmolLM2-135M-Instruct (Q4_1, dequantized to f32 on both sides): the reference's greedy
/// tokens equal transformers' for every golden prompt.
#[test]
fn reference_greedy_equals_transformers_on_smollm2() {
    let model = common::smollm2();
    let reference = reference_model(&model, DType::F32).unwrap();
    let goldens = wavefront_conformance::golden::read_greedy_goldens(
        &common::repo().join("fixtures/smollm2/greedy_goldens.json"),
    )
    .unwrap();
    assert!(goldens.len() >= 5);
    for g in goldens {
        let got = reference_greedy(&reference, &g.prompt_ids, g.stream.tokens.len()).unwrap();
        assert_eq!(got.tokens, g.stream.tokens, "prompt {:?}", g.prompt);
        // The logits agree too: the top-10 logits of every step within f32 reassociation.
        for (step, (a, b)) in got.top.iter().zip(&g.stream.top).enumerate() {
            let (ga, gb): (Vec<f32>, Vec<f32>) = (
                a.iter().map(|x| x.1).collect(),
                b.iter().map(|x| x.1).collect(),
            );
            let e = nmse(&gb, &ga);
            assert!(
                e < NMSE_MAX,
                "prompt {:?} step {step}: top logits NMSE {e:.2e}",
                g.prompt
            );
        }
    }
}
