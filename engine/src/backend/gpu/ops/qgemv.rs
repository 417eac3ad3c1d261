//! Products over GGUF block-quantized weights (`kernels/qgemv.hip`, the split layout of
//! [`crate::backend::gpu::quant`]).
//!
//! One row (batch-1 decode): `qgemv_{T}` / `qgemv_swiglu_{T}` read the blocks with 16-byte loads
//! and dequantize in registers, activations f32 (or 8-bit with integer dot products,
//! `{form}_q8a_{T}`: the K-quants' default, `GpuBackend::qgemv_q8`), with the RMSNorm prologue
//! and the residual epilogue of the 16-bit GEMVs (`gemv.rs`). A launch takes the blocks the
//! device holds at once, each looping over row groups ([`blocks_per_input`]). A stack whose
//! parts have different types (a mixed stack) takes one launch per run of parts within one
//! segment.
//! More rows (prefill): each matrix part dequantized to f16 (`dequant_{T}`, in slices of at most
//! [`DEQUANT_SLICE`] elements) and one f16 GEMM per slice with x converted to f16, f32
//! accumulation: matrix cores instead of one weight read per row.
//! Embedding rows of a quantized table: `dequant_{T}` by token id, f32, exact.

use super::gemv::{batched, NormPrologue};
use crate::backend::gpu::quant::QuantSeg;
use crate::backend::gpu::vendor::{DevicePtr, KernelArg, LaunchConfig};
use crate::backend::gpu::{bad, GpuBackend};
use crate::backend::Activation;
use crate::error::Result;
use crate::tensor::DType;

/// Threads a block of `qgemv_{T}` and `qgemv_q8a_{T}` but those below (ABI: `QGEMV_BLOCK`).
const QGEMV_BLOCK: u32 = 1024;
/// Threads a block of `qgemv_q4_k` (f32 form), `qgemv{,_q8a}_{q5_k,q6_k}` and of
/// `qgemv_swiglu_{T}` but those below (ABI: `QGEMV_BLOCK_MID`).
const QGEMV_BLOCK_MID: u32 = 512;
/// Threads a block of `qgemv_swiglu{,_q8a}_{q5_k,q6_k}` (ABI: `QGEMV_BLOCK_HEAVY`).
const QGEMV_BLOCK_HEAVY: u32 = 256;
/// Threads a block of `dequant_{T}` (ABI: `DEQUANT_BLOCK`).
const DEQUANT_BLOCK: u32 = 256;
/// Rows a wave of `qgemv_{T}` takes in a row group (ABI: `QGEMV_ROWS_A_WAVE`).
const QGEMV_ROWS_A_WAVE: u32 = 1;
/// Input elements staged in LDS at a time (ABI: `QGEMV_TILE`).
const QGEMV_TILE: usize = 7168;

/// The most elements dequantized into the f16 scratch at once (64 MiB): a larger matrix (an LM
/// head) is multiplied in slices of rows.
pub(in crate::backend::gpu) const DEQUANT_SLICE: usize = 32 << 20;

/// The kernel suffix of a block type.
pub(in crate::backend::gpu) fn suffix(op: &str, dtype: DType) -> Result<&'static str> {
    Ok(match dtype {
        DType::Q8_0 => "q8_0",
        DType::Q4_0 => "q4_0",
        DType::Q4_1 => "q4_1",
        DType::Q5_0 => "q5_0",
        DType::Q5_1 => "q5_1",
        DType::Q4_K => "q4_k",
        DType::Q5_K => "q5_k",
        DType::Q6_K => "q6_k",
        other => return Err(bad(op, format!("no quantized kernel for {other}"))),
    })
}

/// Input elements the 8-bit-activation forms stage in LDS at a time (ABI: `Q8A_TILE`).
const Q8A_TILE: usize = 16384;
/// LDS bytes a staged group of 32 inputs takes in those forms (ABI: `Q8A_REC`).
const Q8A_REC: usize = 48;

