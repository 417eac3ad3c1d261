// Batch-1 products over GGUF block-quantized weights (the decode step's projections over a
// Q8_0 / Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q4_K / Q5_K / Q6_K model), and the dequantization of
// whole rows (the embedding lookup of a quantized table; the prefill's per-matrix f16 copy
// that feeds the BLAS GEMM):
//   qgemv_{T}:        out (M) = a (K) · Wᵀ (+ bias) (+ out, the residual add), M = m0 + m1 + m2
//                     rows stacked as in gemv.hip (row r to out0, out1 or out2);
//   qgemv_swiglu_{T}: out (I) = act(a · W_gᵀ) ⊙ (a · W_uᵀ) for W = [W_g; W_u] (2·I, K), act
//                     common.h's gated activation (`act` 0 silu, 1 gelu_tanh);
//   dequant_{T}:      out[b, :] = W[row_b, :] · scale for b < n_rows, row_b = ids[b] (ids
//                     given; an id outside [0, vocab) gives a zero row) or row0 + b, the f32
//                     product (scale 1: the value itself, exactly) written as f32 or (out_f16)
//                     as f16 rounded to nearest even;
// where a = x, or with norm_w the RMSNorm of x (rms_norm.hip's scale, common.h rms_scale:
// the same partition and reduction), never rounded: activations stay f32.
//
// Device layout of a block-quantized tensor ("split"): the file's blocks, each cut into its
// quant bytes (QB, a multiple of 16) and the rest (its scales, SB bytes, in the block's byte
// order), stored as two arrays: qa = the quant bytes of every block, block after block, then
// sa (16-byte aligned, right after qa rounded up to 16) = the rest of every block. The bytes
// are the file's, only moved (the host's `quant_split`), so the tensor takes the file's size
// (+ < 16 bytes); every quant load is a 16-byte load. Per type (block elements BE):
//   Q8_0 (BE 32):  qa qs[32];              sa d
//   Q4_0 (32):     qa qs[16];              sa d
//   Q4_1 (32):     qa qs[16];              sa d, m
//   Q5_0 (32):     qa qs[16];              sa d, qh[4]
//   Q5_1 (32):     qa qs[16];              sa d, m, qh[4]
//   Q4_K (256):    qa qs[128];             sa d, dmin, scales[12]
//   Q5_K (256):    qa qh[32], qs[128];     sa d, dmin, scales[12]
//   Q6_K (256):    qa ql[128], qh[64];     sa scales[16], d
// (the formulas are formats/quants.rs's, which are ggml's dequantize_row_*).
//
// Arithmetic: a chunk is 16 quant bytes: Q8_0 16 consecutive elements; every other type 32
// elements in two groups of 16 consecutive ones (low and high nibbles) whose values are
// w = A_g · q + M_g with q the integer quant (minus its offset) and A_g, M_g the group's scale
// and minimum (M = 0 but for Q4_1, Q5_1, Q4_K, Q5_K). The GEMV sums, per group,
// A_g · Σ q·a + M_g · Σ a (f32 FMAs; q exact in f32), so it differs from the reference's
// Σ w·a (w dequantized exactly) by f32 roundings of the same dot products only: the matmul
// bound over K with f32 inputs. The integers are unpacked a word (four values) at a time with
// bitwise operations and converted with one byte permute each (common.h byte_in_mantissa:
// 2^23 + q exactly) and one subtraction; the kernels are bound by this per-element work, not
// by the bytes (bench/results/2026-12-03-qgemv-h200). dequant_{T} computes w exactly as formats/quants.rs does (the
// same operations, products and sums rounded separately: wf_mul_add_rn).
//
// Shapes: qa/sa the split layout of M·K (or 2·I·K, or vocab·K) elements; K a multiple of the
//   block (checked by the host); x (K) f32 and norm_w (K) f32 on 16 bytes (the host's
//   tensors); bias (M) f32 or null; out0/out1/out2 f32 (m1, m2 may be 0); out (I) f32.
// Batches: n_in input rows as in gemv.hip (x (n_in, K), outputs (n_in, ·); the grid n_in times
//   the one-row grid).
// Launch: block B threads, the kernel's bound (QGEMV_BLOCK = 1024, QGEMV_BLOCK_MID = 512 or
//   QGEMV_BLOCK_HEAVY = 256, below) or fewer (256 or 512, the host's WAVEFRONT_QGEMV_THREADS: the
//   kernels take B from the launch, common.h block_threads()); the rows in groups, qgemv ceil(M /
//   ROWS) of ROWS = B/WAVE rows (each wave one row of a group, QGEMV_ROWS_A_WAVE), qgemv_swiglu
//   ceil(I / (B/WAVE)) of B/WAVE outputs (each wave one output: its gate and up rows); grid (n_in
//   · blocks), 1 ≤ blocks ≤ the groups (the host's choice: about what the device holds at once),
//   block b taking the groups b / n_in, b / n_in + blocks, … of input row b % n_in, the input
//   staged once for all of them when K fits one tile (a row's sum is the same whichever block
//   computes it, and the norm's scale whatever B: neither blocks nor B changes a bit); dynamic
//   shared memory 4 · min(K, QGEMV_TILE) · 36/32 bytes (≤ 32,256: two blocks share a 64 KiB CDNA
//   LDS). dequant grid (n_rows), block DEQUANT_BLOCK = 256, no shared memory.
// Indexing: the input is staged tile by tile (QGEMV_TILE = 7168 elements, a multiple of 256,
//   so no block straddles two tiles) in LDS as f32, 4 pad floats after every 32 (element e at
//   e + 4·⌊e/32⌋): lane l of a wave reads its chunks' 16-element groups as 16-byte LDS loads,
//   and the padding spreads the lanes of a load over the banks. Lane l takes the chunks
//   l, l + WAVE, … of the tile (qgemv_swiglu for its two rows at once: each group of the
//   input is read once for both), QGEMV_UNROLL chunks a row in flight ahead of their use (the next
//   step's loads issued before this step's FMAs). Per row the lane keeps one f32 sum, the
//   wave folds them with common.h's butterfly (fixed order), lane 0 runs the epilogue.
//   dequant: thread t writes the chunks t, t + 256, … of its row.
// Overlap (launched overlapped, common.h): the first tile's first weight loads are issued
//   before wf_dependency_wait; x, the outputs and norm_w are touched only after it, and the
//   next kernel may start (wf_allow_dependents) only after it too.
// Contract: M, I, n_rows < 2^31 and K ≤ 2^31 − 1 (host-checked); every thread reaches every
//   barrier and wave reduction (block-uniform loops; waves past the last row reduce zeros and
//   write nothing). Each output element is read and written by one lane only, so `residual`
//   may add into the residual stream in place; x must not alias an output.
// 8-bit activations (qgemv_q8a_{T}, qgemv_swiglu_q8a_{T}; the host's default for every type but
//   Q8_0, Q4_1 and Q5_0, WAVEFRONT_QGEMV_Q8=0/1 for every type): the same launches, rows,
//   lanes and epilogues, but the input staged as int8 (stage_tile_q8_lanes: each group of 32
//   rounded with its own scale d = max|x| / 127, Q8A_TILE = 16384 elements a tile,
//   Q8A_REC = 48 bytes a group: dynamic shared memory min(K, Q8A_TILE) / 32 · 48 ≤ 24 KiB;
//   Q8A_STAGE_LANES = 4 threads a group (1, 2 and 8 build too; the same records), and
//   each 16-element group's sum an exact integer dot product of the weight quants with the
//   input quants (wf_dot4_i8, four at a time), scaled in f32: A_g·d·s (+ M_g·d·Σq). The error
//   against the f32 product is the input rounding (Backend::matmul_input_dtype: Q8_0Kv).
// Paths (WF_PATH; slot 3·type + 0 qgemv, + 1 qgemv_swiglu, + 2 dequant, types in the order
// above; 24 + 2·type + 0 qgemv_q8a, + 1 qgemv_swiglu_q8a). qgemv and qgemv_swiglu (the
// epilogue's paths qgemv only):
//   main:     the body (every launch with a live row)
//   tiles:    K past one tile: the input staged again (after a barrier) for the next tile
//   norm:     the RMSNorm prologue (norm_w given)
//   bias:     the bias added in the epilogue
//   out0:     a row of the first stacked matrix, written to out0
//   out1:     a row of the second, written to out1
//   out2:     a row of the third, written to out2
//   residual: the epilogue adds into the output (out[r] + y)
//   gelu:     qgemv_swiglu with act = ACT_GELU_TANH (the epilogue's activation)
//   groups:   a block past its first row group (blocks < the groups)
// dequant:
//   rows:     rows row0 + b
//   ids:      rows ids[b] (the embedding)
//   f16:      the values rounded to f16 (else f32)
// (An id outside [0, vocab) is a guard, not a path: the row is zeros, as in embedding.hip.)

