//! The decode step's attention with RoPE and the KV write fused in, split over the keys
//! (`kernels/decode_attention.hip`): one query row at position `pos0`; RoPE on q and k, k and v
//! stored at `pos0`, causal attention over keys `0 ..= pos0` (with a sliding window of `w` keys,
//! `pos0 + 1 − w ..= pos0`: the splits cover only those, the keys before are never read). Shapes
//! the kernel does not take
//! (f32 KV, head dims off a multiple of 16, below 32 or past 256, more than one row) go through
//! the separate `rope_kv_write` and `attention` ops.
//!
//! Two kernels take the shapes it fuses ([`Kernel`]): the matrix-instruction one
//! (`decode_attention_mma_{64,128}_{T}`: 16-bit KV at head dims 64 and 128, q and the softmax
//! weights rounded to the KV type for the products) where it can, the vector one
//! (`decode_attention_{T}`) for the rest, and for everything under
//! `WAVEFRONT_NO_MMA_DECODE=1` or [`crate::backend::Backend::simple_attention`]. Measured on an
//! H100 (bench/results/2026-12-06-decode-mma-h100, one call): the matrix kernel takes 24%, 11%
//! and 6% off the vector one's time on the 8B shape at 8192, 32768 and 131071 keys (32.8 → 24.8,
//! 70.6 → 63.0, 215.4 → 203.3 µs).

use super::attention::ScoreArgs;
use super::{kernel_args, suffix};
use crate::backend::gpu::vendor::{DevicePtr, KernelArg, LaunchConfig};
use crate::backend::gpu::{bad, int, GpuBackend, GpuTensor};
use crate::backend::{check_tensor, AttentionParams, BatchRow, TensorInfo};
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
/// Key steps a load batch (ABI: `DA_UNROLL`).
const UNROLL: usize = 2;
/// Load batches in the async path's shared-memory ring (ABI: `DA_STAGES`; a kernel directory
/// with fewer uses part of it).
const RING_STAGES: usize = 4;
const _: () = assert!(RING_STAGES >= 2, "the async path needs two slots");
/// The kernels with the async path (16-bit KV): their launches give the ring.
pub(in crate::backend::gpu) const RING_KERNELS: [&str; 4] = [
    "decode_attention_f16",
    "decode_attention_bf16",
    "decode_attention_rows_f16",
    "decode_attention_rows_bf16",
];
/// Blocks per multiprocessor the split count aims at, at the longest contexts (ABI:
/// `DA_MIN_BLOCKS`, the blocks the kernel's launch bounds make resident).
const BLOCKS_PER_MP: usize = 2;

/// The workspace the backend allocates once (never reallocated, so captured steps stay
/// valid): the counters (one i32 per block column, zero between launches), then the splits'
/// partial accumulators and (max, sum) pairs. One row's launch takes at most `WS_FLOATS` of
/// them (the split count is sized by it); a rows launch gives each row its own slice of
/// `WS_ROW_SLICES · WS_FLOATS` and its own counters, so it takes at least `WS_ROW_SLICES` rows.
pub(in crate::backend::gpu) const WS_COUNTERS: usize = 4096;
pub(in crate::backend::gpu) const WS_FLOATS: usize = 1 << 20;
const WS_ROW_SLICES: usize = 4;
pub(in crate::backend::gpu) const WS_BYTES: usize = (WS_COUNTERS + WS_ROW_SLICES * WS_FLOATS) * 4;
/// Most rows a rows launch takes (ABI: `DA_ROWS`, the size of `DaRows`' arrays).
pub(in crate::backend::gpu) const MAX_ROWS: usize = 16;
/// What a rows launch does at each row's position (ABI: `DecodeAttentionMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::backend::gpu) enum Mode {
    /// Write K/V and attend (a batched pass's rows, each over its own cache).
    Full = 0,
    /// Attend; the K/V at the position is already written.
    AttendOnly = 1,
    /// Write K/V only (one split).
    KvOnly = 2,
}