/// LDS of a launch over `k` inputs: one tile (at most `QGEMV_TILE` elements) as f32 with 4
/// pad floats after every 32; for the 8-bit forms (`q8`), at most `Q8A_TILE` elements as
/// records of `Q8A_REC` bytes a group of 32.
fn shared_bytes(k: usize, q8: bool) -> u32 {
    if q8 {
        (k.min(Q8A_TILE) / 32 * Q8A_REC) as u32
    } else {
        (4 * k.min(QGEMV_TILE) / 32 * 36) as u32
    }
}

/// The kernel of `form` (`qgemv`, `qgemv_swiglu`) for `dtype`: the 8-bit-activation one
/// (`{form}_q8a_{T}`) when the backend takes them.
fn kernel(b: &GpuBackend, op: &str, form: &str, dtype: DType) -> Result<String> {
    let q8 = if b.qgemv_q8(dtype) { "q8a_" } else { "" };
    Ok(format!("{form}_{q8}{}", suffix(op, dtype)?))
}

/// The threads a block of the one-row GEMV `form` (`qgemv`, `qgemv_swiglu`) over `dtype` takes
/// (each kernel's `__launch_bounds__`): as many as keep its registers unspilled, so that one
/// staged input serves as many rows as the multiprocessor keeps in flight (H100, 8B Q4_0 8-bit:
/// down 18.9 → 15.8 µs at 1024 threads; `bench/results/2026-12-07-qgemv-blocks-h100/`).
fn threads(form: &str, dtype: DType, q8: bool) -> u32 {
    let heavy = matches!(dtype, DType::Q5_K | DType::Q6_K);
    match form {
        "qgemv_swiglu" if heavy => QGEMV_BLOCK_HEAVY,
        "qgemv_swiglu" => QGEMV_BLOCK_MID,
        _ if heavy || (dtype == DType::Q4_K && !q8) => QGEMV_BLOCK_MID,
        _ => QGEMV_BLOCK,
    }
}

/// The threads a launch of the one-row GEMV `form` over `dtype` takes: its kernel's bound
/// ([`threads`]), or the backend's setting (`WAVEFRONT_QGEMV_THREADS`) where that is fewer. The
/// kernels take their block from the launch (rows a group, staging stride; the norm's partition
/// is fixed), so any of 256, 512 or 1024 gives the same bits.
fn launch_threads(b: &GpuBackend, form: &str, dtype: DType, q8: bool) -> u32 {
    let bound = threads(form, dtype, q8);
    b.qgemv_threads().map_or(bound, |n| n.min(bound))
}

/// Blocks a multiprocessor holds at once where the runtime cannot say (one of up to 1024
/// threads: a block of any form at its registers fills at least half an sm_90 SM's file).
const QGEMV_BLOCKS_PER_MP: u32 = 1;

/// Blocks per input row of a launch of `name` (`shared` bytes of LDS) over `groups` row groups
/// and `n_in` input rows ([`super::blocks_per_input`]): as many as the device holds at once
/// (by the runtime's occupancy calculator: 2 a multiprocessor for most forms on sm_90, 1 for
/// the 160-register Q5_K/Q6_K ones), or the backend's cap ([`GpuBackend::qgemv_blocks`]).
/// Each block loops over its share of the groups with the input staged once (H100, 8B shape:
/// one block a group left 16% of Q4_0's 8-bit-form decode on the table,
/// `bench/results/2026-12-05-qgemv-groups-h100/`).
fn blocks_per_input(
    b: &GpuBackend,
    name: &str,
    threads: u32,
    shared: u32,
    groups: u64,
    n_in: i32,
) -> Result<u64> {
    let policy = super::BlockCap {
        cap: b.qgemv_blocks(),
        fallback: QGEMV_BLOCKS_PER_MP,
    };
    super::blocks_per_input(b, name, threads, shared, groups, n_in, policy)
}

