//! Batch-1 projections over 16-bit weights (`kernels/gemv.hip`): `out = x · Wᵀ (+ bias)` for up
//! to three matrices stacked along the output dimension (fused QKV), and the fused gate/up
//! projection with SwiGLU; optionally with the RMSNorm of x as the prologue (every block
//! recomputes the norm's scale: no `rms_norm` launch, no pass over h) and the residual add as the
//! epilogue (`out += x · Wᵀ` in place: no `add` or residual pass). x is rounded to the weights'
//! type inside the kernel (staged once per block in LDS when K ≤ [`GEMV_LDS_MAX`]), so there is
//! no convert pass and W is read once, at HBM bandwidth. The `launch_*` functions only queue work
//! (no synchronization, no allocation): a decode step is captured into a graph around them.

use crate::backend::gpu::vendor::{DevicePtr, KernelArg, LaunchConfig};
use crate::backend::gpu::{bad, GpuBackend};
use crate::backend::Activation;
use crate::error::Result;
use crate::tensor::DType;

/// Threads per block of the GEMV kernels (ABI: `GEMV_BLOCK` in gemv.hip).
pub(in crate::backend::gpu) const GEMV_BLOCK: u32 = 256;

/// The most input elements staged in LDS (ABI: `GEMV_LDS_MAX` in gemv.hip): 2·K bytes ≤ 32 KiB,
/// so two blocks share a 64 KiB CDNA LDS. Longer inputs are read through the cache by every wave.
pub(in crate::backend::gpu) const GEMV_LDS_MAX: usize = 16384;

/// The dynamic shared memory of a GEMV over `k` inputs: 2·k bytes rounded up to 16 when staged.
pub(in crate::backend::gpu) fn gemv_shared_bytes(k: usize) -> u32 {
    if k <= GEMV_LDS_MAX {
        (2 * k).next_multiple_of(16) as u32
    } else {
        0
    }
}

/// The most input rows that take the GEMV kernels (and so the most sequences of a batched
/// decode pass: [`crate::backend::Backend::batch_invariant_rows`]). A launch over n rows runs n
/// times the one-row grid, each input row's blocks computing exactly what a launch for that row
/// alone computes (`common.h` batch_block; the n blocks over the same weight rows run side by
/// side, so W comes from HBM about once and from the L2 for the other rows): the rows are
/// batch-invariant, where BLAS's GEMM picks its reduction by the number of rows. The work per
/// row stays a GEMV's, so only a batched decode pass takes them ([`uses_gemv`]). Rows whose
/// input does not start on 16 bytes (K not a multiple of 4) take the kernels' scalar paths, so
/// for such K the invariance needs the rows at the same alignment alone and batched.
pub(in crate::backend::gpu) const GEMV_MAX_ROWS: usize = 16;

/// Input rows a block of the several-row kernels (ABI: `GEMV_NB` in gemv.hip).
pub(in crate::backend::gpu) const GEMV_NB: usize = 8;

/// Weight rows a wave of `gemv_rows_{T}` (ABI: `GEMV_NR` in gemv.hip).
const GEMV_NR: u32 = 2;

/// The longest input the several-row kernels stage (`gemv_stage_{T}` writes the rounded inputs
/// of up to [`GEMV_MAX_ROWS`] rows to the backend's staging buffer of
/// [`GEMV_STAGE_BYTES`], allocated once so that captured passes may point into it).
pub(in crate::backend::gpu) const GEMV_ROWS_MAX_K: usize = 65536;

/// The staging buffer of the several-row kernels: [`GEMV_MAX_ROWS`] rows of
/// [`GEMV_ROWS_MAX_K`] 16-bit values (2 MiB).
pub(in crate::backend::gpu) const GEMV_STAGE_BYTES: usize = GEMV_MAX_ROWS * GEMV_ROWS_MAX_K * 2;

/// The fewest input rows that take the several-row kernels: below, n_in times the one-row
/// grid keeps more blocks in flight (H200, Llama-3.2-1B bf16, 55b1d6a: tg128 x2 1,162.6 tok/s
/// on the several-row kernels against 1,268.9 on the one-row grid; x4 1,515.1 against 1,497.4;
/// x16 2,367.2 against 1,587.1).
pub(in crate::backend::gpu) const GEMV_ROWS_MIN: i32 = 4;

