//! A GPU test skips only when there is no GPU (DESIGN.md "Conformance policy"). Shown by running
//! this binary's own GPU test (`gpu_probe`) in a child process:
//! - with `WAVEFRONT_REQUIRE_GPU=1` and no GPU (`WAVEFRONT_GPU=off` hides any), it fails;
//!   without it, it skips saying why (this part runs everywhere, CI included);
//! - on a GPU machine, with a planted kernel that does not compile (`WAVEFRONT_KERNELS_DIR`), it
//!   fails naming the compiler error, and so does `wavefront-conformance --kernels`.

mod common;

use std::process::{Command, Output};

use wavefront::backend::gpu::KernelSources;
use wavefront_conformance::cases::{self, Op};
use wavefront_conformance::report;

/// A GPU test like ops_gpu's: every `add` case at every wave variant.
#[test]
fn gpu_probe() {
    for wave in common::gpu_waves() {
        let b = common::gpu(wave).unwrap();
        let mut grid = cases::grid();
        grid.retain(|c| c.op() == Op::Add);
        let r = report::run(&b, &grid, &format!("WAVE={wave}"));
        assert!(r.failed() == 0, "{}", r.failure_lines().join("\n"));
    }
}

/// This test binary running only `gpu_probe`, with `env`.
fn probe(env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["gpu_probe", "--exact", "--nocapture", "--test-threads=1"]);
    c.env_remove("WAVEFRONT_REQUIRE_GPU")
        .env_remove("WAVEFRONT_KERNELS_DIR");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn without_a_gpu_the_gpu_tests_skip_unless_a_gpu_is_required() {
    let skipped = probe(&[("WAVEFRONT_GPU", "off")]);
    assert!(skipped.status.success(), "{}", text(&skipped));
    assert!(
        text(&skipped).contains("skipping GPU test: no usable GPU (the GPU is disabled"),
        "{}",
        text(&skipped)
    );
    let required = probe(&[("WAVEFRONT_GPU", "off"), ("WAVEFRONT_REQUIRE_GPU", "1")]);
    assert!(!required.status.success(), "{}", text(&required));
    assert!(
        text(&required).contains("WAVEFRONT_REQUIRE_GPU=1 but there is no usable GPU"),
        "{}",
        text(&required)
    );
}

#[test]
fn a_kernel_that_does_not_compile_fails_the_gpu_tests() {
    if common::gpu_waves().is_empty() {
        return; // no GPU: skipped above, saying why
    }
    let dir = tempfile::tempdir().unwrap();
    let set = KernelSources::Embedded.load().unwrap();
    for (f, t) in &set.files {
        let text = if f == "elementwise.hip" {
            format!("{t}\nthis line is not C++ (planted);\n")
        } else {
            t.clone()
        };
        std::fs::write(dir.path().join(f), text).unwrap();
    }
    std::fs::write(dir.path().join("common.h"), &set.common_h).unwrap();
    let broken = dir.path().to_str().unwrap();

    let o = probe(&[("WAVEFRONT_KERNELS_DIR", broken)]);
    assert!(!o.status.success(), "a broken kernel passed: {}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("the GPU is there but failed to open")
            && t.contains("CompileProgram")
            && t.contains("elementwise.hip"),
        "{t}"
    );

    let o = Command::new(env!("CARGO_BIN_EXE_wavefront-conformance"))
        .args(["--backend", "gpu", "--op", "add", "--kernels", broken])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("the GPU failed to start") && text(&o).contains("elementwise.hip"),
        "{}",
        text(&o)
    );
}
