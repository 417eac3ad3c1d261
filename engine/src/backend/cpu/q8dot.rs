//! Dot products of quantized (GGUF block) weight rows with **8-bit activations**: the CPU
//! backend's [`Dots::Q8`](super::Dots) arithmetic, the one llama.cpp's CPU build uses. Each
//! 32-element group of an activation row is quantized once per product ([`Q8Rows`]); a weight
//! group's integers are then dotted with it in integer arithmetic (VNNI `vpdpbusd`, or AVX2
//! `pmaddubsw` + `pmaddwd`), exact, and only the per-group scaling is floating point.
//!
//! **The arithmetic, the same bits at every level** (AVX-512 VNNI, AVX2, portable): for group
//! `g` (32 elements) of a row, with weight integers `w` (what the block stores, offsets
//! removed: Q4_0 `q − 8`, Q5_0 `q − 16`, Q6_K `q − 32`), weight scale(s) `sw` (per 16 elements
//! for Q6_K, else one), weight min `mw` (Q4_1, Q5_1, Q4_K, Q5_K: `y = sw·w + mw`) and the
//! activation group's `q`, `d`, `s = d·Σq`:
//! - eight exact integer lanes `L_j = Σ_{i=4j}^{4j+3} w_i·q_i`;
//! - `acc[8·(g mod 2) + j] += f32(L_j) · (sw_j · d)` (a multiply, then an add: no FMA);
//! - `mins[g mod 2] += mw · s`, in group order (types with a min only);
//! - the result: the 16 accumulators summed pairwise (8 apart, then 4, 2, 1), plus
//!   `mins[0] + mins[1]`.
//!
//! The error against the f32 product of the dequantized row is the activation rounding,
//! `|x_i − d·q_i| ≤ d/2` for each element (`d` = its group's `max|x| / 127`), weighted by
//! `|y_i|`, plus f32 accumulation: [`error_bound`] states it and the tests hold every type to it.

use crate::formats::quants::{f16_at, q5_values, scale_min_k4};
use crate::tensor::DType;

use super::qrow::{lanes_reduce, Level};

/// Elements of an activation group (and of every weight group).
pub const GROUP: usize = 32;

/// Rows of f32 activations, each 32-element group quantized to i8 with its own scale:
/// `d = max|x| / 127`, `q = round_ties_even(x / d)` (computed as `x · (1 / d)`; 0 where
/// `d = 0`), `s = d · Σq`. A group holding a NaN gets `d = s = NaN`, so the NaN reaches every
/// product it enters, as it would in f32.
pub struct Q8Rows {
    k: usize,
    q: Vec<i8>,
    /// `d` and `s` of each group, interleaved (one 64-bit load a group).
    ds: Vec<f32>,
}

/// `v` rounded to the nearest integer, ties to even, for `|v| < 2²²` (the activations'
/// `|x / d| ≤ 127`; NaN stays NaN): adding and subtracting 1.5 · 2²³ leaves no fraction bits,
/// and IEEE addition rounds ties to even. `f32::round_ties_even` is the same value but a libm
/// call where the target lacks SSE4.1.
#[inline(always)]
fn round_ties_even(v: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2²³
    (v + MAGIC) - MAGIC
}

/// One row of [`Q8Rows`].
#[derive(Clone, Copy)]
pub struct Q8Row<'a> {
    q: &'a [i8],
    ds: &'a [f32],
}

impl Q8Row<'_> {
    /// Group `g`'s scale.
    #[inline(always)]
    fn d(&self, g: usize) -> f32 {
        self.ds[2 * g]
    }

    /// Group `g`'s `d · Σq`.
    #[inline(always)]
    fn s(&self, g: usize) -> f32 {
        self.ds[2 * g + 1]
    }
}

impl Q8Rows {
    /// The `n` rows of `k` elements (a multiple of [`GROUP`]) at the start of `x`.
    pub fn new(x: &[f32], n: usize, k: usize) -> Self {
        assert!(k.is_multiple_of(GROUP), "rows of {k} are not whole groups");
        assert!(x.len() >= n * k, "{} elements for {n} rows of {k}", x.len());
        let groups = n * k / GROUP;
        let (mut q, mut ds) = (vec![0i8; n * k], vec![0.0f32; 2 * groups]);
        for (g, (xs, qs)) in x[..n * k]
            .chunks_exact(GROUP)
            .zip(q.chunks_exact_mut(GROUP))
            .enumerate()
        {
            let amax = xs.iter().fold(0.0f32, |a, v| a.max(v.abs()));
            let scale = if xs.iter().any(|v| v.is_nan()) {
                f32::NAN
            } else {
                amax / 127.0
            };
            let inv = if scale == 0.0 || !scale.is_finite() {
                0.0
            } else {
                1.0 / scale
            };
            let mut sum = 0i32;
            for (o, &v) in qs.iter_mut().zip(xs) {
                let r = round_ties_even(v * inv).clamp(-127.0, 127.0) as i32;
                *o = r as i8;
                sum += r;
            }
            ds[2 * g] = scale;
            ds[2 * g + 1] = scale * sum as f32;
        }
        Q8Rows { k, q, ds }
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> Q8Row<'_> {
        let g = self.k / GROUP;
        Q8Row {
            q: &self.q[i * self.k..(i + 1) * self.k],
            ds: &self.ds[2 * i * g..2 * (i + 1) * g],
        }
    }
}

