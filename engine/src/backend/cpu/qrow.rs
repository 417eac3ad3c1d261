//! Rows of quantized (GGUF block) weights on the CPU: dequantized in registers, bit for bit
//! the values `formats::quants` gives (the same f32 operations in the same order, no fused
//! multiply-adds), and dotted with f32 activations with f32 accumulation.
//!
//! Every function here comes in three variants — AVX-512 intrinsics (this file), AVX2
//! intrinsics (`qrow_avx2`), and portable Rust over `formats::quants`' own (inlined) block
//! decoders — and the best the CPU supports is chosen at run time, so one binary runs
//! everywhere.

use crate::formats::quants::{decode_block as decode, scale_min_k4};
use crate::tensor::DType;

/// Independent accumulators: one per element of a 32-element group, reduced pairwise at the end.
const LANES: usize = 32;

#[inline(always)]
fn dequant_body(dtype: DType, bytes: &[u8], out: &mut [f32]) {
    let (be, bb) = (dtype.block_elems(), dtype.block_bytes());
    for (b, y) in bytes.chunks_exact(bb).zip(out.chunks_exact_mut(be)) {
        decode(dtype, b, y);
    }
}

/// The baseline's order: lane `l` of 32 accumulates the elements `32g + l` for increasing `g`,
/// then the lanes are summed pairwise.
#[inline(always)]
fn lanes_accumulate(acc: &mut [f32; LANES], x: &[f32], w: &[f32]) {
    for (xg, wg) in x.chunks_exact(LANES).zip(w.chunks_exact(LANES)) {
        for l in 0..LANES {
            acc[l] += xg[l] * wg[l];
        }
    }
}

/// `N` accumulators (a power of two) summed pairwise: `N/2` apart, then `N/4`, …, 1. The
/// fixed order every quantized dot product here and in `q8dot` ends with.
#[inline(always)]
pub(super) fn lanes_reduce<const N: usize>(mut acc: [f32; N]) -> f32 {
    let mut width = N;
    while width > 1 {
        width /= 2;
        for l in 0..width {
            acc[l] += acc[l + width];
        }
    }
    acc[0]
}

#[inline(always)]
fn dot_body(dtype: DType, bytes: &[u8], x: &[f32]) -> f32 {
    let (be, bb) = (dtype.block_elems(), dtype.block_bytes());
    let mut acc = [0.0f32; LANES];
    let mut w = [0.0f32; 256];
    for (b, xs) in bytes.chunks_exact(bb).zip(x.chunks_exact(be)) {
        decode(dtype, b, &mut w[..be]);
        lanes_accumulate(&mut acc, xs, &w[..be]);
    }
    lanes_reduce(acc)
}

