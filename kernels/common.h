// Wavefront kernels: the one portability header (STYLE.md 3).
//
// Every op file includes this and nothing else. It owns:
//   * the HIP / CUDA bridge (thread indices, barriers, shuffles, bit casts, math builtins):
//     op files never test the vendor;
//   * WAVE, the logical wave (a compile-time define, 32 or 64), its shuffles and reductions,
//     and the block reductions built on them;
//   * 16-byte vector loads and stores;
//   * the 16-bit storage types (f16, bf16 as uint16_t) and their exact conversions;
//   * an accurate f32 sin/cos (for RoPE) that needs no device library;
//   * the sampler's e^x (wf_sampler_exp), bit-identical to the Rust sampler's.
//
// Compilers: hipRTC and NVRTC at run time (the source is handed over with this header as an
// in-memory include named "common.h"), clang-19 -x hip for the ahead-of-time AMD check
// (ci/hip-compile-check.sh), and a host C++ compiler for the numeric self-test
// (ci/kernel-math-check.cpp, with WF_HOST_TEST defined). Nothing here needs a host header
// under NVRTC or hipRTC, nor a vendor half/bf16 header, nor a device math library: the
// functions used lower to instructions, so the AOT register report is the real one.
//
// Conventions for every kernel:
//   * blocks are one-dimensional; block sizes are compile-time constants fixed by the ABI
//     (ci/kernel-abi-check.py keeps them with the argument lists), or for a kernel that takes
//     its block from the launch (block_threads(); qgemv.hip's GEMVs) its upper bound;
//   * wave ops (wave_*, block_*) must be reached by every thread of the block, the same
//     number of times, in the same order: block-uniform control flow. On AMD and native
//     WAVE=32 CUDA wave-uniform would suffice, but the WAVE=64 emulation on NVIDIA (below)
//     synchronises the whole block inside them, so kernels are written block-uniform.

#ifndef WAVEFRONT_KERNELS_COMMON_H
#define WAVEFRONT_KERNELS_COMMON_H

#ifndef WAVE
#error "compile with -DWAVE=32 or -DWAVE=64"
#endif
#if WAVE != 32 && WAVE != 64
#error "WAVE must be 32 or 64"
#endif

// ---------------------------------------------------------------------------------------------
// Vendor bridge. WF_HIP: hipRTC or clang -x hip. WF_CUDA: NVRTC or nvcc. WF_HOST: host test.
// ---------------------------------------------------------------------------------------------
#if defined(WF_HOST_TEST)
#define WF_HOST 1
#elif defined(__HIP__) || defined(__HIPCC_RTC__)
#define WF_HIP 1
#elif defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define WF_CUDA 1
#else
#error "kernels/common.h: unknown compiler (expected HIP, CUDA or WF_HOST_TEST)"
#endif

// Fixed-width types. The run-time compilers have no host headers: define the ones we use
// (identical to the platforms' own, so a second identical typedef is harmless).
#if defined(__CUDACC_RTC__) || defined(__HIPCC_RTC__)
typedef unsigned char uint8_t;
typedef signed char int8_t;
typedef unsigned short uint16_t;
typedef unsigned int uint32_t;
typedef int int32_t;
#else
#include <stdint.h>
#endif
typedef long long i64;  // element offsets into large buffers (the KV arena exceeds 2^31)
typedef unsigned long long u64;

#if defined(WF_HIP)
// On AMD the logical wave is the hardware wave (64 on CDNA gfx9, 32 on RDNA gfx11).
#if defined(__AMDGCN_WAVEFRONT_SIZE__) && __AMDGCN_WAVEFRONT_SIZE__ != WAVE
#error "WAVE must equal the hardware wave size on AMD"
#endif
#define WF_DEVICE __device__ __forceinline__
#define WF_SHARED __shared__
#define WF_EMULATED_WAVE 0
#elif defined(WF_CUDA)
// NVIDIA's warp is 32 lanes. WAVE=64 is emulated over two warps (see wave_shfl_xor).
#define WF_DEVICE __device__ __forceinline__
#define WF_SHARED __shared__
#define WF_EMULATED_WAVE (WAVE == 64)
#else
#define WF_DEVICE inline
#if defined(WF_HOST_SIM)
// ci/kernel-sim.h runs a block's threads as fibers, blocks one after another: a block's shared
// variables are the function's statics (one per instantiation, as on a GPU).
#define WF_SHARED static
#else
#define WF_SHARED  // a host test's one thread
#endif
#define WF_EMULATED_WAVE 0
#include <math.h>
#include <string.h>
#endif

WF_DEVICE float f32_from_bits(uint32_t u) {
#if defined(WF_HIP)
  return __builtin_bit_cast(float, u);
#elif defined(WF_CUDA)
  return __uint_as_float(u);
#else
  float f;
  memcpy(&f, &u, 4);
  return f;
#endif
}

WF_DEVICE double f64_from_bits(u64 u) {
#if defined(WF_HIP)
  return __builtin_bit_cast(double, u);
#elif defined(WF_CUDA)
  return __longlong_as_double((long long)u);
#else
  double f;
  memcpy(&f, &u, 8);
  return f;
#endif
}

WF_DEVICE uint32_t f32_bits(float f) {
#if defined(WF_HIP)
  return __builtin_bit_cast(uint32_t, f);
#elif defined(WF_CUDA)
  return __float_as_uint(f);
#else
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
#endif
}

// 2^23 + byte b of w as f32 (b = 0..3, a compile-time value): one byte permute (CUDA prmt, AMD
// v_perm_b32) puts the byte under the exponent 0x4B, so the value minus 2^23 is the byte,
// exactly. The block-quantized GEMV's integer-to-float conversion, four values a word.
WF_DEVICE float byte_in_mantissa(uint32_t w, int b) {
#if defined(WF_HIP)
  // Bytes 0–3 are w's, 4–7 the constant's; selector 0x0C is a zero byte.
  return f32_from_bits(__builtin_amdgcn_perm(0x4b000000u, w, 0x070c0c00u | (uint32_t)b));
#elif defined(WF_CUDA)
  // Bytes 0–3 are w's, 4–7 the constant's (byte 4 is zero, byte 7 is 0x4B).
  return f32_from_bits(__byte_perm(w, 0x4b000000u, 0x7440u | (uint32_t)b));
#else
  return f32_from_bits(((w >> (8 * b)) & 0xffu) | 0x4b000000u);
#endif
}

// c + Σ_b a_b · b_b over the four signed bytes of a and b (exact in 32-bit integers): CUDA
// dp4a (sm_61+), CDNA's v_dot4_i32_i8 (gfx906/908/90a/94x), RDNA3's v_dot4_i32_iu8 with both
// operands signed; a plain sum elsewhere (and on the host). The 8-bit-activation GEMVs' dot.
WF_DEVICE int wf_dot4_i8(uint32_t a, uint32_t b, int c) {
#if defined(WF_CUDA) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 610
  return __dp4a((int)a, (int)b, c);
#elif defined(WF_HIP) && (defined(__gfx906__) || defined(__gfx908__) || defined(__gfx90a__) || \
                          defined(__gfx940__) || defined(__gfx941__) || defined(__gfx942__) || \
                          defined(__gfx950__))
  return __builtin_amdgcn_sdot4((int)a, (int)b, c, false);
#elif defined(WF_HIP) && (defined(__gfx1100__) || defined(__gfx1101__) || \
                          defined(__gfx1102__) || defined(__gfx1103__))
  return __builtin_amdgcn_sudot4(true, (int)a, true, (int)b, c, false);
#else
  int s = c;
  for (int i = 0; i < 4; ++i) {
    s += (int)(int8_t)(uint8_t)(a >> (8 * i)) * (int)(int8_t)(uint8_t)(b >> (8 * i));
  }
  return s;
#endif
}

// Math that must stay IEEE-accurate: fused multiply-add (one rounding), round to nearest
// even, square root (correctly rounded on all three: HIP's __builtin_sqrtf is the
// correctly-rounded expansion unless fast math is asked for; NVRTC's default is -prec-sqrt),
// and e^x (HIP: the LLVM intrinsic's accurate expansion, ~1 ulp; CUDA: expf, ≤ 2 ulp).
#if defined(WF_HIP)
WF_DEVICE float wf_fmaf(float a, float b, float c) { return __builtin_fmaf(a, b, c); }
WF_DEVICE float wf_rintf(float x) { return __builtin_rintf(x); }
WF_DEVICE float wf_sqrtf(float x) { return __builtin_sqrtf(x); }
WF_DEVICE float wf_expf(float x) { return __builtin_expf(x); }
WF_DEVICE double wf_fma(double a, double b, double c) { return __builtin_fma(a, b, c); }
WF_DEVICE double wf_rint(double x) { return __builtin_rint(x); }
#else
WF_DEVICE float wf_fmaf(float a, float b, float c) { return fmaf(a, b, c); }
WF_DEVICE float wf_rintf(float x) { return rintf(x); }
WF_DEVICE float wf_sqrtf(float x) { return sqrtf(x); }
WF_DEVICE float wf_expf(float x) { return expf(x); }
WF_DEVICE double wf_fma(double a, double b, double c) { return fma(a, b, c); }
WF_DEVICE double wf_rint(double x) { return rint(x); }
#endif

