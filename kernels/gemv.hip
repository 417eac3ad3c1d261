// Batch-1 matrix-vector products over 16-bit weights (the decode step's projections), with the
// RMSNorm before them as a prologue and the residual add after them as an epilogue:
//   gemv_{f16,bf16}:        out (M) = a (K) · Wᵀ (+ bias) (+ out, the residual add), M = m0 + m1
//                           + m2 rows stacked [W_0; W_1; W_2] (fused QKV), row r written to
//                           out0[r] (r < m0), out1[r − m0] (r < m0 + m1) or out2[r − m0 − m1];
//   gemv_swiglu_{f16,bf16}: out (I) = act(a · W_gᵀ) ⊙ (a · W_uᵀ) for W = [W_g; W_u] (2·I, K),
//                           act as the `swiglu` kernel of elementwise.hip (common.h's gated
//                           activation: `act` 0 silu, g / (1 + e^(−g)) · u; 1 gelu_tanh);
// where a = x, or with norm_w, a = norm_w · (x · 1/sqrt(mean(x²) + eps)): the rms_norm kernel's
// output, computed by every block the way rms_norm.hip computes it (the same partition of the
// sum of squares over 256 threads, the same block reduction and expression), so the fused
// product equals rms_norm followed by the plain GEMV bit for bit.
// Arithmetic as the BLAS path (convert + GEMM): every element of a rounded to the weight type
// (round to nearest even, common.h's codec, as convert_f32_to_*), products and sums in f32 (FMA);
// the epilogue as the separate ops: y = dot (+ bias[r]), then out[r] + y for the residual.
//
// Shapes: w (M, K) or (2·I, K) row-major f16/bf16; x (K) f32; norm_w (K) f32 or null; bias (M)
//         f32 or null (stacked as w); out0 (m0), out1 (m1), out2 (m2) f32 (m1, m2 may be 0,
//         their pointers then unused; with `residual` they hold the values added to); out (I)
//         f32 for the SwiGLU form.
// Batches: n_in input rows (x (n_in, K), out_i (n_in, m_i), out (n_in, I)); the grid is n_in
//   times the one-row grid, block b computing for input row b % n_in (common.h batch_block):
//   every input row's results exactly those of a launch for it alone.
// Launch: the rows in groups of ROWS = GEMV_BLOCK / WAVE (one a wave), ceil(M / ROWS) groups
//   — ceil(I / ROWS) for gemv_swiglu —; grid (n_in · blocks), 1 ≤ blocks ≤ the groups (the
//   host's choice: about what the device holds at once), block b taking the groups b / n_in,
//   b / n_in + blocks, … of input row b % n_in, the prologue run once for all of them (a row's
//   sum is the same whichever block computes it: blocks changes no bit); block GEMV_BLOCK =
//   256 (8 waves at WAVE=32, 4 at 64); dynamic shared memory
//   2·K bytes rounded up to 16 when K ≤ GEMV_LDS_MAX (a staged in LDS: at most 32 KiB, so two
//   blocks fit a 64 KiB CDNA LDS), else none (a read through the cache by every wave).
// Indexing: wave w owns row r = g·ROWS + w of the block's group g (gemv_swiglu: rows r and
//   I + r, at once); the next group's first weight loads are issued before this group's wave
//   reduction and epilogue.
//   Overlap (launched overlapped, common.h): the block issues its first weight loads (and, with
//   the norm, thread t's first GEMV_KEEP vectors of norm_w), then waits for the kernels ahead
//   (wf_dependency_wait) before reading x or writing, and only then lets the next kernel start
//   (wf_allow_dependents): on NVIDIA sm_90+ this kernel's first loads run while the kernel
//   ahead drains, and at most one kernel is waiting ahead of the running one. (Letting the next
//   kernel start before the wait let a chain of launches start their loads many kernels ahead,
//   competing with the running kernel's: SmolLM2's step 12% slower on an H100,
//   bench/results/2026-12-07-kernel-overlap.)
//   Prologue (every thread, block-uniform): lane l first issues the loads of its first
//   GEMV_UNROLL weight vectors, so they are in flight while the block computes the norm's scale
//   (thread t sums x² over float4 vectors t, t + 256, … when x and norm_w start on 16 bytes,
//   then the scalar tail, else over elements t, t + 256, …; block_sum) and, when staged, writes
//   a rounded to the weight type into LDS (the same partition), then synchronises. Staged with
//   x and norm_w on 16 bytes, thread t's first GEMV_KEEP vectors of x are read once and kept in
//   registers for both passes (Kept). gemv_{T}: lane 0 of a wave reads the residual's and the
//   bias's values of its row before the group's body, so they are in flight during it.
//   Body: when the row(s) start on 16 bytes (and, unstaged, x and norm_w), lane l reads the
//   16-byte weight vectors (8 weights) l, l + WAVE, …, each step's GEMV_UNROLL of them (over
//   all its rows) loaded before the previous step's FMAs run (double buffering in registers),
//   then the scalar tail K mod 8 (elements 8·⌊K/8⌋ + l, + WAVE, …); a row off 16 bytes (K not
//   a multiple of 8: every row whose offset r·K is not ≡ 0 mod 8) is read scalar, elements
//   l, l + WAVE, …. Each lane keeps one f32 sum per row, adding its vectors in ascending order;
//   the wave folds them with the butterfly of common.h (a fixed order: deterministic, no
//   atomics), lane 0 runs the epilogue and writes.
// Contract: M·K and 2·I·K elements within w, K ≥ 0 and M, I < 2^31 (checked by the host);
//   every thread of the block reaches the prologue's barriers and the wave reduction
//   (block-uniform, as WAVE=64 emulation needs): waves past the last row reduce zeros and write
//   nothing. Each output element is read and written by one lane only, so `residual` may add
//   into the residual stream in place; x must not alias an output.
// Paths (WF_PATH; slot 0 gemv_f16, 1 gemv_bf16, 2 gemv_swiglu_f16, 3 gemv_swiglu_bf16; the
// SwiGLU kernels have the first five and gelu; the several-row forms below: 4, 5
// gemv_stage_{f16,bf16} (vec, norm), 6, 7 gemv_rows_{f16,bf16} (vec, bias, out0-2, residual),
// 8, 9 gemv_swiglu_rows_{f16,bf16} (vec, gelu)):
//   vec:      the row(s) (and, unstaged, x) on 16 bytes: 16-byte weight loads, pipelined
//   tail:     after the vectors, the K mod 8 elements, scalar
//   scalar:   a row off 16 bytes (or, unstaged, x): every element scalar
//   norm:     the RMSNorm prologue (norm_w given)
//   lds:      a staged in LDS (K ≤ GEMV_LDS_MAX); otherwise read from x (and norm_w) per wave
//   bias:     the bias added in the epilogue
//   out0:     a row of the first stacked matrix, written to out0
//   out1:     a row of the second, written to out1
//   out2:     a row of the third, written to out2
//   residual: the epilogue adds into the output (out[r] + y)
//   gelu:     gemv_swiglu with act = ACT_GELU_TANH (the epilogue's activation)
//   groups:   a block past its first row group (blocks < the groups; gemv and gemv_swiglu)

