//! `wf_sampler_exp` of kernels/common.h, built for the host (`-DWF_HOST_TEST`, the build
//! ci/kernel-math-check.cpp uses) gives the bits of the Rust sampler's `sampler_exp` on every
//! input tried: the GPU kernel's softmax and the CPU's are one function. (The device builds
//! run the same operations; conformance's exact id comparisons check them there.) Skips,
//! saying so, without a C++ compiler, unless `WAVEFRONT_EXPECT_HIP_RUNTIME=1` (CI).

use std::io::Write;
use std::process::{Command, Stdio};

use wavefront::sampler::sampler_exp;

/// `$CXX`, else the first of `c++`, `g++`, `clang++` that runs.
fn compiler() -> Option<String> {
    let mut names: Vec<String> = std::env::var("CXX").into_iter().collect();
    names.extend(["c++", "g++", "clang++"].map(String::from));
    names.into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Reads little-endian f32s on stdin, writes wf_sampler_exp of each on stdout.
const PROGRAM: &str = r#"
#include <stdio.h>
#include "common.h"
int main() {
  float x;
  while (fread(&x, 4, 1, stdin) == 1) {
    float y = wf_sampler_exp(x);
    fwrite(&y, 4, 1, stdout);
  }
  return 0;
}
"#;

#[test]
fn the_kernel_header_exp_equals_the_rust_one_bit_for_bit() {
    let Some(cxx) = compiler() else {
        assert!(
            std::env::var("WAVEFRONT_EXPECT_HIP_RUNTIME").is_err(),
            "no C++ compiler ($CXX, c++, g++, clang++)"
        );
        eprintln!("skipping: no C++ compiler ($CXX, c++, g++ or clang++)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("exp.cpp");
    let exe = dir.path().join("exp");
    std::fs::write(&src, PROGRAM).unwrap();
    let kernels = concat!(env!("CARGO_MANIFEST_DIR"), "/../kernels");
    let out = Command::new(&cxx)
        .args(["-O2", "-DWAVE=32", "-DWF_HOST_TEST", "-I", kernels])
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .arg("-lm")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cxx} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every 1009th f32 bit pattern (both signs, NaNs and infinities included), and every f32
    // around the clamps, zero and the points where n = rne(x log2 e) steps.
    let mut xs: Vec<f32> = (0..=u32::MAX).step_by(1009).map(f32::from_bits).collect();
    let mut around = vec![
        f32::from_bits(0x42b1_7217),
        -104.0,
        0.0,
        -87.33,
        f32::INFINITY,
        f32::NEG_INFINITY,
    ];
    around.extend((-151..=128).map(|k| (k as f32 + 0.5) * std::f32::consts::LN_2));
    for c in around {
        xs.extend((-300..300).map(|d| f32::from_bits(c.to_bits().wrapping_add_signed(d))));
    }
    let input: Vec<u8> = xs.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut child = Command::new(&exe)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout.len(), xs.len() * 4);
    let mut mismatches = Vec::new();
    for (x, c) in xs.iter().zip(out.stdout.chunks_exact(4)) {
        let host = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        let rust = sampler_exp(*x);
        let same = host.to_bits() == rust.to_bits() || (host.is_nan() && rust.is_nan());
        if !same {
            mismatches.push((*x, host, rust));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} differ, first (x, C++, Rust): {:?}",
        mismatches.len(),
        xs.len(),
        &mismatches[..mismatches.len().min(8)]
    );
}
