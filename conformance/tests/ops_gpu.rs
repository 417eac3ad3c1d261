//! Every op case on the GPU at every wave variant (native, and WAVE=64 emulated on NVIDIA).
//! Skips, saying so, where no GPU is usable (CI).

mod common;

use wavefront_conformance::cases;
use wavefront_conformance::report;

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
