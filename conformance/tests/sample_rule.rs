//! The sampled-stream divergence rule (for 16-bit backends) lets through exactly the
//! divergences that differing logits explain, and still catches a sampler bug.

use wavefront::backend::cpu::CpuBackend;
use wavefront::{DType, Engine, EngineOptions, SamplingParams};
use wavefront_conformance::bridge::reference_model;
use wavefront_conformance::model::{sample_rule, sampled_tokens, ModelTolerances};
use wavefront_conformance::planted::{Bug, Planted};

fn top_p() -> SamplingParams {
    SamplingParams {
        top_p: 0.8,
        ..Default::default()
    }
}

#[test]
fn divergences_explained_by_differing_logits_pass_and_a_sampler_bug_fails() {
    // f32 random weights: the engine rounds them to bf16, the reference below keeps them.
    let config = wavefront::formats::random::shape("smollm2-135m").unwrap();
    let config = wavefront::ModelConfig {
        n_layers: 2,
        vocab_size: 512,
        ..config
    };
    let model = wavefront::formats::random::random_model(config, 3, DType::F32);
    let prompt = &[5, 17, 400, 3, 99, 250, 7, 1];

    // The engine's bf16 weights against the reference's f32 weights: the logits differ by
    // bf16 rounding, so streams diverge, and every divergence must be explained. The bound is
    // the derived one for weight rounding on this model.
    let engine = Engine::new(CpuBackend::default(), &model, EngineOptions::default()).unwrap();
    let tol = ModelTolerances::against_unrounded_weights(&engine);
    let (rule, logits_tol) = (sample_rule(&tol), tol.logits().nmse);
    let unrounded = reference_model(&model, DType::F32).unwrap();
    let mut diverged = 0;
    let hot = SamplingParams {
        temperature: 2.0,
        ..top_p()
    };
    let mut worst = 0.0f64;
    for seed in 0..16 {
        let s = sampled_tokens(&engine, &unrounded, prompt, &hot, 200, seed, rule).unwrap();
        assert!(s.check.cmp.pass(), "seed {seed}: {:?}", s.check.cmp.failure);
        // Every step is compared, divergences or not, and the row reports the worst logits.
        assert_eq!(s.compared, 200, "seed {seed}");
        assert!(
            s.check.cmp.nmse > 0.0,
            "bf16 against f32 weights cannot be exact"
        );
        worst = worst.max(s.check.cmp.nmse);
        diverged += s.divergences.len();
    }
    println!(
        "{diverged} divergences over 16 streams of 200, each explained; worst logits NMSE \
         {worst:.2e} against the derived bound {logits_tol:.2e}"
    );
    // On this 2-layer model the one-forward bound holds at every decode step too.
    assert!(worst <= logits_tol, "{worst:.3e} > {logits_tol:.3e}");
    assert!(
        diverged > 0,
        "no divergence: the rule's tolerant branch went untested"
    );

    // A planted top-p bug with identical logits on both sides: never explained.
    let planted = Engine::new(
        Planted::new(Bug::TopPKeepsOneTooMany),
        &model,
        EngineOptions::default(),
    )
    .unwrap();
    let same = reference_model(&model, DType::BF16).unwrap();
    let caught = (0..8).any(|seed| {
        let s = sampled_tokens(&planted, &same, prompt, &top_p(), 200, seed, rule).unwrap();
        s.check
            .cmp
            .failure
            .is_some_and(|f| f.contains("not between the distributions"))
    });
    assert!(caught, "the divergence rule let a sampler bug through");
}