// The gated MLP's activation, `act` as the engine's Activation (the `act` argument of the gated
// kernels: swiglu, gemv_swiglu_*, qgemv_swiglu_*), y = act(g) · u:
//   ACT_SILU (0):      silu(g) = g / (1 + e^(−g))
//   ACT_GELU_TANH (1): PyTorch's gelu(g, approximate='tanh') = 0.5·g·(1 + tanh(z)),
//                      z = √(2/π)·(g + 0.044715·g³), evaluated as g / (1 + e^(−2z)): the same
//                      function (0.5·(1 + tanh z) = σ(2z) exactly), one e^x as silu, no tanhf
//                      (a device-library call on AMD, which the compile check refuses). z is
//                      formed in PyTorch's order (g³ first); against PyTorch's f32 kernel the
//                      result differs by a few roundings of z, e^x and the division: ≤ 5u·|g|
//                      absolute (tolerance.rs GatedGelu), and it is the more accurate of the
//                      two where 1 + tanh z cancels (g ≪ 0).
enum GateAct { ACT_SILU = 0, ACT_GELU_TANH = 1 };
WF_DEVICE float wf_gelu_tanh(float g) {
  const float beta = 0.7978845608028654f;  // √(2/π), PyTorch's M_SQRT2 · M_2_SQRTPI · 0.5
  const float kappa = 0.044715f;
  const float z = beta * (g + kappa * (g * g * g));
  return g / (1.0f + wf_expf(-2.0f * z));
}
WF_DEVICE float wf_silu(float g) { return g / (1.0f + wf_expf(-g)); }

// Gemma 2's soft-cap c·tanh(x / c) of an attention score or a logit, `inv_c` = 1 / c (the
// caller's, once per launch): t = x·inv_c, tanh |t| = (1 − e) / (1 + e) with e = e^(−2|t|) ∈
// (0, 1] (no overflow, no tanhf: a device-library call on AMD), the sign of t put back.
// Against transformers' (x / c).tanh() · c: the reciprocal and the product (2 roundings of t,
// tanh' ≤ 1), e^x (2 ulp) and 1 − e, which cancels for small |t| (absolute u), the division
// and · c: ≤ 6u·c absolute (conformance's attention and logits cases). NaN stays NaN; ±inf
// gives ±c.
WF_DEVICE float wf_softcap(float x, float c, float inv_c) {
  const float t = x * inv_c;
  const float a = t < 0.0f ? -t : t;
  const float e = wf_expf(-2.0f * a);
  const float th = (1.0f - e) / (1.0f + e);
  return (t < 0.0f ? -th : th) * c;
}

// a·b + c with the product rounded before the sum (never contracted into an FMA, which
// NVRTC and clang may otherwise do): ggml's dequantization formulas (q·d + m).
WF_DEVICE float wf_mul_add_rn(float a, float b, float c) {
#if defined(WF_CUDA)
  return __fadd_rn(__fmul_rn(a, b), c);
#elif defined(WF_HIP)
#pragma clang fp contract(off)
  return a * b + c;
#else
  return a * b + c;
#endif
}

// Round to nearest, ties away from zero (C's roundf, Rust's f32::round) from rint: x − rint(x)
// is exact, and ±0.5 only at a tie, where rint went to the even side.
WF_DEVICE float wf_round_away(float x) {
  const float r = wf_rintf(x), diff = x - r;
  return diff == 0.5f || diff == -0.5f ? x + (x > 0.0f ? 0.5f : -0.5f) : r;
}

WF_DEVICE float wf_inf() { return f32_from_bits(0x7f800000u); }
WF_DEVICE bool wf_isnan(float x) { return x != x; }

// ---------------------------------------------------------------------------------------------
// e^x for the sampler's softmax, bit-identical to `sampler_exp` of engine/src/sampler.rs and
// reference/src/sampler.rs: only correctly rounded IEEE operations, in the same order (the
// vendors' expf and libm's differ in the last bit, and one bit of a probability can move a
// top-p boundary or the draw). Every product that feeds a sum is an explicit wf_fma (NVRTC
// and clang would otherwise be free to contract, or not, a separate multiply and add); plain
// `*` only where nothing is added to the product. Monotone, correctly rounded except within
// ~2^-50 of a rounding boundary (the engine's exhaustive test).
//   NaN → NaN; x > 88.72283172607421875 (the largest f32 with e^x < FLT_MAX) → +inf;
//   x < -104 → 0 (-inf too); in f64: n = rne(x · log2 e) in [-150, 128]; r = x - n · ln 2 by
//   two fmas (ln 2 in two parts); e^r by Taylor degree 12 in Horner form; × 2^n (exact, from
//   its exponent bits); one rounding to f32. f64 is slow on consumer GPUs, but the sampler
//   takes one exp per candidate token.
// ---------------------------------------------------------------------------------------------
WF_DEVICE float wf_sampler_exp(float x) {
  if (wf_isnan(x)) return x;
  if (x > f32_from_bits(0x42b17217u)) return wf_inf();
  if (x < -104.0f) return 0.0f;
  const double xd = (double)x;
  const double n = wf_rint(xd * 1.4426950408889634);  // log2 e
  double r = wf_fma(-n, 0.6931471805599453, xd);      // ln 2 rounded to f64
  r = wf_fma(-n, 2.3190468138462996e-17, r);          // ln 2 - the above
  double p = 2.08767569878681e-09;                    // 1/12!
  p = wf_fma(p, r, 2.505210838544172e-08);            // 1/11!
  p = wf_fma(p, r, 2.755731922398589e-07);            // 1/10!
  p = wf_fma(p, r, 2.7557319223985893e-06);           // 1/9!
  p = wf_fma(p, r, 2.48015873015873e-05);             // 1/8!
  p = wf_fma(p, r, 0.0001984126984126984);            // 1/7!
  p = wf_fma(p, r, 0.001388888888888889);             // 1/6!
  p = wf_fma(p, r, 0.008333333333333333);             // 1/5!
  p = wf_fma(p, r, 0.041666666666666664);             // 1/4!
  p = wf_fma(p, r, 0.16666666666666666);              // 1/3!
  p = wf_fma(p, r, 0.5);
  p = wf_fma(p, r, 1.0);
  p = wf_fma(p, r, 1.0);
  const double pow2 = f64_from_bits((u64)((i64)n + 1023) << 52);  // 2^n
  return (float)(p * pow2);
}

// ---------------------------------------------------------------------------------------------
// 16-bit storage conversions (bit-exact, identical on every vendor; the CPU backend's `half`
// crate is the contract: round to nearest even, NaN stays NaN with its sign).
// ---------------------------------------------------------------------------------------------

// bf16 is the top half of an f32: exact.
WF_DEVICE float bf16_to_f32(uint16_t h) { return f32_from_bits((uint32_t)h << 16); }

// f32 → bf16, round to nearest even on the 16 dropped bits; NaN → quiet NaN.
WF_DEVICE uint16_t f32_to_bf16(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u);
  // Adding 0x7fff (+1 when the kept lsb is odd) carries into bit 16 exactly when the dropped
  // part is above half, or exactly half with an odd kept part. Infinities stay infinite,
  // the largest finite values round to infinity as IEEE says.
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

// f16 → f32, exact for every input: normals rebias the exponent (15 → 127), subnormals
// (m · 2^-24, m < 1024) are exact products in f32, inf keeps its sign, NaN its sign and payload.
WF_DEVICE float f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1fu) {  // inf, or NaN made quiet (as `half` and the F16C instruction do)
    return f32_from_bits(sign | 0x7f800000u | (mant ? 0x400000u | (mant << 13) : 0u));
  }
  if (exp != 0) return f32_from_bits(sign | ((exp + 112u) << 23) | (mant << 13));
  float m = (float)mant * 5.9604644775390625e-8f;  // mant · 2^-24, exact (0 when mant == 0)
  return f32_from_bits(sign | f32_bits(m));
}

// f16 → f32 by the hardware's conversion instruction: the same value as f16_to_f32 for every
// input but NaN (then a NaN, payload not promised). For hot loops that read f16 data that is
// never NaN in use (the KV cache), where the exact codec's branches cost more than the loads.
WF_DEVICE float f16_to_f32_hw(uint16_t h) {
#if defined(WF_HIP)
  return (float)__builtin_bit_cast(_Float16, h);
#elif defined(WF_CUDA)
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
  return f;
#else
  return f16_to_f32(h);
#endif
}

// f32 → f16, round to nearest even, with f16 subnormals, overflow to ±inf and NaN → quiet NaN.
WF_DEVICE uint16_t f32_to_f16(float f) {
  uint32_t u = f32_bits(f);
  uint32_t sign = (u >> 16) & 0x8000u;
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));  // NaN
  // 65520 = 0x477ff000 is the midpoint between 65504 (f16 max, odd mantissa) and 2^16:
  // it and everything above (inf included) round to inf.
  if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);
  if (a >= 0x38800000u) {  // ≥ 2^-14: a normal f16 (rounding may carry into the exponent)
    uint32_t r = a - (112u << 23);  // rebias the exponent 127 → 15
    r += 0xfffu + ((r >> 13) & 1u);  // round to nearest even on the 13 dropped bits
    return (uint16_t)(sign | (r >> 13));
  }
  // Below 2^-14: the f16 is subnormal, value m · 2^-24 with m = round(|f| · 2^24) ≤ 1024
  // (1024 is the smallest normal, 0x0400, reached by rounding up). |f| · 2^24 is exact;
  // adding 2^23 rounds it to an integer (nearest even) in the low mantissa bits.
  float scaled = f32_from_bits(a) * 16777216.0f;
  uint32_t m = f32_bits(scaled + 8388608.0f) & 0x7fffffu;
  return (uint16_t)(sign | m);
}

// f32 → f16 / bf16 for values that are never NaN (matrix inputs: rounded activations, softmax
// weights): the same bits as f32_to_f16 / f32_to_bf16 for every other input, by the hardware's
// round-to-nearest-even conversion where there is one (f16 everywhere, bf16 on NVIDIA sm_80+),
// else the bf16 rounding without its NaN branch.
WF_DEVICE uint16_t f32_to_f16_hw(float f) {
#if defined(WF_HIP)
  return __builtin_bit_cast(uint16_t, (_Float16)f);
#elif defined(WF_CUDA)
  uint16_t h;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
  return h;
#else
  return f32_to_f16(f);
#endif
}
WF_DEVICE uint16_t f32_to_bf16_hw(float f) {
#if defined(WF_CUDA) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  uint16_t h;
  asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(f));
  return h;
#else
  uint32_t u = f32_bits(f);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
