// Causal grouped-query attention for prefill rows (FlashAttention-2 style): QKᵀ, an online
// softmax and PV in one kernel, on the matrix instructions of kernels/common.h (mma.sync on
// NVIDIA, MFMA on CDNA, WMMA on RDNA3, the FMA twin elsewhere). Same contract as
// attention_{T} (attention.hip): for query row i at position p = pos0 + i and head h, with
// KV head kvh = h / G (G = n_heads / n_kv_heads),
//   out[i, h, :] = Σ_{a ≤ j ≤ p} softmax_j(q[i, h, :] · K[kvh, j, :] · scale) · V[kvh, j, :],
// a = 0, or with a sliding window of w keys (window = w > 0) a = max(0, p + 1 − w); where
// a soft-cap c each score s becomes c · tanh(s / c) before the mask (Gemma 2's attention logit
// soft-cap). The scores are in log2 units (q carries scale · log2 e), so the cap is applied
// there as c' · tanh(x / c') with x = s · log2 e and c' = c · log2 e (= log2 e · c · tanh(s / c),
// the capped score in log2 units). The host passes softcap_log2 = c' (0: off, a launch
// constant, so the branch is uniform) and softcap_k = −2 / c, both ready: a constant derived in
// the kernel would take a VGPR for the whole key loop (on RDNA3 the HD 128 entry points have
// none to spare).
//
// Shapes: q, out (rows, n_heads, head_dim) f32; arena (n_layers, 2, n_kv_heads, capacity,
//   head_dim) of T ∈ {f16, bf16, q8_0} (engine/src/kv_cache.rs; q8_0: common.h Q8, its values
//   widened and rounded to f16 on their way into shared memory, so its matrix type M is f16;
//   for f16/bf16 M = T). Entry points flash_attention_{HD}_{T} take head_dim a multiple of 16
//   (of 32 for q8_0) up to HD ∈ {64, 128, 256}.
// Tiles: a block owns one KV head and BM = 16 · MT · FA_WAVES / SPLIT query rows of the
//   flattened (row, head-in-group) index f = i · G + g, so every K/V tile it loads serves the
//   whole GQA group (G = 1, 3, 4, 8, … alike). The waves go in groups of SPLIT (1, or 2 at
//   HD 256): group r = w / SPLIT owns the MT m-tiles of 16 rows from 16 · MT · r, and its wave
//   w % SPLIT = h the dims d0 = h · HD / SPLIT .. d0 + HD / SPLIT (so no wave holds more than
//   128 dims of q and O: all 256 in one wave spill at gfx1100). Keys go in tiles of BN: K and V
//   tiles in shared memory (16-byte loads, rows padded by 8 values: conflict-free fragment
//   reads), S = Q·Kᵀ (16 · MT × BN a wave; each K fragment read serves the MT m-tiles; with
//   SPLIT = 2 each wave of a pair sums its own dims, and the two partial S are exchanged
//   through shared memory and added, the same f32 sum in both waves), masked, online softmax in
//   registers (a pair computes the same softmax twice), P rounded to T, O += P·V over the
//   wave's dims (each V fragment likewise). Q is rounded to T once, into the A fragments
//   (registers) of the wave's rows and dims. MT, BN and SPLIT per entry point (FaTile) are
//   chosen by measurement and by the register file: no spills at any target.
// Launch: grid (n_kv_heads, Y), block FA_BLOCK = 256 (FA_WAVES = 256 / WAVE waves), Y at least
//   ceil(rows · G / (16 · FA_WAVES / SPLIT)) (the tile count at MT = 1, whatever the entry
//   point's MT); block y runs tile count − 1 − y, so the tiles with the most keys start first,
//   and blocks past the tile count return. Static shared memory: K, V tiles, the waves' P
//   scratch and (SPLIT = 2) their partial scores, 2 · BN · (HD + 8) · 2 + FA_WAVES · 16 ·
//   MMA_SCRATCH_LD · 2 (+ FA_WAVES · 16 · MT · BN · 4) bytes (at most 31 KiB, HD 256 at gfx1100:
//   two blocks in a CDNA CU's 64 KiB, and under CUDA's 48 KiB of static shared memory). The
//   next K/V tile is loaded into registers while the current one computes.
// Masking: keys j > p (and, windowed, j < a) are excluded with −inf before the softmax; a tile
//   wholly at or below the block's first position (and, windowed, at or past the last row's
//   first key) skips the test. Keys past the block's last position, and windowed ones before
//   the block's smallest first key (its first row's a), are never read: the loop starts at that
//   key's tile and the tile rows outside [a_first, last_pos] are zeros (the arena there may hold
//   anything, NaN included). A row whose keys all lie in later tiles keeps m = −inf and adds
//   nothing (its weights and correction are taken against 0 instead of −inf) until they come.
// Rounding (conformance derives the tolerance from it): q and the softmax weights P are rounded
//   to M (the matrix inputs), and q8_0's K and V values too; scores, the running max and sum,
//   and O accumulate in f32 (at SPLIT = 2 a score is the f32 sum of its two halves' f32 dot
//   products: the same dot product of head_dim terms, in another order); the row sum ℓ adds the
//   unrounded weights.
// Positions: pos0 as given (a decode step's device-side position goes to the decode kernels).
// Contract (checked by the host): head_dim a multiple of 16, 16 ≤ head_dim ≤ HD, n_heads a
//   multiple of n_kv_heads, pos0 + rows ≤ capacity, layer < n_layers, Y < 65536, scale finite,
//   softcap_log2 = c·log2 e and softcap_k = −2 / c for a finite c > 0, or both 0.
// Paths (WF_PATH, slot = T's codec id − 1, + 2 for HD = 128, + 6 for HD = 256; q8_0: 4, 5 for
//   HD = 128, 8 for HD = 256):
//   tile:    a key tile wholly below the block's first position (no mask test)
//   masked:  a key tile that crosses a row's position (the causal mask test)
//   partial: the block's last rows run past rows · G (idle rows, not written)
//   window:  a key tile before the last row's first key (the sliding window's mask test)
//   softcap: a key tile's scores soft-capped (softcap > 0)

