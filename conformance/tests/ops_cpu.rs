//! Every op case of the fixed grid, and proptest-drawn cases, on the CPU backend.

use proptest::prelude::*;
use wavefront::backend::cpu::CpuBackend;
use wavefront_conformance::cases::{self, Case};
use wavefront_conformance::report;

#[test]
fn the_fixed_grid_passes_on_the_cpu_with_every_op_covered() {
    let grid = cases::host_grid();
    let r = report::run(&CpuBackend::default(), &grid, "");
    println!("{}", r.markdown());
    assert!(
        r.uncovered.is_empty(),
        "ops with no case: {:?}",
        r.uncovered
    );
    let failures = r.failure_lines();
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// `--cpu-dots q8`: the fixed grid with 8-bit activations for the quantized weights, each
/// product within the bound derived with that rounding; the grid has quantized cases, whose
/// bound is the 8-bit one (looser than f32 inputs', so a case with the f32 bound would show
/// the rounding is there).
#[test]
fn the_fixed_grid_passes_on_the_cpu_with_8_bit_activations() {
    use wavefront::backend::cpu::Dots;
    let q8 = CpuBackend::default().with_dots(Dots::Q8);
    let grid = cases::host_grid();
    let r = report::run(&q8, &grid, "dots=q8");
    let failures = r.failure_lines();
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let quantized = cases::linear::grid()
        .into_iter()
        .filter(|c| c.tolerance(&q8).nmse > c.tolerance(&CpuBackend::default()).nmse)
        .count();
    assert!(quantized > 0, "no linear case with block-quantized weights");
}

#[test]
fn the_engine_sampler_exp_is_the_references_bit_for_bit() {
    // every 4099th f32 bit pattern: both signs, subnormals, NaNs, infinities
    for bits in (0..=u32::MAX).step_by(4099) {
        let x = f32::from_bits(bits);
        let (e, r) = (
            wavefront::sampler::sampler_exp(x),
            wavefront_reference::sampler::sampler_exp(x),
        );
        assert!(
            e.to_bits() == r.to_bits() || (e.is_nan() && r.is_nan()),
            "{x}"
        );
    }
}

fn check(case: Case) -> Result<(), TestCaseError> {
    let r = case
        .run(&CpuBackend::default())
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert!(
        r.pass(),
        "{} {}: {}",
        r.op.name(),
        r.case,
        r.failures().join("; ")
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn embedding(c in cases::embedding::strategy()) { check(Case::Embedding(c))? }

    #[test]
    fn rms_norm(c in cases::rms_norm::strategy()) { check(Case::RmsNorm(c))? }

    #[test]
    fn linear_and_logits(c in cases::linear::strategy()) { check(Case::Linear(c))? }

    #[test]
    fn gemv_stacked_and_gate_up(c in cases::gemv::strategy()) { check(Case::Gemv(c))? }

    #[test]
    fn rope_kv_write(c in cases::rope::strategy()) { check(Case::RopeKvWrite(c))? }

    #[test]
    fn attention(c in cases::attention::strategy()) { check(Case::Attention(c))? }

    #[test]
    fn rope_attention(c in cases::attention::rope_strategy()) { check(Case::Attention(c))? }

    #[test]
    fn swiglu_and_add(c in cases::elementwise::strategy()) { check(Case::Elementwise(c))? }

    #[test]
    fn sample(c in cases::sample::strategy()) { check(Case::Sample(c))? }
}

/// The projections under the GPU's arithmetic model (matmul inputs rounded to bf16 first,
/// `rounded::Rounded`): the derived bounds hold with that rounding in, also for the fused
/// gate/up + SwiGLU, whose bound adds the product's error propagation.
#[test]
fn the_gemv_family_passes_with_gpu_input_rounding() {
    let b = wavefront_conformance::rounded::Rounded::gpu_like();
    let mut worst = (0.0f64, String::new());
    for c in cases::gemv::grid() {
        let r = Case::Gemv(c).run(&b).unwrap();
        assert!(
            r.pass(),
            "{} {}: {}",
            r.op.name(),
            r.case,
            r.failures().join("; ")
        );
        let ratio = r.nmse() / r.tolerance;
        if ratio > worst.0 {
            worst = (ratio, format!("{} {}", r.op.name(), r.case));
        }
    }
    println!("largest NMSE / bound: {:.3} ({})", worst.0, worst.1);
}
