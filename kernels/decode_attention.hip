// The decode step's attention (one query row at position p = pos) with the RoPE and the KV
// write fused in, split over the keys (flash-decoding) for long contexts:
//   q_h  = rope(q[h]),  k_p = rope(k[kvh]),  v_p = v[kvh]     (rope.hip's rotation, bit for bit)
//   K[kvh, p] ← k_p,  V[kvh, p] ← v_p                          (rounded to the KV type)
//   s_j  = (q_h · K[kvh, j]) · scale                           for keys j = a ..= p
//   s_j ← softcap · tanh(s_j / softcap)                          where softcap > 0
//   out[h] = Σ_j softmax(s)_j · V[kvh, j]
// for every query head h, kvh = h / G (G = n_heads / n_kv_heads), where the key at p is the
// rotated k_p rounded to the KV type (the value the arena holds after the step), and a = 0, or
// with a sliding window of w keys (window = w > 0, a launch constant) a = max(0, p + 1 − w).
// The soft-cap (Gemma 2's attention logit soft-cap, common.h wf_softcap) is a launch constant
// too (0: off), so its branch is uniform.
//
// Shapes: q (n_heads, head_dim), k, v (n_kv_heads, head_dim) f32 (the QKV projection's outputs,
//   before RoPE; q is not written); inv_freq (head_dim / 2 + 1) f32 (the frequencies, then the
//   attention factor sin and cos are multiplied by, as in rope.hip); arena (n_layers, 2,
//   n_kv_heads, capacity, head_dim) of T ∈ {f16, bf16} (engine/src/kv_cache.rs, K at kv = 0);
//   out (n_heads, head_dim) f32; ws f32: n_heads · s_max · head_dim partial accumulators, then
//   n_heads · s_max (max, sum) pairs; counters (n_kv_heads · slabs) ints, zero between launches.
// Launch: grid (n_kv_heads · slabs, s_max), slabs = ceil(G / DA_GROUP); block DA_BLOCK = 256,
//   launch bounds asking for DA_MIN_BLOCKS = 2 resident blocks (CUDA: blocks per SM; HIP: waves
//   per SIMD, the same for 256-thread blocks of wave64);
//   static shared memory: DA_BUF floats of scores / partials, 16 KiB at WAVE=64 and 32 KiB at
//   WAVE=32, the sin/cos table ≤ 1 KiB, the new key and value ≤ 2 KiB; dynamic shared memory
//   only on the async path (below): the ring, DA_STAGES · DA_UNROLL · DA_BLOCK · 16 bytes (the
//   host gives it RING_STAGES ≥ DA_STAGES batches there, none elsewhere).
// Work split: block (b, s) takes KV head kvh = b / slabs and the query heads kvh·G + slab·4 ..
//   (at most DA_GROUP = 4 of them, slab = b mod slabs: a group of more than 4 reads its K/V once
//   per slab), over the keys of split s. With len = p + 1 − a keys (a the window's first key,
//   0 without one), the splits in use are n = min(s_max, ceil(len / DA_MIN_KEYS)), each of
//   c = ceil(len / n) keys (then n = ceil(len / c)): split s covers [a + s·c, min(p + 1, a +
//   (s + 1)·c)); blocks with s ≥ n return at once. Keys before a are never read. The partition
//   depends on p, the window and s_max only (window and s_max are fixed at launch, p read from
//   the step: one captured launch serves every length).
// Indexing: a key row is head_dim / 8 pieces of 16 bytes. Thread t is piece pc = t mod P2 of key
//   slot t / P2 (P2 = the power of two ≥ head_dim / 8, ≤ 32, so a key's lanes sit in one wave;
//   lanes with pc ≥ head_dim / 8 only take part in the shuffles): the block reads 256 / P2 keys
//   per step, each lane one 16-byte vector of K (then V), DA_UNROLL steps a batch. The batches
//   come from one read stream (KvStream: a sub-chunk's K batches, its V batches, the next
//   sub-chunk's K batches) that loads ahead of their use across the softmax and the sub-chunks
//   (the first K batches before the angles are computed, the first V batches during the
//   softmax): on the register path one batch ahead (held in registers); on the async path
//   (NVIDIA sm_80+ at WAVE=32, 16-bit KV) DA_STAGES − 1 batches ahead, copied by cp.async into
//   the thread's slots of a shared-memory ring, which hold no registers. The lane keeps its 8
//   dims of each query head (rotated) and of each head's accumulator in registers; the new key
//   and value sit in shared memory.
// Per sub-chunk of ≤ DA_CHUNK keys: (1) scores: each lane's 8-dim partial dot per head, summed
//   over the key's P2 lanes by a transposing butterfly (head_score: every lane ends with one
//   head's sum), written to shared memory times scale; (2) softmax:
//   wave g takes head g: running max m, the chunk's e^(s − m) written back, running sum ℓ, the
//   accumulators' rescale e^(m_old − m_new); (3) PV: acc = acc·rescale + Σ p_j·V[j]. Then the
//   accumulators are summed over the key slots (butterfly inside the wave, the waves in order
//   in shared memory). One split in use: out = acc / ℓ. Otherwise the block writes (acc, m, ℓ)
//   to ws, fences, and bumps its slab's counter; the block that brings it to n (the last)
//   combines the splits in split order — out = Σ_s acc_s·e^(m_s − M) / Σ_s ℓ_s·e^(m_s − M),
//   M = max_s m_s, the other blocks' partials read from L2 (wf_load_coherent) — and resets
//   the counter. Deterministic: every reduction has a fixed order.
// K and V are widened with the hardware f16 conversion (f16_to_f32_hw) where T is f16.
// KV write: slab 0's block of the last split stores k_p and v_p (key slot 0's lanes, 16-byte
//   stores); no block reads position p from the arena, so there is no race.
// Position source: `step` null: pos0 as given. `step` non-null: a decode step's block
//   (engine/src/backend/gpu/step.rs), pos = step[1]; a pos outside [0, capacity) writes nothing.
// Contract (checked by the host): head_dim a multiple of 16, 32 ≤ head_dim ≤ 256 (each half of
//   the rotation is whole pieces; P2 ≥ 4 for head_score), n_heads a multiple of n_kv_heads,
//   1 ≤ s_max ≤ DA_MAX_SPLITS, arena, q, k, v, inv_freq and out 16-byte aligned,
//   layer < n_layers, scale finite, softcap ≥ 0 finite.
// Paths (WF_PATH, slot = the KV type's codec id − 1):
//   keys:    a key read from the arena (j < p)
//   new:     the step's own key and value, from shared memory
//   chunks:  a second sub-chunk (len of a split > DA_CHUNK): the online rescale
//   single:  one split in use: out written by the block
//   partial: a split's (acc, m, ℓ) written to the workspace
//   combine: the last block of a slab combines the splits
//   step:    the position read from the step block
//   write:   the KV write at p
//   window:  the window's first key a > 0 (the keys before it are not read)
//   softcap: a score soft-capped (softcap > 0)
//   rows:    a rows launch's row z > 0 (decode_attention_rows_{T}, below)
//   kv_only: a DA_KV_ONLY launch's write (the rows' K/V written before they attend)
//   attend_only: a DA_ATTEND_ONLY row holding its position (its K/V already written: no store)
// Modes: the one-row kernels write and attend (DA_FULL); the rows kernels take the mode as an
//   argument (DecodeAttentionMode below).

