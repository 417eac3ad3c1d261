// RMSNorm with the residual add fused:
//   if residual: x += residual (written back to x);
//   out = w · (x · 1/sqrt(mean(x²) + eps)), or with accumulate (Gemma's post-norms, the residual
//   add after the norm): out += w · (x · 1/sqrt(mean(x²) + eps)).
//
// Shapes: x, residual, out (rows, dim) f32; w (dim) f32. residual may be null; with accumulate,
//   out must not alias x.
// Launch: grid (rows); block RMS_NORM_BLOCK = 256; no dynamic shared memory.
// Indexing: block r owns row r. Pass 1 adds the residual, writes x back and sums x²; the block
//   reduction gives every thread the row's sum; pass 2 reads x again and writes out. When all
//   row pointers and w start on 16 bytes, thread t handles the float4 vectors t, t + 256, …
//   then the scalar tail dim mod 4; otherwise elements t, t + 256, …. Both passes use the
//   same partition, so each thread re-reads only the x elements it wrote itself.
// Arithmetic as the CPU backend: the mean is sum / dim in f32, the scale 1/sqrt (correctly
// rounded sqrt and division), and out = w · (x · scale) in that order; accumulate adds that
// product to out as one f32 add (as the CPU backend's rms_norm into scratch, then add).
// Paths (WF_PATH, slot 0):
//   vec:      the row and w start on 16 bytes: float4 passes
//   tail:     after the vectors, the dim mod 4 elements, scalar
//   scalar:   a row not on 16 bytes: every element scalar
//   residual: the fused residual add (x += residual, written back)
//   accumulate: out += the normalised row (not out =)

#include "common.h"

constexpr int RMS_NORM_BLOCK = 256;
enum RmsNormPath { PATH_VEC, PATH_TAIL, PATH_SCALAR, PATH_RESIDUAL, PATH_ACCUMULATE };

__device__ void rms_norm_kernel(float* x, const float* residual, const float* w, float* out,
                                int rows, int dim, float eps, int accumulate) {
  const int r = block_index_x();
  if (r >= rows) return;
  const int t = thread_index();
  float* xr = x + (i64)r * dim;                                         // (dim)
  const float* rr = residual ? residual + (i64)r * dim : (const float*)0;  // (dim) or null
  float* orow = out + (i64)r * dim;                                     // (dim)
  const bool vec = is_aligned(xr, 16) && is_aligned(orow, 16) && is_aligned(w, 16) &&
                   (rr == 0 || is_aligned(rr, 16));
  const int n_vec = vec ? dim / 4 : 0;

  // Pass 1: x += residual; sum of squares.
  float ss = 0.0f;
  for (int k = t; k < n_vec; k += RMS_NORM_BLOCK) {
    WF_PATH(0, PATH_VEC);
    float v[4];
    load_f32x4(xr + 4 * k, v);
    if (rr) {
      WF_PATH(0, PATH_RESIDUAL);
      float a[4];
      load_f32x4(rr + 4 * k, a);
#pragma unroll
      for (int j = 0; j < 4; ++j) v[j] += a[j];
      store_f32x4(xr + 4 * k, v);
    }
#pragma unroll
    for (int j = 0; j < 4; ++j) ss += v[j] * v[j];
  }
  for (int i = 4 * n_vec + t; i < dim; i += RMS_NORM_BLOCK) {
    WF_PATH(0, vec ? PATH_TAIL : PATH_SCALAR);
    float v = xr[i];
    if (rr) {
      WF_PATH(0, PATH_RESIDUAL);
      v += rr[i];
      xr[i] = v;
    }
    ss += v * v;
  }
  ss = block_sum<RMS_NORM_BLOCK>(ss);
  const float scale = 1.0f / wf_sqrtf(ss / (float)dim + eps);

  // Pass 2: out = w · (x · scale), or out += it.
  if (accumulate) WF_PATH(0, PATH_ACCUMULATE);
  for (int k = t; k < n_vec; k += RMS_NORM_BLOCK) {
    float v[4], g[4], o[4];
    load_f32x4(xr + 4 * k, v);
    load_f32x4(w + 4 * k, g);
#pragma unroll
    for (int j = 0; j < 4; ++j) o[j] = g[j] * (v[j] * scale);
    if (accumulate) {
      float a[4];
      load_f32x4(orow + 4 * k, a);
#pragma unroll
      for (int j = 0; j < 4; ++j) o[j] = a[j] + o[j];
    }
    store_f32x4(orow + 4 * k, o);
  }
  for (int i = 4 * n_vec + t; i < dim; i += RMS_NORM_BLOCK) {
    const float o = w[i] * (xr[i] * scale);
    orow[i] = accumulate ? orow[i] + o : o;
  }
}

extern "C" __global__ void __launch_bounds__(RMS_NORM_BLOCK)
    rms_norm(float* x, const float* residual, const float* w, float* out, int rows, int dim,
             float eps, int accumulate) {
  rms_norm_kernel(x, residual, w, out, rows, dim, eps, accumulate);
}