#include "common.h"

enum FlashAttentionPath { PATH_TILE, PATH_MASKED, PATH_PARTIAL, PATH_WINDOW, PATH_SOFTCAP };

constexpr int FA_BLOCK = 256;
constexpr int FA_WAVES = FA_BLOCK / WAVE;
constexpr int FA_PAD = 8;

// Per entry point: MT m-tiles of 16 rows a wave (each K/V fragment read from shared memory
// serves MT products), BN keys a tile, and BATCH B fragments read ahead of their products (a
// divisor of HD / 16). Measured on the H200 (bench/results/2026-12-03-prefill-h200): MT 2 and
// BN 64 were no faster (measured with ldmatrix loads, since dropped; worth retrying); BATCH 4 gives HD 128 +5% (118 against 112 TFLOP/s at 4096 rows) but
// costs HD 64 its second resident block (registers past 128: 94 against 137), so HD 64 reads
// one ahead. RDNA3's fragments are 8 registers each (all 16 k of a column): there even 2 ahead
// spill at HD 128.
template <int HD>
struct FaTile;
template <>
struct FaTile<64> {
  static constexpr int MT = 1, BN = 32, BATCH = 1, SPLIT = 1;
};
template <>
struct FaTile<128> {
  static constexpr int MT = 1, BN = 32, BATCH = WF_MMA == WF_MMA_WMMA ? 1 : 4, SPLIT = 1;
};
// HD 256: the dims split over a pair of waves (SPLIT), so each wave holds HD 128's q and O
// fragments (all 256 dims in one wave: 546 VGPRs spilled at gfx1100); BN 16 keeps the K/V
// fetch registers and shared memory of HD 128 (BN 32 would pass the 48 KiB of static shared
// memory CUDA allows). Not yet measured.
template <>
struct FaTile<256> {
  static constexpr int MT = 1, BN = 16, BATCH = WF_MMA == WF_MMA_WMMA ? 1 : 4, SPLIT = 2;
};
// How a K/V piece of 8 dims (element e, a multiple of 8) of an arena of storage codec S is
// fetched into 4 registers and becomes 8 matrix-input values in shared memory, and the codec
// of the matrix instructions (Mma). 16-bit KV: one 16-byte vector, stored as it is. Q8_0
// (common.h Q8): 8 quants (8 bytes) and their block's scale, widened to q·d and rounded to f16
// (the matrix inputs are f16; the rounding is conformance's, like q's and P's).
template <class S>
struct FaSrc {
  typedef S Mma;
  static WF_DEVICE void fetch(const uint16_t* arena, i64 e, uint32_t (&w)[4]) {
    const wf_u32x4 t = *(const wf_u32x4*)(arena + e);
    w[0] = t.x;
    w[1] = t.y;
    w[2] = t.z;
    w[3] = t.w;
  }
  static WF_DEVICE wf_u32x4 halves(const uint32_t (&w)[4]) {
    wf_u32x4 x;
    x.x = w[0];
    x.y = w[1];
    x.z = w[2];
    x.w = w[3];
    return x;
  }
};
template <>
struct FaSrc<Q8> {
  typedef F16 Mma;
  static WF_DEVICE void fetch(const uint8_t* arena, i64 e, uint32_t (&w)[4]) {
    const wf_u32x2 t = *(const wf_u32x2*)(arena + Q8::quant_byte(e));
    w[0] = t.x;
    w[1] = t.y;
    w[2] = *(const uint16_t*)(arena + Q8::scale_byte(e));
    w[3] = 0;
  }
  static WF_DEVICE wf_u32x4 halves(const uint32_t (&w)[4]) {
    const float d = f16_to_f32_hw((uint16_t)w[2]);
    uint32_t h[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int b = 2 * i;
      const float lo = (float)(int)(int8_t)((w[b >> 2] >> ((b & 3) * 8)) & 0xffu) * d;
      const float hi = (float)(int)(int8_t)((w[b >> 2] >> (((b + 1) & 3) * 8)) & 0xffu) * d;
      h[i] = (uint32_t)F16::store_hw(lo) | ((uint32_t)F16::store_hw(hi) << 16);
    }
    wf_u32x4 x;
    x.x = h[0];
    x.y = h[1];
    x.z = h[2];
    x.w = h[3];
    return x;
  }
};

