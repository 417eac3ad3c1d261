// The common parts of the checks on ci/kernel-sim.h (ci/kernel-sim-*check.cpp): included
// after ci/kernel-sim.h and the kernel file (common.h's names). Pass/fail counting,
// seeded inputs, output arrays with canary guards, rms_norm's scale run on the emulator.

#ifndef WAVEFRONT_CI_KERNEL_SIM_UTIL_H
#define WAVEFRONT_CI_KERNEL_SIM_UTIL_H

#include <math.h>

#include <string>
#include <vector>

// The launch's dynamic shared memory (a CDNA workgroup's 64 KiB at most).
wf_u32x4 wf_dynamic_shared[65536 / 16];

inline int g_pass = 0, g_fail = 0;
inline std::string g_launch_error;  // the first failed launch since the last check

// A check fails too when a launch it rests on failed (barriers or shuffles that did not line
// up, a write outside the outputs).
inline void check(bool ok, std::string what) {
  if (!g_launch_error.empty()) {
    ok = false;
    what += " [a launch failed: " + g_launch_error + "]";
    g_launch_error.clear();
  }
  if (ok) {
    ++g_pass;
    printf("ok   %s\n", what.c_str());
  } else {
    ++g_fail;
    printf("FAIL %s\n", what.c_str());
  }
  fflush(stdout);
}

inline std::vector<uint8_t> read_file(const std::string& path) {
  std::vector<uint8_t> v;
  FILE* f = fopen(path.c_str(), "rb");
  if (!f) return v;
  uint8_t buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) v.insert(v.end(), buf, buf + n);
  fclose(f);
  return v;
}

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
  return s;
}

inline std::string fmt(double v) {
  char b[32];
  snprintf(b, sizeof b, "%.3g", v);
  return b;
}


// Element e of an arena of KV type kv, as f32.
inline float kv_value(int kv, const std::vector<uint8_t>& arena, int64_t e) {
  if (kv == 3) return kv_read<Q8>(arena.data(), e);
  const uint16_t h = ((const uint16_t*)arena.data())[e];
  return kv == 1 ? F16::load(h) : BF16::load(h);
}

// An arena of one layer (2, n_kv, capacity, hd) of KV type kv (1 f16, 2 bf16, 3 q8_0: common.h
// Q8, head_dim a multiple of 32): random values at positions first ≤ j < end, NaN elsewhere
// (f16/bf16: NaN elements; q8_0: NaN scales), so that a read of an unused slot shows.
inline std::vector<uint8_t> make_arena(int kv, int n_kv, int hd, int capacity, int end, int first,
                                       uint64_t seed) {
  const int64_t n = 2LL * n_kv * capacity * hd;
  std::vector<float> vals = seeded((int)n, seed, -1.0f, 1.0f);
  auto live = [&](int64_t e) {
    const int64_t j = e / hd % capacity;
    return j < end && j >= first;
  };
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

// Records a launch's failure (its barriers, or a guard it wrote over) for the next check.
inline bool launched(bool ok, std::initializer_list<const Guarded*> outs, const char* what) {
  std::string err = ok ? "" : sim::block().error;
  for (const Guarded* g : outs) {
    if (!g->intact()) err = std::string(what) + " wrote outside its outputs";
  }
  if (!err.empty() && g_launch_error.empty()) g_launch_error = err;
  return err.empty();
}

// The summary line and the exit status.
inline int finish() {
  printf("%d passed, %d failed\n", g_pass, g_fail);
  return g_fail == 0 ? 0 : 1;
}

#endif  // WAVEFRONT_CI_KERNEL_SIM_UTIL_H