/// Whether a product over `n_in` input rows takes the several-row kernels (`gemv_stage_{T}`,
/// then `gemv_rows_{T}` / `gemv_swiglu_rows_{T}`): [`GEMV_ROWS_MIN`] to [`GEMV_MAX_ROWS`] rows, K a multiple
/// of 8 up to [`GEMV_ROWS_MAX_K`], W, x and the norm weights on 16 bytes — where the one-row
/// kernel takes its vector path for every row, so that the several-row kernels, running the
/// same FMAs in the same order, give each row the bits of its launch alone. Anything else
/// keeps `n_in` times the one-row grid.
pub(in crate::backend::gpu) fn takes_rows_kernels(
    n_in: i32,
    k: i32,
    w: DevicePtr,
    x: DevicePtr,
    norm: Option<NormPrologue>,
) -> bool {
    (GEMV_ROWS_MIN..=GEMV_MAX_ROWS as i32).contains(&n_in) && staged_vectors(k, 8, w, x, norm)
}

/// The inputs the staging kernel writes and the several-row and matrix-core kernels read as
/// 16-byte vectors: K a positive multiple of `multiple` up to [`GEMV_ROWS_MAX_K`] (the
/// staging buffer), W, x and the norm weights on 16 bytes.
fn staged_vectors(
    k: i32,
    multiple: i32,
    w: DevicePtr,
    x: DevicePtr,
    norm: Option<NormPrologue>,
) -> bool {
    let on16 = |p: DevicePtr| p.is_multiple_of(16);
    k > 0
        && k % multiple == 0
        && k as usize <= GEMV_ROWS_MAX_K
        && on16(w)
        && on16(x)
        && norm.is_none_or(|n| on16(n.w))
}

/// The k of a matrix-core GEMV's slab (ABI: `GEMV_MMA_SLAB` in gemv.hip): K a multiple of it.
const GEMV_MMA_SLAB: i32 = 32;

/// Input rows a block of the matrix-core GEMVs (ABI: `GEMV_MMA_NB` in gemv.hip), and the
/// weight rows of its tile (`gemv_mma_{T}`; 8 outputs, their gate and up rows, for
/// `gemv_swiglu_mma_{T}`).
const GEMV_MMA_NB: u64 = 16;

/// Whether a product over `n_in` input rows takes the matrix-core kernels when they are on
/// (`gemv_stage_{T}`, then `gemv_mma_{T}` / `gemv_swiglu_mma_{T}`): 1 to [`GEMV_MAX_ROWS`]
/// rows, K a multiple of 32 up to [`GEMV_ROWS_MAX_K`], W, x and the norm weights on 16
/// bytes. The row count only bounds the staging buffer: the same shape takes them for one row
/// and for several, so each row's bits are those of its launch alone.
pub(in crate::backend::gpu) fn takes_mma_kernels(
    n_in: i32,
    k: i32,
    w: DevicePtr,
    x: DevicePtr,
    norm: Option<NormPrologue>,
) -> bool {
    (1..=GEMV_MAX_ROWS as i32).contains(&n_in) && staged_vectors(k, GEMV_MMA_SLAB, w, x, norm)
}

/// The matrix-core kernels' grid: `tiles` (over the weight rows) times the input groups of
/// [`GEMV_MMA_NB`].
fn mma_grid(op: &str, tiles: u64, n_in: i32) -> Result<LaunchConfig> {
    let groups = (n_in.max(1) as u64).div_ceil(GEMV_MMA_NB);
    let total = tiles
        .checked_mul(groups)
        .filter(|&t| t <= i32::MAX as u64)
        .ok_or_else(|| bad(op, format!("{tiles} tiles of {n_in} input rows")))?;
    Ok(LaunchConfig {
        grid: (total as u32, 1, 1),
        block: (GEMV_BLOCK, 1, 1),
        shared_bytes: 0,
    })
}

/// The matrix-core kernels' inputs and launch: the n_in rows staged by the kernel itself in
/// LDS when they fit [`GEMV_LDS_MAX`] elements (xh null: no staging launch; a decode step's
/// one row up to K = 16384), else by `gemv_stage_{T}` (xh the staging buffer). Either way the
/// same bits (both stage as `gemv_stage_{T}` does). The dynamic LDS holds the staged rows and,
/// after them, the waves' 16 × 16 f32 tiles. `tiles`: the blocks over the weight rows.
#[allow(clippy::too_many_arguments)]
fn mma_inputs(
    b: &GpuBackend,
    op: &str,
    dtype: DType,
    x: DevicePtr,
    norm: Option<NormPrologue>,
    k: i32,
    n_in: i32,
    tiles: u64,
) -> Result<(DevicePtr, LaunchConfig)> {
    let staged = n_in.max(0) as usize * k.max(0) as usize;
    let in_lds = b.gemv_mma_lds() && staged <= GEMV_LDS_MAX;
    let xh = if in_lds {
        0
    } else {
        launch_stage(b, op, dtype, x, norm, k, n_in)?
    };
    let mut cfg = mma_grid(op, tiles, n_in)?;
    let ring = mma_ring_bytes(b.cp_async());
    cfg.shared_bytes = mma_shared_bytes(b.wave, if in_lds { staged } else { 0 }, ring);
    Ok((xh, cfg))
}