// Key rows j0 .. j0 + BN − 1 of the K and V planes at element bases kh, vh, FA_PER pieces of 8
// dims a thread (piece t = thread + u · FA_BLOCK: row t / pieces, dims 8 · (t % pieces) ..);
// rows before first_key or past last_pos are zeros (never read from memory).
template <class S, int FA_PER, int BN>
WF_DEVICE void fa_fetch(uint32_t (&kreg)[FA_PER][4], uint32_t (&vreg)[FA_PER][4],
                        const typename S::storage* arena, i64 kh, i64 vh, int j0, int first_key,
                        int last_pos, int head_dim, int pieces) {
#pragma unroll
  for (int u = 0; u < FA_PER; ++u) {
    const int t = thread_index() + u * FA_BLOCK;
    const int r = t / pieces, c = (t % pieces) * 8;
#pragma unroll
    for (int x = 0; x < 4; ++x) kreg[u][x] = vreg[u][x] = 0u;
    if (t < BN * pieces && j0 + r >= first_key && j0 + r <= last_pos) {
      FaSrc<S>::fetch(arena, kh + (i64)(j0 + r) * head_dim + c, kreg[u]);
      FaSrc<S>::fetch(arena, vh + (i64)(j0 + r) * head_dim + c, vreg[u]);
    }
  }
}

// Piece u of a thread (fa_fetch) into a shared tile row of LD values.
template <class S, int FA_PER>
WF_DEVICE void fa_store(uint16_t* tile, int ld, const uint32_t (&reg)[FA_PER][4], int u, int pieces) {
  const int t = thread_index() + u * FA_BLOCK;
  const int r = t / pieces, c = (t % pieces) * 8;
  *(wf_u32x4*)(tile + r * ld + c) = FaSrc<S>::halves(reg[u]);
}

