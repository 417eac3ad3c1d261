//! Q8_0 for the KV cache ([`DType::Q8_0Kv`], `--kv-type q8_0`): llama.cpp's Q8_0 arithmetic in a
//! layout a wave reads with aligned 16-byte loads.
//!
//! **Arithmetic** (llama.cpp's `quantize_row_q8_0_ref`, bit for bit): a block of 32 consecutive
//! elements holds `d = amax / 127` rounded to f16 and 32 int8 `q_i = round(x_i · (1 / d))`
//! (round half away from zero; `1 / d` of the unrounded f32 `d`, 0 when `d` is 0), and reads back
//! as `q_i · d` (exact in f32). A block that holds a NaN stores a NaN scale, so NaN-poisoned
//! arenas stay poisoned.
//!
//! **Layout**: superblocks of 256 elements, 272 bytes (17 × 16): the 256 quants in element order,
//! then the 8 blocks' f16 scales. Element `e` has its quant at byte `(e / 256) · 272 + e mod 256`
//! and its block's scale at `(e / 256) · 272 + 256 + 2 · ((e mod 256) / 32)`. A tensor of `n`
//! elements takes `ceil(n / 256)` superblocks; the tail past `n` is zero. Any run of 16 quants
//! starting at a multiple of 16 is one aligned 16-byte vector, and a block never straddles a
//! superblock, so a KV row of `head_dim` (a multiple of 32) elements is `head_dim / 32` whole
//! blocks wherever it starts.

use half::f16;

/// Elements a block shares a scale over.
pub const BLOCK: usize = 32;
/// Elements of a superblock.
pub const SUPER: usize = 256;
/// Bytes of a superblock: 256 quants and 8 f16 scales.
pub const SUPER_BYTES: usize = SUPER + 2 * (SUPER / BLOCK);

/// Byte of element `e`'s quant.
pub fn quant_byte(e: usize) -> usize {
    (e / SUPER) * SUPER_BYTES + e % SUPER
}

/// First byte of the f16 scale of element `e`'s block.
pub fn scale_byte(e: usize) -> usize {
    (e / SUPER) * SUPER_BYTES + SUPER + 2 * ((e % SUPER) / BLOCK)
}

/// Bytes of a tensor of `n` elements.
pub fn bytes_for(n: usize) -> usize {
    n.div_ceil(SUPER) * SUPER_BYTES
}

/// One block (`x.len()` = 32): its f16 scale and quants.
pub fn quantize_block(x: &[f32]) -> (f16, [i8; BLOCK]) {
    debug_assert_eq!(x.len(), BLOCK);
    let mut q = [0i8; BLOCK];
    if x.iter().any(|v| v.is_nan()) {
        return (f16::NAN, q);
    }
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    for (qi, &v) in q.iter_mut().zip(x) {
        *qi = (v * id).round() as i8;
    }
    (f16::from_f32(d), q)
}

/// Writes `src` (a whole number of blocks) at element `start` (a multiple of 32) of `bytes`.
pub fn write(bytes: &mut [u8], start: usize, src: &[f32]) {
    assert!(
        start.is_multiple_of(BLOCK) && src.len().is_multiple_of(BLOCK),
        "Q8_0 writes whole blocks"
    );
    for (b, x) in src.chunks_exact(BLOCK).enumerate() {
        let e = start + b * BLOCK;
        let (d, q) = quantize_block(x);
        bytes[scale_byte(e)..scale_byte(e) + 2].copy_from_slice(&d.to_le_bytes());
        for (i, qi) in q.iter().enumerate() {
            bytes[quant_byte(e + i)] = *qi as u8;
        }
    }
}

/// Elements `start .. start + dst.len()` of `bytes`, dequantized into `dst`.
pub fn read(bytes: &[u8], start: usize, dst: &mut [f32]) {
    let mut i = 0;
    while i < dst.len() {
        let e = start + i;
        let s = scale_byte(e);
        let d = f16::from_le_bytes([bytes[s], bytes[s + 1]]).to_f32();
        if e.is_multiple_of(BLOCK) && dst.len() - i >= BLOCK {
            // A whole block: one scale, its 32 quants consecutive.
            let q = &bytes[quant_byte(e)..][..BLOCK];
            for (o, &qi) in dst[i..i + BLOCK].iter_mut().zip(q) {
                *o = qi as i8 as f32 * d;
            }
            i += BLOCK;
        } else {
            dst[i] = bytes[quant_byte(e)] as i8 as f32 * d;
            i += 1;
        }
    }
}

/// `v` quantized: `bytes_for(v.len())` bytes. A partial last block is padded with zeros.
pub fn encode(v: &[f32]) -> Vec<u8> {
    let mut bytes = vec![0u8; bytes_for(v.len())];
    let whole = v.len() / BLOCK * BLOCK;
    write(&mut bytes, 0, &v[..whole]);
    if whole < v.len() {
        let mut last = [0.0f32; BLOCK];
        last[..v.len() - whole].copy_from_slice(&v[whole..]);
        write(&mut bytes, whole, &last);
    }
    bytes
}

