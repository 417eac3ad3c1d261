//! Token embedding: `out (n_tokens, hidden) = table[tokens] · scale`, converted to f32 on the
//! device and multiplied by `p.scale` in f32
//! (a block-quantized table: its rows dequantized exactly, `dequant_{T}` of qgemv.hip).

use super::suffix;
use crate::backend::gpu::vendor::{DevicePtr, KernelArg, LaunchConfig};
use crate::backend::gpu::{bad, int, scratch_ptr};
use crate::backend::gpu::{GpuBackend, GpuTensor};
use crate::backend::{check_tensor, EmbeddingParams, TensorInfo};
use crate::error::Result;
use crate::tensor::DType;

const OP: &str = "embedding";

pub(in crate::backend::gpu) fn embedding(
    b: &GpuBackend,
    table: &GpuTensor,
    tokens: &[u32],
    out: &mut GpuTensor,
    p: EmbeddingParams,
) -> Result<()> {
    check_tensor("gpu", OP, "table", table, p.vocab * p.hidden, TABLES)?;
    check_tensor(
        "gpu",
        OP,
        "out",
        out,
        tokens.len() * p.hidden,
        &[DType::F32],
    )?;
    if let Some((i, t)) = tokens
        .iter()
        .enumerate()
        .find(|(_, &t)| t as usize >= p.vocab)
    {
        return Err(bad(
            OP,
            format!(
                "token id {t} at index {i} is outside the vocabulary ({})",
                p.vocab
            ),
        ));
    }
    if tokens.is_empty() {
        return Ok(());
    }
    let n_tokens = int(OP, "n_tokens", tokens.len())?;
    let hidden = int(OP, "hidden", p.hidden)?;
    // (n_tokens) i32 ids on the device
    let ids: Vec<u8> = tokens
        .iter()
        .flat_map(|&t| (t as i32).to_le_bytes())
        .collect();
    let mut scratch = b
        .scratch
        .lock()
        .map_err(|_| bad(OP, "scratch lock poisoned".into()))?;
    let ids_ptr = scratch_ptr(&b.vendor, &mut scratch.tokens, ids.len())?;
    b.vendor.htod(ids_ptr, &ids)?;
    launch_embedding(
        b,
        table,
        ids_ptr,
        out.ptr(),
        n_tokens,
        hidden,
        int(OP, "vocab", p.vocab)?,
        p.scale,
    )
}

/// [`embedding`] of the first `n` tokens of a steps input (ids already on the device, checked
/// against the vocabulary when they were written).
pub(in crate::backend::gpu) fn embedding_steps_input(
    b: &GpuBackend,
    table: &GpuTensor,
    input: &crate::backend::gpu::StepsInput,
    n: usize,
    out: &mut GpuTensor,
    p: EmbeddingParams,
) -> Result<()> {
    check_tensor("gpu", OP, "table", table, p.vocab * p.hidden, TABLES)?;
    check_tensor("gpu", OP, "out", out, n * p.hidden, &[DType::F32])?;
    if n > input.rows() {
        return Err(bad(
            OP,
            format!("{n} rows from a steps input of {}", input.rows()),
        ));
    }
    if n == 0 {
        return Ok(());
    }
    launch_embedding(
        b,
        table,
        input.ids_ptr(),
        out.ptr(),
        int(OP, "n_tokens", n)?,
        int(OP, "hidden", p.hidden)?,
        int(OP, "vocab", p.vocab)?,
        p.scale,
    )
}

/// Table types the embedding reads.
pub(in crate::backend::gpu) const TABLES: &[DType] = &super::WEIGHT_TYPES;

/// `embedding_{T}`: one block of 256 threads per token; a block-quantized table through
/// `dequant_{T}` with the ids (one block per token as well).
#[allow(clippy::too_many_arguments)]
pub(in crate::backend::gpu) fn launch_embedding(
    b: &GpuBackend,
    table: &GpuTensor,
    tokens: DevicePtr,
    out: DevicePtr,
    n_tokens: i32,
    hidden: i32,
    vocab: i32,
    scale: f32,
) -> Result<()> {
    if let [seg] = table.quant_segs() {
        let rows = super::qgemv::Rows::Ids { ids: tokens, vocab };
        let (n, k) = (n_tokens.max(0) as usize, hidden.max(0) as usize);
        return super::qgemv::launch_dequant(
            b,
            OP,
            seg,
            table.ptr(),
            rows,
            n,
            k,
            out,
            false,
            scale,
        );
    }
    let name = format!("embedding_{}", suffix(OP, table.dtype())?);
    let cfg = LaunchConfig {
        grid: (n_tokens as u32, 1, 1),
        block: (256, 1, 1),
        shared_bytes: 0,
    };
    let args = [
        KernelArg::Ptr(table.ptr()),
        KernelArg::Ptr(tokens),
        KernelArg::Ptr(out),
        KernelArg::I32(n_tokens),
        KernelArg::I32(hidden),
        KernelArg::I32(vocab),
        KernelArg::F32(scale),
    ];
    // SAFETY: the caller checked table ≥ vocab·hidden and out ≥ n_tokens·hidden; the kernel
    // reads no row for an id outside [0, vocab).
    unsafe { b.launch(&name, cfg, &args) }
}