#include "common.h"

constexpr int GEMV_BLOCK = 256;
constexpr int GEMV_UNROLL = 4;       // 16-byte weight loads per lane in flight (over all its rows)
constexpr int GEMV_LDS_MAX = 16384;  // most elements of a staged in LDS (32 KiB)
enum GemvPath {
  PATH_VEC,
  PATH_TAIL,
  PATH_SCALAR,
  PATH_NORM,
  PATH_LDS,
  PATH_BIAS,
  PATH_OUT0,
  PATH_OUT1,
  PATH_OUT2,
  PATH_RESIDUAL,
  PATH_GELU,
  PATH_GROUPS
};

// x[i] as the GEMM sees it: rounded to the weights' type and widened back (exact).
template <class C>
WF_DEVICE float rounded_x(float x) {
  return C::load(C::store(x));
}

// The GEMV's input element: x[i], or the norm's output g[i] · (x[i] · scale) (rms_norm's
// expression), before its rounding to the weight type.
WF_DEVICE float input_at(const float* x, const float* g, float scale, i64 i) {
  return g ? g[i] * (x[i] * scale) : x[i];
}

// The 4 input elements of a float4 vector (x's values v, with the norm g's values g4),
// rounded to the weight type, to dst.
template <class C>
WF_DEVICE void stage_vec4(float (&v)[4], bool norm, const float (&g4)[4], float scale,
                          uint16_t* dst) {
  if (norm) {
#pragma unroll
    for (int j = 0; j < 4; ++j) v[j] = g4[j] * (v[j] * scale);
  }
  uint16_t h[4];
#pragma unroll
  for (int j = 0; j < 4; ++j) h[j] = C::store(v[j]);
  store_u16x4(dst, h);
}

// a rounded to the weight type into LDS (xs, K values): thread t's float4 vectors t + from·256,
// t + (from + 1)·256, … (vec4: x and g on 16 bytes), then the scalar tail (or, not vec4, the
// elements t, t + 256, …). No barrier.
template <class C>
WF_DEVICE void stage_from(const float* x, const float* g, float scale, int k, bool vec4,
                          int from, uint16_t* xs) {
  const int t = thread_index();
  const int n_vec = vec4 ? k / 4 : 0;
  for (int i = t + from * GEMV_BLOCK; i < n_vec; i += GEMV_BLOCK) {
    float v[4], w4[4];
    load_f32x4(x + 4 * i, v);
    if (g) load_f32x4(g + 4 * i, w4);
    stage_vec4<C>(v, g != nullptr, w4, scale, xs + 4 * i);
  }
  for (int i = 4 * n_vec + t; i < k; i += GEMV_BLOCK) xs[i] = C::store(input_at(x, g, scale, i));
}

// a rounded to the weight type into LDS (xs, K values), then a barrier.
template <class C>
WF_DEVICE void stage_input(const float* x, const float* g, float scale, int k, bool vec4,
                           uint16_t* xs) {
  stage_from<C>(x, g, scale, k, vec4, 0, xs);
  block_sync();
}

// Thread t's first GEMV_KEEP float4 vectors of x and norm_w in registers (common.h KeptVecs).
constexpr int GEMV_KEEP = 2;  // K ≤ 4·GEMV_BLOCK·GEMV_KEEP = 2048 is held whole
using Kept = KeptVecs<GEMV_BLOCK, GEMV_KEEP>;

// stage_input with x and g on 16 bytes whose first vectors are xk and gk (gk unused without g).
template <class C>
WF_DEVICE void stage_input_kept(const float* x, const Kept& xk, const float* g, const Kept& gk,
                                float scale, int k, uint16_t* xs) {
  const int t = thread_index();
#pragma unroll
  for (int j = 0; j < GEMV_KEEP; ++j) {
    const int i = t + j * GEMV_BLOCK;
    if (i < k / 4) {
      float v[4] = {xk.v[j][0], xk.v[j][1], xk.v[j][2], xk.v[j][3]};
      stage_vec4<C>(v, g != nullptr, gk.v[j], scale, xs + 4 * i);
    }
  }
  stage_from<C>(x, g, scale, k, true, GEMV_KEEP, xs);
  block_sync();
}

// Where a wave reads its input: staged in LDS (already rounded), or x (and g) in global memory.
template <class C>
struct Input {
  const uint16_t* xs;  // LDS, or null
  const float* x;
  const float* g;
  float scale;

  // The 8 elements of vector v, rounded to the weight type and widened.
  WF_DEVICE void vec8(int v, float (&o)[8]) const {
    if (xs) {
      uint16_t h[8];
      load_u16x8(xs + (i64)v * 8, h);
#pragma unroll
      for (int e = 0; e < 8; ++e) o[e] = C::load(h[e]);
      return;
    }
    const float* xp = x + (i64)v * 8;
    float xa[4], xb[4];
    load_f32x4(xp, xa);
    load_f32x4(xp + 4, xb);
    if (g) {
      float ga[4], gb[4];
      load_f32x4(g + (i64)v * 8, ga);
      load_f32x4(g + (i64)v * 8 + 4, gb);
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        xa[e] = ga[e] * (xa[e] * scale);
        xb[e] = gb[e] * (xb[e] * scale);
      }
    }
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      o[e] = rounded_x<C>(xa[e]);
      o[e + 4] = rounded_x<C>(xb[e]);
    }
  }

  WF_DEVICE float at(int i) const {
    return xs ? C::load(xs[i]) : rounded_x<C>(input_at(x, g, scale, i));
  }
};

// A 16-byte weight vector kept as its four words (two weights each, element 2i in the low
// half), unpacked only at its FMAs: half the registers of eight unpacked values.
struct Words {
  uint32_t w[4];
};

WF_DEVICE void load_words(const uint16_t* p, Words& h) {
  const wf_u32x4 t = *(const wf_u32x4*)p;
  h.w[0] = t.x;
  h.w[1] = t.y;
  h.w[2] = t.z;
  h.w[3] = t.w;
}

WF_DEVICE uint16_t word_half(const Words& h, int e) {
  return (uint16_t)((e & 1) ? h.w[e >> 1] >> 16 : h.w[e >> 1] & 0xffffu);
}

// The weight vectors v0, v0 + WAVE, … (GEMV_UNROLL / NR of them per row) of each row; vectors
// at or past n_vec are not loaded.
template <int NR>
WF_DEVICE void load_step(const uint16_t* const (&rows)[NR], int v0, int n_vec,
                         Words (&h)[NR][GEMV_UNROLL / NR]) {
  constexpr int U = GEMV_UNROLL / NR;
#pragma unroll
  for (int u = 0; u < U; ++u) {
    const int v = v0 + u * WAVE;
    if (v < n_vec) {
#pragma unroll
      for (int j = 0; j < NR; ++j) load_words(rows[j] + (i64)v * 8, h[j][u]);
    }
  }
}

