// Token embedding: out[t, :] = f32(table[tokens[t], :]) · scale, the product in f32 (Gemma's
// √hidden; scale 1 leaves the value exactly as it was).
//
// Shapes: table (vocab, hidden) of T ∈ {f32, f16, bf16}; tokens (n_tokens) i32;
//         out (n_tokens, hidden) f32.
// Launch: grid (n_tokens); block EMBEDDING_BLOCK = 256; no dynamic shared memory.
// Indexing: block b copies row tokens[b] of the table to row b of out. When both rows start
//   on 16 bytes, thread t moves the 16-byte vectors t, t + 256, … (4 f32 or 8 16-bit
//   elements each) and then the scalar tail hidden mod vector; otherwise every element
//   scalar, element t, t + 256, ….
// Contract: host-given ids are checked by the host (0 ≤ tokens[b] < vocab). An id outside the
//   vocabulary that only the device saw (a decode step's token after a sample the host will
//   refuse: -1) gives a zero row instead of a read outside the table.
// Paths (WF_PATH, slot = the table type's codec id):
//   vec:    both rows start on 16 bytes: 16-byte vector loads and stores
//   tail:   after the vectors, the hidden mod VEC elements, scalar
//   scalar: a row not on 16 bytes: every element scalar
// (An id outside [0, vocab) is a guard, not a path: it writes zeros and nothing else.)

#include "common.h"

constexpr int EMBEDDING_BLOCK = 256;
enum EmbeddingPath { PATH_VEC, PATH_TAIL, PATH_SCALAR };

template <class C>
__device__ void embedding_kernel(const typename C::storage* table, const int* tokens, float* out,
                                 int n_tokens, int hidden, int vocab, float scale) {
  const int b = block_index_x();
  if (b >= n_tokens) return;
  const int id = tokens[b];
  float* dst = out + (i64)b * hidden;  // (hidden)
  if (id < 0 || id >= vocab) {
    for (int i = thread_index(); i < hidden; i += EMBEDDING_BLOCK) dst[i] = 0.0f;
    return;
  }
  const typename C::storage* src = table + (i64)id * hidden;  // (hidden)
  const int VEC = Vec16<C>::n;
  int tail = 0;  // first element of the scalar part
  const bool aligned = is_aligned(src, 16) && is_aligned(dst, 16);
  if (aligned) {
    const int n_vec = hidden / VEC;
    for (int k = thread_index(); k < n_vec; k += EMBEDDING_BLOCK) {
      WF_PATH(C::id, PATH_VEC);
      float v[VEC];
      load16<C>(src + (i64)k * VEC, v);
#pragma unroll
      for (int e = 0; e < VEC; ++e) v[e] *= scale;
      store_f32s<VEC>(dst + (i64)k * VEC, v);
    }
    tail = n_vec * VEC;
  }
  for (int i = tail + thread_index(); i < hidden; i += EMBEDDING_BLOCK) {
    WF_PATH(C::id, aligned ? PATH_TAIL : PATH_SCALAR);
    dst[i] = C::load(src[i]) * scale;
  }
}

extern "C" __global__ void __launch_bounds__(EMBEDDING_BLOCK)
    embedding_f32(const float* table, const int* tokens, float* out, int n_tokens, int hidden,
                  int vocab, float scale) {
  embedding_kernel<F32>(table, tokens, out, n_tokens, hidden, vocab, scale);
}

extern "C" __global__ void __launch_bounds__(EMBEDDING_BLOCK)
    embedding_f16(const uint16_t* table, const int* tokens, float* out, int n_tokens, int hidden,
                  int vocab, float scale) {
  embedding_kernel<F16>(table, tokens, out, n_tokens, hidden, vocab, scale);
}

extern "C" __global__ void __launch_bounds__(EMBEDDING_BLOCK)
    embedding_bf16(const uint16_t* table, const int* tokens, float* out, int n_tokens, int hidden,
                  int vocab, float scale) {
  embedding_kernel<BF16>(table, tokens, out, n_tokens, hidden, vocab, scale);
}