#[inline(always)]
fn dots_body(x: &[f32], n: usize, k: usize, w: &[f32], c: usize, out: &mut [f32], stride: usize) {
    for i in 0..n {
        for j in 0..c {
            let mut acc = [0.0f32; LANES];
            lanes_accumulate(&mut acc, &x[i * k..(i + 1) * k], &w[j * k..(j + 1) * k]);
            out[i * stride + j] = lanes_reduce(acc);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use crate::backend::cpu::qrow_avx2::f16_at;
    use std::arch::x86_64::*;

    /// The f16 at `b[i..i + 2]` in all 16 lanes, as f32 (exact).
    #[inline(always)]
    unsafe fn splat_f16(b: &[u8], i: usize) -> __m512 {
        // A 128-bit conversion and a broadcast: cheaper than converting 16 lanes.
        _mm512_broadcastss_ps(_mm_cvtph_ps(_mm_set1_epi16(i16::from_le_bytes([
            b[i],
            b[i + 1],
        ]))))
    }

    /// 16 bytes from `b[i..]` widened to 16 lanes of u32.
    #[inline(always)]
    unsafe fn bytes16(b: &[u8], i: usize) -> __m512i {
        debug_assert!(i + 16 <= b.len());
        _mm512_cvtepu8_epi32(_mm_loadu_si128(b.as_ptr().add(i) as *const __m128i))
    }

    /// Bit 4 of 16 elements from bits `shift .. shift + 16` of `h`, as 16 lanes of 0 or 16.
    #[inline(always)]
    unsafe fn high_bits(h: u32, shift: u32) -> __m512i {
        let lanes = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
        let v = _mm512_srlv_epi32(_mm512_set1_epi32((h >> shift) as i32), lanes);
        _mm512_slli_epi32(_mm512_and_si512(v, _mm512_set1_epi32(1)), 4)
    }

    #[inline(always)]
    unsafe fn cvt(v: __m512i) -> __m512 {
        _mm512_cvtepi32_ps(v)
    }

    /// Calls `f(offset, w)` for every 16 consecutive weights `w` (elements `offset ..
    /// offset + 16` of the row) of the blocks in `bytes`, each lane the exact value
    /// `formats::quants` gives: the same f32 operations in the same order, no FMA. One loop per
    /// type (the match outside it), so block sizes and offsets are constants in each.
    #[inline(always)]
    unsafe fn for_each16(dtype: DType, bytes: &[u8], mut f: impl FnMut(usize, __m512)) {
        let f = &mut f;
        macro_rules! each {
            ($block:ident) => {
                for (i, b) in bytes.chunks_exact(dtype.block_bytes()).enumerate() {
                    $block(b, i * dtype.block_elems(), f);
                }
            };
        }
        match dtype {
            DType::Q8_0 => each!(q8_0),
            DType::Q4_0 => each!(q4_0),
            DType::Q4_1 => each!(q4_1),
            DType::Q5_0 => each!(q5_0),
            DType::Q5_1 => each!(q5_1),
            DType::Q4_K => each!(q4_k),
            DType::Q5_K => each!(q5_k),
            DType::Q6_K => each!(q6_k),
            other => unreachable!("{other} is not a weight block type"),
        }
    }

    #[inline(always)]
    fn mask4() -> __m512i {
        unsafe { _mm512_set1_epi32(0x0F) }
    }

    #[inline(always)]
    unsafe fn q8_0(b: &[u8], o: usize, f: &mut impl FnMut(usize, __m512)) {
        let d = splat_f16(b, 0);
        for h in 0..2 {
            let q = _mm_loadu_si128(b.as_ptr().add(2 + 16 * h) as *const __m128i);
            f(o + 16 * h, _mm512_mul_ps(cvt(_mm512_cvtepi8_epi32(q)), d));
        }
    }

    /// 0, 1, …, 15 as f32.
    #[inline(always)]
    unsafe fn iota() -> __m512 {
        _mm512_set_ps(
            15.0, 14.0, 13.0, 12.0, 11.0, 10.0, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0,
        )
    }

    // A block's 16 (or 32) possible values are computed once, with the scalar decoder's
    // operations (a table lane holds exactly what `decode` gives for that quant), and each
    // weight is looked up by its quant: one permute for 16 weights instead of a conversion, a
    // multiply and an add. `permutexvar` reads the low 4 bits of each index (the low nibble
    // needs no mask); `permutex2var` the low 5 (two tables of 16).

    #[inline(always)]
    unsafe fn q4_0(b: &[u8], o: usize, f: &mut impl FnMut(usize, __m512)) {
        // ((q - 8) as f32) * d
        let t = _mm512_mul_ps(_mm512_sub_ps(iota(), _mm512_set1_ps(8.0)), splat_f16(b, 0));
        let q = bytes16(b, 2);
        f(o, _mm512_permutexvar_ps(q, t));
        f(o + 16, _mm512_permutexvar_ps(_mm512_srli_epi32(q, 4), t));
    }

    /// The f16 pair at `b[i..i + 4]` (d, then m) in all 16 lanes each, as f32 (exact): one
    /// 128-bit conversion for both (a 512-bit one per scale costs more).
    #[inline(always)]
    unsafe fn splat_f16_pair(b: &[u8], i: usize) -> (__m512, __m512) {
        let bits = i32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let dm = _mm_cvtph_ps(_mm_set1_epi32(bits));
        (
            _mm512_broadcastss_ps(dm),
            _mm512_broadcastss_ps(_mm_movehdup_ps(dm)),
        )
    }

    #[inline(always)]
    unsafe fn q4_1(b: &[u8], o: usize, f: &mut impl FnMut(usize, __m512)) {
        // q as f32 * d + m
        let (d, m) = splat_f16_pair(b, 0);
        let t = _mm512_add_ps(_mm512_mul_ps(iota(), d), m);
        let q = bytes16(b, 4);
        f(o, _mm512_permutexvar_ps(q, t));
        f(o + 16, _mm512_permutexvar_ps(_mm512_srli_epi32(q, 4), t));
    }

    /// The 5-bit values of a Q5_0/Q5_1 block whose `qh` starts at `b[at]`, `qs` after it.
    #[inline(always)]
    unsafe fn q5_values(b: &[u8], at: usize) -> (__m512i, __m512i) {
        let h = u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let q = bytes16(b, at + 4);
        (
            _mm512_or_si512(_mm512_and_si512(q, mask4()), high_bits(h, 0)),
            _mm512_or_si512(_mm512_srli_epi32(q, 4), high_bits(h, 16)),
        )
    }

    #[inline(always)]
    unsafe fn q5_0(b: &[u8], o: usize, f: &mut impl FnMut(usize, __m512)) {
        // ((q - 16) as f32) * d: quants 0..16 then 16..32
        let d = splat_f16(b, 0);
        let t0 = _mm512_mul_ps(_mm512_sub_ps(iota(), _mm512_set1_ps(16.0)), d);
        let t1 = _mm512_mul_ps(iota(), d);
        let (lo, hi) = q5_values(b, 2);
        f(o, _mm512_permutex2var_ps(t0, lo, t1));
        f(o + 16, _mm512_permutex2var_ps(t0, hi, t1));
    }

    #[inline(always)]
    unsafe fn q5_1(b: &[u8], o: usize, f: &mut impl FnMut(usize, __m512)) {
        // q as f32 * d + m
        let (d, m) = splat_f16_pair(b, 0);
        let t0 = _mm512_add_ps(_mm512_mul_ps(iota(), d), m);
        let t1 = _mm512_add_ps(
            _mm512_mul_ps(_mm512_add_ps(iota(), _mm512_set1_ps(16.0)), d),
            m,
        );
        let (lo, hi) = q5_values(b, 4);
        f(o, _mm512_permutex2var_ps(t0, lo, t1));
        f(o + 16, _mm512_permutex2var_ps(t0, hi, t1));
    }

    #[inline(always)]
    unsafe fn q4_k(b: &[u8], o: usize, f: &mut impl FnMut(usize, __m512)) {
        k_quant::<false>(b, o, f)
    }

    #[inline(always)]
    unsafe fn q5_k(b: &[u8], o: usize, f: &mut impl FnMut(usize, __m512)) {
        k_quant::<true>(b, o, f)
    }

    /// Q4_K, or Q5_K (`FIVE`: a fifth bit from `qh`).
    #[inline(always)]
    unsafe fn k_quant<const FIVE: bool>(b: &[u8], o: usize, f: &mut impl FnMut(usize, __m512)) {
        let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
        let scales = &b[4..16];
        let qs_at = if FIVE { 48 } else { 16 };
        let one = _mm512_set1_epi32(1);
        let sixteen = _mm512_add_ps(iota(), _mm512_set1_ps(16.0));
        // (d·sc) * q - (dmin·m) for the quants 0..16 (and 16..32)
        let tables = |sc: u8, m: u8| {
            let (ds, dm) = (
                _mm512_set1_ps(d * sc as f32),
                _mm512_set1_ps(dmin * m as f32),
            );
            let t0 = _mm512_sub_ps(_mm512_mul_ps(ds, iota()), dm);
            let t1 = if FIVE {
                _mm512_sub_ps(_mm512_mul_ps(ds, sixteen), dm)
            } else {
                t0
            };
            (t0, t1)
        };
        for c in 0..4 {
            let (sc_lo, m_lo) = scale_min_k4(2 * c, scales);
            let (sc_hi, m_hi) = scale_min_k4(2 * c + 1, scales);
            let (lo0, lo1) = tables(sc_lo, m_lo);
            let (hi0, hi1) = tables(sc_hi, m_hi);
            for half in 0..2 {
                let l = 16 * half;
                let q = bytes16(b, qs_at + 32 * c + l);
                let at = o + 64 * c + l;
                if FIVE {
                    // Bits 2c and 2c + 1 of qh[l], moved to bit 4.
                    let qh = _mm512_srlv_epi32(bytes16(b, 16 + l), _mm512_set1_epi32(2 * c as i32));
                    let h0 = _mm512_slli_epi32(_mm512_and_si512(qh, one), 4);
                    let h1 = _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(qh, 1), one), 4);
                    let lo = _mm512_or_si512(_mm512_and_si512(q, mask4()), h0);
                    let hi = _mm512_or_si512(_mm512_srli_epi32(q, 4), h1);
                    f(at, _mm512_permutex2var_ps(lo0, lo, lo1));
                    f(at + 32, _mm512_permutex2var_ps(hi0, hi, hi1));
                } else {
                    f(at, _mm512_permutexvar_ps(q, lo0));
                    f(at + 32, _mm512_permutexvar_ps(_mm512_srli_epi32(q, 4), hi0));
                }
            }
        }
    }

    #[inline(always)]
    unsafe fn q6_k(b: &[u8], o: usize, f: &mut impl FnMut(usize, __m512)) {
        let d = f16_at(b, 208);
        let (three, thirty_two) = (_mm512_set1_epi32(3), _mm512_set1_epi32(32));
        for half in 0..2 {
            let (ql, qh, sc) = (64 * half, 128 + 32 * half, 192 + 8 * half);
            for is in 0..2 {
                let l = 16 * is;
                let a = bytes16(b, ql + l);
                let c = bytes16(b, ql + l + 32);
                let h = bytes16(b, qh + l);
                let h2 = |v: __m512i| _mm512_slli_epi32(_mm512_and_si512(v, three), 4);
                let q = [
                    _mm512_or_si512(_mm512_and_si512(a, mask4()), h2(h)),
                    _mm512_or_si512(_mm512_and_si512(c, mask4()), h2(_mm512_srli_epi32(h, 2))),
                    _mm512_or_si512(_mm512_srli_epi32(a, 4), h2(_mm512_srli_epi32(h, 4))),
                    _mm512_or_si512(_mm512_srli_epi32(c, 4), h2(_mm512_srli_epi32(h, 6))),
                ];
                for (k, qk) in q.into_iter().enumerate() {
                    let ds = _mm512_set1_ps(d * b[sc + is + 2 * k] as i8 as f32);
                    let w = _mm512_mul_ps(ds, cvt(_mm512_sub_epi32(qk, thirty_two)));
                    f(o + 128 * half + l + 32 * k, w);
                }
            }
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    pub unsafe fn dequant_avx512(dtype: DType, bytes: &[u8], out: &mut [f32]) {
        let n = bytes.len() / dtype.block_bytes() * dtype.block_elems();
        assert!(out.len() >= n);
        let p = out.as_mut_ptr();
        for_each16(dtype, bytes, |o, w| _mm512_storeu_ps(p.add(o), w));
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    pub unsafe fn dot_avx512(dtype: DType, bytes: &[u8], x: &[f32]) -> f32 {
        let n = bytes.len() / dtype.block_bytes() * dtype.block_elems();
        assert!(x.len() >= n);
        let p = x.as_ptr();
        // Two accumulators (16-element groups by the parity of their index: a constant in
        // every block decoder) to hide the FMA latency.
        let (mut a0, mut a1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        for_each16(dtype, bytes, |o, w| {
            let xw = _mm512_loadu_ps(p.add(o));
            if o & 16 == 0 {
                a0 = _mm512_fmadd_ps(xw, w, a0);
            } else {
                a1 = _mm512_fmadd_ps(xw, w, a1);
            }
        });
        _mm512_reduce_add_ps(_mm512_add_ps(a0, a1))
    }

    /// `out[i] = Σ x_i · w` for the `n` (1..=[`DOT_ROWS`]) rows of `x` (each `k` long) against
    /// one row of `dtype`, decoded once for all of them; each result [`dot_avx512`]'s bit for bit
    /// (per row the same two accumulators, fed in the same order, reduced the same way).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    pub unsafe fn dot_rows_avx512(
        dtype: DType,
        bytes: &[u8],
        x: &[f32],
        n: usize,
        out: &mut [f32],
    ) {
        let k = bytes.len() / dtype.block_bytes() * dtype.block_elems();
        assert!((1..=DOT_ROWS).contains(&n) && x.len() >= n * k && out.len() >= n);
        match n {
            1 => rows::<1>(dtype, bytes, x, k, out),
            2 => rows::<2>(dtype, bytes, x, k, out),
            3 => rows::<3>(dtype, bytes, x, k, out),
            4 => rows::<4>(dtype, bytes, x, k, out),
            5 => rows::<5>(dtype, bytes, x, k, out),
            6 => rows::<6>(dtype, bytes, x, k, out),
            7 => rows::<7>(dtype, bytes, x, k, out),
            _ => rows::<8>(dtype, bytes, x, k, out),
        }
    }

    /// Compiled with the features itself (not only inlined into a function that has them), so
    /// that the closure it hands the block decoder gets them too at every `R`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    unsafe fn rows<const R: usize>(
        dtype: DType,
        bytes: &[u8],
        x: &[f32],
        k: usize,
        out: &mut [f32],
    ) {
        let p = x.as_ptr();
        let mut a0 = [_mm512_setzero_ps(); R];
        let mut a1 = [_mm512_setzero_ps(); R];
        for_each16(dtype, bytes, |o, w| {
            if o & 16 == 0 {
                for (r, a) in a0.iter_mut().enumerate() {
                    *a = _mm512_fmadd_ps(_mm512_loadu_ps(p.add(r * k + o)), w, *a);
                }
            } else {
                for (r, a) in a1.iter_mut().enumerate() {
                    *a = _mm512_fmadd_ps(_mm512_loadu_ps(p.add(r * k + o)), w, *a);
                }
            }
        });
        for r in 0..R {
            out[r] = _mm512_reduce_add_ps(_mm512_add_ps(a0[r], a1[r]));
        }
    }

    /// `out[i·stride + j] = Σ x_i · w_j` for `n` rows of `x` and `c` rows of `w` (all `k` long,
    /// a multiple of 32), each in [`dot_avx512`]'s order: its result bit for bit.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn dots_avx512(
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
            let r = (n - i).min(4);
            let mut j = 0;
            while j < c {
                let cc = (c - j).min(2);
                let t = (x, i, k, w, j, &mut *out, stride);
                match (r, cc) {
                    (4, 2) => tile::<4, 2>(t),
                    (4, _) => tile::<4, 1>(t),
                    (3, 2) => tile::<3, 2>(t),
                    (3, _) => tile::<3, 1>(t),
                    (2, 2) => tile::<2, 2>(t),
                    (2, _) => tile::<2, 1>(t),
                    (_, 2) => tile::<1, 2>(t),
                    _ => tile::<1, 1>(t),
                }
                j += cc;
            }
            i += r;
        }
    }

    type Tile<'a> = (
        &'a [f32],
        usize,
        usize,
        &'a [f32],
        usize,
        &'a mut [f32],
        usize,
    );

    /// Rows `i0 .. i0 + R` of x against rows `j0 .. j0 + C` of w: two accumulators a pair (the
    /// first and second 16 of every 32 elements), as in [`dot_avx512`].
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // acc[r][cj]: the tile's indices read best as such
    unsafe fn tile<const R: usize, const C: usize>((x, i0, k, w, j0, out, stride): Tile) {
        let mut acc = [[[_mm512_setzero_ps(); 2]; C]; R];
        let xp = x.as_ptr().add(i0 * k);
        let wp = w.as_ptr().add(j0 * k);
        let mut o = 0;
        while o < k {
            let mut xv = [[_mm512_setzero_ps(); 2]; R];
            for (r, v) in xv.iter_mut().enumerate() {
                v[0] = _mm512_loadu_ps(xp.add(r * k + o));
                v[1] = _mm512_loadu_ps(xp.add(r * k + o + 16));
            }
            for cj in 0..C {
                let wa = _mm512_loadu_ps(wp.add(cj * k + o));
                let wb = _mm512_loadu_ps(wp.add(cj * k + o + 16));
                for r in 0..R {
                    acc[r][cj][0] = _mm512_fmadd_ps(xv[r][0], wa, acc[r][cj][0]);
                    acc[r][cj][1] = _mm512_fmadd_ps(xv[r][1], wb, acc[r][cj][1]);
                }
            }
            o += 32;
        }
        for (r, row) in acc.iter().enumerate() {
            for (cj, a) in row.iter().enumerate() {
                out[(i0 + r) * stride + j0 + cj] = _mm512_reduce_add_ps(_mm512_add_ps(a[0], a[1]));
            }
        }
    }
}

