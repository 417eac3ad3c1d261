// Conversions between f32 and the 16-bit storage types, elementwise:
//   convert_f32_to_{f16,bf16}: out[i] = round_to_nearest_even(in[i])  (common.h, bit-exact)
//   convert_{f16,bf16}_to_f32: out[i] = in[i], exact
// (x → bf16 before every linear layer's BLAS call; KV and weight uploads.)
//
// Shapes: in, out (n); n is 64-bit (a buffer may pass 2^31 elements).
// Launch: grid (ceil(n / 256)); block CONVERT_BLOCK = 256; no dynamic shared memory.
// Indexing: thread t of block b converts element b·256 + t if it is < n (coalesced).

#include "common.h"

constexpr int CONVERT_BLOCK = 256;

template <class D>
__device__ void convert_from_f32_kernel(const float* in, typename D::storage* out, i64 n) {
  const i64 i = (i64)block_index_x() * CONVERT_BLOCK + thread_index();
  if (i < n) out[i] = D::store(in[i]);
}

template <class S>
__device__ void convert_to_f32_kernel(const typename S::storage* in, float* out, i64 n) {
  const i64 i = (i64)block_index_x() * CONVERT_BLOCK + thread_index();
  if (i < n) out[i] = S::load(in[i]);
}

extern "C" __global__ void __launch_bounds__(CONVERT_BLOCK)
    convert_f32_to_f16(const float* in, uint16_t* out, i64 n) {
  convert_from_f32_kernel<F16>(in, out, n);
}

extern "C" __global__ void __launch_bounds__(CONVERT_BLOCK)
    convert_f32_to_bf16(const float* in, uint16_t* out, i64 n) {
  convert_from_f32_kernel<BF16>(in, out, n);
}

extern "C" __global__ void __launch_bounds__(CONVERT_BLOCK)
    convert_f16_to_f32(const uint16_t* in, float* out, i64 n) {
  convert_to_f32_kernel<F16>(in, out, n);
}

extern "C" __global__ void __launch_bounds__(CONVERT_BLOCK)
    convert_bf16_to_f32(const uint16_t* in, float* out, i64 n) {
  convert_to_f32_kernel<BF16>(in, out, n);
}
