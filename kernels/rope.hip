// RoPE (Hugging Face rotate-half) fused with the KV write, for positions pos0 .. pos0 + rows:
//   q is rotated in place, k is rotated into the arena's K rows, v is copied to its V rows.
// Rotation of a head vector x (head_dim) at position p, with half = head_dim / 2 and
// angle θ_d = (float)p · inv_freq[d] (f32 product, sin/cos of it accurate, common.h) and the
// attention factor a = inv_freq[half] (LongRoPE's, else 1; sin and cos are multiplied by it
// first, as transformers' `cos = emb.cos() * attention_scaling`):
//   x[d]        ← x[d] · (a·cos θ_d) − x[d + half] · (a·sin θ_d)
//   x[d + half] ← x[d + half] · (a·cos θ_d) + x[d] · (a·sin θ_d)        for d < half.
//
// Shapes: q (rows, n_heads, head_dim) f32; k, v (rows, n_kv_heads, head_dim) f32;
//   inv_freq (head_dim / 2 + 1) f32 (the frequencies, then a); arena (n_layers, 2, n_kv_heads, capacity, head_dim) of
//   T ∈ {f32, f16, bf16, q8_0} (q8_0: common.h Q8, head_dim a multiple of 32): element (layer, kv, head, pos, d) at
//   (((layer·2 + kv)·n_kv_heads + head)·capacity + pos)·head_dim + d, K at kv = 0, V at kv = 1
//   (engine/src/kv_cache.rs).
// Launch: grid (rows); block ROPE_BLOCK = 256; no dynamic shared memory (static: the row's
//   sin/cos table, head_dim floats ≤ 2 KiB).
// Indexing: block i handles row i at position pos0 + i. Its threads first compute the row's
//   sin/cos table (thread t: d = t, t + 256, … < half), shared by every q and k head (the
//   angles depend on pos and d only), then a barrier. Work comes in groups of G consecutive
//   d: G = 4 (float4 loads of q, k, v; K/V stores of 4 elements) when half is a
//   multiple of 4 and every base pointer is 16-byte aligned, else G = 1. Thread t takes
//   groups t, t + 256, … of, in turn: the n_heads·half/G q groups (head h = g / (half/G)),
//   the n_kv_heads·half/G k groups, the n_kv_heads·head_dim/G v groups (q8_0: the
//   n_kv_heads·head_dim/32 Q8_0 blocks of k, then of v, one a thread). Every element is read and
//   written by exactly one thread.
// Position source: `step` null: pos0 as given. `step` non-null: a decode step's block
//   (engine/src/backend/gpu/step.rs), pos0 = step[1], read on the device, so one captured
//   launch serves every position; a pos0 outside [0, capacity − rows] writes nothing.
// Contract (checked by the host): head_dim even and ≤ ROPE_MAX_HEAD_DIM = 512, pos0 + rows ≤
//   capacity, layer < n_layers; q8_0: head_dim a multiple of 32, q, k, v, inv_freq and the
//   arena 16-byte aligned.
// Paths (WF_PATH, slot = the KV type's codec id):
//   g4:   groups of 4 (half a multiple of 4, 16-byte aligned bases): vector loads and stores
//   g1:   groups of 1: every element scalar (never q8_0: see the contract)
//   step: pos0 read from the step block

#include "common.h"

constexpr int ROPE_BLOCK = 256;
constexpr int ROPE_MAX_HEAD_DIM = 512;  // the sin/cos table in shared memory: 2 KiB
enum RopePath { PATH_G4, PATH_G1, PATH_STEP };

// G consecutive values at p, G = 4 (one vector access: 16 bytes of f32, 8 of 16-bit; p aligned
// to it) or G = 1. Overloads on the array size, so the G = 1 code stays scalar.
WF_DEVICE void load_g(const float* p, float (&v)[4]) { load_f32x4(p, v); }
WF_DEVICE void load_g(const float* p, float (&v)[1]) { v[0] = p[0]; }
WF_DEVICE void store_g(float* p, const float (&v)[4]) { store_f32x4(p, v); }
WF_DEVICE void store_g(float* p, const float (&v)[1]) { p[0] = v[0]; }
template <class KV>
WF_DEVICE void store_g_as(typename KV::storage* p, const float (&v)[4]) {
  store4<KV>(p, v);
}
template <class KV>
WF_DEVICE void store_g_as(typename KV::storage* p, const float (&v)[1]) {
  p[0] = KV::store(v[0]);
}

// Rotates the pairs (d .. d+G, d+half .. d+half+G) of one head vector x with the row's
// sin/cos table (sn, cs: half entries, shared memory).
template <int G>
WF_DEVICE void rotate_g(const float* x, int d, int half, const float* sn, const float* cs,
                        float (&lo)[G], float (&hi)[G]) {
  float a[G], b[G];
  load_g(x + d, a);
  load_g(x + d + half, b);
#pragma unroll
  for (int j = 0; j < G; ++j) {
    const float s = sn[d + j], c = cs[d + j];
    lo[j] = a[j] * c - b[j] * s;
    hi[j] = b[j] * c + a[j] * s;
  }
}