/// Slabs in the matrix-core GEMVs' shared-memory ring of weights (ABI: `GEMV_MMA_STAGES`).
const MMA_STAGES: usize = 4;
/// The matrix-core kernels (their launches may need more than 48 KiB of dynamic shared memory
/// where the ring is: `GpuBackend::new` allows them [`mma_max_shared_bytes`]).
pub(in crate::backend::gpu) const MMA_KERNELS: [&str; 4] = [
    "gemv_mma_f16",
    "gemv_mma_bf16",
    "gemv_swiglu_mma_f16",
    "gemv_swiglu_mma_bf16",
];

/// The bytes of the matrix-core GEMVs' ring of weights on this device, 0 where the kernels
/// have none: their SYNC path on NVIDIA sm_80+ at the native WAVE=32 (common.h `WF_CP_ASYNC`,
/// compiled exactly there) prefetches `MMA_STAGES` slabs of 32 k for the block's 16 weight
/// rows (each of 256 threads two 16-byte vectors a slab) into shared memory.
pub(in crate::backend::gpu) fn mma_ring_bytes(cp_async: bool) -> usize {
    if cp_async {
        MMA_STAGES * 2 * GEMV_BLOCK as usize * 16
    } else {
        0
    }
}

/// The dynamic LDS of a matrix-core GEMV: `staged` 16-bit inputs then the `ring`, or the
/// waves' tiles (256 f32 a wave, written over both at the end) when larger.
fn mma_shared_bytes(wave: u32, staged: usize, ring: usize) -> u32 {
    let tiles = 4 * 256 * (GEMV_BLOCK / wave.max(1)) as usize;
    (2 * staged + ring).max(tiles) as u32
}

/// The most dynamic shared memory a matrix-core GEMV launch takes on this device.
pub(in crate::backend::gpu) fn mma_max_shared_bytes(wave: u32, cp_async: bool) -> u32 {
    mma_shared_bytes(wave, GEMV_LDS_MAX, mma_ring_bytes(cp_async))
}

/// The staged rows' stride: K rounded up to 8 (each row on 16 bytes).
fn stage_stride(k: i32) -> i32 {
    (k + 7) / 8 * 8
}

/// `gemv_stage_{T}`: x (n_in, k) → the staging buffer, normed when `norm`, rounded to `dtype`.
fn launch_stage(
    b: &GpuBackend,
    op: &str,
    dtype: DType,
    x: DevicePtr,
    norm: Option<NormPrologue>,
    k: i32,
    n_in: i32,
) -> Result<DevicePtr> {
    let name = kernel_name(op, "gemv_stage", dtype)?;
    let xh = b.gemv_stage_buffer();
    let cfg = LaunchConfig {
        grid: (n_in as u32, 1, 1),
        block: (GEMV_BLOCK, 1, 1),
        shared_bytes: 0,
    };
    let [norm_w, eps] = norm_args(norm);
    let args = [
        KernelArg::Ptr(x),
        norm_w,
        eps,
        KernelArg::Ptr(xh),
        KernelArg::I32(k),
        KernelArg::I32(stage_stride(k)),
    ];
    // SAFETY: takes_rows_kernels or takes_mma_kernels held (n_in ≤ GEMV_MAX_ROWS, k ≤ GEMV_ROWS_MAX_K: the staged
    // rows fit the buffer); the caller checked x ≥ n_in·k f32 and the norm weights ≥ k.
    unsafe { b.launch(&name, cfg, &args)? };
    Ok(xh)
}

/// The several-row kernels' grid: `blocks` (over the weight rows) times the input groups.
fn rows_grid(op: &str, blocks: u64, n_in: i32) -> Result<LaunchConfig> {
    let groups = (n_in.max(1) as u64).div_ceil(GEMV_NB as u64);
    let total = blocks
        .checked_mul(groups)
        .filter(|&t| t <= i32::MAX as u64)
        .ok_or_else(|| bad(op, format!("{blocks} blocks of {n_in} input rows")))?;
    Ok(LaunchConfig {
        grid: (total as u32, 1, 1),
        block: (GEMV_BLOCK, 1, 1),
        shared_bytes: 0,
    })
}

