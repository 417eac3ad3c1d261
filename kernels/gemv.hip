// Batch-1 matrix-vector products over 16-bit weights (the decode step's projections):
//   gemv_{f16,bf16}:        out (M) = x (K) · Wᵀ (+ bias), M = m0 + m1 + m2 rows stacked
//                           [W_0; W_1; W_2] (fused QKV), row r written to out0[r] (r < m0),
//                           out1[r − m0] (r < m0 + m1) or out2[r − m0 − m1];
//   gemv_swiglu_{f16,bf16}: out (I) = silu(x · W_gᵀ) ⊙ (x · W_uᵀ) for W = [W_g; W_u] (2·I, K),
//                           silu as the `swiglu` kernel of elementwise.hip: g / (1 + e^(−g)) · u.
// Arithmetic as the BLAS path (convert + GEMM): every x element rounded to the weight type
// (round to nearest even, common.h's codec, as convert_f32_to_*), products and sums in f32 (FMA).
//
// Shapes: w (M, K) or (2·I, K) row-major f16/bf16; x (K) f32; bias (M) f32 or null (stacked as
//         w); out0 (m0), out1 (m1), out2 (m2) f32 (m1, m2 may be 0, their pointers then unused);
//         out (I) f32 for the SwiGLU form.
// Launch: grid (ceil(M / ROWS)) — ceil(I / ROWS) for gemv_swiglu — with ROWS = GEMV_BLOCK / WAVE
//   rows per block; block GEMV_BLOCK = 256 (8 waves at WAVE=32, 4 at 64); no dynamic shared
//   memory (x is read as f32 through the cache by every wave).
// Indexing: wave w of block b owns row r = b·ROWS + w (gemv_swiglu: rows r and I + r, at once).
//   When the row(s) and x start on 16 bytes, lane l reads the 16-byte vectors (8 weights) l,
//   l + WAVE, …, GEMV_UNROLL of them in flight before their FMAs (GEMV_UNROLL / 2 per row in
//   the SwiGLU form), each x vector rounded once for all its rows, then the scalar tail K mod 8
//   (elements 8·⌊K/8⌋ + l, + WAVE, …); a row off 16 bytes (K not a multiple of 8: every row
//   whose offset r·K is not ≡ 0 mod 8) is read scalar, elements l, l + WAVE, …. Each lane keeps
//   one f32 sum per row; the wave folds them with the butterfly of common.h (a fixed order:
//   deterministic, no atomics), lane 0 adds the bias and writes.
// Contract: M·K and 2·I·K elements within w, K ≥ 0 and M, I < 2^31 (checked by the host);
//   every thread of the block reaches the wave reduction (block-uniform, as WAVE=64 emulation
//   needs): waves past the last row reduce zeros and write nothing.
// Paths (WF_PATH; slot 0 gemv_f16, 1 gemv_bf16, 2 gemv_swiglu_f16, 3 gemv_swiglu_bf16; the
// SwiGLU kernels have the first three):
//   vec:    the row(s) and x on 16 bytes: 16-byte weight loads, GEMV_UNROLL in flight
//   tail:   after the vectors, the K mod 8 elements, scalar
//   scalar: a row off 16 bytes (or x): every element scalar
//   bias:   the bias added in the epilogue
//   out0:   a row of the first stacked matrix, written to out0
//   out1:   a row of the second, written to out1
//   out2:   a row of the third, written to out2

#include "common.h"

constexpr int GEMV_BLOCK = 256;
constexpr int GEMV_UNROLL = 4;  // 16-byte weight loads per lane in flight (over all its rows)
enum GemvPath { PATH_VEC, PATH_TAIL, PATH_SCALAR, PATH_BIAS, PATH_OUT0, PATH_OUT1, PATH_OUT2 };

// x[i] as the GEMM sees it: rounded to the weights' type and widened back (exact).
template <class C>
WF_DEVICE float rounded_x(float x) {
  return C::load(C::store(x));
}

// acc[j] += Σ_i W_j[i] · x[i] over this lane's share of the NR rows `rows[j]` (each K long).
// `vec`: the rows and x start on 16 bytes (wave-uniform).
template <class C, int NR>
WF_DEVICE void dot_rows(const uint16_t* const (&rows)[NR], const float* x, int k, bool vec,
                        int slot, float (&acc)[NR]) {
  constexpr int U = GEMV_UNROLL / NR;  // vectors per row per step
  const int lane = wave_lane();
  const int n_vec = vec ? k / 8 : 0;
  int v = lane;
  // U vectors of each row per step: all NR·U loads issued before the FMAs that use them.
  for (; v + (U - 1) * WAVE < n_vec; v += U * WAVE) {
    WF_PATH(slot, PATH_VEC);
    uint16_t h[NR][U][8];
#pragma unroll
    for (int u = 0; u < U; ++u) {
#pragma unroll
      for (int j = 0; j < NR; ++j) load_u16x8(rows[j] + (i64)(v + u * WAVE) * 8, h[j][u]);
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const float* xp = x + (i64)(v + u * WAVE) * 8;
      float xa[4], xb[4];
      load_f32x4(xp, xa);
      load_f32x4(xp + 4, xb);
      float xs[8];
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        xs[e] = rounded_x<C>(xa[e]);
        xs[e + 4] = rounded_x<C>(xb[e]);
      }
#pragma unroll
      for (int j = 0; j < NR; ++j) {
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[j] = wf_fmaf(C::load(h[j][u][e]), xs[e], acc[j]);
      }
    }
  }
  // The last < U vectors of this lane, one at a time.
  for (; v < n_vec; v += WAVE) {
    WF_PATH(slot, PATH_VEC);
    uint16_t h[NR][8];
#pragma unroll
    for (int j = 0; j < NR; ++j) load_u16x8(rows[j] + (i64)v * 8, h[j]);
    const float* xp = x + (i64)v * 8;
    float xa[4], xb[4];
    load_f32x4(xp, xa);
    load_f32x4(xp + 4, xb);
    float xs[8];
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      xs[e] = rounded_x<C>(xa[e]);
      xs[e + 4] = rounded_x<C>(xb[e]);
    }