template <class S, int HD>
WF_DEVICE void flash_attention_kernel(const float* q, const typename S::storage* arena, float* out,
                                       int layer, int pos0, int rows, int n_heads, int n_kv_heads,
                                       int head_dim, int capacity, float scale, int window,
                                       float softcap_log2, float softcap_k) {
  typedef typename FaSrc<S>::Mma KV;  // the matrix inputs' type
  constexpr int MT = FaTile<HD>::MT;  // m-tiles (16 rows) a wave
  constexpr int BN = FaTile<HD>::BN;  // keys a tile
  constexpr int FA_BATCH = FaTile<HD>::BATCH;
  constexpr int SPLIT = FaTile<HD>::SPLIT;  // waves sharing a row tile, HD / SPLIT dims each
  static_assert(SPLIT == 1 || SPLIT == 2, "a row tile's waves are a pair at most");
  constexpr int BM = 16 * MT * FA_WAVES / SPLIT;
  constexpr int LD = HD + FA_PAD;
  constexpr int KSTEPS = HD / SPLIT / 16;  // the wave's k-steps of Q·Kᵀ and n-tiles of O
  constexpr int NT = BN / 16;              // n-tiles of S and k-steps of P·V
  constexpr int FA_PER = (BN * HD / 8 + FA_BLOCK - 1) / FA_BLOCK;  // K (and V) pieces a thread
  constexpr int XW = MT * NT * MMA_C * WAVE;  // a wave's partial scores (SPLIT > 1)
  const int slot = S::id == Q8::id ? (HD == 256 ? 8 : HD == 128 ? 5 : 4)
                                   : S::id - 1 + (HD == 256 ? 6 : HD == 128 ? 2 : 0);
  WF_SHARED uint16_t ks[BN * LD];
  WF_SHARED uint16_t vs[BN * LD];
  WF_SHARED uint16_t scratch[FA_WAVES * 16 * MMA_SCRATCH_LD];
  WF_SHARED float xs[SPLIT > 1 ? FA_WAVES * XW : 1];

  const int kvh = block_index_x();
  const int group = n_heads / n_kv_heads;
  const int flat = rows * group;  // flattened (row, head-in-group) count
  const int tiles = (flat + BM - 1) / BM;
  const int tile = tiles - 1 - block_index_y();  // the most keys first
  if (tile < 0) return;  // the grid is sized for one m-tile a wave
  const int f0 = tile * BM;
  const int f_end = f0 + BM < flat ? f0 + BM : flat;
  if (f0 + BM > flat && thread_index() == 0) WF_PATH(slot, PATH_PARTIAL);
  const int first_pos = pos0 + f0 / group;         // the block's smallest position
  const int last_pos = pos0 + (f_end - 1) / group;  // and largest: keys 0 ..= last_pos
  // Windowed: the first row's first key (no row sees a key before it) and the last row's (from
  // there on no row's window masks a key).
  const int first_key = window > 0 && first_pos + 1 - window > 0 ? first_pos + 1 - window : 0;
  const int last_first = window > 0 && last_pos + 1 - window > 0 ? last_pos + 1 - window : 0;
  const int j_begin = first_key / BN * BN;  // the tiles before first_key's are never read
  const int lane = wave_lane(), w = wave_index();
  const int d0 = 16 * KSTEPS * (wave_index_uniform() % SPLIT);  // the wave's first dim
  const int ksteps = (head_dim - d0) / 16;     // its k-steps within head_dim (≤ 0: none)
  const int fw = f0 + 16 * MT * (w / SPLIT);   // its first row

  // Q: the wave's rows, rounded to T into A fragments (k-step kk covers dims 16kk ..).
  MmaA qa[MT][KSTEPS];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int kk = 0; kk < KSTEPS; ++kk) {
      float v[MMA_A_N];
#pragma unroll
      for (int i = 0; i < MMA_A_N; ++i) {
        const int f = fw + 16 * mt + mma_a_row(lane, i);
        const int d = 16 * kk + mma_a_k(lane, i);
        v[i] = 0.0f;
        if (f < f_end && d < head_dim - d0) {
          const int r = f / group, h = kvh * group + f % group;
          v[i] = q[((i64)r * n_heads + h) * head_dim + d0 + d] * (scale * FA_LOG2E);
        }
      }
      qa[mt][kk] = mma_a_pack<KV>(v);
    }
  // Each row slot's position (idle rows: the last position, so they see keys and stay finite).
  int pos[MT][MMA_ROWS];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int e = 0; e < MMA_C; ++e) {
      const int f = fw + 16 * mt + mma_c_row(lane, e);
      pos[mt][mma_c_slot(e)] = f < f_end ? pos0 + f / group : last_pos;
    }

  MmaC o[MT][KSTEPS];
  float m[MT][MMA_ROWS], l[MT][MMA_ROWS];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int n = 0; n < KSTEPS; ++n) mma_zero(o[mt][n]);