#endif
}

// Element codecs: how a buffer of element type T is read as / written from f32. The `_f32`,
// `_f16` and `_bf16` entry points instantiate the op templates with one of these.
struct F32 {
  typedef float storage;
  enum { id = 0 };  // the kernel's coverage slot among its _f32/_f16/_bf16 entry points
  static WF_DEVICE float load(float x) { return x; }
  static WF_DEVICE float store(float x) { return x; }
};
struct F16 {
  typedef uint16_t storage;
  enum { id = 1 };
  static WF_DEVICE float load(uint16_t x) { return f16_to_f32(x); }
  static WF_DEVICE uint16_t store(float x) { return f32_to_f16(x); }
  static WF_DEVICE uint16_t store_hw(float x) { return f32_to_f16_hw(x); }  // x not NaN
  static WF_DEVICE float load_hw(uint16_t x) { return f16_to_f32_hw(x); }    // x not NaN
};
struct BF16 {
  typedef uint16_t storage;
  enum { id = 2 };
  static WF_DEVICE float load(uint16_t x) { return bf16_to_f32(x); }
  static WF_DEVICE uint16_t store(float x) { return f32_to_bf16(x); }
  static WF_DEVICE uint16_t store_hw(float x) { return f32_to_bf16_hw(x); }  // x not NaN
  static WF_DEVICE float load_hw(uint16_t x) { return bf16_to_f32(x); }
};
// The KV cache's Q8_0 (engine/src/kv_quant.rs): blocks of 32 elements, each an f16 scale d
// and 32 int8 quants q (the value q·d), in superblocks of 256 elements and 272 bytes (the 256
// quants in element order, then the 8 scales). Element e of an arena: its quant at byte
// (e / 256)·272 + e mod 256, its block's scale at (e / 256)·272 + 256 + 2·((e mod 256) / 32).
struct Q8 {
  typedef uint8_t storage;
  enum { id = 3 };
  static WF_DEVICE i64 quant_byte(i64 e) { return (e >> 8) * 272 + (e & 255); }
  static WF_DEVICE i64 scale_byte(i64 e) { return (e >> 8) * 272 + 256 + ((e & 255) >> 5) * 2; }
  // Element e of arena a, as f32 (q·d is exact in f32).
  static WF_DEVICE float read(const uint8_t* a, i64 e) {
    const float d = f16_to_f32(*(const uint16_t*)(a + scale_byte(e)));
    return (float)(int)(int8_t)a[quant_byte(e)] * d;
  }
  // llama.cpp's quantize_row_q8_0_ref for a block whose largest magnitude is amax: the scale
  // d = amax / 127 (its f16 bits in *dh, the f32 value it reads back as returned), and
  // 1 / d (0 when d is 0) in *id: q = round(x · id), half away from zero.
  static WF_DEVICE float scale(float amax, uint16_t* dh, float* id) {
    const float d = amax / 127.0f;
    *id = d != 0.0f ? 1.0f / d : 0.0f;
    *dh = f32_to_f16(d);
    return f16_to_f32(*dh);
  }
  static WF_DEVICE int quant(float x, float id) { return (int)wf_round_away(x * id); }
};

// Element e of a KV arena of codec KV, as f32.
template <class KV>
WF_DEVICE float kv_read(const typename KV::storage* a, i64 e) {
  return KV::load(a[e]);
}
template <>
WF_DEVICE float kv_read<Q8>(const uint8_t* a, i64 e) {
  return Q8::read(a, e);
}

// ---------------------------------------------------------------------------------------------
// sin and cos of an f32 angle, correctly rounded in practice (≤ 0.5 ulp + 2^-30 relative:
// computed in f64, rounded once to f32; ci/kernel-math-check.cpp measures every f32 input
// class), from FMA, integer and f64 arithmetic only (the vendors' sinf/cosf are
// device-library calls, 2 ulp; the hardware sin instructions are approximations).
//   1. reduce: a = q·π/2 + r with |r| ≤ π/4, r in f64;
//        |a| < 105615: Cody-Waite, r = a - j·π/2 with π/2 split in two f64 parts;
//        larger: Payne-Hanek, a's 24-bit mantissa times a 96-bit window of 2/π in integers;
//   2. polynomials for sin r and cos r on [-π/4, π/4] in f64;
//   3. the quadrant q mod 4 picks ±sin r / ±cos r.
// f64 is slow on consumer GPUs, but RoPE needs one sin/cos pair per (row, head, dim pair):
// nothing next to the memory traffic of the rows it rotates.
// ---------------------------------------------------------------------------------------------

// Payne-Hanek: for 105615 ≤ |a| < inf. a = ia · 2^(E-158) with ia the mantissa shifted to
// bit 31 and E the biased exponent, so (a · 2/π) · 2^62 = ia · (2/π · 2^(E-96)). Only that
// number mod 2^64 matters (the quadrant mod 4 and 62 fraction bits), which needs bits
// [E-128, E-128+96) of 2/π: three words from the stream P below (2/π = 0.a2f9836e 4e441529 …
// in hex, after one zero word), shifted by (E-128) mod 32. Returns r in f64.
WF_DEVICE double wf_trig_reduce_slow(float a, int* quadrant) {
  const uint32_t P0 = 0x00000000u, P1 = 0xa2f9836eu, P2 = 0x4e441529u, P3 = 0xfc2757d1u,
                 P4 = 0xf534ddc0u, P5 = 0xdb629599u, P6 = 0x3c439041u;
  uint32_t bits = f32_bits(a);
  uint32_t ia = ((bits & 0x7fffffu) | 0x800000u) << 8;
  int p0 = (int)((bits >> 23) & 0xffu) - 128;  // 15 ≤ p0 ≤ 126 on this path
  int i = p0 >> 5, e = p0 & 31;
  // words i .. i+3 of P (selects, not an indexed array: no scratch memory)
  uint32_t w0 = i == 0 ? P0 : i == 1 ? P1 : i == 2 ? P2 : P3;
  uint32_t w1 = i == 0 ? P1 : i == 1 ? P2 : i == 2 ? P3 : P4;
  uint32_t w2 = i == 0 ? P2 : i == 1 ? P3 : i == 2 ? P4 : P5;
  uint32_t w3 = i == 0 ? P3 : i == 1 ? P4 : i == 2 ? P5 : P6;
  uint32_t hi = w0, mid = w1, lo = w2;
  if (e != 0) {
    hi = (w0 << e) | (w1 >> (32 - e));
    mid = (w1 << e) | (w2 >> (32 - e));
    lo = (w2 << e) | (w3 >> (32 - e));
  }
  // ia · (hi:mid:lo) / 2^32 mod 2^64: a 2.62 fixed-point (a · 2/π) mod 4
  u64 p = (u64)ia * lo;
  p = (u64)ia * mid + (p >> 32);
  p += (u64)(ia * hi) << 32;
  int q = (int)(p >> 62);
  i64 frac = (i64)(p & 0x3fffffffffffffffull);
  if (frac >= 0x2000000000000000ll) {  // fraction ≥ 1/2: round the quotient up
    frac -= 0x4000000000000000ll;
    q += 1;
  }
  double r = (double)frac * 3.4061215800865545e-19;  // · 2^-62 · π/2
  if (bits >> 31) {
    r = -r;
    q = -q;
  }
  *quadrant = q;
  return r;
}

// sin(a) and cos(a) of an f32 angle. Non-finite a gives NaN for both.
WF_DEVICE void wf_sincosf(float a, float* s, float* c) {
  double r;
  int q;
  float abs_a = f32_from_bits(f32_bits(a) & 0x7fffffffu);
  if (abs_a <= 0.785398163f) {  // |a| ≤ π/4: no reduction
    r = (double)a;
    q = 0;
  } else if (abs_a < 105615.0f) {
    // j = nearest integer to a·2/π (|j| < 2^17); r = a - j·π/2 with π/2 = P1 + P2 in f64:
    // a - j·P1 rounds once in the FMA (relative 2^-53), j·P2 adds the next 53 bits.
    double j = (double)wf_rintf(a * 6.366197467e-01f);
    r = wf_fma(j, -1.57079632679489656e+00, (double)a);
    r = wf_fma(j, -6.12323399573676604e-17, r);
    q = (int)j;
  } else if (abs_a <= 3.402823466e+38f) {
    r = wf_trig_reduce_slow(a, &q);
  } else {
    r = (double)(a - a);  // inf or NaN → NaN
    q = 0;
  }
  // Polynomials on [-π/4, π/4] with z = r², fitted for least maximum relative error (their
  // own error is below 4e-13): sin r = r + r·z·S(z), cos r = 1 + z·C(z), S and C of degree 4.
  double z = r * r;
  double ps = wf_fma(wf_fma(wf_fma(wf_fma(-2.48056406577544172e-08, z, 2.75559906606250016e-06),
                                   z, -1.98412669141213166e-04),
                            z, 8.33333333107146024e-03),
                     z, -1.66666666666638180e-01);
  double sin_r = wf_fma(r * z, ps, r);
  double pc = wf_fma(wf_fma(wf_fma(wf_fma(-2.72371858612424633e-07, z, 2.47998623751615604e-05),
                                   z, -1.38888850900610594e-03),
                            z, 4.16666666373342251e-02),
                     z, -4.99999999999633793e-01);
  double cos_r = wf_fma(z, pc, 1.0);
  // a = q·π/2 + r: sin a = sin r, cos r, -sin r, -cos r for q mod 4 = 0..3; cos a likewise
  // one quadrant on.
  int k = q & 3;
  double sv = (k & 1) ? cos_r : sin_r;
  double cv = (k & 1) ? sin_r : cos_r;
  *s = a == 0.0f ? a : (float)((k & 2) ? -sv : sv);  // sin(±0) = ±0
  *c = (float)(((k + 1) & 2) ? -cv : cv);
}

