// The remaining per-layer kernels run whole on the host (ci/kernel-sim.h: every thread of a
// block a fiber, real barriers and wave shuffles at WAVE lanes), at the launches the host makes:
//   attention.hip  attention_{f32,f16,bf16,q8_0} (prefill rows, 128 threads) and
//                  attention_decode_{T} (one row, 1024 threads): grid (n_heads, rows);
//   rms_norm.hip   rms_norm (256 threads a row), with and without the fused residual add and
//                  the accumulating form, on 16-byte rows (float4 passes) and off them;
//   rope.hip       rope_kv_write_{f32,f16,bf16,q8_0} (256 threads a row): q rotated in place,
//                  k rotated and v copied into the arena, groups of 4 and of 1;
//   embedding.hip  embedding_{f32,f16,bf16}, ids inside and outside the vocabulary;
//   sampling.hip   argmax (one block of 1024 threads), the greedy decode step's token.
// Checked:
//   attention: the output against attention in double over the arena's keys (within a bound
//     from the f32 dot products, the online softmax's rescalings and sums), finite with NaN in
//     every slot the row must not read (past its position, before its window, the other
//     layer); each prefill row the bits of a one-row launch at its position; the same bits in
//     reverse thread order and with the position read from a step block; a step position
//     outside the cache writes nothing;
//   rms_norm: x + residual written back exactly; out = w·(x·scale) (or out + that) bit for bit
//     with common.h's rms_scale over the same partition (the GEMVs' fused norm prologue rests
//     on that identity), and the scale against double; thread order;
//   rope: q and the arena's K row the rotation with common.h's sin/cos bit for bit (Q8_0: the
//     block's quantization of it, within half a step), V copied (rounded to the KV type), every
//     other arena byte unchanged; thread order; the step block's position; outside the cache:
//     nothing written;
//   embedding: every row f32(table[id])·scale bit for bit (zeros for an id outside the
//     vocabulary), nothing written past the rows, on 16 bytes and off them;
//   argmax: the first index of the largest value (ties: the lowest index), or -1 for a row the
//     sampler refuses (a NaN, a +inf, every value -inf, n = 0), on 16 bytes and off them, in
//     both thread orders.
//
// Usage: kernel-sim-misc-check   Exit status 0 iff every check passed.
// Build: c++ -O2 -std=c++17 -Wno-unknown-pragmas -DWAVE=32 -I kernels -I ci \
//          ci/kernel-sim-misc-check.cpp   (and -DWAVE=64)

#include "kernel-sim.h"

#include "common.h"

// Each kernel file in its own namespace (their path enums share names); common.h is already in.
namespace ka {
#include "attention.hip"
}
namespace kn {
#include "rms_norm.hip"
}
namespace kr {
#include "rope.hip"
}
namespace ke {
#include "embedding.hip"
}
namespace ks {
#include "sampling.hip"
}

#include "kernel-sim-util.h"

#include <algorithm>

static const char* KV_NAME[] = {"f32", "f16", "bf16", "q8_0"};
// The bytes of n arena elements of KV type kv (Q8_0: n a whole number of common.h Q8's tiles of
// 256, so the next element's first quant byte).
static size_t kv_bytes(int kv, int64_t n) {
  return kv == 0 ? 4 * n : kv == 3 ? Q8::quant_byte(n) : 2 * n;
}

// ---------------------------------------------------------------------------------------------
// attention.hip

// attention_{T} / attention_decode_{T} of KV type kv, the arena as bytes.
static void attention_call(int kv, bool decode, const float* q, const uint8_t* arena, float* out,
                           int layer, int pos0, int rows, int n_heads, int n_kv, int hd,
                           int capacity, float scale, const int* step, int window, float softcap) {
  const float* a32 = (const float*)arena;
  const uint16_t* a16 = (const uint16_t*)arena;
#define WF_ARGS out, layer, pos0, rows, n_heads, n_kv, hd, capacity, scale, step, window, softcap
  switch (kv) {
    case 0: return decode ? ka::attention_decode_f32(q, a32, WF_ARGS) : ka::attention_f32(q, a32, WF_ARGS);
    case 1: return decode ? ka::attention_decode_f16(q, a16, WF_ARGS) : ka::attention_f16(q, a16, WF_ARGS);
    case 2: return decode ? ka::attention_decode_bf16(q, a16, WF_ARGS) : ka::attention_bf16(q, a16, WF_ARGS);
    default: return decode ? ka::attention_decode_q8_0(q, arena, WF_ARGS) : ka::attention_q8_0(q, arena, WF_ARGS);
  }
#undef WF_ARGS
}

