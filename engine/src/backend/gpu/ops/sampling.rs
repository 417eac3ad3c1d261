//! Sampling: greedy decoding takes the argmax on the device (only the id crosses to the host;
//! -1 when the logits cannot be sampled, which the reference refuses too);
//! anything else downloads the row and runs `crate::sampler::sample` (phase 1: CPU sampling).

use crate::backend::check_tensor;
use crate::backend::gpu::vendor::{DevicePtr, KernelArg, LaunchConfig};
use crate::backend::gpu::{bad, int, scratch_ptr, GpuBackend, GpuTensor};
use crate::error::Result;
use crate::sampler::SamplingParams;
use crate::tensor::DType;

const OP: &str = "sample";

pub(in crate::backend::gpu) fn sample(
    b: &GpuBackend,
    logits: &GpuTensor,
    row: usize,
    vocab: usize,
    params: &SamplingParams,
    history: &[u32],
    coin: f32,
) -> Result<u32> {
    check_tensor(
        "gpu",
        OP,
        "logits",
        logits,
        (row + 1) * vocab,
        &[DType::F32],
    )?;
    params.validate()?;
    if vocab == 0 {
        return Err(bad(OP, "vocab is 0".into()));
    }
    let row_ptr = logits.ptr_at(row * vocab);
    // The repetition penalty changes the argmax, so greedy with a penalty samples on the host.
    let penalty_applies = params.repeat_penalty != 1.0 && !history.is_empty();
    if params.is_greedy() && !penalty_applies {
        let n = int(OP, "vocab", vocab)?;
        let mut scratch = b
            .scratch
            .lock()
            .map_err(|_| bad(OP, "scratch lock poisoned".into()))?;
        let out = scratch_ptr(&b.vendor, &mut scratch.argmax, 4)?;
        launch_argmax(b, row_ptr, n, out)?;
        let mut id = [0u8; 4];
        b.vendor.dtoh(&mut id, out)?;
        let id = i32::from_le_bytes(id);
        return match usize::try_from(id) {
            Ok(i) if i < vocab => Ok(i as u32),
            // The reference sampler's refusal, for the same logits.
            _ if id == -1 => Err(crate::Error::InvalidRequest(
                "the logits row holds a NaN or +inf, or every logit is -inf".into(),
            )),
            _ => Err(bad(
                OP,
                format!("argmax returned {id} for a vocabulary of {vocab}"),
            )),
        };
    }
    let mut bytes = vec![0u8; vocab * 4];
    b.vendor.dtoh(&mut bytes, row_ptr)?;
    let row: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    crate::sampler::sample(&row, params, history, coin)
}

/// `argmax`: one block of 1024 threads over `n`; lowest index on ties, NaN never wins.
pub(in crate::backend::gpu) fn launch_argmax(
    b: &GpuBackend,
    x: DevicePtr,
    n: i32,
    out: DevicePtr,
) -> Result<()> {
    let cfg = LaunchConfig {
        grid: (1, 1, 1),
        block: (1024, 1, 1),
        shared_bytes: 0,
    };
    let args = [KernelArg::Ptr(x), KernelArg::I32(n), KernelArg::Ptr(out)];
    // SAFETY: the caller checked x holds ≥ n f32; out is a 4-byte scratch.
    unsafe { b.launch("argmax", cfg, &args) }
}

/// PLACEHOLDER until the device sampler lands (branch `sampler`).
pub(in crate::backend::gpu) struct SamplerWorkspace;

impl SamplerWorkspace {
    pub(in crate::backend::gpu) fn new(_b: &GpuBackend, _vocab: usize) -> Result<Self> {
        Ok(SamplerWorkspace)
    }
}

/// PLACEHOLDER until the device sampler lands (branch `sampler`).
#[allow(clippy::too_many_arguments)]
pub(in crate::backend::gpu) fn launch_sample_step(
    _b: &GpuBackend,
    _row: DevicePtr,
    _vocab: usize,
    _step: DevicePtr,
    _hist: DevicePtr,
    _hist_cap: usize,
    _window: usize,
    _params: &SamplingParams,
    _ws: &SamplerWorkspace,
) -> Result<()> {
    Err(bad(OP, "the device sampler is not built yet".into()))
}
