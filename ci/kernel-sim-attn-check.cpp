// kernels/decode_attention.hip's decode attention (RoPE and the KV write fused in, split over
// the keys) run whole on the host (ci/kernel-sim.h: every thread of a block a fiber, real
// barriers and wave shuffles at WAVE lanes; blocks one after another, so the last block of a
// slab combines the splits as on a device), at the launches ops/decode_attention.rs makes:
// the vector kernel (decode_attention_{f16,bf16,q8_0}, 256 threads, 4 query heads a block
// column) and the matrix-instruction one (decode_attention_mma_{64,128}_{f16,bf16}, 4 waves,
// 16 query heads; here its FMA twin, the path of the emulated WAVE=64 on NVIDIA), over a
// (columns, splits) grid. The arena holds random keys and values before the position and NaN
// after it and before a window's first key (a read of an unused slot shows in the output).
// Checked, per kernel, KV type and shape (GQA 1, 4, 8; head dims 64, 80, 128; lengths 1, 3,
// 113, 1100 (two sub-chunks); one and several splits; a window; a soft-cap):
//   1. the output against attention in double over the arena's keys (the new key: the kernel's
//      write, itself checked against rope(k) rounded to the KV type), within a bound derived
//      from the f32 dot products (and, for the matrix form, q and the softmax weights rounded
//      to the KV type), and finite despite the NaN slots;
//   2. the KV write: position p holds rope(k) and v rounded to the KV type (within one rounding
//      of the f32 rotation), and every other byte of the arena is unchanged;
//   3. the same bits with the threads run in reverse order between barriers, and with the
//      position read from a step block instead of the argument;
//   4. a verification's rows (decode_attention_rows_*: a DA_KV_ONLY launch of rows p, p+1, p+2,
//      then DA_ATTEND_ONLY) give each row the bits of its decode step (one-row launches in
//      order), outputs and arena.
//
// Built with -DWF_SIM_MMA=2 (WAVE=64) or 3 (WAVE=32) the matrix products take common.h's MFMA
// or WMMA layouts, the instructions emulated by ci/kernel-sim.h.
//
// Usage: kernel-sim-attn-check   Exit status 0 iff every check passed.
// Build: c++ -O2 -std=c++17 -Wno-unknown-pragmas -DWAVE=32 -I kernels -I ci \
//          ci/kernel-sim-attn-check.cpp   (and -DWAVE=64)

#include "kernel-sim.h"

#include "decode_attention.hip"

#include "kernel-sim-util.h"

#include <algorithm>

typedef void (*OneRow)(const float*, const float*, const float*, const float*, void*, float*,
                       float*, int*, int, int, int, int, int, int, int, float, const int*, int,
                       float);
typedef void (*Rows)(const float*, const float*, const float*, const float*, float*, float*, int*,
                     int, int, int, int, int, int, int, float, int, float, int, DaRows);

struct Kernel {
  std::string name;
  OneRow one;
  Rows rows;
  int kv;     // 1 f16, 2 bf16, 3 q8_0 (the codec id)
  int hd;     // 0: any (vector kernel), else the matrix form's head dim
  int group;  // query heads a block column
  int threads;
  int min_keys;
  size_t shared;  // dynamic shared memory
};

struct Shape {
  int n_heads, n_kv, hd, len, s_max, window;
  float softcap;
};

// Attention of one query row in double over the arena's keys and values (position p included:
// the kernel's write), q rotated here; returns out (n_heads, hd) and, per head, the bound.
static void oracle(const Kernel& k, const Shape& s, const std::vector<uint8_t>& arena, int capacity,
                   int p, int first, const std::vector<float>& q, const std::vector<float>& inv_freq,
                   float scale, std::vector<double>& out, std::vector<double>& tol) {
  const int G = s.n_heads / s.n_kv, half = s.hd / 2;
  const double u = ldexp(1.0, -24);
  const double ut = k.hd == 0 ? 0.0 : (k.kv == 1 ? ldexp(1.0, -11) : ldexp(1.0, -8));
  out.assign((size_t)s.n_heads * s.hd, 0.0);
  tol.assign(s.n_heads, 0.0);
  for (int h = 0; h < s.n_heads; ++h) {
    const int kvh = h / G;
    std::vector<double> qr(s.hd);
    for (int d = 0; d < half; ++d) {
      const float ang = (float)p * inv_freq[d];
      const double c = cos((double)ang) * inv_freq[half], sn = sin((double)ang) * inv_freq[half];
      const double a = q[(size_t)h * s.hd + d], b = q[(size_t)h * s.hd + d + half];
      qr[d] = a * c - b * sn;
      qr[d + half] = b * c + a * sn;
    }
    double mag, vmax;
    attend_double(k.kv, arena, s.n_kv, kvh, capacity, s.hd, qr.data(), first, p, scale, s.softcap,
                  out.data() + (size_t)h * s.hd, mag, vmax);
    // the score's error: f32 rotation and dot product (hd + 12 roundings a term), the matrix
    // form's q rounded to the KV type; the soft-cap's tanh a few roundings of c
    const double dmax = ((s.hd + 12) * u + ut) * mag + (s.softcap > 0.0f ? 8.0 * u * s.softcap : 0.0);
    // Σ|p̂ − p| ≤ 2·(2·dmax + the exponentials' and sums' roundings (len/8 + 64)·u + the
    // matrix form's weights rounded to the KV type), times max |V|.
    const int len = p + 1 - first;
    tol[h] = 2.0 * (2.0 * dmax + (len / 8 + 64) * u + 2.0 * ut) * vmax;
  }
}