#pragma unroll
    for (int j = 0; j < NR; ++j) {
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[j] = wf_fmaf(C::load(h[j][e]), xs[e], acc[j]);
    }
  }
  // Scalar: the tail after the vectors, or the whole row off 16 bytes.
  for (int i = n_vec * 8 + lane; i < k; i += WAVE) {
    WF_PATH(slot, vec ? PATH_TAIL : PATH_SCALAR);
    const float xi = rounded_x<C>(x[i]);
#pragma unroll
    for (int j = 0; j < NR; ++j) acc[j] = wf_fmaf(C::load(rows[j][i]), xi, acc[j]);
  }
}

template <class C>
WF_DEVICE void gemv_kernel(const uint16_t* w, const float* x, const float* bias, float* out0,
                            float* out1, float* out2, int m0, int m1, int m2, int k) {
  const int slot = C::id - 1;
  const int m = m0 + m1 + m2;
  const int r = block_index_x() * (GEMV_BLOCK / WAVE) + wave_index();
  const bool live = r < m;
  float acc[1] = {0.0f};
  if (live) {
    const uint16_t* const rows[1] = {w + (i64)r * k};  // (k)
    const bool vec = is_aligned(rows[0], 16) && is_aligned(x, 16);
    dot_rows<C, 1>(rows, x, k, vec, slot, acc);
  }
  const float s = wave_sum(acc[0]);  // every wave of the block, live or not
  if (live && wave_lane() == 0) {
    float y = s;
    if (bias) {
      WF_PATH(slot, PATH_BIAS);
      y += bias[r];
    }
    if (r < m0) {
      WF_PATH(slot, PATH_OUT0);
      out0[r] = y;
    } else if (r < m0 + m1) {
      WF_PATH(slot, PATH_OUT1);
      out1[r - m0] = y;
    } else {
      WF_PATH(slot, PATH_OUT2);
      out2[r - m0 - m1] = y;
    }
  }
}

template <class C>
WF_DEVICE void gemv_swiglu_kernel(const uint16_t* w, const float* x, float* out, int inter,
                                  int k) {
  const int slot = C::id + 1;
  const int r = block_index_x() * (GEMV_BLOCK / WAVE) + wave_index();
  const bool live = r < inter;
  float acc[2] = {0.0f, 0.0f};  // gate, up
  if (live) {
    const uint16_t* const rows[2] = {w + (i64)r * k, w + ((i64)inter + r) * k};  // (k) each
    const bool vec = is_aligned(rows[0], 16) && is_aligned(rows[1], 16) && is_aligned(x, 16);
    dot_rows<C, 2>(rows, x, k, vec, slot, acc);
  }
  const float g = wave_sum(acc[0]);
  const float u = wave_sum(acc[1]);
  if (live && wave_lane() == 0) out[r] = g / (1.0f + wf_expf(-g)) * u;
}

extern "C" __global__ void __launch_bounds__(GEMV_BLOCK)
    gemv_f16(const uint16_t* w, const float* x, const float* bias, float* out0, float* out1,
             float* out2, int m0, int m1, int m2, int k) {
  gemv_kernel<F16>(w, x, bias, out0, out1, out2, m0, m1, m2, k);
}

extern "C" __global__ void __launch_bounds__(GEMV_BLOCK)
    gemv_bf16(const uint16_t* w, const float* x, const float* bias, float* out0, float* out1,
              float* out2, int m0, int m1, int m2, int k) {
  gemv_kernel<BF16>(w, x, bias, out0, out1, out2, m0, m1, m2, k);
}

extern "C" __global__ void __launch_bounds__(GEMV_BLOCK)
    gemv_swiglu_f16(const uint16_t* w, const float* x, float* out, int inter, int k) {
  gemv_swiglu_kernel<F16>(w, x, out, inter, k);
}

extern "C" __global__ void __launch_bounds__(GEMV_BLOCK)
    gemv_swiglu_bf16(const uint16_t* w, const float* x, float* out, int inter, int k) {
  gemv_swiglu_kernel<BF16>(w, x, out, inter, k);
}