/// `cfg` (a one-row grid) for `n_in` input rows: `n_in` times the blocks.
pub(in crate::backend::gpu) fn batched(
    op: &str,
    cfg: LaunchConfig,
    n_in: i32,
) -> Result<LaunchConfig> {
    let blocks = u32::try_from(n_in)
        .ok()
        .filter(|&n| n >= 1)
        .and_then(|n| cfg.grid.0.checked_mul(n))
        .filter(|&b| b <= i32::MAX as u32)
        .ok_or_else(|| bad(op, format!("{n_in} input rows of {} blocks", cfg.grid.0)))?;
    Ok(LaunchConfig {
        grid: (blocks, 1, 1),
        ..cfg
    })
}

/// Whether a product of `rows` input rows with `w_dtype` weights runs on the GEMV kernels: one
/// row, or (`invariant`: inside `Backend::invariant_rows`, a batched decode pass) up to
/// [`GEMV_MAX_ROWS`]. A prompt chunk of a few rows stays on BLAS: the GEMV's work per row is
/// a batch-1 GEMV's (measured on the 8B shape: pp16 on the GEMVs 464 tok/s, pp17 on BLAS 2,527).
pub(in crate::backend::gpu) fn uses_gemv(rows: usize, w_dtype: DType, invariant: bool) -> bool {
    (rows == 1 || (invariant && rows <= GEMV_MAX_ROWS))
        && (matches!(w_dtype, DType::F16 | DType::BF16)
            || crate::backend::gpu::quant::quant_range(w_dtype).is_some())
}

/// One wave per output row: `ceil(rows / (GEMV_BLOCK / wave))` groups of `GEMV_BLOCK / wave`
/// rows, a block each (the one-row kernels then cap the blocks: [`group_launch`]).
pub(in crate::backend::gpu) fn gemv_grid(
    op: &str,
    rows: i64,
    k: usize,
    wave: u32,
) -> Result<LaunchConfig> {
    if wave == 0 || !GEMV_BLOCK.is_multiple_of(wave) {
        return Err(bad(op, format!("wave {wave} does not divide {GEMV_BLOCK}")));
    }
    let per_block = u64::from(GEMV_BLOCK / wave);
    let blocks = u64::try_from(rows)
        .ok()
        .map(|r| r.div_ceil(per_block))
        .and_then(|b| u32::try_from(b).ok().filter(|&b| b <= i32::MAX as u32))
        .ok_or_else(|| bad(op, format!("{rows} rows exceed a 1-D grid")))?;
    Ok(LaunchConfig {
        grid: (blocks, 1, 1),
        block: (GEMV_BLOCK, 1, 1),
        shared_bytes: gemv_shared_bytes(k),
    })
}

/// Blocks a multiprocessor holds at once of the one-row kernels where the runtime cannot say
/// (three of 256 threads at 74–80 registers fill an sm_90 SM's register file; four at fewer).
const GEMV_BLOCKS_PER_MP: u32 = 4;

/// The one-row kernels' launch (`gemv_{T}`, `gemv_swiglu_{T}` named `name`) over `rows` rows of
/// `k` for `n_in` input rows: the rows in groups of `GEMV_BLOCK / wave` ([`gemv_grid`]), at
/// most as many blocks as the device holds at once (by the runtime's occupancy calculator: 3 a
/// multiprocessor on sm_90), or the backend's cap ([`GpuBackend::gemv_blocks`]), shared by the
/// input rows ([`super::blocks_per_input`]), each block looping over its share of the groups
/// with its prologue (the norm, the input staged) run once. Fewer (2 a multiprocessor) starve
/// the memory system: H100, tg128 8B 166.7 tok/s against 173.1, one a group 171.2
/// (`bench/results/2026-12-05-gemv-groups-h100/`). Returns the launch (n_in times the blocks)
/// and the blocks an input row (the kernels' `blocks` argument).
fn group_launch(
    b: &GpuBackend,
    op: &str,
    name: &str,
    rows: i64,
    k: usize,
    n_in: i32,
) -> Result<(LaunchConfig, i32)> {
    let one = gemv_grid(op, rows, k, b.wave)?;
    let policy = super::BlockCap {
        cap: b.gemv_blocks(),
        fallback: GEMV_BLOCKS_PER_MP,
    };
    let groups = u64::from(one.grid.0);
    let blocks =
        super::blocks_per_input(b, name, GEMV_BLOCK, one.shared_bytes, groups, n_in, policy)?;
    // blocks ≤ groups, which gemv_grid bounded by i32::MAX.
    let cfg = LaunchConfig {
        grid: (blocks as u32, 1, 1),
        ..one
    };
    Ok((batched(op, cfg, n_in)?, blocks as i32))
}

