//! The decode step's attention with RoPE and the KV write fused in, split over the keys
//! (`kernels/decode_attention.hip`): one query row at position `pos0`; RoPE on q and k, k and v
//! stored at `pos0`, causal attention over keys `0 ..= pos0` (with a sliding window of `w` keys,
//! `pos0 + 1 − w ..= pos0`: the splits cover only those, the keys before are never read). Shapes
//! the kernel does not take
//! (f32 KV, head dims off a multiple of 16, below 32 or past 256, more than one row) go through
//! the separate `rope_kv_write` and `attention` ops.

use super::attention::ScoreArgs;
use super::{kernel_args, suffix};
use crate::backend::gpu::vendor::{DevicePtr, KernelArg, LaunchConfig};
use crate::backend::gpu::{bad, int, GpuBackend, GpuTensor};
use crate::backend::{check_tensor, AttentionParams, TensorInfo};
use crate::error::{Error, Result};
use crate::kv_cache::KvCache;
use crate::tensor::DType;

const OP: &str = "rope_attention";
/// Threads per block (ABI: `DA_BLOCK`).
const BLOCK: u32 = 256;
/// Query heads per block (ABI: `DA_GROUP`): a GQA group of more is split into slabs.
const GROUP: usize = 4;
/// Fewest keys a split takes (ABI: `DA_MIN_KEYS`).
const MIN_KEYS: usize = 64;
/// Most splits the kernel accepts (ABI: `DA_MAX_SPLITS`).
pub(in crate::backend::gpu) const MAX_SPLITS: usize = 256;
/// Largest head_dim (ABI: `DA_MAX_HEAD_DIM`).
const MAX_HEAD_DIM: usize = 256;
/// Blocks per multiprocessor the split count aims at, at the longest contexts (ABI:
/// `DA_MIN_BLOCKS`, the blocks the kernel's launch bounds make resident).
const BLOCKS_PER_MP: usize = 2;

/// The workspace the backend allocates once (never reallocated, so captured steps stay
/// valid): the counters (one i32 per block column, zero between launches), then the splits'
/// partial accumulators and (max, sum) pairs.
pub(in crate::backend::gpu) const WS_COUNTERS: usize = 4096;
pub(in crate::backend::gpu) const WS_FLOATS: usize = 1 << 20;
pub(in crate::backend::gpu) const WS_BYTES: usize = (WS_COUNTERS + WS_FLOATS) * 4;

/// Query heads per block column and the number of columns (`n_kv_heads · slabs`).
fn columns(p: &AttentionParams) -> usize {
    p.n_kv_heads * (p.n_heads / p.n_kv_heads).div_ceil(GROUP)
}

/// Whether the fused kernel takes `p` over a KV arena of `kv`.
pub(in crate::backend::gpu) fn fusable(p: &AttentionParams, kv: DType) -> bool {
    p.rows == 1
        && matches!(kv, DType::F16 | DType::BF16 | DType::Q8_0Kv)
        && p.head_dim.is_multiple_of(16)
        && p.head_dim >= 32
        && p.head_dim <= MAX_HEAD_DIM
        && p.n_kv_heads > 0
        && p.n_heads.is_multiple_of(p.n_kv_heads)
        && p.n_heads > 0
        && columns(p) <= WS_COUNTERS
        && p.n_heads * (p.head_dim + 2) <= WS_FLOATS
}

/// The split count of the launch (`s_max`): enough block columns × splits to give every
/// multiprocessor `BLOCKS_PER_MP` blocks at long contexts, no more than the capacity (or the
/// window: the most keys a row sees) can use, within the workspace. Depends on the model's shape
/// and window, the device and the capacity only, never on the length, so one captured launch
/// serves every step.
pub(in crate::backend::gpu) fn max_splits(
    multiprocessors: usize,
    p: &AttentionParams,
    capacity: usize,
) -> usize {
    let want = (multiprocessors * BLOCKS_PER_MP).div_ceil(columns(p));
    let room = WS_FLOATS / (p.n_heads * (p.head_dim + 2));
    let keys = p.window.map_or(capacity, |w| w.min(capacity));
    let most = keys.div_ceil(MIN_KEYS).min(room).clamp(1, MAX_SPLITS);
    want.clamp(1, most)
}

