//! The `wavefront` binary as a test runs it, and the default model's path.

#![allow(dead_code)]

use std::process::{Command, Output};

/// Runs the binary with `args` and the GPU off (these tests are about the CLI, not a device).
pub fn wavefront(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wavefront"))
        .args(args)
        .env("WAVEFRONT_GPU", "off")
        .output()
        .expect("the wavefront binary runs")
}

/// The default model's path (fetched on first use).
pub fn default_model() -> String {
    wavefront::fetch::default_model()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}