#include "common.h"

// Threads a block of the one-row GEMVs, per kernel (ABI: ops/qgemv.rs's `threads`): as many
// as keep the kernel's registers unspilled (sm_90 ptxas 13.2, both waves; ptxas 13.0, CI's
// NVRTC check's and the H100's NVRTC, spills 8 bytes of qgemv_q8a_q4_k outside its inner loop,
// which at 1024 threads still measured faster than at 512), so that a block's staged
// input serves as many rows as a multiprocessor keeps in flight (each block stages the whole
// input, and K = 14,336 of f32 through L2 per 8 rows was the down projection's cost: H100, 8B
// Q4_0 8-bit, down 18.9 → 15.8 µs at 1024, bench/results/2026-12-07-qgemv-blocks-h100/):
constexpr int QGEMV_BLOCK = 1024;      // qgemv_{T} but Q4_K's f32 form, Q5_K's and Q6_K's
constexpr int QGEMV_BLOCK_MID = 512;   // those three; qgemv_swiglu_{T} but Q5_K's and Q6_K's
constexpr int QGEMV_BLOCK_HEAVY = 256;  // qgemv_swiglu of Q5_K and Q6_K (~160 registers)
// The RMSNorm prologue's partition (rms_norm.hip's block): the threads past it add zeros after
// (qgemv_rms_scale), so the scale has rms_norm.hip's bits whatever the block.
constexpr int QGEMV_NORM_BLOCK = 256;
constexpr int QGEMV_TILE = 7168;  // input elements staged in LDS at a time
constexpr int QGEMV_UNROLL = 2;   // chunks a row in flight per lane
// qgemv_{T}'s rows a wave takes in a group (ABI: the host's groups). One: 64 registers on sm_90
// for the 32-element types instead of 92 with two (four blocks a multiprocessor instead of
// two); alone it measured the same speed (Q4_0 363.0 against 361.8 tok/s), and the 8-bit
// forms' four-thread prologue was measured and checked on it
// (bench/results/2026-12-07-qgemv-lanes-h100).
constexpr int QGEMV_ROWS_A_WAVE = 1;
constexpr int DEQUANT_BLOCK = 256;
constexpr int Q8A_TILE = 16384;  // input elements the 8-bit form stages at a time
constexpr int Q8A_REC = 48;      // LDS bytes a staged group of 32 takes in the 8-bit form
constexpr int Q8A_UNROLL = 2;    // chunks a row in flight per lane in the 8-bit form
// Threads a staged group of 32 in the 8-bit form's prologue: 1, 2, 4 or 8, the same records.
// 4 measured fastest (bench/results/2026-12-07-qgemv-lanes-h100: one a group leaves half the
// block idle at K = 4096 behind a serial 32-element chain; 8 was slower on every product
// (2026-12-05-qgemv-groups-h100); 2 spilled SGPRs on gfx942).
constexpr int Q8A_STAGE_LANES = 4;
enum QgemvPath {
  PATH_MAIN,
  PATH_TILES,
  PATH_NORM,
  PATH_BIAS,
  PATH_OUT0,
  PATH_OUT1,
  PATH_OUT2,
  PATH_RESIDUAL,
  PATH_GELU,
  PATH_GROUPS
};
enum DequantPath { PATH_ROWS, PATH_IDS, PATH_F16 };

// One chunk's loaded words: q the 16 quant bytes, h the companion high bits (Q5_K, Q6_K), s the
// scale bytes. Words a type does not use are never written nor read (no registers).
struct Chunk {
  uint32_t q[4];
  uint32_t h[4];
  uint32_t s[4];
};

WF_DEVICE void load_words(const uint8_t* p, uint32_t (&w)[4]) {
  const wf_u32x4 t = *(const wf_u32x4*)p;
  w[0] = t.x;
  w[1] = t.y;
  w[2] = t.z;
  w[3] = t.w;
}
WF_DEVICE uint32_t load_u16(const uint8_t* p) { return *(const uint16_t*)p; }
WF_DEVICE uint32_t load_u32(const uint8_t* p) { return *(const uint32_t*)p; }

// u − bias as f32, exact for integers u < 2^23: u placed in the mantissa of 2^23.
WF_DEVICE float int_minus(uint32_t u, float bias) {
  return f32_from_bits(0x4b000000u | u) - (8388608.0f + bias);
}

WF_DEVICE float half_lo(uint32_t w) { return f16_to_f32_hw((uint16_t)(w & 0xffffu)); }
WF_DEVICE float half_hi(uint32_t w) { return f16_to_f32_hw((uint16_t)(w >> 16)); }

// The 4-bit values of elements 4i..4i+3 of group g, one a byte (g = 0: the low nibbles of
// bytes 4i..4i+3 of the chunk, 1: the high nibbles).
WF_DEVICE uint32_t nibbles(const Chunk& c, int g, int i) {
  return (c.q[i] >> (4 * g)) & 0x0f0f0f0fu;
}

// Bits 0..3 of h spread to bit 0 of bytes 0..3 (the four shifted copies do not overlap).
WF_DEVICE uint32_t spread4(uint32_t h) { return ((h & 0xfu) * 0x00204081u) & 0x01010101u; }

// Q4_K/Q5_K: the 6-bit scale and minimum of sub-block j (ggml get_scale_min_k4) from the 12
// scale bytes at byte 4 of the block's rest (s[1..3] = bytes 0–3, 4–7, 8–11 of scales), four
// sub-blocks at a time (one byte each): sub-blocks 0–3 are the low six bits of bytes 0–3
// (scales) and 4–7 (minimums); 4–7 take their low four bits from bytes 8–11 (scale: low
// nibble, minimum: high nibble) and their top two from the top two bits of bytes 0–3 / 4–7.
WF_DEVICE void scale_min_k4(const Chunk& c, int j, float& sc, float& m) {
  const uint32_t sw = j < 4 ? c.s[1] & 0x3f3f3f3fu
                            : (c.s[3] & 0x0f0f0f0fu) | ((c.s[1] >> 2) & 0x30303030u);
  const uint32_t mw = j < 4 ? c.s[2] & 0x3f3f3f3fu
                            : ((c.s[3] >> 4) & 0x0f0f0f0fu) | ((c.s[2] >> 2) & 0x30303030u);
  const int sh = 8 * (j & 3);
  sc = int_minus((sw >> sh) & 0xffu, 0.0f);
  m = int_minus((mw >> sh) & 0xffu, 0.0f);
}

// Per type: id (slot group), BE elements a block, QB/SB bytes of its two parts, CPB chunks a
// block, G groups a chunk, MIN whether M ≠ 0, BIAS the quants' offset; load (chunk cc of block
// blk), elem (the first element of group g within the block), word (the integer quants of
// elements 4i..4i+3 of group g plus BIAS, one unsigned byte each), coef (A_g, M_g).
struct TQ8_0 {
  enum { id = 0, BE = 32, QB = 32, SB = 2, CPB = 2, G = 1, MIN = 0, BIAS = 128 };
  static WF_DEVICE void load(const uint8_t* qa, const uint8_t* sa, i64 blk, int cc, Chunk& c) {
    load_words(qa + blk * QB + 16 * cc, c.q);
    c.s[0] = load_u16(sa + blk * SB);
  }
  static WF_DEVICE int elem(int cc, int g) { return 16 * cc + 0 * g; }
  static WF_DEVICE uint32_t word(const Chunk& c, int /*cc*/, int /*g*/, int i) {
    return c.q[i] ^ 0x80808080u;  // int8 s as the byte s + 128
  }
  static WF_DEVICE void coef(const Chunk& c, int /*cc*/, int /*g*/, float& a, float& m) {
    a = half_lo(c.s[0]);
    m = 0.0f;
  }
};