/// Waves a block of the matrix-instruction kernels (ABI: `DM_WAVES`): blocks of
/// `MMA_WAVES · wave` threads.
const MMA_WAVES: usize = 4;
/// Query heads a block of the matrix-instruction kernels (ABI: `DM_GROUP`): one m-tile.
const MMA_GROUP: usize = 16;
/// Keys a wave's tile (ABI: `DM_TILE`).
const MMA_TILE: usize = 16;
/// Values of padding a tile row (ABI: `DM_PAD`).
const MMA_PAD: usize = 8;
/// Tiles a wave's ring holds on the async path (ABI: `DM_RING`).
const MMA_RING: usize = 3;
/// Fewest keys a split of the matrix-instruction kernels takes (ABI: `DM_MIN_KEYS`). 128, not
/// 64: a short context walks one more tile a wave instead of paying the split combine (H100,
/// tg128 at depth 0: SmolLM2 1,912 tok/s against 1,772, the 1B 930 against 906; the microbench
/// at 1024 and 8192 keys unchanged; 256 lost at 1024 keys; `bench/results/2026-12-06-sync-h100/`).
const MMA_MIN_KEYS: usize = 128;
/// The head dims the matrix-instruction kernels take (`decode_attention_mma_{HD}_{T}`; the
/// crate's `backend::gpu::MMA_DECODE_HEAD_DIMS`).
pub const MMA_HEAD_DIMS: [usize; 2] = [64, 128];

/// Which decode attention kernel a launch takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::backend::gpu) enum Kernel {
    /// `decode_attention_{T}`: every fusable shape, 4 query heads a block.
    Vector,
    /// `decode_attention_mma_{hd}_{T}`: the scores and P·V on matrix instructions, 16 query
    /// heads a block; 16-bit KV, head_dim 64 or 128.
    Mma { hd: usize },
}

impl Kernel {
    /// The kernel for `p` over a KV arena of `kv` (the caller checked [`fusable`]): the
    /// matrix-instruction one where it takes the shape and `mma` (the backend's switch) allows.
    pub(in crate::backend::gpu) fn pick(p: &AttentionParams, kv: DType, mma: bool) -> Kernel {
        let sixteen = matches!(kv, DType::F16 | DType::BF16);
        if mma && sixteen && MMA_HEAD_DIMS.contains(&p.head_dim) {
            Kernel::Mma { hd: p.head_dim }
        } else {
            Kernel::Vector
        }
    }

    /// Query heads a block column.
    fn group(self) -> usize {
        match self {
            Kernel::Vector => GROUP,
            Kernel::Mma { .. } => MMA_GROUP,
        }
    }

    fn min_keys(self) -> usize {
        match self {
            Kernel::Vector => MIN_KEYS,
            Kernel::Mma { .. } => MMA_MIN_KEYS,
        }
    }

    /// Threads a block on a device of `wave` lanes a wave.
    fn block(self, wave: u32) -> u32 {
        match self {
            Kernel::Vector => BLOCK,
            Kernel::Mma { .. } => MMA_WAVES as u32 * wave,
        }
    }

    /// The one-row (`rows` false) or rows kernel's name over `kv`.
    fn name(self, kv: DType, rows: bool) -> Result<String> {
        let t = suffix(OP, kv)?;
        let r = if rows { "rows_" } else { "" };
        Ok(match self {
            Kernel::Vector => format!("decode_attention_{r}{t}"),
            Kernel::Mma { hd } => format!("decode_attention_mma_{r}{hd}_{t}"),
        })
    }

    /// The launch's dynamic shared memory.
    fn shared_bytes(self, cp_async: bool, kv: DType) -> u32 {
        match self {
            Kernel::Vector => ring_bytes(cp_async, kv),
            Kernel::Mma { hd } => mma_shared_bytes(cp_async, hd),
        }
    }
}