/// The instruction sets a variant of these loops is compiled for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Level {
    Avx512,
    Avx2,
    /// Portable Rust (what the compiler makes of it for the target).
    Base,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Avx512 => "avx512",
            Level::Avx2 => "avx2",
            Level::Base => "portable",
        }
    }
}

/// The best variant this CPU runs, or the one `WAVEFRONT_CPU_SIMD` (`avx512`, `avx2`,
/// `portable`) asks for when the CPU has it (to compare them, or to test a lower one).
pub fn level() -> Level {
    use std::sync::OnceLock;
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let best = detected();
        let asked = std::env::var("WAVEFRONT_CPU_SIMD").ok();
        let order = [Level::Base, Level::Avx2, Level::Avx512];
        let rank = |l: Level| order.iter().position(|&o| o == l).unwrap_or(0);
        match order.iter().find(|l| Some(l.name()) == asked.as_deref()) {
            Some(&l) if rank(l) <= rank(best) => l,
            _ => best,
        }
    })
}

/// The variants this CPU runs, best first.
pub fn levels() -> Vec<Level> {
    [Level::Avx512, Level::Avx2, Level::Base]
        .into_iter()
        .filter(|&l| runs(l))
        .collect()
}

/// Whether this CPU runs variant `l`. Checked on every row a product computes, so it must not
/// allocate (checking with [`levels`] allocated a vector per dot product).
pub(super) fn level_runs(l: Level) -> bool {
    runs(l)
}

