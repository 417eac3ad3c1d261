//! The AVX2 twin of `qrow`'s AVX-512 path (CPUs without AVX-512: most desktop Intel parts, AMD
//! before Zen 4): 8 weights a register, decoded with the scalar decoder's f32 operations in its
//! order (bit for bit `formats::quants`' values), four accumulators a dot product (the 8-element
//! groups of each 32 by their position), reduced in one fixed order that the batched tile
//! repeats, so a row's result never depends on the batch at this level either.

use std::arch::x86_64::*;

use crate::formats::quants::scale_min_k4;
use crate::tensor::DType;

/// The little-endian f16 at `b[i..i + 2]` as f32 (exact), with F16C (this level's and
/// `qrow`'s AVX-512 level's). Broadcast first: an insert into a register would make the
/// conversion wait on whatever last wrote it (an accumulator).
#[inline(always)]
pub(super) unsafe fn f16_at(b: &[u8], i: usize) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_set1_epi16(i16::from_le_bytes([
        b[i],
        b[i + 1],
    ]))))
}

#[inline(always)]
unsafe fn splat_f16(b: &[u8], i: usize) -> __m256 {
    _mm256_set1_ps(f16_at(b, i))
}

/// 8 bytes from `b[i..]` widened to 8 lanes of u32 (or i32 for `signed`).
#[inline(always)]
unsafe fn bytes8(b: &[u8], i: usize) -> __m256i {
    debug_assert!(i + 8 <= b.len());
    _mm256_cvtepu8_epi32(_mm_loadl_epi64(b.as_ptr().add(i) as *const __m128i))
}

#[inline(always)]
unsafe fn ibytes8(b: &[u8], i: usize) -> __m256i {
    debug_assert!(i + 8 <= b.len());
    _mm256_cvtepi8_epi32(_mm_loadl_epi64(b.as_ptr().add(i) as *const __m128i))
}

#[inline(always)]
unsafe fn cvt(v: __m256i) -> __m256 {
    _mm256_cvtepi32_ps(v)
}

/// Bit 4 of 8 elements from bits `shift .. shift + 8` of `h`, as lanes of 0 or 16.
#[inline(always)]
unsafe fn high_bits(h: u32, shift: u32) -> __m256i {
    let lanes = _mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0);
    let v = _mm256_srlv_epi32(_mm256_set1_epi32((h >> shift) as i32), lanes);
    _mm256_slli_epi32(_mm256_and_si256(v, _mm256_set1_epi32(1)), 4)
}

/// Calls `f(offset, w)` for every 8 consecutive weights of the blocks in `bytes`.
#[inline(always)]
unsafe fn for_each8(dtype: DType, bytes: &[u8], mut f: impl FnMut(usize, __m256)) {
    let mask4 = _mm256_set1_epi32(0x0F);
    let (bb, be) = (dtype.block_bytes(), dtype.block_elems());
    for (i, b) in bytes.chunks_exact(bb).enumerate() {
        let o = i * be;
        match dtype {
            DType::Q8_0 => {
                let d = splat_f16(b, 0);
                for h in 0..4 {
                    f(o + 8 * h, _mm256_mul_ps(cvt(ibytes8(b, 2 + 8 * h)), d));
                }
            }
            DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q5_1 => {
                let d = splat_f16(b, 0);
                let (qs, qh) = match dtype {
                    DType::Q4_0 => (2, None),
                    DType::Q4_1 => (4, None),
                    DType::Q5_0 => (6, Some(2)),
                    _ => (8, Some(4)),
                };
                let h = qh.map(|at| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]));
                for half in 0..2 {
                    let q = bytes8(b, qs + 8 * half);
                    let (mut lo, mut hi) = (_mm256_and_si256(q, mask4), _mm256_srli_epi32(q, 4));
                    if let Some(h) = h {
                        lo = _mm256_or_si256(lo, high_bits(h, 8 * half as u32));
                        hi = _mm256_or_si256(hi, high_bits(h, 16 + 8 * half as u32));
                    }
                    let (wl, wh) = match dtype {
                        DType::Q4_0 | DType::Q5_0 => {
                            let z = _mm256_set1_epi32(if dtype == DType::Q4_0 { 8 } else { 16 });
                            (
                                _mm256_mul_ps(cvt(_mm256_sub_epi32(lo, z)), d),
                                _mm256_mul_ps(cvt(_mm256_sub_epi32(hi, z)), d),
                            )
                        }
                        _ => {
                            let m = splat_f16(b, 2);
                            (
                                _mm256_add_ps(_mm256_mul_ps(cvt(lo), d), m),
                                _mm256_add_ps(_mm256_mul_ps(cvt(hi), d), m),
                            )
                        }
                    };
                    f(o + 8 * half, wl);
                    f(o + 16 + 8 * half, wh);
                }
            }
            DType::Q4_K | DType::Q5_K => {
                let five = dtype == DType::Q5_K;
                let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
                let scales = &b[4..16];
                let qs_at = if five { 48 } else { 16 };
                let one = _mm256_set1_epi32(1);
                for c in 0..4 {
                    let (sc_lo, m_lo) = scale_min_k4(2 * c, scales);
                    let (sc_hi, m_hi) = scale_min_k4(2 * c + 1, scales);
                    let d_lo = _mm256_set1_ps(d * sc_lo as f32);
                    let min_lo = _mm256_set1_ps(dmin * m_lo as f32);
                    let d_hi = _mm256_set1_ps(d * sc_hi as f32);
                    let min_hi = _mm256_set1_ps(dmin * m_hi as f32);
                    for l in [0, 8, 16, 24] {
                        let q = bytes8(b, qs_at + 32 * c + l);
                        let (mut lo, mut hi) =
                            (_mm256_and_si256(q, mask4), _mm256_srli_epi32(q, 4));
                        if five {
                            let qh = _mm256_srlv_epi32(
                                bytes8(b, 16 + l),
                                _mm256_set1_epi32(2 * c as i32),
                            );
                            lo = _mm256_or_si256(
                                lo,
                                _mm256_slli_epi32(_mm256_and_si256(qh, one), 4),
                            );
                            let qh1 = _mm256_srli_epi32(qh, 1);
                            hi = _mm256_or_si256(
                                hi,
                                _mm256_slli_epi32(_mm256_and_si256(qh1, one), 4),
                            );
                        }
                        let at = o + 64 * c + l;
                        f(at, _mm256_sub_ps(_mm256_mul_ps(d_lo, cvt(lo)), min_lo));
                        f(at + 32, _mm256_sub_ps(_mm256_mul_ps(d_hi, cvt(hi)), min_hi));
                    }
                }
            }
            DType::Q6_K => {
                let d = f16_at(b, 208);
                let (three, thirty_two) = (_mm256_set1_epi32(3), _mm256_set1_epi32(32));
                for half in 0..2 {
                    let (ql, qh, sc) = (64 * half, 128 + 32 * half, 192 + 8 * half);
                    for l in [0, 8, 16, 24] {
                        let is = l / 16;
                        let a = bytes8(b, ql + l);
                        let c = bytes8(b, ql + l + 32);
                        let h = bytes8(b, qh + l);
                        let h2 = |v: __m256i| _mm256_slli_epi32(_mm256_and_si256(v, three), 4);
                        let q = [
                            _mm256_or_si256(_mm256_and_si256(a, mask4), h2(h)),
                            _mm256_or_si256(
                                _mm256_and_si256(c, mask4),
                                h2(_mm256_srli_epi32(h, 2)),
                            ),
                            _mm256_or_si256(_mm256_srli_epi32(a, 4), h2(_mm256_srli_epi32(h, 4))),
                            _mm256_or_si256(_mm256_srli_epi32(c, 4), h2(_mm256_srli_epi32(h, 6))),
                        ];
                        for (k, qk) in q.into_iter().enumerate() {
                            let ds = _mm256_set1_ps(d * b[sc + is + 2 * k] as i8 as f32);
                            let w = _mm256_mul_ps(ds, cvt(_mm256_sub_epi32(qk, thirty_two)));
                            f(o + 128 * half + l + 32 * k, w);
                        }
                    }
                }
            }
            other => unreachable!("{other} is not a weight block type"),
        }
    }
}