/// `n` elements of `bytes`.
pub fn decode(bytes: &[u8], n: usize) -> Vec<f32> {
    let mut out = vec![0.0; n];
    read(bytes, 0, &mut out);
    out
}

/// Rounds `v` in place to what Q8_0 stores, block by block from `v[0]` (a partial last block
/// as if padded with zeros).
pub fn round_trip(v: &mut [f32]) {
    let n = v.len();
    v.copy_from_slice(&decode(&encode(v), n));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        // A small LCG: values in (-4, 4) with varied magnitudes per block.
        let mut s = seed;
        (0..n)
            .map(|i| {
                s = s.wrapping_mul(1664525).wrapping_add(1013904223);
                let u = (s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0;
                u * (1 + (i / BLOCK) % 4) as f32
            })
            .collect()
    }

    #[test]
    fn superblocks_put_quants_first_and_scales_last() {
        assert_eq!(SUPER_BYTES, 272);
        assert_eq!(SUPER_BYTES % 16, 0);
        assert_eq!((quant_byte(0), scale_byte(0)), (0, 256));
        assert_eq!((quant_byte(255), scale_byte(255)), (255, 256 + 14));
        assert_eq!((quant_byte(256), scale_byte(256)), (272, 272 + 256));
        assert_eq!(
            (quant_byte(300), scale_byte(300)),
            (272 + 44, 272 + 256 + 2)
        );
        assert_eq!(bytes_for(0), 0);
        assert_eq!(bytes_for(1), 272);
        assert_eq!(bytes_for(512), 544);
    }

    #[test]
    fn quantization_error_is_at_most_half_a_step_plus_the_scale_rounding() {
        let v = values(1024, 7);
        let back = decode(&encode(&v), v.len());
        for (b, (x, y)) in v.chunks(BLOCK).zip(back.chunks(BLOCK)).enumerate() {
            let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            // |x − q·d16| ≤ |x − q·d| + |q|·|d − d16| ≤ d/2 + 127·d·2⁻¹¹
            let bound = d / 2.0 + 127.0 * d / 2048.0 + 1e-6;
            for (a, b2) in x.iter().zip(y) {
                assert!(
                    (a - b2).abs() <= bound,
                    "block {b}: {a} → {b2} (bound {bound})"
                );
            }
            // the largest element maps to ±127
            let i = x.iter().position(|v| v.abs() == amax).unwrap();
            let (_, q) = quantize_block(x);
            assert_eq!(q[i].unsigned_abs(), 127);
        }
    }

    #[test]
    fn round_trip_is_idempotent_and_zero_blocks_stay_zero() {
        let mut v = values(512, 3);
        v[64..96].fill(0.0);
        round_trip(&mut v);
        let once = v.clone();
        round_trip(&mut v);
        assert_eq!(
            once.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            v.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
        assert!(v[64..96].iter().all(|&x| x == 0.0));
    }

    #[test]
    fn a_nan_poisons_its_block_only() {
        let mut v = values(64, 1);
        v[5] = f32::NAN;
        let back = decode(&encode(&v), 64);
        assert!(back[..32].iter().all(|x| x.is_nan()));
        assert!(back[32..].iter().all(|x| x.is_finite()));
    }

    #[test]
    fn writes_land_where_reads_find_them() {
        let v = values(96, 11);
        let mut bytes = vec![0u8; bytes_for(1024)];
        write(&mut bytes, 224, &v); // straddles the first superblock's end
        let mut got = vec![0.0; 96];
        read(&bytes, 224, &mut got);
        let mut want = v.clone();
        round_trip(&mut want);
        assert_eq!(got, want);
        let mut before = vec![1.0; 32];
        read(&bytes, 192, &mut before);
        assert!(before.iter().all(|&x| x == 0.0));
    }

    #[test]
    fn reads_of_any_range_are_the_elements_one_by_one() {
        let n = 3 * SUPER + 64;
        let bytes = encode(&values(n, 5));
        let one = |e: usize| {
            let s = scale_byte(e);
            bytes[quant_byte(e)] as i8 as f32
                * f16::from_le_bytes([bytes[s], bytes[s + 1]]).to_f32()
        };
        // Block-aligned and not, whole blocks and partial ones, across superblocks.
        for (start, len) in [
            (0, n),
            (32, 64),
            (5, 70),
            (250, 40),
            (31, 1),
            (480, 33),
            (1, 0),
        ] {
            let mut got = vec![f32::NAN; len];
            read(&bytes, start, &mut got);
            let want: Vec<f32> = (start..start + len).map(one).collect();
            assert_eq!(got, want, "{start}+{len}");
        }
    }

    #[test]
    fn matches_the_llama_cpp_reference_arithmetic_on_a_hand_block() {
        // amax 2.54 → d = 0.02, q = round(x · 50)
        let mut x = [0.0f32; 32];
        x[0] = 2.54;
        x[1] = -1.26; // −63
        x[2] = 0.011; // 0.55 → 1
        x[3] = -0.009; // −0.45 → 0
        let (d, q) = quantize_block(&x);
        assert_eq!(d, f16::from_f32(0.02));
        assert_eq!(&q[..4], &[127, -63, 1, 0]);
        assert!(q[4..].iter().all(|&v| v == 0));
    }
}
