// The host stand-ins for CUDA's names that kernels/*.hip's non-HIP branches use, shared by the
// host checks that compile the kernels with WF_HOST_TEST (ci/kernel-quant-check.cpp runs a
// block's threads one at a time; ci/kernel-sim.h as fibers, and adds its own barriers and
// shuffles), the checks' file reader and their pass/fail counting. Include before the kernel
// file.

#ifndef WAVEFRONT_CI_KERNEL_HOST_H
#define WAVEFRONT_CI_KERNEL_HOST_H

#include <stdint.h>
#include <stdio.h>

#include <string>
#include <vector>

struct WfDim {
  unsigned x, y, z;
};
static WfDim threadIdx, blockIdx, blockDim, gridDim;
struct float4 {
  float x, y, z, w;
};
struct uint4 {
  unsigned x, y, z, w;
};
struct uint2 {
  unsigned x, y;
};
inline void __threadfence() {}
// One thread runs at a time (quant check: by the loop; the emulator: fibers never run at once),
// so a plain read-modify-write is atomic.
inline int atomicAdd(int* p, int v) {
  const int o = *p;
  *p += v;
  return o;
}
inline int atomicOr(int* p, int v) {
  const int o = *p;
  *p |= v;
  return o;
}
inline unsigned atomicOr(unsigned* p, unsigned v) {
  const unsigned o = *p;
  *p |= v;
  return o;
}
inline int atomicExch(int* p, int v) {
  const int o = *p;
  *p = v;
  return o;
}
// CUDA's (and HIP's) rounded-separately arithmetic, as sampling.hip spells it: plain f32 on
// the host (each call its own expression, so never contracted into an FMA).
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
#define __global__
#define __device__
#define __launch_bounds__(...)
#define WF_HOST_TEST 1
#define WF_HOST_DEVICE_SHIMS 1

// A whole file's bytes (empty when it cannot be read).
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

// Pass/fail counting. The emulator sets g_launch_error when a launch fails (barriers or
// shuffles that did not line up, a write outside the outputs): the next check then fails too.
inline int g_pass = 0, g_fail = 0;
inline std::string g_launch_error;  // the first failed launch since the last check

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

// The summary line and the exit status.
inline int finish() {
  printf("%d passed, %d failed\n", g_pass, g_fail);
  return g_fail == 0 ? 0 : 1;
}

#endif  // WAVEFRONT_CI_KERNEL_HOST_H
