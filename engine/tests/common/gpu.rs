//! The GPU for a GPU test, or a skip that says why.

#![allow(dead_code)]

use std::io::Write;

use wavefront::backend::gpu::{detect, require_gpu, GpuBackend, OpenError};

/// The GPU, or `None` (the test skips, saying why) when there is no GPU runtime or device. A
/// GPU that fails to open, or none under `WAVEFRONT_REQUIRE_GPU=1`, fails the test.
pub fn gpu() -> Option<GpuBackend> {
    match detect() {
        Ok(b) => Some(b),
        Err(OpenError::Unavailable(r)) if !require_gpu() => {
            // Past libtest's capture, so CI logs show the skip.
            let _ = writeln!(
                std::io::stderr(),
                "skipping GPU test: no usable GPU ({})",
                r.lines().next().unwrap_or("")
            );
            None
        }
        Err(OpenError::Unavailable(r)) => {
            panic!("WAVEFRONT_REQUIRE_GPU=1 but there is no usable GPU: {r}")
        }
        Err(OpenError::Failed(e)) => panic!("the GPU is there but failed to open: {e}"),
    }
}