/// The dynamic shared memory of a matrix-instruction launch of head dim `hd`: the largest of
/// the waves' K/V tiles (a ring of `MMA_RING` each on the async path, one elsewhere), the
/// waves' merge (O, m, ℓ of 16 rows each, f32) and the split combine (m, ℓ of 16 heads ×
/// `MAX_SPLITS`, f32).
pub(in crate::backend::gpu) fn mma_shared_bytes(cp_async: bool, hd: usize) -> u32 {
    let stages = if cp_async { MMA_RING } else { 1 };
    let tiles = MMA_WAVES * stages * 2 * MMA_TILE * (hd + MMA_PAD) * 2;
    let merge = MMA_WAVES * MMA_GROUP * (hd + 2) * 4;
    let combine = 2 * MMA_GROUP * MAX_SPLITS * 4;
    tiles.max(merge).max(combine) as u32
}

/// Every matrix-instruction kernel (one-row and rows forms) with its dynamic shared memory on
/// a device whose kernels have the async path or not: the backend allows them that much at
/// open.
pub(in crate::backend::gpu) fn mma_kernels_shared(cp_async: bool) -> Vec<(String, u32)> {
    let mut all = Vec::new();
    for hd in MMA_HEAD_DIMS {
        for kv in [DType::F16, DType::BF16] {
            for rows in [false, true] {
                let k = Kernel::Mma { hd };
                if let Ok(name) = k.name(kv, rows) {
                    all.push((name, k.shared_bytes(cp_async, kv)));
                }
            }
        }
    }
    all
}

/// The kernel of a one-row launch of `p` over a cache of `layout` on `b`, and its split count.
fn plan(
    b: &GpuBackend,
    p: &AttentionParams,
    layout: &crate::kv_cache::KvLayout,
) -> (Kernel, usize) {
    let kernel = Kernel::pick(p, layout.dtype, b.mma_decode());
    let mp = b.info().multiprocessors as usize;
    (
        kernel,
        max_splits(mp, p, layout.capacity, kernel, b.attn_blocks()),
    )
}

/// The number of block columns (`n_kv_heads · slabs`, a slab the kernel's query heads a block).
fn columns(p: &AttentionParams, kernel: Kernel) -> usize {
    p.n_kv_heads * (p.n_heads / p.n_kv_heads).div_ceil(kernel.group())
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
        && columns(p, Kernel::Vector) <= WS_COUNTERS
        && p.n_heads * (p.head_dim + 2) <= WS_FLOATS
}

/// The dynamic shared memory of a decode attention launch over `kv` on this device: the ring of
/// the async path (`RING_STAGES` batches of `UNROLL` key steps, a 16-byte vector a thread a
/// step) where the kernels are built with it (common.h `WF_CP_ASYNC`) and the KV type takes it
/// (16-bit), else none.
pub(in crate::backend::gpu) fn ring_bytes(cp_async: bool, kv: DType) -> u32 {
    let sixteen = matches!(kv, DType::F16 | DType::BF16);
    if sixteen && cp_async {
        (RING_STAGES * UNROLL * BLOCK as usize * 16) as u32
    } else {
        0
    }
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
    kernel: Kernel,
    blocks_per_mp: Option<u32>,
) -> usize {
    let blocks = blocks_per_mp.map_or(BLOCKS_PER_MP, |n| n as usize);
    let want = (multiprocessors * blocks).div_ceil(columns(p, kernel));
    let room = WS_FLOATS / (p.n_heads * (p.head_dim + 2));
    let keys = p.window.map_or(capacity, |w| w.min(capacity));
    let most = keys
        .div_ceil(kernel.min_keys())
        .min(room)
        .clamp(1, MAX_SPLITS);
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
    check_rows(q, k, v, inv_freq, out, cache, &p, row + 1, p.pos0 + 1)?;
    let (qd, kvd) = (p.n_heads * hd, p.n_kv_heads * hd);
    let (kernel, s_max) = plan(b, &p, &layout);
    let (ws, counters) = b.attention_workspace();
    let arena = cache.arena_mut();
    launch_decode_attention(
        b,
        kernel,
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
        columns(&p, kernel),
    )
}