#include "common.h"

constexpr int DA_BLOCK = 256;
constexpr int DA_MIN_BLOCKS = 2;    // blocks a multiprocessor holds (registers ≤ 128 a thread)
constexpr int DA_GROUP = 4;         // query heads per block (a slab of the GQA group)
constexpr int DA_UNROLL = 2;        // key steps a load batch
constexpr int DA_CHUNK = 1024;      // keys per sub-chunk: DA_GROUP · DA_CHUNK f32 scores = 16 KiB
constexpr int DA_MIN_KEYS = 64;     // fewest keys a split takes
constexpr int DA_MAX_SPLITS = 256;  // most splits (the host's s_max)
constexpr int DA_MAX_HEAD_DIM = 256;
// Load batches in the shared-memory ring of the async path (NVIDIA sm_80+ at the native WAVE=32,
// where common.h defines WF_CP_ASYNC; 16-bit KV): DA_STAGES − 1 batches in flight while one is
// used. 0: the register pipeline everywhere. The host's dynamic shared memory of the launch
// (engine/src/backend/gpu/ops/decode_attention.rs RING_STAGES) holds at least this many.
constexpr int DA_STAGES = 4;
constexpr int DA_WAVES = DA_BLOCK / WAVE;
// The scores of a sub-chunk, then the waves' partial accumulators: 16 KiB at WAVE=64 (two
// blocks and their other arrays fit a 64 KiB CDNA LDS), 32 KiB at WAVE=32.
constexpr int DA_BUF = DA_GROUP * DA_CHUNK > DA_WAVES * DA_GROUP * DA_MAX_HEAD_DIM
                           ? DA_GROUP * DA_CHUNK
                           : DA_WAVES * DA_GROUP * DA_MAX_HEAD_DIM;
enum DecodeAttentionPath {
  PATH_KEYS,
  PATH_NEW,
  PATH_CHUNKS,
  PATH_SINGLE,
  PATH_PARTIAL,
  PATH_COMBINE,
  PATH_STEP,
  PATH_WRITE,
  PATH_WINDOW,
  PATH_SOFTCAP,
  PATH_ROWS,
  PATH_KV_ONLY,
  PATH_ATTEND_ONLY
};
// What a launch does at the row's position p (`mode`; the one-row kernels: DA_FULL).
enum DecodeAttentionMode {
  DA_FULL = 0,         // write K/V at p and attend
  DA_ATTEND_ONLY = 1,  // attend, K/V at p already written (by a DA_KV_ONLY launch): no store
  DA_KV_ONLY = 2       // write K/V at p and return (s_max = 1: the block holding p is split 0)
};
// The most rows a rows launch takes (the host's GEMV_MAX_ROWS).
constexpr int DA_ROWS = 16;
// A rows launch's per-row inputs, by value: row z's KV arena and step block (0: none, the
// position is pos0 + z).
struct DaRows {
  unsigned long long arena[DA_ROWS];
  unsigned long long step[DA_ROWS];
};

// The 8 dims d0 .. d0 + 8 of head vector x after RoPE (rope.hip's expressions), from the row's
// sin/cos table (sn, cs: half entries).
WF_DEVICE void rope_piece(const float* x, int d0, int half, const float* sn, const float* cs,
                          float (&o)[8]) {
  float a[8], b[8];
  const bool lo = d0 < half;
  const int d = lo ? d0 : d0 - half;  // the pair (d, d + half)
  load_f32x4(x + d, *(float(*)[4])a);
  load_f32x4(x + d + 4, *(float(*)[4])(a + 4));
  load_f32x4(x + d + half, *(float(*)[4])b);
  load_f32x4(x + d + half + 4, *(float(*)[4])(b + 4));
#pragma unroll
  for (int e = 0; e < 8; ++e) {
    const float s = sn[d + e], c = cs[d + e];
    o[e] = lo ? a[e] * c - b[e] * s : b[e] * c + a[e] * s;
  }
}

