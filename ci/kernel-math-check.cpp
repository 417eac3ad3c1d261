// Host self-test of the pure arithmetic in kernels/common.h (the same source the GPUs compile,
// built here with WF_HOST_TEST): the 16-bit conversions and wf_sincosf.
//
// Oracles, independent of common.h:
//   * f16: the x86 F16C instructions (vcvtph2ps / vcvtps2ph, IEEE round to nearest even);
//   * bf16: f32 → bf16 by exact rounding in double arithmetic, bf16 → f32 by definition;
//   * sin/cos: glibc's double-precision sin/cos of the same f32 angle, and the error of the
//     f32 result measured in f32 ulps of that value.
//
// Usage: kernel-math-check [--exhaustive]
//   default: every f16 input, every f32 bit pattern with a stride plus all the boundary
//   neighbourhoods (seconds); --exhaustive: all 2^32 f32 inputs (minutes).
// Exit status 0 iff every check passed. Prints "N passed, M failed".
//
// Build: c++ -O2 -mf16c -DWAVE=32 -DWF_HOST_TEST -I kernels ci/kernel-math-check.cpp -lm

#include <immintrin.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common.h"

static int g_pass = 0, g_fail = 0;

static void check(bool ok, const char* what) {
  if (ok) {
    ++g_pass;
  } else {
    ++g_fail;
    if (g_fail <= 20) printf("FAIL: %s\n", what);
  }
}