fn runs(l: Level) -> bool {
    l == Level::Base || detected() == Level::Avx512 || detected() == l
}

fn detected() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static LEVEL: OnceLock<Level> = OnceLock::new();
        *LEVEL.get_or_init(|| {
            let has = |f: &str| match f {
                "avx512f" => std::is_x86_feature_detected!("avx512f"),
                "avx512bw" => std::is_x86_feature_detected!("avx512bw"),
                "avx512vl" => std::is_x86_feature_detected!("avx512vl"),
                "avx2" => std::is_x86_feature_detected!("avx2"),
                "fma" => std::is_x86_feature_detected!("fma"),
                "f16c" => std::is_x86_feature_detected!("f16c"),
                _ => false,
            };
            let avx2 = has("avx2") && has("fma") && has("f16c");
            if avx2 && has("avx512f") && has("avx512bw") && has("avx512vl") {
                Level::Avx512
            } else if avx2 {
                Level::Avx2
            } else {
                Level::Base
            }
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Level::Base
    }
}

/// Whether `dtype` is a block type this module decodes.
pub fn supports(dtype: DType) -> bool {
    super::NATIVE_WEIGHTS.contains(&dtype)
}

/// Dequantizes whole blocks of `dtype` from `bytes` into `out` (`out.len()` elements; both
/// lengths whole blocks, checked by the caller).
pub fn dequant(dtype: DType, bytes: &[u8], out: &mut [f32]) {
    dequant_at(level(), dtype, bytes, out)
}