#pragma unroll
    for (int r = 0; r < MMA_ROWS; ++r) {
      m[mt][r] = -wf_inf();
      l[mt][r] = 0.0f;
    }
  }

  const i64 plane = (i64)capacity * head_dim;
  const i64 kh = (((i64)layer * 2 + 0) * n_kv_heads + kvh) * plane;  // element bases
  const i64 vh = (((i64)layer * 2 + 1) * n_kv_heads + kvh) * plane;
  const int pieces = head_dim / 8;  // 16-byte pieces a key row
  uint16_t* wscratch = scratch + w * 16 * MMA_SCRATCH_LD;
  const uint16_t* kw = ks + d0;  // the wave's dims of the K and V tiles
  const uint16_t* vw = vs + d0;

  // K/V tiles are fetched into registers one tile ahead (the loads of tile j + 1 are in flight
  // while tile j computes), then stored to shared memory.
  uint32_t kreg[FA_PER][4], vreg[FA_PER][4];
  fa_fetch<S, FA_PER, BN>(kreg, vreg, arena, kh, vh, j_begin, first_key, last_pos, head_dim,
                          pieces);
  for (int j0 = j_begin; j0 <= last_pos; j0 += BN) {
    block_sync();  // the previous tile's readers are done
#pragma unroll
    for (int u = 0; u < FA_PER; ++u) {
      if (thread_index() + u * FA_BLOCK < BN * pieces) {
        fa_store<S>(ks, LD, kreg, u, pieces);
        fa_store<S>(vs, LD, vreg, u, pieces);
      }
    }
    block_sync();
    if (j0 + BN <= last_pos)
      fa_fetch<S, FA_PER, BN>(kreg, vreg, arena, kh, vh, j0 + BN, first_key, last_pos, head_dim,
                              pieces);

    // S = Q·Kᵀ: each K fragment serves the wave's MT m-tiles.
    // FA_BATCH fragments are read before their products issue (loads in flight together).
    MmaC s[MT][NT];
#pragma unroll
    for (int n = 0; n < NT; ++n) {
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) mma_zero(s[mt][n]);
#pragma unroll
      for (int k0 = 0; k0 < KSTEPS; k0 += FA_BATCH) {
        MmaB kb[FA_BATCH];
#pragma unroll
        for (int b = 0; b < FA_BATCH; ++b)
          if (k0 + b < ksteps) kb[b] = mma_b_nk(kw + 16 * n * LD + 16 * (k0 + b), LD);
#pragma unroll
        for (int b = 0; b < FA_BATCH; ++b)
          if (k0 + b < ksteps)
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) mma<KV>(s[mt][n], qa[mt][k0 + b], kb[b]);
      }
    }
    if (SPLIT > 1) {
      // A pair's partial scores (each over its own dims) summed through shared memory: both
      // waves add the same two f32 values (addition commutes), so both hold the same S and
      // compute the same softmax. The next tile's first barrier orders these reads before
      // the next writes.
      float* mine = xs + w * XW;
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int n = 0; n < NT; ++n)
#pragma unroll
          for (int e = 0; e < MMA_C; ++e) mine[((mt * NT + n) * MMA_C + e) * WAVE + lane] = s[mt][n].c[e];
      block_sync();
      const float* other = xs + (w ^ 1) * XW;
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int n = 0; n < NT; ++n)
#pragma unroll
          for (int e = 0; e < MMA_C; ++e) s[mt][n].c[e] += other[((mt * NT + n) * MMA_C + e) * WAVE + lane];
    }
    if (softcap_log2 > 0.0f) {  // before the mask: a masked score stays −inf
      if (thread_index() == 0) WF_PATH(slot, PATH_SOFTCAP);
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int n = 0; n < NT; ++n)
#pragma unroll
          for (int e = 0; e < MMA_C; ++e)
            s[mt][n].c[e] = fa_softcap(s[mt][n].c[e], softcap_log2, softcap_k);
    }
    const bool masked = j0 + BN - 1 > first_pos;
    const bool windowed = j0 < last_first;
    if (masked || windowed) {
      if (thread_index() == 0) {
        if (masked) WF_PATH(slot, PATH_MASKED);
        if (windowed) WF_PATH(slot, PATH_WINDOW);
      }
      // j outside [p + 1 − w, p] ⇔ p − j ∉ [0, w) ⇔ (unsigned)(p − j) ≥ w, one compare (p − j
      // < 0 wraps past 2³¹; window 0: w = 2³¹ − 1, the causal test alone)
      const unsigned w_lo = window > 0 ? (unsigned)window : 0x7fffffffu;
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int n = 0; n < NT; ++n)
#pragma unroll
          for (int e = 0; e < MMA_C; ++e) {
            const int j = j0 + 16 * n + mma_c_col(lane, e), p = pos[mt][mma_c_slot(e)];
            if ((unsigned)(p - j) >= w_lo) s[mt][n].c[e] = -wf_inf();
          }
    } else if (thread_index() == 0) {
      WF_PATH(slot, PATH_TILE);
    }
    // Online softmax (scores are already in log2 units: q carries scale · log2 e).
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      float mx[MMA_ROWS];
#pragma unroll
      for (int r = 0; r < MMA_ROWS; ++r) mx[r] = -wf_inf();