WF_DEVICE int imin(int a, int b) { return a < b ? a : b; }

// A lane's piece of a K/V row: 8 consecutive dims d0 .. d0 + 8 of element e (a multiple of 8),
// held as 4 words between its load and its use. 16-bit KV: the piece is one 16-byte vector (8
// f16/bf16). Q8_0 (common.h Q8): 8 quants (an 8-byte load: words 0, 1) and the scale of their
// block (word 2); the 4 lanes of a block (pieces 4m .. 4m + 3: 32 dims) share it.
template <class KV>
struct Piece {
  enum { unroll = DA_UNROLL };  // key steps a load batch
  enum { ring = 1 };            // one 16-byte vector: the async path's cp.async can load it
  static WF_DEVICE void load(const uint16_t* arena, i64 e, uint32_t (&w)[4]) {
    const wf_u32x4 t = *(const wf_u32x4*)(arena + e);
    w[0] = t.x;
    w[1] = t.y;
    w[2] = t.z;
    w[3] = t.w;
  }
  // K/V widened to f32: bf16 by its exact shift, f16 by the hardware conversion
  // (f16_to_f32_hw: exact, like the codec, for every value a cache holds).
  static WF_DEVICE float widen(uint16_t h) {
    return KV::id == F16::id ? f16_to_f32_hw(h) : KV::load(h);
  }
  // The piece's values are scale · v; returns the scale (1 here).
  static WF_DEVICE float unpack(const uint32_t (&w)[4], float (&v)[8]) {
#pragma unroll
    for (int e = 0; e < 8; ++e)
      v[e] = widen((uint16_t)((e & 1) ? w[e >> 1] >> 16 : w[e >> 1] & 0xffffu));
    return 1.0f;
  }
  // v rounded in place to the stored values, and the stored form in w. Called by every thread
  // of the block together (the Q8 version shuffles).
  static WF_DEVICE void round(float (&v)[8], uint32_t (&w)[4]) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const uint16_t a = KV::store(v[2 * e]), b = KV::store(v[2 * e + 1]);
      v[2 * e] = KV::load(a);
      v[2 * e + 1] = KV::load(b);
      w[e] = (uint32_t)a | ((uint32_t)b << 16);
    }
  }
  static WF_DEVICE void store(uint16_t* arena, i64 e, const uint32_t (&w)[4], int) {
    *(wf_u32x4*)(arena + e) = wf_u32x4{w[0], w[1], w[2], w[3]};
  }
};

template <>
struct Piece<Q8> {
  // Key steps a batch. A piece is half the bytes of a 16-bit one, and at 2 steps the loop
  // moves Q8_0 no faster than f16 (bound by the loads in flight, not by their bytes: 2253295,
  // bench/results/2026-12-03-kvq8-h200); more steps cost registers.
  enum { unroll = DA_UNROLL };
  enum { ring = 0 };  // two loads (quants, scale): the register pipeline on every path
  static WF_DEVICE void load(const uint8_t* arena, i64 e, uint32_t (&w)[4]) {
    const wf_u32x2 t = *(const wf_u32x2*)(arena + Q8::quant_byte(e));
    w[0] = t.x;
    w[1] = t.y;
    w[2] = *(const uint16_t*)(arena + Q8::scale_byte(e));
  }
  // The quants as f32; returns the block's scale d (the values are d · q: the caller folds d
  // into its products, one multiply a head instead of 8).
  static WF_DEVICE float unpack(const uint32_t (&w)[4], float (&v)[8]) {
#pragma unroll
    for (int e = 0; e < 8; ++e) v[e] = (float)(int)(int8_t)((w[e >> 2] >> ((e & 3) * 8)) & 0xffu);
    return f16_to_f32_hw((uint16_t)w[2]);
  }
  // The block's largest magnitude over its 4 lanes (xor 1 and 2: lanes 4m .. 4m + 3 of a wave,
  // the pieces of one block), then llama.cpp's arithmetic (common.h Q8).
  static WF_DEVICE void round(float (&v)[8], uint32_t (&w)[4]) {
    float amax = 0.0f;
#pragma unroll
    for (int e = 0; e < 8; ++e) amax = max_num(amax, v[e] < 0.0f ? -v[e] : v[e]);
    amax = max_num(amax, wave_shfl_xor(amax, 1));
    amax = max_num(amax, wave_shfl_xor(amax, 2));
    uint16_t dh;
    float id;
    const float d = Q8::scale(amax, &dh, &id);
    w[0] = w[1] = 0;
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      const int q = Q8::quant(v[e], id);
      v[e] = (float)q * d;
      w[e >> 2] |= ((uint32_t)q & 0xffu) << ((e & 3) * 8);
    }
    w[2] = dh;
    w[3] = 0;
  }
  static WF_DEVICE void store(uint8_t* arena, i64 e, const uint32_t (&w)[4], int pc) {
    *(wf_u32x2*)(arena + Q8::quant_byte(e)) = wf_u32x2{w[0], w[1]};
    if ((pc & 3) == 0) *(uint16_t*)(arena + Q8::scale_byte(e)) = (uint16_t)w[2];
  }
};

// One step batch of K or V pieces: keys c0 + i0 + u·kps + kslot (u < U) of the plane at
// element base, those before c1 and not the new key (that one comes from shared memory).
template <class KV, int U>
WF_DEVICE void load_batch(const typename KV::storage* arena, i64 base, int c0, int i0, int c1,
                          int kps, int kslot, int pos, int head_dim, int d0, bool active,
                          uint32_t (&w)[U][4]) {
#pragma unroll
  for (int u = 0; u < U; ++u) {
    const int j = c0 + i0 + u * kps + kslot;
    if (active && j < c1 && j != pos) Piece<KV>::load(arena, base + (i64)j * head_dim + d0, w[u]);
  }
}