// acc[j] += Σ_i W_j[i] · a[i] over this lane's share of the NR rows `rows[j]` (each K long),
// the first step's weights already in h (loaded by load_step at v0 = lane).
template <class C, int NR>
WF_DEVICE void dot_rows(const uint16_t* const (&rows)[NR], const Input<C>& in, int k, int n_vec,
                        Words (&h)[NR][GEMV_UNROLL / NR], bool vec, int slot,
                        float (&acc)[NR]) {
  constexpr int U = GEMV_UNROLL / NR;
  const int lane = wave_lane();
  for (int v0 = lane; v0 < n_vec; v0 += U * WAVE) {
    WF_PATH(slot, PATH_VEC);
    Words next[NR][U];
    load_step<NR>(rows, v0 + U * WAVE, n_vec, next);  // in flight during this step's FMAs
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int v = v0 + u * WAVE;
      if (v < n_vec) {
        float xs[8];
        in.vec8(v, xs);
#pragma unroll
        for (int j = 0; j < NR; ++j) {
#pragma unroll
          for (int e = 0; e < 8; ++e)
            acc[j] = wf_fmaf(C::load(word_half(h[j][u], e)), xs[e], acc[j]);
        }
      }
    }
#pragma unroll
    for (int j = 0; j < NR; ++j) {
#pragma unroll
      for (int u = 0; u < U; ++u) h[j][u] = next[j][u];
    }
  }
  // Scalar: the tail after the vectors, or the whole row off 16 bytes.
  for (int i = n_vec * 8 + lane; i < k; i += WAVE) {
    WF_PATH(slot, vec ? PATH_TAIL : PATH_SCALAR);
    const float xi = in.at(i);
#pragma unroll
    for (int j = 0; j < NR; ++j) acc[j] = wf_fmaf(C::load(rows[j][i]), xi, acc[j]);
  }
}

// Whether a wave reads its NR rows as 16-byte vectors: the input vectors (in_vec: staged, or x
// and norm_w on 16 bytes) and every row on 16 bytes.
template <int NR>
WF_DEVICE bool rows_vec(const uint16_t* const (&rows)[NR], bool in_vec) {
  bool vec = in_vec;
#pragma unroll
  for (int j = 0; j < NR; ++j) vec = vec && is_aligned(rows[j], 16);
  return vec;
}

// The wait of a launched GEMV: for the kernels queued ahead (common.h, overlapped launches).
struct LaunchWait {
  WF_DEVICE void operator()() const { wf_dependency_wait(); }
};

// What a group does before its body (after the wait): nothing, or gemv's residual read.
struct NoPre {
  WF_DEVICE void operator()(int, bool) const {}
};

// The shared body of both forms: the block's row groups g = first, first + step, … < n_groups
// (block-uniform: every wave runs every group, live or not). rows(g, rows) points the wave's
// NR rows of group g (a dead wave at row 0: its pointers harmless, its sums unused) and
// returns whether the wave has a live row there (wave-uniform); epi(g, acc, live) runs after
// the group's body on every wave (it holds the wave reductions) with the lane's sums (zeros
// for a dead wave). The prologue (the norm's scale, the input staged in LDS) runs once for all
// the block's groups; the next group's first loads are issued before this group's epilogue.
// wait() (block-uniform) runs after the first weight loads are issued and before x is read:
// the launch's dependency wait, or a grid barrier inside a persistent launch (gemv_chain).
template <class C, int NR, class Rows, class Epi, class Wait = LaunchWait, class Pre = NoPre>
WF_DEVICE void gemv_groups(const float* x, const float* norm_w, float eps, int k, int slot,
                           int first, int step, int n_groups, Rows rows, Epi epi,
                           Wait wait = Wait(), Pre pre = Pre()) {
  const bool staged = k <= GEMV_LDS_MAX;
  const bool vec4 = is_aligned(x, 16) && (norm_w == 0 || is_aligned(norm_w, 16));
  const bool in_vec = staged || vec4;  // the staged input starts on 16 bytes
  const uint16_t* ptrs[NR];
  bool live = first < n_groups && rows(first, ptrs);
  bool vec = rows_vec<NR>(ptrs, in_vec);
  int n_vec = live && vec ? k / 8 : 0;
  Words h[NR][GEMV_UNROLL / NR];
  load_step<NR>(ptrs, wave_lane(), n_vec, h);  // in flight during the prologue
  const bool kept = staged && vec4;  // x and norm_w read once, from registers (Kept)
  Kept gk;
  if (kept && norm_w) gk.load(norm_w, k / 4);  // a weight too: in flight during the wait
  wait();  // x (and the outputs) are the earlier kernels' (phases'); W is not
  wf_allow_dependents();  // after the wait: one kernel ahead at most
  float scale = 1.0f;
  Input<C> in = {0, x, norm_w, scale};
  if (kept) {
    WF_PATH(slot, PATH_LDS);
    Kept xk;
    xk.load(x, k / 4);
    if (norm_w) {
      WF_PATH(slot, PATH_NORM);
      scale = rms_scale_kept(x, xk, k, eps);
    }
    uint16_t* xs = dynamic_shared_u16();
    stage_input_kept<C>(x, xk, norm_w, gk, scale, k, xs);
    in.xs = xs;
  } else {
    if (norm_w) {
      WF_PATH(slot, PATH_NORM);
      scale = rms_scale<GEMV_BLOCK>(x, k, eps, vec4);
    }
    in.scale = scale;
    if (staged) {
      WF_PATH(slot, PATH_LDS);
      uint16_t* xs = dynamic_shared_u16();
      stage_input<C>(x, norm_w, scale, k, vec4, xs);
      in.xs = xs;
    }
  }
  for (int g = first; g < n_groups; g += step) {  // block-uniform
    if (g != first) WF_PATH(slot, PATH_GROUPS);
    pre(g, live);
    float acc[NR];
#pragma unroll
    for (int j = 0; j < NR; ++j) acc[j] = 0.0f;
    if (live) dot_rows<C, NR>(ptrs, in, k, n_vec, h, vec, slot, acc);
    // The next group's rows and first loads, in flight during this group's epilogue.
    const bool was_live = live;
    if (g + step < n_groups) {
      live = rows(g + step, ptrs);
      vec = rows_vec<NR>(ptrs, in_vec);
      n_vec = live && vec ? k / 8 : 0;
      load_step<NR>(ptrs, wave_lane(), n_vec, h);
    }
    epi(g, acc, was_live);
  }
}

