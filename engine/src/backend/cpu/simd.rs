//! The CPU backend's inner loops: f32 dot products and 16-bit → f32 row conversion, compiled
//! twice (baseline and AVX2+FMA) and chosen at run time, so one binary runs everywhere.

use half::{bf16, f16};

/// How far ahead of a weight row the row loops ask for bytes ([`prefetch_ahead`]): measured on
/// a 2-core Sapphire Rapids VM, SmolLM2 Q4_1 decode went from ~120 to ~200 tok/s with 6–32 rows
/// of 360 bytes ahead (the hardware prefetcher alone did not keep two cores fed).
/// `WAVEFRONT_PREFETCH_BYTES` overrides it (0: no software prefetch), read once.
pub const PREFETCH_BYTES: usize = 3072;

fn prefetch_bytes() -> usize {
    static B: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *B.get_or_init(|| {
        std::env::var("WAVEFRONT_PREFETCH_BYTES")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(PREFETCH_BYTES)
    })
}

/// Asks the cache for the bytes of the weight row `PREFETCH_BYTES` (rounded to whole rows of
/// `row_bytes`) past `at` in `bytes`, where that is still inside `bytes`. A hint only: it
/// changes no result.
#[inline(always)]
pub fn prefetch_ahead(bytes: &[u8], at: usize, row_bytes: usize) {
    let want = prefetch_bytes();
    if want == 0 {
        return;
    }
    let ahead = (want / row_bytes.max(1)).max(1) * row_bytes;
    let (from, to) = (at + ahead, at + ahead + row_bytes);
    if to > bytes.len() {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let mut off = from;
        while off < to {
            // SAFETY: a prefetch of an address inside `bytes`; it reads nothing.
            unsafe { _mm_prefetch(bytes.as_ptr().add(off) as *const i8, _MM_HINT_T0) };
            off += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = from;
}

/// Independent accumulators: lets the compiler vectorize without reassociating a single sum.
const LANES: usize = 16;

#[inline(always)]
fn dot_body(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; LANES];
    let mut ca = a.chunks_exact(LANES);
    let mut cb = b.chunks_exact(LANES);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    let mut tail = 0.0f32;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += x * y;
    }
    // Pairwise reduction of the lanes.
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for l in 0..width {
            acc[l] += acc[l + width];
        }
    }
    acc[0] + tail
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot_body(a, b)
}

#[inline]
fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Σ a[i]·b[i] over the shorter length.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports AVX2 and FMA (checked just above).
        return unsafe { dot_avx2(a, b) };
    }
    dot_body(a, b)
}

/// `y += a · x` over the shorter length.
#[inline]
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

#[inline(always)]
fn bf16_body(src: &[bf16], dst: &mut [f32]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = f32::from_bits((s.to_bits() as u32) << 16);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn bf16_avx2(src: &[bf16], dst: &mut [f32]) {
    bf16_body(src, dst)
}

/// bf16 → f32 (exact).
#[inline]
pub fn bf16_to_f32(src: &[bf16], dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { bf16_avx2(src, dst) };
    }
    bf16_body(src, dst)
}

/// f16 → f32 (exact): F16C 8 at a time where the CPU has it (`half`'s slice conversion calls a
/// function per 8 values, which cost a quarter of decode attention over an f16 cache).
#[inline]
pub fn f16_to_f32(src: &[f16], dst: &mut [f32]) {
    let n = src.len().min(dst.len());
    #[cfg(target_arch = "x86_64")]
    if has_f16c() {
        // SAFETY: the CPU supports F16C and AVX (checked just above).
        return unsafe { f16_f16c(&src[..n], &mut dst[..n]) };
    }
    use half::slice::HalfFloatSliceExt;
    src[..n].convert_to_f32_slice(&mut dst[..n]);
}

#[inline]
fn has_f16c() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("f16c") && std::is_x86_feature_detected!("avx")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,f16c")]
unsafe fn f16_f16c(src: &[f16], dst: &mut [f32]) {
    use std::arch::x86_64::*;
    let whole = src.len() - src.len() % 8;
    for e in (0..whole).step_by(8) {
        let h = _mm_loadu_si128(src.as_ptr().add(e) as *const __m128i);
        _mm256_storeu_ps(dst.as_mut_ptr().add(e), _mm256_cvtph_ps(h));
    }
    for (d, s) in dst[whole..].iter_mut().zip(&src[whole..]) {
        *d = s.to_f32();
    }
}

