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
//   * __syncwarp (common.h wave_sync) is the logical wave's barrier (its WAVE lanes), and so
//     are the emulated matrix instructions (WF_SIM_MMA, below): wave-level, as on AMD;
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

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include <functional>
#include <string>
#include <vector>

#include "kernel-host.h"

namespace sim {

constexpr int MAX_THREADS = 1024;
constexpr size_t STACK_BYTES = 256 * 1024;

enum State { RUNNING, AT_BARRIER, YIELDED, DONE };

struct Fiber {
  ucontext_t ctx;
  char* stack = nullptr;
  State state = RUNNING;
  unsigned long barriers = 0;
};

// A wave's barrier (wave_barrier): arrivals of the current generation, and the generation.
struct WaveSync {
  unsigned arrived = 0, generation = 0;
};

struct Block {
  ucontext_t scheduler;
  std::vector<Fiber> fibers;
  std::vector<WaveSync> waves;
  unsigned long progress = 0;  // wave-barrier arrivals and releases (a pass without any: stuck)
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

// The logical wave's barrier (WAVE lanes, thread indices w·WAVE ..): every lane of the wave
// arrives before any passes; the other waves of the block run on. A lane waiting here yields
// to the scheduler until its wave's last lane arrives.
inline void wave_barrier() {
  Block& b = block();
  WaveSync& w = b.waves[threadIdx.x / WAVE];
  const unsigned gen = w.generation;
  ++b.progress;
  if (++w.arrived == WAVE) {
    w.arrived = 0;
    ++w.generation;
    return;
  }
  while (w.generation == gen) {
    Fiber& f = b.fibers[b.current];
    f.state = YIELDED;
    swapcontext(&f.ctx, &b.scheduler);
  }
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
  b.waves.assign((threads + WAVE - 1) / WAVE, WaveSync{});
  for (;;) {
    // Run every thread until it reaches a block barrier or returns; a thread waiting at its
    // wave's barrier runs again on the next pass, while the passes make progress.
    for (;;) {
      const unsigned long before = b.progress;
      unsigned yielded = 0;
      for (unsigned i = 0; i < threads; ++i) {
        const unsigned t = reverse ? threads - 1 - i : i;
        Fiber& f = b.fibers[t];
        if (f.state == DONE || f.state == AT_BARRIER) continue;
        f.state = RUNNING;
        b.current = (int)t;
        threadIdx = WfDim{t, 0, 0};
        swapcontext(&b.scheduler, &f.ctx);
        yielded += f.state == YIELDED;
      }
      if (yielded == 0) break;
      if (b.progress == before) {
        fail("block " + std::to_string(blockIdx.x) + ": " + std::to_string(yielded) +
             " threads wait at a wave barrier that lanes of their wave do not reach");
        return false;
      }
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
    for (unsigned t = 0; t < threads; ++t) b.fibers[t].state = RUNNING;  // released
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

// AMD's matrix instructions, built with -DWF_SIM_MMA=2 (MFMA, WAVE=64) or 3 (WMMA, WAVE=32)
// (common.h then takes its MFMA or WMMA layouts): a wave-wide collective, every lane's
// operands through the block's slots between two wave barriers, each lane computing
// its own accumulator values from its wave's operands, products summed in k order with f32
// FMAs (the instructions' own summation order is not specified; the products of 16-bit values
// are exact in f32). The operand layouts are the instructions' (AMD's matrix instruction
// calculator for CDNA3 and RDNA3):
//   v_mfma_f32_16x16x16{f16,bf16_1k}, wave64: A[i][k] in lane i + 16·(k/4), item k%4;
//     B[k][j] in lane j + 16·(k/4), item k%4; D[i][j] in lane j + 16·(i/4), item i%4.
//   v_wmma_f32_16x16x16_{f16,bf16}_w32, wave32: A[i][k] in lane i and lane i + 16 (both half
//     waves hold the same copy), item k; B[k][j] in lanes j and j + 16, item k; D[i][j] in lane
//     j + 16·(i%2), item i/2.
// A half-wave copy of A or B that differs from the other is reported (the instruction reads one).
enum { MMA_MFMA = 2, MMA_WMMA = 3 };
template <int KIND, bool BF16, class AB, class C>
inline C mma_collective(const AB& a, const AB& b, const C& c) {
  constexpr int NAB = sizeof(AB) / 2, NC = sizeof(C) / 4;  // 16-bit values, f32 values a lane
  static_assert((KIND == MMA_MFMA && NAB == 4 && NC == 4) || (KIND == MMA_WMMA && NAB == 16 && NC == 8),
                "operand sizes of the emulated instruction");
  struct Lane {
    uint16_t a[NAB], b[NAB];
  };
  static Lane slots[MAX_THREADS];
  Lane mine;
  memcpy(mine.a, &a, sizeof mine.a);
  memcpy(mine.b, &b, sizeof mine.b);
  slots[threadIdx.x] = mine;
  wave_barrier();
  const unsigned wave = KIND == MMA_MFMA ? 64 : 32, l = threadIdx.x % wave, base = threadIdx.x - l;
  auto value = [](uint16_t h) {
    uint32_t u;
    if (BF16) {
      u = (uint32_t)h << 16;
    } else {  // f16 → f32, exactly
      const uint32_t sign = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 31, m = h & 1023;
      if (e == 31) {
        u = sign | 0x7f800000u | (m << 13);
      } else if (e != 0) {
        u = sign | ((e + 112) << 23) | (m << 13);
      } else {
        float f = (float)m * 5.9604644775390625e-8f;  // m · 2^-24, exact
        memcpy(&u, &f, 4);
        u |= sign;
      }
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
  };
  auto A = [&](int i, int k) {
    return KIND == MMA_MFMA ? slots[base + i + 16 * (k / 4)].a[k % 4] : slots[base + i].a[k];
  };
  auto B = [&](int k, int j) {
    return KIND == MMA_MFMA ? slots[base + j + 16 * (k / 4)].b[k % 4] : slots[base + j].b[k];
  };
  if (KIND == MMA_WMMA && l >= 16 &&
      (memcmp(slots[threadIdx.x].a, slots[threadIdx.x - 16].a, 2 * NAB) != 0 ||
       memcmp(slots[threadIdx.x].b, slots[threadIdx.x - 16].b, 2 * NAB) != 0)) {
    fail("wmma: lane " + std::to_string(l) + "'s A or B differs from lane " + std::to_string(l - 16) + "'s");
  }
  float d[NC];
  memcpy(d, &c, sizeof d);
  for (int e = 0; e < NC; ++e) {
    const int i = KIND == MMA_MFMA ? 4 * (l / 16) + e : 2 * e + l / 16, j = l % 16;
    float acc = d[e];
    for (int k = 0; k < 16; ++k) acc = fmaf(value(A(i, k)), value(B(k, j)), acc);
    d[e] = acc;
  }
  wave_barrier();  // every lane of the wave has read the slots
  C out;
  memcpy(&out, d, sizeof d);
  return out;
}

}  // namespace sim

#if defined(WF_SIM_MMA)
#define __builtin_amdgcn_mfma_f32_16x16x16f16(a, b, c, x, y, z) \
  sim::mma_collective<sim::MMA_MFMA, false>(a, b, c)
#define __builtin_amdgcn_mfma_f32_16x16x16bf16_1k(a, b, c, x, y, z) \
  sim::mma_collective<sim::MMA_MFMA, true>(a, b, c)
#define __builtin_amdgcn_wmma_f32_16x16x16_f16_w32(a, b, c) \
  sim::mma_collective<sim::MMA_WMMA, false>(a, b, c)
#define __builtin_amdgcn_wmma_f32_16x16x16_bf16_w32(a, b, c) \
  sim::mma_collective<sim::MMA_WMMA, true>(a, b, c)
#endif

// CUDA's names, as the kernels' non-HIP branches use them.
inline void __syncthreads() { sim::barrier(); }
// A warp's (logical wave's) barrier: common.h wave_sync.
inline void __syncwarp(unsigned = 0) { sim::wave_barrier(); }
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
// A kernel's own __shared__ arrays (attention.hip's, sampling.hip's): one per block, as
// common.h's WF_SHARED under WF_HOST_SIM.
#define __shared__ static
#define WF_HOST_SIM 1

#endif  // WAVEFRONT_CI_KERNEL_SIM_H
