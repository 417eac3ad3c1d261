//! Dequantization of the storage types in [`DType`], following ggml's block layouts and
//! formulas (`ggml-quants.c` `dequantize_row_*`; gguf-py `gguf/quants.py` is the executable
//! spec the tests compare against, bit for bit).
//!
//! A block covers `dtype.block_elems()` consecutive elements of a row and takes
//! `dtype.block_bytes()` bytes. All multi-byte fields are little-endian. The f32 operations
//! run in ggml's order, so results are bit-identical, not merely close. (Where the order could
//! not matter it is still kept: in Q4_K, `d * sc * q` is exact in f32 — an f16 times a 6-bit
//! and a 4-bit integer — so only the final subtraction rounds.)

use half::{bf16, f16};

use crate::tensor::DType;

/// Dequantizes `n` elements of `dtype` from `bytes` into f32.
/// Errors (as a message) when `bytes` does not hold exactly `n` elements.
pub fn dequantize(dtype: DType, bytes: &[u8], n: usize) -> Result<Vec<f32>, String> {
    let mut out = vec![0.0f32; n];
    dequantize_into(dtype, bytes, &mut out)?;
    Ok(out)
}

/// Dequantizes one row (or any whole number of blocks) of `dtype` from `bytes` into `out`;
/// `out.len()` is the number of elements.
pub fn dequantize_row(dtype: DType, bytes: &[u8], out: &mut [f32]) -> Result<(), String> {
    dequantize_into(dtype, bytes, out)
}

fn dequantize_into(dtype: DType, bytes: &[u8], out: &mut [f32]) -> Result<(), String> {
    let n = out.len();
    let expected = dtype.row_bytes(n).ok_or_else(|| {
        format!(
            "{dtype}: {n} elements is not a whole number of {}-element blocks",
            dtype.block_elems()
        )
    })?;
    if bytes.len() != expected {
        return Err(format!(
            "{dtype}: {n} elements need {expected} bytes, got {}",
            bytes.len()
        ));
    }
    if dtype == DType::Q8_0Kv {
        return Err(format!("{dtype} is the KV cache's type, not a file's"));
    }
    let (bb, be) = (dtype.block_bytes(), dtype.block_elems());
    // Lengths were checked above: both iterators yield exactly n / be items.
    for (src, dst) in bytes.chunks_exact(bb).zip(out.chunks_exact_mut(be)) {
        match dtype {
            DType::F32 => block_f32(src, dst),
            DType::F16 => block_f16(src, dst),
            DType::BF16 => block_bf16(src, dst),
            _ => decode_block(dtype, src, dst),
        }
    }
    Ok(())
}

/// `blocks` random but valid blocks of the block type `dtype`, every byte drawn from `next`
/// except the f16 scale fields, which are set so the values reach about `scale` in magnitude
/// (each scale of a random sign and a random fraction in [0.5, 1] of that; Q4_1/Q5_1 minimums and K-quant minimum
/// scales likewise, so rows are not all of one sign). For tests and benchmarks of the
/// quantized kernels: every bit pattern of the quants and of the K-quants' packed 6-bit scales
/// occurs. Panics on a plain dtype.
pub fn random_blocks(
    dtype: DType,
    blocks: usize,
    scale: f32,
    mut next: impl FnMut() -> u64,
) -> Vec<u8> {
    assert!(
        dtype.is_quantized() && dtype != DType::Q8_0Kv,
        "{dtype} is not a weight block type"
    );
    // (offset of the main f16 scale, largest |quant| times the largest sub-scale it multiplies,
    //  offset of the f16 minimum or minimum scale (if any), largest sub-minimum)
    let (d_at, d_span, m_at, m_span): (usize, f32, Option<usize>, f32) = match dtype {
        DType::Q8_0 => (0, 127.0, None, 1.0),
        DType::Q4_0 => (0, 8.0, None, 1.0),
        DType::Q4_1 => (0, 15.0, Some(2), 1.0),
        DType::Q5_0 => (0, 16.0, None, 1.0),
        DType::Q5_1 => (0, 31.0, Some(2), 1.0),
        DType::Q4_K => (0, 15.0 * 63.0, Some(2), 63.0),
        DType::Q5_K => (0, 31.0 * 63.0, Some(2), 63.0),
        DType::Q6_K => (208, 32.0 * 128.0, None, 1.0),
        _ => unreachable!(),
    };
    let bb = dtype.block_bytes();
    let mut out = Vec::with_capacity(blocks * bb);
    for _ in 0..blocks {
        let start = out.len();
        out.extend((0..bb).map(|_| next() as u8));
        let frac = |r: u64| 0.5 + (r % 1024) as f32 / 2048.0;
        // Either sign: Q4_0's and Q5_0's scales are negative whenever a block's largest
        // magnitude is a positive value (ggml divides it by -8 or -16).
        let sign = if next() & 1 == 0 { 1.0 } else { -1.0 };
        let d = sign * scale * frac(next()) / d_span;
        out[start + d_at..start + d_at + 2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
        if let Some(m_at) = m_at {
            // Q4_1/Q5_1: y = q·d + m, so m = −scale/2 centres the values; K-quants subtract
            // dmin·m with m up to 63.
            let m = if m_span == 1.0 {
                -0.5 * scale * frac(next())
            } else {
                0.5 * scale * frac(next()) / m_span
            };
            out[start + m_at..start + m_at + 2].copy_from_slice(&f16::from_f32(m).to_le_bytes());
        }
    }
    out
}

/// Reads the little-endian f16 at `b[i..i + 2]` as f32 (exact).
#[inline(always)]
pub(crate) fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

fn block_f32(b: &[u8], y: &mut [f32]) {
    y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
}

fn block_f16(b: &[u8], y: &mut [f32]) {
    y[0] = f16_at(b, 0);
}

/// bf16 is the top half of an f32: shift back (exact, NaN payloads kept).
fn block_bf16(b: &[u8], y: &mut [f32]) {
    y[0] = bf16::from_le_bytes([b[0], b[1]]).to_f32();
}

/// One block of the weight block type `dtype` (one of [`DType::WEIGHT_BLOCKS`]) from `b` into
/// `y` (its `block_elems()` values). Inlined into its callers, so the CPU backend's portable
/// loops vectorize it with their own target features.
#[inline(always)]
pub(crate) fn decode_block(dtype: DType, b: &[u8], y: &mut [f32]) {
    match dtype {
        DType::Q8_0 => block_q8_0(b, y),
        DType::Q4_0 => block_q4_0(b, y),
        DType::Q4_1 => block_q4_1(b, y),
        DType::Q5_0 => block_q5_0(b, y),
        DType::Q5_1 => block_q5_1(b, y),
        DType::Q4_K => block_q4_k(b, y),
        DType::Q5_K => block_q5_k(b, y),
        DType::Q6_K => block_q6_k(b, y),
        other => unreachable!("{other} is not a weight block type"),
    }
}

/// `block_q8_0` (34 bytes, 32 elements): `d: f16`, `qs: [i8; 32]`.
/// `y[j] = qs[j] * d`.
#[inline(always)]
fn block_q8_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for (yj, &q) in y.iter_mut().zip(&b[2..34]) {
        *yj = (q as i8) as f32 * d;
    }
}

