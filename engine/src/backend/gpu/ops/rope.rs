//! RoPE (HF rotate-half) fused with the KV write: rotates `q (rows, n_heads·head_dim)` in place,
//! writes rotated K and plain V into the arena at positions `pos0 .. pos0 + rows` of `layer`.

use super::{kernel_args, suffix};
use crate::backend::gpu::vendor::{DevicePtr, KernelArg, LaunchConfig};
use crate::backend::gpu::{bad, int, GpuBackend, GpuTensor};
use crate::backend::{check_tensor, RopeKvParams, TensorInfo};
use crate::error::{Error, Result};
use crate::kv_cache::KvCache;
use crate::tensor::DType;

const OP: &str = "rope_kv_write";

/// The largest head_dim the kernel takes (ABI: `ROPE_MAX_HEAD_DIM` in rope.hip: the row's
/// sin/cos table in shared memory).
pub(in crate::backend::gpu) const ROPE_MAX_HEAD_DIM: usize = 512;

#[allow(clippy::too_many_arguments)]
pub(in crate::backend::gpu) fn rope_kv_write(
    b: &GpuBackend,
    q: &mut GpuTensor,
    k: &GpuTensor,
    v: &GpuTensor,
    inv_freq: &GpuTensor,
    cache: &mut KvCache<GpuTensor>,
    p: RopeKvParams,
    step: Option<DevicePtr>,
) -> Result<()> {
    let hd = p.head_dim;
    let (qd, kvd) = (p.n_heads * hd, p.n_kv_heads * hd);
    let f32 = &[DType::F32];
    check_tensor("gpu", OP, "q", q, p.rows * qd, f32)?;
    check_tensor("gpu", OP, "k", k, p.rows * kvd, f32)?;
    check_tensor("gpu", OP, "v", v, p.rows * kvd, f32)?;
    check_tensor("gpu", OP, "inv_freq", inv_freq, hd / 2 + 1, f32)?;
    let layout = *cache.layout();
    if !hd.is_multiple_of(2)
        || hd > ROPE_MAX_HEAD_DIM
        || layout.head_dim != hd
        || layout.n_kv_heads != p.n_kv_heads
        || p.layer >= layout.n_layers
    {
        return Err(bad(
            OP,
            format!("params {p:?} do not match the KV layout {layout:?}"),
        ));
    }
    if p.pos0 + p.rows > layout.capacity {
        return Err(Error::ContextFull {
            capacity: layout.capacity,
            requested: p.pos0 + p.rows,
        });
    }
    check_tensor(
        "gpu",
        OP,
        "arena",
        cache.arena(),
        layout.elems(),
        &[DType::F32, DType::F16, DType::BF16, DType::Q8_0Kv],
    )?;
    if p.rows == 0 {
        return Ok(());
    }
    let ptrs = [
        q.ptr(),
        k.ptr(),
        v.ptr(),
        inv_freq.ptr(),
        cache.arena().ptr(),
    ];
    if layout.dtype == DType::Q8_0Kv && ptrs.iter().any(|&p| p % 16 != 0) {
        // (the kernel's contract: Q8_0 takes the 16-byte vector path only)
        return Err(bad(
            OP,
            "Q8_0 KV needs 16-byte aligned q, k, v, inv_freq".into(),
        ));
    }
    let arena = cache.arena_mut();
    launch_rope_kv_write(
        b,
        arena.dtype(),
        [q.ptr(), k.ptr(), v.ptr(), inv_freq.ptr(), arena.ptr()],
        [
            int(OP, "layer", p.layer)?,
            int(OP, "pos0", p.pos0)?,
            int(OP, "rows", p.rows)?,
            int(OP, "n_heads", p.n_heads)?,
            int(OP, "n_kv_heads", p.n_kv_heads)?,
            int(OP, "head_dim", hd)?,
            int(OP, "capacity", layout.capacity)?,
        ],
        step.unwrap_or(0),
    )
}

/// `rope_kv_write_{T}`: one block of 256 threads per row. `ptrs` = q, k, v, inv_freq, arena;
/// `dims` = layer, pos0, rows, n_heads, n_kv_heads, head_dim, capacity (the ABI order);
/// `step` = a step block whose position replaces pos0, or 0 (null).
pub(in crate::backend::gpu) fn launch_rope_kv_write(
    b: &GpuBackend,
    arena_dtype: DType,
    ptrs: [DevicePtr; 5],
    dims: [i32; 7],
    step: DevicePtr,
) -> Result<()> {
    let name = format!("rope_kv_write_{}", suffix(OP, arena_dtype)?);
    let rows = dims[2];
    let cfg = LaunchConfig {
        grid: (rows as u32, 1, 1),
        block: (256, 1, 1),
        shared_bytes: 0,
    };
    let args = kernel_args(&ptrs, &dims, &[KernelArg::Ptr(step)]);
    // SAFETY: the caller checked q, k, v, inv_freq against the params and the arena against
    // its layout, with pos0 + rows ≤ capacity.
    unsafe { b.launch(&name, cfg, &args) }
}