#pragma unroll
      for (int n = 0; n < NT; ++n)
#pragma unroll
        for (int e = 0; e < MMA_C; ++e) mx[mma_c_slot(e)] = max_num(mx[mma_c_slot(e)], s[mt][n].c[e]);
      float corr[MMA_ROWS], sum[MMA_ROWS];
#pragma unroll
      for (int r = 0; r < MMA_ROWS; ++r) {
        // m stays −inf until a tile holds one of the row's keys (the first tile, unwindowed);
        // until then the weights (all 0) and the correction are taken against 0, not −inf.
        const float m_new = max_num(m[mt][r], mma_row_max(mx[r]));
        corr[r] = fa_exp2(m[mt][r] - fa_ref(m_new));  // 0 while m = −inf (l and O are 0 then)
        m[mt][r] = m_new;
        sum[r] = 0.0f;
      }
#pragma unroll
      for (int n = 0; n < NT; ++n)
#pragma unroll
        for (int e = 0; e < MMA_C; ++e) {
          const float p = fa_exp2(s[mt][n].c[e] - fa_ref(m[mt][mma_c_slot(e)]));
          s[mt][n].c[e] = p;
          sum[mma_c_slot(e)] += p;
        }
#pragma unroll
      for (int r = 0; r < MMA_ROWS; ++r) l[mt][r] = l[mt][r] * corr[r] + mma_row_sum(sum[r]);
#pragma unroll
      for (int n = 0; n < KSTEPS; ++n)
#pragma unroll
        for (int e = 0; e < MMA_C; ++e) o[mt][n].c[e] *= corr[mma_c_slot(e)];
    }
    // O += P · V: each V fragment serves the wave's MT m-tiles.
#pragma unroll
    for (int kk = 0; kk < NT; ++kk) {
      MmaA pa[MT];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) pa[mt] = mma_c_to_a<KV>(s[mt][kk], wscratch);
#pragma unroll
      for (int n0 = 0; n0 < KSTEPS; n0 += FA_BATCH) {
        MmaB vb[FA_BATCH];
#pragma unroll
        for (int b = 0; b < FA_BATCH; ++b)
          if (n0 + b < ksteps) vb[b] = mma_b_kn(vw + 16 * kk * LD + 16 * (n0 + b), LD);
#pragma unroll
        for (int b = 0; b < FA_BATCH; ++b)
          if (n0 + b < ksteps)
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) mma<KV>(o[mt][n0 + b], pa[mt], vb[b]);
      }
    }
  }

#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int e = 0; e < MMA_C; ++e) {
      const int f = fw + 16 * mt + mma_c_row(lane, e);
      if (f >= f_end) continue;
      const int r = f / group, h = kvh * group + f % group;
      float* orow = out + ((i64)r * n_heads + h) * head_dim + d0;
      const float inv = 1.0f / l[mt][mma_c_slot(e)];
#pragma unroll
      for (int n = 0; n < KSTEPS; ++n) {
        const int d = 16 * n + mma_c_col(lane, e);
        if (n < ksteps) orow[d] = o[mt][n].c[e] * inv;
      }
    }
}

extern "C" __global__ void __launch_bounds__(FA_BLOCK)
    flash_attention_64_f16(const float* q, const uint16_t* arena, float* out, int layer, int pos0,
        int rows, int n_heads, int n_kv_heads, int head_dim, int capacity, float scale,
        int window, float softcap_log2, float softcap_k) {
  flash_attention_kernel<F16, 64>(q, arena, out, layer, pos0, rows, n_heads, n_kv_heads, head_dim,
                                  capacity, scale, window, softcap_log2, softcap_k);
}

