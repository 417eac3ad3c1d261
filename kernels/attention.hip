// Causal grouped-query attention over the KV arena (the simple, correct kernel; the fused
// flash-style kernel is a later issue). For query row i at position p = pos0 + i and head h,
// with KV head kvh = h / (n_heads / n_kv_heads):
//   s_j = (q[i, h, :] · K[kvh, j, :]) · scale            for keys j = first ..= p
//   s_j ← softcap · tanh(s_j / softcap) where softcap > 0 (Gemma 2's attention logit
//   soft-cap, common.h wf_softcap; 0: off, a launch constant, so the branch is uniform)
//   first = 0, or with a sliding window of W keys (window > 0; Mistral) p + 1 − W when positive:
//   the keys p − W < j ≤ p (transformers' sliding_window_overlay); keys before are never read
//   out[i, h, :] = Σ_j softmax(s)_j · V[kvh, j, :]        (max-subtracted softmax)
//
// Shapes: q, out (rows, n_heads, head_dim) f32; arena (n_layers, 2, n_kv_heads, capacity,
//   head_dim) of T ∈ {f32, f16, bf16, q8_0} (q8_0: common.h Q8, read element by element),
//   K at kv = 0, V at kv = 1 (engine/src/kv_cache.rs).
// Launch: grid (n_heads, rows); block B: attention_{T} (prefill rows) B = ATTENTION_BLOCK = 128;
//   attention_decode_{T} (one row) B = ATTENTION_DECODE_BLOCK = 1024, so a decode row walks its
//   keys 1024 / WAVE at a time (a few hundred keys: a few iterations, not dozens) while prefill
//   keeps many small blocks with the registers of a 128-thread launch. No dynamic shared memory
//   (static: the waves' partial accumulators, B / WAVE · 256 f32 ≤ 32 KiB).
//   (gridDim.y limits rows to 65535 per launch.)
// Indexing: block (h, i). The block's NW = B / WAVE waves split the keys: wave w takes
//   j = first + w, first + w + NW, …; every wave runs the same number of iterations,
//   ceil((p + 1 − first) / NW), idle on j > p, so the wave reductions stay block-uniform. Lane l
//   owns the dims d = l + c·WAVE (c < 256 / WAVE, d < head_dim): it holds q[d] and the
//   accumulator for out[d], and reads K[j][d], V[j][d] (coalesced across lanes).
// Softmax, per wave online: running max m, running sum ℓ = Σ e^(s - m), accumulator
//   a = Σ e^(s - m)·V[j]; on a new key m' = max(m, s), both are rescaled by e^(m - m').
//   The waves are then merged in shared memory with M = max_w m_w:
//   out[d] = Σ_w a_w[d]·e^(m_w - M) / Σ_w ℓ_w·e^(m_w - M).
// Position source: `step` null: pos0 as given. `step` non-null: a decode step's block
//   (engine/src/backend/gpu/step.rs), pos0 = step[1], read on the device, so one captured
//   launch serves every length; a pos0 outside [0, capacity − rows] writes nothing.
// Contract (checked by the host): head_dim ≤ 256, n_heads a multiple of n_kv_heads,
//   pos0 + rows ≤ capacity, layer < n_layers, window ≥ 0 (0: none), scale finite, softcap ≥ 0
//   finite (0: none).
// Paths (WF_PATH, slot = the KV type's codec id; + 4 for attention_decode_{T}):
//   keys:       a wave folds a key into its running (m, ℓ, a)
//   empty_wave: the merge meets a wave that saw no key (fewer keys than waves)
//   step:       pos0 read from the step block (attention_decode_{T})
//   softcap:    a key's score soft-capped (softcap > 0)

#include "common.h"

enum AttentionPath { PATH_KEYS, PATH_EMPTY_WAVE, PATH_STEP, PATH_SOFTCAP };

constexpr int ATTENTION_BLOCK = 128;          // attention_{T}: prefill rows
constexpr int ATTENTION_DECODE_BLOCK = 1024;  // attention_decode_{T}: one decode row
constexpr int ATTENTION_MAX_HEAD_DIM = 256;
constexpr int ATTENTION_DIMS = ATTENTION_MAX_HEAD_DIM / WAVE;  // dims per lane