template <class C>
WF_DEVICE void gemv_kernel(const uint16_t* w, const float* x, const float* norm_w, float eps,
                           const float* bias, float* out0, float* out1, float* out2, int m0,
                           int m1, int m2, int k, int residual, int n_in, int blocks) {
  const int slot = C::id - 1;
  const int m = m0 + m1 + m2;
  const BatchBlock bb = batch_block(n_in);
  x += (i64)bb.row * k;
  out0 += (i64)bb.row * m0;
  out1 += (i64)bb.row * m1;
  out2 += (i64)bb.row * m2;
  constexpr int ROWS = GEMV_BLOCK / WAVE;  // rows a group: one a wave
  auto row = [&](int g) { return g * ROWS + wave_index(); };
  auto rows = [&](int g, const uint16_t* (&p)[1]) {
    const int r = row(g);
    p[0] = w + (i64)(r < m ? r : 0) * k;  // (k)
    return r < m;
  };
  auto dest = [&](int r) {
    return r < m0 ? out0 + r : r < m0 + m1 ? out1 + (r - m0) : out2 + (r - m0 - m1);
  };
  // The residual's and the bias's values, read before the group's body: in flight during it.
  float before = 0.0f, bias_r = 0.0f;
  auto pre = [&](int g, bool live) {
    const int r = row(g);
    if (live && wave_lane() == 0) {
      if (residual) before = *dest(r);
      if (bias) bias_r = bias[r];
    }
  };
  auto epi = [&](int g, const float(&acc)[1], bool live) {
    const int r = row(g);
    const float s = wave_sum(acc[0]);  // every wave of the block, live or not
    if (live && wave_lane() == 0) {
      float y = s;
      if (bias) {
        WF_PATH(slot, PATH_BIAS);
        y += bias_r;
      }
      if (r < m0) {
        WF_PATH(slot, PATH_OUT0);
      } else if (r < m0 + m1) {
        WF_PATH(slot, PATH_OUT1);
      } else {
        WF_PATH(slot, PATH_OUT2);
      }
      if (residual) {
        WF_PATH(slot, PATH_RESIDUAL);
        y = before + y;
      }
      *dest(r) = y;
    }
  };
  gemv_groups<C, 1>(x, norm_w, eps, k, slot, bb.block, blocks, (m + ROWS - 1) / ROWS, rows,
                    epi, LaunchWait(), pre);
}

template <class C>
WF_DEVICE void gemv_swiglu_kernel(const uint16_t* w, const float* x, const float* norm_w,
                                  float eps, float* out, int inter, int k, int n_in, int act,
                                  int blocks) {
  const int slot = C::id + 1;
  const BatchBlock bb = batch_block(n_in);
  x += (i64)bb.row * k;
  out += (i64)bb.row * inter;
  constexpr int OUTS = GEMV_BLOCK / WAVE;  // outputs a group: one a wave
  auto row = [&](int g) { return g * OUTS + wave_index(); };
  auto rows = [&](int g, const uint16_t* (&p)[2]) {
    const int r = row(g);
    const i64 rr = r < inter ? r : 0;
    p[0] = w + rr * k;                  // gate (k)
    p[1] = w + ((i64)inter + rr) * k;  // up (k)
    return r < inter;
  };
  auto epi = [&](int g, const float(&acc)[2], bool live) {
    const int r = row(g);
    const float gv = wave_sum(acc[0]);
    const float uv = wave_sum(acc[1]);
    if (live && wave_lane() == 0) {
      if (act == ACT_GELU_TANH) {
        WF_PATH(slot, PATH_GELU);
        out[r] = wf_gelu_tanh(gv) * uv;
      } else {
        out[r] = wf_silu(gv) * uv;
      }
    }
  };
  gemv_groups<C, 2>(x, norm_w, eps, k, slot, bb.block, blocks, (inter + OUTS - 1) / OUTS, rows,
                    epi);
}

// ---------------------------------------------------------------------------------------------
// The several-row forms (a batched decode pass: every input row computed exactly as alone, but
// each weight vector loaded and widened once for up to GEMV_NB rows). Taken by the host only
// when K is a multiple of 8 and W, x (and norm_w) start on 16 bytes, where the one-row kernel
// takes its vector path for every row, staged or not; the FMAs of each (row, input row) pair
// are then the one-row kernel's, in its order (lane l: vectors l, l + WAVE, … ascending, each
// vector's 8 elements ascending; the same butterfly), so the results are bit for bit.
//   gemv_stage_{T}: one block per input row writes its input a (rms_norm's scale computed as
//     the one-row kernel's prologue computes it, then the same rounding to the weight type) to
//     xh (n_in, ks), ks = K rounded up to 8: the rows' prologues run once, out of the weight
//     stream's way.
//   gemv_rows_{T}: wave w of block b owns rows GEMV_NR·(b'·WAVES + w) + j (j < GEMV_NR, b' the
//     output block of common.h batch_block over the ceil(n_in / GEMV_NB) input groups) and
//     input rows GEMV_NB·g + i (i < GEMV_NB, g the group); the epilogue as gemv_{T}'s per pair.
//   gemv_swiglu_rows_{T}: the gate and up rows of one output row a wave, the epilogue as
//     gemv_swiglu_{T}'s per input row.
constexpr int GEMV_NB = 8;  // input rows a block of the several-row kernels
constexpr int GEMV_NR = 2;  // weight rows a wave of gemv_rows_{T}

template <class C>
WF_DEVICE void gemv_stage_kernel(const float* x, const float* norm_w, float eps, uint16_t* xh,
                                 int k, int ks, int slot) {
  const int row = block_index_x();
  x += (i64)row * k;
  xh += (i64)row * ks;
  WF_PATH(slot, PATH_VEC);
  const bool vec4 = is_aligned(x, 16) && (norm_w == 0 || is_aligned(norm_w, 16));
  float scale = 1.0f;
  if (norm_w) {
    WF_PATH(slot, PATH_NORM);
    scale = rms_scale<GEMV_BLOCK>(x, k, eps, vec4);
  }
  stage_input<C>(x, norm_w, scale, k, vec4, xh);
}

// acc[j][i] = Σ_v W_j[v] · a_i[v] over this lane's vectors, for the NR rows and the nb ≤ GEMV_NB
// input rows xh + i·ks (staged, on 16 bytes); rows of a dead wave are not read.
template <class C, int NR>
WF_DEVICE void dot_rows_nb(const uint16_t* const (&rows)[NR], bool live, const uint16_t* xh,
                           int ks, int nb, int k, int slot, float (&acc)[NR][GEMV_NB]) {
  constexpr int U = GEMV_UNROLL / NR;
  const int lane = wave_lane();
  const int n_vec = live ? k / 8 : 0;
  Words h[NR][U];
  load_step<NR>(rows, lane, n_vec, h);  // in flight while the kernels ahead drain
  wf_dependency_wait();                 // xh (and the outputs) are the earlier kernels'
  wf_allow_dependents();  // after the wait: one kernel ahead at most
  for (int v0 = lane; v0 < n_vec; v0 += U * WAVE) {
    WF_PATH(slot, PATH_VEC);
    Words next[NR][U];
    load_step<NR>(rows, v0 + U * WAVE, n_vec, next);
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int v = v0 + u * WAVE;
      if (v < n_vec) {
        float wv[NR][8];
#pragma unroll
        for (int j = 0; j < NR; ++j) {
#pragma unroll
          for (int e = 0; e < 8; ++e) wv[j][e] = C::load(word_half(h[j][u], e));
        }
#pragma unroll
        for (int i = 0; i < GEMV_NB; ++i) {
          if (i < nb) {
            uint16_t xv[8];
            load_u16x8(xh + (i64)i * ks + (i64)v * 8, xv);
#pragma unroll
            for (int e = 0; e < 8; ++e) {
              const float xe = C::load(xv[e]);
#pragma unroll
              for (int j = 0; j < NR; ++j) acc[j][i] = wf_fmaf(wv[j][e], xe, acc[j][i]);
            }
          }
        }
      }
    }
#pragma unroll
    for (int j = 0; j < NR; ++j) {
#pragma unroll
      for (int u = 0; u < U; ++u) h[j][u] = next[j][u];
    }
  }
}

