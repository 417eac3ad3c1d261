//! Causal grouped-query attention over the KV arena: query row `i` at position `pos0 + i`, head
//! `h` reads KV head `h / (n_heads / n_kv_heads)` over keys `0 ..= pos0 + i`.

use super::suffix;
use crate::backend::gpu::vendor::{DevicePtr, KernelArg, LaunchConfig};
use crate::backend::gpu::{bad, int, GpuBackend, GpuTensor};
use crate::backend::{check_tensor, AttentionParams, TensorInfo};
use crate::error::Result;
use crate::kv_cache::KvCache;
use crate::tensor::DType;

const OP: &str = "attention";
/// The simple kernel keeps one query head vector in registers/shared memory.
const MAX_HEAD_DIM: usize = 256;

pub(in crate::backend::gpu) fn attention(
    b: &GpuBackend,
    q: &GpuTensor,
    cache: &KvCache<GpuTensor>,
    out: &mut GpuTensor,
    p: AttentionParams,
    step: Option<DevicePtr>,
) -> Result<()> {
    let hd = p.head_dim;
    let qd = p.n_heads * hd;
    check_tensor("gpu", OP, "q", q, p.rows * qd, &[DType::F32])?;
    check_tensor("gpu", OP, "out", out, p.rows * qd, &[DType::F32])?;
    let layout = *cache.layout();
    if p.n_kv_heads == 0
        || p.n_heads % p.n_kv_heads != 0
        || layout.head_dim != hd
        || layout.n_kv_heads != p.n_kv_heads
        || p.layer >= layout.n_layers
        || p.pos0 + p.rows > layout.capacity
    {
        return Err(bad(
            OP,
            format!("params {p:?} do not match the KV layout {layout:?}"),
        ));
    }
    if hd > MAX_HEAD_DIM {
        return Err(bad(
            OP,
            format!("head_dim {hd} exceeds the kernel's {MAX_HEAD_DIM}"),
        ));
    }
    let arena = cache.arena();
    check_tensor(
        "gpu",
        OP,
        "arena",
        arena,
        layout.elems(),
        &[DType::F32, DType::F16, DType::BF16],
    )?;
    if p.rows == 0 || p.n_heads == 0 {
        return Ok(());
    }
    launch_attention(
        b,
        arena.dtype(),
        [q.ptr(), arena.ptr(), out.ptr()],
        [
            int(OP, "layer", p.layer)?,
            int(OP, "pos0", p.pos0)?,
            int(OP, "rows", p.rows)?,
            int(OP, "n_heads", p.n_heads)?,
            int(OP, "n_kv_heads", p.n_kv_heads)?,
            int(OP, "head_dim", hd)?,
            int(OP, "capacity", layout.capacity)?,
        ],
        p.scale(),
        step.unwrap_or(0),
    )
}

/// `attention_{T}` over a (n_heads, rows) grid of 128-thread blocks, one per (head, query row);
/// a single row (decode) takes `attention_decode_{T}`, blocks of 1024 threads that walk its keys
/// 1024 / WAVE at a time.
/// `ptrs` = q, arena, out; `dims` = layer, pos0, rows, n_heads, n_kv_heads, head_dim, capacity;
/// `step` = a step block whose position replaces pos0, or 0 (null).
pub(in crate::backend::gpu) fn launch_attention(
    b: &GpuBackend,
    arena_dtype: DType,
    ptrs: [DevicePtr; 3],
    dims: [i32; 7],
    scale: f32,
    step: DevicePtr,
) -> Result<()> {
    let (rows, n_heads) = (dims[2], dims[3]);
    let kind = if rows == 1 {
        "attention_decode"
    } else {
        "attention"
    };
    let name = format!("{kind}_{}", suffix(OP, arena_dtype)?);
    let cfg = LaunchConfig {
        grid: (n_heads as u32, rows as u32, 1),
        block: (if rows == 1 { 1024 } else { 128 }, 1, 1),
        shared_bytes: 0,
    };
    let args: Vec<KernelArg> = ptrs
        .iter()
        .map(|&p| KernelArg::Ptr(p))
        .chain(dims.iter().map(|&d| KernelArg::I32(d)))
        .chain([KernelArg::F32(scale), KernelArg::Ptr(step)])
        .collect();
    // SAFETY: the caller checked q and out against the params and the arena against its
    // layout, with pos0 + rows ≤ capacity and head_dim ≤ 256.
    unsafe { b.launch(&name, cfg, &args) }
}