/// The fused kernel's checks: `p` (one row) fusable over the cache, q, k, v and out holding
/// `rows` rows, the frequencies, the arena, and `end` positions within the capacity.
#[allow(clippy::too_many_arguments)]
fn check_rows(
    q: &GpuTensor,
    k: &GpuTensor,
    v: &GpuTensor,
    inv_freq: &GpuTensor,
    out: &GpuTensor,
    cache: &KvCache<GpuTensor>,
    p: &AttentionParams,
    rows: usize,
    end: usize,
) -> Result<()> {
    let hd = p.head_dim;
    let layout = *cache.layout();
    p.check_scores("gpu", OP)?;
    if !fusable(p, layout.dtype) {
        return Err(bad(OP, format!("the fused kernel does not take {p:?}")));
    }
    let (qd, kvd) = (p.n_heads * hd, p.n_kv_heads * hd);
    let f32 = &[DType::F32];
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
    if end > layout.capacity {
        return Err(Error::ContextFull {
            capacity: layout.capacity,
            requested: end,
        });
    }
    check_tensor(
        "gpu",
        OP,
        "arena",
        cache.arena(),
        layout.elems(),
        &[DType::F16, DType::BF16, DType::Q8_0Kv],
    )
}

/// Rows a rows launch of `p`'s shape takes at split count `s_max`: each its own slice of the
/// workspace's partials (n_heads · s_max · (head_dim + 2) floats) and counters (columns).
fn rows_per_launch(p: &AttentionParams, s_max: usize, kernel: Kernel) -> usize {
    let floats = p.n_heads * s_max * (p.head_dim + 2);
    (WS_ROW_SLICES * WS_FLOATS / floats)
        .min(WS_COUNTERS / columns(p, kernel))
        .clamp(1, MAX_ROWS)
}

