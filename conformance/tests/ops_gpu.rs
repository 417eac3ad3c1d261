//! Every op case on the GPU at every wave variant (native, and WAVE=64 emulated on NVIDIA),
//! then once more on kernels built with their path marks: every path of every kernel must be
//! reached by some case. Skips, saying so, where no GPU is usable (CI).

mod common;

use wavefront::backend::gpu::{detect_with, GpuOptions};
use wavefront_conformance::{cases, coverage, report};

#[test]
fn the_fixed_grid_passes_on_the_gpu_at_every_wave() {
    for wave in common::gpu_waves() {
        let b = common::gpu(wave).unwrap();
        let r = report::run(&b, &cases::grid(), &format!("WAVE={wave}"));
        println!("{}", r.markdown());
        assert!(r.uncovered.is_empty(), "{:?}", r.uncovered);
        let failures = r.failure_lines();
        assert!(
            failures.is_empty(),
            "WAVE={wave}: {} failures:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}

#[test]
fn every_kernel_path_is_reached_by_a_case_at_every_wave() {
    for wave in common::gpu_waves() {
        let opts = GpuOptions {
            wave: Some(wave),
            coverage: true,
            ..GpuOptions::from_env()
        };
        let b = detect_with(&opts).unwrap();
        assert!(b.has_coverage());
        let c = coverage::run(&b, &cases::grid(), &format!("WAVE={wave}")).unwrap();
        println!("{}", c.markdown());
        assert!(
            c.all_reached(),
            "WAVE={wave}: unreached {:?}",
            c.unreached()
        );
    }
}