struct TQ4_0 {
  enum { id = 1, BE = 32, QB = 16, SB = 2, CPB = 1, G = 2, MIN = 0, BIAS = 8 };
  static WF_DEVICE void load(const uint8_t* qa, const uint8_t* sa, i64 blk, int /*cc*/, Chunk& c) {
    load_words(qa + blk * QB, c.q);
    c.s[0] = load_u16(sa + blk * SB);
  }
  static WF_DEVICE int elem(int /*cc*/, int g) { return 16 * g; }
  static WF_DEVICE uint32_t word(const Chunk& c, int /*cc*/, int g, int i) {
    return nibbles(c, g, i);
  }
  static WF_DEVICE void coef(const Chunk& c, int /*cc*/, int /*g*/, float& a, float& m) {
    a = half_lo(c.s[0]);
    m = 0.0f;
  }
};

struct TQ4_1 {
  enum { id = 2, BE = 32, QB = 16, SB = 4, CPB = 1, G = 2, MIN = 1, BIAS = 0 };
  static WF_DEVICE void load(const uint8_t* qa, const uint8_t* sa, i64 blk, int /*cc*/, Chunk& c) {
    load_words(qa + blk * QB, c.q);
    c.s[0] = load_u32(sa + blk * SB);
  }
  static WF_DEVICE int elem(int /*cc*/, int g) { return 16 * g; }
  static WF_DEVICE uint32_t word(const Chunk& c, int /*cc*/, int g, int i) {
    return nibbles(c, g, i);
  }
  static WF_DEVICE void coef(const Chunk& c, int /*cc*/, int /*g*/, float& a, float& m) {
    a = half_lo(c.s[0]);
    m = half_hi(c.s[0]);
  }
};

// Q5_0/Q5_1: bit 4 of element j of group g is bit j + 16·g of qh (s[1]).
WF_DEVICE uint32_t five_bits(const Chunk& c, int g, int i) {
  return nibbles(c, g, i) | (spread4(c.s[1] >> (4 * i + 16 * g)) << 4);
}

struct TQ5_0 {
  enum { id = 3, BE = 32, QB = 16, SB = 6, CPB = 1, G = 2, MIN = 0, BIAS = 16 };
  static WF_DEVICE void load(const uint8_t* qa, const uint8_t* sa, i64 blk, int /*cc*/, Chunk& c) {
    load_words(qa + blk * QB, c.q);
    const uint8_t* s = sa + blk * SB;  // 2-byte aligned
    c.s[0] = load_u16(s);
    c.s[1] = load_u16(s + 2) | (load_u16(s + 4) << 16);
  }
  static WF_DEVICE int elem(int /*cc*/, int g) { return 16 * g; }
  static WF_DEVICE uint32_t word(const Chunk& c, int /*cc*/, int g, int i) {
    return five_bits(c, g, i);
  }
  static WF_DEVICE void coef(const Chunk& c, int /*cc*/, int /*g*/, float& a, float& m) {
    a = half_lo(c.s[0]);
    m = 0.0f;
  }
};

struct TQ5_1 {
  enum { id = 4, BE = 32, QB = 16, SB = 8, CPB = 1, G = 2, MIN = 1, BIAS = 0 };
  static WF_DEVICE void load(const uint8_t* qa, const uint8_t* sa, i64 blk, int /*cc*/, Chunk& c) {
    load_words(qa + blk * QB, c.q);
    const wf_u32x2 t = *(const wf_u32x2*)(sa + blk * SB);
    c.s[0] = t.x;
    c.s[1] = t.y;
  }
  static WF_DEVICE int elem(int /*cc*/, int g) { return 16 * g; }
  static WF_DEVICE uint32_t word(const Chunk& c, int /*cc*/, int g, int i) {
    return five_bits(c, g, i);
  }
  static WF_DEVICE void coef(const Chunk& c, int /*cc*/, int /*g*/, float& a, float& m) {
    a = half_lo(c.s[0]);
    m = half_hi(c.s[0]);
  }
};

// Q4_K/Q5_K chunk cc (0..8) is qs[16·cc, +16): pair p = cc/2 of 64 elements, offset 16·(cc%2);
// group 0 (low nibbles) is sub-block 2p, group 1 (high) sub-block 2p + 1.
WF_DEVICE int k_elem(int cc, int g) { return 64 * (cc >> 1) + 32 * g + 16 * (cc & 1); }
WF_DEVICE void k_coef(const Chunk& c, int cc, int g, float& a, float& m) {
  float sc, mn;
  scale_min_k4(c, 2 * (cc >> 1) + g, sc, mn);
  a = half_lo(c.s[0]) * sc;     // d·sc: exact (an f16 times a 6-bit integer)
  m = -(half_hi(c.s[0]) * mn);  // −dmin·m: exact
}

struct TQ4_K {
  enum { id = 5, BE = 256, QB = 128, SB = 16, CPB = 8, G = 2, MIN = 1, BIAS = 0 };
  static WF_DEVICE void load(const uint8_t* qa, const uint8_t* sa, i64 blk, int cc, Chunk& c) {
    load_words(qa + blk * QB + 16 * cc, c.q);
    load_words(sa + blk * SB, c.s);
  }
  static WF_DEVICE int elem(int cc, int g) { return k_elem(cc, g); }
  static WF_DEVICE uint32_t word(const Chunk& c, int /*cc*/, int g, int i) {
    return nibbles(c, g, i);
  }
  static WF_DEVICE void coef(const Chunk& c, int cc, int g, float& a, float& m) {
    k_coef(c, cc, g, a, m);
  }
};

struct TQ5_K {
  enum { id = 6, BE = 256, QB = 160, SB = 16, CPB = 8, G = 2, MIN = 1, BIAS = 0 };
  static WF_DEVICE void load(const uint8_t* qa, const uint8_t* sa, i64 blk, int cc, Chunk& c) {
    const uint8_t* b = qa + blk * QB;
    load_words(b + 32 + 16 * cc, c.q);
    load_words(b + 16 * (cc & 1), c.h);  // qh[l] for this chunk's l = 16·(cc%2) + j
    load_words(sa + blk * SB, c.s);
  }
  static WF_DEVICE int elem(int cc, int g) { return k_elem(cc, g); }
  static WF_DEVICE uint32_t word(const Chunk& c, int cc, int g, int i) {
    const uint32_t hi = (c.h[i] >> (2 * (cc >> 1) + g)) & 0x01010101u;  // qh bit of each byte
    return nibbles(c, g, i) | (hi << 4);
  }
  static WF_DEVICE void coef(const Chunk& c, int cc, int g, float& a, float& m) {
    k_coef(c, cc, g, a, m);
  }
};

// Q6_K chunk cc (0..8): half hf = cc/4 (128 elements), ql bytes 64·hf + 16·(cc%4); with
// l0 = 16·(cc%2) and k0 = (cc/2)%2 (the chunk is ql[l] or ql[l + 32]), group g is the
// quarter k = k0 + 2g: elements 128·hf + 32·k + l0 + j, bits 2k..2k+2 of qh[32·hf + l0 + j],
// scale scales[8·hf + cc%2 + 2k].
WF_DEVICE int q6_quarter(int cc, int g) { return ((cc >> 1) & 1) + 2 * g; }

struct TQ6_K {
  enum { id = 7, BE = 256, QB = 192, SB = 18, CPB = 8, G = 2, MIN = 0, BIAS = 32 };
  static WF_DEVICE void load(const uint8_t* qa, const uint8_t* sa, i64 blk, int cc, Chunk& c) {
    const uint8_t* b = qa + blk * QB;
    const int hf = cc >> 2;
    load_words(b + 64 * hf + 16 * (cc & 3), c.q);
    load_words(b + 128 + 32 * hf + 16 * (cc & 1), c.h);
    const uint8_t* s = sa + blk * SB;
    c.s[0] = load_u16(s + 16);
    const int sc = 8 * hf + (cc & 1) + 2 * ((cc >> 1) & 1);
    c.s[1] = s[sc];
    c.s[2] = s[sc + 4];
  }
  static WF_DEVICE int elem(int cc, int g) {
    return 128 * (cc >> 2) + 32 * q6_quarter(cc, g) + 16 * (cc & 1);
  }
  static WF_DEVICE uint32_t word(const Chunk& c, int cc, int g, int i) {
    const uint32_t hi = (c.h[i] >> (2 * q6_quarter(cc, g))) & 0x03030303u;  // two qh bits a byte
    return nibbles(c, g, i) | (hi << 4);
  }
  static WF_DEVICE void coef(const Chunk& c, int /*cc*/, int g, float& a, float& m) {
    const uint32_t s = g ? c.s[2] : c.s[1];
    a = half_lo(c.s[0]) * (float)(int)(int8_t)(uint8_t)s;  // d·scale: exact
    m = 0.0f;
  }
};