/// Kernel name of a family (`gemv`, `gemv_swiglu`) for 16-bit weights of `dtype`.
fn kernel_name(op: &str, family: &str, dtype: DType) -> Result<String> {
    match dtype {
        DType::F16 => Ok(format!("{family}_f16")),
        DType::BF16 => Ok(format!("{family}_bf16")),
        other => Err(bad(op, format!("no {family} kernel for {other} weights"))),
    }
}

/// The RMSNorm prologue of a GEMV: `x` normalised with these f32 weights (k of them) and eps.
#[derive(Debug, Clone, Copy)]
pub(in crate::backend::gpu) struct NormPrologue {
    pub w: DevicePtr,
    pub eps: f32,
}

/// One stacked GEMV: W holds `parts[0] + parts[1] + parts[2]` rows of `k` (a part may be 0),
/// row `r` of the product goes to the output of its part (added to it with `residual`).
#[derive(Debug, Clone, Copy)]
pub(in crate::backend::gpu) struct Gemv {
    pub dtype: DType,
    pub w: DevicePtr,
    pub x: DevicePtr,
    pub norm: Option<NormPrologue>,
    pub bias: Option<DevicePtr>,
    pub outs: [DevicePtr; 3],
    pub parts: [i32; 3],
    pub k: i32,
    pub residual: bool,
    /// Input rows: x (n_in, k), out_i (n_in, parts[i]).
    pub n_in: i32,
}

fn norm_args(norm: Option<NormPrologue>) -> [KernelArg; 2] {
    let n = norm.unwrap_or(NormPrologue { w: 0, eps: 0.0 });
    [KernelArg::Ptr(n.w), KernelArg::F32(n.eps)]
}

/// `gemv_{T}`: one wave per row of the stacked W, one launch for all parts.
pub(in crate::backend::gpu) fn launch_gemv(b: &GpuBackend, op: &str, g: &Gemv) -> Result<()> {
    let rows: i64 = g.parts.iter().map(|&p| i64::from(p)).sum();
    if rows == 0 {
        return Ok(());
    }
    if rows > i64::from(i32::MAX) || g.parts.iter().any(|&p| p < 0) || g.k < 0 {
        return Err(bad(op, format!("parts {:?} of {} columns", g.parts, g.k)));
    }
    if b.gemv_mma() && takes_mma_kernels(g.n_in, g.k, g.w, g.x, g.norm) {
        let tiles = (rows as u64).div_ceil(GEMV_MMA_NB);
        let (xh, cfg) = mma_inputs(b, op, g.dtype, g.x, g.norm, g.k, g.n_in, tiles)?;
        let [norm_w, eps] = norm_args(g.norm);
        let args = stacked_gemv_args!(g;
            KernelArg::Ptr(g.w),
            KernelArg::Ptr(g.x),
            norm_w,
            eps,
            KernelArg::Ptr(xh),
            KernelArg::I32(stage_stride(g.k)),
        );
        let name = kernel_name(op, "gemv_mma", g.dtype)?;
        // SAFETY: as below; xh, when not null, holds the n_in staged rows (launch_stage, queued
        // before); the dynamic LDS holds the staged rows or the waves' tiles (mma_inputs).
        return unsafe { b.launch_overlapped(&name, cfg, &args) };
    }
    if b.gemv_rows() && takes_rows_kernels(g.n_in, g.k, g.w, g.x, g.norm) {
        let xh = launch_stage(b, op, g.dtype, g.x, g.norm, g.k, g.n_in)?;
        let per_block = u64::from(GEMV_BLOCK / b.wave * GEMV_NR);
        let cfg = rows_grid(op, (rows as u64).div_ceil(per_block), g.n_in)?;
        let args = stacked_gemv_args!(g;
            KernelArg::Ptr(g.w),
            KernelArg::Ptr(xh),
            KernelArg::I32(stage_stride(g.k)),
        );
        let name = kernel_name(op, "gemv_rows", g.dtype)?;
        // SAFETY: as below; xh holds the n_in staged rows (launch_stage, queued before).
        return unsafe { b.launch_overlapped(&name, cfg, &args) };
    }
    let name = kernel_name(op, "gemv", g.dtype)?;
    let (cfg, blocks) = group_launch(b, op, &name, rows, g.k as usize, g.n_in)?;
    let [norm_w, eps] = norm_args(g.norm);
    let args = stacked_gemv_args!(g;
        KernelArg::Ptr(g.w),
        KernelArg::Ptr(g.x),
        norm_w,
        eps;
        KernelArg::I32(blocks),
    );
    // SAFETY: the caller checked W ≥ rows·k elements of `dtype`, x ≥ n_in·k f32 (the norm
    // weights ≥ k), bias ≥ rows f32, out_i ≥ n_in·parts[i] f32, and that x aliases no output; the kernel
    // reads only W before its dependency wait and writes nothing before it (overlapped).
    unsafe { b.launch_overlapped(&name, cfg, &args) }
}