// The split's read stream, one load batch (U key steps) at a time: per sub-chunk [c0, c1) of
// [j0, j1) its K batches, then its V batches, then the next sub-chunk's. The kernel takes the
// batches in this order (its loops over a sub-chunk's K, then its V), calling turn() after
// each loop. The cursor is a batch of the stream: sub-chunk c0, plane v (0: K, 1: V), first
// key c0 + i0; past the end (c0 ≥ j1) a batch loads nothing.
template <class KV>
struct KvSource {
  const typename KV::storage* arena;
  i64 kh, vh;  // the K and V planes (elements)
  int j1, pos, kps, kslot, head_dim, d0;
  bool active;
  int c0, i0, v;  // the cursor
  WF_DEVICE int c1() const { return imin(j1, c0 + DA_CHUNK); }
  WF_DEVICE i64 plane() const { return v ? vh : kh; }
  // The cursor's first batch of the next plane: the sub-chunk's V after its K, the next
  // sub-chunk's K after its V.
  WF_DEVICE void next_plane() {
    i0 = 0;
    if (v) c0 += DA_CHUNK;
    v ^= 1;
  }
};

// The register pipeline: the next batch of the plane loads into registers (`held`) while the
// kernel uses one; a plane's first batch loads at the turn before it (the first K batch before
// the angles are computed, the first V batch during the softmax).
template <class KV, bool Ring>
struct KvStream : KvSource<KV> {
  enum { U = Piece<KV>::unroll };
  uint32_t held[U][4];                       // the cursor's batch
  WF_DEVICE void load() {
    load_batch<KV, U>(this->arena, this->plane(), this->c0, this->i0, this->c1(), this->kps,
                      this->kslot, this->pos, this->head_dim, this->d0, this->active, held);
  }
  WF_DEVICE void start() { load(); }
  // The next batch of the stream into w; the one after it (in the plane) starts loading.
  WF_DEVICE void take(uint32_t (&w)[U][4]) {
#pragma unroll
    for (int u = 0; u < U; ++u)
#pragma unroll
      for (int x = 0; x < 4; ++x) w[u][x] = held[u][x];
    this->i0 += U * this->kps;
    load();  // nothing past the plane's keys
  }
  WF_DEVICE void turn() {
    this->next_plane();
    load();
  }
  WF_DEVICE void finish() {}
};

#if defined(WF_CP_ASYNC)
// The async path: a ring of DA_STAGES batches in dynamic shared memory, filled by cp.async
// (no registers held while in flight): DA_STAGES − 1 batches loading while one is used. Thread
// t's vector of step u of slot st sits at ((st·U + u)·DA_BLOCK + t)·16 bytes; a thread reads
// back only what it copied itself (after cp_async_wait: no barrier), and refills a slot only
// after the loop step that used its words.
template <class KV>
struct KvStream<KV, true> : KvSource<KV> {
  enum { U = Piece<KV>::unroll };
  uint32_t ring;  // this thread's vector of slot 0, step 0
  int st;         // the slot the next take reads
  WF_DEVICE uint32_t slot(int s, int u) const {
    return ring + (uint32_t)((s * U + u) * DA_BLOCK * 16);
  }
  // The cursor's batch into slot s (one commit group, empty or not); the cursor moves on along
  // the stream, across the planes.
  WF_DEVICE void issue(int s) {
    const int c1 = this->c1();
    const i64 base = this->plane();
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int j = this->c0 + this->i0 + u * this->kps + this->kslot;
      if (this->active && j < c1 && j != this->pos)
        cp_async16(slot(s, u), this->arena + base + (i64)j * this->head_dim + this->d0);
    }
    cp_async_commit();
    this->i0 += U * this->kps;
    if (this->c0 + this->i0 >= c1) this->next_plane();
  }
  WF_DEVICE void start() {
    ring = smem_addr(dynamic_shared_u16()) + thread_index() * 16;
    st = 0;
    for (int s = 0; s < DA_STAGES - 1; ++s) issue(s);
  }
  // The next batch into w: the slot before it (used by the last loop step) refilled first.
  WF_DEVICE void take(uint32_t (&w)[U][4]) {
    issue(st == 0 ? DA_STAGES - 1 : st - 1);
    cp_async_wait<DA_STAGES - 1>();
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const wf_u32x4 t = lds_u32x4(slot(st, u));
      w[u][0] = t.x;
      w[u][1] = t.y;
      w[u][2] = t.z;
      w[u][3] = t.w;
    }
    st = st + 1 == DA_STAGES ? 0 : st + 1;
  }
  WF_DEVICE void turn() {}  // the ring's loads are ahead already
  WF_DEVICE void finish() { cp_async_wait<0>(); }
};
constexpr bool DA_CP_ASYNC = true;
#else
constexpr bool DA_CP_ASYNC = false;
#endif
// The 16-bit KV kernels take the async path (a ring of at least 2 slots).
constexpr bool DA_ASYNC = DA_CP_ASYNC && DA_STAGES > 1;

