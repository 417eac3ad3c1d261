//! The no-library path, end to end through the CLI: with the GPU runtimes pointed at files that
//! do not exist, `info --devices` says why there is no GPU, `run --backend gpu` fails with that
//! reason, `run --backend auto` prints one line and runs on the CPU. Nothing panics.

use std::process::{Command, Output};

const NO_CUDA: &str = "/nonexistent/wavefront-test/libcuda.so.1";
const NO_HIP: &str = "/nonexistent/wavefront-test/libamdhip64.so";

fn wavefront(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wavefront"))
        .args(args)
        .env("WAVEFRONT_CUDA_LIB", NO_CUDA)
        .env("WAVEFRONT_HIP_LIB", NO_HIP)
        .env_remove("WAVEFRONT_GPU")
        .output()
        .expect("the wavefront binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn assert_no_panic(o: &Output) {
    let err = text(&o.stderr);
    assert!(!err.contains("panicked"), "stderr: {err}");
}

#[test]
fn info_devices_names_the_missing_libraries() {
    let o = wavefront(&["info", "--devices"]);
    assert_no_panic(&o);
    assert!(o.status.success(), "{o:?}");
    let out = text(&o.stdout);
    assert!(out.starts_with("no GPU devices"), "{out}");
    assert!(
        out.contains(&format!("CUDA: no CUDA driver library (tried {NO_CUDA}; ")),
        "{out}"
    );
    assert!(
        out.contains(&format!("HIP: no HIP runtime library (tried {NO_HIP}; ")),
        "{out}"
    );
}

#[test]
fn backend_gpu_fails_with_the_reason() {
    let o = wavefront(&["run", "--backend", "gpu", "--max-tokens", "1", "hi"]);
    assert_no_panic(&o);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = text(&o.stderr);
    assert!(
        err.starts_with(&format!(
            "error: no usable GPU: CUDA: no CUDA driver library (tried {NO_CUDA}; "
        )),
        "{err}"
    );
    assert!(err.contains("; HIP: no HIP runtime library"), "{err}");
}

#[test]
fn backend_gpu_off_is_refused_by_name() {
    let o = Command::new(env!("CARGO_BIN_EXE_wavefront"))
        .args(["run", "--backend", "gpu", "hi"])
        .env("WAVEFRONT_GPU", "off")
        .output()
        .unwrap();
    assert_no_panic(&o);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        text(&o.stderr).trim(),
        "error: no usable GPU: the GPU is disabled (WAVEFRONT_GPU=off)"
    );
}

#[test]
fn backend_auto_falls_back_to_the_cpu_in_one_line() {
    let model = wavefront::fetch::default_model().unwrap();
    let model = model.to_string_lossy();
    let o = wavefront(&[
        "run",
        "--model",
        &model,
        "--max-tokens",
        "2",
        "--temperature",
        "0",
        "--format",
        "json",
        "The capital of France is",
    ]);
    assert_no_panic(&o);
    let err = text(&o.stderr);
    let mut lines = err.lines();
    let first = lines.next().unwrap_or("");
    assert!(
        first.starts_with("[no usable GPU (CUDA: no CUDA driver library (tried "),
        "{err}"
    );
    assert!(first.ends_with("falling back to the CPU]"), "{err}");
    assert!(o.status.success(), "{err}");
    assert_eq!(lines.next(), None, "{err}");
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["backend"], "cpu");
    assert_eq!(
        json["generated_tokens"].as_array().map(|a| a.len()),
        Some(2)
    );
}