// The device section. A host test may compile it too (WF_HOST_DEVICE_SHIMS: the test supplies
// CUDA's names — threadIdx, __syncthreads, __shfl_xor_sync, … — and runs threads one by one;
// ci/kernel-quant-check.cpp); a GPU build always does.
#if !defined(WF_HOST) || defined(WF_HOST_DEVICE_SHIMS)
// ---------------------------------------------------------------------------------------------
// Path coverage. Every kernel names its paths (the branches that compute something different:
// vector or scalar, aligned or not, a tail, a special case) in its file's `enum ...Path` and doc
// comment, and marks each with WF_PATH(slot, path): `slot` tells the file's entry points apart
// (the codec's id for templated ones). Compiled with -DWF_COVERAGE, a mark sets bit `path` of
// wf_coverage[slot], a module global the conformance suite reads after each case to show which
// case reaches which path (engine/src/backend/gpu/coverage.rs holds the table); otherwise it
// compiles to nothing, so the kernels the engine runs carry no trace of it.
// ---------------------------------------------------------------------------------------------
#define WF_COVERAGE_SLOTS 40
#if defined(WF_COVERAGE)
extern "C" {
__device__ unsigned int wf_coverage[WF_COVERAGE_SLOTS];
}
WF_DEVICE void wf_path(int slot, int path) {
  const unsigned int bit = 1u << path;
  if ((wf_coverage[slot] & bit) == 0) {
#if defined(WF_HIP)
    __atomic_fetch_or(&wf_coverage[slot], bit, __ATOMIC_RELAXED);
#else
    atomicOr(&wf_coverage[slot], bit);
#endif
  }
}
#define WF_PATH(slot, path) wf_path((slot), (path))
#else
#define WF_PATH(slot, path) ((void)(slot), (void)(path))
#endif

// ---------------------------------------------------------------------------------------------
// Thread indexing and barriers (one-dimensional blocks; grids up to three-dimensional).
// ---------------------------------------------------------------------------------------------
#if defined(WF_HIP)
WF_DEVICE int thread_index() { return (int)__builtin_amdgcn_workitem_id_x(); }
WF_DEVICE int block_index_x() { return (int)__builtin_amdgcn_workgroup_id_x(); }
WF_DEVICE int block_index_y() { return (int)__builtin_amdgcn_workgroup_id_y(); }
WF_DEVICE int block_index_z() { return (int)__builtin_amdgcn_workgroup_id_z(); }
WF_DEVICE int block_threads() { return (int)__builtin_amdgcn_workgroup_size_x(); }
#else
WF_DEVICE int thread_index() { return (int)threadIdx.x; }
WF_DEVICE int block_index_x() { return (int)blockIdx.x; }
WF_DEVICE int block_index_y() { return (int)blockIdx.y; }
WF_DEVICE int block_index_z() { return (int)blockIdx.z; }
WF_DEVICE int block_threads() { return (int)blockDim.x; }  // the launch's, ≤ __launch_bounds__
#endif

// All threads of the block reach it; shared-memory writes before it are visible after it.
// (HIP: the builtins that __syncthreads expands to in current HIP; older HIP headers route it
// through device-library calls.)
WF_DEVICE void block_sync() {
#if defined(WF_HIP)
  __builtin_amdgcn_fence(__ATOMIC_RELEASE, "workgroup");
  __builtin_amdgcn_s_barrier();
  __builtin_amdgcn_fence(__ATOMIC_ACQUIRE, "workgroup");
#else
  __syncthreads();
#endif
}