struct AttnShape {
  int n_heads, n_kv, hd, rows, pos0, window;
  float softcap;
};

struct AttnCase {
  int kv;
  AttnShape s;
  int capacity;
  std::vector<uint8_t> layer1;  // the read layer, alone (the oracle's)
  std::vector<uint8_t> arena;   // layer 0 all NaN, then layer 1
  std::vector<float> q;
  float scale;
};

static AttnCase attn_case(int kv, const AttnShape& s, uint64_t seed) {
  AttnCase c;
  c.kv = kv;
  c.s = s;
  c.capacity = (s.pos0 + s.rows + 5 + 7) / 8 * 8;  // a layer a whole number of Q8_0 tiles
  const int end = s.pos0 + s.rows;
  // keys before the window of the first row are never read: NaN there
  const int first = s.window > 0 && s.pos0 + 1 > s.window ? s.pos0 + 1 - s.window : 0;
  c.layer1 = make_arena(kv, s.n_kv, s.hd, c.capacity, end, first, seed);
  std::vector<uint8_t> layer0 = make_arena(kv, s.n_kv, s.hd, c.capacity, 0, 0, seed + 1);
  c.arena = layer0;
  c.arena.resize(kv_bytes(kv, 2LL * s.n_kv * c.capacity * s.hd));
  c.arena.insert(c.arena.end(), c.layer1.begin(), c.layer1.end());
  c.q = seeded(s.rows * s.n_heads * s.hd, seed + 2, -1.0f, 1.0f);
  c.scale = 1.0f / sqrtf((float)s.hd);
  return c;
}

// One launch of attention_{T} (or _decode_) over rows [row0, row0 + rows) of the case: the
// outputs (rows, n_heads, hd) in a guarded array preset to `preset`.
static std::vector<float> attn_launch(const AttnCase& c, bool decode, int row0, int rows,
                                      bool reverse, int step_pos, float preset, bool& ok) {
  const AttnShape& s = c.s;
  const size_t n = (size_t)rows * s.n_heads * s.hd;
  Guarded out(n);
  for (size_t i = 0; i < n; ++i) out.p()[i] = preset;
  const float* q = c.q.data() + (size_t)row0 * s.n_heads * s.hd;
  int step[8] = {0, step_pos, 0, 0, 0, 0, 0, 0};
  const int* sp = step_pos == INT32_MIN ? nullptr : step;
  const int pos_arg = sp ? -12345 : s.pos0 + row0;  // with a step block the argument is ignored
  const bool l = sim::launch(WfDim{(unsigned)s.n_heads, (unsigned)rows, 1},
                             decode ? ka::ATTENTION_DECODE_BLOCK : ka::ATTENTION_BLOCK, [&] {
                               attention_call(c.kv, decode, q, c.arena.data(), out.p(), 1, pos_arg,
                                              rows, s.n_heads, s.n_kv, s.hd, c.capacity, c.scale,
                                              sp, s.window, s.softcap);
                             },
                             reverse);
  ok = launched(l, {&out}, decode ? "attention_decode" : "attention");
  return std::vector<float>(out.p(), out.p() + n);
}