template <class C>
WF_DEVICE void gemv_rows_kernel(const uint16_t* w, const uint16_t* xh, int ks, const float* bias,
                                float* out0, float* out1, float* out2, int m0, int m1, int m2,
                                int k, int residual, int n_in) {
  const int slot = C::id + 5;  // 6, 7
  const int m = m0 + m1 + m2;
  const BatchBlock bb = batch_block((n_in + GEMV_NB - 1) / GEMV_NB);
  const int first = bb.row * GEMV_NB;
  const int nb = n_in - first < GEMV_NB ? n_in - first : GEMV_NB;
  xh += (i64)first * ks;
  const int r0 = (bb.block * (GEMV_BLOCK / WAVE) + wave_index()) * GEMV_NR;
  const bool live = r0 < m;
  const uint16_t* rows[GEMV_NR];
#pragma unroll
  for (int j = 0; j < GEMV_NR; ++j) rows[j] = w + (i64)(r0 + j < m ? r0 + j : 0) * k;
  float acc[GEMV_NR][GEMV_NB] = {};
  dot_rows_nb<C, GEMV_NR>(rows, live, xh, ks, nb, k, slot, acc);
#pragma unroll
  for (int i = 0; i < GEMV_NB; ++i) {
    if (i >= nb) break;  // block-uniform
#pragma unroll
    for (int j = 0; j < GEMV_NR; ++j) {
      const float s = wave_sum(acc[j][i]);  // every wave of the block, live or not
      const int r = r0 + j;
      if (r < m && wave_lane() == 0) {
        const i64 row = first + i;
        float y = s;
        if (bias) {
          WF_PATH(slot, PATH_BIAS);
          y += bias[r];
        }
        float* o;
        if (r < m0) {
          WF_PATH(slot, PATH_OUT0);
          o = out0 + row * m0 + r;
        } else if (r < m0 + m1) {
          WF_PATH(slot, PATH_OUT1);
          o = out1 + row * m1 + (r - m0);
        } else {
          WF_PATH(slot, PATH_OUT2);
          o = out2 + row * m2 + (r - m0 - m1);
        }
        if (residual) {
          WF_PATH(slot, PATH_RESIDUAL);
          y = *o + y;
        }
        *o = y;
      }
    }
  }
}

template <class C>
WF_DEVICE void gemv_swiglu_rows_kernel(const uint16_t* w, const uint16_t* xh, int ks, float* out,
                                       int inter, int k, int n_in, int act) {
  const int slot = C::id + 7;  // 8, 9
  const BatchBlock bb = batch_block((n_in + GEMV_NB - 1) / GEMV_NB);
  const int first = bb.row * GEMV_NB;
  const int nb = n_in - first < GEMV_NB ? n_in - first : GEMV_NB;
  xh += (i64)first * ks;
  const int r = bb.block * (GEMV_BLOCK / WAVE) + wave_index();
  const bool live = r < inter;
  const i64 rr = live ? r : 0;
  const uint16_t* const rows[2] = {w + rr * k, w + ((i64)inter + rr) * k};  // gate, up
  float acc[2][GEMV_NB] = {};
  dot_rows_nb<C, 2>(rows, live, xh, ks, nb, k, slot, acc);
#pragma unroll
  for (int i = 0; i < GEMV_NB; ++i) {
    if (i >= nb) break;  // block-uniform
    const float g = wave_sum(acc[0][i]);
    const float u = wave_sum(acc[1][i]);
    if (live && wave_lane() == 0) {
      float* o = out + (i64)(first + i) * inter + r;
      if (act == ACT_GELU_TANH) {
        WF_PATH(slot, PATH_GELU);
        *o = wf_gelu_tanh(g) * u;
      } else {
        *o = wf_silu(g) * u;
      }
    }
  }
}

extern "C" __global__ void __launch_bounds__(GEMV_BLOCK)
    gemv_f16(const uint16_t* w, const float* x, const float* norm_w, float eps,
             const float* bias, float* out0, float* out1, float* out2, int m0, int m1, int m2,
             int k, int residual, int n_in, int blocks) {
  gemv_kernel<F16>(w, x, norm_w, eps, bias, out0, out1, out2, m0, m1, m2, k, residual, n_in,
                   blocks);
}

extern "C" __global__ void __launch_bounds__(GEMV_BLOCK)
    gemv_bf16(const uint16_t* w, const float* x, const float* norm_w, float eps,
              const float* bias, float* out0, float* out1, float* out2, int m0, int m1, int m2,
              int k, int residual, int n_in, int blocks) {
  gemv_kernel<BF16>(w, x, norm_w, eps, bias, out0, out1, out2, m0, m1, m2, k, residual, n_in,
                    blocks);
}

// The persistent chain (`wavefront bench --sync`'s probe of a persistent decode step; bf16
// only): `layers` square GEMVs in one launch, layer l reading row l of x (layers + 1, k) and
// writing row l + 1, W_l = w + l·k·k, each with the RMSNorm prologue when norm_w is given. From
// layer 1 on, a counted grid barrier (common.h) stands where a launched GEMV waits for the
// kernel ahead: after the layer's first weight loads, before its input is read. So each
// layer's rows are gemv_bf16's (the same groups, partition and order: the chain equals
// `layers` launches of gemv_bf16 bit for bit), and the boundary between two layers is a
// barrier instead of a launch. Launch: grid (blocks), every block resident at once (the host's
// check: a grid the device does not hold never passes its first barrier), block GEMV_BLOCK,
// the dynamic shared memory of a GEMV over k; bar 2 ints, zero at launch and left zero.
// Paths: slot 14, gemv_bf16's body (vec, tail, scalar, norm, lds, groups).
template <class C>
WF_DEVICE void gemv_chain_kernel(const uint16_t* w, float* x, const float* norm_w, float eps,
                                 int k, int layers, int blocks, int* bar) {
  constexpr int slot = 14;
  constexpr int ROWS = GEMV_BLOCK / WAVE;  // rows a group: one a wave
  const int n_groups = (k + ROWS - 1) / ROWS;
  for (int l = 0; l < layers; ++l) {  // block-uniform
    const uint16_t* wl = w + (i64)l * k * k;
    float* out = x + (i64)(l + 1) * k;
    auto row = [&](int g) { return g * ROWS + wave_index(); };
    auto rows = [&](int g, const uint16_t* (&p)[1]) {
      const int r = row(g);
      p[0] = wl + (i64)(r < k ? r : 0) * k;
      return r < k;
    };
    auto epi = [&](int g, const float(&acc)[1], bool live) {
      const float s = wave_sum(acc[0]);  // every wave of the block, live or not
      if (live && wave_lane() == 0) out[row(g)] = s;
    };
    auto wait = [&] {
      if (l > 0) {
        wf_grid_barrier_counted(bar, l * blocks);
      } else {
        wf_dependency_wait();
      }
    };
    gemv_groups<C, 1>(x + (i64)l * k, norm_w, eps, k, slot, block_index_x(), blocks, n_groups,
                      rows, epi, wait);
  }
  wf_grid_exit(bar, blocks);
}