// The row's rotated K and plain V heads into the arena at element bases k_base, v_base (head h
// at + h·head_stride).
template <class KV, int G>
struct KvRows {
  static WF_DEVICE void write(const float* krow, const float* vrow, typename KV::storage* arena,
                              i64 k_base, i64 v_base, i64 head_stride, int n_kv_heads,
                              int head_dim, const float* sn, const float* cs) {
    const int t = thread_index(), half = head_dim / 2, groups = half / G;
    for (int g = t; g < n_kv_heads * groups; g += ROPE_BLOCK) {
      const int h = g / groups, d = (g - h * groups) * G;
      float lo[G], hi[G];
      rotate_g<G>(krow + (i64)h * head_dim, d, half, sn, cs, lo, hi);
      typename KV::storage* dst = arena + k_base + h * head_stride;
      store_g_as<KV>(dst + d, lo);
      store_g_as<KV>(dst + d + half, hi);
    }
    for (int g = t; g < n_kv_heads * head_dim / G; g += ROPE_BLOCK) {
      const int e = g * G, h = e / head_dim, d = e - h * head_dim;
      float x[G];
      load_g(vrow + e, x);
      store_g_as<KV>(arena + v_base + h * head_stride + d, x);
    }
  }
};

// Q8_0: a thread per block of 32 elements (head_dim a multiple of 32): it rotates (K) or
// copies (V) the block's 32 values, quantizes them (common.h Q8) and writes the 32 quants as
// two 16-byte stores and the f16 scale. Each element is rotated by rotate_g<1>'s expressions.
template <int G>
struct KvRows<Q8, G> {
  static WF_DEVICE void store_block(uint8_t* arena, i64 e, const float (&x)[32]) {
    float amax = 0.0f;
#pragma unroll
    for (int i = 0; i < 32; ++i) amax = max_num(amax, x[i] < 0.0f ? -x[i] : x[i]);
    uint16_t dh;
    float id;
    Q8::scale(amax, &dh, &id);
    uint32_t w[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) w[i] = 0;
#pragma unroll
    for (int i = 0; i < 32; ++i)
      w[i >> 2] |= ((uint32_t)Q8::quant(x[i], id) & 0xffu) << ((i & 3) * 8);
    wf_u32x4* q = (wf_u32x4*)(arena + Q8::quant_byte(e));
    q[0] = wf_u32x4{w[0], w[1], w[2], w[3]};
    q[1] = wf_u32x4{w[4], w[5], w[6], w[7]};
    *(uint16_t*)(arena + Q8::scale_byte(e)) = dh;
  }
  static WF_DEVICE void write(const float* krow, const float* vrow, uint8_t* arena, i64 k_base,
                              i64 v_base, i64 head_stride, int n_kv_heads, int head_dim,
                              const float* sn, const float* cs) {
    const int t = thread_index(), half = head_dim / 2, blocks = head_dim / 32;
    for (int b = t; b < 2 * n_kv_heads * blocks; b += ROPE_BLOCK) {
      const bool is_v = b >= n_kv_heads * blocks;
      const int bb = is_v ? b - n_kv_heads * blocks : b;
      const int h = bb / blocks, d0 = (bb - h * blocks) * 32;
      const float* x = (is_v ? vrow : krow) + (i64)h * head_dim;
      float y[32];
#pragma unroll
      for (int i = 0; i < 32; ++i) {
        const int d = d0 + i;
        if (is_v) {
          y[i] = x[d];
        } else if (d < half) {
          y[i] = x[d] * cs[d] - x[d + half] * sn[d];
        } else {
          y[i] = x[d] * cs[d - half] + x[d - half] * sn[d - half];
        }
      }
      store_block(arena, (is_v ? v_base : k_base) + h * head_stride + d0, y);
    }
  }
};

