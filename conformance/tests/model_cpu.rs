//! Model-level conformance of the CPU engine against the reference, on every fixture and on
//! SmolLM2: hidden states and logits at every position, KV state through prefill, decode and
//! rollback, 200 sampled tokens at several settings with shared coins, greedy streams.

mod common;

use wavefront::backend::cpu::CpuBackend;
use wavefront_conformance::models::{
    check_model, check_model_with, sampling_settings, ModelCheckOptions,
};

use common::assert_model_pass as assert_pass;

#[test]
fn cpu_engine_matches_the_reference_on_every_fixture() {
    let fixtures = common::fixture_models();
    assert!(!fixtures.is_empty());
    for (path, _) in fixtures {
        assert_pass(&check_model(&|| Ok(CpuBackend::default()), &path, ""));
    }
}

/// Quantized GGUF files (every block type, and a Q4_K_M-like mix whose QKV and gate/up stacks
/// mix Q4_K and Q6_K): the CPU keeps the blocks and computes with them; the reference gets the
/// dequantized weights.
#[test]
fn cpu_engine_matches_the_reference_on_every_quantized_fixture() {
    for path in common::quant_fixture_models() {
        let model = wavefront::load(&path).unwrap();
        let engine = wavefront::Engine::new(
            CpuBackend::default(),
            &model,
            wavefront::EngineOptions::default(),
        )
        .unwrap();
        // Held as stored: nothing converted, the bytes of the file's weights.
        assert_eq!(
            engine.weight_rounding(),
            wavefront::DType::F32,
            "{}",
            path.display()
        );
        assert_eq!(
            engine.weight_bytes(),
            model.weight_bytes(),
            "{}",
            path.display()
        );
        assert_pass(&check_model(&|| Ok(CpuBackend::default()), &path, ""));
    }
}

/// `--cpu-dots q8` (8-bit activations for the quantized weights' integer dot products) within
/// the bounds derived with that rounding, on every quantized fixture and on SmolLM2; and
/// still batch-invariant (a row's products never depend on the other rows).
#[test]
fn cpu_engine_with_8_bit_activations_matches_the_reference_on_quantized_models() {
    use wavefront::backend::cpu::Dots;
    use wavefront_conformance::batch::check_batch_invariance;
    let make = || Ok(CpuBackend::default().with_dots(Dots::Q8));
    let quant = common::quant_fixture_models();
    assert!(!quant.is_empty());
    for path in &quant {
        assert_pass(&check_model(&make, path, "dots=q8"));
        let r = check_batch_invariance(&make, path, "cpu q8", &[2, 5], 4).unwrap();
        assert!(r.all_pass(), "{}", r.markdown());
    }
    let smollm2 = wavefront::fetch::default_model().unwrap();
    let opts = ModelCheckOptions {
        sample_steps: 100,
        settings: vec![sampling_settings()[4]],
        greedy_tokens: 32,
        kv_dtype: None,
    };
    assert_pass(&check_model_with(&make, &smollm2, "dots=q8", &opts));
    let r = check_batch_invariance(&make, &smollm2, "cpu q8", &[4], 4).unwrap();
    assert!(r.all_pass(), "{}", r.markdown());
}

/// The 8-bit activations are a different arithmetic, and the checks above can tell: the
/// tolerance they use accounts for the rounding (F32 inputs would be a tighter bound), and the
/// logits of the two modes differ.
#[test]
fn cpu_8_bit_activations_are_checked_with_their_own_rounding() {
    use wavefront::backend::cpu::Dots;
    use wavefront_conformance::model::ModelTolerances;
    let path = common::quant_fixture_models().remove(0);
    let model = wavefront::load(&path).unwrap();
    let opts = wavefront::EngineOptions::default;
    let f32 = wavefront::Engine::new(CpuBackend::default(), &model, opts()).unwrap();
    let q8 =
        wavefront::Engine::new(CpuBackend::default().with_dots(Dots::Q8), &model, opts()).unwrap();
    let (tf, tq) = (
        ModelTolerances::for_engine(&f32),
        ModelTolerances::for_engine(&q8),
    );
    assert_eq!(tf.input, wavefront::DType::F32);
    assert_eq!(tq.input, wavefront::DType::Q8_0Kv);
    assert!(tq.logits().nmse > tf.logits().nmse);
    let ids = [1u32, 5, 9, 3];
    let logits = |e: &wavefront::Engine<CpuBackend>| {
        let mut seq = e.new_sequence(8).unwrap();
        e.forward(&mut seq, &ids, wavefront::Logits::All)
            .unwrap()
            .unwrap()
    };
    assert_ne!(logits(&f32), logits(&q8));
}

