// Sampling on the device: greedy argmax (only the id crosses to the host) and a row softmax.
//
// argmax: out[0] = the index of the largest x[i], i < n; the lowest index on ties; NaN never
//   wins: -1 when no element is a number (all NaN, or n ≤ 0), which the host reports as an
//   error rather than taking a token it did not choose.
//   Shapes: x (n) f32; out (1) i32.
//   Launch: grid (1); block ARGMAX_BLOCK = 1024; no dynamic shared memory.
//   Indexing: thread t scans its elements in ascending order (float4 vectors t, t + 1024, …
//   when x is 16-byte aligned, then the scalar tail; else elements t, t + 1024, …), keeping
//   the first maximum; the (value, index) pairs are then reduced over the wave and the waves
//   with the order "larger value, then smaller index", which is total on the candidates
//   (no NaN ever becomes a candidate).
//
// softmax_rows: each row of x (rows, n) f32 in place: x ← e^(x - max) / Σ e^(x - max).
//   Launch: grid (rows); block SOFTMAX_BLOCK = 1024; no dynamic shared memory.
//   Indexing: block r owns row r; three passes (max; exponentials written back and summed;
//   division), each thread on the same elements in every pass (float4 vectors t, t + 1024, …
//   and the scalar tail when the row is 16-byte aligned, else elements t, t + 1024, …).

#include "common.h"

constexpr int ARGMAX_BLOCK = 1024;
constexpr int SOFTMAX_BLOCK = 1024;

// (v, i) beats (best_v, best_i): larger value, or equal value and smaller index. NaN v never
// beats anything (both comparisons are false).
WF_DEVICE bool argmax_beats(float v, int i, float best_v, int best_i) {
  return v > best_v || (v == best_v && i < best_i);
}

__device__ void argmax_kernel(const float* x, int n, int* out) {
  const int t = thread_index();
  const int none = 0x7fffffff;  // index of "no candidate yet"
  float best_v = -wf_inf();
  int best_i = none;
  int tail = 0;
  if (is_aligned(x, 16)) {
    const int n_vec = n / 4;
    for (int k = t; k < n_vec; k += ARGMAX_BLOCK) {
      float v[4];
      load_f32x4(x + 4 * k, v);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        if (argmax_beats(v[j], 4 * k + j, best_v, best_i)) {
          best_v = v[j];
          best_i = 4 * k + j;
        }
      }
    }
    tail = 4 * n_vec;
  }
  for (int i = tail + t; i < n; i += ARGMAX_BLOCK) {
    if (argmax_beats(x[i], i, best_v, best_i)) {
      best_v = x[i];
      best_i = i;
    }
  }
  // wave: butterfly over (value, index) pairs
#pragma unroll
  for (int m = WAVE / 2; m > 0; m >>= 1) {
    const float ov = wave_shfl_xor(best_v, m);
    const int oi = wave_shfl_xor(best_i, m);
    if (argmax_beats(ov, oi, best_v, best_i)) {
      best_v = ov;
      best_i = oi;
    }
  }
  // block: one pair per wave, folded by thread 0
  __shared__ float wave_v[ARGMAX_BLOCK / WAVE];
  __shared__ int wave_i[ARGMAX_BLOCK / WAVE];
  if (wave_lane() == 0) {
    wave_v[wave_index()] = best_v;
    wave_i[wave_index()] = best_i;
  }
  block_sync();
  if (t == 0) {
    for (int w = 1; w < ARGMAX_BLOCK / WAVE; ++w) {
      if (argmax_beats(wave_v[w], wave_i[w], best_v, best_i)) {
        best_v = wave_v[w];
        best_i = wave_i[w];
      }
    }
    out[0] = best_i == none ? -1 : best_i;
  }
}

__device__ void softmax_rows_kernel(float* x, int rows, int n) {
  const int r = block_index_x();
  if (r >= rows) return;
  const int t = thread_index();
  float* xr = x + (i64)r * n;  // (n)
  const int n_vec = is_aligned(xr, 16) ? n / 4 : 0;

  // Pass 1: the row's maximum.
  float mx = -wf_inf();
  for (int k = t; k < n_vec; k += SOFTMAX_BLOCK) {
    float v[4];
    load_f32x4(xr + 4 * k, v);
#pragma unroll
    for (int j = 0; j < 4; ++j) mx = max_num(mx, v[j]);
  }
  for (int i = 4 * n_vec + t; i < n; i += SOFTMAX_BLOCK) mx = max_num(mx, xr[i]);
  mx = block_max<SOFTMAX_BLOCK>(mx);

  // Pass 2: e^(x - max), written back, and their sum.
  float sum = 0.0f;
  for (int k = t; k < n_vec; k += SOFTMAX_BLOCK) {
    float v[4];
    load_f32x4(xr + 4 * k, v);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      v[j] = wf_expf(v[j] - mx);
      sum += v[j];
    }
    store_f32x4(xr + 4 * k, v);
  }
  for (int i = 4 * n_vec + t; i < n; i += SOFTMAX_BLOCK) {
    const float e = wf_expf(xr[i] - mx);
    xr[i] = e;
    sum += e;
  }
  sum = block_sum<SOFTMAX_BLOCK>(sum);

  // Pass 3: normalise (the elements this thread wrote in pass 2).
  for (int k = t; k < n_vec; k += SOFTMAX_BLOCK) {
    float v[4];
    load_f32x4(xr + 4 * k, v);
#pragma unroll
    for (int j = 0; j < 4; ++j) v[j] = v[j] / sum;
    store_f32x4(xr + 4 * k, v);
  }
  for (int i = 4 * n_vec + t; i < n; i += SOFTMAX_BLOCK) xr[i] = xr[i] / sum;
}

extern "C" __global__ void __launch_bounds__(ARGMAX_BLOCK) argmax(const float* x, int n, int* out) {
  argmax_kernel(x, n, out);
}

extern "C" __global__ void __launch_bounds__(SOFTMAX_BLOCK) softmax_rows(float* x, int rows, int n) {
  softmax_rows_kernel(x, rows, n);
}