extern "C" __global__ void __launch_bounds__(GEMV_BLOCK)
    gemv_chain_bf16(const uint16_t* w, float* x, const float* norm_w, float eps, int k,
                    int layers, int blocks, int* bar) {
  gemv_chain_kernel<BF16>(w, x, norm_w, eps, k, layers, blocks, bar);
}

extern "C" __global__ void __launch_bounds__(GEMV_BLOCK)
    gemv_swiglu_f16(const uint16_t* w, const float* x, const float* norm_w, float eps,
                    float* out, int inter, int k, int n_in, int act, int blocks) {
  gemv_swiglu_kernel<F16>(w, x, norm_w, eps, out, inter, k, n_in, act, blocks);
}

extern "C" __global__ void __launch_bounds__(GEMV_BLOCK)
    gemv_swiglu_bf16(const uint16_t* w, const float* x, const float* norm_w, float eps,
                     float* out, int inter, int k, int n_in, int act, int blocks) {
  gemv_swiglu_kernel<BF16>(w, x, norm_w, eps, out, inter, k, n_in, act, blocks);
}

extern "C" __global__ void __launch_bounds__(GEMV_BLOCK)
    gemv_stage_f16(const float* x, const float* norm_w, float eps, uint16_t* xh, int k, int ks) {
  gemv_stage_kernel<F16>(x, norm_w, eps, xh, k, ks, 4);
}

extern "C" __global__ void __launch_bounds__(GEMV_BLOCK)
    gemv_stage_bf16(const float* x, const float* norm_w, float eps, uint16_t* xh, int k, int ks) {
  gemv_stage_kernel<BF16>(x, norm_w, eps, xh, k, ks, 5);
}

extern "C" __global__ void __launch_bounds__(GEMV_BLOCK)
    gemv_rows_f16(const uint16_t* w, const uint16_t* xh, int ks, const float* bias, float* out0,
                  float* out1, float* out2, int m0, int m1, int m2, int k, int residual,
                  int n_in) {
  gemv_rows_kernel<F16>(w, xh, ks, bias, out0, out1, out2, m0, m1, m2, k, residual, n_in);
}

extern "C" __global__ void __launch_bounds__(GEMV_BLOCK)
    gemv_rows_bf16(const uint16_t* w, const uint16_t* xh, int ks, const float* bias, float* out0,
                   float* out1, float* out2, int m0, int m1, int m2, int k, int residual,
                   int n_in) {
  gemv_rows_kernel<BF16>(w, xh, ks, bias, out0, out1, out2, m0, m1, m2, k, residual, n_in);
}

extern "C" __global__ void __launch_bounds__(GEMV_BLOCK)
    gemv_swiglu_rows_f16(const uint16_t* w, const uint16_t* xh, int ks, float* out, int inter,
                         int k, int n_in, int act) {
  gemv_swiglu_rows_kernel<F16>(w, xh, ks, out, inter, k, n_in, act);
}

extern "C" __global__ void __launch_bounds__(GEMV_BLOCK)
    gemv_swiglu_rows_bf16(const uint16_t* w, const uint16_t* xh, int ks, float* out, int inter,
                          int k, int n_in, int act) {
  gemv_swiglu_rows_kernel<BF16>(w, xh, ks, out, inter, k, n_in, act);
}

// ---------------------------------------------------------------------------------------------
// The matrix-core forms (`WAVEFRONT_GEMV_MMA=1`, Backend::mma_products): the same products on
// the wave matrix instructions of common.h (mma.sync, MFMA, WMMA; the FMA twin elsewhere), over
// inputs staged by gemv_stage_{T} (rounded to the weight type, xh (n_in, ks)). A wave issues a
// handful of instructions per 16-byte weight vector where the FMA kernels widen and multiply
// each weight once per input row, so the weights stream at the same rate for 1 to 16 input
// rows. Taken by the host for K a multiple of 32 (up to GEMV_ROWS_MAX_K) with W, x (and
// norm_w) on 16 bytes, for 1 to GEMV_MMA_NB input rows; every GEMV of such a shape takes them
// while the mode is on, one row or several, so a row's bits do not depend on the rows beside
// it: the matrix instruction computes each output column from its own inputs alone (the padded
// columns read input row 0 and are not written), and the waves' partial tiles are summed in
// wave order.
//   gemv_mma_{T}: block b' (common.h batch_block over the ceil(n_in / 16) input groups) owns
//     weight rows 16·b' … 16·b' + 15 of the stacked W and the group's input rows; wave w takes
//     the slabs of 32 k numbered w, w + WAVES, … in ascending order (the weights of GEMV_MMA_U
//     slabs loaded ahead into registers, or, on NVIDIA sm_80+, of GEMV_MMA_STAGES slabs copied
//     ahead into a shared-memory ring by cp.async: the same words in the same order, so the
//     same bits; the inputs, in LDS or the L2, read at the product: holding them ahead too
//     took 128 registers a thread, 2 blocks an SM on the H200, against 80 and 3),
//     two 16 × 16 × 16 products a slab; the waves' tiles go to LDS and thread t sums
//     element (t / 16, t % 16) over the waves in order, then runs gemv_{T}'s epilogue (bias,
//     out0-2, residual) for weight row 16·b' + t / 16 and input row t % 16.
//   gemv_swiglu_mma_{T}: the tile's rows 0-7 are gate rows 8·b' …, rows 8-15 the up rows of
//     the same outputs; threads t < 128 run gemv_swiglu_{T}'s epilogue on elements t, t + 128.
// Paths: slots 10, 11 gemv_mma_{f16,bf16} (vec, bias, out0-2, residual), 12, 13
// gemv_swiglu_mma_{f16,bf16} (vec, gelu).
constexpr int GEMV_MMA_NB = 16;    // input rows a block (B's columns)
constexpr int GEMV_MMA_SLAB = 32;  // k a wave's step
#if defined(WF_CP_ASYNC)
// Where cp.async is (NVIDIA sm_80+), the weights are prefetched into shared memory: each thread
// copies its own two 16-byte vectors of a slab into its slot of a ring of GEMV_MMA_STAGES slabs
// (after the staged inputs; 8 KiB a stage for the block, the host sizes the dynamic shared
// memory for it: ops::gemv::mma_ring_bytes) and reads them back at the product, so the loads in
// flight hold no registers; the launch bounds ask for 4 blocks an SM (≤ 64 registers a thread).
constexpr int GEMV_MMA_STAGES = 4;
constexpr int GEMV_MMA_MIN_BLOCKS = 4;
#else
constexpr int GEMV_MMA_U = 4;  // slabs of weights a wave has loaded ahead (in registers)
#if defined(WF_HIP)
constexpr int GEMV_MMA_MIN_BLOCKS = 1;
#else
constexpr int GEMV_MMA_MIN_BLOCKS = 2;  // the emulated WAVE=64 on NVIDIA: ≤ 128 registers
#endif
#endif