struct Run {
  std::vector<float> out;
  std::vector<uint8_t> arena;
};

// One one-row launch at position p (pos0 = p, or with `step` pos0 = −7 and the step block's
// position p).
static Run run_one(const Kernel& k, const Shape& s, std::vector<uint8_t> arena, int capacity,
                   int p, const std::vector<float>& q, const std::vector<float>& kk,
                   const std::vector<float>& v, const std::vector<float>& inv_freq, float scale,
                   bool reverse, bool step) {
  const int slabs = (s.n_heads / s.n_kv + k.group - 1) / k.group, columns = s.n_kv * slabs;
  Guarded out((size_t)s.n_heads * s.hd);
  std::vector<float> ws((size_t)s.n_heads * s.s_max * (s.hd + 2), nanf(""));
  std::vector<int> counters(columns, 0);
  const int step_block[4] = {0, p, 0, 0};
  poison_shared();
  const bool ok = sim::launch(WfDim{(unsigned)columns, (unsigned)s.s_max, 1}, k.threads, [&] {
    k.one(q.data(), kk.data(), v.data(), inv_freq.data(), arena.data(), out.p(), ws.data(),
          counters.data(), 0, step ? -7 : p, s.n_heads, s.n_kv, s.hd, capacity, s.s_max, scale,
          step ? step_block : nullptr, s.window, s.softcap);
  }, reverse);
  launched(ok, {&out}, k.name.c_str());
  bool zero = true;
  for (int c : counters) zero &= c == 0;
  if (!zero && g_launch_error.empty()) g_launch_error = k.name + " left a counter set";
  return Run{std::vector<float>(out.p(), out.p() + (size_t)s.n_heads * s.hd), arena};
}