/// A Q8_0 KV cache (`--kv-type q8_0`) within its derived bounds on every fixture it takes.
#[test]
fn cpu_engine_with_a_q8_0_kv_cache_matches_the_reference_on_the_fixtures() {
    let opts = ModelCheckOptions {
        kv_dtype: Some(wavefront::DType::Q8_0Kv),
        ..ModelCheckOptions::default()
    };
    for path in common::q8_fixture_models() {
        assert_pass(&check_model_with(
            &|| Ok(CpuBackend::default()),
            &path,
            "kv=q8_0",
            &opts,
        ));
    }
}

#[test]
fn cpu_engine_matches_the_reference_on_smollm2() {
    let path = wavefront::fetch::default_model().unwrap();
    let opts = ModelCheckOptions {
        sample_steps: 200,
        // Each filter alone and all together (the full list runs on the fixtures).
        settings: vec![sampling_settings()[2], sampling_settings()[4]],
        greedy_tokens: 32,
        kv_dtype: None,
    };
    assert_pass(&check_model_with(
        &|| Ok(CpuBackend::default()),
        &path,
        "",
        &opts,
    ));
}

/// Batch invariance (issue 11): sequences decoded together in one batched pass get, bit for
/// bit, the logits and tokens each gets alone — on every fixture (plain and quantized) at
/// several batch sizes, and on SmolLM2.
#[test]
fn cpu_batched_decode_gives_each_sequence_its_own_logits_bit_for_bit() {
    use wavefront_conformance::batch::check_batch_invariance;
    let make = || Ok(CpuBackend::default());
    let mut paths: Vec<_> = common::fixture_models()
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    paths.extend(common::quant_fixture_models());
    for path in &paths {
        let r = check_batch_invariance(&make, path, "cpu", &[2, 3, 5], 5).unwrap();
        println!("{}", r.markdown());
        assert!(r.all_pass(), "{}", r.markdown());
        assert!(
            r.runs.iter().all(|run| run.passes == run.steps),
            "one pass a step"
        );
    }
    let smollm2 = wavefront::fetch::default_model().unwrap();
    let r = check_batch_invariance(&make, &smollm2, "cpu", &[4], 4).unwrap();
    println!("{}", r.markdown());
    assert!(r.all_pass(), "{}", r.markdown());
}

/// LongRoPE's two tables (Phi-3): a sequence whose KV capacity is within the original context
/// (8 positions in `phi3_longrope`) rotates with the short factors, a longer one with the long
/// factors, on the engine as on the reference (each choosing by its cache's capacity); the
/// two choices give different logits, so both tables are checked. (The fixture's own checks
/// all run with capacities past 8: the long table.)
#[test]
fn cpu_engine_takes_longrope_short_factors_within_the_original_context() {
    use wavefront_conformance::bridge::reference_model;
    use wavefront_conformance::model::ModelTolerances;
    let path = common::repo().join("fixtures/models/phi3_longrope");
    let model = wavefront::load(&path).unwrap();
    let original = model
        .config
        .rope_longrope
        .as_ref()
        .unwrap()
        .original_max_position_embeddings;
    assert_eq!(original, 8);
    let backend = CpuBackend::default();
    let reference = reference_model(&model, wavefront::model::WeightStorage::of(&backend)).unwrap();
    let engine =
        wavefront::Engine::new(backend, &model, wavefront::EngineOptions::default()).unwrap();
    let bound = ModelTolerances::for_engine(&engine).logits().nmse;
    let tokens = &common::golden(&path).input_ids[..6];
    let mut by_capacity = Vec::new();
    for capacity in [6, 8, 9, 14] {
        let mut seq = engine.new_sequence(capacity).unwrap();
        let got = engine
            .forward(&mut seq, tokens, wavefront::Logits::All)
            .unwrap()
            .unwrap();
        let want = reference
            .forward(tokens, &mut reference.new_cache(capacity))
            .unwrap();
        let e = common::nmse(want.as_slice().unwrap(), &got);
        println!("capacity {capacity}: logits NMSE {e:.2e} (bound {bound:.1e})");
        assert!(e <= bound, "capacity {capacity}: NMSE {e:e} > {bound:e}");
        by_capacity.push(got);
    }
    // Within the original context (6, 8) one table, beyond it (9, 14) the other.
    assert_eq!(by_capacity[0], by_capacity[1]);
    assert_eq!(by_capacity[2], by_capacity[3]);
    let apart = common::nmse(&by_capacity[1], &by_capacity[2]);
    assert!(
        apart > 1e-6,
        "short and long factors give the same logits ({apart:e})"
    );
}