template <class KV, int G>
WF_DEVICE void rope_row(float* q, const float* k, const float* v, const float* inv_freq,
                        typename KV::storage* arena, int layer, int pos, int row, int n_heads,
                        int n_kv_heads, int head_dim, int capacity) {
  const int t = thread_index();
  const int half = head_dim / 2;
  const int groups = half / G;  // groups per head
  const float fpos = (float)pos;
  // The row's angles, once for all heads: sin and cos of pos · inv_freq[d], d < half.
  WF_SHARED float sn[ROPE_MAX_HEAD_DIM / 2], cs[ROPE_MAX_HEAD_DIM / 2];
  const float a = inv_freq[half];
  for (int d = t; d < half; d += ROPE_BLOCK) {
    wf_sincosf(fpos * inv_freq[d], &sn[d], &cs[d]);
    sn[d] *= a;
    cs[d] *= a;
  }
  block_sync();
  float* qrow = q + (i64)row * n_heads * head_dim;           // (n_heads, head_dim)
  const float* krow = k + (i64)row * n_kv_heads * head_dim;  // (n_kv_heads, head_dim)
  const float* vrow = v + (i64)row * n_kv_heads * head_dim;  // (n_kv_heads, head_dim)
  // arena row (layer, kv, h, pos): (head_dim)
  const i64 k_base = ((i64)layer * 2 * n_kv_heads * capacity + pos) * head_dim;
  const i64 v_base = (((i64)layer * 2 + 1) * n_kv_heads * capacity + pos) * head_dim;
  const i64 head_stride = (i64)capacity * head_dim;

  for (int g = t; g < n_heads * groups; g += ROPE_BLOCK) {
    WF_PATH(KV::id, G == 4 ? PATH_G4 : PATH_G1);
    const int h = g / groups, d = (g - h * groups) * G;
    float* x = qrow + (i64)h * head_dim;
    float lo[G], hi[G];
    rotate_g<G>(x, d, half, sn, cs, lo, hi);
    store_g(x + d, lo);
    store_g(x + d + half, hi);
  }
  KvRows<KV, G>::write(krow, vrow, arena, k_base, v_base, head_stride, n_kv_heads, head_dim,
                       sn, cs);
}

template <class KV>
WF_DEVICE void rope_kernel(float* q, const float* k, const float* v, const float* inv_freq,
                           typename KV::storage* arena, int layer, int pos0, int rows,
                           int n_heads, int n_kv_heads, int head_dim, int capacity,
                           const int* step) {
  const int row = block_index_x();
  if (row >= rows) return;
  if (step != nullptr) {
    pos0 = step[1];
    if (row == 0 && thread_index() == 0) WF_PATH(KV::id, PATH_STEP);
    if (pos0 < 0 || pos0 > capacity - rows) return;
  }
  // G = 4 needs half % 4 == 0 (so every row, head and d + half offset keeps the alignment of
  // the base pointers) and 16-byte aligned bases. Q8_0 always takes it: its head_dim is a
  // multiple of 32 and the host passes 16-byte aligned tensors (its contract).
  const bool vec = KV::id == Q8::id ||
                   ((head_dim / 2) % 4 == 0 && is_aligned(q, 16) && is_aligned(k, 16) &&
                    is_aligned(v, 16) && is_aligned(inv_freq, 16) && is_aligned(arena, 16));
  if (vec) {
    rope_row<KV, 4>(q, k, v, inv_freq, arena, layer, pos0 + row, row, n_heads, n_kv_heads,
                    head_dim, capacity);
  } else {
    rope_row<KV, 1>(q, k, v, inv_freq, arena, layer, pos0 + row, row, n_heads, n_kv_heads,
                    head_dim, capacity);
  }
}

extern "C" __global__ void __launch_bounds__(ROPE_BLOCK)
    rope_kv_write_f32(float* q, const float* k, const float* v, const float* inv_freq,
                      float* arena, int layer, int pos0, int rows, int n_heads, int n_kv_heads,
                      int head_dim, int capacity, const int* step) {
  rope_kernel<F32>(q, k, v, inv_freq, arena, layer, pos0, rows, n_heads, n_kv_heads, head_dim,
                   capacity, step);
}

extern "C" __global__ void __launch_bounds__(ROPE_BLOCK)
    rope_kv_write_f16(float* q, const float* k, const float* v, const float* inv_freq,
                      uint16_t* arena, int layer, int pos0, int rows, int n_heads,
                      int n_kv_heads, int head_dim, int capacity, const int* step) {
  rope_kernel<F16>(q, k, v, inv_freq, arena, layer, pos0, rows, n_heads, n_kv_heads, head_dim,
                   capacity, step);
}

extern "C" __global__ void __launch_bounds__(ROPE_BLOCK)
    rope_kv_write_q8_0(float* q, const float* k, const float* v, const float* inv_freq,
                       uint8_t* arena, int layer, int pos0, int rows, int n_heads,
                       int n_kv_heads, int head_dim, int capacity, const int* step) {
  rope_kernel<Q8>(q, k, v, inv_freq, arena, layer, pos0, rows, n_heads, n_kv_heads, head_dim,
                  capacity, step);
}

extern "C" __global__ void __launch_bounds__(ROPE_BLOCK)
    rope_kv_write_bf16(float* q, const float* k, const float* v, const float* inv_freq,
                       uint16_t* arena, int layer, int pos0, int rows, int n_heads,
                       int n_kv_heads, int head_dim, int capacity, const int* step) {
  rope_kernel<BF16>(q, k, v, inv_freq, arena, layer, pos0, rows, n_heads, n_kv_heads, head_dim,
                    capacity, step);
}