#[allow(clippy::too_many_arguments)]
pub(in crate::backend::gpu) fn rope_attention(
    b: &GpuBackend,
    q: &GpuTensor,
    k: &GpuTensor,
    v: &GpuTensor,
    inv_freq: &GpuTensor,
    cache: &mut KvCache<GpuTensor>,
    out: &mut GpuTensor,
    p: AttentionParams,
    step: Option<DevicePtr>,
) -> Result<()> {
    rope_attention_row(b, 0, q, k, v, inv_freq, cache, out, p, step)
}

/// [`rope_attention`] of row `row` of `q`, `k`, `v` into row `row` of `out` (a batched decode
/// pass's row, addressed where it is: the same launch as for a one-row tensor, its pointers
/// moved by whole rows).
#[allow(clippy::too_many_arguments)]
pub(in crate::backend::gpu) fn rope_attention_row(
    b: &GpuBackend,
    row: usize,
    q: &GpuTensor,
    k: &GpuTensor,
    v: &GpuTensor,
    inv_freq: &GpuTensor,
    cache: &mut KvCache<GpuTensor>,
    out: &mut GpuTensor,
    p: AttentionParams,
    step: Option<DevicePtr>,
) -> Result<()> {
    let hd = p.head_dim;
    let layout = *cache.layout();
    p.check_scores("gpu", OP)?;
    if !fusable(&p, layout.dtype) {
        return Err(bad(OP, format!("the fused kernel does not take {p:?}")));
    }
    let (qd, kvd) = (p.n_heads * hd, p.n_kv_heads * hd);
    let f32 = &[DType::F32];
    let rows = row + 1;
    check_tensor("gpu", OP, "q", q, rows * qd, f32)?;
    check_tensor("gpu", OP, "k", k, rows * kvd, f32)?;
    check_tensor("gpu", OP, "v", v, rows * kvd, f32)?;
    check_tensor("gpu", OP, "inv_freq", inv_freq, hd / 2 + 1, f32)?;
    check_tensor("gpu", OP, "out", out, rows * qd, f32)?;
    if layout.head_dim != hd || layout.n_kv_heads != p.n_kv_heads || p.layer >= layout.n_layers {
        return Err(bad(
            OP,
            format!("params {p:?} do not match the KV layout {layout:?}"),
        ));
    }
    if p.pos0 + 1 > layout.capacity {
        return Err(Error::ContextFull {
            capacity: layout.capacity,
            requested: p.pos0 + 1,
        });
    }
    check_tensor(
        "gpu",
        OP,
        "arena",
        cache.arena(),
        layout.elems(),
        &[DType::F16, DType::BF16, DType::Q8_0Kv],
    )?;
    let s_max = max_splits(b.info().multiprocessors as usize, &p, layout.capacity);
    let (ws, counters) = b.attention_workspace();
    let arena = cache.arena_mut();
    launch_decode_attention(
        b,
        arena.dtype(),
        [
            q.ptr_at(row * qd),
            k.ptr_at(row * kvd),
            v.ptr_at(row * kvd),
            inv_freq.ptr(),
            arena.ptr(),
            out.ptr_at(row * qd),
            ws,
            counters,
        ],
        [
            int(OP, "layer", p.layer)?,
            int(OP, "pos0", p.pos0)?,
            int(OP, "n_heads", p.n_heads)?,
            int(OP, "n_kv_heads", p.n_kv_heads)?,
            int(OP, "head_dim", hd)?,
            int(OP, "capacity", layout.capacity)?,
            int(OP, "s_max", s_max)?,
        ],
        step.unwrap_or(0),
        ScoreArgs {
            scale: p.scale(),
            window: int(OP, "window", p.window.unwrap_or(0))?,
            softcap: p.softcap_arg(),
        },
        columns(&p),
    )
}

