// A host emulator of one-dimensional GPU blocks, for running kernels/*.hip whole on a machine
// with no GPU (ci/kernel-sim-check.cpp). Each thread of a block is a fiber (ucontext) with its
// own stack; the block's fibers run one at a time, each until its next barrier, so:
//   * __syncthreads is a real barrier: every fiber reaches it before any passes it, and a
//     barrier some threads of the block skip (or a thread that returns while others wait)
//     is reported as a failure, not a hang;
//   * wave shuffles (__shfl_xor_sync) exchange through the block's slots between two
//     barriers, so lane l receives lane l ^ mask's value within the logical wave of WAVE lanes
//     (thread indices, as on AMD and in common.h's emulated WAVE=64): WAVE=64 runs as a
//     hardware wave of 64 would, and a shuffle some threads skip is caught like a barrier;
//   * __syncwarp (common.h wave_sync) is a block barrier, as in the emulated WAVE=64;
//   * `WF_SHARED` variables (common.h: `static` under WF_HOST_SIM) are one per block, as on a
//     GPU (blocks run one after another);
//   * the fibers between two barriers run in an order the caller picks (ascending thread
//     index or descending): a kernel that reads another thread's shared-memory write with no
//     barrier between them gives different results in the two orders, which the check
//     compares bit for bit.
// What it does not model: memory ordering between blocks (blocks run one after another, so a
// grid barrier or a last-block reduction would deadlock or trivially pass), timing, and the
// hardware's f32 rounding of fused operations (common.h's host branches use the C library's
// correctly rounded fmaf, which is what the GPUs' FMA gives).
//
// Use: include this, then the kernel file (it includes common.h), then call
//   sim::launch(grid, block, [&] { kernel_entry(args...); }, reverse);

#ifndef WAVEFRONT_CI_KERNEL_SIM_H
#define WAVEFRONT_CI_KERNEL_SIM_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include <functional>
#include <string>
#include <vector>

struct WfDim {
  unsigned x, y, z;
};
static WfDim threadIdx, blockIdx, blockDim, gridDim;
struct float4 {
  float x, y, z, w;
};
struct uint4 {
  unsigned x, y, z, w;
};
struct uint2 {
  unsigned x, y;
};

