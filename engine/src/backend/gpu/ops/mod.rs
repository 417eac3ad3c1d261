//! One file per op family (STYLE 1): each holds the op's Rust entry (shape and dtype checks
//! against the `Backend` contract) and its `launch_*` function, the only place the grid and
//! block sizes of the kernel ABI are computed (STYLE 2).

/// A stacked GEMV kernel's arguments (`gemv_{T}`, `gemv_rows_{T}`, `gemv_mma_{T}`,
/// `qgemv_{Q}`): its own first ones, then the ABI's common tail from `$g` (a
/// `gemv::Gemv` or `qgemv::QGemv`): bias, out0-2, m0-m2, k, residual, n_in, then any after
/// a second `;` (the row-group kernels' `blocks`). An array on the stack: launches queue work
/// without allocating.
macro_rules! stacked_gemv_args {
    ($g:expr; $($head:expr),* $(,)? $(; $($tail:expr),* $(,)?)?) => {{
        let g = $g;
        [
            $($head,)*
            KernelArg::Ptr(g.bias.unwrap_or(0)),
            KernelArg::Ptr(g.outs[0]),
            KernelArg::Ptr(g.outs[1]),
            KernelArg::Ptr(g.outs[2]),
            KernelArg::I32(g.parts[0]),
            KernelArg::I32(g.parts[1]),
            KernelArg::I32(g.parts[2]),
            KernelArg::I32(g.k),
            KernelArg::I32(i32::from(g.residual)),
            KernelArg::I32(g.n_in),
            $($($tail,)*)?
        ]
    }};
}

pub(super) mod attention;
pub(super) mod decode_attention;
pub(super) mod elementwise;
pub(super) mod embedding;
pub(super) mod gemv;
pub(super) mod linear;
pub(super) mod qgemv;
pub(super) mod rms_norm;
pub(super) mod rope;
pub(super) mod sampling;
pub(super) mod sync;

use super::vendor::{DeviceInfo, DevicePtr, KernelArg, LaunchConfig, Runtime};
use crate::error::Result;
use crate::tensor::DType;

/// Whether the kernels built for this device and wave define common.h's `WF_CP_ASYNC` (the
/// SYNC matrix path: NVIDIA sm_80+ at the native WAVE=32; not the emulated 64, not sm_75, not
/// HIP): the kernels whose async path prefetches into a shared-memory ring then take it, and
/// their launches must give the ring its dynamic shared memory.
pub(in crate::backend::gpu) fn cp_async_build(info: &DeviceInfo, wave: u32) -> bool {
    let sm = info.arch.strip_prefix("sm_").and_then(|v| {
        v.trim_end_matches(|c: char| c.is_ascii_alphabetic())
            .parse::<u32>()
            .ok()
    });
    info.runtime == Runtime::Cuda && wave == 32 && sm.is_some_and(|v| v >= 80)
}

/// Threads per block of the elementwise kernels (ABI: `ceil(n/256)` blocks of 256).
pub(super) const ELEMENTWISE_BLOCK: u32 = 256;

/// A 1-D launch of `ceil(n / block)` blocks of `block` threads, or an error naming `op` when
/// that passes the grid's limit (2³¹ − 1 blocks: 5.5·10¹¹ elements at 256 per block).
pub(super) fn linear_grid(op: &str, n: i64, block: u32) -> Result<LaunchConfig> {
    let blocks = u64::try_from(n)
        .ok()
        .map(|n| n.div_ceil(u64::from(block)))
        .and_then(|b| u32::try_from(b).ok().filter(|&b| b <= i32::MAX as u32))
        .ok_or_else(|| super::bad(op, format!("{n} elements exceed a 1-D grid")))?;
    Ok(LaunchConfig {
        grid: (blocks, 1, 1),
        block: (block, 1, 1),
        shared_bytes: 0,
    })
}

/// A kernel's arguments in the ABI's order: the pointers, then the 32-bit dimensions, then
/// `tail` (scale, step block, …).
pub(super) fn kernel_args(ptrs: &[DevicePtr], dims: &[i32], tail: &[KernelArg]) -> Vec<KernelArg> {
    ptrs.iter()
        .map(|&p| KernelArg::Ptr(p))
        .chain(dims.iter().map(|&d| KernelArg::I32(d)))
        .chain(tail.iter().cloned())
        .collect()
}

/// `n` as a 64-bit kernel element count.
pub(super) fn count(n: usize) -> i64 {
    // usize ≤ 2⁶³ on every target this runs on (a buffer that large cannot be allocated).
    n as i64
}

