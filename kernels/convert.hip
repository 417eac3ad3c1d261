// Conversion of f32 to the 16-bit storage types, elementwise:
//   convert_f32_to_{f16,bf16}: out[i] = round_to_nearest_even(in[i])  (common.h, bit-exact)
// (x → the weights' type before every linear layer's BLAS call.)
//
// Shapes: in, out (n); n is 64-bit (a buffer may pass 2^31 elements).
// Launch: grid (ceil(n / 256)); block CONVERT_BLOCK = 256; no dynamic shared memory.
// Indexing: thread t of block b converts element b·256 + t if it is < n (coalesced).

// Paths (WF_PATH; slot = the destination's codec id: 1 f32→f16, 2 f32→bf16):
//   main: the element's conversion (no branch beyond the bounds check)

#include "common.h"

constexpr int CONVERT_BLOCK = 256;
enum ConvertPath { PATH_MAIN };

template <class D>
__device__ void convert_from_f32_kernel(const float* in, typename D::storage* out, i64 n) {
  const i64 i = (i64)block_index_x() * CONVERT_BLOCK + thread_index();
  if (i < n) {
    WF_PATH(D::id, PATH_MAIN);
    out[i] = D::store(in[i]);
  }
}

extern "C" __global__ void __launch_bounds__(CONVERT_BLOCK)
    convert_f32_to_f16(const float* in, uint16_t* out, i64 n) {
  convert_from_f32_kernel<F16>(in, out, n);
}

extern "C" __global__ void __launch_bounds__(CONVERT_BLOCK)
    convert_f32_to_bf16(const float* in, uint16_t* out, i64 n) {
  convert_from_f32_kernel<BF16>(in, out, n);
}