// One slab's fragments: A from the lane's weight rows, B from its input rows (`lane_rows`:
// pointers at the lane's first element, mma_load_k), `off` the slab's first k.
WF_DEVICE void gemv_mma_slab_a(const uint16_t* const (&lane_rows)[MMA_LOAD_ROWS], int off,
                               MmaA (&a)[2]) {
  const uint16_t* p[MMA_LOAD_ROWS];
#pragma unroll
  for (int j = 0; j < MMA_LOAD_ROWS; ++j) p[j] = lane_rows[j] + off;
  mma_slab_a(p, a);
}

WF_DEVICE void gemv_mma_slab_b(const uint16_t* const (&lane_rows)[MMA_LOAD_ROWS],
                               const uint16_t* xh, int ks, int nb, int off, MmaB (&b)[2]) {
  const uint16_t* p[MMA_LOAD_ROWS];
#pragma unroll
  for (int j = 0; j < MMA_LOAD_ROWS; ++j) p[j] = lane_rows[j] + off;
  mma_slab_b(p, xh + off, ks, nb, b);
}

// The block's 16 × 16 tile of sums: A rows `wrows` of W (the lane's rows, mma_load_row), B
// columns the nb ≤ 16 input rows: staged by gemv_stage_{T} at xh (stride ks), or, with xh
// null, staged here from x (nb rows of k, normed with norm_w) into the dynamic LDS as
// gemv_stage_{T} stages them (the same bits). Element (i, c) to part[i·16 + c] (LDS, after a
// barrier). The dynamic LDS also holds the waves' tiles at the end (after a barrier: the
// staged inputs are read by then).
template <class C>
WF_DEVICE void gemv_mma_tile(const uint16_t* const (&wrows)[MMA_LOAD_ROWS], const float* x,
                             const float* norm_w, float eps, const uint16_t* xh, int ks, int nb,
                             int k, int slot, float* part) {
  constexpr int NW = GEMV_BLOCK / WAVE;
  const int lane = wave_lane();
  const int wv = wave_index_uniform();
  const int kl = mma_load_k(lane);
  const uint16_t* wa[MMA_LOAD_ROWS];
#pragma unroll
  for (int j = 0; j < MMA_LOAD_ROWS; ++j) wa[j] = wrows[j] + kl;
  const int n_slab = k / GEMV_MMA_SLAB;
  MmaC acc;
  mma_zero(acc);
#if defined(WF_CP_ASYNC)
  // The ring: slot (stage st, vector j) of thread t at ring + ((st·2 + j)·GEMV_BLOCK + t)·16.
  constexpr int S = GEMV_MMA_STAGES;
  const uint32_t ring =
      smem_addr(dynamic_shared_u16() + (xh ? 0 : (i64)nb * ks)) + thread_index() * 16;
  auto ring_at = [&](int st, int j) { return ring + (uint32_t)((st * 2 + j) * GEMV_BLOCK * 16); };
#pragma unroll
  for (int st = 0; st < S; ++st) {  // in flight while the kernels ahead drain
    const int s = wv + st * NW;
    if (s < n_slab) {
#pragma unroll
      for (int j = 0; j < 2; ++j) cp_async16(ring_at(st, j), wa[j] + s * GEMV_MMA_SLAB);
    }
    cp_async_commit();  // one group a stage, empty or not
  }
#else
  MmaA a[GEMV_MMA_U][2];
#pragma unroll
  for (int u = 0; u < GEMV_MMA_U; ++u) {
    const int s = wv + u * NW;
    if (s < n_slab) gemv_mma_slab_a(wa, s * GEMV_MMA_SLAB, a[u]);  // in flight while the
  }                                                                // kernels ahead drain
#endif
  wf_dependency_wait();  // x, xh (and the outputs) are the earlier kernels'
  wf_allow_dependents();  // after the wait: one kernel ahead at most
  if (!xh) {             // block-uniform
    WF_PATH(slot, PATH_LDS);
    uint16_t* xs = dynamic_shared_u16();
    const bool vec4 = is_aligned(x, 16) && (norm_w == 0 || is_aligned(norm_w, 16));
    for (int i = 0; i < nb; ++i) {
      const float* xi = x + (i64)i * k;
      float scale = 1.0f;
      if (norm_w) {
        WF_PATH(slot, PATH_NORM);
        scale = rms_scale<GEMV_BLOCK>(xi, k, eps, vec4);
      }
      stage_input<C>(xi, norm_w, scale, k, vec4, xs + (i64)i * ks);  // ends in a barrier
    }
    xh = xs;
  }
  const uint16_t* xb[MMA_LOAD_ROWS];
#pragma unroll
  for (int j = 0; j < MMA_LOAD_ROWS; ++j) {
    const int c = mma_load_row(lane, j);
    xb[j] = xh + (i64)(c < nb ? c : 0) * ks + kl;
  }
#if defined(WF_CP_ASYNC)
  // The same slabs in the same order as below, the weights from the ring: slab s of stage st
  // is this thread's commit group number (s − wv) / NW; S groups are committed ahead of it.
  int st = 0;
  for (int s = wv; s < n_slab; s += NW) {  // wave-uniform
    WF_PATH(slot, PATH_VEC);
    cp_async_wait<S - 1>();
    MmaA a[2];
    mma_slab_a_words(lds_u32x4(ring_at(st, 0)), lds_u32x4(ring_at(st, 1)), a);
    MmaB b[2];
    gemv_mma_slab_b(xb, xh, ks, nb, s * GEMV_MMA_SLAB, b);
    mma<C>(acc, a[0], b[0]);
    mma<C>(acc, a[1], b[1]);  // the stage's words are used: refill it
    const int next = s + S * NW;
    if (next < n_slab) {
#pragma unroll
      for (int j = 0; j < 2; ++j) cp_async16(ring_at(st, j), wa[j] + next * GEMV_MMA_SLAB);
    }
    cp_async_commit();
    st = st + 1 == S ? 0 : st + 1;
  }
  cp_async_wait<0>();  // no copy still lands in the ring (the tiles below overlay it)
#else
  for (int base = wv; base < n_slab; base += GEMV_MMA_U * NW) {
    WF_PATH(slot, PATH_VEC);
#pragma unroll
    for (int u = 0; u < GEMV_MMA_U; ++u) {
      const int s = base + u * NW;
      if (s < n_slab) {  // wave-uniform
        MmaB b[2];
        gemv_mma_slab_b(xb, xh, ks, nb, s * GEMV_MMA_SLAB, b);
        mma<C>(acc, a[u][0], b[0]);
        mma<C>(acc, a[u][1], b[1]);
        const int next = s + GEMV_MMA_U * NW;
        if (next < n_slab) gemv_mma_slab_a(wa, next * GEMV_MMA_SLAB, a[u]);
      }
    }
  }
#endif
  float* waves = (float*)dynamic_shared_u16();  // NW tiles of 256
  block_sync();                                 // every wave's reads of staged inputs are done
#pragma unroll
  for (int e = 0; e < MMA_C; ++e)
    waves[wv * 256 + mma_c_row(lane, e) * 16 + mma_c_col(lane, e)] = acc.c[e];
  block_sync();
  const int t = thread_index();
  float s = 0.0f;
#pragma unroll
  for (int w = 0; w < NW; ++w) s += waves[w * 256 + t];
  part[t] = s;
  block_sync();
}