// The largest |got − attention in double| over rows [0, rows) of a launch at the case's rows
// row0.., as a fraction of each head's bound: a score's error hd + 4 roundings of each term
// (dot, scale, the soft-cap's few of c); the online rescaling multiplies the running sum and
// accumulator by one factor a key (len roundings at most), the exponentials and the merge a
// few more. `finite`: every output finite.
static double attn_worst(const AttnCase& c, const std::vector<float>& got, int row0, int rows,
                         bool& finite) {
  const AttnShape& s = c.s;
  const double u = ldexp(1.0, -24);
  const int G = s.n_heads / s.n_kv;
  double worst = 0.0;
  finite = true;
  for (int i = 0; i < rows; ++i) {
    const int p = s.pos0 + row0 + i;
    const int first = s.window > 0 && p + 1 > s.window ? p + 1 - s.window : 0;
    const int len = p + 1 - first;
    for (int h = 0; h < s.n_heads; ++h) {
      std::vector<double> qd(s.hd), want(s.hd);
      const size_t at = ((size_t)(row0 + i) * s.n_heads + h) * s.hd;
      for (int d = 0; d < s.hd; ++d) qd[d] = c.q[at + d];
      double mag, vmax;
      attend_double(c.kv, c.layer1, s.n_kv, h / G, c.capacity, s.hd, qd.data(), first, p, c.scale,
                    s.softcap, want.data(), mag, vmax);
      const double ds = (s.hd + 4) * u * mag + (s.softcap > 0.0f ? 8.0 * u * s.softcap : 0.0);
      const double tol = 2.0 * (2.0 * ds + (2.0 * len + 64) * u) * vmax;
      for (int d = 0; d < s.hd; ++d) {
        const float g = got[((size_t)i * s.n_heads + h) * s.hd + d];
        finite = finite && std::isfinite(g);
        worst = std::max(worst, fabs(g - want[d]) / tol);
      }
    }
  }
  return worst;
}