fn dequant_at(l: Level, dtype: DType, bytes: &[u8], out: &mut [f32]) {
    assert!(supports(dtype), "{dtype}");
    assert!(runs(l), "{l:?}");
    match l {
        // SAFETY: the CPU has the features each variant is compiled with (`levels`).
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { x86::dequant_avx512(dtype, bytes, out) },
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { super::qrow_avx2::dequant(dtype, bytes, out) },
        _ => dequant_body(dtype, bytes, out),
    }
}

/// `Σ x[i] · w[i]` over one row `w` of `dtype` (its `bytes`, `x.len()` elements, whole blocks),
/// with `w` dequantized exactly as [`dequant`] does.
pub fn dot(dtype: DType, bytes: &[u8], x: &[f32]) -> f32 {
    dot_at(level(), dtype, bytes, x)
}

fn dot_at(l: Level, dtype: DType, bytes: &[u8], x: &[f32]) -> f32 {
    assert!(supports(dtype), "{dtype}");
    assert!(runs(l), "{l:?}");
    match l {
        // SAFETY: the CPU has the features each variant is compiled with (`levels`).
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { x86::dot_avx512(dtype, bytes, x) },
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { super::qrow_avx2::dot(dtype, bytes, x) },
        _ => dot_body(dtype, bytes, x),
    }
}