/// `blocks` of `threads`, checked against a 1-D grid.
fn grid(op: &str, blocks: u64, threads: u32, k: usize, q8: bool) -> Result<LaunchConfig> {
    let blocks = u32::try_from(blocks)
        .ok()
        .filter(|&b| b <= i32::MAX as u32)
        .ok_or_else(|| bad(op, format!("{blocks} blocks exceed a 1-D grid")))?;
    Ok(LaunchConfig {
        grid: (blocks, 1, 1),
        block: (threads, 1, 1),
        shared_bytes: shared_bytes(k, q8),
    })
}

/// Checks what every quantized launch needs: K a whole number of blocks, x (and the norm
/// weights) on 16 bytes (the kernels stage them with 16-byte loads).
fn check(op: &str, dtype: DType, k: i32, x: DevicePtr, norm: Option<NormPrologue>) -> Result<()> {
    let be = dtype.block_elems() as i32;
    if k < 0 || k % be != 0 {
        return Err(bad(
            op,
            format!("in_features {k} is not a whole number of {dtype} blocks ({be} elements)"),
        ));
    }
    if !x.is_multiple_of(16) || norm.is_some_and(|n| !n.w.is_multiple_of(16)) {
        return Err(bad(
            op,
            "x and the norm weights must start on 16 bytes".into(),
        ));
    }
    Ok(())
}