static void attention_checks() {
  const AttnShape shapes[] = {
      {4, 1, 64, 5, 0, 0, 0.0f},    // row 0: one key (waves with none); GQA 4
      {8, 2, 80, 3, 40, 0, 0.0f},   // head_dim not a multiple of the wave
      {3, 3, 128, 1, 200, 16, 0.0f},  // a window of 16 keys
      {4, 2, 256, 2, 9, 0, 30.0f},  // the largest head_dim, a soft-cap
      {2, 1, 96, 4, 1000, 0, 0.0f},  // a thousand keys
  };
  uint64_t seed = 100;
  for (int kv = 0; kv < 4; ++kv) {
    for (const AttnShape& s : shapes) {
      if (kv == 3 && s.hd % 32 != 0) continue;  // Q8_0 blocks of 32 along head_dim
      const AttnCase c = attn_case(kv, s, seed += 7);
      char tag[160];
      snprintf(tag, sizeof tag, "attention %s heads %d/%d hd %d rows %d at %d window %d cap %g",
               KV_NAME[kv], s.n_heads, s.n_kv, s.hd, s.rows, s.pos0, s.window, s.softcap);
      bool ok;
      const std::vector<float> got = attn_launch(c, false, 0, s.rows, false, INT32_MIN, 0.0f, ok);
      // 1. against double
      bool finite;
      const double worst = attn_worst(c, got, 0, s.rows, finite);
      check(ok && finite && worst <= 1.0,
            std::string(tag) + ": against attention in double (worst " + fmt(worst) + " of its bound" +
                (finite ? ")" : ", not finite)"));
      // 2. each row the bits of its one-row launch
      bool rows_same = true;
      for (int i = 0; i < s.rows && s.rows > 1; ++i) {
        const std::vector<float> one = attn_launch(c, false, i, 1, false, INT32_MIN, 0.0f, ok);
        rows_same = rows_same && ok && same_bits(got, one, (size_t)s.n_heads * s.hd,
                                                 (size_t)i * s.n_heads * s.hd, 0);
      }
      if (s.rows > 1) check(rows_same, std::string(tag) + ": every row its one-row launch's bits");
      // 3. thread order; the position from a step block
      const std::vector<float> rev = attn_launch(c, false, 0, s.rows, true, INT32_MIN, 0.0f, ok);
      check(ok && same_bits(got, rev, got.size()), std::string(tag) + ": the same bits in reverse thread order");
      const std::vector<float> st = attn_launch(c, false, 0, s.rows, false, s.pos0, 0.0f, ok);
      check(ok && same_bits(got, st, got.size()), std::string(tag) + ": the same bits with the position from a step block");
      // 4. a step position past the cache: nothing written
      const float sentinel = 1234.5f;
      const std::vector<float> off =
          attn_launch(c, false, 0, s.rows, false, c.capacity - s.rows + 1, sentinel, ok);
      bool untouched = ok;
      for (float v : off) untouched = untouched && v == sentinel;
      check(untouched, std::string(tag) + ": a step position outside the cache writes nothing");
      // 5. the decode kernel (1024 threads) on one-row shapes, against double via the prefill
      // kernel's result (both within the bound; their waves split the keys differently)
      if (s.rows == 1) {
        const std::vector<float> dec = attn_launch(c, true, 0, 1, false, INT32_MIN, 0.0f, ok);
        const std::vector<float> dec_st = attn_launch(c, true, 0, 1, true, s.pos0, 0.0f, ok);
        bool dfinite;
        const double dworst = attn_worst(c, dec, 0, 1, dfinite);
        check(ok && dfinite && dworst <= 1.0 && same_bits(dec, dec_st, dec.size()),
              std::string(tag) + ": attention_decode against double (worst " + fmt(dworst) +
                  (dfinite ? "" : ", not finite") + "), the same bits reversed and from a step block");
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// rms_norm.hip

static void rms_norm_checks() {
  const int dims[] = {1, 3, 64, 576, 1003, 4096};
  const float eps = 1e-5f;
  uint64_t seed = 500;
  for (int dim : dims) {
    for (int off = 0; off < 2; ++off) {  // 1: every pointer one float past 16 bytes
      for (int res = 0; res < 2; ++res) {
        for (int acc = 0; acc < 2; ++acc) {
          const int rows = 3;
          const size_t n = (size_t)rows * dim;
          const std::vector<float> x0 = seeded((int)n, seed += 3, -2.0f, 2.0f);
          const std::vector<float> o0 = seeded((int)n, seed += 3, -1.0f, 1.0f);
          std::vector<float> r = seeded((int)n + 1, seed += 3, -1.0f, 1.0f);
          std::vector<float> w = seeded(dim + 1, seed += 3, 0.5f, 1.5f);
          const float* rp = res ? r.data() + off : nullptr;
          const float* wp = w.data() + off;
          auto run = [&](bool reverse, std::vector<float>& x_out, std::vector<float>& out) {
            Guarded xg(n + 1), og(n + 1);
            float* xp = xg.p() + off;
            float* op = og.p() + off;
            memcpy(xp, x0.data(), 4 * n);
            memcpy(op, o0.data(), 4 * n);
            const bool l = sim::launch((unsigned)rows, kn::RMS_NORM_BLOCK, [&] {
              kn::rms_norm(xp, rp, wp, op, rows, dim, eps, acc);
            }, reverse);
            const bool ok = launched(l, {&xg, &og}, "rms_norm");
            x_out.assign(xp, xp + n);
            out.assign(op, op + n);
            return ok;
          };
          std::vector<float> x1, out1, x2, out2;
          const bool ok1 = run(false, x1, out1);
          const bool ok2 = run(true, x2, out2);
          // the expected bits: x + r, then rms_scale over the kernel's partition (float4 vectors
          // when the row's x, residual, out and w all start on 16 bytes: rows past the first
          // only when dim is a multiple of 4)
          size_t x_bad = 0, o_bad = 0;
          bool scale_ok = true;
          for (int row = 0; row < rows; ++row) {
            const size_t base = (size_t)row * dim;
            std::vector<float> xa(dim + 4);  // on 16 bytes (a fresh vector)
            for (int i = 0; i < dim; ++i) {
              xa[i] = res ? x0[base + i] + rp[base + i] : x0[base + i];
              x_bad += memcmp(&x1[base + i], &xa[i], 4) != 0;
            }
            const bool vec = off == 0 && base % 4 == 0;
            float scale = 0.0f;
            const bool l = sim::launch(1, 256, [&] {
              const float v = rms_scale<256>(xa.data(), dim, eps, vec);
              if (thread_index() == 0) scale = v;
            }, false);
            double ss = 0.0;
            for (int i = 0; i < dim; ++i) ss += (double)xa[i] * xa[i];
            const double want = 1.0 / sqrt(ss / dim + eps);
            scale_ok = scale_ok && l && fabs(scale - want) <= (dim + 16) * ldexp(1.0, -24) * want;
            for (int i = 0; i < dim; ++i) {
              const float prod = wp[i] * (xa[i] * scale);
              const float e = acc ? o0[base + i] + prod : prod;
              o_bad += memcmp(&e, &out1[base + i], 4) != 0;
            }
          }
          char tag[120];
          snprintf(tag, sizeof tag, "rms_norm dim %d%s%s%s", dim, off ? " off 16 bytes" : "",
                   res ? " +residual" : "", acc ? " accumulate" : "");
          check(ok1 && x_bad == 0 && o_bad == 0 && scale_ok,
                std::string(tag) + ": x + r written back, out = w·(x·rms_scale) bit for bit (" +
                    std::to_string(x_bad) + ", " + std::to_string(o_bad) +
                    " off), the scale against double");
          check(ok2 && same_bits(x1, x2, n) && same_bits(out1, out2, n),
                std::string(tag) + ": the same bits in reverse thread order");
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// rope.hip

// rope_kv_write_{T} of KV type kv, the arena as bytes.
static void rope_call(int kv, float* q, const float* k, const float* v, const float* inv_freq,
                      uint8_t* arena, int layer, int pos0, int rows, int n_heads, int n_kv, int hd,
                      int capacity, const int* step) {
#define WF_ARGS layer, pos0, rows, n_heads, n_kv, hd, capacity, step
  switch (kv) {
    case 0: return kr::rope_kv_write_f32(q, k, v, inv_freq, (float*)arena, WF_ARGS);
    case 1: return kr::rope_kv_write_f16(q, k, v, inv_freq, (uint16_t*)arena, WF_ARGS);
    case 2: return kr::rope_kv_write_bf16(q, k, v, inv_freq, (uint16_t*)arena, WF_ARGS);
    default: return kr::rope_kv_write_q8_0(q, k, v, inv_freq, arena, WF_ARGS);
  }
#undef WF_ARGS
}

// f32 values as the KV type stores them (f16 / bf16 rounded to nearest even; f32 itself).
static float kv_round(int kv, float v) {
  if (kv == 1) return F16::load(F16::store(v));
  if (kv == 2) return BF16::load(BF16::store(v));
  return v;
}

static void rope_checks() {
  struct S {
    int n_heads, n_kv, hd, rows, pos0;
    float attn;  // LongRoPE's attention factor (inv_freq[half]); 1 elsewhere
    int misalign;  // 1: q one float past 16 bytes (groups of 1)
  };
  const S shapes[] = {
      {4, 2, 64, 3, 5, 1.0f, 0},     {2, 1, 36, 2, 100, 1.0f, 0},  // half 18: groups of 1
      {8, 8, 128, 1, 4000, 1.19f, 0}, {1, 1, 256, 2, 0, 1.0f, 0},
      {4, 2, 64, 2, 17, 1.0f, 1},
  };
  uint64_t seed = 900;
  for (int kv = 0; kv < 4; ++kv) {
    for (const S& s : shapes) {
      if (kv == 3 && (s.hd % 32 != 0 || s.misalign)) continue;  // the contract: blocks, 16 bytes
      const int half = s.hd / 2, capacity = (s.pos0 + s.rows + 3 + 7) / 8 * 8;
      const int64_t layer_n = 2LL * s.n_kv * capacity * s.hd;
      std::vector<float> q0 = seeded(s.rows * s.n_heads * s.hd + 4, seed += 5, -1.0f, 1.0f);
      const std::vector<float> k = seeded(s.rows * s.n_kv * s.hd, seed += 5, -1.0f, 1.0f);
      const std::vector<float> v = seeded(s.rows * s.n_kv * s.hd, seed += 5, -1.0f, 1.0f);
      std::vector<float> inv_freq(half + 1);
      for (int d = 0; d < half; ++d) inv_freq[d] = (float)pow(10000.0, -2.0 * d / s.hd);
      inv_freq[half] = s.attn;
      // two layers of random values (the writes go to layer 1)
      std::vector<uint8_t> arena0 = make_arena(kv, s.n_kv, s.hd, capacity, capacity, 0, seed += 5);
      std::vector<uint8_t> a1 = make_arena(kv, s.n_kv, s.hd, capacity, capacity, 0, seed += 5);
      arena0.resize(kv_bytes(kv, layer_n));
      arena0.insert(arena0.end(), a1.begin(), a1.end());
      auto run = [&](bool reverse, int step_pos, std::vector<float>& q, std::vector<uint8_t>& arena) {
        q = q0;
        arena = arena0;
        int step[8] = {0, step_pos, 0, 0, 0, 0, 0, 0};
        const int* sp = step_pos == INT32_MIN ? nullptr : step;
        const bool l = sim::launch((unsigned)s.rows, kr::ROPE_BLOCK, [&] {
          rope_call(kv, q.data() + s.misalign, k.data(), v.data(), inv_freq.data(), arena.data(), 1,
                    sp ? -999 : s.pos0, s.rows, s.n_heads, s.n_kv, s.hd, capacity, sp);
        }, reverse);
        return launched(l, {}, "rope");
      };
      std::vector<float> q1, q2, q3, q4;
      std::vector<uint8_t> ar1, ar2, ar3, ar4;
      const bool ok1 = run(false, INT32_MIN, q1, ar1);
      const bool ok2 = run(true, INT32_MIN, q2, ar2);
      const bool ok3 = run(false, s.pos0, q3, ar3);
      const bool ok4 = run(false, capacity - s.rows + 1, q4, ar4);
      // the expected rotation, with common.h's sin/cos as the kernel takes them
      size_t q_bad = 0, k_bad = 0, v_bad = 0, other = 0;
      std::vector<bool> written(arena0.size(), false);
      auto mark = [&](int64_t e) {  // element e of the two-layer arena, as bytes
        if (kv == 3) {
          written[Q8::quant_byte(e)] = true;
          written[Q8::scale_byte(e)] = written[Q8::scale_byte(e) + 1] = true;
        } else {
          const int b = kv == 0 ? 4 : 2;
          for (int j = 0; j < b; ++j) written[e * b + j] = true;
        }
      };
      const float* qin = q0.data() + s.misalign;
      const float* qout = q1.data() + s.misalign;
      for (int i = 0; i < s.rows; ++i) {
        const int p = s.pos0 + i;
        std::vector<float> sn(half), cs(half);
        for (int d = 0; d < half; ++d) {
          wf_sincosf((float)p * inv_freq[d], &sn[d], &cs[d]);
          sn[d] *= s.attn;
          cs[d] *= s.attn;
        }
        auto rot = [&](const float* x, int d) {  // element d of the rotated head x
          return d < half ? x[d] * cs[d] - x[d + half] * sn[d]
                          : x[d] * cs[d - half] + x[d - half] * sn[d - half];
        };
        for (int h = 0; h < s.n_heads; ++h) {
          const float* x = qin + ((size_t)i * s.n_heads + h) * s.hd;
          for (int d = 0; d < s.hd; ++d) {
            const float want = rot(x, d), got = qout[((size_t)i * s.n_heads + h) * s.hd + d];
            q_bad += memcmp(&want, &got, 4) != 0;
          }
        }
        for (int h = 0; h < s.n_kv; ++h) {
          const float* kx = k.data() + ((size_t)i * s.n_kv + h) * s.hd;
          const float* vx = v.data() + ((size_t)i * s.n_kv + h) * s.hd;
          const int64_t kb = layer_n + ((int64_t)h * capacity + p) * s.hd;
          const int64_t vb = layer_n + ((int64_t)(s.n_kv + h) * capacity + p) * s.hd;
          if (kv == 3) {  // each block of 32: common.h Q8's quantization of the kernel's values
            for (int d0 = 0; d0 < s.hd; d0 += 32) {
              for (int is_v = 0; is_v < 2; ++is_v) {
                const int64_t e0 = (is_v ? vb : kb) + d0;
                float y[32], amax = 0.0f;
                for (int j = 0; j < 32; ++j) {
                  y[j] = is_v ? vx[d0 + j] : rot(kx, d0 + j);
                  amax = max_num(amax, y[j] < 0.0f ? -y[j] : y[j]);
                }
                uint16_t dh;
                float id;
                Q8::scale(amax, &dh, &id);
                size_t bad = memcmp(&ar1[Q8::scale_byte(e0)], &dh, 2) != 0;
                for (int j = 0; j < 32; ++j) {
                  bad += ar1[Q8::quant_byte(e0 + j)] != (uint8_t)(Q8::quant(y[j], id) & 0xff);
                  mark(e0 + j);
                }
                (is_v ? v_bad : k_bad) += bad;
              }
            }
            continue;
          }
          for (int d = 0; d < s.hd; ++d) {
            const float kw = kv_round(kv, rot(kx, d)), kg = kv_value(kv, ar1, kb + d);
            const float vw = kv_round(kv, vx[d]), vg = kv_value(kv, ar1, vb + d);
            k_bad += memcmp(&kw, &kg, 4) != 0;
            v_bad += memcmp(&vw, &vg, 4) != 0;
            mark(kb + d);
            mark(vb + d);
          }
        }
      }
      for (size_t b = 0; b < ar1.size(); ++b) other += !written[b] && ar1[b] != arena0[b];
      char tag[140];
      snprintf(tag, sizeof tag, "rope %s heads %d/%d hd %d rows %d at %d%s%s", KV_NAME[kv], s.n_heads,
               s.n_kv, s.hd, s.rows, s.pos0, s.attn != 1.0f ? " factor" : "",
               s.misalign ? " q off 16 bytes" : "");
      check(ok1 && q_bad == 0 && k_bad == 0 && v_bad == 0 && other == 0,
            std::string(tag) + ": q and K rotated, V copied, nothing else written (" +
                std::to_string(q_bad) + ", " + std::to_string(k_bad) + ", " + std::to_string(v_bad) +
                ", " + std::to_string(other) + " off)");
      check(ok2 && ok3 && q1 == q2 && ar1 == ar2 && same_bits(q1, q3, q1.size()) && ar1 == ar3,
            std::string(tag) + ": the same bits in reverse thread order and from a step block");
      check(ok4 && same_bits(q4, q0, q0.size()) && ar4 == arena0,
            std::string(tag) + ": a step position outside the cache writes nothing");
    }
  }
}

// ---------------------------------------------------------------------------------------------
// embedding.hip

static void embedding_checks() {
  const int hiddens[] = {13, 64, 100, 576};
  uint64_t seed = 1300;
  for (int t = 0; t < 3; ++t) {
    for (int hidden : hiddens) {
      for (int off = 0; off < 2; ++off) {
        for (float scale : {1.0f, 24.0f}) {
          const int vocab = 37;
          const std::vector<float> vals = seeded(vocab * hidden, seed += 3, -3.0f, 3.0f);
          std::vector<uint8_t> table(vocab * hidden * (t == 0 ? 4 : 2) + 16);
          for (int i = 0; i < vocab * hidden; ++i) {
            if (t == 0) {
              memcpy(table.data() + 4 * i, &vals[i], 4);
            } else {
              const uint16_t h = t == 1 ? F16::store(vals[i]) : BF16::store(vals[i]);
              memcpy(table.data() + 2 * i, &h, 2);
            }
          }
          const std::vector<int> tokens = {3, 0, vocab - 1, -1, vocab, 17};
          const int n = (int)tokens.size();
          Guarded out((size_t)n * hidden + 1);
          float* dst = out.p() + off;  // off: rows one float past 16 bytes
          const bool l = sim::launch((unsigned)n, ke::EMBEDDING_BLOCK, [&] {
            if (t == 0) ke::embedding_f32((const float*)table.data(), tokens.data(), dst, n, hidden, vocab, scale);
            if (t == 1) ke::embedding_f16((const uint16_t*)table.data(), tokens.data(), dst, n, hidden, vocab, scale);
            if (t == 2) ke::embedding_bf16((const uint16_t*)table.data(), tokens.data(), dst, n, hidden, vocab, scale);
          }, t == 2);
          const bool ok = launched(l, {&out}, "embedding");
          size_t bad = 0;
          for (int b = 0; b < n; ++b) {
            const int id = tokens[b];
            for (int i = 0; i < hidden; ++i) {
              float want = 0.0f;
              if (id >= 0 && id < vocab) {
                const size_t e = (size_t)id * hidden + i;
                float x;
                if (t == 0) {
                  memcpy(&x, table.data() + 4 * e, 4);
                } else {
                  uint16_t h;
                  memcpy(&h, table.data() + 2 * e, 2);
                  x = t == 1 ? F16::load(h) : BF16::load(h);
                }
                want = x * scale;
              }
              bad += memcmp(&want, &dst[(size_t)b * hidden + i], 4) != 0;
            }
          }
          // the slot past the rows (off = 0) or before them (off = 1) keeps its canary
          const float spare = off ? out.p()[0] : out.p()[(size_t)n * hidden];
          uint32_t sb;
          memcpy(&sb, &spare, 4);
          char tag[100];
          snprintf(tag, sizeof tag, "embedding %s hidden %d scale %g%s", KV_NAME[t], hidden, scale,
                   off ? " off 16 bytes" : "");
          check(ok && bad == 0 && sb == Guarded::CANARY,
                std::string(tag) + ": f32(table[id])·scale bit for bit, zeros for ids outside, nothing else (" +
                    std::to_string(bad) + " off)");
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// sampling.hip: argmax

static void argmax_checks() {
  const float inf = INFINITY;
  uint64_t seed = 1700;
  struct Row {
    const char* what;
    int n;
    int plant;  // 0 none, 1 ties at the max, 2 a NaN, 3 a +inf, 4 every value -inf, 5 max at the end
  };
  const Row rows[] = {{"random", 49152, 0},     {"random, n mod 4 = 3", 151, 0},
                      {"ties at the maximum", 5003, 1}, {"a NaN", 4096, 2},
                      {"a +inf", 777, 3},       {"every value -inf", 1000, 4},
                      {"the maximum last", 262144, 5}, {"one value", 1, 0},
                      {"n = 0", 0, 0}};
  for (const Row& r : rows) {
    for (int off = 0; off < 2; ++off) {
      std::vector<float> x = seeded(r.n + 1, seed += 3, -20.0f, 20.0f);
      float* v = x.data() + off;
      int want = -1;
      if (r.n > 0) {
        want = 0;
        for (int i = 1; i < r.n; ++i) want = v[i] > v[want] ? i : want;
      }
      if (r.plant == 1) {  // the maximum three times: the lowest index wins
        const int a = r.n / 7, b = r.n / 2, c = r.n - 3;
        v[a] = v[b] = v[c] = 25.0f;
        want = a;
      } else if (r.plant == 2) {
        v[r.n / 3] = NAN;
        want = -1;
      } else if (r.plant == 3) {
        v[r.n - 1] = inf;
        want = -1;
      } else if (r.plant == 4) {
        for (int i = 0; i < r.n; ++i) v[i] = -inf;
        want = -1;
      } else if (r.plant == 5) {
        v[r.n - 1] = 30.0f;
        want = r.n - 1;
      }
      for (int rev = 0; rev < 2; ++rev) {
        int out[3] = {-7, -7, -7};
        const bool l = sim::launch(1, ks::ARGMAX_BLOCK, [&] { ks::argmax(v, r.n, out + 1); }, rev);
        const bool ok = launched(l, {}, "argmax") && out[0] == -7 && out[2] == -7;
        char tag[120];
        snprintf(tag, sizeof tag, "argmax %s (n %d)%s%s", r.what, r.n, off ? " off 16 bytes" : "",
                 rev ? " reversed" : "");
        check(ok && out[1] == want,
              std::string(tag) + ": " + std::to_string(out[1]) + ", want " + std::to_string(want));
      }
    }
  }
}

int main() {
  printf("kernel-sim-misc-check: WAVE=%d\n", WAVE);
  attention_checks();
  rms_norm_checks();
  rope_checks();
  embedding_checks();
  argmax_checks();
  return finish();
}