/// Most input rows [`dot_rows`] takes at once.
pub const DOT_ROWS: usize = 8;

/// `out[i] = Σ x_i · w` for the `n` (1..=[`DOT_ROWS`]) rows of `x`, each as long as the row
/// `w` of `dtype` (its `bytes`): each result bit for bit what [`dot`] gives for that row (batch
/// invariance), the row decoded once for all of them where the CPU has AVX-512 (elsewhere one
/// [`dot`] a row).
pub fn dot_rows(dtype: DType, bytes: &[u8], x: &[f32], n: usize, out: &mut [f32]) {
    dot_rows_at(level(), dtype, bytes, x, n, out)
}

fn dot_rows_at(l: Level, dtype: DType, bytes: &[u8], x: &[f32], n: usize, out: &mut [f32]) {
    assert!(supports(dtype), "{dtype}");
    assert!(runs(l), "{l:?}");
    assert!((1..=DOT_ROWS).contains(&n), "{n} rows");
    let k = bytes.len() / dtype.block_bytes() * dtype.block_elems();
    match l {
        // SAFETY: the CPU has the features the variant is compiled with (`levels`).
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { x86::dot_rows_avx512(dtype, bytes, x, n, out) },
        _ => {
            for (i, o) in out[..n].iter_mut().enumerate() {
                *o = dot_at(l, dtype, bytes, &x[i * k..(i + 1) * k]);
            }
        }
    }
}