// The key's score for each of the DA_GROUP heads, from the lanes' 8-dim partials part[g] over
// the key's p2 lanes (p2 ≥ 4), by a transposing butterfly: at mask p2/2 a lane keeps heads
// {0, 1} or {2, 3} (its bit) and trades the other pair, at mask p2/4 it keeps one head of the
// pair, then the remaining masks p2/8 .. 1 sum it: log2(p2) + 1 shuffles for all four heads.
// Lane pc ends with the sum of head ((pc & p2/2) ? 2 : 0) + ((pc & p2/4) ? 1 : 0), the same on
// every lane of that head (a fixed order: deterministic).
WF_DEVICE float head_score(float (&part)[DA_GROUP], int pc, int p2) {
  const bool b = (pc & (p2 >> 1)) != 0, c = (pc & (p2 >> 2)) != 0;
  const float s0 = wave_shfl_xor(b ? part[0] : part[2], p2 >> 1);
  const float s1 = wave_shfl_xor(b ? part[1] : part[3], p2 >> 1);
  const float k0 = (b ? part[2] : part[0]) + s0;  // head 2b
  const float k1 = (b ? part[3] : part[1]) + s1;  // head 2b + 1
  const float r = wave_shfl_xor(c ? k0 : k1, p2 >> 2);
  float h = (c ? k1 : k0) + r;
  for (int m = p2 >> 3; m > 0; m >>= 1) h += wave_shfl_xor(h, m);
  return h;
}