/// `gemv_swiglu_{T}`: `out (inter) = act(x · W_gᵀ) ⊙ (x · W_uᵀ)` for `w = [W_g; W_u]`.
#[allow(clippy::too_many_arguments)]
pub(in crate::backend::gpu) fn launch_gemv_swiglu(
    b: &GpuBackend,
    op: &str,
    dtype: DType,
    w: DevicePtr,
    x: DevicePtr,
    norm: Option<NormPrologue>,
    out: DevicePtr,
    inter: i32,
    k: i32,
    n_in: i32,
    act: Activation,
) -> Result<()> {
    if inter == 0 {
        return Ok(());
    }
    if b.gemv_mma() && takes_mma_kernels(n_in, k, w, x, norm) {
        let tiles = (inter.max(0) as u64).div_ceil(GEMV_MMA_NB / 2);
        let (xh, cfg) = mma_inputs(b, op, dtype, x, norm, k, n_in, tiles)?;
        let [norm_w, eps] = norm_args(norm);
        let args = [
            KernelArg::Ptr(w),
            KernelArg::Ptr(x),
            norm_w,
            eps,
            KernelArg::Ptr(xh),
            KernelArg::I32(stage_stride(k)),
            KernelArg::Ptr(out),
            KernelArg::I32(inter),
            KernelArg::I32(k),
            KernelArg::I32(n_in),
            super::act_arg(act),
        ];
        let name = kernel_name(op, "gemv_swiglu_mma", dtype)?;
        // SAFETY: as below; xh as in launch_gemv's matrix-core branch.
        return unsafe { b.launch_overlapped(&name, cfg, &args) };
    }
    if b.gemv_rows() && takes_rows_kernels(n_in, k, w, x, norm) {
        let xh = launch_stage(b, op, dtype, x, norm, k, n_in)?;
        let per_block = u64::from(GEMV_BLOCK / b.wave);
        let cfg = rows_grid(op, (inter.max(0) as u64).div_ceil(per_block), n_in)?;
        let args = [
            KernelArg::Ptr(w),
            KernelArg::Ptr(xh),
            KernelArg::I32(stage_stride(k)),
            KernelArg::Ptr(out),
            KernelArg::I32(inter),
            KernelArg::I32(k),
            KernelArg::I32(n_in),
            super::act_arg(act),
        ];
        let name = kernel_name(op, "gemv_swiglu_rows", dtype)?;
        // SAFETY: as below; xh holds the n_in staged rows (launch_stage, queued before).
        return unsafe { b.launch_overlapped(&name, cfg, &args) };
    }
    let name = kernel_name(op, "gemv_swiglu", dtype)?;
    let (cfg, blocks) = group_launch(b, op, &name, i64::from(inter), k.max(0) as usize, n_in)?;
    let [norm_w, eps] = norm_args(norm);
    let args = [
        KernelArg::Ptr(w),
        KernelArg::Ptr(x),
        norm_w,
        eps,
        KernelArg::Ptr(out),
        KernelArg::I32(inter),
        KernelArg::I32(k),
        KernelArg::I32(n_in),
        super::act_arg(act),
        KernelArg::I32(blocks),
    ];
    // SAFETY: the caller checked W ≥ 2·inter·k elements of `dtype`, x ≥ n_in·k f32 (the norm
    // weights ≥ k), out ≥ n_in·inter f32; W alone is read before the dependency wait (overlapped).
    unsafe { b.launch_overlapped(&name, cfg, &args) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::gpu::vendor::{DeviceInfo, Runtime};

    #[test]
    fn one_wave_per_row_at_both_waves() {
        // WAVE=32: 8 rows per 256-thread block; WAVE=64: 4.
        for (rows, wave, blocks) in [
            (1, 32, 1),
            (8, 32, 1),
            (9, 32, 2),
            (5000, 32, 625),
            (1, 64, 1),
            (4, 64, 1),
            (5, 64, 2),
            (128256, 64, 32064),
        ] {
            let c = gemv_grid("gemv", rows, 576, wave).unwrap();
            assert_eq!(c.grid, (blocks, 1, 1), "rows {rows} wave {wave}");
            assert_eq!(c.block, (256, 1, 1));
            assert_eq!(c.shared_bytes, 1152);
        }
        assert!(gemv_grid("gemv", -1, 8, 32).is_err());
        assert!(gemv_grid("gemv", 8, 8, 48).is_err());
        assert!(gemv_grid("gemv", 8, 8, 0).is_err());
    }

    #[test]
    fn several_rows_take_the_rows_kernels_only_where_the_one_row_kernel_is_all_vectors() {
        let norm = |w| Some(NormPrologue { w, eps: 1e-5 });
        assert!(takes_rows_kernels(4, 2048, 0x1000, 0x2000, None));
        assert!(
            !takes_rows_kernels(3, 2048, 0x1000, 0x2000, None),
            "below GEMV_ROWS_MIN"
        );
        assert!(takes_rows_kernels(16, 8192, 0x1000, 0x2000, norm(0x3000)));
        assert!(takes_rows_kernels(
            16,
            GEMV_ROWS_MAX_K as i32,
            0x1000,
            0x2000,
            None
        ));
        assert!(
            !takes_rows_kernels(1, 2048, 0x1000, 0x2000, None),
            "one row"
        );
        assert!(
            !takes_rows_kernels(17, 2048, 0x1000, 0x2000, None),
            "past 16 rows"
        );
        assert!(
            !takes_rows_kernels(4, 100, 0x1000, 0x2000, None),
            "K mod 8 = 4"
        );
        assert!(!takes_rows_kernels(4, 77, 0x1000, 0x2000, None), "odd K");
        assert!(
            !takes_rows_kernels(4, 0, 0x1000, 0x2000, None),
            "empty rows"
        );
        assert!(
            !takes_rows_kernels(4, GEMV_ROWS_MAX_K as i32 + 8, 0x1000, 0x2000, None),
            "past the staging buffer"
        );
        assert!(
            !takes_rows_kernels(4, 64, 0x1008, 0x2000, None),
            "W off 16 bytes"
        );
        assert!(
            !takes_rows_kernels(4, 64, 0x1000, 0x2004, None),
            "x off 16 bytes"
        );
        assert!(
            !takes_rows_kernels(4, 64, 0x1000, 0x2000, norm(0x3004)),
            "norm off 16"
        );
        assert_eq!(GEMV_STAGE_BYTES, 2 << 20);
        assert_eq!((stage_stride(8), stage_stride(2048)), (8, 2048));
    }

    #[test]
    fn the_matrix_core_kernels_take_1_to_16_rows_of_k_a_multiple_of_32() {
        let norm = |w| Some(NormPrologue { w, eps: 1e-5 });
        for n_in in [1, 2, 3, 4, 16] {
            assert!(
                takes_mma_kernels(n_in, 4096, 0x1000, 0x2000, norm(0x3000)),
                "{n_in}"
            );
        }
        assert!(takes_mma_kernels(1, 32, 0x1000, 0x2000, None));
        assert!(takes_mma_kernels(
            1,
            GEMV_ROWS_MAX_K as i32,
            0x1000,
            0x2000,
            None
        ));
        assert!(!takes_mma_kernels(0, 4096, 0x1000, 0x2000, None), "no rows");
        assert!(
            !takes_mma_kernels(17, 4096, 0x1000, 0x2000, None),
            "past 16 rows"
        );
        assert!(
            !takes_mma_kernels(1, 72, 0x1000, 0x2000, None),
            "K mod 32 = 8"
        );
        // K and alignment as the several-row kernels (staged_vectors, tested there).
        assert!(!takes_mma_kernels(1, 64, 0x1008, 0x2000, None), "W off 16");
        for (tiles, n_in, total) in [(19, 1, 19), (19, 16, 19), (256, 4, 256)] {
            let c = mma_grid("gemv", tiles, n_in).unwrap();
            assert_eq!(c.grid, (total, 1, 1), "{tiles} tiles, {n_in} rows");
        }
        assert_eq!(
            mma_grid("gemv", 3, 17).unwrap().grid,
            (6, 1, 1),
            "two groups"
        );
        assert!(mma_grid("gemv", u64::from(u32::MAX), 1).is_err());
    }

    #[test]
    fn the_matrix_core_lds_holds_the_staged_rows_or_the_waves_tiles() {
        assert_eq!(mma_shared_bytes(32, 0, 0), 8192, "8 waves' tiles");
        assert_eq!(mma_shared_bytes(64, 0, 0), 4096, "4 waves' tiles");
        assert_eq!(mma_shared_bytes(32, 576, 0), 8192);
        assert_eq!(mma_shared_bytes(64, 4096, 0), 8192, "one row of 4096");
        assert_eq!(mma_shared_bytes(32, GEMV_LDS_MAX, 0), 32768);
        // The ring after the staged rows (the tiles written over both at the end).
        assert_eq!(mma_shared_bytes(32, 4096, 32768), 8192 + 32768);
        assert_eq!(mma_shared_bytes(32, 0, 32768), 32768);
    }

    fn info(runtime: Runtime, arch: &str) -> DeviceInfo {
        DeviceInfo {
            runtime,
            ordinal: 0,
            name: "test".into(),
            arch: arch.into(),
            wave: 32,
            total_memory: 1 << 30,
            multiprocessors: 1,
            runtime_version: String::new(),
        }
    }

    /// The ring exactly where common.h compiles the SYNC path: NVIDIA sm_80+ at WAVE=32 (not
    /// the emulated 64, not sm_75, not HIP). Past 48 KiB at the largest staged rows.
    #[test]
    fn the_weight_ring_is_on_nvidia_sm80_and_later_at_wave32_only() {
        let ring =
            |rt, arch, wave| mma_ring_bytes(super::super::cp_async_build(&info(rt, arch), wave));
        assert_eq!(ring(Runtime::Cuda, "sm_90", 32), 32768);
        assert_eq!(ring(Runtime::Cuda, "sm_80", 32), 32768);
        assert_eq!(ring(Runtime::Cuda, "sm_90a", 32), 32768);
        assert_eq!(ring(Runtime::Cuda, "sm_120", 32), 32768);
        assert_eq!(
            ring(Runtime::Cuda, "sm_90", 64),
            0,
            "the emulated wave64: FMA twin"
        );
        assert_eq!(ring(Runtime::Cuda, "sm_75", 32), 0);
        assert_eq!(ring(Runtime::Hip, "gfx1100", 32), 0);
        assert_eq!(ring(Runtime::Hip, "gfx942:sramecc+:xnack-", 64), 0);
        assert_eq!(
            mma_max_shared_bytes(
                32,
                super::super::cp_async_build(&info(Runtime::Cuda, "sm_90"), 32)
            ),
            65536
        );
        assert_eq!(
            mma_max_shared_bytes(
                64,
                super::super::cp_async_build(&info(Runtime::Hip, "gfx942"), 64)
            ),
            32768
        );
    }

    #[test]
    fn rows_grid_covers_the_input_groups() {
        for (blocks, n_in, total) in [(128, 2, 128), (128, 8, 128), (128, 9, 256), (96, 16, 192)] {
            let c = rows_grid("gemv", blocks, n_in).unwrap();
            assert_eq!(c.grid, (total, 1, 1), "{blocks} blocks, {n_in} rows");
            assert_eq!((c.block, c.shared_bytes), ((256, 1, 1), 0));
        }
        assert!(rows_grid("gemv", u64::from(u32::MAX), 16).is_err());
    }

    #[test]
    fn inputs_up_to_16384_are_staged_in_at_most_32_kib() {
        for (k, bytes) in [(0, 0), (1, 16), (5, 16), (8, 16), (9, 32), (4096, 8192)] {
            assert_eq!(gemv_shared_bytes(k), bytes, "k {k}");
        }
        assert_eq!(gemv_shared_bytes(GEMV_LDS_MAX), 32768);
        assert_eq!(
            gemv_shared_bytes(GEMV_LDS_MAX + 1),
            0,
            "read through the cache"
        );
    }

    #[test]
    fn up_to_16_rows_of_16_bit_or_block_weights_take_the_gemv() {
        assert!(uses_gemv(1, DType::BF16, false) && uses_gemv(1, DType::F16, false));
        assert!(uses_gemv(16, DType::BF16, true), "a batched decode pass");
        assert!(!uses_gemv(2, DType::BF16, false), "a prompt chunk: BLAS");
        assert!(!uses_gemv(17, DType::BF16, true), "past 16 rows: BLAS");
        assert!(!uses_gemv(1, DType::F32, true), "f32 weights stay on BLAS");
        assert!(
            uses_gemv(1, DType::Q4_K, false) && uses_gemv(16, DType::Q4_0, true),
            "qgemv.hip"
        );
        assert!(!uses_gemv(17, DType::Q4_0, true), "dequantize + GEMM");
        assert!(!uses_gemv(3, DType::Q4_0, false), "dequantize + GEMM");
        // n input rows: n times the one-row grid, within a 1-D grid.
        let one = gemv_grid("gemv", 300, 8, 32).unwrap();
        assert_eq!(batched("gemv", one, 5).unwrap().grid, (5 * 38, 1, 1));
        assert!(batched("gemv", one, 0).is_err());
        assert!(batched("gemv", one, i32::MAX).is_err());
        assert_eq!(kernel_name("t", "gemv", DType::F16).unwrap(), "gemv_f16");
        assert_eq!(
            kernel_name("t", "gemv_swiglu", DType::BF16).unwrap(),
            "gemv_swiglu_bf16"
        );
        assert!(kernel_name("t", "gemv", DType::F32).is_err());
    }
}