// The 16 integer quants of group g of a chunk as f32 (exact): 2^23 + (quant + BIAS) from the
// byte permute, minus 2^23 + BIAS.
template <class T>
WF_DEVICE void group_values(const Chunk& c, int cc, int g, float (&v)[16]) {
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const uint32_t w = T::word(c, cc, g, i);
#pragma unroll
    for (int b = 0; b < 4; ++b) v[4 * i + b] = byte_in_mantissa(w, b) - (8388608.0f + T::BIAS);
  }
}

// The padded LDS index of staged element e.
WF_DEVICE int pad_index(int e) { return e + 4 * (e >> 5); }

// Elements i..i+3 of a: x, or its RMSNorm g · (x · scale) (rms_norm.hip's expression); x and g
// on 16 bytes.
WF_DEVICE void load_input4(const float* x, const float* g, float scale, int i, float (&v)[4]) {
  load_f32x4(x + i, v);
  if (g) {
    float w4[4];
    load_f32x4(g + i, w4);
#pragma unroll
    for (int j = 0; j < 4; ++j) v[j] = w4[j] * (v[j] * scale);
  }
}

// Elements [t0, t0 + n) of a (x, or its RMSNorm with g and scale) into xs (padded), n a
// multiple of 32, then a barrier.
WF_DEVICE void stage_tile(const float* x, const float* g, float scale, int t0, int n, float* xs,
                          int nt) {
  for (int i = 4 * thread_index(); i < n; i += 4 * nt) {
    float v[4];
    load_input4(x, g, scale, t0 + i, v);
    store_f32x4(xs + pad_index(i), v);
  }
  block_sync();
}

// The chunks c0, c0 + WAVE, … (U of them, those below c_end) of each row.
template <class T, int NR, int U>
WF_DEVICE void load_step(const uint8_t* qa, const uint8_t* sa, const i64 (&row_blk)[NR], int c0,
                         int c_end, Chunk (&ch)[NR][U]) {
#pragma unroll
  for (int u = 0; u < U; ++u) {
    const int c = c0 + u * WAVE;
    if (c < c_end) {
#pragma unroll
      for (int r = 0; r < NR; ++r) T::load(qa, sa, row_blk[r] + c / T::CPB, c % T::CPB, ch[r][u]);
    }
  }
}

// acc[r] += chunk c of row r · the staged input (tile starting at element t0).
template <class T, int NR>
WF_DEVICE void dot_chunk(const Chunk (&ch)[NR], int c, int t0, const float* xs,
                         float (&acc)[NR]) {
  const int cc = c % T::CPB;
  const int base = (c / T::CPB) * T::BE - t0;
#pragma unroll
  for (int g = 0; g < T::G; ++g) {
    const float* xp = xs + pad_index(base + T::elem(cc, g));
    float xv[16];
#pragma unroll
    for (int v = 0; v < 4; ++v) {
      float t[4];
      load_f32x4(xp + 4 * v, t);
#pragma unroll
      for (int e = 0; e < 4; ++e) xv[4 * v + e] = t[e];
    }
    float sx = 0.0f;
    if (T::MIN) {
#pragma unroll
      for (int j = 0; j < 16; ++j) sx += xv[j];
    }
#pragma unroll
    for (int r = 0; r < NR; ++r) {
      float q[16];
      group_values<T>(ch[r], cc, g, q);
      float sq = 0.0f;
#pragma unroll
      for (int j = 0; j < 16; ++j) sq = wf_fmaf(q[j], xv[j], sq);
      float a, m;
      T::coef(ch[r], cc, g, a, m);
      acc[r] = wf_fmaf(a, sq, acc[r]);
      if (T::MIN) acc[r] = wf_fmaf(m, sx, acc[r]);
    }
  }
}

// The 8-bit-activation form (qgemv_q8a_{T}, qgemv_swiglu_q8a_{T}): group j (32 elements) of
// the tile staged at byte Q8A_REC·j of LDS: its 32 quants (int8) at +0, d (f32) at +32, the
// sums of the quants of elements 0–15 and 16–31 (each within ±2032, 16 bits each, low half
// first) at +36, 8 pad bytes (so the 16-byte loads of a quarter wave, 32 or 16 bytes apart in
// the elements, fall on distinct banks). d = max|x| / 127 over the group, q = rint(x · (1/d))
// (q = 0 where d = 0); a group holding a NaN or an infinity gets d = NaN and q = 0, so every
// product it enters is NaN. Q8A_STAGE_LANES threads quantize a group (stage_tile_q8_lanes).
// A group's scale d = max|x| / 127 and its inverse (0 where d = 0); d = NaN and id = 0 for a
// group holding a NaN or an infinity (not `finite`).
WF_DEVICE void q8a_scale(float amax, bool finite, float& d, float& id) {
  d = finite ? amax / 127.0f : f32_from_bits(0x7fc00000u);
  id = finite && amax > 0.0f ? 1.0f / d : 0.0f;
}

// An input's quant rint(v · (1/d)); 0 in a group that is not finite (no NaN to convert).
WF_DEVICE int q8a_quant(float v, float id, bool finite) {
  // rint(v·id): |v·id| ≤ 127 (plus rounding), so the product rounded to f32 plus 1.5·2²³ is
  // rounded to an integer as rintf rounds (nearest, ties to even), held in the low mantissa
  // bits: two FMA-pipe instructions instead of a conversion.
  const float t = wf_mul_add_rn(v, id, 12582912.0f);
  return finite ? (int)(f32_bits(t) - 0x4B400000u) : 0;
}

// Elements [t0, t0 + n) of a (x, or its RMSNorm with g and scale) quantized into xs as the
// records above (n a multiple of 32), then a barrier, with L threads a group of 32
// (Q8A_STAGE_LANES = L: 1, 2, 4 or 8): thread t takes the 32/L consecutive elements t % L of
// group t / L (+ B/L groups a pass, every thread on every pass, block-uniform), the
// group's max |x| and finiteness over its L lanes by shuffles (masks 1 … L/2: within a warp at
// either wave size), the 16-element sums over the L/2 lanes of each half (L = 1: the thread's
// own two halves). The same records whatever L, bit for bit: the max and the integer sums do
// not depend on the order. L = 4: all B threads busy from K = 8·B on (a 256-thread block from
// K = 2048), a quarter of one a group's serial work.
template <int L>
WF_DEVICE void stage_tile_q8_lanes(const float* x, const float* g, float scale, int t0, int n,
                                   uint8_t* xs, int nt) {
  constexpr int E = 32 / L;  // elements a thread
  const int t = thread_index();
  const int sub = t % L;
  for (int g0 = 0; g0 < n / 32; g0 += nt / L) {  // block-uniform
    const int j = g0 + t / L;
    const bool mine = j < n / 32;
    const int jr = mine ? j : 0;  // a thread past the tile's groups reads group 0, writes nothing
    float v[E];
#pragma unroll
    for (int i = 0; i < E / 4; ++i) {
      float q[4];
      load_input4(x, g, scale, t0 + 32 * jr + E * sub + 4 * i, q);
#pragma unroll
      for (int e = 0; e < 4; ++e) v[4 * i + e] = q[e];
    }
    float amax = 0.0f;
    int finite = 1;
#pragma unroll
    for (int e = 0; e < E; ++e) {
      const float a = f32_from_bits(f32_bits(v[e]) & 0x7fffffffu);
      finite &= a <= 3.402823466e38f ? 1 : 0;  // 0 for NaN and ±inf
      amax = a > amax ? a : amax;
    }
#pragma unroll
    for (int m = 1; m < L; m <<= 1) {
      const float o = wave_shfl_xor(amax, m);
      amax = o > amax ? o : amax;
      finite &= wave_shfl_xor(finite, m);
    }
    float d, id;
    q8a_scale(amax, finite != 0, d, id);
    constexpr int H = E > 16 ? 2 : 1;  // the 16-element halves a thread holds
    uint32_t w[E / 4];
    int sq[H];
#pragma unroll
    for (int h = 0; h < H; ++h) sq[h] = 0;
#pragma unroll
    for (int i = 0; i < E / 4; ++i) {
      w[i] = 0;
#pragma unroll
      for (int b = 0; b < 4; ++b) {
        const int q = q8a_quant(v[4 * i + b], id, finite != 0);
        w[i] |= ((uint32_t)q & 0xffu) << (8 * b);
        sq[H == 2 ? i / 4 : 0] += q;
      }
    }
#pragma unroll
    for (int m = 1; m < L / 2; m <<= 1) sq[0] += wave_shfl_xor(sq[0], m);  // the half's lanes
    if (mine) {
      uint8_t* rec = xs + j * Q8A_REC;
#pragma unroll
      for (int i = 0; i < E / 4; ++i) *(uint32_t*)(rec + E * sub + 4 * i) = w[i];
      if (sub == 0) *(uint32_t*)(rec + 32) = f32_bits(d);
      if constexpr (H == 2) {
        *(uint32_t*)(rec + 36) = ((uint32_t)sq[0] & 0xffffu) | ((uint32_t)sq[H - 1] << 16);
      } else if (sub % (L / 2) == 0) {
        *(uint16_t*)(rec + 36 + 2 * (sub / (L / 2))) = (uint16_t)((uint32_t)sq[0] & 0xffffu);
      }
    }
  }
  block_sync();
}