static void check_kernel(const Kernel& k, const Shape& s) {
  if (k.hd != 0 && s.hd != k.hd) return;
  if (k.kv == 3 && s.hd % 32 != 0) return;  // a q8_0 arena's blocks are whole rows
  const int capacity = s.len + 8, p = s.len - 1;
  const int first = s.window > 0 && p + 1 - s.window > 0 ? p + 1 - s.window : 0;
  const std::string tag = k.name + " heads " + std::to_string(s.n_heads) + "/" +
                          std::to_string(s.n_kv) + " hd " + std::to_string(s.hd) + " len " +
                          std::to_string(s.len) + " splits ≤ " + std::to_string(s.s_max) +
                          (s.window ? " window " + std::to_string(s.window) : "") +
                          (s.softcap > 0.0f ? " softcap" : "");
  const std::vector<uint8_t> arena0 = make_arena(k.kv, s.n_kv, s.hd, capacity, p, first, 41 + s.len);
  const std::vector<float> q = seeded(s.n_heads * s.hd, 42, -1.0f, 1.0f);
  const std::vector<float> kk = seeded(s.n_kv * s.hd, 43, -1.0f, 1.0f);
  const std::vector<float> v = seeded(s.n_kv * s.hd, 44, -1.0f, 1.0f);
  std::vector<float> inv_freq(s.hd / 2 + 1);
  for (int i = 0; i < s.hd / 2; ++i) inv_freq[i] = (float)pow(10000.0, -2.0 * i / s.hd);
  inv_freq[s.hd / 2] = 1.0f;
  const float scale = 1.0f / sqrtf((float)s.hd);
  const Run r = run_one(k, s, arena0, capacity, p, q, kk, v, inv_freq, scale, false, false);
  // 2. the KV write
  {
    const int half = s.hd / 2;
    size_t bad = 0, moved = 0;
    for (int kvh = 0; kvh < s.n_kv; ++kvh) {
      double kmax = 0.0, vmax = 0.0;  // the row's largest magnitudes (q8_0's step: its block's / 127)
      for (int d = 0; d < s.hd; ++d) {
        kmax = std::max(kmax, (double)fabsf(kk[kvh * s.hd + d]) * 1.4143);
        vmax = std::max(vmax, (double)fabsf(v[kvh * s.hd + d]));
      }
      for (int d = 0; d < s.hd; ++d) {
        const int dd = d < half ? d : d - half;
        const float ang = (float)p * inv_freq[dd];
        const double c = cos((double)ang), sn = sin((double)ang);
        const double a = kk[kvh * s.hd + dd], b = kk[kvh * s.hd + dd + half];
        const double want_k = d < half ? a * c - b * sn : b * c + a * sn;
        const double want_v = v[kvh * s.hd + d];
        const double got_k = kv_value(k.kv, r.arena, ((int64_t)kvh * capacity + p) * s.hd + d);
        const double got_v = kv_value(k.kv, r.arena, ((int64_t)(s.n_kv + kvh) * capacity + p) * s.hd + d);
        // one rounding to the KV type after the f32 rotation's few roundings: half an ulp
        // (f16, bf16), or for q8_0 half a step d = amax / 127 of its block plus d's own f16
        // rounding over 127 steps (amax ≤ the row's: |rope(k)| ≤ √2 max |k|)
        const double ulp = k.kv == 1 ? ldexp(1.0, -11) : ldexp(1.0, -8);
        const double q8k = kmax * (1.0 / 254.0 + ldexp(1.0, -11)), q8v = vmax * (1.0 / 254.0 + ldexp(1.0, -11));
        const double tk = (k.kv == 3 ? q8k : ulp * fabs(want_k)) + 4e-7;
        const double tv = (k.kv == 3 ? q8v : ulp * fabs(want_v)) + 1e-9;
        bad += !(fabs(got_k - want_k) <= tk) || !(fabs(got_v - want_v) <= tv);
      }
    }
    // every element outside position p's rows unchanged, bit for bit (its quant and its
    // block's scale for q8_0: head_dim a multiple of 32, so a block is one row's)
    const int64_t n = 2LL * s.n_kv * capacity * s.hd;
    for (int64_t e = 0; e < n; ++e) {
      if (e / s.hd % capacity == p) continue;
      if (k.kv == 3) {
        moved += arena0[Q8::quant_byte(e)] != r.arena[Q8::quant_byte(e)] ||
                 memcmp(&arena0[Q8::scale_byte(e)], &r.arena[Q8::scale_byte(e)], 2) != 0;
      } else {
        moved += memcmp(&arena0[2 * e], &r.arena[2 * e], 2) != 0;
      }
    }
    check(bad == 0 && moved == 0, tag + ": K/V at p = rope(k), v rounded (" + std::to_string(bad) +
                                      " off), the rest of the arena unchanged (" +
                                      std::to_string(moved) + " elements moved)");
  }
  // 1. against double
  {
    std::vector<double> want, tol;
    oracle(k, s, r.arena, capacity, p, first, q, inv_freq, scale, want, tol);
    double worst = 0.0;
    bool finite = true;
    for (int h = 0; h < s.n_heads; ++h) {
      for (int d = 0; d < s.hd; ++d) {
        const float g = r.out[(size_t)h * s.hd + d];
        finite &= std::isfinite(g);
        const double e = fabs(g - want[(size_t)h * s.hd + d]);
        const double ratio = e == 0.0 ? 0.0 : e / tol[h];
        if (!(ratio <= worst)) worst = ratio;
      }
    }
    check(finite && worst <= 1.0, tag + ": out within its bound of attention in double (worst " +
                                      fmt(worst) + " of it), finite past the NaN slots");
  }
  // 3. thread order, the step block
  {
    const Run rr = run_one(k, s, arena0, capacity, p, q, kk, v, inv_freq, scale, true, false);
    const Run rs = run_one(k, s, arena0, capacity, p, q, kk, v, inv_freq, scale, false, true);
    check(same_bits(r.out, rr.out, r.out.size()) && rr.arena == r.arena &&
              same_bits(r.out, rs.out, r.out.size()) && rs.arena == r.arena,
          tag + ": the same bits in reverse thread order and with the step block's position");
  }
  // 4. a verification's rows against the decode steps
  if (k.rows && s.len >= 3 && s.window == 0) {
    const int p0 = p - 2, nr = 3;
    const std::vector<uint8_t> base = make_arena(k.kv, s.n_kv, s.hd, capacity, p0, 0, 41 + s.len);
    std::vector<float> qs = seeded(nr * s.n_heads * s.hd, 45, -1.0f, 1.0f);
    std::vector<float> ks = seeded(nr * s.n_kv * s.hd, 46, -1.0f, 1.0f);
    std::vector<float> vs = seeded(nr * s.n_kv * s.hd, 47, -1.0f, 1.0f);
    // the decode steps
    std::vector<uint8_t> a = base;
    std::vector<float> step_out;
    for (int z = 0; z < nr; ++z) {
      auto sl = [&](const std::vector<float>& t, int n) {
        return std::vector<float>(t.begin() + (size_t)z * n, t.begin() + (size_t)(z + 1) * n);
      };
      Run rz = run_one(k, s, a, capacity, p0 + z, sl(qs, s.n_heads * s.hd), sl(ks, s.n_kv * s.hd),
                       sl(vs, s.n_kv * s.hd), inv_freq, scale, false, false);
      a = rz.arena;
      step_out.insert(step_out.end(), rz.out.begin(), rz.out.end());
    }
    // the rows: K/V of every row, then every row attends
    std::vector<uint8_t> b = base;
    const int slabs = (s.n_heads / s.n_kv + k.group - 1) / k.group, columns = s.n_kv * slabs;
    Guarded out((size_t)nr * s.n_heads * s.hd);
    std::vector<float> ws((size_t)nr * s.n_heads * s.s_max * (s.hd + 2), nanf(""));
    std::vector<int> counters((size_t)nr * columns, 0);
    DaRows rows{};
    for (int z = 0; z < nr; ++z) rows.arena[z] = (unsigned long long)(uintptr_t)b.data();
    for (const int mode : {DA_KV_ONLY, DA_ATTEND_ONLY}) {
      const int sm = mode == DA_KV_ONLY ? 1 : s.s_max;
      poison_shared();
      const bool ok = sim::launch(WfDim{(unsigned)columns, (unsigned)sm, (unsigned)nr}, k.threads, [&] {
        k.rows(qs.data(), ks.data(), vs.data(), inv_freq.data(), out.p(), ws.data(),
               counters.data(), 0, p0, s.n_heads, s.n_kv, s.hd, capacity, sm, scale, s.window,
               s.softcap, mode, rows);
      }, false);
      launched(ok, {&out}, (k.name + " rows").c_str());
    }
    check(same_bits(step_out, std::vector<float>(out.p(), out.p() + step_out.size()),
                    step_out.size()) && a == b,
          tag + ": a verification's 3 rows (K/V first, then attend) give the decode steps' bits, "
                "outputs and arena");
  }
}