template <class C>
WF_DEVICE void gemv_mma_kernel(const uint16_t* w, const float* x, const float* norm_w, float eps,
                               const uint16_t* xh, int ks, const float* bias, float* out0,
                               float* out1, float* out2, int m0, int m1, int m2, int k,
                               int residual, int n_in) {
  const int slot = C::id + 9;  // 10, 11
  const int m = m0 + m1 + m2;
  const BatchBlock bb = batch_block((n_in + GEMV_MMA_NB - 1) / GEMV_MMA_NB);
  const int first = bb.row * GEMV_MMA_NB;
  const int nb = n_in - first < GEMV_MMA_NB ? n_in - first : GEMV_MMA_NB;
  if (xh) xh += (i64)first * ks;
  x += (i64)first * k;
  const int r0 = bb.block * 16;
  const uint16_t* wrows[MMA_LOAD_ROWS];
#pragma unroll
  for (int j = 0; j < MMA_LOAD_ROWS; ++j) {
    const int r = r0 + mma_load_row(wave_lane(), j);
    wrows[j] = w + (i64)(r < m ? r : 0) * k;
  }
  WF_SHARED float part[256];
  gemv_mma_tile<C>(wrows, x, norm_w, eps, xh, ks, nb, k, slot, part);
  const int t = thread_index();
  const int r = r0 + t / 16, c = t % 16;
  if (r >= m || c >= nb) return;
  const i64 row = first + c;
  float y = part[t];
  if (bias) {
    WF_PATH(slot, PATH_BIAS);
    y += bias[r];
  }
  float* o;
  if (r < m0) {
    WF_PATH(slot, PATH_OUT0);
    o = out0 + row * m0 + r;
  } else if (r < m0 + m1) {
    WF_PATH(slot, PATH_OUT1);
    o = out1 + row * m1 + (r - m0);
  } else {
    WF_PATH(slot, PATH_OUT2);
    o = out2 + row * m2 + (r - m0 - m1);
  }
  if (residual) {
    WF_PATH(slot, PATH_RESIDUAL);
    y = *o + y;
  }
  *o = y;
}

template <class C>
WF_DEVICE void gemv_swiglu_mma_kernel(const uint16_t* w, const float* x, const float* norm_w,
                                      float eps, const uint16_t* xh, int ks, float* out,
                                      int inter, int k, int n_in, int act) {
  const int slot = C::id + 11;  // 12, 13
  const BatchBlock bb = batch_block((n_in + GEMV_MMA_NB - 1) / GEMV_MMA_NB);
  const int first = bb.row * GEMV_MMA_NB;
  const int nb = n_in - first < GEMV_MMA_NB ? n_in - first : GEMV_MMA_NB;
  if (xh) xh += (i64)first * ks;
  x += (i64)first * k;
  const int r0 = bb.block * 8;
  const uint16_t* wrows[MMA_LOAD_ROWS];
#pragma unroll
  for (int j = 0; j < MMA_LOAD_ROWS; ++j) {
    const int i = mma_load_row(wave_lane(), j);  // tile row: gate i, or up i − 8
    const int r = r0 + (i & 7);
    wrows[j] = w + ((i64)(i < 8 ? 0 : inter) + (r < inter ? r : 0)) * k;
  }
  WF_SHARED float part[256];
  gemv_mma_tile<C>(wrows, x, norm_w, eps, xh, ks, nb, k, slot, part);
  const int t = thread_index();
  const int r = r0 + t / 16, c = t % 16;
  if (t >= 128 || r >= inter || c >= nb) return;
  const float g = part[t], u = part[t + 128];
  float* o = out + (i64)(first + c) * inter + r;
  if (act == ACT_GELU_TANH) {
    WF_PATH(slot, PATH_GELU);
    *o = wf_gelu_tanh(g) * u;
  } else {
    *o = wf_silu(g) * u;
  }
}

extern "C" __global__ void __launch_bounds__(GEMV_BLOCK, GEMV_MMA_MIN_BLOCKS)
    gemv_mma_f16(const uint16_t* w, const float* x, const float* norm_w, float eps,
                 const uint16_t* xh, int ks, const float* bias, float* out0, float* out1,
                 float* out2, int m0, int m1, int m2, int k, int residual, int n_in) {
  gemv_mma_kernel<F16>(w, x, norm_w, eps, xh, ks, bias, out0, out1, out2, m0, m1, m2, k,
                       residual, n_in);
}

extern "C" __global__ void __launch_bounds__(GEMV_BLOCK, GEMV_MMA_MIN_BLOCKS)
    gemv_mma_bf16(const uint16_t* w, const float* x, const float* norm_w, float eps,
                  const uint16_t* xh, int ks, const float* bias, float* out0, float* out1,
                  float* out2, int m0, int m1, int m2, int k, int residual, int n_in) {
  gemv_mma_kernel<BF16>(w, x, norm_w, eps, xh, ks, bias, out0, out1, out2, m0, m1, m2, k,
                        residual, n_in);
}

extern "C" __global__ void __launch_bounds__(GEMV_BLOCK, GEMV_MMA_MIN_BLOCKS)
    gemv_swiglu_mma_f16(const uint16_t* w, const float* x, const float* norm_w, float eps,
                        const uint16_t* xh, int ks, float* out, int inter, int k, int n_in,
                        int act) {
  gemv_swiglu_mma_kernel<F16>(w, x, norm_w, eps, xh, ks, out, inter, k, n_in, act);
}

extern "C" __global__ void __launch_bounds__(GEMV_BLOCK, GEMV_MMA_MIN_BLOCKS)
    gemv_swiglu_mma_bf16(const uint16_t* w, const float* x, const float* norm_w, float eps,
                         const uint16_t* xh, int ks, float* out, int inter, int k, int n_in,
                         int act) {
  gemv_swiglu_mma_kernel<BF16>(w, x, norm_w, eps, xh, ks, out, inter, k, n_in, act);
}