// The quants of elements 4i..4i+3 of group g as signed bytes, and the offset they carry
// (word = quant + BIAS, each below 128, but for Q8_0: its own int8 bytes, offset 0).
template <class T>
WF_DEVICE uint32_t signed_word(const Chunk& c, int cc, int g, int i) {
  return T::BIAS == 128 ? c.q[i] : T::word(c, cc, g, i);
}

// acc[r] += chunk c of row r · the quantized input (tile starting at element t0): per group,
// s = Σ word·q (four dot4) − bias·Σq, exact; then A_g·d·s (+ M_g·(d·Σq)) in f32.
template <class T, int NR>
WF_DEVICE void dot_chunk_q8(const Chunk (&ch)[NR], int c, int t0, const uint8_t* xs,
                            float (&acc)[NR]) {
  const int cc = c % T::CPB;
  const int base = (c / T::CPB) * T::BE - t0;
#pragma unroll
  for (int g = 0; g < T::G; ++g) {
    const int e = base + T::elem(cc, g);
    const uint8_t* rec = xs + (e >> 5) * Q8A_REC;
    const int half = (e >> 4) & 1;
    uint32_t xq[4];
    load_words(rec + 16 * half, xq);
    const wf_u32x2 meta = *(const wf_u32x2*)(rec + 32);
    const float d = f32_from_bits(meta.x);
    const int sq = (int)(half ? meta.y : meta.y << 16) >> 16;  // sign-extended
#pragma unroll
    for (int r = 0; r < NR; ++r) {
      int s = 0;
#pragma unroll
      for (int i = 0; i < 4; ++i) s = wf_dot4_i8(signed_word<T>(ch[r], cc, g, i), xq[i], s);
      s -= (T::BIAS == 128 ? 0 : T::BIAS) * sq;
      float a, m;
      T::coef(ch[r], cc, g, a, m);
      acc[r] = wf_fmaf(a * d, (float)s, acc[r]);
      if (T::MIN) acc[r] = wf_fmaf(m, d * (float)sq, acc[r]);
    }
  }
}

// The shared body: the block's row groups g = first, first + step, … < n_groups (block-
// uniform: every wave runs every group, live or not). rows(g, row_blk) sets the first block of
// each of the wave's NR rows in group g (a dead row points at a live one: its loads are
// harmless and its sum unused) and returns whether the wave has any live row there (wave-
// uniform); epi(g, acc, live) runs after the group's chunks on every wave (it holds the wave
// reductions) with the lane's sums. When K fits one tile the input is staged once for all the
// block's groups and the next group's first loads are issued before this group's epilogue;
// past one tile every group stages every tile again.
// The RMSNorm scale of x (K on 16 bytes) in a block of at least QGEMV_NORM_BLOCK threads with
// rms_norm.hip's partition and order: the first QGEMV_NORM_BLOCK threads sum (rms_scale_of's
// block_sum over them), the rest only wait, so the same bits whatever the block.
WF_DEVICE float qgemv_rms_scale(const float* x, int k, float eps) {
  const float ss = thread_index() < QGEMV_NORM_BLOCK
                       ? rms_sum_squares<QGEMV_NORM_BLOCK>(x, k, true, 0, 0.0f)
                       : 0.0f;
  return rms_scale_of<QGEMV_NORM_BLOCK>(ss, k, eps);
}

template <class T, int NR, bool Q8, class Rows, class Epi>
WF_DEVICE void qgemv_groups(const uint8_t* qa, const uint8_t* sa, const float* x,
                            const float* norm_w, float eps, int k, int slot, int first, int step,
                            int n_groups, Rows rows, Epi epi) {
  constexpr int TILE = Q8 ? Q8A_TILE : QGEMV_TILE;
  constexpr int TILE_CHUNKS = TILE / T::BE * T::CPB;
  const int lane = wave_lane();
  const int nt = block_threads();  // the launch's (≤ the kernel's bound)
  const int n_chunks = k / T::BE * T::CPB;
  const bool one_tile = k <= TILE;
  float* xs = (float*)dynamic_shared_u16();
  uint8_t* xq = (uint8_t*)dynamic_shared_u16();
  constexpr int U = Q8 ? Q8A_UNROLL : QGEMV_UNROLL;
  Chunk cur[NR][U];
  i64 row_blk[NR];
  bool live = first < n_groups && rows(first, row_blk);
  const int first_end = n_chunks < TILE_CHUNKS ? n_chunks : TILE_CHUNKS;
  if (live) load_step<T, NR, U>(qa, sa, row_blk, lane, first_end, cur);  // during the prologue
  wf_dependency_wait();  // x (and the outputs) are the earlier kernels'; W is not
  wf_allow_dependents();  // after the wait: one kernel ahead at most (as gemv.hip)
  float scale = 1.0f;
  if (norm_w) {
    WF_PATH(slot, PATH_NORM);
    scale = qgemv_rms_scale(x, k, eps);
  }
  auto stage = [&](int t0, int n) {
    if constexpr (Q8) {
      stage_tile_q8_lanes<Q8A_STAGE_LANES>(x, norm_w, scale, t0, n, xq, nt);
    } else {
      stage_tile(x, norm_w, scale, t0, n, xs, nt);
    }
  };
  if (one_tile) stage(0, k);  // once for every group of the block
  for (int g = first; g < n_groups; g += step) {  // block-uniform
    if (g != first) WF_PATH(slot, PATH_GROUPS);
    if (live) WF_PATH(slot, PATH_MAIN);
    float acc[NR];
#pragma unroll
    for (int r = 0; r < NR; ++r) acc[r] = 0.0f;
    for (int t0 = 0; t0 < k; t0 += TILE) {  // block-uniform
      const int n = k - t0 < TILE ? k - t0 : TILE;
      const int c_begin = t0 / T::BE * T::CPB;
      const int c_end = c_begin + n / T::BE * T::CPB;
      if (t0 > 0) WF_PATH(slot, PATH_TILES);
      if (!one_tile) {
        if (t0 > 0 || g != first) {
          block_sync();  // every wave is done with the previous tile
          if (live) load_step<T, NR, U>(qa, sa, row_blk, c_begin + lane, c_end, cur);
        }
        stage(t0, n);
      }
      if (!live) continue;
      for (int c0 = c_begin + lane; c0 < c_end; c0 += U * WAVE) {
        Chunk next[NR][U];
        load_step<T, NR, U>(qa, sa, row_blk, c0 + U * WAVE, c_end, next);
#pragma unroll
        for (int u = 0; u < U; ++u) {
          const int c = c0 + u * WAVE;
          if (c < c_end) {
            Chunk one[NR];
#pragma unroll
            for (int r = 0; r < NR; ++r) one[r] = cur[r][u];
            if (Q8) {
              dot_chunk_q8<T, NR>(one, c, t0, xq, acc);
            } else {
              dot_chunk<T, NR>(one, c, t0, xs, acc);
            }
          }
        }
#pragma unroll
        for (int r = 0; r < NR; ++r) {
#pragma unroll
          for (int u = 0; u < U; ++u) cur[r][u] = next[r][u];
        }
      }
    }
    // The next group's rows, and with one tile its first loads, in flight during the epilogue.
    const bool was_live = live;
    if (g + step < n_groups) {
      live = rows(g + step, row_blk);
      if (one_tile && live) load_step<T, NR, U>(qa, sa, row_blk, lane, first_end, cur);
    }
    epi(g, acc, was_live);
  }
}

