// Host check of kernels/qgemv.hip's block decoders (the same source the GPUs compile, built here
// with WF_HOST_TEST and host stand-ins for CUDA's thread names), against an independent oracle:
//   1. dequant_{T} run thread by thread over fixtures/quants/{T}.bin (blocks in the file's
//      layout, moved into the split layout here) gives gguf-py's dequantized values
//      (fixtures/quants/{T}.f32, written by fixtures/gen/quant_goldens.py) bit for bit;
//   2. the GEMV's chunk dot products (dot_chunk over the padded LDS tile, as qgemv_{T} runs
//      them, tiles of QGEMV_TILE) equal Σ w·x over those values computed in double, within the
//      f32 reassociation bound 2·K·u·Σ|w·x|;
//   3. the 8-bit-activation form's (stage_tile_q8_lanes<1> thread by thread: the same records
//      as the kernels' four threads a group; then dot_chunk_q8, as qgemv_q8a_{T} runs them)
//      equal Σ w·(d·q) over the inputs rounded here the same way, in double, within its f32
//      scalings' bound (K/16 + 4)·u·Σ|w·dq|; and that rounding moves the product by at most
//      Σ|w|·d/2 (the bound conformance holds the GPU to).
// A kernel author who edits a decoder learns here, without a GPU, whether it still decodes
// ggml's blocks; the device conformance suite checks the kernels whole.
//
// Usage: kernel-quant-check FIXTURES_DIR   (the repository's fixtures/quants)
// Exit status 0 iff every check passed. Prints "N passed, M failed".
//
// Build: c++ -O1 -std=c++17 -DWAVE=32 -I kernels ci/kernel-quant-check.cpp

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <string>
#include <vector>

#include "kernel-host.h"

// A block's threads one at a time: barriers and shuffles do nothing (the decoders and the
// staging run here need neither).
inline void __syncthreads() {}
inline void __syncwarp(unsigned = 0) {}
inline unsigned __shfl_xor_sync(unsigned, unsigned v, int, int = 32) { return v; }
inline float __shfl_xor_sync(unsigned, float v, int, int = 32) { return v; }

#include "qgemv.hip"

wf_u32x4 wf_dynamic_shared[QGEMV_TILE * 36 / 32 / 4];

// The split layout (engine/src/backend/gpu/quant.rs): quant bytes [q0, q0 + qb) of every block,
// then the rest of every block.
static std::vector<uint8_t> split(const std::vector<uint8_t>& file, int bb, int q0, int qb) {
  const size_t nb = file.size() / bb;
  const int sb = bb - qb;
  std::vector<uint8_t> out(file.size() + 64, 0);
  for (size_t i = 0; i < nb; ++i) {
    const uint8_t* b = file.data() + i * bb;
    memcpy(out.data() + i * qb, b + q0, qb);
    uint8_t* s = out.data() + nb * qb + i * sb;
    memcpy(s, b, q0);
    memcpy(s + q0, b + q0 + qb, bb - q0 - qb);
  }
  return out;
}

typedef void (*Dequant)(const uint8_t*, const uint8_t*, const int*, int, int, int, int, void*, int, float);

struct Type {
  const char* name;
  int bb, q0, qb;  // block bytes, first quant byte, quant bytes
  Dequant dequant;
  float (*gemv)(const uint8_t*, const uint8_t*, const float*, int);
  float (*gemv_q8)(const uint8_t*, const uint8_t*, const float*, int);
};