namespace sim {

constexpr int MAX_THREADS = 1024;
constexpr size_t STACK_BYTES = 256 * 1024;

enum State { RUNNING, AT_BARRIER, DONE };

struct Fiber {
  ucontext_t ctx;
  char* stack = nullptr;
  State state = RUNNING;
  unsigned long barriers = 0;
};

struct Block {
  ucontext_t scheduler;
  std::vector<Fiber> fibers;
  int current = -1;
  const std::function<void()>* body = nullptr;
  std::string error;  // the first failure of the launch ("" while none)
};

inline Block& block() {
  static Block b;
  return b;
}

// A failure the check reports (the launch stops at the end of the block).
inline void fail(const std::string& what) {
  if (block().error.empty()) block().error = what;
}

inline void barrier() {
  Block& b = block();
  Fiber& f = b.fibers[b.current];
  ++f.barriers;
  f.state = AT_BARRIER;
  swapcontext(&f.ctx, &b.scheduler);
}

inline void trampoline() {
  Block& b = block();
  (*b.body)();
  b.fibers[b.current].state = DONE;
  swapcontext(&b.fibers[b.current].ctx, &b.scheduler);
}

// Runs one block of `threads` threads (blockIdx set by the caller). Returns false (with
// block().error set) when the threads' barriers did not line up.
inline bool run_block(unsigned threads, const std::function<void()>& body, bool reverse) {
  Block& b = block();
  if (threads == 0 || threads > (unsigned)MAX_THREADS) {
    fail("block of " + std::to_string(threads) + " threads");
    return false;
  }
  if (b.fibers.size() < threads) b.fibers.resize(threads);
  b.body = &body;
  for (unsigned t = 0; t < threads; ++t) {
    Fiber& f = b.fibers[t];
    if (!f.stack) f.stack = (char*)malloc(STACK_BYTES);
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = f.stack;
    f.ctx.uc_stack.ss_size = STACK_BYTES;
    f.ctx.uc_link = nullptr;
    makecontext(&f.ctx, trampoline, 0);
    f.state = RUNNING;
    f.barriers = 0;
  }
  blockDim = WfDim{threads, 1, 1};
  for (;;) {
    for (unsigned i = 0; i < threads; ++i) {
      const unsigned t = reverse ? threads - 1 - i : i;
      Fiber& f = b.fibers[t];
      if (f.state == DONE) continue;
      f.state = RUNNING;
      b.current = (int)t;
      threadIdx = WfDim{t, 0, 0};
      swapcontext(&b.scheduler, &f.ctx);
    }
    unsigned done = 0;
    for (unsigned t = 0; t < threads; ++t) done += b.fibers[t].state == DONE;
    if (done == threads) break;
    if (done != 0) {
      fail("block " + std::to_string(blockIdx.x) + ": " + std::to_string(threads - done) +
           " threads wait at a barrier that " + std::to_string(done) + " returned past");
      return false;
    }
    for (unsigned t = 1; t < threads; ++t) {
      if (b.fibers[t].barriers != b.fibers[0].barriers) {
        fail("block " + std::to_string(blockIdx.x) + ": thread " + std::to_string(t) +
             " is at its barrier " + std::to_string(b.fibers[t].barriers) + ", thread 0 at " +
             std::to_string(b.fibers[0].barriers));
        return false;
      }
    }
  }
  return true;
}

// A launch: the blocks of a grid (x fastest, then y, then z) one after another. Returns false
// at the first block whose barriers did not line up (block().error says which).
inline bool launch(WfDim grid, unsigned threads, const std::function<void()>& body, bool reverse) {
  block().error.clear();
  gridDim = grid;
  for (unsigned z = 0; z < grid.z; ++z) {
    for (unsigned y = 0; y < grid.y; ++y) {
      for (unsigned x = 0; x < grid.x; ++x) {
        blockIdx = WfDim{x, y, z};
        if (!run_block(threads, body, reverse)) return false;
      }
    }
  }
  return block().error.empty();
}
inline bool launch(unsigned grid, unsigned threads, const std::function<void()>& body,
                   bool reverse) {
  return launch(WfDim{grid, 1, 1}, threads, body, reverse);
}

// The exchange under the shuffles: every thread of the block writes, all wait, each reads its
// partner, all wait (the next exchange's writes must not overtake this one's reads).
inline uint32_t exchange(uint32_t v, unsigned src) {
  static uint32_t slots[MAX_THREADS];
  slots[threadIdx.x] = v;
  barrier();
  if (src >= blockDim.x) fail("a shuffle reads thread " + std::to_string(src) + " of a block of " +
                              std::to_string(blockDim.x));
  const uint32_t r = slots[src < blockDim.x ? src : threadIdx.x];
  barrier();
  return r;
}

}  // namespace sim

// CUDA's names, as the kernels' non-HIP branches use them.
inline void __syncthreads() { sim::barrier(); }
// A warp's (wave's) barrier: a block barrier here, as the WAVE=64 emulation's wave_sync is
// (callers are block-uniform, common.h's convention for every wave op).
inline void __syncwarp(unsigned = 0) { sim::barrier(); }
inline void __threadfence() {}
inline unsigned __shfl_xor_sync(unsigned, unsigned v, int mask, int = 32) {
  return sim::exchange(v, threadIdx.x ^ (unsigned)mask);
}
inline int __shfl_xor_sync(unsigned, int v, int mask, int = 32) {
  return (int)sim::exchange((uint32_t)v, threadIdx.x ^ (unsigned)mask);
}
inline float __shfl_xor_sync(unsigned, float v, int mask, int = 32) {
  uint32_t u;
  memcpy(&u, &v, 4);
  u = sim::exchange(u, threadIdx.x ^ (unsigned)mask);
  float f;
  memcpy(&f, &u, 4);
  return f;
}
// Fibers never run at the same time: plain read-modify-writes are atomic.
inline int atomicAdd(int* p, int v) {
  const int o = *p;
  *p += v;
  return o;
}
inline int atomicOr(int* p, int v) {
  const int o = *p;
  *p |= v;
  return o;
}
inline unsigned atomicOr(unsigned* p, unsigned v) {
  const unsigned o = *p;
  *p |= v;
  return o;
}
inline int atomicExch(int* p, int v) {
  const int o = *p;
  *p = v;
  return o;
}
#define __global__
#define __launch_bounds__(...)
#define WF_HOST_TEST 1
#define WF_HOST_DEVICE_SHIMS 1
#define WF_HOST_SIM 1

#endif  // WAVEFRONT_CI_KERNEL_SIM_H