template <class T, bool Q8>
WF_DEVICE void qgemv_kernel(const uint8_t* qa, const uint8_t* sa, const float* x,
                            const float* norm_w, float eps, const float* bias, float* out0,
                            float* out1, float* out2, int m0, int m1, int m2, int k,
                            int residual, int n_in, int blocks) {
  const int slot = Q8 ? 24 + 2 * T::id : 3 * T::id;
  const int m = m0 + m1 + m2;
  const BatchBlock bb = batch_block(n_in);
  x += (i64)bb.row * k;
  out0 += (i64)bb.row * m0;
  out1 += (i64)bb.row * m1;
  out2 += (i64)bb.row * m2;
  constexpr int NR = QGEMV_ROWS_A_WAVE;
  const int waves = block_threads() / WAVE;  // the launch's block (≤ its bound)
  const int ROWS = NR * waves;               // rows a group
  const i64 bpr = k / T::BE;
  // The first row of the wave in group g.
  auto row0 = [&](int g) { return NR * (g * waves + wave_index()); };
  auto rows = [&](int g, i64(&row_blk)[NR]) {
    const int r0 = row0(g);
#pragma unroll
    for (int i = 0; i < NR; ++i) row_blk[i] = (i64)(r0 + i < m ? r0 + i : 0) * bpr;
    return r0 < m;
  };
  auto epi = [&](int g, const float(&acc)[NR], bool /*live*/) {
    const int r0 = row0(g);
#pragma unroll
    for (int i = 0; i < NR; ++i) {
      const float s = wave_sum(acc[i]);  // every wave of the block, live or not
      const int r = r0 + i;
      if (r < m && wave_lane() == 0) {
        float y = s;
        if (bias) {
          WF_PATH(slot, PATH_BIAS);
          y += bias[r];
        }
        float* o;
        if (r < m0) {
          WF_PATH(slot, PATH_OUT0);
          o = out0 + r;
        } else if (r < m0 + m1) {
          WF_PATH(slot, PATH_OUT1);
          o = out1 + (r - m0);
        } else {
          WF_PATH(slot, PATH_OUT2);
          o = out2 + (r - m0 - m1);
        }
        if (residual) {
          WF_PATH(slot, PATH_RESIDUAL);
          y = *o + y;
        }
        *o = y;
      }
    }
  };
  qgemv_groups<T, NR, Q8>(qa, sa, x, norm_w, eps, k, slot, bb.block, blocks,
                          (m + ROWS - 1) / ROWS, rows, epi);
}