// Overlapped launches (engine: Vendor::launch_overlapped). A kernel so launched may start while
// the kernel queued ahead of it drains: before wf_dependency_wait() it may only read memory no
// earlier kernel writes (weights) and write nothing; after it, everything queued before is
// complete and visible. wf_allow_dependents() lets the kernel queued after this one (if it was
// launched overlapped) start its blocks once every block of this one has run it. Call it after
// the wait (gemv.hip, qgemv.hip, decode_attention.hip): called first, a chain of overlapped
// launches starts many kernels ahead, whose early loads compete with the running kernel's
// (measured in bench/results/2026-12-07-kernel-overlap; sync.hip's probes still call it first).
// NVIDIA sm_90+: griddepcontrol (programmatic dependent launch); elsewhere there is no overlap
// and both are no-ops (launches are serialised).
WF_DEVICE void wf_dependency_wait() {
#if defined(WF_CUDA) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
WF_DEVICE void wf_allow_dependents() {
#if defined(WF_CUDA) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// A device-scope fence: this thread's global writes before it are visible to any block that
// observes a later atomic of this thread (and, on the reading side, an observed atomic's writes
// are visible to loads after it). The pattern of a "last block combines" reduction.
WF_DEVICE void wf_fence_device() {
#if defined(WF_HIP)
  __builtin_amdgcn_fence(__ATOMIC_SEQ_CST, "agent");
#else
  __threadfence();
#endif
}

// A load that reads the device-coherent copy (L2), not a possibly stale line of this
// multiprocessor's L1: for data another block wrote during this kernel, after the fence and
// atomic that order it (wf_fence_device).
WF_DEVICE float wf_load_coherent(const float* p) {
#if defined(WF_HIP)
  return __hip_atomic_load(p, __ATOMIC_RELAXED, __HIP_MEMORY_SCOPE_AGENT);
#elif defined(WF_CUDA)
  float f;
  asm volatile("ld.global.cg.f32 %0, [%1];" : "=f"(f) : "l"(p));
  return f;
#else
  return *p;  // a host test's one thread
#endif
}

// N consecutive floats by wf_load_coherent (N = 4: one 16-byte load on NVIDIA; p 16-byte
// aligned).
template <int N>
WF_DEVICE void wf_load_coherent_vec(const float* p, float (&o)[N]) {
#if defined(WF_CUDA)
  if constexpr (N == 4) {
    asm volatile("ld.global.cg.v4.f32 {%0, %1, %2, %3}, [%4];"
                 : "=f"(o[0]), "=f"(o[1]), "=f"(o[2]), "=f"(o[3])
                 : "l"(p));
  } else
#endif
  {
#pragma unroll
    for (int e = 0; e < N; ++e) o[e] = wf_load_coherent(p + e);
  }
}

// Relaxed atomics on global or shared ints (the builtins HIP's atomicAdd etc. expand to).
WF_DEVICE int wf_atomic_add(int* p, int v) {
#if defined(WF_HIP)
  return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
#else
  return atomicAdd(p, v);
#endif
}
WF_DEVICE int wf_atomic_or(int* p, int v) {
#if defined(WF_HIP)
  return __atomic_fetch_or(p, v, __ATOMIC_RELAXED);
#else
  return atomicOr(p, v);
#endif
}
WF_DEVICE int wf_atomic_exch(int* p, int v) {
#if defined(WF_HIP)
  return __atomic_exchange_n(p, v, __ATOMIC_RELAXED);
#else
  return atomicExch(p, v);
#endif
}

// wf_load_coherent for an int (a flag or counter other blocks change while this one reads it,
// polled in a loop). NVIDIA: a volatile load, which ptxas neither merges nor hoists out of the
// loop; the weak `ld.global.cg` of wf_load_coherent may be, and a grid barrier polling it then
// waited for nothing (bench/results/2026-12-06-sync-h100).
WF_DEVICE int wf_load_coherent_int(const int* p) {
#if defined(WF_HIP)
  return __hip_atomic_load(p, __ATOMIC_RELAXED, __HIP_MEMORY_SCOPE_AGENT);
#elif defined(WF_CUDA)
  int v;
  asm volatile("ld.volatile.global.s32 %0, [%1];" : "=r"(v) : "l"(p));
  return v;
#else
  return *p;  // a host test's one thread
#endif
}

// Grid barriers: every block of the launch waits until every block has arrived (a persistent
// kernel's phase boundary). Every block of the grid must be resident at once (the host sizes
// the grid by the occupancy calculator and launches nothing beside it), and every thread of
// every block reaches each barrier (block-uniform). Global writes before the barrier are
// visible after it to any read of any block: thread 0's device-scope fence after the poll also
// drops the multiprocessor's L1 lines (sm_90: CCTL.IVALL; gfx942: buffer_inv), and the block
// waits for thread 0 at block barriers on both sides.
//
// Counted: `bar` (2 ints, zero at launch) counts arrivals; the i-th barrier of the launch
// (i = 1, 2, …) releases once bar[0] reaches i · blocks, one atomic and then polls of the
// same word. The launch must end with wf_grid_exit, whose last block zeroes both ints for the
// next launch (every block has passed its last poll by then), so a captured graph replays it
// with no memset.
WF_DEVICE void wf_grid_barrier_counted(int* bar, int target) {
  block_sync();
  if (thread_index() == 0) {
    wf_fence_device();
    wf_atomic_add(bar, 1);
    while (wf_load_coherent_int(bar) < target) {
    }
    wf_fence_device();
  }
  block_sync();
}
WF_DEVICE void wf_grid_exit(int* bar, int blocks) {
  block_sync();
  if (thread_index() == 0 && wf_atomic_add(bar + 1, 1) == blocks - 1) {
    wf_atomic_exch(bar, 0);
    wf_atomic_exch(bar + 1, 0);
  }
}
// Generation: `bar` (2 ints, zero before the first use, reusable with no exit step) holds the
// arrivals of the barrier under way and its generation; the last block to arrive zeroes the
// arrivals and then bumps the generation, which the others poll: one atomic, and for the last
// block two more round trips before anyone is released.
WF_DEVICE void wf_grid_barrier(int* bar, int blocks) {
  block_sync();
  if (thread_index() == 0) {
    const int generation = wf_load_coherent_int(bar + 1);
    wf_fence_device();
    if (wf_atomic_add(bar, 1) == blocks - 1) {
      wf_atomic_exch(bar, 0);
      wf_fence_device();
      wf_atomic_add(bar + 1, 1);
    } else {
      while (wf_load_coherent_int(bar + 1) == generation) {
      }
    }
    wf_fence_device();
  }
  block_sync();
}

// Lane within the logical wave and the wave's index within the block.
WF_DEVICE int wave_lane() { return thread_index() & (WAVE - 1); }
WF_DEVICE int wave_index() { return thread_index() / WAVE; }
// The same, known to the compiler as one value for the whole wave (AMD: a scalar register), so
// what is derived from it (a wave's slice of a tile: its base addresses, its loop bounds) stays
// scalar: uniform branches instead of per-lane masks, and no vector register held for it.
WF_DEVICE int wave_index_uniform() {
#if defined(WF_HIP)
  return __builtin_amdgcn_readfirstlane(wave_index());
#else
  return wave_index();
#endif
}

// The GEMVs over n_in input rows (a batched decode pass): block b of the 1-D grid computes
// output block b / n_in for input row b % n_in, so the n_in blocks reading the same weight rows
// run side by side (W from the L2 for all but the first) and each input row's results are
// computed exactly as a launch for that row alone computes them (batch invariance).
struct BatchBlock {
  int block;  // the output block
  int row;    // the input row
};

WF_DEVICE BatchBlock batch_block(int n_in) {
  const int b = block_index_x();
  return BatchBlock{b / n_in, b % n_in};
}

// ---------------------------------------------------------------------------------------------
// Logical-wave shuffles. wave_shfl_xor(v, mask): lane l receives v of lane l ^ mask
// (0 < mask < WAVE, the same mask on every lane).
//
// WAVE=64 on NVIDIA: logical lanes 0-31 are one warp and 32-63 the next (wave w = warps 2w,
// 2w+1). A mask below 32 stays inside a warp: a hardware shuffle. A mask with bit 5 set
// crosses warps: every thread of the block writes its value to shared memory at its thread
// index, the block synchronises, and each reads thread_index ^ mask (inside its own logical
// wave, since waves start at multiples of 64). Results, and the order of every reduction
// built on them, are those of a hardware wave of 64.
// ---------------------------------------------------------------------------------------------
#if WF_EMULATED_WAVE
WF_DEVICE uint32_t wf_block_exchange(uint32_t v, int src_thread) {
  WF_SHARED uint32_t slots[1024];  // one per thread of the largest block
  block_sync();                    // the previous exchange's readers are done
  slots[thread_index()] = v;
  block_sync();
  return slots[src_thread];
}
#endif

WF_DEVICE uint32_t wave_shfl_xor_u32(uint32_t v, int mask) {
#if defined(WF_HIP)
  return (uint32_t)__shfl_xor((int)v, mask, WAVE);
#elif WF_EMULATED_WAVE
  if (mask >= 32) return wf_block_exchange(v, thread_index() ^ mask);
  return __shfl_xor_sync(0xffffffffu, v, mask, 32);
#else
  return __shfl_xor_sync(0xffffffffu, v, mask, 32);
#endif
}

WF_DEVICE float wave_shfl_xor(float v, int mask) {
  return f32_from_bits(wave_shfl_xor_u32(f32_bits(v), mask));
}
WF_DEVICE int wave_shfl_xor(int v, int mask) { return (int)wave_shfl_xor_u32((uint32_t)v, mask); }

// Butterfly reductions: every lane ends with the result, combined in the same order on every
// lane (so all lanes hold bit-identical values).
WF_DEVICE float wave_sum(float v) {
#pragma unroll
  for (int m = WAVE / 2; m > 0; m >>= 1) v += wave_shfl_xor(v, m);
  return v;
}

// Max that ignores NaN unless both are NaN (IEEE maxNum).
WF_DEVICE float max_num(float a, float b) { return (a >= b || wf_isnan(b)) ? a : b; }

WF_DEVICE float wave_max(float v) {
#pragma unroll
  for (int m = WAVE / 2; m > 0; m >>= 1) v = max_num(v, wave_shfl_xor(v, m));
  return v;
}

// Block reductions over BLOCK threads: wave reductions, one partial per wave in shared
// memory, then every thread folds the partials in wave order (bit-identical everywhere).
// block_sum over the first BLOCK threads of a larger block: every thread calls it (barriers),
// the waves past BLOCK only wait (qgemv.hip's norm prologue keeps rms_norm's 256-thread sum).
template <int BLOCK>
WF_DEVICE float block_sum(float v) {
  WF_SHARED float partial[BLOCK / WAVE];
  v = wave_sum(v);
  if (wave_lane() == 0 && wave_index() < BLOCK / WAVE) partial[wave_index()] = v;
  block_sync();
  float s = partial[0];
#pragma unroll
  for (int w = 1; w < BLOCK / WAVE; ++w) s += partial[w];
  block_sync();  // partial[] may be reused by the next call
  return s;
}

template <int BLOCK>
WF_DEVICE float block_max(float v) {
  WF_SHARED float partial[BLOCK / WAVE];
  v = wave_max(v);
  if (wave_lane() == 0) partial[wave_index()] = v;
  block_sync();
  float s = partial[0];
#pragma unroll
  for (int w = 1; w < BLOCK / WAVE; ++w) s = max_num(s, partial[w]);
  block_sync();
  return s;
}

// ---------------------------------------------------------------------------------------------
// 16-byte vector loads and stores. The pointer must be aligned to the access size; callers
// check with is_aligned() (uniformly across the block) and fall back to scalar code.
// ---------------------------------------------------------------------------------------------
#if defined(WF_HIP)
typedef float wf_f32x4 __attribute__((ext_vector_type(4)));
typedef uint32_t wf_u32x4 __attribute__((ext_vector_type(4)));
typedef uint32_t wf_u32x2 __attribute__((ext_vector_type(2)));
#else
typedef float4 wf_f32x4;
typedef uint4 wf_u32x4;
typedef uint2 wf_u32x2;
#endif

WF_DEVICE bool is_aligned(const void* p, int bytes) {
  return ((u64)p & (u64)(bytes - 1)) == 0;
}

// 4 f32 (16 bytes).
WF_DEVICE void load_f32x4(const float* p, float (&v)[4]) {
  wf_f32x4 t = *(const wf_f32x4*)p;
  v[0] = t.x;
  v[1] = t.y;
  v[2] = t.z;
  v[3] = t.w;
}
WF_DEVICE void store_f32x4(float* p, const float (&v)[4]) {
  wf_f32x4 t;
  t.x = v[0];
  t.y = v[1];
  t.z = v[2];
  t.w = v[3];
  *(wf_f32x4*)p = t;
}

// Loads of 8 16-bit values (16 bytes) and stores of 4 (8 bytes), little-endian in each word.
WF_DEVICE void load_u16x8(const uint16_t* p, uint16_t (&h)[8]) {
  wf_u32x4 t = *(const wf_u32x4*)p;
  uint32_t w[4] = {t.x, t.y, t.z, t.w};
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    h[2 * k] = (uint16_t)(w[k] & 0xffffu);
    h[2 * k + 1] = (uint16_t)(w[k] >> 16);
  }
}
WF_DEVICE void store_u16x4(uint16_t* p, const uint16_t (&h)[4]) {
  wf_u32x2 t;
  t.x = (uint32_t)h[0] | ((uint32_t)h[1] << 16);
  t.y = (uint32_t)h[2] | ((uint32_t)h[3] << 16);
  *(wf_u32x2*)p = t;
}

// Codec-generic vectors. Vec16<C>::n elements of C's storage fill 16 bytes (4 f32, 8 f16/bf16).
template <class C>
struct Vec16 {
  enum { n = 16 / (int)sizeof(typename C::storage) };
};

// load16<C>(p, v): one 16-byte load of Vec16<C>::n elements, converted to f32.
template <class C>
WF_DEVICE void load16(const float* p, float (&v)[4]) {
  load_f32x4(p, v);
}
template <class C>
WF_DEVICE void load16(const uint16_t* p, float (&v)[8]) {
  uint16_t h[8];
  load_u16x8(p, h);
#pragma unroll
  for (int k = 0; k < 8; ++k) v[k] = C::load(h[k]);
}

// store4<C>(p, v): 4 f32 values converted and written at once (16 bytes as f32, 8 as 16-bit).
template <class C>
WF_DEVICE void store4(float* p, const float (&v)[4]) {
  store_f32x4(p, v);
}
template <class C>
WF_DEVICE void store4(uint16_t* p, const float (&v)[4]) {
  uint16_t h[4];
#pragma unroll
  for (int k = 0; k < 4; ++k) h[k] = C::store(v[k]);
  store_u16x4(p, h);
}

// The block's dynamic shared memory (the launch's shared_bytes), 16-byte aligned (declared
// as 16-byte vectors), viewed as 16-bit values.
WF_DEVICE uint16_t* dynamic_shared_u16() {
#if defined(WF_HOST)
  extern wf_u32x4 wf_dynamic_shared[];  // the host test's array
#else
  extern WF_SHARED wf_u32x4 wf_dynamic_shared[];
#endif
  return (uint16_t*)wf_dynamic_shared;
}

// The RMSNorm's scale 1/sqrt(mean(x²) + eps) of x (k values), as rms_norm.hip's pass 1
// computes it with BLOCK = RMS_NORM_BLOCK threads: thread t sums x² over the float4 vectors t,
// t + BLOCK, … (vec4: x on 16 bytes), then the scalar tail (or, not vec4, over the elements t,
// t + BLOCK, …); block_sum; every thread gets the scale. The GEMV kernels' fused norm prologues
// call it, so a fused product sees exactly rms_norm's scale.
// rms_sum_squares: thread t's sum, continuing ss over the float4 vectors t + from·BLOCK, … (a
// caller that summed the first `from` of them from registers, gemv.hip's Kept) and the tail;
// rms_scale_of: the scale from every thread's sum.
template <int BLOCK>
WF_DEVICE float rms_sum_squares(const float* x, int k, bool vec4, int from, float ss) {
  const int t = thread_index();
  const int n_vec = vec4 ? k / 4 : 0;
  for (int i = t + from * BLOCK; i < n_vec; i += BLOCK) {
    float v[4];
    load_f32x4(x + 4 * i, v);
#pragma unroll
    for (int j = 0; j < 4; ++j) ss += v[j] * v[j];
  }
  for (int i = 4 * n_vec + t; i < k; i += BLOCK) {
    const float v = x[i];
    ss += v * v;
  }
  return ss;
}

template <int BLOCK>
WF_DEVICE float rms_scale_of(float ss, int k, float eps) {
  ss = block_sum<BLOCK>(ss);
  return 1.0f / wf_sqrtf(ss / (float)k + eps);
}

template <int BLOCK>
WF_DEVICE float rms_scale(const float* x, int k, float eps, bool vec4) {
  return rms_scale_of<BLOCK>(rms_sum_squares<BLOCK>(x, k, vec4, 0, 0.0f), k, eps);
}

// A thread's first KEEP float4 vectors t, t + BLOCK, … (those below n_vec) of a K-vector on 16
// bytes, held in registers (rms_sum_squares' partition): a GEMV prologue's x between the norm's
// sum of squares and the staging (one read, where rms_scale and the staging each read it), and
// its norm weights loaded before the dependency wait (a weight, not the earlier kernels' output:
// its latency off the prologue's chain). K ≤ 4·BLOCK·KEEP is held whole.
template <int BLOCK, int KEEP>
struct KeptVecs {
  float v[KEEP][4];

  WF_DEVICE void load(const float* p, int n_vec) {
    const int t = thread_index();
#pragma unroll
    for (int j = 0; j < KEEP; ++j) {
      const int i = t + j * BLOCK;
      if (i < n_vec) load_f32x4(p + 4 * i, v[j]);
    }
  }
};

// rms_scale<BLOCK> over x on 16 bytes whose first vectors are xk: the same partition, order and
// expression, so the same bits.
template <int BLOCK, int KEEP>
WF_DEVICE float rms_scale_kept(const float* x, const KeptVecs<BLOCK, KEEP>& xk, int k, float eps) {
  const int t = thread_index();
  float ss = 0.0f;
#pragma unroll
  for (int j = 0; j < KEEP; ++j) {
    if (t + j * BLOCK < k / 4) {
#pragma unroll
      for (int e = 0; e < 4; ++e) ss += xk.v[j][e] * xk.v[j][e];
    }
  }
  return rms_scale_of<BLOCK>(rms_sum_squares<BLOCK>(x, k, true, KEEP, ss), k, eps);
}

// N f32 values (N a multiple of 4) as N/4 16-byte stores.
template <int N>
WF_DEVICE void store_f32s(float* p, const float (&v)[N]) {
#pragma unroll
  for (int k = 0; k < N; k += 4) {
    float t[4] = {v[k], v[k + 1], v[k + 2], v[k + 3]};
    store_f32x4(p + k, t);
  }
}

// The matrix-instruction attention kernels' softmax helpers (flash_attention.hip, the decode
// attention's matrix form): scores in log2 units (q carries scale · log2 e).
constexpr float FA_LOG2E = 1.4426950408889634f;

// 2^x, approximate (≤ 2 ulp): the softmax weights (rounded to 16 bits after) need no more.
WF_DEVICE float fa_exp2(float x) {
#if defined(WF_HIP) && __has_builtin(__builtin_amdgcn_exp2f)
  return __builtin_amdgcn_exp2f(x);
#elif defined(WF_HIP)
  return __builtin_exp2f(x);  // older clang (HIP 5.x hipRTC): llvm.exp2, v_exp_f32 with range scaling
#elif defined(WF_CUDA)
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
#else
  return __builtin_exp2f(x);  // a host test that compiles the device section
#endif
}

// Gemma 2's soft-cap of a score in log2 units, x = s·log2 e: c' · tanh(x / c') with c' = c·log2 e
// and k = −2 / c (the host's): tanh |t| = (1 − e) / (1 + e), e = 2^(k·|x|) = e^(−2|s| / c) from
// the approximate fa_exp2 (its argument one rounding off: e within ~3u relative), so ≤ 8u·c'
// absolute, 8u·c in natural units (conformance: the attention cases' cap term); the same
// function as wf_softcap above, with the matrix path's cheaper exponential.
WF_DEVICE float fa_softcap(float x, float cap, float k) {
  const float a = x < 0.0f ? -x : x;
  const float e = fa_exp2(k * a);
  const float th = (1.0f - e) / (1.0f + e);
  return (x < 0.0f ? -th : th) * cap;
}

// The reference a row's weights are taken against: its running max m, or 0 while m = −inf
// (no key of the row seen yet: every weight is 0, and −inf − −inf would be NaN).
WF_DEVICE float fa_ref(float m) { return m == -wf_inf() ? 0.0f : m; }

// ---------------------------------------------------------------------------------------------
// Wave matrix multiply-accumulate: one abstraction over the vendors' matrix instructions (the
// prefill attention's tiles). A wave computes C (16×16, f32) += A (16×16) · B (16×16), A and B
// 16-bit values of one codec C16 (F16 or BF16), f32 accumulation.
//   A: a fragment of registers, MMA_A_N 16-bit values a lane; value i of lane l is
//      A[mma_a_row(l)][mma_a_k(l, i)] (built by mma_a_pack from f32 values, rounded to C16);
//   B: read from shared memory by mma_b_nk (B[k][n] = p[n·ld + k]: a tile of keys × dims read
//      as Kᵀ) or mma_b_kn (B[k][n] = p[k·ld + n]: a tile of keys × dims read as V); p 4-byte
//      aligned, ld even;
//   C: MMA_C f32 values a lane; value e of lane l is C[mma_c_row(l, e)][mma_c_col(l, e)]. A lane
//      holds MMA_ROWS distinct rows (value e is in row slot mma_c_slot(e)); the lanes that
//      share a row differ in the bits below MMA_ROW_SPAN (mma_row_max / mma_row_sum combine
//      over them; every lane ends with the same value, combined in the same order).
//   mma_c_to_a: a C tile (e.g. softmax weights P over 16 keys) as the A operand of the next
//      product (P · V), rounded to C16; `scratch` is the wave's own 16 × MMA_SCRATCH_LD 16-bit
//      values of shared memory, used where the two layouts differ (every lane must call it).
// The implementation (WF_MMA):
//   WF_MMA_SYNC: NVIDIA sm_80+ at WAVE=32: two mma.sync.m16n8k16 (PTX ISA fragment layouts);
//     C is already A's layout (no scratch). B by 32-bit shared loads (mma_b_kn: 16-bit loads
//     paired): ldmatrix.x4 measured slower in the flash kernel on the H200 (hd 128: 104 against
//     118 TFLOP/s at 4096 rows; hd 64: 87 against 94), bench/results/2026-12-03-prefill-h200.
//   WF_MMA_MFMA: AMD CDNA2/3 (gfx90a, gfx94x, gfx950), WAVE=64: v_mfma_f32_16x16x16_f16 /
//     _bf16_1k (AMD's matrix instruction calculator layouts: A row l%16, k 4·(l/16)+i; B col
//     l%16, k 4·(l/16)+i; C row 4·(l/16)+i, col l%16).
//   WF_MMA_WMMA: AMD RDNA3 (gfx11), WAVE=32: v_wmma_f32_16x16x16_f16 / _bf16, wave32 (A row
//     l%16 and B col l%16 with all 16 k; C row 2·i + l/16, col l%16).
//   WF_MMA_FMA: everything else, the emulated WAVE=64 on NVIDIA among them: the slow twin, the
//     same products as f32 FMAs (a product of two 16-bit values is exact in f32), summed in k
//     order; B read from shared memory. Lane l holds row l / (WAVE/16) of A and C.
// The MFMA and WMMA layouts are compiled for gfx90a/gfx942/gfx1100 by ci/hip-compile-check.sh;
// only the SYNC and FMA paths have run here (NVIDIA), so ROCm conformance is their first run.
// ---------------------------------------------------------------------------------------------
#define WF_MMA_FMA 0
#define WF_MMA_SYNC 1
#define WF_MMA_MFMA 2
#define WF_MMA_WMMA 3
#if defined(WF_HOST_SIM) && defined(WF_SIM_MMA)
// ci/kernel-sim.h with its MFMA (WF_SIM_MMA = 2, WAVE=64) or WMMA (3, WAVE=32) instructions
// emulated on the host: the AMD layouts below run there, against the instructions' layouts.
#if (WF_SIM_MMA == 2 && WAVE != 64) || (WF_SIM_MMA == 3 && WAVE != 32) || \
    (WF_SIM_MMA != 2 && WF_SIM_MMA != 3)
#error "WF_SIM_MMA: 2 (MFMA) at WAVE=64 or 3 (WMMA) at WAVE=32"
#endif
#define WF_MMA WF_SIM_MMA
#elif defined(WF_CUDA) && !WF_EMULATED_WAVE && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
#define WF_MMA WF_MMA_SYNC
#elif defined(WF_HIP) && WAVE == 64 &&                                                     \
    (defined(__gfx90a__) || defined(__gfx940__) || defined(__gfx941__) || defined(__gfx942__) || \
     defined(__gfx950__))
#define WF_MMA WF_MMA_MFMA
#elif defined(WF_HIP) && WAVE == 32 &&                                                      \
    (defined(__gfx1100__) || defined(__gfx1101__) || defined(__gfx1102__) ||                 \
     defined(__gfx1103__) || defined(__gfx1150__) || defined(__gfx1151__))
#define WF_MMA WF_MMA_WMMA
#else
#define WF_MMA WF_MMA_FMA
#endif

// The wave's lanes see each other's shared-memory writes made before it (every lane calls it).
WF_DEVICE void wave_sync() {
#if defined(WF_HIP)
  __builtin_amdgcn_fence(__ATOMIC_RELEASE, "wavefront");
  __builtin_amdgcn_wave_barrier();
  __builtin_amdgcn_fence(__ATOMIC_ACQUIRE, "wavefront");
#elif WF_EMULATED_WAVE
  block_sync();  // a logical wave is two warps (block-uniform callers, as for every wave op)
#else
  __syncwarp();
#endif
}

WF_DEVICE uint32_t pack_u16x2(uint16_t lo, uint16_t hi) { return (uint32_t)lo | ((uint32_t)hi << 16); }
WF_DEVICE uint32_t lds_u32(const uint16_t* p) { return *(const uint32_t*)p; }

#if WF_MMA == WF_MMA_SYNC
enum { MMA_A_N = 8, MMA_C = 8, MMA_ROWS = 2, MMA_ROW_SPAN = 4, MMA_SCRATCH_LD = 2 };
struct MmaA { uint32_t r[4]; };
struct MmaB { uint32_t r[4]; };
// groupID g = l / 4, thread-in-group t = l % 4. A register j holds (row g + 8·(j%2),
// k 2t + 8·(j/2) + half). C of the n-half h = e / 4: (row g + 8·((e%4)/2), col 8h + 2t + e%2).
WF_DEVICE int mma_a_row(int l, int i) { return (l >> 2) + 8 * ((i >> 1) & 1); }
WF_DEVICE int mma_a_k(int l, int i) { return 2 * (l & 3) + 8 * (i >> 2) + (i & 1); }
WF_DEVICE int mma_c_row(int l, int e) { return (l >> 2) + 8 * ((e >> 1) & 1); }
WF_DEVICE int mma_c_col(int l, int e) { return 8 * (e >> 2) + 2 * (l & 3) + (e & 1); }
WF_DEVICE int mma_c_slot(int e) { return (e >> 1) & 1; }
#elif WF_MMA == WF_MMA_MFMA
enum { MMA_A_N = 4, MMA_C = 4, MMA_ROWS = 4, MMA_ROW_SPAN = 16, MMA_SCRATCH_LD = 24 };
struct MmaA { uint32_t r[2]; };
struct MmaB { uint32_t r[2]; };
WF_DEVICE int mma_a_row(int l, int i) { (void)i; return l & 15; }
WF_DEVICE int mma_a_k(int l, int i) { return 4 * (l >> 4) + i; }
WF_DEVICE int mma_c_row(int l, int e) { return 4 * (l >> 4) + e; }
WF_DEVICE int mma_c_col(int l, int e) { (void)e; return l & 15; }
WF_DEVICE int mma_c_slot(int e) { return e; }
#elif WF_MMA == WF_MMA_WMMA
enum { MMA_A_N = 16, MMA_C = 8, MMA_ROWS = 8, MMA_ROW_SPAN = 16, MMA_SCRATCH_LD = 24 };
struct MmaA { uint32_t r[8]; };
struct MmaB { uint32_t r[8]; };
WF_DEVICE int mma_a_row(int l, int i) { (void)i; return l & 15; }
WF_DEVICE int mma_a_k(int l, int i) { (void)l; return i; }
WF_DEVICE int mma_c_row(int l, int e) { return 2 * e + (l >> 4); }
WF_DEVICE int mma_c_col(int l, int e) { (void)e; return l & 15; }
WF_DEVICE int mma_c_slot(int e) { return e; }
#else
enum { MMA_LANES_PER_ROW = WAVE / 16 };
enum { MMA_A_N = 16, MMA_C = 256 / WAVE, MMA_ROWS = 1, MMA_ROW_SPAN = MMA_LANES_PER_ROW,
       MMA_SCRATCH_LD = 24 };
struct MmaA { uint32_t r[8]; };
struct MmaB { const uint16_t* p; int sk, sn, cols; };  // B[k][n] = p[k·sk + min'(n)·sn]: n, or 0 past cols
WF_DEVICE int mma_a_row(int l, int i) { (void)i; return l / MMA_LANES_PER_ROW; }
WF_DEVICE int mma_a_k(int l, int i) { (void)l; return i; }
WF_DEVICE int mma_c_row(int l, int e) { (void)e; return l / MMA_LANES_PER_ROW; }
WF_DEVICE int mma_c_col(int l, int e) { return (l % MMA_LANES_PER_ROW) * MMA_C + e; }
WF_DEVICE int mma_c_slot(int e) { (void)e; return 0; }
#endif

struct MmaC { float c[MMA_C]; };
WF_DEVICE void mma_zero(MmaC& c) {
#pragma unroll
  for (int e = 0; e < MMA_C; ++e) c.c[e] = 0.0f;
}

// A from f32 values (value i at mma_a_row/mma_a_k; never NaN), rounded to C16.
template <class C16>
WF_DEVICE MmaA mma_a_pack(const float (&v)[MMA_A_N]) {
  MmaA a;
#pragma unroll
  for (int j = 0; j < MMA_A_N / 2; ++j) a.r[j] = pack_u16x2(C16::store_hw(v[2 * j]), C16::store_hw(v[2 * j + 1]));
  return a;
}

WF_DEVICE MmaB mma_b_nk(const uint16_t* p, int ld) {
  const int l = wave_lane();
  MmaB b;
#if WF_MMA == WF_MMA_SYNC
  const int g = l >> 2, t = l & 3;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    b.r[2 * h] = lds_u32(p + (8 * h + g) * ld + 2 * t);
    b.r[2 * h + 1] = lds_u32(p + (8 * h + g) * ld + 2 * t + 8);
  }
#elif WF_MMA == WF_MMA_MFMA
  const uint16_t* q = p + (l & 15) * ld + 4 * (l >> 4);
  b.r[0] = lds_u32(q);
  b.r[1] = lds_u32(q + 2);
#elif WF_MMA == WF_MMA_WMMA
  const uint16_t* q = p + (l & 15) * ld;
#pragma unroll
  for (int j = 0; j < 8; ++j) b.r[j] = lds_u32(q + 2 * j);
#else
  (void)l;
  b.p = p;
  b.sk = 1;
  b.sn = ld;
  b.cols = 16;
#endif
  return b;
}

