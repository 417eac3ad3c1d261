// kernels/flash_attention.hip's prefill attention run whole on the host (ci/kernel-sim.h: every
// thread of a block a fiber, real barriers and wave shuffles at WAVE lanes), its matrix
// products on common.h's FMA twin (the path of the emulated WAVE=64 on NVIDIA), at the launch
// ops/attention.rs makes (grid (n_kv_heads, row tiles of 16 · waves / split flattened (row,
// head-in-group) indices), 256 threads), for f16, bf16 and q8_0 KV at head dims 64, 128 and
// 256 (the pair of waves a row tile), GQA 1, 3, 4 and 8. The arena holds the prompt's keys and
// values at positions < pos0 + rows (from a window's first key) and NaN everywhere else.
// Checked, per entry point and shape:
//   1. the output against causal attention in double over the arena, within a bound derived
//      from the kernel's roundings (q and the softmax weights to the matrix type M; q8_0's K
//      and V to f16; f32 dot products, max and sums), finite past the NaN slots;
//   2. the same bits with the threads run in reverse order between barriers;
//   3. chunked prefill: the rows computed in chunks of 7 (and of 1: decode rows) over the same
//      arena give every row the bits of the whole launch (each row's keys go through the same
//      tiles in the same order whatever the block's other rows).
//
// Built with -DWF_SIM_MMA=2 (WAVE=64) or 3 (WAVE=32) the matrix products take common.h's MFMA
// or WMMA layouts, the instructions emulated by ci/kernel-sim.h.
//
// Usage: kernel-sim-flash-check   Exit status 0 iff every check passed.
// Build: c++ -O2 -std=c++17 -Wno-unknown-pragmas -DWAVE=32 -I kernels -I ci \
//          ci/kernel-sim-flash-check.cpp   (and -DWAVE=64)

#include "kernel-sim.h"

#include "flash_attention.hip"

#include "kernel-sim-util.h"

#include <algorithm>

typedef void (*Flash)(const float*, const void*, float*, int, int, int, int, int, int, int, float,
                      int, float, float);

struct Entry {
  const char* name;
  Flash f;
  int kv;  // 1 f16, 2 bf16, 3 q8_0
  int hd;  // the entry point's HD
  int split;
};

struct Shape {
  int n_heads, n_kv, hd, pos0, rows, window;
  float softcap;
};

static std::vector<float> run(const Entry& e, const Shape& s, const std::vector<uint8_t>& arena,
                              int capacity, const float* q, int pos0, int rows, bool reverse) {
  const int tile = 16 * FA_WAVES / e.split;
  const int flat = rows * (s.n_heads / s.n_kv);
  const float log2e = 1.4426950408889634f;
  const float scale = 1.0f / sqrtf((float)s.hd);
  Guarded out((size_t)rows * s.n_heads * s.hd);
  const bool ok = sim::launch(WfDim{(unsigned)s.n_kv, (unsigned)((flat + tile - 1) / tile), 1},
                              FA_BLOCK, [&] {
    e.f(q, arena.data(), out.p(), 0, pos0, rows, s.n_heads, s.n_kv, s.hd, capacity, scale,
        s.window, s.softcap > 0.0f ? s.softcap * log2e : 0.0f,
        s.softcap > 0.0f ? -2.0f / s.softcap : 0.0f);
  }, reverse);
  launched(ok, {&out}, e.name);
  return std::vector<float>(out.p(), out.p() + (size_t)rows * s.n_heads * s.hd);
}

