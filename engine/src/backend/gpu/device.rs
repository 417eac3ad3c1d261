//! Device selection: which runtime to try, in which order, and why none worked.
//!
//! `WAVEFRONT_GPU` = `cuda` | `hip` | `off` | `auto` (unset: `auto`, CUDA then HIP).
//! `WAVEFRONT_CUDA_LIB` / `WAVEFRONT_HIP_LIB` name the driver library to load instead of the
//! default sonames (a specific install, or a nonexistent file to test the no-library path).

use super::vendor::{cuda, hip, DeviceInfo, OpenError, Runtime};
use super::{GpuBackend, GpuOptions};
use crate::error::Error;

/// The runtimes to try for a `WAVEFRONT_GPU` value; `Err` is the reason there are none.
pub fn runtime_order(value: Option<&str>) -> Result<Vec<Runtime>, String> {
    match value.map(str::trim) {
        None | Some("") | Some("auto") => Ok(vec![Runtime::Cuda, Runtime::Hip]),
        Some("cuda") => Ok(vec![Runtime::Cuda]),
        Some("hip") => Ok(vec![Runtime::Hip]),
        Some("off") => Err("the GPU is disabled (WAVEFRONT_GPU=off)".into()),
        Some(other) => Err(format!(
            "WAVEFRONT_GPU={other} is not one of cuda, hip, auto, off"
        )),
    }
}

fn env_order() -> Result<Vec<Runtime>, String> {
    runtime_order(std::env::var("WAVEFRONT_GPU").ok().as_deref())
}

/// Whether `WAVEFRONT_REQUIRE_GPU=1`: GPU machines (device sessions, ROCm CI) set it so that a
/// GPU test that would skip fails instead, and a missing golden snapshot fails.
pub fn require_gpu() -> bool {
    std::env::var("WAVEFRONT_REQUIRE_GPU").is_ok_and(|v| v.trim() == "1")
}

/// The first usable GPU (CUDA, then HIP, unless `WAVEFRONT_GPU` says otherwise), with the
/// device's own wave size. When none opens: `Failed` if any runtime had a device that failed
/// (that failure, never hidden behind another runtime's absence), else `Unavailable` with one
/// clause per runtime tried.
pub fn detect() -> Result<GpuBackend, OpenError> {
    detect_with(&GpuOptions::from_env())
}

pub fn detect_with(opts: &GpuOptions) -> Result<GpuBackend, OpenError> {
    let mut reasons = Vec::new();
    let mut failure = None;
    for rt in env_order().map_err(OpenError::Unavailable)? {
        match GpuBackend::open(rt, opts) {
            Ok(b) => return Ok(b),
            Err(OpenError::Unavailable(r)) => reasons.push(format!("{}: {r}", rt_label(rt))),
            Err(OpenError::Failed(e)) => {
                failure.get_or_insert(e);
            }
        }
    }
    match failure {
        Some(e) => Err(OpenError::Failed(e)),
        None => Err(OpenError::Unavailable(reasons.join("; "))),
    }
}

/// Which backend a command asks for (`--backend`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BackendChoice {
    /// The GPU when one is usable, else the CPU.
    #[default]
    Auto,
    Cpu,
    Gpu,
}

/// The backend [`select`] chose.
// Made once per process and taken apart at once: the GPU variant's size costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Selected {
    Gpu(GpuBackend),
    /// The CPU; with `Auto`, `no_gpu` says why there is no GPU (`detect`'s reason).
    Cpu {
        no_gpu: Option<String>,
    },
}

/// Why [`select`] chose no backend.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    /// `Gpu` asked for, and no runtime or device is there.
    #[error("no usable GPU: {0}")]
    NoGpu(String),
    /// A GPU is there but failed to open (a broken install, a kernel that does not compile):
    /// an error even under `Auto`, never hidden behind a silent CPU run.
    #[error("the GPU failed to start: {0}")]
    Failed(Error),
}

/// The backend `choice` asks for: with `Auto`, the GPU when one is usable and the CPU when
/// there is none (saying why).
pub fn select(choice: BackendChoice, opts: &GpuOptions) -> Result<Selected, SelectError> {
    if choice == BackendChoice::Cpu {
        return Ok(Selected::Cpu { no_gpu: None });
    }
    match detect_with(opts) {
        Ok(b) => Ok(Selected::Gpu(b)),
        Err(OpenError::Unavailable(reason)) if choice == BackendChoice::Auto => Ok(Selected::Cpu {
            no_gpu: Some(reason),
        }),
        Err(OpenError::Unavailable(reason)) => Err(SelectError::NoGpu(reason)),
        Err(OpenError::Failed(e)) => Err(SelectError::Failed(e)),
    }
}

fn rt_label(rt: Runtime) -> &'static str {
    match rt {
        Runtime::Cuda => "CUDA",
        Runtime::Hip => "HIP",
    }
}

/// Every device of every runtime `WAVEFRONT_GPU` allows, and for each runtime without
/// devices the reason (prefixed `error:` where a runtime loaded but failed).
pub fn device_report() -> (Vec<DeviceInfo>, Vec<String>) {
    let order = match env_order() {
        Ok(o) => o,
        Err(r) => return (Vec::new(), vec![r]),
    };
    let (mut found, mut reasons) = (Vec::new(), Vec::new());
    for rt in order {
        let r = match rt {
            Runtime::Cuda => cuda::devices(),
            Runtime::Hip => hip::devices(),
        };
        match r {
            Ok(d) if d.is_empty() => reasons.push(format!("{}: no device", rt_label(rt))),
            Ok(d) => found.extend(d),
            Err(OpenError::Unavailable(r)) => reasons.push(format!("{}: {r}", rt_label(rt))),
            Err(OpenError::Failed(e)) => reasons.push(format!("{}: error: {e}", rt_label(rt))),
        }
    }
    (found, reasons)
}

/// Every device found (see [`device_report`] for the reasons when empty).
pub fn devices() -> Vec<DeviceInfo> {
    device_report().0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_order_follows_the_override() {
        assert_eq!(
            runtime_order(None).unwrap(),
            vec![Runtime::Cuda, Runtime::Hip]
        );
        assert_eq!(
            runtime_order(Some("auto")).unwrap(),
            vec![Runtime::Cuda, Runtime::Hip]
        );
        assert_eq!(runtime_order(Some("cuda")).unwrap(), vec![Runtime::Cuda]);
        assert_eq!(runtime_order(Some(" hip ")).unwrap(), vec![Runtime::Hip]);
        assert_eq!(
            runtime_order(Some("off")).unwrap_err(),
            "the GPU is disabled (WAVEFRONT_GPU=off)"
        );
        assert!(runtime_order(Some("rocm"))
            .unwrap_err()
            .contains("WAVEFRONT_GPU=rocm is not one of"));
    }
}
