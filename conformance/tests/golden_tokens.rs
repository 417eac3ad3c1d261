//! Golden token streams: each backend's greedy tokens on SmolLM2 and Gemma 3 270M against
//! transformers' (f32, dequantized GGUF) under the top-5 divergence rule, then frozen as insta
//! snapshots so a change in any stream shows in review. The snapshot content is checked against
//! the oracle in the same test before it is compared.

mod common;

use wavefront::backend::cpu::CpuBackend;
use wavefront::backend::Backend;
use wavefront::{Engine, EngineOptions};
use wavefront_conformance::golden::{check_golden_streams, read_greedy_goldens};

/// The real models with transformers goldens: (name, fixtures dir, loader).
type RealModel = (&'static str, &'static str, fn() -> wavefront::LoadedModel);
const SMOLLM2: RealModel = ("smollm2", "fixtures/smollm2", common::smollm2);
const GEMMA3: RealModel = ("gemma3", "fixtures/gemma3", common::gemma3);

fn golden_streams<B: Backend>(backend: B, label: &str, real: RealModel) {
    let (model_name, dir, load) = real;
    let model = load();
    let engine = Engine::new(backend, &model, EngineOptions::default()).unwrap();
    let goldens =
        read_greedy_goldens(&common::repo().join(format!("{dir}/greedy_goldens.json"))).unwrap();
    let (checks, streams) = check_golden_streams(&engine, &goldens).unwrap();
    for c in &checks {
        assert!(
            c.cmp.pass(),
            "{label} {}: {}",
            c.what,
            c.cmp.failure.as_deref().unwrap_or("")
        );
        if let Some(note) = &c.cmp.note {
            println!("{label} {}: {note}", c.what);
        }
    }
    let name = format!("{model_name}_greedy_{label}");
    let snap = common::repo().join(format!(
        "conformance/tests/snapshots/golden_tokens__{name}.snap"
    ));
    if !label.starts_with("cpu") && !snap.is_file() {
        // A device without a committed snapshot yet (a new vendor, arch or wave): the streams
        // are written out for review and commit. On a GPU machine (WAVEFRONT_REQUIRE_GPU=1)
        // that is a failure: a run that compares nothing must not pass.
        let dir = common::repo().join("target/golden-streams");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(format!("{name}.json")),
            serde_json::to_string_pretty(&streams).unwrap(),
        )
        .unwrap();
        let msg = format!(
            "no snapshot for {label} yet: streams written to target/golden-streams/{name}.json"
        );
        assert!(
            !wavefront::backend::gpu::require_gpu(),
            "WAVEFRONT_REQUIRE_GPU=1: {msg}; review and commit it as {}",
            snap.display()
        );
        println!("{msg}");
        return;
    }
    insta::assert_json_snapshot!(name, streams);
}

#[test]
fn cpu_greedy_streams_match_transformers_on_smollm2() {
    golden_streams(CpuBackend::default(), "cpu", SMOLLM2);
}

/// `--cpu-dots q8`: 8-bit activations for the integer dot products, within the divergence
/// rule's gap derived with that rounding (`DType::Q8_0Kv` inputs).
#[test]
fn cpu_greedy_streams_with_8_bit_activations_match_transformers_on_smollm2() {
    let b = CpuBackend::default().with_dots(wavefront::backend::cpu::Dots::Q8);
    golden_streams(b, "cpu_q8", SMOLLM2);
}

#[test]
fn cpu_greedy_streams_with_8_bit_activations_match_transformers_on_gemma3() {
    let b = CpuBackend::default().with_dots(wavefront::backend::cpu::Dots::Q8);
    golden_streams(b, "cpu_q8", GEMMA3);
}

/// Per runtime, arch and wave: kernels that differ in reduction order may break near-ties
/// differently, within the divergence rule.
#[test]
fn gpu_greedy_streams_match_transformers_on_smollm2() {
    for wave in common::gpu_waves() {
        let b = common::gpu(wave).unwrap();
        let label = wavefront_conformance::golden::stream_label(&b);
        golden_streams(b, &label, SMOLLM2);
    }
}

/// Gemma 3 270M Q4_K_M (Q5_0, Q4_K, Q6_K and Q8_0 blocks; SentencePiece vocabulary of 262 144;
/// five sliding layers to one global): the CPU keeps the blocks.
#[test]
fn cpu_greedy_streams_match_transformers_on_gemma3() {
    golden_streams(CpuBackend::default(), "cpu", GEMMA3);
}

#[test]
fn gpu_greedy_streams_match_transformers_on_gemma3() {
    for wave in common::gpu_waves() {
        let b = common::gpu(wave).unwrap();
        let label = wavefront_conformance::golden::stream_label(&b);
        golden_streams(b, &label, GEMMA3);
    }
}
