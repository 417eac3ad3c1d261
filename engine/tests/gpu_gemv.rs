//! The row-group GEMVs on the GPU: how many blocks a launch takes (each looping over its share
//! of the row groups) changes no bit of any row, for 16-bit and block-quantized weights, one
//! input row and several, plain and SwiGLU. Skips, saying so, where no GPU is usable.

mod common;

use common::gpu::gpu;
use wavefront::backend::gpu::GpuBackend;
use wavefront::backend::{Activation, Backend, LinearParams};
use wavefront::formats::quants::random_blocks;
use wavefront::formats::random::values;
use wavefront::DType;

/// The caps tried: the default (`None`), one block an input row (every group in one block), a
/// few blocks (uneven shares), and a block a group.
const CAPS: [Option<u32>; 4] = [None, Some(1), Some(7), Some(1 << 30)];

/// The weight bytes of `n` values of `dtype` (16-bit values rounded, or random GGUF blocks).
fn weight_bytes(dtype: DType, n: usize, seed: u64) -> Vec<u8> {
    if dtype.is_quantized() {
        let mut s = seed;
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            s
        };
        return random_blocks(dtype, n / dtype.block_elems(), 0.05, &mut next);
    }
    wavefront::tensor::encode_f32(dtype, &values(n, seed)).unwrap()
}

/// Sets both backends' caps (the 16-bit and the quantized GEMVs).
fn set_cap(b: &mut GpuBackend, cap: Option<u32>) {
    b.set_gemv_blocks(cap);
    b.set_qgemv_blocks(cap);
}

/// `linear` and `gate_up_swiglu` over `rows` input rows at every cap: the outputs' bits.
fn outputs(b: &mut GpuBackend, dtype: DType, rows: usize) -> Vec<Vec<Vec<u32>>> {
    // 3000 rows of 1024 (375 groups of 8 at WAVE=32; 188 pairs-of-rows groups of 16 quantized);
    // SwiGLU over 1500 outputs.
    let (m, k) = (3000, 1024);
    let x = b.upload_f32(&values(rows * k, 11)).unwrap();
    let w = b.upload(dtype, &weight_bytes(dtype, m * k, 12)).unwrap();
    let mut out = b.alloc(DType::F32, rows * m).unwrap();
    let mut tmp = b.alloc(DType::F32, 2 * rows * m).unwrap();
    let p = LinearParams {
        rows,
        in_features: k,
        out_features: m,
    };
    let mut all = Vec::new();
    for cap in CAPS {
        set_cap(b, cap);
        let mut got = Vec::new();
        for swiglu in [false, true] {
            let mut run = || {
                if swiglu {
                    b.gate_up_swiglu(&x, &w, &mut tmp, &mut out, rows, k, m / 2, Activation::Silu)
                } else {
                    b.linear(&x, &w, None, &mut out, p)
                }
            };
            if rows > 1 {
                b.invariant_rows(&mut run).unwrap();
            } else {
                run().unwrap();
            }
            let n = if swiglu { rows * m / 2 } else { rows * m };
            let v = b.download_f32(&out).unwrap();
            got.push(v[..n].iter().map(|f| f.to_bits()).collect());
        }
        all.push(got);
    }
    set_cap(b, None);
    all
}

#[test]
fn the_block_cap_changes_no_bit_of_any_row() {
    let Some(mut b) = gpu() else { return };
    b.set_gemv_rows(false); // several rows on the one-row kernels too
    for dtype in [DType::BF16, DType::F16, DType::Q4_0, DType::Q4_K] {
        for rows in [1, 3] {
            let all = outputs(&mut b, dtype, rows);
            for (cap, got) in CAPS.iter().zip(&all).skip(1) {
                for (form, (g, want)) in ["linear", "swiglu"].iter().zip(got.iter().zip(&all[0])) {
                    assert!(
                        g.iter().any(|&v| v != 0),
                        "{dtype} {form} rows {rows}: all zeros"
                    );
                    let diff = g.iter().zip(want).position(|(a, b)| a != b);
                    assert_eq!(
                        diff, None,
                        "{dtype} {form} rows {rows}: cap {cap:?} differs from the default"
                    );
                }
            }
        }
    }
}
