//! Causal grouped-query attention over the KV arena: query row `i` at position `pos0 + i`, head
//! `h` reads KV head `h / (n_heads / n_kv_heads)` over keys `0 ..= pos0 + i` (with a sliding
//! window of W keys, only `pos0 + i − W < j`: both kernels take the window as an argument and
//! never read the keys before the first row's window). Both take the score scale and the
//! attention logit soft-cap (0: off) as arguments.
//!
//! Prefill rows (more than one) over f16/bf16/Q8_0 KV with a head dim that is a multiple of 16
//! up to 256 take the flash kernel (`kernels/flash_attention.hip`: matrix instructions, q and
//! the softmax weights rounded to the KV type, f16 over Q8_0, whose K and V are widened to f16);
//! everything else the simple kernel (`kernels/attention.hip`, f32 throughout).

use super::{kernel_args, suffix};
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
        || !p.n_heads.is_multiple_of(p.n_kv_heads)
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
    p.check_scores("gpu", OP)?;
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
        &[DType::F32, DType::F16, DType::BF16, DType::Q8_0Kv],
    )?;
    if p.rows == 0 || p.n_heads == 0 {
        return Ok(());
    }
    let ptrs = [q.ptr(), arena.ptr(), out.ptr()];
    let dims = [
        int(OP, "layer", p.layer)?,
        int(OP, "pos0", p.pos0)?,
        int(OP, "rows", p.rows)?,
        int(OP, "n_heads", p.n_heads)?,
        int(OP, "n_kv_heads", p.n_kv_heads)?,
        int(OP, "head_dim", hd)?,
        int(OP, "capacity", layout.capacity)?,
    ];
    let scores = ScoreArgs {
        scale: p.scale(),
        window: int(OP, "window", p.window.unwrap_or(0))?,
        softcap: p.softcap_arg(),
    };
    if b.flash_attention() && step.is_none() && flash_takes(&p, arena.dtype()) {
        return launch_flash_attention(b, arena.dtype(), ptrs, dims, scores);
    }
    launch_attention(b, arena.dtype(), ptrs, dims, step.unwrap_or(0), scores)
}

/// How the attention kernels form their scores (the launch constants after the dims): the
/// scale on `q·k`, the sliding window (0: none) and the soft-cap (0: none).
#[derive(Debug, Clone, Copy)]
pub(in crate::backend::gpu) struct ScoreArgs {
    pub scale: f32,
    pub window: i32,
    pub softcap: f32,
}

/// Largest head dim of the flash kernel (its `HD = 256` entry points).
const FLASH_MAX_HEAD_DIM: usize = 256;
/// Threads per flash block (ABI: `FA_BLOCK`); a block owns `16 · FLASH_BLOCK / wave / split`
/// rows of the flattened (row, head-in-group) index ([`flash_variant`]).
const FLASH_BLOCK: u32 = 256;

/// The flash entry point for `head_dim` (the smallest `HD` that holds it) and its split: the
/// waves that share a row tile, each owning `HD / split` of the dims (`FaTile::SPLIT`: at
/// `HD = 256` a pair, so that no wave holds all 256 dims of q and O).
fn flash_variant(head_dim: usize) -> (usize, usize) {
    match head_dim {
        0..=64 => (64, 1),
        65..=128 => (128, 1),
        _ => (256, 2),
    }
}

/// Whether the flash kernel takes `p` over a KV arena of `kv` (positions given, not read from a
/// step): prefill rows (a single row is decode: the fused decode kernel or
/// `attention_decode_{T}`), 16-bit or Q8_0 KV (Q8_0 widened to f16 for the matrix
/// instructions), head_dim a multiple of 16 in 16 ..= 256.
pub(in crate::backend::gpu) fn flash_takes(p: &AttentionParams, kv: DType) -> bool {
    p.rows > 1
        && matches!(kv, DType::F16 | DType::BF16 | DType::Q8_0Kv)
        && p.head_dim.is_multiple_of(16)
        && (16..=FLASH_MAX_HEAD_DIM).contains(&p.head_dim)
}

/// The flash kernel's grid: (n_kv_heads, row tiles), a row tile being `16 · 256 / wave / split`
/// flattened (row, head-in-group) indices: one m-tile of 16 rows for every `split` waves, the
/// most tiles the entry point needs (one with MT m-tiles a wave leaves the blocks past its own
/// tile count idle; they return at once).
fn flash_grid(
    wave: u32,
    split: usize,
    rows: usize,
    n_heads: usize,
    n_kv_heads: usize,
) -> (u32, u32) {
    let tile = 16 * (FLASH_BLOCK / wave) as usize / split;
    let flat = rows * (n_heads / n_kv_heads);
    (n_kv_heads as u32, flat.div_ceil(tile) as u32)
}

/// log2 e as the kernel's FA_LOG2E (an f32).
const LOG2_E: f32 = std::f32::consts::LOG2_E;