/// `e^x` for `x ≤ 0` (softmax's `exp(s − max)`), in plain f32 multiplies and adds that the
/// compiler vectorizes (libm's `expf` is a call a value): `x = n·ln 2 + r` with `n` the nearest
/// integer to `x·log₂e` (rounded by the 1.5·2²³ trick, ties to even) and `ln 2` in two parts,
/// `e^r` by Cephes' degree-7 polynomial for `|r| ≤ ln2/2`, times `2^n` built in the exponent
/// bits. Within 1 ulp of the true value (the unit test scans the range against f64: 0.62 at worst);
/// below −87 (where `e^x` < 1.7·10⁻³⁸, nothing next to a softmax's largest term 1) it gives 0;
/// NaN stays NaN. The same bits at every SIMD level: no fused multiply-adds.
#[inline(always)]
pub fn exp_nonpositive(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5·2²³
    let under = x < -87.0;
    let xc = if under { -87.0 } else { x };
    let n = (xc * LOG2E + ROUND) - ROUND;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let r2 = r * r;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e = (p * r2 + r) + 1.0;
    // 2^n for n in −126..=0 (NaN: n is NaN and `as` gives 0, and e is NaN already).
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    if under {
        0.0
    } else {
        e * scale
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_nonpositive_is_within_1_ulp_of_the_true_value() {
        let mut worst = 0.0f64;
        // Every 4099th f32 from −0 down to −87 (the bits of negative floats grow with size).
        for bits in (0x8000_0000u32..=(-87.0f32).to_bits()).step_by(4099) {
            let x = f32::from_bits(bits);
            let got = exp_nonpositive(x) as f64;
            let want = (x as f64).exp();
            let ulp = (want as f32).abs() as f64 * f32::EPSILON as f64;
            let err = (got - want).abs() / ulp.max(f32::MIN_POSITIVE as f64);
            worst = worst.max(err);
            assert!(err <= 1.0, "exp({x}) = {got}, true {want}: {err} ulp");
        }
        eprintln!("worst error {worst:.3} ulp");
        assert!(worst > 0.0); // it is an approximation: the scan saw its error
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(-0.0), 1.0);
        assert_eq!(exp_nonpositive(-88.0), 0.0);
        assert_eq!(exp_nonpositive(f32::NEG_INFINITY), 0.0);
        assert!(exp_nonpositive(f32::NAN).is_nan());
    }

    #[test]
    fn dot_matches_a_plain_loop_at_awkward_lengths() {
        for n in [0, 1, 3, 15, 16, 17, 33, 100, 577] {
            let a: Vec<f32> = (0..n)
                .map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.25)
                .collect();
            let b: Vec<f32> = (0..n).map(|i| ((i * 13 % 7) as f32 - 3.0) * 0.5).collect();
            // Small integers times powers of two: every partial sum is exact in f32.
            let want: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert_eq!(dot(&a, &b), want, "n = {n}");
            assert_eq!(dot_body(&a, &b), want, "n = {n}");
        }
    }

    #[test]
    fn half_conversions_are_exact() {
        // 17 values: two whole groups of 8 and a tail; subnormal, infinite and NaN halves too.
        let xs = [
            0.0f32,
            1.5,
            -2.25,
            65504.0,
            1e-3,
            -7.0e-5,
            6.0e-8,
            -0.0,
            3.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.333,
            -1.0e4,
            f32::NAN,
            7.5,
            -0.5,
            1.0,
        ];
        let b: Vec<bf16> = xs.iter().map(|&x| bf16::from_f32(x)).collect();
        let h: Vec<f16> = xs.iter().map(|&x| f16::from_f32(x)).collect();
        let (mut fb, mut fh) = (vec![0.0; xs.len()], vec![0.0; xs.len()]);
        bf16_to_f32(&b, &mut fb);
        f16_to_f32(&h, &mut fh);
        for i in 0..xs.len() {
            assert_eq!(fb[i].to_bits(), b[i].to_f32().to_bits(), "{}", xs[i]);
            assert_eq!(fh[i].to_bits(), h[i].to_f32().to_bits(), "{}", xs[i]);
        }
    }
}