template <class KV, int BLOCK>
__device__ void attention_kernel(const float* q, const typename KV::storage* arena, float* out,
                                 int layer, int pos0, int rows, int n_heads, int n_kv_heads,
                                 int head_dim, int capacity, float scale, const int* step,
                                 int window, float softcap) {
  const int h = block_index_x(), i = block_index_y();
  if (h >= n_heads || i >= rows || head_dim > ATTENTION_MAX_HEAD_DIM) return;
  constexpr int NW = BLOCK / WAVE;  // waves
  constexpr bool DECODE = BLOCK == ATTENTION_DECODE_BLOCK;
  const int slot = KV::id + (DECODE ? 4 : 0);
  if (step != nullptr) {
    pos0 = step[1];
    if (DECODE && h == 0 && i == 0 && thread_index() == 0) WF_PATH(slot, PATH_STEP);
    if (pos0 < 0 || pos0 > capacity - rows) return;
  }
  const int kvh = h / (n_heads / n_kv_heads);
  const int pos = pos0 + i;
  // causal, within the window: positions first ..= pos
  const int first = (window > 0 && pos + 1 > window) ? pos + 1 - window : 0;
  const int keys = pos + 1 - first;
  const int lane = wave_lane(), w = wave_index();
  const float* qh = q + ((i64)i * n_heads + h) * head_dim;  // (head_dim)
  // element bases of the (capacity, head_dim) K and V planes of (layer, kvh)
  const i64 kh = (((i64)layer * 2 + 0) * n_kv_heads + kvh) * capacity * head_dim;
  const i64 vh = (((i64)layer * 2 + 1) * n_kv_heads + kvh) * capacity * head_dim;

  float qv[ATTENTION_DIMS], acc[ATTENTION_DIMS];
#pragma unroll
  for (int c = 0; c < ATTENTION_DIMS; ++c) {
    const int d = lane + c * WAVE;
    qv[c] = d < head_dim ? qh[d] : 0.0f;
    acc[c] = 0.0f;
  }
  float m = -wf_inf(), l = 0.0f;
  const float inv_cap = softcap > 0.0f ? 1.0f / softcap : 0.0f;

  const int iters = (keys + NW - 1) / NW;
  for (int it = 0; it < iters; ++it) {
    const int j = first + it * NW + w;
    const bool valid = it * NW + w < keys;
    float part = 0.0f;
    if (valid) {
      const i64 kj = kh + (i64)j * head_dim;
#pragma unroll
      for (int c = 0; c < ATTENTION_DIMS; ++c) {
        const int d = lane + c * WAVE;
        if (d < head_dim) part += qv[c] * kv_read<KV>(arena, kj + d);
      }
    }
    float s = wave_sum(part) * scale;  // every lane of the wave: s_j
    if (softcap > 0.0f) s = wf_softcap(s, softcap, inv_cap);
    if (valid) {
      WF_PATH(slot, PATH_KEYS);
      if (softcap > 0.0f) WF_PATH(slot, PATH_SOFTCAP);
      const float m_new = max_num(m, s);
      const float corr = wf_expf(m - m_new);  // 0 on the first key (m = -inf)
      const float p = wf_expf(s - m_new);
      l = l * corr + p;
      const i64 vj = vh + (i64)j * head_dim;
#pragma unroll
      for (int c = 0; c < ATTENTION_DIMS; ++c) {
        const int d = lane + c * WAVE;
        if (d < head_dim) acc[c] = acc[c] * corr + p * kv_read<KV>(arena, vj + d);
      }
      m = m_new;
    }
  }

  // Merge the waves.
  __shared__ float wave_m[NW], wave_l[NW];
  __shared__ float wave_acc[NW][ATTENTION_MAX_HEAD_DIM];
  if (lane == 0) {
    wave_m[w] = m;
    wave_l[w] = l;
  }
#pragma unroll
  for (int c = 0; c < ATTENTION_DIMS; ++c) {
    const int d = lane + c * WAVE;
    if (d < head_dim) wave_acc[w][d] = acc[c];
  }
  block_sync();
  float big_m = -wf_inf();
#pragma unroll
  for (int u = 0; u < NW; ++u) big_m = max_num(big_m, wave_m[u]);
  float* o = out + ((i64)i * n_heads + h) * head_dim;  // (head_dim)
  for (int d = thread_index(); d < head_dim; d += BLOCK) {
    float num = 0.0f, den = 0.0f;
#pragma unroll
    for (int u = 0; u < NW; ++u) {
      // a wave that saw no key (m = -inf) contributes nothing
      if (wave_m[u] == -wf_inf()) WF_PATH(slot, PATH_EMPTY_WAVE);
      const float f = wave_m[u] == -wf_inf() ? 0.0f : wf_expf(wave_m[u] - big_m);
      num += wave_acc[u][d] * f;
      den += wave_l[u] * f;
    }
    o[d] = num / den;
  }
}