/// `flash_attention_{64|128|256}_{T}` (the smallest that holds head_dim); the arguments of
/// [`launch_attention`] but the step (positions are given: a step's rows are decode rows), and
/// the soft-cap `c` as the kernel takes it, in the log2 units of its scores: `c · log2 e` and
/// `−2 / c` (both 0: off).
fn launch_flash_attention(
    b: &GpuBackend,
    arena_dtype: DType,
    ptrs: [DevicePtr; 3],
    dims: [i32; 7],
    scores: ScoreArgs,
) -> Result<()> {
    let (rows, n_heads, n_kv_heads, hd) = (dims[2], dims[3], dims[4], dims[5]);
    let (variant, split) = flash_variant(hd as usize);
    let name = format!("flash_attention_{variant}_{}", suffix(OP, arena_dtype)?);
    let grid = flash_grid(
        b.wave(),
        split,
        rows as usize,
        n_heads as usize,
        n_kv_heads as usize,
    );
    if grid.1 > 65535 {
        return Err(bad(
            OP,
            format!(
                "{rows} rows × {} heads a KV head exceed one launch's row tiles",
                n_heads / n_kv_heads
            ),
        ));
    }
    let cfg = LaunchConfig {
        grid: (grid.0, grid.1, 1),
        block: (FLASH_BLOCK, 1, 1),
        shared_bytes: 0,
    };
    let args = kernel_args(
        &ptrs,
        &dims,
        &[
            KernelArg::F32(scores.scale),
            KernelArg::I32(scores.window),
            KernelArg::F32(scores.softcap * LOG2_E),
            KernelArg::F32(if scores.softcap > 0.0 {
                -2.0 / scores.softcap
            } else {
                0.0
            }),
        ],
    );
    // SAFETY: the caller checked q and out against the params and the arena against its
    // layout, with pos0 + rows ≤ capacity; flash_takes bounds head_dim (multiple of 16, ≤ 256).
    unsafe { b.launch(&name, cfg, &args) }
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
    step: DevicePtr,
    scores: ScoreArgs,
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
    let tail = [
        KernelArg::F32(scores.scale),
        KernelArg::Ptr(step),
        KernelArg::I32(scores.window),
        KernelArg::F32(scores.softcap),
    ];
    let args = kernel_args(&ptrs, &dims, &tail);
    // SAFETY: the caller checked q and out against the params and the arena against its
    // layout, with pos0 + rows ≤ capacity and head_dim ≤ 256.
    unsafe { b.launch(&name, cfg, &args) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(rows: usize, n_heads: usize, n_kv_heads: usize, head_dim: usize) -> AttentionParams {
        AttentionParams {
            layer: 0,
            pos0: 0,
            rows,
            n_heads,
            n_kv_heads,
            head_dim,
            window: None,
            score_scale: None,
            softcap: None,
        }
    }

    #[test]
    fn flash_kernel_takes_prefill_rows_of_16_bit_kv_and_head_dims_to_256() {
        let p = params(512, 32, 8, 128);
        assert!(flash_takes(&p, DType::BF16) && flash_takes(&p, DType::F16));
        assert!(!flash_takes(&p, DType::F32));
        assert!(flash_takes(&p, DType::Q8_0Kv));
        assert!(!flash_takes(&params(1, 32, 8, 128), DType::BF16)); // decode
        assert!(flash_takes(&params(2, 32, 8, 64), DType::BF16));
        assert!(flash_takes(&params(7, 9, 3, 80), DType::F16));
        assert!(!flash_takes(&params(7, 8, 2, 72), DType::F16)); // not a multiple of 16
        assert!(flash_takes(&params(7, 8, 2, 256), DType::F16)); // Gemma
        assert!(flash_takes(&params(512, 4, 1, 256), DType::Q8_0Kv));
        assert!(flash_takes(&params(7, 8, 2, 160), DType::BF16));
        assert!(!flash_takes(&params(7, 8, 2, 272), DType::F16)); // past 256
        assert!(!flash_takes(&params(7, 8, 2, 6), DType::F16));
    }

    #[test]
    fn flash_variant_is_the_smallest_entry_point_that_holds_the_head_dim() {
        assert_eq!(flash_variant(16), (64, 1));
        assert_eq!(flash_variant(64), (64, 1));
        assert_eq!(flash_variant(80), (128, 1));
        assert_eq!(flash_variant(128), (128, 1));
        assert_eq!(flash_variant(144), (256, 2));
        assert_eq!(flash_variant(256), (256, 2));
    }

    #[test]
    fn flash_grid_tiles_the_flattened_rows_of_each_kv_head() {
        // Llama-3.1-8B, 512 rows: 4 heads a KV head → 2048 flattened rows; 128 a tile at wave 32,
        // 64 at wave 64.
        assert_eq!(flash_grid(32, 1, 512, 32, 8), (8, 16));
        assert_eq!(flash_grid(64, 1, 512, 32, 8), (8, 32));
        // A group of 3 and a partial tile: 7 · 3 = 21 rows → one tile.
        assert_eq!(flash_grid(32, 1, 7, 9, 3), (3, 1));
        assert_eq!(flash_grid(64, 1, 43, 9, 3), (3, 3)); // 129 rows, 64 a tile
                                                         // Gemma 3 270M (head_dim 256, 4 heads on 1 KV head), 512 rows: 2048 flattened rows, the
                                                         // waves in pairs: 64 a tile at wave 32, 32 at wave 64.
        assert_eq!(flash_grid(32, 2, 512, 4, 1), (1, 32));
        assert_eq!(flash_grid(64, 2, 512, 4, 1), (1, 64));
    }
}