template <class T, bool Q8>
WF_DEVICE void qgemv_swiglu_kernel(const uint8_t* qa, const uint8_t* sa, const float* x,
                                   const float* norm_w, float eps, float* out, int inter,
                                   int k, int n_in, int act, int blocks) {
  const int slot = Q8 ? 25 + 2 * T::id : 3 * T::id + 1;
  const BatchBlock bb = batch_block(n_in);
  x += (i64)bb.row * k;
  out += (i64)bb.row * inter;
  const int OUTS = block_threads() / WAVE;  // outputs a group (the launch's block, ≤ its bound)
  const i64 bpr = k / T::BE;
  auto rows = [&](int g, i64(&row_blk)[2]) {
    const int r = g * OUTS + wave_index();
    const i64 rr = r < inter ? r : 0;
    row_blk[0] = rr * bpr;                 // gate
    row_blk[1] = ((i64)inter + rr) * bpr;  // up
    return r < inter;
  };
  auto epi = [&](int g, const float(&acc)[2], bool live) {
    const int r = g * OUTS + wave_index();
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
  qgemv_groups<T, 2, Q8>(qa, sa, x, norm_w, eps, k, slot, bb.block, blocks,
                         (inter + OUTS - 1) / OUTS, rows, epi);
}

// Row b of the output: every chunk of the source row dequantized exactly (formats/quants.rs's
// operations: A·q, or A·q + M with the product rounded before the sum).
template <class T>
WF_DEVICE void dequant_kernel(const uint8_t* qa, const uint8_t* sa, const int* ids, int row0,
                              int n_rows, int k, int vocab, void* out, int out_f16,
                              float scale) {
  const int slot = 3 * T::id + 2;
  const int b = block_index_x();
  if (b >= n_rows) return;
  int row = row0 + b;
  if (ids) {
    WF_PATH(slot, PATH_IDS);
    row = ids[b];
  } else {
    WF_PATH(slot, PATH_ROWS);
  }
  const bool valid = !ids || (row >= 0 && row < vocab);
  if (out_f16) WF_PATH(slot, PATH_F16);
  float* of = (float*)out + (i64)b * k;        // (k) when f32
  uint16_t* oh = (uint16_t*)out + (i64)b * k;  // (k) when f16
  const int n_chunks = k / T::BE * T::CPB;
  const i64 blk0 = (i64)(valid ? row : 0) * (k / T::BE);
  for (int c = thread_index(); c < n_chunks; c += DEQUANT_BLOCK) {
    const int cc = c % T::CPB;
    Chunk ch = {};
    if (valid) T::load(qa, sa, blk0 + c / T::CPB, cc, ch);
#pragma unroll
    for (int g = 0; g < T::G; ++g) {
      float a = 0.0f, m = 0.0f;
      if (valid) T::coef(ch, cc, g, a, m);
      const i64 e0 = (i64)(c / T::CPB) * T::BE + T::elem(cc, g);
      float q[16], v[16];
      group_values<T>(ch, cc, g, q);
#pragma unroll
      for (int j = 0; j < 16; ++j) {
        v[j] = 0.0f;
        if (valid) v[j] = (T::MIN ? wf_mul_add_rn(a, q[j], m) : a * q[j]) * scale;
      }
      if (out_f16) {
#pragma unroll
        for (int j = 0; j < 16; j += 4) {
          uint16_t h[4];
#pragma unroll
          for (int e = 0; e < 4; ++e) h[e] = f32_to_f16_hw(v[j + e]);
          store_u16x4(oh + e0 + j, h);
        }
      } else {
#pragma unroll
        for (int j = 0; j < 16; j += 4) {
          float t[4] = {v[j], v[j + 1], v[j + 2], v[j + 3]};
          store_f32x4(of + e0 + j, t);
        }
      }
    }
  }
}

extern "C" __global__ void __launch_bounds__(QGEMV_BLOCK)
    qgemv_q8_0(const uint8_t* qa, const uint8_t* sa, const float* x, const float* norm_w, float eps,
              const float* bias, float* out0, float* out1, float* out2, int m0, int m1, int m2,
              int k, int residual, int n_in, int blocks) {
  qgemv_kernel<TQ8_0, false>(qa, sa, x, norm_w, eps, bias, out0, out1, out2, m0, m1,
      m2, k, residual, n_in, blocks);
}
extern "C" __global__ void __launch_bounds__(QGEMV_BLOCK_MID)
    qgemv_swiglu_q8_0(const uint8_t* qa, const uint8_t* sa, const float* x, const float* norm_w,
                     float eps, float* out, int inter, int k, int n_in, int act, int blocks) {
  qgemv_swiglu_kernel<TQ8_0, false>(qa, sa, x, norm_w, eps, out, inter, k, n_in,
      act, blocks);
}
extern "C" __global__ void __launch_bounds__(DEQUANT_BLOCK)
    dequant_q8_0(const uint8_t* qa, const uint8_t* sa, const int* ids, int row0, int n_rows, int k,
                int vocab, void* out, int out_f16, float scale) {
  dequant_kernel<TQ8_0>(qa, sa, ids, row0, n_rows, k, vocab, out, out_f16, scale);
}

extern "C" __global__ void __launch_bounds__(QGEMV_BLOCK)
    qgemv_q4_0(const uint8_t* qa, const uint8_t* sa, const float* x, const float* norm_w, float eps,
              const float* bias, float* out0, float* out1, float* out2, int m0, int m1, int m2,
              int k, int residual, int n_in, int blocks) {
  qgemv_kernel<TQ4_0, false>(qa, sa, x, norm_w, eps, bias, out0, out1, out2, m0, m1,
      m2, k, residual, n_in, blocks);
}
extern "C" __global__ void __launch_bounds__(QGEMV_BLOCK_MID)
    qgemv_swiglu_q4_0(const uint8_t* qa, const uint8_t* sa, const float* x, const float* norm_w,
                     float eps, float* out, int inter, int k, int n_in, int act, int blocks) {
  qgemv_swiglu_kernel<TQ4_0, false>(qa, sa, x, norm_w, eps, out, inter, k, n_in,
      act, blocks);
}
extern "C" __global__ void __launch_bounds__(DEQUANT_BLOCK)
    dequant_q4_0(const uint8_t* qa, const uint8_t* sa, const int* ids, int row0, int n_rows, int k,
                int vocab, void* out, int out_f16, float scale) {
  dequant_kernel<TQ4_0>(qa, sa, ids, row0, n_rows, k, vocab, out, out_f16, scale);
}

extern "C" __global__ void __launch_bounds__(QGEMV_BLOCK)
    qgemv_q4_1(const uint8_t* qa, const uint8_t* sa, const float* x, const float* norm_w, float eps,
              const float* bias, float* out0, float* out1, float* out2, int m0, int m1, int m2,
              int k, int residual, int n_in, int blocks) {
  qgemv_kernel<TQ4_1, false>(qa, sa, x, norm_w, eps, bias, out0, out1, out2, m0, m1,
      m2, k, residual, n_in, blocks);
}
extern "C" __global__ void __launch_bounds__(QGEMV_BLOCK_MID)
    qgemv_swiglu_q4_1(const uint8_t* qa, const uint8_t* sa, const float* x, const float* norm_w,
                     float eps, float* out, int inter, int k, int n_in, int act, int blocks) {
  qgemv_swiglu_kernel<TQ4_1, false>(qa, sa, x, norm_w, eps, out, inter, k, n_in,
      act, blocks);
}
extern "C" __global__ void __launch_bounds__(DEQUANT_BLOCK)
    dequant_q4_1(const uint8_t* qa, const uint8_t* sa, const int* ids, int row0, int n_rows, int k,
                int vocab, void* out, int out_f16, float scale) {
  dequant_kernel<TQ4_1>(qa, sa, ids, row0, n_rows, k, vocab, out, out_f16, scale);
}

extern "C" __global__ void __launch_bounds__(QGEMV_BLOCK)
    qgemv_q5_0(const uint8_t* qa, const uint8_t* sa, const float* x, const float* norm_w, float eps,
              const float* bias, float* out0, float* out1, float* out2, int m0, int m1, int m2,
              int k, int residual, int n_in, int blocks) {
  qgemv_kernel<TQ5_0, false>(qa, sa, x, norm_w, eps, bias, out0, out1, out2, m0, m1,
      m2, k, residual, n_in, blocks);
}
extern "C" __global__ void __launch_bounds__(QGEMV_BLOCK_MID)
    qgemv_swiglu_q5_0(const uint8_t* qa, const uint8_t* sa, const float* x, const float* norm_w,
                     float eps, float* out, int inter, int k, int n_in, int act, int blocks) {
  qgemv_swiglu_kernel<TQ5_0, false>(qa, sa, x, norm_w, eps, out, inter, k, n_in,
      act, blocks);
}
extern "C" __global__ void __launch_bounds__(DEQUANT_BLOCK)
    dequant_q5_0(const uint8_t* qa, const uint8_t* sa, const int* ids, int row0, int n_rows, int k,
                int vocab, void* out, int out_f16, float scale) {
  dequant_kernel<TQ5_0>(qa, sa, ids, row0, n_rows, k, vocab, out, out_f16, scale);
}

extern "C" __global__ void __launch_bounds__(QGEMV_BLOCK)
    qgemv_q5_1(const uint8_t* qa, const uint8_t* sa, const float* x, const float* norm_w, float eps,
              const float* bias, float* out0, float* out1, float* out2, int m0, int m1, int m2,
              int k, int residual, int n_in, int blocks) {
  qgemv_kernel<TQ5_1, false>(qa, sa, x, norm_w, eps, bias, out0, out1, out2, m0, m1,
      m2, k, residual, n_in, blocks);
}
extern "C" __global__ void __launch_bounds__(QGEMV_BLOCK_MID)
    qgemv_swiglu_q5_1(const uint8_t* qa, const uint8_t* sa, const float* x, const float* norm_w,
                     float eps, float* out, int inter, int k, int n_in, int act, int blocks) {
  qgemv_swiglu_kernel<TQ5_1, false>(qa, sa, x, norm_w, eps, out, inter, k, n_in,
      act, blocks);
}
extern "C" __global__ void __launch_bounds__(DEQUANT_BLOCK)
    dequant_q5_1(const uint8_t* qa, const uint8_t* sa, const int* ids, int row0, int n_rows, int k,
                int vocab, void* out, int out_f16, float scale) {
  dequant_kernel<TQ5_1>(qa, sa, ids, row0, n_rows, k, vocab, out, out_f16, scale);
}

extern "C" __global__ void __launch_bounds__(QGEMV_BLOCK_MID)
    qgemv_q4_k(const uint8_t* qa, const uint8_t* sa, const float* x, const float* norm_w, float eps,
              const float* bias, float* out0, float* out1, float* out2, int m0, int m1, int m2,
              int k, int residual, int n_in, int blocks) {
  qgemv_kernel<TQ4_K, false>(qa, sa, x, norm_w, eps, bias, out0, out1, out2, m0,
      m1, m2, k, residual, n_in, blocks);
}
extern "C" __global__ void __launch_bounds__(QGEMV_BLOCK_MID)
    qgemv_swiglu_q4_k(const uint8_t* qa, const uint8_t* sa, const float* x, const float* norm_w,
                     float eps, float* out, int inter, int k, int n_in, int act, int blocks) {
  qgemv_swiglu_kernel<TQ4_K, false>(qa, sa, x, norm_w, eps, out, inter, k, n_in,
      act, blocks);
}
extern "C" __global__ void __launch_bounds__(DEQUANT_BLOCK)
    dequant_q4_k(const uint8_t* qa, const uint8_t* sa, const int* ids, int row0, int n_rows, int k,
                int vocab, void* out, int out_f16, float scale) {
  dequant_kernel<TQ4_K>(qa, sa, ids, row0, n_rows, k, vocab, out, out_f16, scale);
}

extern "C" __global__ void __launch_bounds__(QGEMV_BLOCK_MID)
    qgemv_q5_k(const uint8_t* qa, const uint8_t* sa, const float* x, const float* norm_w, float eps,
              const float* bias, float* out0, float* out1, float* out2, int m0, int m1, int m2,
              int k, int residual, int n_in, int blocks) {
  qgemv_kernel<TQ5_K, false>(qa, sa, x, norm_w, eps, bias, out0, out1, out2, m0,
      m1, m2, k, residual, n_in, blocks);
}
extern "C" __global__ void __launch_bounds__(QGEMV_BLOCK_HEAVY)
    qgemv_swiglu_q5_k(const uint8_t* qa, const uint8_t* sa, const float* x, const float* norm_w,
                     float eps, float* out, int inter, int k, int n_in, int act, int blocks) {
  qgemv_swiglu_kernel<TQ5_K, false>(qa, sa, x, norm_w, eps, out, inter, k, n_in,
      act, blocks);
}
extern "C" __global__ void __launch_bounds__(DEQUANT_BLOCK)
    dequant_q5_k(const uint8_t* qa, const uint8_t* sa, const int* ids, int row0, int n_rows, int k,
                int vocab, void* out, int out_f16, float scale) {
  dequant_kernel<TQ5_K>(qa, sa, ids, row0, n_rows, k, vocab, out, out_f16, scale);
}

extern "C" __global__ void __launch_bounds__(QGEMV_BLOCK_MID)
    qgemv_q6_k(const uint8_t* qa, const uint8_t* sa, const float* x, const float* norm_w, float eps,
              const float* bias, float* out0, float* out1, float* out2, int m0, int m1, int m2,
              int k, int residual, int n_in, int blocks) {
  qgemv_kernel<TQ6_K, false>(qa, sa, x, norm_w, eps, bias, out0, out1, out2, m0,
      m1, m2, k, residual, n_in, blocks);
}
extern "C" __global__ void __launch_bounds__(QGEMV_BLOCK_HEAVY)
    qgemv_swiglu_q6_k(const uint8_t* qa, const uint8_t* sa, const float* x, const float* norm_w,
                     float eps, float* out, int inter, int k, int n_in, int act, int blocks) {
  qgemv_swiglu_kernel<TQ6_K, false>(qa, sa, x, norm_w, eps, out, inter, k, n_in,
      act, blocks);
}
extern "C" __global__ void __launch_bounds__(DEQUANT_BLOCK)
    dequant_q6_k(const uint8_t* qa, const uint8_t* sa, const int* ids, int row0, int n_rows, int k,
                int vocab, void* out, int out_f16, float scale) {
  dequant_kernel<TQ6_K>(qa, sa, ids, row0, n_rows, k, vocab, out, out_f16, scale);
}

// The 8-bit-activation forms (slots 24 + 2·type + form, the paths of their f32 twins).
extern "C" __global__ void __launch_bounds__(QGEMV_BLOCK)
    qgemv_q8a_q8_0(const uint8_t* qa, const uint8_t* sa, const float* x, const float* norm_w,
                   float eps, const float* bias, float* out0, float* out1, float* out2, int m0,
                   int m1, int m2, int k, int residual, int n_in, int blocks) {
  qgemv_kernel<TQ8_0, true>(qa, sa, x, norm_w, eps, bias, out0, out1, out2, m0, m1, m2,
      k, residual, n_in, blocks);
}
extern "C" __global__ void __launch_bounds__(QGEMV_BLOCK_MID)
    qgemv_swiglu_q8a_q8_0(const uint8_t* qa, const uint8_t* sa, const float* x,
                          const float* norm_w, float eps, float* out, int inter, int k, int n_in,
                          int act, int blocks) {
  qgemv_swiglu_kernel<TQ8_0, true>(qa, sa, x, norm_w, eps, out, inter, k, n_in,
      act, blocks);
}

extern "C" __global__ void __launch_bounds__(QGEMV_BLOCK)
    qgemv_q8a_q4_0(const uint8_t* qa, const uint8_t* sa, const float* x, const float* norm_w,
                   float eps, const float* bias, float* out0, float* out1, float* out2, int m0,
                   int m1, int m2, int k, int residual, int n_in, int blocks) {
  qgemv_kernel<TQ4_0, true>(qa, sa, x, norm_w, eps, bias, out0, out1, out2, m0, m1, m2,
      k, residual, n_in, blocks);
}
extern "C" __global__ void __launch_bounds__(QGEMV_BLOCK_MID)
    qgemv_swiglu_q8a_q4_0(const uint8_t* qa, const uint8_t* sa, const float* x,
                          const float* norm_w, float eps, float* out, int inter, int k, int n_in,
                          int act, int blocks) {
  qgemv_swiglu_kernel<TQ4_0, true>(qa, sa, x, norm_w, eps, out, inter, k, n_in,
      act, blocks);
}

extern "C" __global__ void __launch_bounds__(QGEMV_BLOCK)
    qgemv_q8a_q4_1(const uint8_t* qa, const uint8_t* sa, const float* x, const float* norm_w,
                   float eps, const float* bias, float* out0, float* out1, float* out2, int m0,
                   int m1, int m2, int k, int residual, int n_in, int blocks) {
  qgemv_kernel<TQ4_1, true>(qa, sa, x, norm_w, eps, bias, out0, out1, out2, m0, m1, m2,
      k, residual, n_in, blocks);
}
extern "C" __global__ void __launch_bounds__(QGEMV_BLOCK_MID)
    qgemv_swiglu_q8a_q4_1(const uint8_t* qa, const uint8_t* sa, const float* x,
                          const float* norm_w, float eps, float* out, int inter, int k, int n_in,
                          int act, int blocks) {
  qgemv_swiglu_kernel<TQ4_1, true>(qa, sa, x, norm_w, eps, out, inter, k, n_in,
      act, blocks);
}

extern "C" __global__ void __launch_bounds__(QGEMV_BLOCK)
    qgemv_q8a_q5_0(const uint8_t* qa, const uint8_t* sa, const float* x, const float* norm_w,
                   float eps, const float* bias, float* out0, float* out1, float* out2, int m0,
                   int m1, int m2, int k, int residual, int n_in, int blocks) {
  qgemv_kernel<TQ5_0, true>(qa, sa, x, norm_w, eps, bias, out0, out1, out2, m0, m1, m2,
      k, residual, n_in, blocks);
}
extern "C" __global__ void __launch_bounds__(QGEMV_BLOCK_MID)
    qgemv_swiglu_q8a_q5_0(const uint8_t* qa, const uint8_t* sa, const float* x,
                          const float* norm_w, float eps, float* out, int inter, int k, int n_in,
                          int act, int blocks) {
  qgemv_swiglu_kernel<TQ5_0, true>(qa, sa, x, norm_w, eps, out, inter, k, n_in,
      act, blocks);
}

extern "C" __global__ void __launch_bounds__(QGEMV_BLOCK)
    qgemv_q8a_q5_1(const uint8_t* qa, const uint8_t* sa, const float* x, const float* norm_w,
                   float eps, const float* bias, float* out0, float* out1, float* out2, int m0,
                   int m1, int m2, int k, int residual, int n_in, int blocks) {
  qgemv_kernel<TQ5_1, true>(qa, sa, x, norm_w, eps, bias, out0, out1, out2, m0, m1, m2,
      k, residual, n_in, blocks);
}
extern "C" __global__ void __launch_bounds__(QGEMV_BLOCK_MID)
    qgemv_swiglu_q8a_q5_1(const uint8_t* qa, const uint8_t* sa, const float* x,
                          const float* norm_w, float eps, float* out, int inter, int k, int n_in,
                          int act, int blocks) {
  qgemv_swiglu_kernel<TQ5_1, true>(qa, sa, x, norm_w, eps, out, inter, k, n_in,
      act, blocks);
}

extern "C" __global__ void __launch_bounds__(QGEMV_BLOCK)
    qgemv_q8a_q4_k(const uint8_t* qa, const uint8_t* sa, const float* x, const float* norm_w,
                   float eps, const float* bias, float* out0, float* out1, float* out2, int m0,
                   int m1, int m2, int k, int residual, int n_in, int blocks) {
  qgemv_kernel<TQ4_K, true>(qa, sa, x, norm_w, eps, bias, out0, out1, out2, m0, m1, m2,
      k, residual, n_in, blocks);
}
extern "C" __global__ void __launch_bounds__(QGEMV_BLOCK_MID)
    qgemv_swiglu_q8a_q4_k(const uint8_t* qa, const uint8_t* sa, const float* x,
                          const float* norm_w, float eps, float* out, int inter, int k, int n_in,
                          int act, int blocks) {
  qgemv_swiglu_kernel<TQ4_K, true>(qa, sa, x, norm_w, eps, out, inter, k, n_in,
      act, blocks);
}

extern "C" __global__ void __launch_bounds__(QGEMV_BLOCK_MID)
    qgemv_q8a_q5_k(const uint8_t* qa, const uint8_t* sa, const float* x, const float* norm_w,
                   float eps, const float* bias, float* out0, float* out1, float* out2, int m0,
                   int m1, int m2, int k, int residual, int n_in, int blocks) {
  qgemv_kernel<TQ5_K, true>(qa, sa, x, norm_w, eps, bias, out0, out1, out2, m0, m1,
      m2, k, residual, n_in, blocks);
}
extern "C" __global__ void __launch_bounds__(QGEMV_BLOCK_HEAVY)
    qgemv_swiglu_q8a_q5_k(const uint8_t* qa, const uint8_t* sa, const float* x,
                          const float* norm_w, float eps, float* out, int inter, int k, int n_in,
                          int act, int blocks) {
  qgemv_swiglu_kernel<TQ5_K, true>(qa, sa, x, norm_w, eps, out, inter, k, n_in,
      act, blocks);
}

extern "C" __global__ void __launch_bounds__(QGEMV_BLOCK_MID)
    qgemv_q8a_q6_k(const uint8_t* qa, const uint8_t* sa, const float* x, const float* norm_w,
                   float eps, const float* bias, float* out0, float* out1, float* out2, int m0,
                   int m1, int m2, int k, int residual, int n_in, int blocks) {
  qgemv_kernel<TQ6_K, true>(qa, sa, x, norm_w, eps, bias, out0, out1, out2, m0, m1,
      m2, k, residual, n_in, blocks);
}
extern "C" __global__ void __launch_bounds__(QGEMV_BLOCK_HEAVY)
    qgemv_swiglu_q8a_q6_k(const uint8_t* qa, const uint8_t* sa, const float* x,
                          const float* norm_w, float eps, float* out, int inter, int k, int n_in,
                          int act, int blocks) {
  qgemv_swiglu_kernel<TQ6_K, true>(qa, sa, x, norm_w, eps, out, inter, k, n_in,
      act, blocks);
}