extern "C" __global__ void __launch_bounds__(ATTENTION_BLOCK)
    attention_f32(const float* q, const float* arena, float* out, int layer, int pos0, int rows,
        int n_heads, int n_kv_heads, int head_dim, int capacity, float scale,
        const int* step, int window, float softcap) {
  attention_kernel<F32, ATTENTION_BLOCK>(q, arena, out, layer, pos0, rows, n_heads, n_kv_heads, head_dim,
                             capacity, scale, step, window, softcap);
}

extern "C" __global__ void __launch_bounds__(ATTENTION_DECODE_BLOCK)
    attention_decode_f32(const float* q, const float* arena, float* out, int layer, int pos0, int rows,
        int n_heads, int n_kv_heads, int head_dim, int capacity, float scale,
        const int* step, int window, float softcap) {
  attention_kernel<F32, ATTENTION_DECODE_BLOCK>(q, arena, out, layer, pos0, rows, n_heads, n_kv_heads, head_dim,
                             capacity, scale, step, window, softcap);
}

extern "C" __global__ void __launch_bounds__(ATTENTION_BLOCK)
    attention_f16(const float* q, const uint16_t* arena, float* out, int layer, int pos0, int rows,
        int n_heads, int n_kv_heads, int head_dim, int capacity, float scale,
        const int* step, int window, float softcap) {
  attention_kernel<F16, ATTENTION_BLOCK>(q, arena, out, layer, pos0, rows, n_heads, n_kv_heads, head_dim,
                             capacity, scale, step, window, softcap);
}

extern "C" __global__ void __launch_bounds__(ATTENTION_DECODE_BLOCK)
    attention_decode_f16(const float* q, const uint16_t* arena, float* out, int layer, int pos0, int rows,
        int n_heads, int n_kv_heads, int head_dim, int capacity, float scale,
        const int* step, int window, float softcap) {
  attention_kernel<F16, ATTENTION_DECODE_BLOCK>(q, arena, out, layer, pos0, rows, n_heads, n_kv_heads, head_dim,
                             capacity, scale, step, window, softcap);
}

extern "C" __global__ void __launch_bounds__(ATTENTION_BLOCK)
    attention_bf16(const float* q, const uint16_t* arena, float* out, int layer, int pos0, int rows,
        int n_heads, int n_kv_heads, int head_dim, int capacity, float scale,
        const int* step, int window, float softcap) {
  attention_kernel<BF16, ATTENTION_BLOCK>(q, arena, out, layer, pos0, rows, n_heads, n_kv_heads, head_dim,
                             capacity, scale, step, window, softcap);
}

extern "C" __global__ void __launch_bounds__(ATTENTION_DECODE_BLOCK)
    attention_decode_bf16(const float* q, const uint16_t* arena, float* out, int layer, int pos0, int rows,
        int n_heads, int n_kv_heads, int head_dim, int capacity, float scale,
        const int* step, int window, float softcap) {
  attention_kernel<BF16, ATTENTION_DECODE_BLOCK>(q, arena, out, layer, pos0, rows, n_heads, n_kv_heads, head_dim,
                             capacity, scale, step, window, softcap);
}

extern "C" __global__ void __launch_bounds__(ATTENTION_BLOCK)
    attention_q8_0(const float* q, const uint8_t* arena, float* out, int layer, int pos0,
                   int rows, int n_heads, int n_kv_heads, int head_dim, int capacity,
                   float scale, const int* step, int window, float softcap) {
  attention_kernel<Q8, ATTENTION_BLOCK>(q, arena, out, layer, pos0, rows, n_heads, n_kv_heads,
                                        head_dim, capacity, scale, step, window, softcap);
}

extern "C" __global__ void __launch_bounds__(ATTENTION_DECODE_BLOCK)
    attention_decode_q8_0(const float* q, const uint8_t* arena, float* out, int layer, int pos0,
                          int rows, int n_heads, int n_kv_heads, int head_dim, int capacity,
                          float scale, const int* step, int window, float softcap) {
  attention_kernel<Q8, ATTENTION_DECODE_BLOCK>(q, arena, out, layer, pos0, rows, n_heads,
                                               n_kv_heads, head_dim, capacity, scale, step, window,
                                               softcap);
}