/// Whether a weight of `dtype` has a min term (`y = sw·w + mw`).
fn has_min(dtype: DType) -> bool {
    matches!(dtype, DType::Q4_1 | DType::Q5_1 | DType::Q4_K | DType::Q5_K)
}

/// Whether the weight integers of `dtype` can be negative.
fn signed(dtype: DType) -> bool {
    matches!(dtype, DType::Q8_0 | DType::Q4_0 | DType::Q5_0 | DType::Q6_K)
}

/// Group `gi` of block `b` of `dtype`: its 32 weight integers into `w`, and (scale of elements
/// 0..16, scale of elements 16..32, min). The scales and min are the f32 values
/// `formats::quants` computes for the block (`d · sc` for K-quants).
#[inline(always)]
fn group(dtype: DType, b: &[u8], gi: usize, w: &mut [i8; GROUP]) -> (f32, f32, f32) {
    let nibbles = |qs: &[u8], w: &mut [i8; GROUP]| {
        for (j, &q) in qs[..16].iter().enumerate() {
            w[j] = (q & 0x0F) as i8;
            w[j + 16] = (q >> 4) as i8;
        }
    };
    let five = |qh: &[u8], qs: &[u8], w: &mut [i8; GROUP]| {
        for (v, q) in w.iter_mut().zip(q5_values(qh, qs)) {
            *v = q as i8;
        }
    };
    let offset = |w: &mut [i8; GROUP], o: i8| w.iter_mut().for_each(|v| *v -= o);
    match dtype {
        DType::Q8_0 => {
            for (v, &q) in w.iter_mut().zip(&b[2..34]) {
                *v = q as i8;
            }
            let d = f16_at(b, 0);
            (d, d, 0.0)
        }
        DType::Q4_0 => {
            nibbles(&b[2..18], w);
            offset(w, 8);
            let d = f16_at(b, 0);
            (d, d, 0.0)
        }
        DType::Q4_1 => {
            nibbles(&b[4..20], w);
            let d = f16_at(b, 0);
            (d, d, f16_at(b, 2))
        }
        DType::Q5_0 => {
            five(&b[2..6], &b[6..22], w);
            offset(w, 16);
            let d = f16_at(b, 0);
            (d, d, 0.0)
        }
        DType::Q5_1 => {
            five(&b[4..8], &b[8..24], w);
            let d = f16_at(b, 0);
            (d, d, f16_at(b, 2))
        }
        DType::Q4_K | DType::Q5_K => {
            let five = dtype == DType::Q5_K;
            let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
            let (sc, m) = scale_min_k4(gi, &b[4..16]);
            let (c, upper) = (gi / 2, gi % 2 == 1);
            let qs = if five { &b[48..176] } else { &b[16..144] };
            for (l, v) in w.iter_mut().enumerate() {
                let q = qs[32 * c + l];
                let mut x = if upper { q >> 4 } else { q & 0x0F };
                if five {
                    x |= ((b[16 + l] >> gi) & 1) << 4;
                }
                *v = x as i8;
            }
            let scale = d * sc as f32;
            (scale, scale, -(dmin * m as f32))
        }
        DType::Q6_K => {
            let d = f16_at(b, 208);
            let (half, k) = (gi / 4, gi % 4);
            let ql = &b[64 * half..64 * half + 64];
            let qh = &b[128 + 32 * half..128 + 32 * half + 32];
            let sc = &b[192 + 8 * half..192 + 8 * half + 8];
            for (l, v) in w.iter_mut().enumerate() {
                // Element l + 32k: a nibble (k = 0: low of ql[l], 1: low of ql[l + 32], 2: high
                // of ql[l], 3: high of ql[l + 32]) and bits 2k..2k+2 of qh[l].
                let nib = match k {
                    0 => ql[l] & 0x0F,
                    1 => ql[l + 32] & 0x0F,
                    2 => ql[l] >> 4,
                    _ => ql[l + 32] >> 4,
                };
                *v = ((nib | (((qh[l] >> (2 * k)) & 3) << 4)) as i32 - 32) as i8;
            }
            (
                d * sc[2 * k] as i8 as f32,
                d * sc[2 * k + 1] as i8 as f32,
                0.0,
            )
        }
        other => unreachable!("{other} is not a weight block type"),
    }
}

fn dot_body(dtype: DType, bytes: &[u8], x: Q8Row<'_>) -> f32 {
    let per = dtype.block_elems() / GROUP;
    let min = has_min(dtype);
    let (mut acc, mut mins, mut w) = ([0.0f32; 16], [0.0f32; 2], [0i8; GROUP]);
    for (bi, blk) in bytes.chunks_exact(dtype.block_bytes()).enumerate() {
        for gi in 0..per {
            let g = bi * per + gi;
            let (s0, s1, mw) = group(dtype, blk, gi, &mut w);
            let (s0, s1) = (s0 * x.d(g), s1 * x.d(g));
            let xq = &x.q[g * GROUP..(g + 1) * GROUP];
            let h = (g % 2) * 8;
            for j in 0..8 {
                let l: i32 = (4 * j..4 * j + 4).map(|i| w[i] as i32 * xq[i] as i32).sum();
                acc[h + j] += l as f32 * if j < 4 { s0 } else { s1 };
            }
            if min {
                mins[g % 2] += mw * x.s(g);
            }
        }
    }
    lanes_reduce(acc) + (mins[0] + mins[1])
}