// One row of K: the sum qgemv_{T} forms (tile by tile, every chunk, lane order aside), or with
// Q8 the 8-bit-activation form's (qgemv_q8a_{T}: stage_tile_q8_lanes<1>, dot_chunk_q8,
// Q8A_TILE), each tile staged thread by thread.
template <class T, bool Q8>
static float row_dot(const uint8_t* qa, const uint8_t* sa, const float* x, int k) {
  constexpr int TILE = Q8 ? Q8A_TILE : QGEMV_TILE;
  float* xs = (float*)wf_dynamic_shared;
  uint8_t* xq = (uint8_t*)wf_dynamic_shared;
  float acc[1] = {0.0f};
  for (int t0 = 0; t0 < k; t0 += TILE) {
    const int n = k - t0 < TILE ? k - t0 : TILE;
    for (unsigned t = 0; t < QGEMV_BLOCK; ++t) {  // a block of the widest kernels
      threadIdx.x = t;
      if (Q8) {
        stage_tile_q8_lanes<1>(x, nullptr, 1.0f, t0, n, xq, QGEMV_BLOCK);
      } else {
        stage_tile(x, nullptr, 1.0f, t0, n, xs, QGEMV_BLOCK);
      }
    }
    const int c_begin = t0 / T::BE * T::CPB, c_end = c_begin + n / T::BE * T::CPB;
    for (int c = c_begin; c < c_end; ++c) {
      Chunk ch[1];
      T::load(qa, sa, c / T::CPB, c % T::CPB, ch[0]);
      if (Q8) {
        dot_chunk_q8<T, 1>(ch, c, t0, xq, acc);
      } else {
        dot_chunk<T, 1>(ch, c, t0, xs, acc);
      }
    }
  }
  return acc[0];
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: kernel-quant-check FIXTURES_DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  const Type types[] = {
      {"Q8_0", 34, 2, 32, dequant_q8_0, row_dot<TQ8_0, false>, row_dot<TQ8_0, true>},
      {"Q4_0", 18, 2, 16, dequant_q4_0, row_dot<TQ4_0, false>, row_dot<TQ4_0, true>},
      {"Q4_1", 20, 4, 16, dequant_q4_1, row_dot<TQ4_1, false>, row_dot<TQ4_1, true>},
      {"Q5_0", 22, 6, 16, dequant_q5_0, row_dot<TQ5_0, false>, row_dot<TQ5_0, true>},
      {"Q5_1", 24, 8, 16, dequant_q5_1, row_dot<TQ5_1, false>, row_dot<TQ5_1, true>},
      {"Q4_K", 144, 16, 128, dequant_q4_k, row_dot<TQ4_K, false>, row_dot<TQ4_K, true>},
      {"Q5_K", 176, 16, 160, dequant_q5_k, row_dot<TQ5_K, false>, row_dot<TQ5_K, true>},
      {"Q6_K", 210, 0, 192, dequant_q6_k, row_dot<TQ6_K, false>, row_dot<TQ6_K, true>},
  };
  for (const Type& t : types) {
    const std::vector<uint8_t> file = read_file(dir + "/" + t.name + ".bin");
    const std::vector<uint8_t> want_bytes = read_file(dir + "/" + t.name + ".f32");
    const size_t n = want_bytes.size() / 4;
    if (file.empty() || n == 0 || file.size() % t.bb != 0) {
      check(false, std::string(t.name) + ": fixtures missing or not whole blocks");
      continue;
    }
    std::vector<float> want(n);
    memcpy(want.data(), want_bytes.data(), 4 * n);
    const std::vector<uint8_t> s = split(file, t.bb, t.q0, t.qb);
    const size_t nb = file.size() / t.bb;
    const uint8_t* qa = s.data();
    const uint8_t* sa = s.data() + nb * t.qb;
    // 1. dequant as one row of n elements, thread by thread.
    std::vector<float> got(n, -1.0f);
    blockIdx.x = 0;
    for (unsigned th = 0; th < DEQUANT_BLOCK; ++th) {
      threadIdx.x = th;
      t.dequant(qa, sa, nullptr, 0, 1, (int)n, 0, got.data(), 0, 1.0f);
    }
    size_t bad = 0;
    for (size_t i = 0; i < n; ++i) bad += memcmp(&got[i], &want[i], 4) != 0;
    check(bad == 0, std::string(t.name) + ": dequant_" + t.name + " equals gguf-py bit for bit (" +
                        std::to_string(n) + " values, " + std::to_string(bad) + " differ)");
    // 2. the GEMV's dot products: the fixture's blocks tiled into a row of K = 14336 (two LDS
    // tiles) against seeded inputs.
    const int k = 14336;
    const size_t be = n / nb, reps = k / be;
    std::vector<uint8_t> rowfile;
    for (size_t r = 0; r < reps; ++r) {
      const size_t b = r % nb;
      rowfile.insert(rowfile.end(), file.begin() + b * t.bb, file.begin() + (b + 1) * t.bb);
    }
    const std::vector<uint8_t> rs = split(rowfile, t.bb, t.q0, t.qb);
    std::vector<float> x(k);
    uint64_t st = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < k; ++i) {
      st = st * 6364136223846793005ull + 1442695040888963407ull;
      x[i] = (float)((double)(st >> 11) / 9007199254740992.0 * 2.0 - 1.0);
    }
    double exact = 0.0, mag = 0.0;
    for (int i = 0; i < k; ++i) {
      const float w = want[(i / be) % nb * be + i % be];
      exact += (double)w * x[i];
      mag += fabs((double)w * x[i]);
    }
    const float dot = t.gemv(rs.data(), rs.data() + reps * t.qb, x.data(), k);
    const double err = fabs(dot - exact), bound = 2.0 * k * ldexp(1.0, -24) * mag;
    check(err <= bound, std::string(t.name) + ": the GEMV's dot of K = 14336 within 2Ku·Σ|wx| (" +
                            std::to_string(err) + " ≤ " + std::to_string(bound) + ")");
    // 3. the 8-bit-activation form's dot against the same rounding done here: each group of
    // 32 inputs rounded to d·q, d = max|x| / 127 (f32), q = rint(x · (1/d)); the kernel's
    // integer sums are exact, so it differs from Σ w·(d·q) (in double) only by its f32 scalings
    // and sums, a group of 16 a term: (K/16 + 4)·u·Σ|w·dq|. And that rounding moves the
    // product by at most Σ|w|·d/2 from the f32 inputs' (the bound the conformance suite uses).
    double exact8 = 0.0, mag8 = 0.0, r8 = 0.0;
    for (int g = 0; g < k / 32; ++g) {
      float amax = 0.0f;
      for (int i = 32 * g; i < 32 * g + 32; ++i) amax = fmaxf(amax, fabsf(x[i]));
      const float d = amax / 127.0f, id = amax > 0.0f ? 1.0f / d : 0.0f;
      for (int i = 32 * g; i < 32 * g + 32; ++i) {
        const double w = want[(i / be) % nb * be + i % be];
        const double xq = (double)d * rintf(x[i] * id);
        exact8 += w * xq;
        mag8 += fabs(w * xq);
        r8 += fabs(w) * d / 2.0;
      }
    }
    const float dot8 = t.gemv_q8(rs.data(), rs.data() + reps * t.qb, x.data(), k);
    const double err8 = fabs(dot8 - exact8), bound8 = (k / 16 + 4) * ldexp(1.0, -24) * mag8;
    check(err8 <= bound8, std::string(t.name) + ": the 8-bit form's dot of K = 14336 equals the "
                          "rounded inputs' within (K/16 + 4)·u·Σ|w·dq| (" + std::to_string(err8) +
                          " ≤ " + std::to_string(bound8) + ")");
    check(fabs(exact8 - exact) <= r8 && exact8 != exact,
          std::string(t.name) + ": the rounding moves it by " + std::to_string(fabs(exact8 - exact)) +
              " ≤ Σ|w|·d/2 = " + std::to_string(r8));
  }
  return finish();
}
