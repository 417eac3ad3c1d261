// The common parts of the checks on ci/kernel-sim.h (ci/kernel-sim-*check.cpp): included
// after ci/kernel-sim.h and the kernel file (common.h's names). Seeded inputs, output arrays
// with canary guards, rms_norm's scale run on the emulator, KV arenas and the double attention
// oracle, the GEMV launches' stacked outputs.

#ifndef WAVEFRONT_CI_KERNEL_SIM_UTIL_H
#define WAVEFRONT_CI_KERNEL_SIM_UTIL_H

#include <math.h>

#include <string>
#include <vector>

// The launch's dynamic shared memory (a CDNA workgroup's 64 KiB at most).
wf_u32x4 wf_dynamic_shared[65536 / 16];

inline std::vector<float> seeded(int n, uint64_t seed, float lo, float hi) {
  std::vector<float> v(n);
  uint64_t st = seed * 0x9e3779b97f4a7c15ull + 1;
  for (int i = 0; i < n; ++i) {
    st = st * 6364136223846793005ull + 1442695040888963407ull;
    v[i] = (float)(lo + (hi - lo) * ((double)(st >> 11) / 9007199254740992.0));
  }
  return v;
}

inline bool same_bits(const std::vector<float>& a, const std::vector<float>& b, size_t n,
                      size_t off_a = 0, size_t off_b = 0) {
  return memcmp(a.data() + off_a, b.data() + off_b, 4 * n) == 0;
}

inline void poison_shared() { memset(wf_dynamic_shared, 0xff, sizeof wf_dynamic_shared); }

// An output array with a guard of NaN canaries either side: a launch that writes outside its
// outputs is reported (a GPU's memory fault, or another tensor's data lost) instead of
// corrupting the check's heap.
struct Guarded {
  static constexpr size_t PAD = 1024;
  static constexpr uint32_t CANARY = 0x7fbadbadu;
  std::vector<float> v;
  explicit Guarded(size_t n) : v(n + 2 * PAD) {
    for (size_t i = 0; i < v.size(); ++i) memcpy(&v[i], &CANARY, 4);
  }
  float* p() { return v.data() + PAD; }
  bool intact() const {
    for (size_t i = 0; i < v.size(); ++i) {
      if (i == PAD) i = v.size() - PAD;
      uint32_t u;
      memcpy(&u, &v[i], 4);
      if (u != CANARY) return false;
    }
    return true;
  }
};


// rms_norm.hip's scale of x (K values), run on the emulator (common.h rms_scale, its block and
// partition: float4 vectors when x is on 16 bytes).
inline float norm_scale(const float* x, int k, float eps) {
  float s = 0.0f;
  const bool vec4 = ((uintptr_t)x & 15) == 0;
  if (!sim::launch(1, 256, [&] {
        const float v = rms_scale<256>(x, k, eps, vec4);
        if (thread_index() == 0) s = v;
      }, false) &&
      g_launch_error.empty()) {
    g_launch_error = "rms_scale: " + sim::block().error;
  }
  // and the scale itself against double: f32 sums of k squares (k + 8 roundings), the division
  // and square root
  double ss = 0.0;
  for (int i = 0; i < k; ++i) ss += (double)x[i] * x[i];
  const double want = 1.0 / sqrt(ss / k + eps);
  if (!(fabs(s - want) <= (k + 16) * ldexp(1.0, -24) * want) && g_launch_error.empty()) {
    g_launch_error = "rms_scale: " + std::to_string(s) + " against " + std::to_string(want);
  }
  return s;
}

inline std::string fmt(double v) {
  char b[32];
  snprintf(b, sizeof b, "%.3g", v);
  return b;
}


// Element e of an arena of KV type kv, as f32.
inline float kv_value(int kv, const std::vector<uint8_t>& arena, int64_t e) {
  if (kv == 0) return ((const float*)arena.data())[e];
  if (kv == 3) return kv_read<Q8>(arena.data(), e);
  const uint16_t h = ((const uint16_t*)arena.data())[e];
  return kv == 1 ? F16::load(h) : BF16::load(h);
}

// An arena of one layer (2, n_kv, capacity, hd) of KV type kv (0 f32, 1 f16, 2 bf16, 3 q8_0:
// common.h Q8, head_dim a multiple of 32): random values at positions first ≤ j < end, NaN
// elsewhere (f32/f16/bf16: NaN elements; q8_0: NaN scales), so that a read of an unused slot
// shows.
inline std::vector<uint8_t> make_arena(int kv, int n_kv, int hd, int capacity, int end, int first,
                                       uint64_t seed) {
  const int64_t n = 2LL * n_kv * capacity * hd;
  std::vector<float> vals = seeded((int)n, seed, -1.0f, 1.0f);
  auto live = [&](int64_t e) {
    const int64_t j = e / hd % capacity;
    return j < end && j >= first;
  };
  if (kv == 0) {
    std::vector<uint8_t> a(n * 4);
    float* f = (float*)a.data();
    for (int64_t e = 0; e < n; ++e) f[e] = live(e) ? vals[e] : f32_from_bits(0x7fc00000u);
    return a;
  }
  if (kv != 3) {
    std::vector<uint8_t> a(n * 2);
    uint16_t* h = (uint16_t*)a.data();
    for (int64_t e = 0; e < n; ++e) {
      h[e] = !live(e) ? (kv == 1 ? 0x7e00 : 0x7fc0)
                      : (kv == 1 ? F16::store(vals[e]) : BF16::store(vals[e]));
    }
    return a;
  }
  std::vector<uint8_t> a(n / 256 * 272 + 272);
  for (int64_t b = 0; b < n; b += 32) {  // llama.cpp's q8_0 of each block of 32
    float amax = 0.0f;
    for (int64_t e = b; e < b + 32; ++e) amax = fmaxf(amax, fabsf(vals[e]));
    uint16_t dh;
    float id;
    Q8::scale(amax, &dh, &id);
    for (int64_t e = b; e < b + 32; ++e) a[Q8::quant_byte(e)] = (uint8_t)(int8_t)Q8::quant(vals[e], id);
    *(uint16_t*)(a.data() + Q8::scale_byte(b)) = live(b) ? dh : 0x7e00;
  }
  return a;
}