/// `out[i·stride + j] = Σ x_i · w_j` for the `n` rows of `x` and the `c` rows of `w`, all `k`
/// long (a multiple of 32), where `w` holds rows of a block type as [`dequant`] gives them:
/// each result bit for bit what [`dot`] gives for that row's blocks and `x_i` (the same
/// operations in the same order), so a row's output never depends on how many rows were
/// computed together (batch invariance).
#[allow(clippy::too_many_arguments)]
pub fn dots(x: &[f32], n: usize, k: usize, w: &[f32], c: usize, out: &mut [f32], stride: usize) {
    dots_at(level(), x, n, k, w, c, out, stride)
}

#[allow(clippy::too_many_arguments)]
fn dots_at(
    l: Level,
    x: &[f32],
    n: usize,
    k: usize,
    w: &[f32],
    c: usize,
    out: &mut [f32],
    stride: usize,
) {
    assert!(
        k.is_multiple_of(32),
        "rows of {k} elements are not whole 32-element groups"
    );
    assert!(runs(l), "{l:?}");
    match l {
        // SAFETY: the CPU has the features each variant is compiled with (`levels`).
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { x86::dots_avx512(x, n, k, w, c, out, stride) },
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { super::qrow_avx2::dots(x, n, k, w, c, out, stride) },
        _ => dots_body(x, n, k, w, c, out, stride),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::quants;

    /// Random valid blocks (`quants::random_blocks`, values up to 0.05) from a seeded stream.
    fn random_blocks(dtype: DType, blocks: usize, seed: u64) -> Vec<u8> {
        let mut rng = crate::sampler::CoinRng::new(seed);
        quants::random_blocks(dtype, blocks, 0.05, || rng.next_u64())
    }

    #[test]
    fn dequant_is_bit_identical_to_formats_quants_at_every_level() {
        assert!(levels().contains(&Level::Base));
        for l in levels() {
            for &dtype in super::super::NATIVE_WEIGHTS {
                let blocks = 5;
                let bytes = random_blocks(dtype, blocks, dtype.block_bytes() as u64);
                let n = blocks * dtype.block_elems();
                let want = quants::dequantize(dtype, &bytes, n).unwrap();
                let mut got = vec![0.0; n];
                dequant_at(l, dtype, &bytes, &mut got);
                for i in 0..n {
                    assert_eq!(got[i].to_bits(), want[i].to_bits(), "{l:?} {dtype} [{i}]");
                }
            }
        }
    }

    /// At each level the batched tile gives, for every pair, exactly the batch-1 dot.
    #[test]
    fn dots_of_dequantized_rows_are_bit_identical_to_dot_at_every_level() {
        for l in levels() {
            for &dtype in super::super::NATIVE_WEIGHTS {
                let (rows_w, n) = (7, 9);
                let k = 2 * dtype.block_elems().max(64);
                let rb = k / dtype.block_elems() * dtype.block_bytes();
                let bytes = random_blocks(dtype, rows_w * k / dtype.block_elems(), 11);
                let mut w = vec![0.0; rows_w * k];
                dequant_at(l, dtype, &bytes, &mut w);
                let x: Vec<f32> = (0..n * k)
                    .map(|i| ((i * 7919 % 113) as f32 - 56.0) / 37.0)
                    .collect();
                let stride = rows_w + 3;
                let mut out = vec![f32::NAN; n * stride];
                dots_at(l, &x, n, k, &w, rows_w, &mut out, stride);
                for i in 0..n {
                    for j in 0..rows_w {
                        let xi = &x[i * k..(i + 1) * k];
                        let want = dot_at(l, dtype, &bytes[j * rb..(j + 1) * rb], xi);
                        assert_eq!(
                            out[i * stride + j].to_bits(),
                            want.to_bits(),
                            "{l:?} {dtype} ({i}, {j})"
                        );
                    }
                    assert!(out[i * stride + rows_w].is_nan(), "wrote past the columns");
                }
            }
        }
    }

    #[test]
    fn dot_rows_are_bit_identical_to_dot_at_every_level() {
        for l in levels() {
            for &dtype in super::super::NATIVE_WEIGHTS {
                let blocks = if dtype.block_elems() == 256 { 2 } else { 5 };
                let k = blocks * dtype.block_elems();
                let w = random_blocks(dtype, blocks, 11);
                let mut rng = crate::sampler::CoinRng::new(3);
                let x: Vec<f32> = (0..DOT_ROWS * k).map(|_| rng.coin() - 0.5).collect();
                for n in 1..=DOT_ROWS {
                    let mut out = vec![f32::NAN; n];
                    dot_rows_at(l, dtype, &w, &x, n, &mut out);
                    for (i, &o) in out.iter().enumerate() {
                        let want = dot_at(l, dtype, &w, &x[i * k..(i + 1) * k]);
                        assert_eq!(o.to_bits(), want.to_bits(), "{l:?} {dtype} n={n} row {i}");
                    }
                }
            }
        }
    }

    #[test]
    fn dot_matches_an_f64_dot_of_the_dequantized_row_at_every_level() {
        for l in levels() {
            for &dtype in super::super::NATIVE_WEIGHTS {
                for blocks in [1, 3, 18] {
                    let bytes = random_blocks(dtype, blocks, 7 + blocks as u64);
                    let n = blocks * dtype.block_elems();
                    let w = quants::dequantize(dtype, &bytes, n).unwrap();
                    let x: Vec<f32> = (0..n)
                        .map(|i| ((i * 7919 % 113) as f32 - 56.0) / 37.0)
                        .collect();
                    let exact: f64 = w.iter().zip(&x).map(|(&a, &b)| a as f64 * b as f64).sum();
                    let mag: f64 = w
                        .iter()
                        .zip(&x)
                        .map(|(&a, &b)| (a as f64 * b as f64).abs())
                        .sum();
                    // Any summation order: |error| ≤ n·u·Σ|x·w| (products exact in f64, each
                    // f32 product and addition rounding once).
                    let bound = 2.0 * n as f64 * f32::EPSILON as f64 / 2.0 * mag;
                    let got = dot_at(l, dtype, &bytes, &x);
                    assert!(
                        (got as f64 - exact).abs() <= bound,
                        "{l:?} {dtype} n={n}: {got} vs {exact} (bound {bound})"
                    );
                }
            }
        }
    }
}
