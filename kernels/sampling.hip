// Sampling on the device: greedy argmax (only the id crosses to the host).
//
// argmax: out[0] = the index of the largest x[i], i < n; the lowest index on ties; or -1 when
//   the logits cannot be sampled, as the reference sampler refuses them: a NaN, a +inf, every
//   value -inf, or n ≤ 0 (the host reports it rather than taking a token it did not choose).
//   Shapes: x (n) f32; out (1) i32.
//   Launch: grid (1); block ARGMAX_BLOCK = 1024; no dynamic shared memory.
//   Indexing: thread t scans its elements in ascending order (float4 vectors t, t + 1024, …
//   when x is 16-byte aligned, then the scalar tail; else elements t, t + 1024, …), keeping
//   the first maximum and noting any NaN or +inf; the (value, index) pairs are then reduced
//   over the wave and the waves with the order "larger value, then smaller index", which is
//   total on the candidates (no NaN ever becomes a candidate).
// Paths (WF_PATH, slot 0):
//   vec:     x starts on 16 bytes: float4 loads
//   tail:    after the vectors, the n mod 4 elements, scalar
//   scalar:  x not on 16 bytes: every element scalar
//   invalid: NaN, +inf, all -inf or n ≤ 0: returns -1

#include "common.h"

constexpr int ARGMAX_BLOCK = 1024;
enum SamplingPath { PATH_VEC, PATH_TAIL, PATH_SCALAR, PATH_INVALID };

// (v, i) beats (best_v, best_i): larger value, or equal value and smaller index. NaN v never
// beats anything (both comparisons are false).
WF_DEVICE bool argmax_beats(float v, int i, float best_v, int best_i) {
  return v > best_v || (v == best_v && i < best_i);
}

// A value no sampler takes: NaN or +inf.
WF_DEVICE int argmax_bad(float v) { return (wf_isnan(v) || v == wf_inf()) ? 1 : 0; }

__device__ void argmax_kernel(const float* x, int n, int* out) {
  const int t = thread_index();
  const int none = 0x7fffffff;  // index of "no candidate yet"
  float best_v = -wf_inf();
  int best_i = none;
  int bad = 0;
  int tail = 0;
  const bool aligned = is_aligned(x, 16);
  if (aligned) {
    const int n_vec = n / 4;
    for (int k = t; k < n_vec; k += ARGMAX_BLOCK) {
      WF_PATH(0, PATH_VEC);
      float v[4];
      load_f32x4(x + 4 * k, v);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        bad |= argmax_bad(v[j]);
        if (argmax_beats(v[j], 4 * k + j, best_v, best_i)) {
          best_v = v[j];
          best_i = 4 * k + j;
        }
      }
    }
    tail = 4 * n_vec;
  }
  for (int i = tail + t; i < n; i += ARGMAX_BLOCK) {
    WF_PATH(0, aligned ? PATH_TAIL : PATH_SCALAR);
    bad |= argmax_bad(x[i]);
    if (argmax_beats(x[i], i, best_v, best_i)) {
      best_v = x[i];
      best_i = i;
    }
  }
  // wave: butterfly over (value, index) pairs and the bad flags
#pragma unroll
  for (int m = WAVE / 2; m > 0; m >>= 1) {
    const float ov = wave_shfl_xor(best_v, m);
    const int oi = wave_shfl_xor(best_i, m);
    bad |= wave_shfl_xor(bad, m);
    if (argmax_beats(ov, oi, best_v, best_i)) {
      best_v = ov;
      best_i = oi;
    }
  }
  // block: one pair and flag per wave, folded by thread 0
  __shared__ float wave_v[ARGMAX_BLOCK / WAVE];
  __shared__ int wave_i[ARGMAX_BLOCK / WAVE];
  __shared__ int wave_bad[ARGMAX_BLOCK / WAVE];
  if (wave_lane() == 0) {
    wave_v[wave_index()] = best_v;
    wave_i[wave_index()] = best_i;
    wave_bad[wave_index()] = bad;
  }
  block_sync();
  if (t == 0) {
    for (int w = 1; w < ARGMAX_BLOCK / WAVE; ++w) {
      bad |= wave_bad[w];
      if (argmax_beats(wave_v[w], wave_i[w], best_v, best_i)) {
        best_v = wave_v[w];
        best_i = wave_i[w];
      }
    }
    // every value -inf leaves best_v at -inf (n ≤ 0 leaves no candidate at all)
    const bool invalid = bad || best_i == none || best_v == -wf_inf();
    if (invalid) WF_PATH(0, PATH_INVALID);
    out[0] = invalid ? -1 : best_i;
  }
}

extern "C" __global__ void __launch_bounds__(ARGMAX_BLOCK) argmax(const float* x, int n, int* out) {
  argmax_kernel(x, n, out);
}