/// `block_q4_0` (18 bytes, 32 elements): `d: f16`, `qs: [u8; 16]`; element `j < 16` is the low
/// nibble of `qs[j]`, element `j + 16` its high nibble. `y = (q - 8) * d`.
#[inline(always)]
fn block_q4_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let (lo, hi) = y.split_at_mut(16);
    for (j, &q) in b[2..18].iter().enumerate() {
        lo[j] = ((q & 0x0F) as i32 - 8) as f32 * d;
        hi[j] = ((q >> 4) as i32 - 8) as f32 * d;
    }
}

/// `block_q4_1` (20 bytes, 32 elements): `d: f16`, `m: f16`, `qs: [u8; 16]` (nibbles as in
/// Q4_0). `y = q * d + m`.
#[inline(always)]
fn block_q4_1(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let (lo, hi) = y.split_at_mut(16);
    for (j, &q) in b[4..20].iter().enumerate() {
        lo[j] = (q & 0x0F) as f32 * d + m;
        hi[j] = (q >> 4) as f32 * d + m;
    }
}

/// The 5-bit values of a Q5_0/Q5_1 block: `qh` (a little-endian u32) holds bit 4 of element
/// `j` at bit `j`; the low 4 bits are the nibbles of `qs` as in Q4_0.
#[inline(always)]
pub(crate) fn q5_values(qh: &[u8], qs: &[u8]) -> [u8; 32] {
    let h = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    let mut q = [0u8; 32];
    for (j, &b) in qs.iter().enumerate() {
        q[j] = (b & 0x0F) | ((((h >> j) & 1) as u8) << 4);
        q[j + 16] = (b >> 4) | ((((h >> (j + 16)) & 1) as u8) << 4);
    }
    q
}

/// `block_q5_0` (22 bytes, 32 elements): `d: f16`, `qh: [u8; 4]`, `qs: [u8; 16]`.
/// `y = (q - 16) * d`.
#[inline(always)]
fn block_q5_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for (yj, &q) in y.iter_mut().zip(&q5_values(&b[2..6], &b[6..22])) {
        *yj = (q as i32 - 16) as f32 * d;
    }
}

/// `block_q5_1` (24 bytes, 32 elements): `d: f16`, `m: f16`, `qh: [u8; 4]`, `qs: [u8; 16]`.
/// `y = q * d + m`.
#[inline(always)]
fn block_q5_1(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    for (yj, &q) in y.iter_mut().zip(&q5_values(&b[4..8], &b[8..24])) {
        *yj = q as f32 * d + m;
    }
}