static void check_entry(const Entry& e, const Shape& s) {
  if (s.hd > e.hd || (e.hd > 64 && s.hd <= e.hd / 2) || (e.kv == 3 && s.hd % 32 != 0)) return;
  const int end = s.pos0 + s.rows, capacity = end + 9, G = s.n_heads / s.n_kv;
  const int first_key = s.window > 0 && s.pos0 + 1 - s.window > 0 ? s.pos0 + 1 - s.window : 0;
  const std::string tag = std::string(e.name) + " heads " + std::to_string(s.n_heads) + "/" +
                          std::to_string(s.n_kv) + " hd " + std::to_string(s.hd) + " rows " +
                          std::to_string(s.rows) + " from " + std::to_string(s.pos0) +
                          (s.window ? " window " + std::to_string(s.window) : "") +
                          (s.softcap > 0.0f ? " softcap" : "");
  const std::vector<uint8_t> arena =
      make_arena(e.kv, s.n_kv, s.hd, capacity, end, first_key, 51 + s.rows);
  const std::vector<float> q = seeded(s.rows * s.n_heads * s.hd, 52, -1.0f, 1.0f);
  const std::vector<float> out = run(e, s, arena, capacity, q.data(), s.pos0, s.rows, false);
  // 1. against double
  {
    const double u = ldexp(1.0, -24);
    const double um = e.kv == 2 ? ldexp(1.0, -8) : ldexp(1.0, -11);  // M's half ulp
    const double scale = 1.0 / sqrt((double)s.hd);
    double worst = 0.0;
    bool finite = true;
    for (int i = 0; i < s.rows; ++i) {
      const int p = s.pos0 + i;
      const int a = s.window > 0 && p + 1 - s.window > 0 ? p + 1 - s.window : 0;
      for (int h = 0; h < s.n_heads; ++h) {
        const int kvh = h / G;
        const float* qh = q.data() + ((size_t)i * s.n_heads + h) * s.hd;
        std::vector<double> qd(qh, qh + s.hd), want(s.hd);
        double mag, vmax;
        attend_double(e.kv, arena, s.n_kv, kvh, capacity, s.hd, qd.data(), a, p, scale, s.softcap,
                      want.data(), mag, vmax);
        // q (and q8_0's K) rounded to M, the f32 products and sums (hd + 12 roundings)
        const double dmax = ((e.kv == 3 ? 2.0 : 1.0) * um + (s.hd + 12) * u) * mag +
                            (s.softcap > 0.0f ? 8.0 * u * s.softcap : 0.0);
        for (int d = 0; d < s.hd; ++d) {
          const float got = out[((size_t)i * s.n_heads + h) * s.hd + d];
          finite &= std::isfinite(got);
          // Σ|p̂ − p| ≤ 2·(2·dmax + P rounded to M (and q8_0's V) + exp and sums' roundings)
          const double tol =
              2.0 * (2.0 * dmax + (e.kv == 3 ? 4.0 : 2.0) * um + (p - a + 1) / 8.0 * u + 64.0 * u) *
              std::max(vmax, 1e-30);
          const double err = fabs(got - want[d]);
          const double ratio = err == 0.0 ? 0.0 : err / tol;
          if (!(ratio <= worst)) worst = ratio;
        }
      }
    }
    check(finite && worst <= 1.0, tag + ": out within its bound of causal attention in double "
                                        "(worst " + fmt(worst) + " of it), finite past the NaN slots");
  }
  // 2. thread order
  {
    const std::vector<float> rev = run(e, s, arena, capacity, q.data(), s.pos0, s.rows, true);
    check(same_bits(out, rev, out.size()), tag + ": the same bits in reverse thread order");
  }
  // 3. chunks of 7 and of 1
  for (const int chunk : {7, 1}) {
    if (chunk >= s.rows) continue;
    std::vector<float> got;
    for (int r0 = 0; r0 < s.rows; r0 += chunk) {
      const int n = std::min(chunk, s.rows - r0);
      const std::vector<float> part =
          run(e, s, arena, capacity, q.data() + (size_t)r0 * s.n_heads * s.hd, s.pos0 + r0, n, false);
      got.insert(got.end(), part.begin(), part.end());
    }
    check(same_bits(out, got, out.size()),
          tag + ": in chunks of " + std::to_string(chunk) + " rows the whole launch's bits");
  }
}

int main() {
  printf("kernel-sim-flash-check: WAVE=%d\n", WAVE);
  const Entry entries[] = {
      {"flash_attention_64_f16", (Flash)flash_attention_64_f16, 1, 64, FaTile<64>::SPLIT},
      {"flash_attention_64_bf16", (Flash)flash_attention_64_bf16, 2, 64, FaTile<64>::SPLIT},
      {"flash_attention_64_q8_0", (Flash)flash_attention_64_q8_0, 3, 64, FaTile<64>::SPLIT},
      {"flash_attention_128_bf16", (Flash)flash_attention_128_bf16, 2, 128, FaTile<128>::SPLIT},
      {"flash_attention_128_q8_0", (Flash)flash_attention_128_q8_0, 3, 128, FaTile<128>::SPLIT},
      {"flash_attention_256_f16", (Flash)flash_attention_256_f16, 1, 256, FaTile<256>::SPLIT},
  };
  const Shape shapes[] = {
      {4, 1, 64, 0, 40, 0, 0.0f},   {12, 4, 64, 5, 37, 0, 0.0f},   {8, 1, 48, 0, 21, 0, 0.0f},
      {6, 2, 64, 30, 50, 16, 0.0f}, {8, 2, 64, 0, 33, 0, 30.0f},   {8, 1, 128, 3, 19, 0, 0.0f},
      {4, 4, 96, 0, 20, 0, 0.0f},   {4, 1, 256, 0, 18, 0, 0.0f},   {2, 2, 160, 10, 9, 0, 0.0f},
  };
  for (const Entry& e : entries)
    for (const Shape& s : shapes) check_entry(e, s);
  return finish();
}