template <class KV>
WF_DEVICE void decode_attention_kernel(const float* q, const float* k, const float* v,
                                        const float* inv_freq, typename KV::storage* arena,
                                        float* out,
                                        float* ws, int* counters, int layer, int pos, int n_heads,
                                        int n_kv_heads, int head_dim, int capacity, int s_max,
                                        float scale, const int* step, int window,
                                        float softcap, int slot_id, int mode) {
  constexpr int U = Piece<KV>::unroll;  // key steps a load batch
  constexpr bool RING = DA_ASYNC && Piece<KV>::ring;
  const int t = thread_index(), lane = wave_lane(), w = wave_index();
  if (step != nullptr) {
    pos = step[1];
    if (block_index_x() == 0 && block_index_y() == 0 && t == 0) WF_PATH(slot_id, PATH_STEP);
  }
  if (pos < 0 || pos >= capacity || s_max < 1 || s_max > DA_MAX_SPLITS) return;
  const int group = n_heads / n_kv_heads;
  const int slabs = (group + DA_GROUP - 1) / DA_GROUP;
  const int kvh = block_index_x() / slabs, slab = block_index_x() - kvh * slabs;
  const int h0 = kvh * group + slab * DA_GROUP;  // first query head of the block
  const int gb = imin(DA_GROUP, group - slab * DA_GROUP);
  if (mode == DA_KV_ONLY && s_max != 1) return;  // the host's contract: one split
  const int first = window > 0 && pos + 1 - window > 0 ? pos + 1 - window : 0;  // a
  const int len = pos + 1 - first;  // the keys a ..= p
  int n_split = imin(s_max, (len + DA_MIN_KEYS - 1) / DA_MIN_KEYS);
  const int per = (len + n_split - 1) / n_split;
  n_split = (len + per - 1) / per;
  const int s = block_index_y();
  if (s >= n_split) return;
  if (first > 0 && s == 0 && t == 0) WF_PATH(slot_id, PATH_WINDOW);
  const int j0 = first + s * per, j1 = imin(pos + 1, j0 + per);

  const int half = head_dim / 2, pieces = head_dim / 8;
  int p2 = 1;
  while (p2 < pieces) p2 <<= 1;
  const int kps = DA_BLOCK / p2;  // keys per step
  const int pc = t & (p2 - 1), kslot = t / p2;
  const bool active = pc < pieces;
  const int d0 = pc * 8;

  // The first K batches are in flight while the angles, q and the new key are worked out.
  const i64 kh = (((i64)layer * 2 + 0) * n_kv_heads + kvh) * capacity * head_dim;  // elements
  const i64 vh = (((i64)layer * 2 + 1) * n_kv_heads + kvh) * capacity * head_dim;
  KvStream<KV, RING> kv;
  kv.arena = arena;
  kv.kh = kh;
  kv.vh = vh;
  kv.j1 = j1;
  kv.pos = pos;
  kv.kps = kps;
  kv.kslot = kslot;
  kv.head_dim = head_dim;
  kv.d0 = d0;
  kv.active = active;
  kv.c0 = j0;
  kv.i0 = 0;
  kv.v = 0;
  if (mode != DA_KV_ONLY) kv.start();

  WF_SHARED float sn[DA_MAX_HEAD_DIM / 2], cs[DA_MAX_HEAD_DIM / 2];
  // scores, then the waves' partial accumulators (16-byte vectors: stored 4 floats at a time)
  WF_SHARED wf_f32x4 buf4[DA_BUF / 4];
  float* buf = (float*)buf4;
  WF_SHARED float rescale[DA_GROUP], head_m[DA_GROUP], head_l[DA_GROUP];
  WF_SHARED int last;
  const float fpos = (float)pos;
  const float attn_factor = inv_freq[half];
  for (int d = t; d < half; d += DA_BLOCK) {
    wf_sincosf(fpos * inv_freq[d], &sn[d], &cs[d]);
    sn[d] *= attn_factor;
    cs[d] *= attn_factor;
  }
  block_sync();

  // The query heads' dims d0 .. d0 + 8 (rotated); the new key and value (rounded) in shared
  // memory (key slot 0's lanes compute them).
  WF_SHARED wf_f32x4 new4[2 * DA_MAX_HEAD_DIM / 4];
  float* knew = (float*)new4;
  float* vnew = knew + DA_MAX_HEAD_DIM;
  float qv[DA_GROUP][8];
#pragma unroll
  for (int g = 0; g < DA_GROUP; ++g) {
#pragma unroll
    for (int e = 0; e < 8; ++e) qv[g][e] = 0.0f;
    if (active && g < gb) rope_piece(q + (i64)(h0 + g) * head_dim, d0, half, sn, cs, qv[g]);
  }
  const bool has_new = j1 == pos + 1;  // this split holds key p (the same for the whole block)
  if (has_new) {
    const bool mine = active && kslot == 0;  // key slot 0's lanes: threads 0 .. p2 of wave 0
    float kn[8] = {}, vn[8] = {};
    if (mine) {
      rope_piece(k + (i64)kvh * head_dim, d0, half, sn, cs, kn);
      load_f32x4(v + (i64)kvh * head_dim + d0, *(float(*)[4])vn);
      load_f32x4(v + (i64)kvh * head_dim + d0 + 4, *(float(*)[4])(vn + 4));
    }
    uint32_t kq[4], vq[4];
    Piece<KV>::round(kn, kq);  // every thread (Q8 shuffles inside groups of 4 lanes)
    Piece<KV>::round(vn, vq);
    if (mine) {
      store_f32s(knew + d0, kn);
      store_f32s(vnew + d0, vn);
      if (slab == 0 && mode != DA_ATTEND_ONLY) {
        WF_PATH(slot_id, PATH_WRITE);
        if (mode == DA_KV_ONLY && t == 0) WF_PATH(slot_id, PATH_KV_ONLY);
        Piece<KV>::store(arena, kh + (i64)pos * head_dim + d0, kq, pc);
        Piece<KV>::store(arena, vh + (i64)pos * head_dim + d0, vq, pc);
      }
    }
    if (mode == DA_ATTEND_ONLY && slab == 0 && t == 0) WF_PATH(slot_id, PATH_ATTEND_ONLY);
  }
  if (mode == DA_KV_ONLY) return;  // the whole block: has_new holds for its one split
  block_sync();

  float acc[DA_GROUP][8];
#pragma unroll
  for (int g = 0; g < DA_GROUP; ++g)
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[g][e] = 0.0f;
  float run_m = -wf_inf(), run_l = 0.0f;  // wave w's head (w < gb)
  const float inv_cap = softcap > 0.0f ? 1.0f / softcap : 0.0f;

  for (int c0 = j0; c0 < j1; c0 += DA_CHUNK) {
    const int c1 = imin(j1, c0 + DA_CHUNK), n = c1 - c0;
    if (c0 > j0 && t == 0) WF_PATH(slot_id, PATH_CHUNKS);
    // (1) scores; the stream's next batches in flight meanwhile
    for (int i0 = 0; i0 < n; i0 += U * kps) {
      uint32_t kw[U][4];
      kv.take(kw);
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int i = i0 + u * kps + kslot, j = c0 + i;
        float part[DA_GROUP];
#pragma unroll
        for (int g = 0; g < DA_GROUP; ++g) part[g] = 0.0f;
        if (active && j < c1) {
          float kf[8], ks = 1.0f;  // the key's dims are ks · kf
          if (j == pos) {
            WF_PATH(slot_id, PATH_NEW);
#pragma unroll
            for (int e = 0; e < 8; ++e) kf[e] = knew[d0 + e];
          } else {
            WF_PATH(slot_id, PATH_KEYS);
            ks = Piece<KV>::unpack(kw[u], kf);
          }
#pragma unroll
          for (int g = 0; g < DA_GROUP; ++g) {
#pragma unroll
            for (int e = 0; e < 8; ++e) part[g] = wf_fmaf(qv[g][e], kf[e], part[g]);
            part[g] *= ks;
          }
        }
        const float sc = head_score(part, pc, p2);
        const int g = ((pc & (p2 >> 1)) ? 2 : 0) + ((pc & (p2 >> 2)) ? 1 : 0);
        if ((pc & ((p2 >> 2) - 1)) == 0 && g < gb && j < c1) {
          float sv = sc * scale;
          if (softcap > 0.0f) {
            WF_PATH(slot_id, PATH_SOFTCAP);
            sv = wf_softcap(sv, softcap, inv_cap);
          }
          buf[g * DA_CHUNK + i] = sv;
        }
      }
    }
    kv.turn();     // the first V batches are in flight during the softmax
    block_sync();
    // (2) softmax over the sub-chunk: wave w takes head w (every wave runs the reductions)
    {
      const bool mine = w < gb;
      float* sw = buf + (mine ? w : 0) * DA_CHUNK;
      float mx = -wf_inf();
      if (mine)
        for (int i = lane; i < n; i += WAVE) mx = max_num(mx, sw[i]);
      mx = wave_max(mx);
      const float m_new = max_num(run_m, mx);
      const float corr = mine ? wf_expf(run_m - m_new) : 0.0f;  // 0 on the first sub-chunk
      float sum = 0.0f;
      if (mine)
        for (int i = lane; i < n; i += WAVE) {
          const float p = wf_expf(sw[i] - m_new);
          sw[i] = p;
          sum += p;
        }
      sum = wave_sum(sum);
      if (mine) {
        run_l = run_l * corr + sum;
        run_m = m_new;
        if (lane == 0) {
          rescale[w] = corr;
          head_m[w] = run_m;
          head_l[w] = run_l;
        }
      }
    }
    block_sync();
    // (3) PV
#pragma unroll
    for (int g = 0; g < DA_GROUP; ++g) {
      const float f = g < gb ? rescale[g] : 0.0f;
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[g][e] *= f;
    }
    for (int i0 = 0; i0 < n; i0 += U * kps) {
      uint32_t vw[U][4];
      kv.take(vw);
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int i = i0 + u * kps + kslot, j = c0 + i;
        if (active && j < c1) {
          float vf[8], vs = 1.0f;  // the value's dims are vs · vf
          if (j == pos) {
#pragma unroll
            for (int e = 0; e < 8; ++e) vf[e] = vnew[d0 + e];
          } else {
            vs = Piece<KV>::unpack(vw[u], vf);
          }
#pragma unroll
          for (int g = 0; g < DA_GROUP; ++g) {
            const float p = (g < gb ? buf[g * DA_CHUNK + i] : 0.0f) * vs;
#pragma unroll
            for (int e = 0; e < 8; ++e) acc[g][e] = wf_fmaf(p, vf[e], acc[g][e]);
          }
        }
      }
    }
    kv.turn();
    block_sync();  // buf is rewritten by the next sub-chunk's scores (or the partials below)
  }
  kv.finish();  // no copy still lands in shared memory

  // Sum the accumulators over the key slots: inside the wave, then the waves in order.
  for (int m = p2; m < WAVE; m <<= 1) {
#pragma unroll
    for (int g = 0; g < DA_GROUP; ++g)
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[g][e] += wave_shfl_xor(acc[g][e], m);
  }
  const int stride = DA_GROUP * head_dim;  // one wave's partials in buf
  if (lane < p2 && active) {
#pragma unroll
    for (int g = 0; g < DA_GROUP; ++g)
      if (g < gb) store_f32s(buf + w * stride + g * head_dim + d0, acc[g]);
  }
  block_sync();
  const bool single = n_split == 1;
  float* part_acc = ws;                                  // (n_heads, s_max, head_dim)
  float* part_ml = ws + (i64)n_heads * s_max * head_dim;  // (n_heads, s_max, 2)
  for (int x = t; x < gb * head_dim; x += DA_BLOCK) {
    const int g = x / head_dim, d = x - g * head_dim, h = h0 + g;
    float a = buf[g * head_dim + d];
    for (int u = 1; u < DA_WAVES; ++u) a += buf[u * stride + g * head_dim + d];
    if (single) {
      WF_PATH(slot_id, PATH_SINGLE);
      out[(i64)h * head_dim + d] = a / head_l[g];
    } else {
      WF_PATH(slot_id, PATH_PARTIAL);
      part_acc[((i64)h * s_max + s) * head_dim + d] = a;
      if (d == 0) {
        part_ml[((i64)h * s_max + s) * 2] = head_m[g];
        part_ml[((i64)h * s_max + s) * 2 + 1] = head_l[g];
      }
    }
  }
  if (single) return;
  wf_fence_device();
  block_sync();
  int* counter = counters + block_index_x();
  if (t == 0) last = wf_atomic_add(counter, 1) == n_split - 1;
  block_sync();
  if (!last) return;
  wf_fence_device();
  if (t == 0) {
    WF_PATH(slot_id, PATH_COMBINE);
    wf_atomic_exch(counter, 0);  // ready for the next launch
  }
  // The splits' (m, ℓ) of the block's heads into shared memory (buf is free again), then each
  // thread combines its (head, dim) elements, loading 8 splits' partials at a time.
  float* cm = buf;                            // (DA_GROUP, n_split)
  float* cl = buf + DA_GROUP * DA_MAX_SPLITS;  // (DA_GROUP, n_split)
  for (int x = t; x < gb * n_split; x += DA_BLOCK) {
    const int g = x / n_split, u = x - g * n_split;
    const float* ml = part_ml + ((i64)(h0 + g) * s_max + u) * 2;
    cm[g * DA_MAX_SPLITS + u] = wf_load_coherent(ml);
    cl[g * DA_MAX_SPLITS + u] = wf_load_coherent(ml + 1);
  }
  block_sync();
  for (int x = t; x < gb * head_dim; x += DA_BLOCK) {
    const int g = x / head_dim, d = x - g * head_dim, h = h0 + g;
    const float* pa = part_acc + (i64)h * s_max * head_dim + d;
    const float* gm = cm + g * DA_MAX_SPLITS;
    const float* gl = cl + g * DA_MAX_SPLITS;
    float big = -wf_inf();
    for (int u = 0; u < n_split; ++u) big = max_num(big, gm[u]);
    float num = 0.0f, den = 0.0f;
    for (int u0 = 0; u0 < n_split; u0 += 8) {
      float a[8];
#pragma unroll
      for (int u = 0; u < 8; ++u)
        a[u] = u0 + u < n_split ? wf_load_coherent(pa + (i64)(u0 + u) * head_dim) : 0.0f;
#pragma unroll
      for (int u = 0; u < 8; ++u) {
        if (u0 + u < n_split) {
          const float f = wf_expf(gm[u0 + u] - big);
          num += a[u] * f;
          den += gl[u0 + u] * f;
        }
      }
    }
    out[(i64)h * head_dim + d] = num / den;
  }
}