/// Weight (and embedding table) types the GPU's products read: f32, f16, bf16 and every GGUF
/// weight block type (`qgemv.rs`).
pub(super) const WEIGHT_TYPES: [DType; 11] = {
    let mut t = [DType::F32; 11];
    t[1] = DType::F16;
    t[2] = DType::BF16;
    let mut i = 0;
    while i < DType::WEIGHT_BLOCKS.len() {
        t[3 + i] = DType::WEIGHT_BLOCKS[i];
        i += 1;
    }
    t
};

/// The kernel name suffix of a 16-bit-or-f32 element type (`_f32`, `_f16`, `_bf16`).
pub(super) fn suffix(op: &str, dtype: DType) -> Result<&'static str> {
    match dtype {
        DType::F32 => Ok("f32"),
        DType::F16 => Ok("f16"),
        DType::BF16 => Ok("bf16"),
        DType::Q8_0Kv => Ok("q8_0"),
        other => Err(super::bad(op, format!("no {op} kernel for {other}"))),
    }
}

/// How a row-group GEMV kernel (`gemv_{T}`, `qgemv_{Q}` and their SwiGLU forms: each block
/// loops over its share of the row groups with its prologue run once) picks its blocks.
#[derive(Debug, Clone, Copy)]
pub(super) struct BlockCap {
    /// The backend's override (`WAVEFRONT_GEMV_BLOCKS`, `WAVEFRONT_QGEMV_BLOCKS`): the most
    /// blocks a launch takes.
    pub cap: Option<u32>,
    /// Blocks a multiprocessor holds where the runtime cannot say.
    pub fallback: u32,
}

/// Blocks per input row of a launch of `name` (`block` threads, `shared` bytes of dynamic LDS)
/// over `groups` row groups and `n_in` input rows: `policy.cap` when set, else
/// multiprocessors × the blocks one holds at once (the runtime's occupancy calculator); shared
/// by the input rows, at least one an input row, at most `groups`.
pub(super) fn blocks_per_input(
    b: &super::GpuBackend,
    name: &str,
    block: u32,
    shared: u32,
    groups: u64,
    n_in: i32,
    policy: BlockCap,
) -> Result<u64> {
    let cap = match policy.cap {
        Some(n) => n,
        None => match resident_grid(b, name, block, shared)? {
            Some(n) => n,
            None => b
                .info()
                .multiprocessors
                .max(1)
                .saturating_mul(policy.fallback),
        },
    };
    let share = u64::from(cap) / u64::try_from(n_in.max(1)).unwrap_or(1);
    Ok(groups.min(share.max(1)))
}

/// The blocks of `name` (`block` threads, `shared` dynamic bytes) the device holds at once:
/// multiprocessors × the blocks one holds (the runtime's occupancy calculator), or `None`
/// where the runtime cannot say.
pub(super) fn resident_grid(
    b: &super::GpuBackend,
    name: &str,
    block: u32,
    shared: u32,
) -> Result<Option<u32>> {
    Ok(b.resident_blocks(name, block, shared)?
        .map(|per_mp| b.info().multiprocessors.max(1).saturating_mul(per_mp)))
}

/// The gated kernels' `act` argument (common.h `GateAct`): 0 silu, 1 gelu_tanh.
pub(in crate::backend::gpu) fn act_arg(act: crate::backend::Activation) -> KernelArg {
    KernelArg::I32(match act {
        crate::backend::Activation::Silu => 0,
        crate::backend::Activation::GeluTanh => 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elementwise_grid_covers_n_with_256_thread_blocks() {
        // ceil(n / 256): 1 → 1 block, 256 → 1, 257 → 2, 8191 → 32; past 2³¹ elements too.
        for (n, blocks) in [
            (1, 1),
            (256, 1),
            (257, 2),
            (8191, 32),
            (1i64 << 33, 1u32 << 25),
        ] {
            let c = linear_grid("t", n, ELEMENTWISE_BLOCK).unwrap();
            assert_eq!(c.grid, (blocks, 1, 1), "n = {n}");
            assert_eq!(c.block, (256, 1, 1));
            assert_eq!(c.shared_bytes, 0);
        }
        let e = linear_grid("fill_f32", 1i64 << 40, ELEMENTWISE_BLOCK).unwrap_err();
        assert!(e.to_string().contains("exceed a 1-D grid"), "{e}");
        assert!(linear_grid("t", -1, ELEMENTWISE_BLOCK).is_err());
    }

    #[test]
    fn suffixes_name_the_table_type() {
        assert_eq!(suffix("embedding", DType::BF16).unwrap(), "bf16");
        assert_eq!(suffix("embedding", DType::F16).unwrap(), "f16");
        assert!(suffix("embedding", DType::Q4_0).is_err());
    }
}
