// Elementwise f32 ops, one element per thread:
//   swiglu:   out[i] = gate[i] / (1 + e^(-gate[i])) · up[i]   (silu(gate) · up, as the CPU)
//   add:      x[i] += y[i]
//   bias_add: out[r·cols + c] += bias[c]
//   fill_f32: x[i] = value                                    (NaN poisoning in conformance)
//
// Shapes: gate, up, out, x, y (n) f32, n 64-bit; out (rows, cols) and bias (cols) for bias_add.
// Launch: grid (ceil(n / 256)) — ceil(rows·cols / 256) for bias_add; block ELEMENTWISE_BLOCK
//   = 256; no dynamic shared memory.
// Indexing: thread t of block b handles element i = b·256 + t if i < n. Neighbouring threads
//   touch neighbouring elements, so each wave's accesses coalesce; with one element per
//   thread (the ABI's grid) there is nothing for a wider vector load to add.

#include "common.h"

constexpr int ELEMENTWISE_BLOCK = 256;

WF_DEVICE i64 element_index() {
  return (i64)block_index_x() * ELEMENTWISE_BLOCK + thread_index();
}

extern "C" __global__ void __launch_bounds__(ELEMENTWISE_BLOCK)
    swiglu(const float* gate, const float* up, float* out, i64 n) {
  const i64 i = element_index();
  if (i < n) {
    const float g = gate[i];
    out[i] = g / (1.0f + wf_expf(-g)) * up[i];
  }
}

extern "C" __global__ void __launch_bounds__(ELEMENTWISE_BLOCK)
    add(float* x, const float* y, i64 n) {
  const i64 i = element_index();
  if (i < n) x[i] += y[i];
}

extern "C" __global__ void __launch_bounds__(ELEMENTWISE_BLOCK)
    bias_add(float* out, const float* bias, int rows, int cols) {
  const i64 i = element_index();
  if (i < (i64)rows * cols) out[i] += bias[i % cols];
}

extern "C" __global__ void __launch_bounds__(ELEMENTWISE_BLOCK)
    fill_f32(float* x, float value, i64 n) {
  const i64 i = element_index();
  if (i < n) x[i] = value;
}
