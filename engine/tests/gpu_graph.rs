//! Graph capture and replay on the GPU: captured work does not run at capture, replays exactly
//! what direct launches compute (kernels and the BLAS GEMM), and replays repeatably. Skips,
//! saying so, where no GPU is usable.

mod common;

use common::gpu::gpu;
use wavefront::backend::{Backend, LinearParams};
use wavefront::formats::random::values;
use wavefront::DType;

#[test]
fn captured_kernels_run_only_on_replay_and_repeatably() {
    let Some(b) = gpu() else { return };
    let n = 1000;
    let (xv, yv) = (values(n, 1), values(n, 2));
    let mut x = b.upload_f32(&xv).unwrap();
    let y = b.upload_f32(&yv).unwrap();
    let g = b
        .capture(|b| {
            b.add(&mut x, &y, n)?;
            b.add(&mut x, &y, n)
        })
        .unwrap();
    assert_eq!(
        b.download_f32(&x).unwrap(),
        xv,
        "captured work must not run at capture"
    );
    // Each replay adds y twice, in the captured order.
    let mut want = xv.clone();
    for _ in 0..3 {
        b.replay(&g).unwrap();
        for (w, v) in want.iter_mut().zip(&yv) {
            *w = *w + v + v;
        }
        assert_eq!(b.download_f32(&x).unwrap(), want);
    }
}

#[test]
fn a_captured_gemm_replays_bit_for_bit() {
    let Some(b) = gpu() else { return };
    let (rows, k, m) = (4, 576, 1536);
    let x = b.upload_f32(&values(rows * k, 3)).unwrap();
    let w: Vec<u8> = values(m * k, 4)
        .iter()
        .flat_map(|v| half::bf16::from_f32(*v).to_bits().to_le_bytes())
        .collect();
    let w = b.upload(DType::BF16, &w).unwrap();
    let p = LinearParams {
        rows,
        in_features: k,
        out_features: m,
    };
    let mut direct = b.alloc(DType::F32, rows * m).unwrap();
    b.linear(&x, &w, None, &mut direct, p).unwrap();
    let mut out = b.alloc(DType::F32, rows * m).unwrap();
    let g = b.capture(|b| b.linear(&x, &w, None, &mut out, p)).unwrap();
    b.replay(&g).unwrap();
    assert_eq!(
        b.download_f32(&out).unwrap(),
        b.download_f32(&direct).unwrap()
    );
}