/// `decode_attention_{T}` over a (columns, s_max) grid of 256-thread blocks.
/// `ptrs` = q, k, v, inv_freq, arena, out, ws, counters; `dims` = layer, pos0, n_heads,
/// n_kv_heads, head_dim, capacity, s_max (the ABI order); `step` = a step block whose position
/// replaces pos0, or 0 (null); `scores` = the scale, the sliding window's keys (0: none) and
/// the soft-cap (0: none).
pub(in crate::backend::gpu) fn launch_decode_attention(
    b: &GpuBackend,
    arena_dtype: DType,
    ptrs: [DevicePtr; 8],
    dims: [i32; 7],
    step: DevicePtr,
    scores: ScoreArgs,
    columns: usize,
) -> Result<()> {
    let name = format!("decode_attention_{}", suffix(OP, arena_dtype)?);
    let cfg = LaunchConfig {
        grid: (columns as u32, dims[6] as u32, 1),
        block: (BLOCK, 1, 1),
        shared_bytes: 0,
    };
    let tail = [
        KernelArg::F32(scores.scale),
        KernelArg::Ptr(step),
        KernelArg::I32(scores.window),
        KernelArg::F32(scores.softcap),
    ];
    let args = kernel_args(&ptrs, &dims, &tail);
    // SAFETY: the caller checked q, k, v, inv_freq and out against the params and the arena
    // against its layout, with pos0 < capacity; the workspace holds WS_COUNTERS ≥ columns
    // counters and WS_FLOATS ≥ n_heads · s_max · (head_dim + 2) floats (max_splits).
    unsafe { b.launch(&name, cfg, &args) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(n_heads: usize, n_kv_heads: usize, head_dim: usize) -> AttentionParams {
        AttentionParams {
            layer: 0,
            pos0: 0,
            rows: 1,
            n_heads,
            n_kv_heads,
            head_dim,
            window: None,
            score_scale: None,
            softcap: None,
        }
    }

    #[test]
    fn split_count_fills_the_device_within_the_workspace() {
        // Llama-3.1-8B on 132 SMs: 8 columns → 33 splits (2 blocks an SM); capped by a short
        // capacity.
        let p = params(32, 8, 128);
        assert_eq!(max_splits(132, &p, 131072), 33);
        assert_eq!(max_splits(132, &p, 100), 2);
        assert_eq!(max_splits(132, &p, 1), 1);
        // A sliding window of 512 keys: at most 8 splits of 64, whatever the capacity.
        let w = AttentionParams {
            window: Some(512),
            ..p
        };
        assert_eq!(max_splits(132, &w, 131072), 8);
        assert_eq!(max_splits(132, &w, 100), 2);
        // A group of 8 takes two slabs per KV head: 16 columns.
        assert_eq!(max_splits(132, &params(64, 8, 128), 131072), 17);
        // Many heads: the workspace bounds it (n_heads · s_max · (hd + 2) ≤ WS_FLOATS).
        let big = params(2048, 2048, 256);
        assert!(fusable(&big, DType::F16));
        let s = max_splits(100_000, &big, 1 << 20);
        assert!(s >= 1 && big.n_heads * s * (big.head_dim + 2) <= WS_FLOATS);
    }

    #[test]
    fn fused_kernel_takes_decode_rows_of_16_bit_kv_only() {
        let p = params(32, 8, 128);
        assert!(fusable(&p, DType::BF16) && fusable(&p, DType::F16));
        assert!(!fusable(&p, DType::F32));
        assert!(!fusable(&AttentionParams { rows: 2, ..p }, DType::F16));
        assert!(!fusable(&params(32, 8, 72), DType::F16)); // not a multiple of 16
        assert!(!fusable(&params(32, 8, 16), DType::F16)); // below 32
        assert!(fusable(&params(32, 8, 48), DType::F16));
        assert!(!fusable(&params(32, 8, 512), DType::F16));
        assert!(!fusable(&params(30, 8, 128), DType::F16)); // not a multiple of n_kv
    }
}