static float from_bits(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static uint32_t to_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

// --- f16 ---------------------------------------------------------------------------------

static bool check_f16_to_f32_all() {
  int bad = 0;
  for (uint32_t h = 0; h < 65536; ++h) {
    float want = _cvtsh_ss((unsigned short)h);
    float got = f16_to_f32((uint16_t)h);
    if (to_bits(want) != to_bits(got)) {
      if (++bad <= 5) printf("  f16 %04x: got %08x want %08x\n", h, to_bits(got), to_bits(want));
    }
  }
  return bad == 0;
}

// f32 → f16 for the bit patterns [lo, hi) with a stride; returns mismatches.
static long f32_to_f16_range(uint64_t lo, uint64_t hi, uint64_t stride) {
  long bad = 0;
  for (uint64_t u = lo; u < hi; u += stride) {
    float f = from_bits((uint32_t)u);
    uint16_t want = (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
    uint16_t got = f32_to_f16(f);
    bool ok = want == got;
    if (isnan(f)) {
      // F16C also keeps the payload's top bits and sets the quiet bit: require the same.
      ok = (got & 0x7c00) == 0x7c00 && (got & 0x3ff) != 0 && want == got;
    }
    if (!ok && ++bad <= 5) printf("  f32 %08x: f16 got %04x want %04x\n", (uint32_t)u, got, want);
  }
  return bad;
}

// --- bf16 --------------------------------------------------------------------------------

// Round to nearest even, computed in double from the value's neighbours: independent of the
// integer trick in common.h.
static uint16_t bf16_oracle(float f) {
  uint32_t u = to_bits(f);
  if (isnan(f)) return (uint16_t)((u >> 16) | 0x40);
  if (isinf(f)) return (uint16_t)(u >> 16);
  uint16_t down = (uint16_t)(u >> 16);  // truncation toward zero
  uint16_t up = (uint16_t)(down + 1);   // next away from zero (may become inf)
  double x = fabs((double)f);
  double d = fabs((double)from_bits((uint32_t)down << 16));
  // Above the largest finite bf16 the next value is 2^128 as if the exponent were unbounded
  // (IEEE: round as if unbounded, then overflow to inf).
  double t = (up & 0x7fff) == 0x7f80 ? ldexp(1.0, 128) : fabs((double)from_bits((uint32_t)up << 16));
  if (x - d < t - x) return down;
  if (x - d > t - x) return up;
  return (down & 1) ? up : down;
}

static long f32_to_bf16_range(uint64_t lo, uint64_t hi, uint64_t stride) {
  long bad = 0;
  for (uint64_t u = lo; u < hi; u += stride) {
    float f = from_bits((uint32_t)u);
    uint16_t want = bf16_oracle(f);
    uint16_t got = f32_to_bf16(f);
    if (want != got && ++bad <= 5)
      printf("  f32 %08x: bf16 got %04x want %04x\n", (uint32_t)u, got, want);
  }
  return bad;
}

static bool check_bf16_to_f32_all() {
  for (uint32_t h = 0; h < 65536; ++h) {
    if (to_bits(bf16_to_f32((uint16_t)h)) != h << 16) return false;
  }
  return true;
}

// --- sin / cos ---------------------------------------------------------------------------

// Error of the f32 `got` against the exact `want`, in f32 ulps at |want|.
static double ulp_error(float got, double want) {
  double aw = fabs(want);
  int e;
  frexp(aw, &e);  // aw = m · 2^e, m in [0.5, 1)
  double ulp = ldexp(1.0, e - 24);
  if (ulp < ldexp(1.0, -149)) ulp = ldexp(1.0, -149);
  return fabs((double)got - want) / ulp;
}

struct TrigStats {
  double max_ulp = 0;
  uint32_t worst = 0;
  long over = 0;  // results above the bound
  long count = 0;
};

static void trig_range(uint64_t lo, uint64_t hi, uint64_t stride, double bound, TrigStats* st) {
  for (uint64_t u = lo; u < hi; u += stride) {
    float a = from_bits((uint32_t)u);
    float s, c;
    wf_sincosf(a, &s, &c);
    double es = ulp_error(s, sin((double)a));
    double ec = ulp_error(c, cos((double)a));
    double e = es > ec ? es : ec;
    ++st->count;
    if (e > st->max_ulp) {
      st->max_ulp = e;
      st->worst = (uint32_t)u;
    }
    if (e > bound) ++st->over;
  }
}

int main(int argc, char** argv) {
  bool exhaustive = argc > 1 && strcmp(argv[1], "--exhaustive") == 0;
  const uint64_t all = 1ull << 32;
  char msg[256];

  check(check_f16_to_f32_all(), "f16_to_f32 matches vcvtph2ps on all 65536 inputs");
  check(check_bf16_to_f32_all(), "bf16_to_f32 is bits << 16 on all 65536 inputs");

  // f32 → 16-bit: a stride over everything, then dense windows around every boundary.
  uint64_t stride = exhaustive ? 1 : 127;
  long bad = f32_to_f16_range(0, all, stride);
  snprintf(msg, sizeof msg, "f32_to_f16 stride %llu: %ld mismatches", (unsigned long long)stride, bad);
  check(bad == 0, msg);
  bad = f32_to_bf16_range(0, all, stride);
  snprintf(msg, sizeof msg, "f32_to_bf16 stride %llu: %ld mismatches", (unsigned long long)stride, bad);
  check(bad == 0, msg);
  // f16: subnormal/normal boundary 2^-14, underflow 2^-25, overflow 65504..65520, inf, NaN;
  // bf16: ties at the top of the range. Both signs.
  const uint32_t edges[] = {0x00000000u, 0x33000000u, 0x33800000u, 0x387fc000u, 0x38800000u,
                            0x477fe000u, 0x477ff000u, 0x7f7f0000u, 0x7f7fffffu, 0x7f800000u,
                            0x7fc00000u};
  const uint32_t signs[] = {0u, 0x80000000u};
  for (uint32_t sign : signs) {
    for (uint32_t e : edges) {
      // a window of 2^18 patterns around e (within the same sign)
      uint64_t lo = sign + (e > 0x20000 ? e - 0x20000 : 0);
      uint64_t hi = lo + 0x40000 < sign + 0x80000000ull ? lo + 0x40000 : sign + 0x80000000ull;
      long b16 = f32_to_f16_range(lo, hi, 1), bb = f32_to_bf16_range(lo, hi, 1);
      snprintf(msg, sizeof msg, "16-bit conversions near %08x: %ld f16 and %ld bf16 mismatches",
               e | sign, b16, bb);
      check(b16 == 0 && bb == 0, msg);
    }
  }

  // sin/cos. The bound: 1 ulp against the exact value (the reference's f32 sin is within
  // 1 ulp too, so the two agree to about 2 ulps).
  const double bound = 0.5001;
  TrigStats st;
  uint64_t tstride = exhaustive ? 1 : 97;
  // every finite positive and negative f32, with a stride
  trig_range(0, 0x7f800000u, tstride, bound, &st);
  trig_range(0x80000000u, 0xff800000u, tstride, bound, &st);
  // dense: the RoPE range, positions up to 2^20 times inv_freq ≤ 1, near the path switches
  trig_range(to_bits(0.78f), to_bits(0.79f), 1, bound, &st);
  trig_range(to_bits(105000.0f), to_bits(106000.0f), 1, bound, &st);
  trig_range(to_bits(1.0f), to_bits(1048576.0f), exhaustive ? 1 : 7, bound, &st);
  snprintf(msg, sizeof msg,
           "wf_sincosf on %ld angles: max error %.3f ulp at %08x (%.9g), %ld above %.1f ulp",
           st.count, st.max_ulp, st.worst, from_bits(st.worst), st.over, bound);
  printf("%s\n", msg);
  check(st.over == 0, msg);
  // non-finite → NaN, signed zero kept
  float s, c;
  wf_sincosf(from_bits(0x7f800000u), &s, &c);
  check(isnan(s) && isnan(c), "sincos(inf) is NaN");
  wf_sincosf(from_bits(0x7fc00000u), &s, &c);
  check(isnan(s) && isnan(c), "sincos(NaN) is NaN");
  wf_sincosf(-0.0f, &s, &c);
  check(to_bits(s) == 0x80000000u && c == 1.0f, "sincos(-0) = (-0, 1)");

  printf("%d passed, %d failed\n", g_pass, g_fail);
  return g_fail == 0 ? 0 : 1;
}