/// The level this module runs: [`qrow::level`](super::qrow::level)'s choice, with AVX-512 only
/// where the CPU also has VNNI (elsewhere the AVX2 loop, which gives the same bits).
pub fn level() -> Level {
    use std::sync::OnceLock;
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| match super::qrow::level() {
        Level::Avx512 if vnni() => Level::Avx512,
        Level::Avx512 => Level::Avx2,
        l => l,
    })
}

/// The levels this CPU runs this module at, best first.
pub fn levels() -> Vec<Level> {
    super::qrow::levels()
        .into_iter()
        .filter(|&l| l != Level::Avx512 || vnni())
        .collect()
}

/// Whether this CPU runs this module at `l`. Checked on every product, so it must not
/// allocate.
fn runs(l: Level) -> bool {
    match l {
        Level::Base => true,
        Level::Avx2 => super::qrow::level_runs(Level::Avx2),
        Level::Avx512 => super::qrow::level_runs(Level::Avx512) && vnni(),
    }
}

fn vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static VNNI: OnceLock<bool> = OnceLock::new();
        *VNNI.get_or_init(|| std::is_x86_feature_detected!("avx512vnni"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `Σ y_i · x_i` over one weight row of `dtype` (its `bytes`, whole blocks) and one quantized
/// activation row as long as it, in the arithmetic of the module doc.
pub fn dot(dtype: DType, bytes: &[u8], x: Q8Row<'_>) -> f32 {
    dot_at(level(), dtype, bytes, x)
}

fn dot_at(l: Level, dtype: DType, bytes: &[u8], x: Q8Row<'_>) -> f32 {
    assert!(super::qrow::supports(dtype), "{dtype}");
    let k = bytes.len() / dtype.block_bytes() * dtype.block_elems();
    assert_eq!(
        k,
        x.q.len(),
        "a row of {k} weights and {} activations",
        x.q.len()
    );
    assert!(runs(l), "{l:?}");
    match l {
        // SAFETY: the CPU has the features each variant is compiled with (`levels`).
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { x86::dot_vnni(dtype, bytes, x) },
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { x86::dot_avx2(dtype, bytes, x) },
        _ => dot_body(dtype, bytes, x),
    }
}

/// Most activation rows [`dot_rows`] takes at once.
pub const ROWS: usize = 4;

/// `out[i] = dot(dtype, bytes, xs[i])` for 1..=[`ROWS`] rows, each the same bits as [`dot`]
/// gives it alone (batch invariance); with AVX-512 VNNI the weights are unpacked once for all.
pub fn dot_rows(dtype: DType, bytes: &[u8], xs: &[Q8Row<'_>], out: &mut [f32]) {
    dot_rows_at(level(), dtype, bytes, xs, out)
}

fn dot_rows_at(l: Level, dtype: DType, bytes: &[u8], xs: &[Q8Row<'_>], out: &mut [f32]) {
    assert!((1..=ROWS).contains(&xs.len()), "{} rows", xs.len());
    assert!(out.len() >= xs.len());
    match l {
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => {
            assert!(super::qrow::supports(dtype), "{dtype}");
            let k = bytes.len() / dtype.block_bytes() * dtype.block_elems();
            for x in xs {
                assert_eq!(
                    k,
                    x.q.len(),
                    "a row of {k} weights and {} activations",
                    x.q.len()
                );
            }
            assert!(runs(l), "{l:?}");
            // SAFETY: the CPU has the features the variant is compiled with (`runs`).
            unsafe { x86::dot_rows_vnni(dtype, bytes, xs, out) }
        }
        _ => {
            for (o, &x) in out.iter_mut().zip(xs) {
                *o = dot_at(l, dtype, bytes, x);
            }
        }
    }
}

/// `out[r·n + i] = dot(dtype, row r of bytes, xs[i])` for the consecutive weight rows in
/// `bytes` (each as long as the activation rows) and the `n = xs.len()` activation rows: each
/// the bits [`dot`] gives it, in one call (the level chosen and the type dispatched once).
pub fn dot_matrix(dtype: DType, bytes: &[u8], xs: &[Q8Row<'_>], out: &mut [f32]) {
    let n = xs.len();
    if n == 0 {
        return;
    }
    let k = xs[0].q.len();
    let rb = k / dtype.block_elems() * dtype.block_bytes();
    assert!(
        rb > 0 && bytes.len().is_multiple_of(rb),
        "{} bytes of rows of {rb}",
        bytes.len()
    );
    let rows = bytes.len() / rb;
    assert!(
        out.len() >= rows * n,
        "{} outputs for {rows} × {n}",
        out.len()
    );
    match level() {
        #[cfg(target_arch = "x86_64")]
        l @ Level::Avx512 => {
            assert!(super::qrow::supports(dtype), "{dtype}");
            for x in xs {
                assert_eq!(k, x.q.len(), "activation rows of {k} and {}", x.q.len());
            }
            assert!(runs(l), "{l:?}");
            // SAFETY: the CPU has the features the variant is compiled with (`runs`).
            unsafe { x86::dot_matrix_vnni(dtype, bytes, rb, xs, out) }
        }
        l => {
            for (r, (w, o)) in bytes
                .chunks_exact(rb)
                .zip(out.chunks_exact_mut(n))
                .enumerate()
            {
                super::simd::prefetch_ahead(bytes, r * rb, rb);
                for (xs, o) in xs.chunks(ROWS).zip(o.chunks_mut(ROWS)) {
                    dot_rows_at(l, dtype, w, xs, o);
                }
            }
        }
    }
}

/// A bound on `|dot(w, Q8(x)) − Σ y_i x_i|` for the dequantized row `y` (f32, as
/// `formats::quants` gives it) and the f32 activations `x`: the activation rounding, at most
/// `d/2 + |x_i|·2⁻²³` per element (the rounding to the nearest integer, plus that of `x·(1/d)`
/// and of `1/d`), weighted by `|y_i|`, plus `2k` roundings of f32 accumulation and scaling on
/// `Σ|y_i x_i|` (with slack for the scales' own roundings).
pub fn error_bound(y: &[f32], x: &[f32]) -> f64 {
    let eps = f32::EPSILON as f64;
    let mut b = 0.0f64;
    let mut mag = 0.0f64;
    for (yg, xg) in y.chunks_exact(GROUP).zip(x.chunks_exact(GROUP)) {
        let d = xg.iter().fold(0.0f32, |a, v| a.max(v.abs())) as f64 / 127.0;
        for (&yi, &xi) in yg.iter().zip(xg) {
            b += (yi as f64).abs() * (d * (0.5 + 4.0 * eps) + (xi as f64).abs() * 4.0 * eps);
            mag += (yi as f64 * xi as f64).abs() + (yi as f64).abs() * d * 0.5;
        }
    }
    b + (2 * y.len() + 8) as f64 * eps * mag
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{group, has_min, signed, DType, Q8Row, GROUP};
    use std::arch::x86_64::*;

    /// The little-endian u32 at `b[i..]`.
    #[inline(always)]
    fn u32_at(b: &[u8], i: usize) -> u32 {
        u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
    }

    /// Offset of the first group's `qs` (and of `qh`) in a legacy block.
    fn layout(dtype: DType) -> (usize, usize) {
        match dtype {
            DType::Q8_0 | DType::Q4_0 => (2, 0),
            DType::Q4_1 => (4, 0),
            DType::Q5_0 => (6, 2),
            _ => (8, 4),
        }
    }

    /// Whether `dtype` is a legacy (32-element block) type, unpacked in registers here.
    fn legacy(dtype: DType) -> bool {
        matches!(
            dtype,
            DType::Q8_0 | DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q5_1
        )
    }

    /// The f32 of the first two f16 of each of up to two legacy blocks, `[d0, m0, d1, m1]`
    /// (`b1`: the second block's first four bytes, or 0). A block's first four bytes are its
    /// `d` and, where it has one, its `m`: the conversion of whatever else is there is never
    /// used. Times an activation row's interleaved `[d, s]` of the same groups, it gives
    /// `[sw·d, mw·s]` of each.
    #[inline(always)]
    unsafe fn headers(b0: &[u8], b1: u32) -> __m128 {
        _mm_cvtph_ps(_mm_set_epi32(0, 0, b1 as i32, u32_at(b0, 0) as i32))
    }

    /// The 32 weight integers of a legacy block as bytes (i8, or u8 for the unsigned types:
    /// both hold the same small values), elements in order.
    #[inline(always)]
    unsafe fn legacy_weights(dtype: DType, b: &[u8]) -> __m256i {
        let (qs, qh) = layout(dtype);
        let p = b.as_ptr();
        if dtype == DType::Q8_0 {
            return _mm256_loadu_si256(p.add(qs) as *const __m256i);
        }
        let q = _mm_loadu_si128(p.add(qs) as *const __m128i);
        let m = _mm_set1_epi8(0x0F);
        let w = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m), _mm_and_si128(q, m));
        let w = match dtype {
            DType::Q5_0 | DType::Q5_1 => {
                let h = _mm256_maskz_mov_epi8(u32_at(b, qh), _mm256_set1_epi8(0x10));
                _mm256_or_si256(w, h)
            }
            _ => w,
        };
        match dtype {
            DType::Q4_0 => _mm256_sub_epi8(w, _mm256_set1_epi8(8)),
            DType::Q5_0 => _mm256_sub_epi8(w, _mm256_set1_epi8(16)),
            _ => w,
        }
    }

    /// Two legacy blocks' weights in one register, `[b0's 32 | b1's 32]`.
    #[inline(always)]
    unsafe fn legacy_pair(dtype: DType, b0: &[u8], b1: &[u8]) -> __m512i {
        let (qs, qh) = layout(dtype);
        let (p0, p1) = (b0.as_ptr().add(qs), b1.as_ptr().add(qs));
        if dtype == DType::Q8_0 {
            let w = _mm512_castsi256_si512(_mm256_loadu_si256(p0 as *const __m256i));
            return _mm512_inserti64x4(w, _mm256_loadu_si256(p1 as *const __m256i), 1);
        }
        // [qs0, qs0, qs1, qs1], the second copy of each shifted down a nibble, then masked.
        let z = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_broadcastsi128_si256(_mm_loadu_si128(
                p0 as *const __m128i,
            ))),
            _mm256_broadcastsi128_si256(_mm_loadu_si128(p1 as *const __m128i)),
            1,
        );
        let z = _mm512_mask_srli_epi16(z, 0xFF00_FF00, z, 4);
        let w = _mm512_and_si512(z, _mm512_set1_epi8(0x0F));
        let w = match dtype {
            DType::Q5_0 | DType::Q5_1 => {
                let bits = u32_at(b0, qh) as u64 | (u32_at(b1, qh) as u64) << 32;
                _mm512_or_si512(w, _mm512_maskz_mov_epi8(bits, _mm512_set1_epi8(0x10)))
            }
            _ => w,
        };
        match dtype {
            DType::Q4_0 => _mm512_sub_epi8(w, _mm512_set1_epi8(8)),
            DType::Q5_0 => _mm512_sub_epi8(w, _mm512_set1_epi8(16)),
            _ => w,
        }
    }

    /// Group `g` of a K-quant row ([`k_weights`]) against activation row `x`: its weights,
    /// lane scales times the group's `d`, and `[0, mw·s, 0, 0]`.
    #[inline(always)]
    unsafe fn k_group(
        dtype: DType,
        bytes: &[u8],
        x: Q8Row<'_>,
        g: usize,
    ) -> (__m256i, __m256, __m128) {
        let (w, s, m) = k_weights(dtype, bytes, g);
        let mins = _mm_set_ps(0.0, 0.0, m * x.s(g), 0.0);
        (w, _mm256_mul_ps(s, _mm256_set1_ps(x.d(g))), mins)
    }

    /// Group `g`'s weights, lane scales and `[_, mw·s, _, _]` (lane 1), any type.
    #[inline(always)]
    unsafe fn one_group(
        dtype: DType,
        bytes: &[u8],
        x: Q8Row<'_>,
        g: usize,
    ) -> (__m256i, __m256, __m128) {
        if legacy(dtype) {
            let bb = dtype.block_bytes();
            let b = &bytes[g * bb..(g + 1) * bb];
            let ds = _mm_castpd_ps(_mm_load_sd(x.ds.as_ptr().add(2 * g) as *const f64));
            let sm = _mm_mul_ps(headers(b, 0), ds);
            (legacy_weights(dtype, b), _mm256_broadcastss_ps(sm), sm)
        } else {
            k_group(dtype, bytes, x, g)
        }
    }

    #[inline(always)]
    unsafe fn act(x: Q8Row<'_>, g: usize) -> __m256i {
        _mm256_loadu_si256(x.q.as_ptr().add(g * GROUP) as *const __m256i)
    }

    /// The 16 accumulators as two registers of 8 (even groups, odd groups) reduced in the
    /// module's order, plus the even and the odd groups' mins (lanes 1 of `me` and `mo`).
    #[inline(always)]
    unsafe fn finish(even: __m256, odd: __m256, me: __m128, mo: __m128, min: bool) -> f32 {
        let v = _mm256_add_ps(even, odd);
        let v = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let v = _mm_add_ps(v, _mm_movehl_ps(v, v));
        let v = _mm_add_ss(v, _mm_shuffle_ps(v, v, 1));
        let mins = if min {
            let (e, o) = (_mm_extract_ps(me, 1), _mm_extract_ps(mo, 1));
            f32::from_bits(e as u32) + f32::from_bits(o as u32)
        } else {
            0.0
        };
        _mm_cvtss_f32(v) + mins
    }

    /// Calls `$body` with `$dtype` a constant in each arm, so each type's loop is its own.
    macro_rules! per_type {
        ($dtype:expr, $body:path, ($($arg:expr),*)) => {
            match $dtype {
                DType::Q8_0 => $body(DType::Q8_0, $($arg),*),
                DType::Q4_0 => $body(DType::Q4_0, $($arg),*),
                DType::Q4_1 => $body(DType::Q4_1, $($arg),*),
                DType::Q5_0 => $body(DType::Q5_0, $($arg),*),
                DType::Q5_1 => $body(DType::Q5_1, $($arg),*),
                other => $body(other, $($arg),*),
            }
        };
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_avx2(dtype: DType, bytes: &[u8], x: Q8Row<'_>) -> f32 {
        per_type!(dtype, avx2_body, (bytes, x))
    }

    /// Eight exact lanes `Σ_{4 elements} w·q` a group: u8·i8 pairs to i16 (which cannot
    /// saturate: |w| ≤ 128, |q| ≤ 127), then pairs of i16 to i32.
    #[inline(always)]
    unsafe fn avx2_body(dtype: DType, bytes: &[u8], x: Q8Row<'_>) -> f32 {
        let (sgn, min) = (signed(dtype), has_min(dtype));
        let mut acc = [_mm256_setzero_ps(); 2];
        let mut mins = [_mm_setzero_ps(); 2];
        for g in 0..x.q.len() / GROUP {
            let (w, s, m) = one_group(dtype, bytes, x, g);
            let q = act(x, g);
            let (u, q) = if sgn {
                (_mm256_sign_epi8(w, w), _mm256_sign_epi8(q, w))
            } else {
                (w, q)
            };
            let l = _mm256_madd_epi16(_mm256_maddubs_epi16(u, q), _mm256_set1_epi16(1));
            let l = _mm256_mul_ps(_mm256_cvtepi32_ps(l), s);
            acc[g % 2] = _mm256_add_ps(acc[g % 2], l);
            if min {
                mins[g % 2] = _mm_add_ps(mins[g % 2], m);
            }
        }
        finish(acc[0], acc[1], mins[0], mins[1], min)
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub unsafe fn dot_vnni(dtype: DType, bytes: &[u8], x: Q8Row<'_>) -> f32 {
        let mut out = [0.0f32];
        per_type!(dtype, vnni_body::<1>, (bytes, [x], &mut out));
        out[0]
    }

    /// [`dot_vnni`] of up to [`ROWS`](super::ROWS) activation rows, the weights unpacked once.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub unsafe fn dot_rows_vnni(dtype: DType, bytes: &[u8], xs: &[Q8Row<'_>], out: &mut [f32]) {
        match xs.len() {
            1 => per_type!(dtype, vnni_body::<1>, (bytes, [xs[0]], out)),
            2 => per_type!(dtype, vnni_body::<2>, (bytes, [xs[0], xs[1]], out)),
            3 => per_type!(dtype, vnni_body::<3>, (bytes, [xs[0], xs[1], xs[2]], out)),
            _ => per_type!(
                dtype,
                vnni_body::<4>,
                (bytes, [xs[0], xs[1], xs[2], xs[3]], out)
            ),
        }
    }

    /// [`super::dot_matrix`] with AVX-512 VNNI: the weight rows one after another, each over the
    /// activation rows in fours ([`vnni_body`]).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub unsafe fn dot_matrix_vnni(
        dtype: DType,
        bytes: &[u8],
        rb: usize,
        xs: &[Q8Row<'_>],
        out: &mut [f32],
    ) {
        per_type!(dtype, matrix_body, (bytes, rb, xs, out))
    }

    #[inline(always)]
    unsafe fn matrix_body(
        dtype: DType,
        bytes: &[u8],
        rb: usize,
        xs: &[Q8Row<'_>],
        out: &mut [f32],
    ) {
        let n = xs.len();
        for (r, (w, o)) in bytes
            .chunks_exact(rb)
            .zip(out.chunks_exact_mut(n))
            .enumerate()
        {
            super::super::simd::prefetch_ahead(bytes, r * rb, rb);
            for (xs, o) in xs.chunks(super::ROWS).zip(o.chunks_mut(super::ROWS)) {
                match xs.len() {
                    1 => vnni_body::<1>(dtype, w, [xs[0]], o),
                    2 => vnni_body::<2>(dtype, w, [xs[0], xs[1]], o),
                    3 => vnni_body::<3>(dtype, w, [xs[0], xs[1], xs[2]], o),
                    _ => vnni_body::<4>(dtype, w, [xs[0], xs[1], xs[2], xs[3]], o),
                }
            }
        }
    }

    /// Group `g` of a K-quant row through [`group`]: its weights, and its lane scales and min
    /// as `[s0, s0, s0, s0, s1, s1, s1, s1]` and `m`.
    #[inline(always)]
    unsafe fn k_weights(dtype: DType, bytes: &[u8], g: usize) -> (__m256i, __m256, f32) {
        let per = dtype.block_elems() / GROUP;
        let bb = dtype.block_bytes();
        let mut w = [0i8; GROUP];
        let (s0, s1, m) = group(
            dtype,
            &bytes[(g / per) * bb..(g / per + 1) * bb],
            g % per,
            &mut w,
        );
        let s = _mm256_set_m128(_mm_set1_ps(s1), _mm_set1_ps(s0));
        (_mm256_loadu_si256(w.as_ptr() as *const __m256i), s, m)
    }

    /// `q` with the sign of `w` where the weights are signed, and `|w|` (u8), for `vpdpbusd`.
    #[inline(always)]
    unsafe fn signs512(w: __m512i, q: __m512i, sgn: bool) -> (__m512i, __m512i) {
        if sgn {
            let neg = _mm512_movepi8_mask(w);
            (
                _mm512_abs_epi8(w),
                _mm512_mask_sub_epi8(q, neg, _mm512_setzero_si512(), q),
            )
        } else {
            (w, q)
        }
    }

    /// AVX-512 VNNI over `R` activation rows: two groups a register (`vpdpbusd`: u8·i8 in
    /// four-element sums), their scales side by side, so each accumulator's halves are the
    /// even and the odd groups'; the legacy types' scales and mins of both groups in one
    /// multiply a row (`[d0, m0, d1, m1]` times the row's interleaved `[d0, s0, d1, s1]`).
    /// Each row's operations are the single-row loop's, so its result is the same bits.
    #[inline(always)]
    unsafe fn vnni_body<const R: usize>(
        dtype: DType,
        bytes: &[u8],
        xs: [Q8Row<'_>; R],
        out: &mut [f32],
    ) {
        let (sgn, min) = (signed(dtype), has_min(dtype));
        let groups = xs[0].q.len() / GROUP;
        let bb = dtype.block_bytes();
        let spread = _mm512_set_epi32(2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0);
        let mut acc = [_mm512_setzero_ps(); R];
        // Lane 1: the even groups' mins; lane 3: the odd groups'.
        let mut mins = [_mm_setzero_ps(); R];
        let mut g = 0;
        while g + 1 < groups {
            if legacy(dtype) {
                let (b0, b1) = (
                    &bytes[g * bb..(g + 1) * bb],
                    &bytes[(g + 1) * bb..(g + 2) * bb],
                );
                let w = legacy_pair(dtype, b0, b1);
                let h = headers(b0, u32_at(b1, 0));
                for r in 0..R {
                    let x = xs[r];
                    let sm = _mm_mul_ps(h, _mm_loadu_ps(x.ds.as_ptr().add(2 * g)));
                    let s = _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(sm));
                    let q = _mm512_loadu_si512(x.q.as_ptr().add(g * GROUP) as *const _);
                    let (u, q) = signs512(w, q, sgn);
                    let l = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), u, q));
                    acc[r] = _mm512_add_ps(acc[r], _mm512_mul_ps(l, s));
                    if min {
                        mins[r] = _mm_add_ps(mins[r], sm);
                    }
                }
            } else {
                let (w0, s0, m0) = k_weights(dtype, bytes, g);
                let (w1, s1, m1) = k_weights(dtype, bytes, g + 1);
                let w = _mm512_inserti64x4(_mm512_castsi256_si512(w0), w1, 1);
                for r in 0..R {
                    let x = xs[r];
                    let (d0, d1) = (_mm256_set1_ps(x.d(g)), _mm256_set1_ps(x.d(g + 1)));
                    let s = _mm512_castpd_ps(_mm512_insertf64x4(
                        _mm512_castpd256_pd512(_mm256_castps_pd(_mm256_mul_ps(s0, d0))),
                        _mm256_castps_pd(_mm256_mul_ps(s1, d1)),
                        1,
                    ));
                    let q = _mm512_loadu_si512(x.q.as_ptr().add(g * GROUP) as *const _);
                    let (u, q) = signs512(w, q, sgn);
                    let l = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), u, q));
                    acc[r] = _mm512_add_ps(acc[r], _mm512_mul_ps(l, s));
                    if min {
                        let m = _mm_set_ps(m1 * x.s(g + 1), 0.0, m0 * x.s(g), 0.0);
                        mins[r] = _mm_add_ps(mins[r], m);
                    }
                }
            }
            g += 2;
        }
        for r in 0..R {
            let x = xs[r];
            let mut even = _mm512_castps512_ps256(acc[r]);
            let odd = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[r]), 1));
            let mut me = mins[r];
            if g < groups {
                // An odd group count: the last group (an even one) alone.
                let (w, s, m) = one_group(dtype, bytes, x, g);
                let q = act(x, g);
                let (u, q) = if sgn {
                    (_mm256_abs_epi8(w), _mm256_sign_epi8(q, w))
                } else {
                    (w, q)
                };
                let l = _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), u, q));
                even = _mm256_add_ps(even, _mm256_mul_ps(l, s));
                if min {
                    me = _mm_add_ps(me, m);
                }
            }
            // The odd groups' mins from lane 3 to lane 1.
            let mo = _mm_movehl_ps(mins[r], mins[r]);
            out[r] = finish(even, odd, me, mo, min);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::quants;

    fn random_blocks(dtype: DType, blocks: usize, seed: u64) -> Vec<u8> {
        let mut rng = crate::sampler::CoinRng::new(seed);
        quants::random_blocks(dtype, blocks, 0.05, || rng.next_u64())
    }

    fn random_x(k: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::sampler::CoinRng::new(seed);
        (0..k)
            .map(|i| {
                let u = (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                // Groups of very different magnitudes, a zero group, and outliers.
                match (i / GROUP) % 4 {
                    0 => u * 4.0,
                    1 => u * 1e-3,
                    2 if i % 7 == 0 => u * 50.0,
                    2 => u,
                    _ => 0.0,
                }
            })
            .collect()
    }

    #[test]
    fn every_level_gives_the_same_bits_and_stays_within_the_bound() {
        for dtype in DType::WEIGHT_BLOCKS {
            let be = dtype.block_elems();
            // Odd and even group counts; K-quants in whole 256-element blocks.
            for blocks in [1usize, 3, 8] {
                let k = blocks * be;
                let bytes = random_blocks(dtype, blocks, 7 + blocks as u64);
                let x = random_x(k, 11 + blocks as u64);
                let xq = Q8Rows::new(&x, 1, k);
                let y = quants::dequantize(dtype, &bytes, k).unwrap();
                let exact: f64 = y.iter().zip(&x).map(|(&a, &b)| a as f64 * b as f64).sum();
                let bound = error_bound(&y, &x);
                let base = dot_at(Level::Base, dtype, &bytes, xq.row(0));
                assert!(
                    (base as f64 - exact).abs() <= bound,
                    "{dtype} k={k}: {base} against {exact}, bound {bound}"
                );
                for l in levels() {
                    let v = dot_at(l, dtype, &bytes, xq.row(0));
                    assert_eq!(v.to_bits(), base.to_bits(), "{dtype} k={k} at {l:?}");
                }
            }
        }
    }

    #[test]
    fn rows_are_the_single_row_bits_at_every_level() {
        for dtype in DType::WEIGHT_BLOCKS {
            // An odd group count (9) for the 32-element types.
            let blocks = if dtype.block_elems() == GROUP { 9 } else { 2 };
            let k = blocks * dtype.block_elems();
            let bytes = random_blocks(dtype, blocks, 21);
            let x = random_x(ROWS * k, 23);
            let xq = Q8Rows::new(&x, ROWS, k);
            let rows: Vec<Q8Row<'_>> = (0..ROWS).map(|i| xq.row(i)).collect();
            for l in levels() {
                for n in 1..=ROWS {
                    let mut out = vec![f32::NAN; n];
                    dot_rows_at(l, dtype, &bytes, &rows[..n], &mut out);
                    for (i, v) in out.iter().enumerate() {
                        let one = dot_at(Level::Base, dtype, &bytes, rows[i]);
                        assert_eq!(v.to_bits(), one.to_bits(), "{dtype} {l:?} row {i} of {n}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_matrix_is_its_rows_dots() {
        for dtype in [DType::Q4_1, DType::Q8_0, DType::Q6_K] {
            let per_row = if dtype.block_elems() == GROUP { 9 } else { 2 };
            let k = per_row * dtype.block_elems();
            let rb = per_row * dtype.block_bytes();
            let bytes = random_blocks(dtype, 5 * per_row, 31);
            let x = random_x(6 * k, 37);
            let xq = Q8Rows::new(&x, 6, k);
            let xs: Vec<Q8Row<'_>> = (0..6).map(|i| xq.row(i)).collect();
            for n in [1usize, 4, 6] {
                let mut out = vec![f32::NAN; 5 * n];
                dot_matrix(dtype, &bytes, &xs[..n], &mut out);
                for r in 0..5 {
                    for i in 0..n {
                        let one = dot_at(Level::Base, dtype, &bytes[r * rb..(r + 1) * rb], xs[i]);
                        assert_eq!(out[r * n + i].to_bits(), one.to_bits(), "{dtype} {r} {i}");
                    }
                }
            }
        }
    }

    #[test]
    fn ties_round_to_even_like_the_library() {
        for v in [
            0.5f32, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, -126.5, 127.0, 3.49999, -0.0, 63.500004,
        ] {
            assert_eq!(round_ties_even(v), v.round_ties_even(), "{v}");
        }
    }

    #[test]
    fn the_bound_is_not_slack_enough_to_hide_a_lost_group() {
        // A planted bug (one group's product left out) must leave the bound: the bound is the
        // activation rounding (about 1/254 of the largest activation a group) and f32 rounding,
        // far below a group's whole product when the activations follow the weights' signs.
        let dtype = DType::Q4_1;
        let bytes = random_blocks(dtype, 4, 3);
        let y = quants::dequantize(dtype, &bytes, 128).unwrap();
        let x: Vec<f32> = y
            .iter()
            .map(|&v| if v < 0.0 { -1.0 } else { 1.0 })
            .collect();
        let exact: f64 = y.iter().zip(&x).map(|(&a, &b)| a as f64 * b as f64).sum();
        let bound = error_bound(&y, &x);
        let full = dot(dtype, &bytes, Q8Rows::new(&x, 1, 128).row(0));
        assert!((full as f64 - exact).abs() <= bound);
        let dropped = dot(
            dtype,
            &bytes[dtype.block_bytes()..],
            Q8Rows::new(&x[32..], 1, 96).row(0),
        );
        assert!(
            (dropped as f64 - exact).abs() > bound,
            "{dropped} against {exact}, bound {bound}"
        );
    }

    #[test]
    fn activation_groups_round_to_nearest_and_keep_nans() {
        let mut x = vec![0.0f32; 64];
        x[0] = 127.0; // d = 1
        x[1] = -63.5; // ties go to even
        x[2] = 0.5;
        x[3] = 1.5;
        x[40] = f32::NAN;
        let r = Q8Rows::new(&x, 1, 64);
        let row = r.row(0);
        assert_eq!(&row.q[..4], &[127, -64, 0, 2]);
        assert_eq!((row.d(0), row.s(0)), (1.0, 65.0));
        assert!(row.d(1).is_nan() && row.s(1).is_nan());
    }
}