/// One quantized GEMV launch: the rows of `parts` (up to three, stacked in this order within
/// `seg` from its row `row0`) to their outputs.
pub(in crate::backend::gpu) struct QGemv {
    pub seg: QuantSeg,
    /// The tensor's device address (segments are offsets into it).
    pub base: DevicePtr,
    /// The first row of the launch within the segment.
    pub row0: usize,
    pub x: DevicePtr,
    pub norm: Option<NormPrologue>,
    /// The bias of the launch's first row (f32), if any.
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

/// The split arrays of `seg` from row `row0` of `k` elements: `(qa, sa)` device addresses.
fn arrays(op: &str, base: DevicePtr, seg: &QuantSeg, row0: usize, k: usize) -> Result<[u64; 2]> {
    let (_, qb) = crate::backend::gpu::quant::quant_range(seg.dtype)
        .ok_or_else(|| bad(op, format!("{} is not a held block type", seg.dtype)))?;
    let sb = seg.dtype.block_bytes() - qb;
    let blocks = (row0 * k / seg.dtype.block_elems()) as u64;
    Ok([
        base + seg.qa + blocks * qb as u64,
        base + seg.sa + blocks * sb as u64,
    ])
}

/// `qgemv_{T}`: one row a wave ([`QGEMV_ROWS_A_WAVE`]), one launch for the parts.
pub(in crate::backend::gpu) fn launch_qgemv(b: &GpuBackend, op: &str, g: &QGemv) -> Result<()> {
    let rows: i64 = g.parts.iter().map(|&p| i64::from(p)).sum();
    if rows == 0 {
        return Ok(());
    }
    check(op, g.seg.dtype, g.k, g.x, g.norm)?;
    let k = g.k as usize;
    if g.parts.iter().any(|&p| p < 0) || (g.row0 + rows as usize) * k > g.seg.elems {
        return Err(bad(
            op,
            format!(
                "parts {:?} from row {} of a {}-element segment",
                g.parts, g.row0, g.seg.elems
            ),
        ));
    }
    let name = kernel(b, op, "qgemv", g.seg.dtype)?;
    let q8 = b.qgemv_q8(g.seg.dtype);
    let threads = launch_threads(b, "qgemv", g.seg.dtype, q8);
    let per_block = u64::from(QGEMV_ROWS_A_WAVE * threads / b.wave);
    let groups = (rows as u64).div_ceil(per_block);
    let blocks = blocks_per_input(b, &name, threads, shared_bytes(k, q8), groups, g.n_in)?;
    let cfg = batched(op, grid(op, blocks, threads, k, q8)?, g.n_in)?;
    let [qa, sa] = arrays(op, g.base, &g.seg, g.row0, k)?;
    let [norm_w, eps] = norm_args(g.norm);
    let args = stacked_gemv_args!(g;
        KernelArg::Ptr(qa),
        KernelArg::Ptr(sa),
        KernelArg::Ptr(g.x),
        norm_w,
        eps;
        KernelArg::I32(blocks as i32),
    );
    // SAFETY: the segment holds rows row0.. row0 + Σparts of k elements (checked), x ≥ n_in·k
    // f32 on 16 bytes (rows of whole blocks: every row on 16 bytes), the norm weights ≥ k f32,
    // bias ≥ Σparts f32, out_i ≥ n_in·parts[i] f32 (callers);
    // only the weights are read before the dependency wait.
    unsafe { b.launch_overlapped(&name, cfg, &args) }
}

/// `qgemv_swiglu_{T}`: `out (inter) = act(x · W_gᵀ) ⊙ (x · W_uᵀ)` for the segment's
/// `[W_g; W_u]` (2·inter rows of k).
#[allow(clippy::too_many_arguments)]
pub(in crate::backend::gpu) fn launch_qgemv_swiglu(
    b: &GpuBackend,
    op: &str,
    seg: &QuantSeg,
    base: DevicePtr,
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
    check(op, seg.dtype, k, x, norm)?;
    if inter < 0 || 2 * inter as usize * k as usize > seg.elems {
        return Err(bad(
            op,
            format!("2·{inter} rows of {k} in {} elements", seg.elems),
        ));
    }
    let name = kernel(b, op, "qgemv_swiglu", seg.dtype)?;
    let q8 = b.qgemv_q8(seg.dtype);
    let threads = launch_threads(b, "qgemv_swiglu", seg.dtype, q8);
    let per_block = u64::from(threads / b.wave);
    let groups = (inter as u64).div_ceil(per_block);
    let blocks = blocks_per_input(
        b,
        &name,
        threads,
        shared_bytes(k as usize, q8),
        groups,
        n_in,
    )?;
    let one = grid(op, blocks, threads, k as usize, q8)?;
    let cfg = batched(op, one, n_in)?;
    let [qa, sa] = arrays(op, base, seg, 0, k as usize)?;
    let [norm_w, eps] = norm_args(norm);
    let args = [
        KernelArg::Ptr(qa),
        KernelArg::Ptr(sa),
        KernelArg::Ptr(x),
        norm_w,
        eps,
        KernelArg::Ptr(out),
        KernelArg::I32(inter),
        KernelArg::I32(k),
        KernelArg::I32(n_in),
        super::act_arg(act),
        KernelArg::I32(blocks as i32),
    ];
    // SAFETY: the segment holds 2·inter rows of k (checked), x ≥ n_in·k f32 on 16 bytes, the
    // norm weights ≥ k f32, out ≥ n_in·inter f32 (callers); only the weights are read before the wait.
    unsafe { b.launch_overlapped(&name, cfg, &args) }
}

/// Where `dequant_{T}` takes its rows: `row0 + b`, or ids on the device (the embedding; an id
/// outside `[0, vocab)` gives a zero row).
#[derive(Debug, Clone, Copy)]
pub(in crate::backend::gpu) enum Rows {
    Range { row0: usize },
    Ids { ids: DevicePtr, vocab: i32 },
}

/// `dequant_{T}`: `n_rows` rows of `k` elements of the segment into `out`, each value times
/// `scale` in f32 (1.0: exactly the value), stored f32 or f16.
#[allow(clippy::too_many_arguments)]
pub(in crate::backend::gpu) fn launch_dequant(
    b: &GpuBackend,
    op: &str,
    seg: &QuantSeg,
    base: DevicePtr,
    rows: Rows,
    n_rows: usize,
    k: usize,
    out: DevicePtr,
    f16: bool,
    scale: f32,
) -> Result<()> {
    if n_rows == 0 || k == 0 {
        return Ok(());
    }
    let k_i = i32::try_from(k).map_err(|_| bad(op, format!("{k} columns")))?;
    check(op, seg.dtype, k_i, 0, None)?;
    let (row0, ids, vocab) = match rows {
        Rows::Range { row0 } => {
            if (row0 + n_rows) * k > seg.elems {
                return Err(bad(
                    op,
                    format!("rows {row0}..+{n_rows} of {k} in {} elements", seg.elems),
                ));
            }
            (row0, 0, 0)
        }
        Rows::Ids { ids, vocab } => {
            if vocab as usize * k > seg.elems {
                return Err(bad(
                    op,
                    format!("{vocab} rows of {k} in {} elements", seg.elems),
                ));
            }
            (0, ids, vocab)
        }
    };
    let name = format!("dequant_{}", suffix(op, seg.dtype)?);
    let n = i32::try_from(n_rows).map_err(|_| bad(op, format!("{n_rows} rows")))?;
    let cfg = LaunchConfig {
        grid: (n as u32, 1, 1),
        block: (DEQUANT_BLOCK, 1, 1),
        shared_bytes: 0,
    };
    let args = [
        KernelArg::Ptr(base + seg.qa),
        KernelArg::Ptr(base + seg.sa),
        KernelArg::Ptr(ids),
        KernelArg::I32(i32::try_from(row0).map_err(|_| bad(op, format!("row {row0}")))?),
        KernelArg::I32(n),
        KernelArg::I32(k_i),
        KernelArg::I32(vocab),
        KernelArg::Ptr(out),
        KernelArg::I32(i32::from(f16)),
        KernelArg::F32(scale),
    ];
    // SAFETY: the rows read lie within the segment (checked; ids outside [0, vocab) read
    // nothing), out holds n_rows·k elements of f32 or f16 (callers).
    unsafe { b.launch(&name, cfg, &args) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_tile_of_padded_f32_at_most_32256_bytes() {
        assert_eq!(shared_bytes(32, false), 144);
        assert_eq!(shared_bytes(4096, false), 4096 * 4 / 32 * 36);
        assert_eq!(shared_bytes(QGEMV_TILE, false), 32256);
        assert_eq!(shared_bytes(14336, false), 32256, "tiled past 7168");
        assert!(
            shared_bytes(1 << 20, false) <= 32 * 1024,
            "two blocks share a 64 KiB LDS"
        );
        assert_eq!(
            QGEMV_TILE % 256,
            0,
            "no K-quant super-block straddles two tiles"
        );
    }

    #[test]
    fn the_8_bit_forms_stage_48_byte_records_within_24_kib() {
        assert_eq!(shared_bytes(32, true), 48);
        assert_eq!(shared_bytes(4096, true), 128 * 48);
        assert_eq!(
            shared_bytes(14336, true),
            448 * 48,
            "one tile for the 8B down"
        );
        assert_eq!(shared_bytes(1 << 20, true), 24 * 1024, "tiled past 16384");
        assert_eq!(
            Q8A_TILE % 256,
            0,
            "no K-quant super-block straddles two tiles"
        );
    }

    #[test]
    fn every_weight_block_type_has_kernels_and_others_do_not() {
        for d in DType::WEIGHT_BLOCKS {
            let s = suffix("t", d).unwrap();
            assert_eq!(s, d.name().to_ascii_lowercase(), "{d}");
        }
        assert!(suffix("t", DType::BF16).is_err());
        assert!(suffix("t", DType::Q8_0Kv).is_err());
    }

    #[test]
    fn k_must_be_whole_blocks_and_x_aligned() {
        assert!(check("t", DType::Q4_K, 512, 0, None).is_ok());
        assert!(check("t", DType::Q4_K, 288, 0, None).is_err());
        assert!(check("t", DType::Q4_0, 32, 8, None).is_err());
        let n = NormPrologue { w: 4, eps: 1e-5 };
        assert!(check("t", DType::Q8_0, 32, 0, Some(n)).is_err());
    }
}