extern "C" __global__ void __launch_bounds__(DA_BLOCK, DA_MIN_BLOCKS)
    decode_attention_f16(const float* q, const float* k, const float* v, const float* inv_freq,
                         uint16_t* arena, float* out, float* ws, int* counters, int layer,
                         int pos0, int n_heads, int n_kv_heads, int head_dim, int capacity,
                         int s_max, float scale, const int* step, int window, float softcap) {
  decode_attention_kernel<F16>(q, k, v, inv_freq, arena, out, ws, counters, layer, pos0, n_heads,
                               n_kv_heads, head_dim, capacity, s_max, scale, step, window,
                               softcap, F16::id - 1, DA_FULL);
}

extern "C" __global__ void __launch_bounds__(DA_BLOCK, DA_MIN_BLOCKS)
    decode_attention_bf16(const float* q, const float* k, const float* v, const float* inv_freq,
                          uint16_t* arena, float* out, float* ws, int* counters, int layer,
                          int pos0, int n_heads, int n_kv_heads, int head_dim, int capacity,
                          int s_max, float scale, const int* step, int window, float softcap) {
  decode_attention_kernel<BF16>(q, k, v, inv_freq, arena, out, ws, counters, layer, pos0,
                                n_heads, n_kv_heads, head_dim, capacity, s_max, scale, step,
                                window, softcap, BF16::id - 1, DA_FULL);
}