extern "C" __global__ void __launch_bounds__(FA_BLOCK)
    flash_attention_64_bf16(const float* q, const uint16_t* arena, float* out, int layer, int pos0,
        int rows, int n_heads, int n_kv_heads, int head_dim, int capacity, float scale,
        int window, float softcap_log2, float softcap_k) {
  flash_attention_kernel<BF16, 64>(q, arena, out, layer, pos0, rows, n_heads, n_kv_heads, head_dim,
                                   capacity, scale, window, softcap_log2, softcap_k);
}

extern "C" __global__ void __launch_bounds__(FA_BLOCK)
    flash_attention_128_f16(const float* q, const uint16_t* arena, float* out, int layer, int pos0,
        int rows, int n_heads, int n_kv_heads, int head_dim, int capacity, float scale,
        int window, float softcap_log2, float softcap_k) {
  flash_attention_kernel<F16, 128>(q, arena, out, layer, pos0, rows, n_heads, n_kv_heads, head_dim,
                                   capacity, scale, window, softcap_log2, softcap_k);
}

extern "C" __global__ void __launch_bounds__(FA_BLOCK)
    flash_attention_128_bf16(const float* q, const uint16_t* arena, float* out, int layer, int pos0,
        int rows, int n_heads, int n_kv_heads, int head_dim, int capacity, float scale,
        int window, float softcap_log2, float softcap_k) {
  flash_attention_kernel<BF16, 128>(q, arena, out, layer, pos0, rows, n_heads, n_kv_heads, head_dim,
                                    capacity, scale, window, softcap_log2, softcap_k);
}

extern "C" __global__ void __launch_bounds__(FA_BLOCK)
    flash_attention_64_q8_0(const float* q, const uint8_t* arena, float* out, int layer, int pos0,
        int rows, int n_heads, int n_kv_heads, int head_dim, int capacity, float scale,
        int window, float softcap_log2, float softcap_k) {
  flash_attention_kernel<Q8, 64>(q, arena, out, layer, pos0, rows, n_heads, n_kv_heads, head_dim,
                                 capacity, scale, window, softcap_log2, softcap_k);
}

extern "C" __global__ void __launch_bounds__(FA_BLOCK)
    flash_attention_128_q8_0(const float* q, const uint8_t* arena, float* out, int layer, int pos0,
        int rows, int n_heads, int n_kv_heads, int head_dim, int capacity, float scale,
        int window, float softcap_log2, float softcap_k) {
  flash_attention_kernel<Q8, 128>(q, arena, out, layer, pos0, rows, n_heads, n_kv_heads, head_dim,
                                  capacity, scale, window, softcap_log2, softcap_k);
}

extern "C" __global__ void __launch_bounds__(FA_BLOCK)
    flash_attention_256_f16(const float* q, const uint16_t* arena, float* out, int layer, int pos0,
        int rows, int n_heads, int n_kv_heads, int head_dim, int capacity, float scale,
        int window, float softcap_log2, float softcap_k) {
  flash_attention_kernel<F16, 256>(q, arena, out, layer, pos0, rows, n_heads, n_kv_heads, head_dim,
                                   capacity, scale, window, softcap_log2, softcap_k);
}

extern "C" __global__ void __launch_bounds__(FA_BLOCK)
    flash_attention_256_bf16(const float* q, const uint16_t* arena, float* out, int layer, int pos0,
        int rows, int n_heads, int n_kv_heads, int head_dim, int capacity, float scale,
        int window, float softcap_log2, float softcap_k) {
  flash_attention_kernel<BF16, 256>(q, arena, out, layer, pos0, rows, n_heads, n_kv_heads, head_dim,
                                    capacity, scale, window, softcap_log2, softcap_k);
}

extern "C" __global__ void __launch_bounds__(FA_BLOCK)
    flash_attention_256_q8_0(const float* q, const uint8_t* arena, float* out, int layer, int pos0,
        int rows, int n_heads, int n_kv_heads, int head_dim, int capacity, float scale,
        int window, float softcap_log2, float softcap_k) {
  flash_attention_kernel<Q8, 256>(q, arena, out, layer, pos0, rows, n_heads, n_kv_heads, head_dim,
                                 capacity, scale, window, softcap_log2, softcap_k);
}
