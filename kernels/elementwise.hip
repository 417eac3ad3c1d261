// Elementwise f32 ops, one element per thread:
//   swiglu:   out[i] = act(gate[i]) · up[i], act common.h's gated activation (`act` 0: silu,
//             gate / (1 + e^(−gate)), as the CPU; 1: gelu_tanh)
//   add:      x[i] += y[i]
//   bias_add: out[r·cols + c] += bias[c]
//   softcap:  x[i] = c·tanh(x[i] / c) (Gemma 2's final logit soft-cap on the logits rows,
//             common.h wf_softcap; c > 0, inv_c = 1 / c from the host)
//
// Shapes: gate, up, out, x, y (n) f32, n 64-bit; out (rows, cols) and bias (cols) for bias_add.
// Launch: grid (ceil(n / 256)) — ceil(rows·cols / 256) for bias_add; block ELEMENTWISE_BLOCK
//   = 256; no dynamic shared memory.
// Indexing: thread t of block b handles element i = b·256 + t if i < n. Neighbouring threads
//   touch neighbouring elements, so each wave's accesses coalesce; with one element per
//   thread (the ABI's grid) there is nothing for a wider vector load to add.

// Paths (WF_PATH; slots 0 swiglu, 1 add, 2 bias_add, 3 softcap): main for each, and for
//   swiglu gelu,
//   main: the element's value (no branch beyond the bounds check; swiglu: silu)
//   gelu: swiglu with act = ACT_GELU_TANH (one uniform branch per element)

#include "common.h"

constexpr int ELEMENTWISE_BLOCK = 256;
enum ElementwisePath { PATH_MAIN, PATH_GELU };

WF_DEVICE i64 element_index() {
  return (i64)block_index_x() * ELEMENTWISE_BLOCK + thread_index();
}

extern "C" __global__ void __launch_bounds__(ELEMENTWISE_BLOCK)
    swiglu(const float* gate, const float* up, float* out, i64 n, int act) {
  const i64 i = element_index();
  if (i < n) {
    const float g = gate[i];
    if (act == ACT_GELU_TANH) {
      WF_PATH(0, PATH_GELU);
      out[i] = wf_gelu_tanh(g) * up[i];
    } else {
      WF_PATH(0, PATH_MAIN);
      out[i] = wf_silu(g) * up[i];
    }
  }
}

extern "C" __global__ void __launch_bounds__(ELEMENTWISE_BLOCK)
    add(float* x, const float* y, i64 n) {
  const i64 i = element_index();
  if (i < n) {
    WF_PATH(1, PATH_MAIN);
    x[i] += y[i];
  }
}

extern "C" __global__ void __launch_bounds__(ELEMENTWISE_BLOCK)
    bias_add(float* out, const float* bias, int rows, int cols) {
  const i64 i = element_index();
  if (i < (i64)rows * cols) {
    WF_PATH(2, PATH_MAIN);
    out[i] += bias[i % cols];
  }
}

extern "C" __global__ void __launch_bounds__(ELEMENTWISE_BLOCK)
    softcap(float* x, i64 n, float c, float inv_c) {
  const i64 i = element_index();
  if (i < n) {
    WF_PATH(3, PATH_MAIN);
    x[i] = wf_softcap(x[i], c, inv_c);
  }
}