extern "C" __global__ void __launch_bounds__(DA_BLOCK, DA_MIN_BLOCKS)
    decode_attention_q8_0(const float* q, const float* k, const float* v, const float* inv_freq,
                          uint8_t* arena, float* out, float* ws, int* counters, int layer,
                          int pos0, int n_heads, int n_kv_heads, int head_dim, int capacity,
                          int s_max, float scale, const int* step, int window, float softcap) {
  decode_attention_kernel<Q8>(q, k, v, inv_freq, arena, out, ws, counters, layer, pos0, n_heads,
                              n_kv_heads, head_dim, capacity, s_max, scale, step, window,
                              softcap, Q8::id - 1, DA_FULL);
}

// Several decode rows in one launch (grid z = the rows): row z is the one-row kernel's launch
// for q, k, v and out moved by z rows, the arena rows.arena[z], the step rows.step[z] (or
// position pos0 + z without one), its own slice of the workspace (ws_row floats) and of the
// counters (columns), and `mode`. Same code, same split count, same order: each row's bits are
// its one-row launch's. Rows of different sequences (a batched pass: DA_FULL), or one
// sequence's next positions as its decode steps would take them (a verification): a DA_KV_ONLY
// launch writes every row's K/V first, then a DA_ATTEND_ONLY launch attends (row z reads the
// rows before it from the arena, its own key from shared memory, as its decode step does).
// Coverage slots 3 + the KV type's slot.
template <class KV>
WF_DEVICE void decode_attention_rows_kernel(const float* q, const float* k, const float* v,
                                             const float* inv_freq, float* out, float* ws,
                                             int* counters, int layer, int pos0, int n_heads,
                                             int n_kv_heads, int head_dim, int capacity,
                                             int s_max, float scale, int window, float softcap,
                                             int mode, const DaRows& rows) {
  const int z = block_index_z(), slot_id = 3 + KV::id - 1;
  if (z >= DA_ROWS) return;
  // Row z's pointers by constant indices (a dynamic index into a by-value parameter may copy
  // the whole struct to scratch memory).
  unsigned long long arena = 0, step = 0;
#pragma unroll
  for (int r = 0; r < DA_ROWS; ++r) {
    arena = r == z ? rows.arena[r] : arena;
    step = r == z ? rows.step[r] : step;
  }
  if (z > 0 && block_index_x() == 0 && block_index_y() == 0 && thread_index() == 0)
    WF_PATH(slot_id, PATH_ROWS);
  const int slabs = (n_heads / n_kv_heads + DA_GROUP - 1) / DA_GROUP;
  const i64 qd = (i64)n_heads * head_dim, kvd = (i64)n_kv_heads * head_dim;
  const i64 ws_row = (i64)n_heads * s_max * (head_dim + 2);
  decode_attention_kernel<KV>(q + z * qd, k + z * kvd, v + z * kvd, inv_freq,
                              (typename KV::storage*)arena, out + z * qd, ws + z * ws_row,
                              counters + z * n_kv_heads * slabs, layer, pos0 + z, n_heads,
                              n_kv_heads, head_dim, capacity, s_max, scale,
                              (const int*)step, window, softcap, slot_id, mode);
}

extern "C" __global__ void __launch_bounds__(DA_BLOCK, DA_MIN_BLOCKS)
    decode_attention_rows_f16(const float* q, const float* k, const float* v,
                              const float* inv_freq, float* out, float* ws, int* counters,
                              int layer, int pos0, int n_heads, int n_kv_heads, int head_dim,
                              int capacity, int s_max, float scale, int window, float softcap,
                              int mode, DaRows rows) {
  decode_attention_rows_kernel<F16>(q, k, v, inv_freq, out, ws, counters, layer, pos0, n_heads,
                                    n_kv_heads, head_dim, capacity, s_max, scale, window,
                                    softcap, mode, rows);
}

extern "C" __global__ void __launch_bounds__(DA_BLOCK, DA_MIN_BLOCKS)
    decode_attention_rows_bf16(const float* q, const float* k, const float* v,
                               const float* inv_freq, float* out, float* ws, int* counters,
                               int layer, int pos0, int n_heads, int n_kv_heads, int head_dim,
                               int capacity, int s_max, float scale, int window, float softcap,
                               int mode, DaRows rows) {
  decode_attention_rows_kernel<BF16>(q, k, v, inv_freq, out, ws, counters, layer, pos0, n_heads,
                                     n_kv_heads, head_dim, capacity, s_max, scale, window,
                                     softcap, mode, rows);
}

extern "C" __global__ void __launch_bounds__(DA_BLOCK, DA_MIN_BLOCKS)
    decode_attention_rows_q8_0(const float* q, const float* k, const float* v,
                               const float* inv_freq, float* out, float* ws, int* counters,
                               int layer, int pos0, int n_heads, int n_kv_heads, int head_dim,
                               int capacity, int s_max, float scale, int window, float softcap,
                               int mode, DaRows rows) {
  decode_attention_rows_kernel<Q8>(q, k, v, inv_freq, out, ws, counters, layer, pos0, n_heads,
                                   n_kv_heads, head_dim, capacity, s_max, scale, window, softcap,
                                   mode, rows);
}