int main() {
  printf("kernel-sim-attn-check: WAVE=%d\n", WAVE);
  const size_t mma_shared = [] {
    size_t best = 0;
    for (int hd : {64, 128}) {
      const size_t tiles = (size_t)DM_WAVES * 1 * 2 * DM_TILE * (hd + DM_PAD) * 2;
      const size_t merge = (size_t)DM_WAVES * DM_GROUP * (hd + 2) * 4;
      const size_t combine = 2 * DM_GROUP * DA_MAX_SPLITS * 4;
      best = std::max({best, tiles, merge, combine});
    }
    return best;
  }();
  if (mma_shared > sizeof wf_dynamic_shared) {
    check(false, "the matrix form's dynamic shared memory fits the emulator's");
    return finish();
  }
  const Kernel kernels[] = {
      {"decode_attention_f16", (OneRow)decode_attention_f16, (Rows)decode_attention_rows_f16, 1, 0,
       DA_GROUP, DA_BLOCK, DA_MIN_KEYS, 0},
      {"decode_attention_bf16", (OneRow)decode_attention_bf16, (Rows)decode_attention_rows_bf16, 2,
       0, DA_GROUP, DA_BLOCK, DA_MIN_KEYS, 0},
      {"decode_attention_q8_0", (OneRow)decode_attention_q8_0, (Rows)decode_attention_rows_q8_0, 3,
       0, DA_GROUP, DA_BLOCK, DA_MIN_KEYS, 0},
      {"decode_attention_mma_64_f16", (OneRow)decode_attention_mma_64_f16,
       (Rows)decode_attention_mma_rows_64_f16, 1, 64, DM_GROUP, DM_BLOCK, DM_MIN_KEYS, mma_shared},
      {"decode_attention_mma_128_bf16", (OneRow)decode_attention_mma_128_bf16,
       (Rows)decode_attention_mma_rows_128_bf16, 2, 128, DM_GROUP, DM_BLOCK, DM_MIN_KEYS,
       mma_shared},
  };
  const Shape shapes[] = {
      {8, 2, 64, 1, 1, 0, 0.0f},      {8, 2, 64, 3, 4, 0, 0.0f},   {6, 6, 80, 113, 4, 0, 0.0f},
      {16, 2, 128, 113, 1, 0, 0.0f},  {16, 2, 128, 300, 4, 0, 0.0f}, {8, 2, 64, 300, 4, 100, 0.0f},
      {8, 2, 64, 200, 2, 0, 30.0f},   {8, 2, 64, 1100, 1, 0, 0.0f},  {4, 1, 64, 1100, 8, 0, 0.0f},
  };
  for (const Kernel& k : kernels)
    for (const Shape& s : shapes) check_kernel(k, s);
  return finish();
}