// One GEMV launch of the stacked kind (gemv_{T}, qgemv_{T}): n_in input rows of x, the rows
// split m0 | m1 | m2 into three outputs.
struct Launch {
  Launch(const float* x_, int m) : x(x_), m0(m) {}
  const float* x;
  const float* norm = nullptr;
  const float* bias = nullptr;
  int m0, m1 = 0, m2 = 0;
  int residual = 0, n_in = 1, blocks = 0;  // blocks 0: one a group
  int threads = 0;                         // 0: the kernel's (its launch bound)
  bool reverse = false;
};

// The outputs (n_in, m) preset in `out`, split m0 | m1 | m2 into three guarded arrays.
struct Stacked {
  Guarded g0, g1, g2;
  int m, m0, m1, m2, n_in;
  Stacked(const std::vector<float>& out, int m_, int m0_, int m1_, int m2_, int n)
      : g0((size_t)n * m0_), g1((size_t)n * m1_), g2((size_t)n * m2_), m(m_), m0(m0_), m1(m1_),
        m2(m2_), n_in(n) {
    for (int i = 0; i < n_in; ++i)
      for (int r = 0; r < m; ++r) *at(i, r) = out[(size_t)i * m + r];
  }
  float* at(int i, int r) {
    if (r < m0) return g0.p() + (size_t)i * m0 + r;
    if (r < m0 + m1) return g1.p() + (size_t)i * m1 + r - m0;
    return g2.p() + (size_t)i * m2 + r - m0 - m1;
  }
  void back(std::vector<float>& out) {
    for (int i = 0; i < n_in; ++i)
      for (int r = 0; r < m; ++r) out[(size_t)i * m + r] = *at(i, r);
  }
};

// Attention in double of one query vector q (hd values) over keys first ..= p of KV head kvh
// of an arena (KV type kv, n_kv heads, capacity positions): scores q·K_j·scale, soft-capped
// (c·tanh(s / c)) where softcap > 0, softmax, out = Σ_j p_j·V_j (hd values). Also returns the
// largest Σ_d |q_d·K_jd|·scale over the keys (what a score's rounding errors scale with) and
// the largest |V_jd|.
inline void attend_double(int kv, const std::vector<uint8_t>& arena, int n_kv, int kvh,
                          int capacity, int hd, const double* q, int first, int p, double scale,
                          float softcap, double* out, double& mag_max, double& v_max) {
  std::vector<double> sc(p + 1 - first);
  double m = -INFINITY;
  mag_max = 0.0;
  v_max = 0.0;
  for (int j = first; j <= p; ++j) {
    double dot = 0.0, mg = 0.0;
    for (int d = 0; d < hd; ++d) {
      const double kd = kv_value(kv, arena, ((int64_t)kvh * capacity + j) * hd + d);
      dot += q[d] * kd;
      mg += fabs(q[d] * kd);
    }
    double x = dot * scale;
    if (softcap > 0.0f) x = softcap * tanh(x / softcap);
    sc[j - first] = x;
    m = x > m ? x : m;
    mag_max = mg * scale > mag_max ? mg * scale : mag_max;
  }
  double l = 0.0;
  for (double& x : sc) l += (x = exp(x - m));
  for (int d = 0; d < hd; ++d) {
    double acc = 0.0;
    for (int j = first; j <= p; ++j) {
      const double vd = kv_value(kv, arena, ((int64_t)(n_kv + kvh) * capacity + j) * hd + d);
      acc += sc[j - first] * vd;
      v_max = fabs(vd) > v_max ? fabs(vd) : v_max;
    }
    out[d] = acc / l;
  }
}

// The values of `got` (m of them) that are not the epilogue's r + (y + bias) bit for bit (a
// residual r, the plain product y, the bias), f32 as the kernels add them.
inline size_t epilogue_misses(const float* r, const float* y, const float* bias, const float* got,
                              int m) {
  size_t bad = 0;
  for (int i = 0; i < m; ++i) {
    const float want = r[i] + (y[i] + bias[i]);
    bad += memcmp(&want, &got[i], 4) != 0;
  }
  return bad;
}

// Records a launch's failure (its barriers, or a guard it wrote over) for the next check.
inline bool launched(bool ok, std::initializer_list<const Guarded*> outs, const char* what) {
  std::string err = ok ? "" : sim::block().error;
  for (const Guarded* g : outs) {
    if (!g->intact()) err = std::string(what) + " wrote outside its outputs";
  }
  if (!err.empty() && g_launch_error.empty()) g_launch_error = err;
  return err.empty();
}

#endif  // WAVEFRONT_CI_KERNEL_SIM_UTIL_H