/// The four accumulators summed in one fixed order.
#[inline(always)]
unsafe fn reduce(a: [__m256; 4]) -> f32 {
    let s = _mm256_add_ps(_mm256_add_ps(a[0], a[1]), _mm256_add_ps(a[2], a[3]));
    let h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    let h = _mm_add_ss(h, _mm_movehdup_ps(h));
    _mm_cvtss_f32(h)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dequant(dtype: DType, bytes: &[u8], out: &mut [f32]) {
    let n = bytes.len() / dtype.block_bytes() * dtype.block_elems();
    assert!(out.len() >= n);
    let p = out.as_mut_ptr();
    for_each8(dtype, bytes, |o, w| _mm256_storeu_ps(p.add(o), w));
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot(dtype: DType, bytes: &[u8], x: &[f32]) -> f32 {
    let n = bytes.len() / dtype.block_bytes() * dtype.block_elems();
    assert!(x.len() >= n);
    let p = x.as_ptr();
    let mut a = [_mm256_setzero_ps(); 4];
    for_each8(dtype, bytes, |o, w| {
        let j = (o >> 3) & 3;
        a[j] = _mm256_fmadd_ps(_mm256_loadu_ps(p.add(o)), w, a[j]);
    });
    reduce(a)
}

/// `out[i·stride + j] = Σ x_i · w_j` ([`dot`]'s order for every pair), two input rows at a
/// time against one weight row.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dots(
    x: &[f32],
    n: usize,
    k: usize,
    w: &[f32],
    c: usize,
    out: &mut [f32],
    stride: usize,
) {
    assert!(k.is_multiple_of(32) && x.len() >= n * k && w.len() >= c * k);
    assert!(n == 0 || c == 0 || out.len() > (n - 1) * stride + c - 1);
    let mut i = 0;
    while i < n {
        let rows = (n - i).min(2);
        for j in 0..c {
            let wp = w.as_ptr().add(j * k);
            let mut a = [[_mm256_setzero_ps(); 4]; 2];
            let mut o = 0;
            while o < k {
                for g in 0..4 {
                    let wv = _mm256_loadu_ps(wp.add(o + 8 * g));
                    for (r, acc) in a.iter_mut().enumerate().take(rows) {
                        let xv = _mm256_loadu_ps(x.as_ptr().add((i + r) * k + o + 8 * g));
                        acc[g] = _mm256_fmadd_ps(xv, wv, acc[g]);
                    }
                }
                o += 32;
            }
            for (r, acc) in a.iter().enumerate().take(rows) {
                out[(i + r) * stride + j] = reduce(*acc);
            }
        }
        i += rows;
    }
}
