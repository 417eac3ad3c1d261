//! One file per op family (STYLE 1): each holds the op's Rust entry (shape and dtype checks
//! against the `Backend` contract) and its `launch_*` function, the only place the grid and
//! block sizes of the kernel ABI are computed (STYLE 2).

pub(super) mod attention;
pub(super) mod elementwise;
pub(super) mod embedding;
pub(super) mod linear;
pub(super) mod rms_norm;
pub(super) mod rope;
pub(super) mod sampling;

use super::vendor::LaunchConfig;
use crate::error::Result;
use crate::tensor::DType;

/// Threads per block of the elementwise kernels (ABI: `ceil(n/256)` blocks of 256).
pub(super) const ELEMENTWISE_BLOCK: u32 = 256;

/// A 1-D launch of `ceil(n / block)` blocks of `block` threads.
pub(super) fn linear_grid(n: i32, block: u32) -> LaunchConfig {
    LaunchConfig {
        grid: ((n as u32).div_ceil(block), 1, 1),
        block: (block, 1, 1),
        shared_bytes: 0,
    }
}

/// The kernel name suffix of a 16-bit-or-f32 element type (`_f32`, `_f16`, `_bf16`).
pub(super) fn suffix(op: &str, dtype: DType) -> Result<&'static str> {
    match dtype {
        DType::F32 => Ok("f32"),
        DType::F16 => Ok("f16"),
        DType::BF16 => Ok("bf16"),
        other => Err(super::bad(op, format!("no {op} kernel for {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elementwise_grid_covers_n_with_256_thread_blocks() {
        // ceil(n / 256): 1 → 1 block, 256 → 1, 257 → 2, 8191 → 32.
        for (n, blocks) in [(1, 1), (256, 1), (257, 2), (8191, 32)] {
            let c = linear_grid(n, ELEMENTWISE_BLOCK);
            assert_eq!(c.grid, (blocks, 1, 1), "n = {n}");
            assert_eq!(c.block, (256, 1, 1));
            assert_eq!(c.shared_bytes, 0);
        }
    }

    #[test]
    fn suffixes_name_the_table_type() {
        assert_eq!(suffix("embedding", DType::BF16).unwrap(), "bf16");
        assert_eq!(suffix("embedding", DType::F16).unwrap(), "f16");
        assert!(suffix("embedding", DType::Q4_0).is_err());
    }
}