WF_DEVICE MmaB mma_b_kn(const uint16_t* p, int ld) {
  const int l = wave_lane();
  MmaB b;
#if WF_MMA == WF_MMA_SYNC
  const int g = l >> 2, t = l & 3;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const uint16_t* q = p + 2 * t * ld + 8 * h + g;
    b.r[2 * h] = pack_u16x2(q[0], q[ld]);
    b.r[2 * h + 1] = pack_u16x2(q[8 * ld], q[9 * ld]);
  }
#elif WF_MMA == WF_MMA_MFMA
  const uint16_t* q = p + 4 * (l >> 4) * ld + (l & 15);
  b.r[0] = pack_u16x2(q[0], q[ld]);
  b.r[1] = pack_u16x2(q[2 * ld], q[3 * ld]);
#elif WF_MMA == WF_MMA_WMMA
  const uint16_t* q = p + (l & 15);
#pragma unroll
  for (int j = 0; j < 8; ++j) b.r[j] = pack_u16x2(q[2 * j * ld], q[(2 * j + 1) * ld]);
#else
  (void)l;
  b.p = p;
  b.sk = ld;
  b.sn = 1;
  b.cols = 16;
#endif
  return b;
}

#if WF_MMA == WF_MMA_MFMA || WF_MMA == WF_MMA_WMMA
typedef _Float16 wf_f16x4 __attribute__((ext_vector_type(4)));
typedef short wf_i16x4 __attribute__((ext_vector_type(4)));
typedef _Float16 wf_f16x16 __attribute__((ext_vector_type(16)));
typedef short wf_i16x16 __attribute__((ext_vector_type(16)));
typedef uint32_t wf_u32x8 __attribute__((ext_vector_type(8)));
typedef float wf_f32x8 __attribute__((ext_vector_type(8)));
#endif