/// Whether a batched pass's rows take the rows kernel: every row with a step, fusable, with
/// the first row's params (but `pos0`, each row's own), cache layout and frequencies.
pub(in crate::backend::gpu) fn batch_fusable(rows: &[BatchRow<'_, GpuBackend>]) -> bool {
    let Some(first) = rows.first() else {
        return false;
    };
    let layout = *first.cache.layout();
    let shape = |p: &AttentionParams| AttentionParams { pos0: 0, ..*p };
    rows.len() > 1
        && fusable(&first.p, layout.dtype)
        && rows.iter().all(|r| {
            r.step.is_some()
                && shape(&r.p) == shape(&first.p)
                && *r.cache.layout() == layout
                && r.inv_freq.ptr() == first.inv_freq.ptr()
        })
}

/// A batched pass's rows (each over its own cache at its step's position) in rows launches of
/// `decode_attention_rows_{T}` (`Mode::Full`): row i's bits are its one-row launch's. The
/// caller checked [`batch_fusable`].
pub(in crate::backend::gpu) fn rope_attention_batch(
    b: &GpuBackend,
    q: &GpuTensor,
    k: &GpuTensor,
    v: &GpuTensor,
    out: &mut GpuTensor,
    rows: &mut [BatchRow<'_, GpuBackend>],
) -> Result<()> {
    if !batch_fusable(rows) {
        return Err(bad(OP, "the rows kernel does not take these rows".into()));
    }
    let n = rows.len();
    for r in rows.iter() {
        check_rows(q, k, v, r.inv_freq, out, r.cache, &r.p, n, r.p.pos0 + 1)?;
    }
    let first = &rows[0];
    let (p, layout) = (first.p, *first.cache.layout());
    let (kernel, s_max) = plan(b, &p, &layout);
    let per = rows_per_launch(&p, s_max, kernel);
    let inv_freq = first.inv_freq.ptr();
    let mut row0 = 0;
    for group in rows.chunks_mut(per) {
        let mut targets = Vec::with_capacity(group.len());
        for r in group.iter_mut() {
            let step = r.step.map(super::super::step::GpuStep::block_ptr);
            targets.push((r.cache.arena_mut().ptr(), step.unwrap_or(0)));
        }
        let launch = RowsLaunch {
            row0,
            pos0: p.pos0,
            s_max,
            mode: Mode::Full,
            kernel,
        };
        launch_rows(b, layout, &p, [q, k, v], inv_freq, out, &targets, launch)?;
        row0 += group.len();
    }
    Ok(())
}

/// One sequence's rows at positions `p.pos0 ..` as its decode steps (`p.rows` of them): a
/// `Mode::KvOnly` rows launch writes every row's K/V, then `Mode::AttendOnly` launches attend
/// (row i reads rows `< i` from the arena and its own key from shared memory, as its decode
/// step does): row i's bits are its one-row launch's at `p.pos0 + i`.
#[allow(clippy::too_many_arguments)]
pub(in crate::backend::gpu) fn rope_attention_steps(
    b: &GpuBackend,
    q: &GpuTensor,
    k: &GpuTensor,
    v: &GpuTensor,
    out: &mut GpuTensor,
    inv_freq: &GpuTensor,
    cache: &mut KvCache<GpuTensor>,
    p: AttentionParams,
    input: Option<&crate::backend::gpu::StepsInput>,
) -> Result<()> {
    let row = AttentionParams { rows: 1, ..p };
    check_rows(q, k, v, inv_freq, out, cache, &row, p.rows, p.pos0 + p.rows)?;
    if let Some(i) = input.filter(|i| p.rows > i.rows()) {
        return Err(bad(
            OP,
            format!("{} rows from a steps input of {}", p.rows, i.rows()),
        ));
    }
    let layout = *cache.layout();
    let (kernel, s_max) = plan(b, &row, &layout);
    let arena = cache.arena_mut().ptr();
    for (mode, s_max, per) in [
        (Mode::KvOnly, 1, MAX_ROWS),
        (
            Mode::AttendOnly,
            s_max,
            rows_per_launch(&row, s_max, kernel),
        ),
    ] {
        let mut row0 = 0;
        while row0 < p.rows {
            let n = per.min(p.rows - row0);
            let launch = RowsLaunch {
                row0,
                pos0: p.pos0 + row0,
                s_max,
                mode,
                kernel,
            };
            // Each row's position: pos0 + z as given, or from the input's record of the row
            // (the kernel reads a step block's position word), so a captured pass replays at
            // the positions written before it.
            let targets: Vec<(DevicePtr, DevicePtr)> = (row0..row0 + n)
                .map(|r| (arena, input.map_or(0, |i| i.record_ptr(r))))
                .collect();
            launch_rows(
                b,
                layout,
                &row,
                [q, k, v],
                inv_freq.ptr(),
                out,
                &targets,
                launch,
            )?;
            row0 += n;
        }
    }
    Ok(())
}

/// Where a rows launch starts and what it does.
#[derive(Debug, Clone, Copy)]
struct RowsLaunch {
    /// Its first row in q, k, v and out.
    row0: usize,
    /// The first row's position where the rows have no step (row z: pos0 + z).
    pos0: usize,
    s_max: usize,
    mode: Mode,
    kernel: Kernel,
}

/// `decode_attention_rows_{T}` over a (columns, s_max, rows) grid: row z of the launch is row
/// `l.row0 + z` of q, k, v and out, over `targets[z]` = (arena, step block or 0).
#[allow(clippy::too_many_arguments)]
fn launch_rows(
    b: &GpuBackend,
    layout: crate::kv_cache::KvLayout,
    p: &AttentionParams,
    [q, k, v]: [&GpuTensor; 3],
    inv_freq: DevicePtr,
    out: &mut GpuTensor,
    targets: &[(DevicePtr, DevicePtr)],
    l: RowsLaunch,
) -> Result<()> {
    if targets.is_empty() || targets.len() > MAX_ROWS {
        return Err(bad(OP, format!("a rows launch of {} rows", targets.len())));
    }
    let name = l.kernel.name(layout.dtype, true)?;
    let (qd, kvd) = (p.n_heads * p.head_dim, p.n_kv_heads * p.head_dim);
    let cfg = LaunchConfig {
        grid: (
            columns(p, l.kernel) as u32,
            l.s_max as u32,
            targets.len() as u32,
        ),
        block: (l.kernel.block(b.wave()), 1, 1),
        shared_bytes: l.kernel.shared_bytes(b.cp_async(), layout.dtype),
    };
    let (ws, counters) = b.attention_workspace();
    let ptrs = [
        q.ptr_at(l.row0 * qd),
        k.ptr_at(l.row0 * kvd),
        v.ptr_at(l.row0 * kvd),
        inv_freq,
        out.ptr_at(l.row0 * qd),
        ws,
        counters,
    ];
    let dims = [
        int(OP, "layer", p.layer)?,
        int(OP, "pos0", l.pos0)?,
        int(OP, "n_heads", p.n_heads)?,
        int(OP, "n_kv_heads", p.n_kv_heads)?,
        int(OP, "head_dim", p.head_dim)?,
        int(OP, "capacity", layout.capacity)?,
        int(OP, "s_max", l.s_max)?,
    ];
    // DaRows: the arenas, then the step blocks, MAX_ROWS each.
    let mut words = vec![0u64; 2 * MAX_ROWS];
    for (z, &(arena, step)) in targets.iter().enumerate() {
        words[z] = arena;
        words[MAX_ROWS + z] = step;
    }
    let tail = [
        KernelArg::F32(p.scale()),
        KernelArg::I32(int(OP, "window", p.window.unwrap_or(0))?),
        KernelArg::F32(p.softcap_arg()),
        KernelArg::I32(l.mode as i32),
        KernelArg::Words(words),
    ];
    let args = kernel_args(&ptrs, &dims, &tail);
    // SAFETY: the caller checked q, k, v, inv_freq and out for row0 + rows rows, each arena
    // against the (shared) layout with every position < capacity; the workspace holds each
    // row's slice (rows_per_launch) and counters. The kernel reads nothing an earlier kernel
    // writes before its dependency wait (overlapped).
    unsafe { launch(b, &name, cfg, &args) }
}

/// `kernel`'s one-row form (`decode_attention_{T}`, `decode_attention_mma_{HD}_{T}`) over a
/// (columns, s_max) grid.
/// `ptrs` = q, k, v, inv_freq, arena, out, ws, counters; `dims` = layer, pos0, n_heads,
/// n_kv_heads, head_dim, capacity, s_max (the ABI order); `step` = a step block whose position
/// replaces pos0, or 0 (null); `scores` = the scale, the sliding window's keys (0: none) and
/// the soft-cap (0: none).
#[allow(clippy::too_many_arguments)]
pub(in crate::backend::gpu) fn launch_decode_attention(
    b: &GpuBackend,
    kernel: Kernel,
    arena_dtype: DType,
    ptrs: [DevicePtr; 8],
    dims: [i32; 7],
    step: DevicePtr,
    scores: ScoreArgs,
    columns: usize,
) -> Result<()> {
    let name = kernel.name(arena_dtype, false)?;
    let cfg = LaunchConfig {
        grid: (columns as u32, dims[6] as u32, 1),
        block: (kernel.block(b.wave()), 1, 1),
        shared_bytes: kernel.shared_bytes(b.cp_async(), arena_dtype),
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
    // counters and WS_FLOATS ≥ n_heads · s_max · (head_dim + 2) floats (max_splits). The
    // kernel reads nothing an earlier kernel writes before its dependency wait (overlapped).
    unsafe { launch(b, &name, cfg, &args) }
}

/// Queues a decode attention kernel: overlapped (every kernel of decode_attention.hip waits
/// for the kernels ahead before it reads what they write), or plainly with
/// `WAVEFRONT_NO_OVERLAPPED_ATTENTION=1`.
///
/// # Safety
/// As [`GpuBackend::launch`].
unsafe fn launch(b: &GpuBackend, name: &str, cfg: LaunchConfig, args: &[KernelArg]) -> Result<()> {
    if b.overlap_attention {
        b.launch_overlapped(name, cfg, args)
    } else {
        b.launch(name, cfg, args)
    }
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

    /// The ring where common.h compiles the async path (NVIDIA sm_80+ at WAVE=32) and for the
    /// 16-bit KV types only (Q8_0 keeps its register pipeline); 32 KiB there, which with the
    /// kernel's ~35 KiB of static shared memory still lets two blocks share an SM of sm_80+.
    #[test]
    fn the_ring_is_on_nvidia_sm80_and_later_at_wave32_for_16_bit_kv() {
        use super::super::cp_async_build;
        use crate::backend::gpu::vendor::{DeviceInfo, Runtime};
        let ring = |runtime, arch: &str, wave, kv| {
            let info = DeviceInfo {
                runtime,
                ordinal: 0,
                name: String::new(),
                arch: arch.into(),
                wave: 32,
                total_memory: 1 << 30,
                multiprocessors: 1,
                runtime_version: String::new(),
            };
            ring_bytes(cp_async_build(&info, wave), kv)
        };
        assert_eq!(ring(Runtime::Cuda, "sm_90", 32, DType::BF16), 32768);
        assert_eq!(ring(Runtime::Cuda, "sm_90", 32, DType::F16), 32768);
        assert_eq!(ring(Runtime::Cuda, "sm_90", 32, DType::Q8_0Kv), 0);
        assert_eq!(
            ring(Runtime::Cuda, "sm_90", 64, DType::BF16),
            0,
            "the emulated wave64"
        );
        assert_eq!(ring(Runtime::Cuda, "sm_75", 32, DType::BF16), 0);
        assert_eq!(ring(Runtime::Hip, "gfx1100", 32, DType::F16), 0);
        assert_eq!(ring(Runtime::Hip, "gfx942", 64, DType::BF16), 0);
    }

    #[test]
    fn split_count_fills_the_device_within_the_workspace() {
        // Llama-3.1-8B on 132 SMs: 8 columns → 33 splits (2 blocks an SM); capped by a short
        // capacity.
        let p = params(32, 8, 128);
        assert_eq!(max_splits(132, &p, 131072, Kernel::Vector, None), 33);
        assert_eq!(max_splits(132, &p, 100, Kernel::Vector, None), 2);
        assert_eq!(max_splits(132, &p, 1, Kernel::Vector, None), 1);
        // A sliding window of 512 keys: at most 8 splits of 64, whatever the capacity.
        let w = AttentionParams {
            window: Some(512),
            ..p
        };
        assert_eq!(max_splits(132, &w, 131072, Kernel::Vector, None), 8);
        assert_eq!(max_splits(132, &w, 100, Kernel::Vector, None), 2);
        // A group of 8 takes two slabs per KV head: 16 columns.
        assert_eq!(
            max_splits(132, &params(64, 8, 128), 131072, Kernel::Vector, None),
            17
        );
        // The matrix-instruction kernel: 16 query heads a block column (a group of 8 is one
        // slab, not two), and a set number of blocks a multiprocessor.
        let mma = Kernel::Mma { hd: 128 };
        assert_eq!(max_splits(132, &params(64, 8, 128), 131072, mma, None), 33);
        assert_eq!(max_splits(132, &p, 131072, mma, Some(1)), 17);
        assert_eq!(max_splits(132, &p, 131072, Kernel::Vector, Some(4)), 66);
        // Many heads: the workspace bounds it (n_heads · s_max · (hd + 2) ≤ WS_FLOATS).
        let big = params(2048, 2048, 256);
        assert!(fusable(&big, DType::F16));
        let s = max_splits(100_000, &big, 1 << 20, Kernel::Vector, None);
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