/// The 6-bit scale and min of sub-block `j` (0..8) of a Q4_K block, packed in 12 bytes
/// (ggml `get_scale_min_k4`): sub-blocks 0..4 use the low 6 bits of bytes `j` and `j + 4`;
/// sub-blocks 4..8 combine a nibble of byte `j + 4` with the top 2 bits of bytes `j - 4`/`j`.
#[inline(always)]
pub(crate) fn scale_min_k4(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

/// `block_q4_K` (144 bytes, 256 elements): `d: f16`, `dmin: f16`, `scales: [u8; 12]` (8 packed
/// 6-bit scale/min pairs), `qs: [u8; 128]`. Each 32-byte chunk `c` of `qs` holds sub-block
/// `2c` in its low nibbles and `2c + 1` in its high nibbles. For sub-block `j` with scale
/// `sc`, min `m`: `y = (d * sc) * q - (dmin * m)`.
#[inline(always)]
fn block_q4_k(b: &[u8], y: &mut [f32]) {
    block_k::<false>(b, y)
}

/// `block_q5_K` (176 bytes, 256 elements): `d: f16`, `dmin: f16`, `scales: [u8; 12]` (as in
/// Q4_K), `qh: [u8; 32]`, `qs: [u8; 128]`. Sub-block `j` takes its low 4 bits as Q4_K does
/// and bit 4 from bit `j` of `qh[l]`. `y = (d * sc) * q - (dmin * m)`.
#[inline(always)]
fn block_q5_k(b: &[u8], y: &mut [f32]) {
    block_k::<true>(b, y)
}

/// Q4_K, or Q5_K (`FIVE`: bit 4 from `qh`).
#[inline(always)]
fn block_k<const FIVE: bool>(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let scales = &b[4..16];
    let (qh, qs) = if FIVE {
        (&b[16..48], &b[48..176])
    } else {
        (&b[0..0], &b[16..144])
    };
    for (c, (q, out)) in qs.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
        let (sc_lo, m_lo) = scale_min_k4(2 * c, scales);
        let (sc_hi, m_hi) = scale_min_k4(2 * c + 1, scales);
        let (d_lo, min_lo) = (d * sc_lo as f32, dmin * m_lo as f32);
        let (d_hi, min_hi) = (d * sc_hi as f32, dmin * m_hi as f32);
        let (lo, hi) = out.split_at_mut(32);
        for l in 0..32 {
            let (mut ql, mut qhi) = (q[l] & 0x0F, q[l] >> 4);
            if FIVE {
                ql |= ((qh[l] >> (2 * c)) & 1) << 4;
                qhi |= ((qh[l] >> (2 * c + 1)) & 1) << 4;
            }
            lo[l] = d_lo * ql as f32 - min_lo;
            hi[l] = d_hi * qhi as f32 - min_hi;
        }
    }
}

/// `block_q6_K` (210 bytes, 256 elements): `ql: [u8; 128]` (low 4 bits), `qh: [u8; 64]`
/// (high 2 bits), `scales: [i8; 16]` (one per 16 elements), `d: f16`. Each half of 128
/// elements uses 64 bytes of `ql` and 32 of `qh`; within a half, element `l + 32 * k`
/// (k = 0..4) takes the low/high nibble of `ql[l]`/`ql[l + 32]` and bits `2k..2k+2` of
/// `qh[l]`. `y = (d * scale) * (q - 32)`.
#[inline(always)]
fn block_q6_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 208);
    for (half, out) in y.chunks_exact_mut(128).enumerate() {
        let ql = &b[64 * half..64 * half + 64];
        let qh = &b[128 + 32 * half..128 + 32 * half + 32];
        let sc = &b[192 + 8 * half..192 + 8 * half + 8];
        for l in 0..32 {
            let is = l / 16;
            let q = [
                (ql[l] & 0x0F) | ((qh[l] & 3) << 4),
                (ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4),
                (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4),
                (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4),
            ];
            for (k, &qk) in q.iter().enumerate() {
                let scale = sc[is + 2 * k] as i8 as f32;
                out[l + 32 * k] = d * scale * (qk as i32 - 32) as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_roundtrips_bytes() {
        let x = [1.5f32, -0.0, f32::INFINITY, 3.25e-39];
        let bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
        let y = dequantize(DType::F32, &bytes, 4).unwrap();
        assert_eq!(
            y.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            x.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn q8_0_by_hand() {
        // d = 0.5 (f16 0x3800), qs = -3, 0, 127, -128, then zeros.
        let mut b = vec![0x00, 0x38, 0xFD, 0x00, 0x7F, 0x80];
        b.resize(34, 0);
        let y = dequantize(DType::Q8_0, &b, 32).unwrap();
        assert_eq!(&y[..4], &[-1.5, 0.0, 63.5, -64.0]);
    }

    #[test]
    fn q4_0_by_hand() {
        // d = 2.0 (0x4000); qs[0] = 0xF0: element 0 = (0 - 8) * 2, element 16 = (15 - 8) * 2.
        let mut b = vec![0x00, 0x40, 0xF0];
        b.resize(18, 0x88);
        let y = dequantize(DType::Q4_0, &b, 32).unwrap();
        assert_eq!((y[0], y[16], y[1], y[17]), (-16.0, 14.0, 0.0, 0.0));
    }

    #[test]
    fn element_count_not_a_whole_block_is_an_error() {
        let err = dequantize(DType::Q4_K, &[0; 144], 255).unwrap_err();
        assert!(err.contains("255") && err.contains("Q4_K"), "{err}");
    }
}