// c += a · b.
template <class C16>
WF_DEVICE void mma(MmaC& c, const MmaA& a, const MmaB& b) {
#if WF_MMA == WF_MMA_SYNC
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float* d = c.c + 4 * h;
    if (C16::id == BF16::id) {
      asm volatile(
          "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
          "{%8,%9}, {%0,%1,%2,%3};"
          : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
          : "r"(a.r[0]), "r"(a.r[1]), "r"(a.r[2]), "r"(a.r[3]), "r"(b.r[2 * h]), "r"(b.r[2 * h + 1]));
    } else {
      asm volatile(
          "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
          "{%8,%9}, {%0,%1,%2,%3};"
          : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
          : "r"(a.r[0]), "r"(a.r[1]), "r"(a.r[2]), "r"(a.r[3]), "r"(b.r[2 * h]), "r"(b.r[2 * h + 1]));
    }
  }
#elif WF_MMA == WF_MMA_MFMA
  wf_u32x2 ra = {a.r[0], a.r[1]}, rb = {b.r[0], b.r[1]};
  wf_f32x4 acc = {c.c[0], c.c[1], c.c[2], c.c[3]};
  if (C16::id == BF16::id) {
    acc = __builtin_amdgcn_mfma_f32_16x16x16bf16_1k(__builtin_bit_cast(wf_i16x4, ra),
                                                    __builtin_bit_cast(wf_i16x4, rb), acc, 0, 0, 0);
  } else {
    acc = __builtin_amdgcn_mfma_f32_16x16x16f16(__builtin_bit_cast(wf_f16x4, ra),
                                                __builtin_bit_cast(wf_f16x4, rb), acc, 0, 0, 0);
  }
  c.c[0] = acc.x;
  c.c[1] = acc.y;
  c.c[2] = acc.z;
  c.c[3] = acc.w;
#elif WF_MMA == WF_MMA_WMMA
  wf_u32x8 ra, rb;
  wf_f32x8 acc;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    ra[j] = a.r[j];
    rb[j] = b.r[j];
    acc[j] = c.c[j];
  }
  if (C16::id == BF16::id) {
    acc = __builtin_amdgcn_wmma_f32_16x16x16_bf16_w32(__builtin_bit_cast(wf_i16x16, ra),
                                                      __builtin_bit_cast(wf_i16x16, rb), acc);
  } else {
    acc = __builtin_amdgcn_wmma_f32_16x16x16_f16_w32(__builtin_bit_cast(wf_f16x16, ra),
                                                     __builtin_bit_cast(wf_f16x16, rb), acc);
  }
#pragma unroll
  for (int j = 0; j < 8; ++j) c.c[j] = acc[j];
#else
  const int l = wave_lane();
  float av[16];
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    av[2 * j] = C16::load_hw((uint16_t)(a.r[j] & 0xffffu));
    av[2 * j + 1] = C16::load_hw((uint16_t)(a.r[j] >> 16));
  }
#pragma unroll
  for (int e = 0; e < MMA_C; ++e) {
    const int col = mma_c_col(l, e);
    const uint16_t* q = b.p + (col < b.cols ? col : 0) * b.sn;
    float acc = c.c[e];
#pragma unroll
    for (int k = 0; k < 16; ++k) acc = wf_fmaf(av[k], C16::load_hw(q[k * b.sk]), acc);
    c.c[e] = acc;
  }
#endif
}

// Combine a per-row value over the lanes that share the row.
WF_DEVICE float mma_row_max(float v) {
#pragma unroll
  for (int m = 1; m < MMA_ROW_SPAN; m <<= 1) v = max_num(v, wave_shfl_xor(v, m));
  return v;
}
WF_DEVICE float mma_row_sum(float v) {
#pragma unroll
  for (int m = 1; m < MMA_ROW_SPAN; m <<= 1) v += wave_shfl_xor(v, m);
  return v;
}

template <class C16>
WF_DEVICE MmaA mma_c_to_a(const MmaC& c, uint16_t* scratch) {
  MmaA a;
#if WF_MMA == WF_MMA_SYNC
  (void)scratch;
#pragma unroll
  for (int j = 0; j < 4; ++j) a.r[j] = pack_u16x2(C16::store_hw(c.c[2 * j]), C16::store_hw(c.c[2 * j + 1]));
#else
  const int l = wave_lane();
  wave_sync();  // the previous call's readers are done
#pragma unroll
  for (int e = 0; e < MMA_C; ++e)
    scratch[mma_c_row(l, e) * MMA_SCRATCH_LD + mma_c_col(l, e)] = C16::store_hw(c.c[e]);
  wave_sync();
#pragma unroll
  for (int j = 0; j < MMA_A_N / 2; ++j) {
    const int i = 2 * j;  // values i, i+1: the same row, consecutive k
    a.r[j] = lds_u32(scratch + mma_a_row(l, i) * MMA_SCRATCH_LD + mma_a_k(l, i));
  }
#endif
  return a;
}

// Operands of a matrix-core GEMV (gemv.hip's gemv_mma forms): A is 16 weight rows and B's
// columns 16 input rows, both row-major with k contiguous, read in slabs of 32 k as two 16×16
// products. A dot product's terms may be summed in any order, so within a slab the fragments
// take k in the order that lets each lane read whole 16-byte vectors (both operands the same
// order: logical k of fragment f ↔ one physical k of the slab, the same map for A and B):
//   lane l reads operand rows mma_load_row(l, j) (j < MMA_LOAD_ROWS: weight rows of A, the same
//   indices as input rows of B), MMA_LOAD_VECS 16-byte vectors of each from element
//   mma_load_k(l) of the slab on;
//   SYNC: rows g, g + 8 (g = l/4), 8 elements at 8·(l%4): words 0, 1 → fragment 0, 2, 3 → 1;
//   MFMA: row l%16, 8 elements at 8·(l/16): words 0, 1 → fragment 0, 2, 3 → 1;
//   WMMA: row l%16 (both half-waves), all 32: elements 0-15 → fragment 0, 16-31 → 1;
//   FMA:  row l/(WAVE/16), all 32 (A; B is read inside mma from the row pointers).
// Rows are on 16 bytes and the slab's first element a multiple of 8.
#if WF_MMA == WF_MMA_SYNC
enum { MMA_LOAD_ROWS = 2 };
WF_DEVICE int mma_load_row(int l, int j) { return (l >> 2) + 8 * j; }
WF_DEVICE int mma_load_k(int l) { return 8 * (l & 3); }
#elif WF_MMA == WF_MMA_MFMA
enum { MMA_LOAD_ROWS = 1 };
WF_DEVICE int mma_load_row(int l, int j) { (void)j; return l & 15; }
WF_DEVICE int mma_load_k(int l) { return 8 * (l >> 4); }
#elif WF_MMA == WF_MMA_WMMA
enum { MMA_LOAD_ROWS = 1 };
WF_DEVICE int mma_load_row(int l, int j) { (void)j; return l & 15; }
WF_DEVICE int mma_load_k(int l) { (void)l; return 0; }
#else
enum { MMA_LOAD_ROWS = 1 };
WF_DEVICE int mma_load_row(int l, int j) { (void)j; return l / MMA_LANES_PER_ROW; }
WF_DEVICE int mma_load_k(int l) { (void)l; return 0; }
#endif

#if WF_MMA != WF_MMA_SYNC
// One lane's two fragments of one slab from its one operand row (F: MmaA, or MmaB where B's
// words are A's): MFMA: the 16-byte vector at p, words 0, 1 → fragment 0, words 2, 3 → 1;
// WMMA and FMA: the 32 values at p, 16 a fragment in k order.
template <class F>
WF_DEVICE void mma_row_words(const uint16_t* p, F (&f)[2]) {
#if WF_MMA == WF_MMA_MFMA
  const wf_u32x4 r = *(const wf_u32x4*)p;
  f[0].r[0] = r.x; f[0].r[1] = r.y;
  f[1].r[0] = r.z; f[1].r[1] = r.w;
#else
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const wf_u32x4 lo = *(const wf_u32x4*)(p + 16 * h), hi = *(const wf_u32x4*)(p + 16 * h + 8);
    f[h].r[0] = lo.x; f[h].r[1] = lo.y; f[h].r[2] = lo.z; f[h].r[3] = lo.w;
    f[h].r[4] = hi.x; f[h].r[5] = hi.y; f[h].r[6] = hi.z; f[h].r[7] = hi.w;
  }
#endif
}
#endif

#if WF_MMA == WF_MMA_SYNC
// The A fragments of one slab from the lane's two 16-byte vectors (rows g and g + 8).
WF_DEVICE void mma_slab_a_words(const wf_u32x4& r0, const wf_u32x4& r1, MmaA (&a)[2]) {
  a[0].r[0] = r0.x; a[0].r[1] = r1.x; a[0].r[2] = r0.y; a[0].r[3] = r1.y;
  a[1].r[0] = r0.z; a[1].r[1] = r1.z; a[1].r[2] = r0.w; a[1].r[3] = r1.w;
}
#endif

// The A fragments of one slab: p[j] points at element mma_load_k(l) of the slab in operand
// row mma_load_row(l, j).
WF_DEVICE void mma_slab_a(const uint16_t* const (&p)[MMA_LOAD_ROWS], MmaA (&a)[2]) {
#if WF_MMA == WF_MMA_SYNC
  mma_slab_a_words(*(const wf_u32x4*)p[0], *(const wf_u32x4*)p[1], a);
#else
  mma_row_words(p[0], a);
#endif
}

// Asynchronous 16-byte copies from global to shared memory (NVIDIA sm_80+, the SYNC path:
// cp.async, cached in the L2 only), tracked per thread in commit groups: a prefetch that holds
// no registers while it is in flight. A thread reads back only what it copied itself, after
// cp_async_wait, so no barrier is needed between the copy and the read.
#if WF_MMA == WF_MMA_SYNC
#define WF_CP_ASYNC 1
// A shared-memory pointer as the 32-bit shared-window address the instructions take.
WF_DEVICE uint32_t smem_addr(const void* p) {
  uint32_t a;
  asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
  return a;
}
WF_DEVICE void cp_async16(uint32_t dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst), "l"(src) : "memory");
}
WF_DEVICE void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
// Waits until at most N of this thread's commit groups are still in flight.
template <int N>
WF_DEVICE void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}
WF_DEVICE wf_u32x4 lds_u32x4(uint32_t addr) {
  wf_u32x4 v;
  asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "r"(addr)
               : "memory");
  return v;
}
#endif

// The B fragments of one slab: p[j] as for mma_slab_a, in input row mma_load_row(l, j) (the
// caller points rows at or past `cols` at row 0); `row0` is input row 0 at the slab's first
// element and `ld` the input rows' stride (the FMA twin reads B through them inside mma, its
// columns at or past `cols` from row 0: never past the rows there are).
WF_DEVICE void mma_slab_b(const uint16_t* const (&p)[MMA_LOAD_ROWS], const uint16_t* row0, i64 ld,
                          int cols, MmaB (&b)[2]) {
#if WF_MMA == WF_MMA_SYNC
  (void)row0; (void)ld; (void)cols;
  const wf_u32x4 r0 = *(const wf_u32x4*)p[0], r1 = *(const wf_u32x4*)p[1];
  b[0].r[0] = r0.x; b[0].r[1] = r0.y; b[0].r[2] = r1.x; b[0].r[3] = r1.y;
  b[1].r[0] = r0.z; b[1].r[1] = r0.w; b[1].r[2] = r1.z; b[1].r[3] = r1.w;
#elif WF_MMA == WF_MMA_MFMA || WF_MMA == WF_MMA_WMMA
  (void)row0; (void)ld; (void)cols;
  mma_row_words(p[0], b);
#else
  (void)p;
#pragma unroll
  for (int f = 0; f < 2; ++f) {
    b[f].p = row0 + 16 * f;
    b[f].sk = 1;
    b[f].sn = (int)ld;
    b[f].cols = cols;
  }
#endif
}
#endif  // !WF_HOST || WF_HOST_DEVICE_SHIMS

#endif  // WAVEFRONT_KERNELS_COMMON_H
