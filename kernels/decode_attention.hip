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
// Two kernels compute it: the vector kernel below (decode_attention_{T}: every head dim and KV
// type, f32 products) and, further down, the matrix-instruction one (decode_attention_mma_{HD}_
// {T}: 16-bit KV at head dims 64 and 128, q and the softmax weights rounded to T), which the
// host takes where it can (ops/decode_attention.rs Kernel::pick).
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
//   host gives it RING_STAGES ≥ DA_STAGES batches there, none elsewhere). Launched overlapped
//   (common.h wf_dependency_wait), every kernel of this file: a block reads the step block, q,
//   k, v and the cache only after the kernels ahead are complete (the matrix form reads its
//   frequencies before that: no kernel writes them), then lets the kernel after it start (its
//   first weight loads then run during this launch; after the wait, as gemv.hip, so that at
//   most one kernel waits ahead of the running one).
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
  PATH_ATTEND_ONLY,
  PATH_TAIL
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

// RoPE of 8 dims d0 .. d0 + 7 of head vector x (rope.hip's expressions), in two steps so the
// loads can go out before the sin/cos table is ready. rope_load: the dims' pairs (d, d + half),
// the low ones in a, the high ones in b.
WF_DEVICE void rope_load(const float* x, int d0, int half, float (&a)[8], float (&b)[8]) {
  const int d = d0 < half ? d0 : d0 - half;  // the pair (d, d + half)
  load_f32x4(x + d, *(float(*)[4])a);
  load_f32x4(x + d + 4, *(float(*)[4])(a + 4));
  load_f32x4(x + d + half, *(float(*)[4])b);
  load_f32x4(x + d + half + 4, *(float(*)[4])(b + 4));
}

// rope_rotate: dims d0 .. d0 + 7 of the rotated row, from rope_load's pairs and the row's
// sin/cos table (sn, cs: half entries).
WF_DEVICE void rope_rotate(int d0, int half, const float* sn, const float* cs, const float (&a)[8],
                           const float (&b)[8], float (&o)[8]) {
  const bool lo = d0 < half;
  const int d = lo ? d0 : d0 - half;
#pragma unroll
  for (int e = 0; e < 8; ++e) {
    const float s = sn[d + e], c = cs[d + e];
    o[e] = lo ? a[e] * c - b[e] * s : b[e] * c + a[e] * s;
  }
}

// Both steps at once.
WF_DEVICE void rope_piece(const float* x, int d0, int half, const float* sn, const float* cs,
                          float (&o)[8]) {
  float a[8], b[8];
  rope_load(x, d0, half, a, b);
  rope_rotate(d0, half, sn, cs, a, b, o);
}

WF_DEVICE int imin(int a, int b) { return a < b ? a : b; }

// A block's query heads (grid x): KV head kvh, slab `slab` of its GQA group in slabs of GROUP,
// heads h0 .. h0 + gb − 1.
template <int GROUP>
WF_DEVICE void da_heads(int n_heads, int n_kv_heads, int& kvh, int& slab, int& h0, int& gb) {
  const int group = n_heads / n_kv_heads;
  const int slabs = (group + GROUP - 1) / GROUP;
  kvh = block_index_x() / slabs;
  slab = block_index_x() - kvh * slabs;
  h0 = kvh * group + slab * GROUP;
  gb = imin(GROUP, group - slab * GROUP);
}

// A block's split (grid y = s): keys j0 .. j1 − 1 of a ..= p (a = first: the window's first
// key, else 0), cut into n_split splits of at least min_keys keys (fewer when the keys are
// fewer), the same length but the last. False for a block past the last split.
WF_DEVICE bool da_split(int pos, int window, int s_max, int min_keys, int s, int& first,
                        int& n_split, int& j0, int& j1) {
  first = window > 0 && pos + 1 - window > 0 ? pos + 1 - window : 0;
  const int len = pos + 1 - first;  // the keys a ..= p
  n_split = imin(s_max, (len + min_keys - 1) / min_keys);
  const int per = (len + n_split - 1) / n_split;
  n_split = (len + per - 1) / per;
  j0 = first + s * per;
  j1 = imin(pos + 1, j0 + per);
  return s < n_split;
}

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

// The split combine of a block column (flash-decoding's reduction pass), called by every thread
// of each block that wrote its split's partials: per head h of the column's h0 .. h0 + gb,
// part_acc (n_heads, s_max, head_dim) the split's unnormalized output and part_ml (n_heads, s_max,
// 2) its running max m and sum ℓ (LOG2: m in log2 units, the weights 2^(s − m); else natural,
// e^(s − m)). Fences, bumps the column's counter; the block that brings it to n_split (the last)
// resets it and combines the splits in split order — out = Σ_s acc_s·w_s / Σ_s ℓ_s·w_s, w_s =
// e^(m_s − M) (2^ with LOG2), M = max_s m_s — reading the other blocks' partials from L2
// (wf_load_coherent). `buf`: shared memory of 2 · GROUP · DA_MAX_SPLITS floats, free; `last`: a
// shared int.
// The last block's combine is a chain of round trips to L2 after the counter's atomic, the
// main fixed cost of a short launch (~6 µs of an 8B launch at 8192 keys on an H100, 9f56f10).
// It takes three: the (m, ℓ) of the splits together with the first ROUND splits' partials of
// each thread, then (after the heads' weights, computed once a head) the rest in rounds of ROUND.
// ELEMS: contiguous elements a thread takes (4: one 16-byte load a split; 1: the vector kernel,
// whose main loop spills on NVIDIA with more held registers).
template <int BLOCK, int GROUP, bool LOG2, int ELEMS, int ROUND>
WF_DEVICE void da_combine(const float* part_acc, const float* part_ml, int* counter, int n_split,
                          int gb, int h0, int head_dim, int s_max, float* out, float* buf,
                          int* last, int slot_id) {
  const int t = thread_index();
  wf_fence_device();
  block_sync();
  if (t == 0) *last = wf_atomic_add(counter, 1) == n_split - 1;
  block_sync();
  if (!*last) return;
  wf_fence_device();
  if (t == 0) {
    WF_PATH(slot_id, PATH_COMBINE);
    wf_atomic_exch(counter, 0);  // ready for the next launch
  }
  // The block's (head, dim) elements in vectors of ELEMS (contiguous dims of one head), nv of
  // them. P threads take a vector (the largest power of two with P · nv ≤ BLOCK and P ≤
  // n_split), part k of them the splits u ≡ k (mod P), ROUND of them loaded together; the P
  // parts' sums are then added in shared memory in part order (deterministic). The vector
  // kernel (ELEMS 1) keeps P = 1: the parts' sums made its main loop spill more on NVIDIA.
  static_assert(BLOCK * ELEMS <= 2 * GROUP * DA_MAX_SPLITS, "the parts' sums fit buf");
  const int nv = gb * head_dim / ELEMS;
  int P = 1;
  while (ELEMS > 1 && 2 * P * nv <= BLOCK && 2 * P <= n_split) P *= 2;
  const bool active = t < P * nv;  // P == 1: every thread (nv ≥ BLOCK / 2 or one split)
  const int stride = P == 1 ? BLOCK : nv, part = P == 1 ? 0 : t / nv;
  // The first round of this thread's partials goes out now, with the (m, ℓ) loads.
  float a[ROUND][ELEMS];
  bool pre = false;
  {
    const int x = active ? (P == 1 ? t : t % nv) : nv;
    if (x < nv) {
      const int g = x * ELEMS / head_dim, d = x * ELEMS - g * head_dim;
      const float* pa = part_acc + (i64)(h0 + g) * s_max * head_dim + d;
#pragma unroll
      for (int r = 0; r < ROUND; ++r) {
        const int u = part + r * P;
        if (u < n_split) wf_load_coherent_vec(pa + (i64)u * head_dim, a[r]);
      }
      pre = true;
    }
  }
  // The splits' (m, ℓ) of the block's heads into shared memory.
  float* cm = buf;                          // (GROUP, n_split)
  float* cl = buf + GROUP * DA_MAX_SPLITS;  // (GROUP, n_split)
  for (int x = t; x < gb * n_split; x += BLOCK) {
    const int g = x / n_split, u = x - g * n_split;
    const float* ml = part_ml + ((i64)(h0 + g) * s_max + u) * 2;
    cm[g * DA_MAX_SPLITS + u] = wf_load_coherent(ml);
    cl[g * DA_MAX_SPLITS + u] = wf_load_coherent(ml + 1);
  }
  block_sync();
  // Each head's split weights w_u = 2^(m_u − M) (e^… without LOG2), M its max over the splits,
  // in place of m, and its denominator Σ_u ℓ_u·w_u: a wave a head, once, not once an element.
  // Every wave runs every round (the wave ops are block-uniform; common.h), past gb idle.
  WF_SHARED float cden[GROUP];
  for (int g0 = 0; g0 < gb; g0 += BLOCK / WAVE) {
    const int g = g0 + wave_index(), n = g < gb ? n_split : 0;
    float* wm = cm + g * DA_MAX_SPLITS;
    const float* lm = cl + g * DA_MAX_SPLITS;
    float mx = -wf_inf();
    for (int u = wave_lane(); u < n; u += WAVE) mx = max_num(mx, wm[u]);
    const float big = wave_max(mx);
    float den = 0.0f;
    for (int u = wave_lane(); u < n; u += WAVE) {
      const float f = LOG2 ? fa_exp2(wm[u] - big) : wf_expf(wm[u] - big);
      wm[u] = f;  // this lane's own split: no other lane reads it
      den += lm[u] * f;
    }
    den = wave_sum(den);
    if (wave_lane() == 0 && g < gb) cden[g] = den;
  }
  block_sync();
  float num[ELEMS];
  for (int x = active ? (P == 1 ? t : t % nv) : nv; x < nv; x += stride) {
    const int g = x * ELEMS / head_dim, d = x * ELEMS - g * head_dim;
    const float* pa = part_acc + (i64)(h0 + g) * s_max * head_dim + d;
    const float* gw = cm + g * DA_MAX_SPLITS;
#pragma unroll
    for (int e = 0; e < ELEMS; ++e) num[e] = 0.0f;
    for (int u0 = part; u0 < n_split; u0 += ROUND * P) {
      if (!pre)
#pragma unroll
        for (int r = 0; r < ROUND; ++r) {
          const int u = u0 + r * P;
          if (u < n_split) wf_load_coherent_vec(pa + (i64)u * head_dim, a[r]);
        }
      pre = false;
#pragma unroll
      for (int r = 0; r < ROUND; ++r) {
        const int u = u0 + r * P;
        if (u < n_split)
#pragma unroll
          for (int e = 0; e < ELEMS; ++e) num[e] += a[r][e] * gw[u];
      }
    }
    if (P == 1)
#pragma unroll
      for (int e = 0; e < ELEMS; ++e) out[(i64)h0 * head_dim + x * ELEMS + e] = num[e] / cden[g];
  }
  if (P == 1) return;
  block_sync();  // every weight read: buf takes the parts' sums
  if (active)
#pragma unroll
    for (int e = 0; e < ELEMS; ++e) buf[t * ELEMS + e] = num[e];
  block_sync();
  if (t < nv) {
    const int g = t * ELEMS / head_dim;
#pragma unroll
    for (int e = 0; e < ELEMS; ++e) {
      float sum = 0.0f;
      for (int k = 0; k < P; ++k) sum += buf[(k * nv + t) * ELEMS + e];
      out[(i64)h0 * head_dim + t * ELEMS + e] = sum / cden[g];
    }
  }
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
  // Launched overlapped (common.h): everything below (the step block, q, k, v, the cache)
  // waits for the kernels ahead; then the kernel after this one may start.
  wf_dependency_wait();
  wf_allow_dependents();
  if (step != nullptr) {
    pos = step[1];
    if (block_index_x() == 0 && block_index_y() == 0 && t == 0) WF_PATH(slot_id, PATH_STEP);
  }
  if (pos < 0 || pos >= capacity || s_max < 1 || s_max > DA_MAX_SPLITS) return;
  int kvh, slab, h0, gb;
  da_heads<DA_GROUP>(n_heads, n_kv_heads, kvh, slab, h0, gb);
  if (mode == DA_KV_ONLY && s_max != 1) return;  // the host's contract: one split
  const int s = block_index_y();
  int first, n_split, j0, j1;
  if (!da_split(pos, window, s_max, DA_MIN_KEYS, s, first, n_split, j0, j1)) return;
  if (first > 0 && s == 0 && t == 0) WF_PATH(slot_id, PATH_WINDOW);

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
  da_combine<DA_BLOCK, DA_GROUP, false, 1, 8>(part_acc, part_ml, counters + block_index_x(),
                                              n_split, gb, h0, head_dim, s_max, out, buf, &last,
                                              slot_id);
}

// ---------------------------------------------------------------------------------------------
// The matrix-instruction form (decode_attention_mma_{HD}_{T}, HD ∈ {64, 128}, T ∈ {f16, bf16}):
// the same contract, partition into splits and workspace as the kernel above, with head_dim = HD
// and 16 query heads a block (DM_GROUP: one m-tile of the matrix instructions; a GQA group of
// more is split into slabs of 16), the scores and P·V on common.h's wave matrix multiply (mma:
// mma.sync on NVIDIA sm_80+, MFMA on CDNA, WMMA on RDNA3, the FMA twin elsewhere, the emulated
// WAVE=64 among them), in flash_attention.hip's manner for one m-tile:
//   q rotated, times scale · log2 e, rounded to T (the A fragments, rows h0 .. h0 + gb of the
//   m-tile, zeros past them); the split's keys in tiles of DM_TILE = 16; wave w of the DM_WAVES
//   = 4 takes tiles w, w + 4, …: K and V tiles in the wave's own shared memory (rows padded by
//   DM_PAD values), S = Q·Kᵀ (16 × 16, f32), keys past the split masked with −inf (soft-capped
//   first), an online softmax in log2 units in registers (fa_exp2), P rounded to T as the A
//   operand of O += P·V. Every wave runs ceil(tiles / 4) iterations: on the register path a
//   wave past the split's tiles masks a whole tile of zeros (the emulated wave's syncs are
//   block-wide), on the async path it skips the tile (its slot is not filled).
//   Loading: on the async path (WF_CP_ASYNC: NVIDIA sm_80+ at WAVE=32) a ring of DM_RING tiles a
//   wave, cp.async DM_RING − 1 tiles ahead (a wave-level wait: the lanes read each other's
//   rows); elsewhere the next tile into registers while the current one computes, then stored.
//   The key at p comes from shared memory (the rounded new key and value), rows past the split
//   are zeros (never read from the arena).
//   Prologue: what p does not decide (q's rows, the new key and value, the frequencies) is
//   loaded before p is read from the step, one round trip for all; on the async path the
//   ring's first tiles are issued as soon as p gives the split, before the rotation, with the
//   row of p left out and patched in from the new key once it is rounded.
//   The waves' (m, ℓ, O) merged in shared memory (O of the gb valid rows), then as above: out =
//   O / ℓ (one split), or the split's partials (m in log2 units) and da_combine<…, true>.
// Launch: grid (n_kv_heads · ceil(G / 16), s_max), block DM_BLOCK = DM_WAVES · WAVE threads
//   (128 at WAVE=32, 256 at WAVE=64); dynamic shared memory (the host's mma_shared_bytes): the
//   largest of the waves' tiles (DM_WAVES · stages · 2 · DM_TILE · (HD + DM_PAD) · 2 bytes,
//   stages = DM_RING on the async path, else 1), the merge (DM_WAVES · DM_GROUP · (HD + 2)
//   floats) and the combine (2 · DM_GROUP · DA_MAX_SPLITS floats).
// Rounding (conformance derives the tolerance from it, as for the flash kernel): q and the
//   softmax weights P rounded to T; scores, the running max and sum, and O in f32; ℓ adds the
//   unrounded weights.
// Paths (slot 6 + 2·(HD == 128) + T's codec id − 1; the rows forms 10 + the same): the
//   kernel above's, where they apply (no sub-chunks), and
//   tail:  a tile past the split's last key (masked keys)
constexpr int DM_WAVES = 4;
constexpr int DM_BLOCK = DM_WAVES * WAVE;
constexpr int DM_GROUP = 16;    // query heads a block: the rows of one m-tile
constexpr int DM_TILE = 16;     // keys a wave's tile: the k of P·V
constexpr int DM_PAD = 8;       // values of padding a tile row (conflict-free fragment reads)
constexpr int DM_RING = 3;      // tiles in a wave's ring on the async path
constexpr int DM_MIN_KEYS = 128; // fewest keys a split takes
constexpr int DM_COMBINE_ELEMS = 4;   // contiguous elements a thread of the split combine takes
// Splits of them loaded together: 16 at wave 32; 8 at wave 64, whose block has twice the
// threads (so the same 16 a vector in flight where a vector takes two of them), and where 16
// spilled SGPRs on gfx90a and gfx942 (clang 19: 32–36).
constexpr int DM_COMBINE_ROUND = WAVE == 64 ? 8 : 16;
#if defined(WF_CP_ASYNC)
constexpr bool DM_ASYNC = true;
#else
constexpr bool DM_ASYNC = false;
#endif

// RDNA3's fragments take 8 registers each (all 16 k of a row or column), and the 128-dim
// kernel spilled there (gfx1100, clang 19: 41 to 346 VGPRs spilled in the forms tried) until
// it held neither q's A fragments nor the next tile: it reads q's fragments from shared memory
// at each use (DM_Q_REGS false), loads each tile at the top of its iteration (DM_PREFETCH
// false: other waves hide the wait) and keeps the fragments' reads in order (dm_order): 236
// VGPRs, no spills. Everywhere else a wave holds both.
constexpr bool DM_Q_REGS = WF_MMA != WF_MMA_WMMA;
#if !defined(WF_CP_ASYNC)
constexpr bool DM_PREFETCH = WF_MMA != WF_MMA_WMMA;
#endif

// RDNA3: the fragments' shared-memory reads stay in program order, one product's at a time
// (the compiler would read all of a loop's ahead, 8 registers each); elsewhere nothing.
WF_DEVICE void dm_order() {
#if WF_MMA == WF_MMA_WMMA
  asm volatile("" ::: "memory");
#endif
}

// A fragment kk (dims 16·kk ..) of q's rows (shared memory, rows of ld values).
WF_DEVICE MmaA dm_q_fragment(const uint16_t* qs, int ld, int kk) {
  const int lane = wave_lane();
  MmaA a;
#pragma unroll
  for (int j = 0; j < MMA_A_N / 2; ++j) {
    const int i = 2 * j;  // values i, i + 1: the same row, consecutive k
    a.r[j] = lds_u32(qs + mma_a_row(lane, i) * ld + 16 * kk + mma_a_k(lane, i));
  }
  return a;
}

// Piece u of a lane's share of a tile plane (DM_TILE rows of HD / 8 pieces of 8 values):
// row r, first value c.
template <int HD>
WF_DEVICE void dm_piece(int lane, int u, int& r, int& c) {
  const int x = lane + WAVE * u;
  r = x / (HD / 8);
  c = (x - r * (HD / 8)) * 8;
}

// A wave's K/V tiles: tile i of the wave is the split's tile w + DM_WAVES · i, keys key0 ..
// key0 + DM_TILE − 1; rows at or past j1 are zeros, the row of p the new key and value
// (shared memory, 16-bit), the others from the arena.
template <class KV, int HD>
struct DmTiles {
  enum { PER = DM_TILE * HD / 8 / WAVE, PLANE = DM_TILE * (HD + DM_PAD) };
  const uint16_t* arena;
  i64 kh, vh;
  const wf_u32x4* knew;  // the new key's HD / 8 vectors, then the value's
  int j0, j1, pos, w, lane;
  uint16_t* ring;  // the wave's first tile
  WF_DEVICE int key0(int i) const { return j0 + (w + DM_WAVES * i) * DM_TILE; }
  WF_DEVICE uint16_t* k_tile(int slot) const { return ring + slot * 2 * PLANE; }
  // The 16-byte vector of a row that is not read from the arena: the new key's (or value's),
  // or zeros past the split.
  WF_DEVICE wf_u32x4 special(int j, int c, int plane) const {
    const wf_u32x4 zero = {0u, 0u, 0u, 0u};
    return j == pos ? knew[plane * (HD / 8) + c / 8] : zero;
  }
#if defined(WF_CP_ASYNC)
  bool defer;  // the row of p left to patch (tiles issued before the new key was ready)
  // The async path: tile i into ring slot `slot` (one commit group, empty past the tiles).
  WF_DEVICE void issue(int i, int slot) {
    const int k0 = key0(i);
    uint16_t* kt = k_tile(slot);
#pragma unroll
    for (int u = 0; u < PER; ++u) {
      if (k0 >= j1) break;  // a tile past the split: nothing to load
      int r, c;
      dm_piece<HD>(lane, u, r, c);
      const int j = k0 + r;
      uint16_t* dk = kt + r * (HD + DM_PAD) + c;
      if (j < j1 && j != pos) {
        cp_async16(smem_addr(dk), arena + kh + (i64)j * HD + c);
        cp_async16(smem_addr(dk + PLANE), arena + vh + (i64)j * HD + c);
      } else if (!(defer && j == pos)) {
        *(wf_u32x4*)dk = special(j, c, 0);
        *(wf_u32x4*)(dk + PLANE) = special(j, c, 1);
      }
    }
    cp_async_commit();
  }
  // The row of p of tile i (ring slot `slot`), issued with defer: the new key and value.
  WF_DEVICE void patch(int i, int slot) const {
    const int k0 = key0(i);
    if (k0 >= j1 || pos < k0 || pos >= k0 + DM_TILE) return;
    uint16_t* row = k_tile(slot) + (pos - k0) * (HD + DM_PAD);
    for (int c = lane; c < HD / 8; c += WAVE) {
      *(wf_u32x4*)(row + 8 * c) = knew[c];
      *(wf_u32x4*)(row + PLANE + 8 * c) = knew[HD / 8 + c];
    }
  }
#endif
  // The register path: plane `plane` (0 K, 1 V) of tile i's arena rows into registers ...
  WF_DEVICE void fetch(int i, int plane, uint32_t (&x)[PER][4]) const {
    const int k0 = key0(i);
#pragma unroll
    for (int u = 0; u < PER; ++u) {
      int r, c;
      dm_piece<HD>(lane, u, r, c);
      const int j = k0 + r;
      if (j < j1 && j != pos) Piece<KV>::load(arena, (plane ? vh : kh) + (i64)j * HD + c, x[u]);
    }
  }
  // ... and from registers into the wave's tile (slot 0), the special rows with them.
  WF_DEVICE void put(int i, int plane, const uint32_t (&x)[PER][4]) const {
    const int k0 = key0(i);
#pragma unroll
    for (int u = 0; u < PER; ++u) {
      int r, c;
      dm_piece<HD>(lane, u, r, c);
      const int j = k0 + r;
      const wf_u32x4 y = {x[u][0], x[u][1], x[u][2], x[u][3]};
      *(wf_u32x4*)(ring + plane * PLANE + r * (HD + DM_PAD) + c) =
          j < j1 && j != pos ? y : special(j, c, plane);
    }
  }
  // Both planes, K then V (the prefetch's registers).
  WF_DEVICE void fetch_kv(int i, uint32_t (&k)[PER][4], uint32_t (&v)[PER][4]) const {
    fetch(i, 0, k);
    fetch(i, 1, v);
  }
  WF_DEVICE void put_kv(int i, const uint32_t (&k)[PER][4], const uint32_t (&v)[PER][4]) const {
    put(i, 0, k);
    put(i, 1, v);
  }
  // Without prefetch: tile i into the wave's tile, one plane at a time (half the registers).
  WF_DEVICE void copy(int i) const {
#pragma unroll
    for (int plane = 0; plane < 2; ++plane) {
      uint32_t x[PER][4];
      fetch(i, plane, x);
      put(i, plane, x);
    }
  }
};

template <class KV, int HD>
WF_DEVICE void decode_attention_mma_kernel(const float* q, const float* k, const float* v,
                                           const float* inv_freq, uint16_t* arena, float* out,
                                           float* ws, int* counters, int layer, int pos,
                                           int n_heads, int n_kv_heads, int capacity, int s_max,
                                           float scale, const int* step, int window,
                                           float softcap, int slot_id, int mode) {
  constexpr int LD = HD + DM_PAD;
  constexpr int KS = HD / 16;  // k-steps of Q·Kᵀ, n-tiles of O
  constexpr int STAGES = DM_ASYNC ? DM_RING : 1;
  typedef DmTiles<KV, HD> Tiles;
  static_assert(DM_TILE * HD / 8 % WAVE == 0, "a tile plane is whole vectors a lane");
  static_assert(!DM_ASYNC || DM_RING >= 2, "the ring needs two tiles");
  const int t = thread_index(), lane = wave_lane(), w = wave_index();
  int kvh, slab, h0, gb;
  da_heads<DM_GROUP>(n_heads, n_kv_heads, kvh, slab, h0, gb);
  const int half = HD / 2;
  // Launched overlapped (common.h): the frequencies (no kernel writes them) are read while the
  // kernels ahead drain; the step block, q, k, v and the cache wait for them; then the kernel
  // after this one may start.
  static_assert(HD / 2 <= DM_BLOCK && HD / 8 <= DM_BLOCK, "a frequency, a new piece a thread");
  const float freq = t < half ? inv_freq[t] : 0.0f, attn_factor = inv_freq[half];
  wf_dependency_wait();
  wf_allow_dependents();
  // What the prologue reads and p does not decide, loaded before p: q's rows and the new key
  // and value (one round trip to memory, not two in turn).
  constexpr int QP = (DM_GROUP * HD / 8 + DM_BLOCK - 1) / DM_BLOCK;  // q's pieces a thread
  float qa0[QP][8], qb0[QP][8], ka0[8], kb0[8], vn[8];
#pragma unroll
  for (int u = 0; u < QP; ++u) {
    const int x = t + u * DM_BLOCK, g = x / (HD / 8), d0 = (x - g * (HD / 8)) * 8;
    if (x < DM_GROUP * HD / 8 && g < gb)
      rope_load(q + (i64)(h0 + g) * HD, d0, half, qa0[u], qb0[u]);
  }
  if (t < HD / 8) {
    rope_load(k + (i64)kvh * HD, t * 8, half, ka0, kb0);
    load_f32x4(v + (i64)kvh * HD + t * 8, *(float(*)[4])vn);
    load_f32x4(v + (i64)kvh * HD + t * 8 + 4, *(float(*)[4])(vn + 4));
  }
  if (step != nullptr) {
    pos = step[1];
    if (block_index_x() == 0 && block_index_y() == 0 && t == 0) WF_PATH(slot_id, PATH_STEP);
  }
  if (pos < 0 || pos >= capacity || s_max < 1 || s_max > DA_MAX_SPLITS) return;
  if (mode == DA_KV_ONLY && s_max != 1) return;  // the host's contract: one split
  const int s = block_index_y();
  int first, n_split, j0, j1;
  if (!da_split(pos, window, s_max, DM_MIN_KEYS, s, first, n_split, j0, j1)) return;
  if (first > 0 && s == 0 && t == 0) WF_PATH(slot_id, PATH_WINDOW);
  const i64 kh = (((i64)layer * 2 + 0) * n_kv_heads + kvh) * capacity * HD;  // elements
  const i64 vh = (((i64)layer * 2 + 1) * n_kv_heads + kvh) * capacity * HD;

  WF_SHARED float sn[HD / 2], cs[HD / 2];
  WF_SHARED wf_u32x4 qs4[DM_GROUP * LD / 8];  // q rounded, (DM_GROUP, LD) 16-bit
  WF_SHARED wf_u32x4 new4[2 * HD / 8];        // the new key, then value, rounded (16-bit)
  WF_SHARED uint16_t scratch[DM_WAVES * 16 * MMA_SCRATCH_LD];
  WF_SHARED int last;
  const uint16_t* qs = (const uint16_t*)qs4;
  Tiles tiles;
  tiles.arena = arena;
  tiles.kh = kh;
  tiles.vh = vh;
  tiles.knew = new4;
  tiles.j0 = j0;
  tiles.j1 = j1;
  tiles.pos = pos;
  tiles.w = w;
  tiles.lane = lane;
  tiles.ring = dynamic_shared_u16() + w * STAGES * 2 * Tiles::PLANE;
#if defined(WF_CP_ASYNC)
  tiles.defer = true;
  // The ring's first tiles, issued before the prologue's arithmetic (their loads overlap it);
  // the row of p is patched in once the new key is ready.
  if (mode != DA_KV_ONLY)
    for (int i = 0; i < STAGES - 1; ++i) tiles.issue(i, i);
#endif
  if (t < half) {
    wf_sincosf((float)pos * freq, &sn[t], &cs[t]);
    sn[t] *= attn_factor;
    cs[t] *= attn_factor;
  }
  block_sync();
  // q's rows (zeros past gb), rotated, times scale · log2 e, rounded to T.
  const float qscale = scale * FA_LOG2E;
#pragma unroll
  for (int u = 0; u < QP; ++u) {
    const int x = t + u * DM_BLOCK, g = x / (HD / 8), d0 = (x - g * (HD / 8)) * 8;
    if (x >= DM_GROUP * HD / 8) break;
    float f[8] = {};
    if (g < gb) rope_rotate(d0, half, sn, cs, qa0[u], qb0[u], f);
    uint32_t wd[4];
#pragma unroll
    for (int e = 0; e < 4; ++e)
      wd[e] = pack_u16x2(KV::store_hw(f[2 * e] * qscale), KV::store_hw(f[2 * e + 1] * qscale));
    qs4[(g * LD + d0) / 8] = wf_u32x4{wd[0], wd[1], wd[2], wd[3]};
  }
  // The new key and value (rounded to T) into shared memory, and into the arena at p.
  const bool has_new = j1 == pos + 1;  // this split holds key p (the same for the whole block)
  if (has_new && t < HD / 8) {
    const int d0 = t * 8;
    float kn[8];
    rope_rotate(d0, half, sn, cs, ka0, kb0, kn);
    uint32_t kq[4], vq[4];
    Piece<KV>::round(kn, kq);
    Piece<KV>::round(vn, vq);
    new4[t] = wf_u32x4{kq[0], kq[1], kq[2], kq[3]};
    new4[HD / 8 + t] = wf_u32x4{vq[0], vq[1], vq[2], vq[3]};
    if (slab == 0 && mode != DA_ATTEND_ONLY) {
      WF_PATH(slot_id, PATH_WRITE);
      if (mode == DA_KV_ONLY && t == 0) WF_PATH(slot_id, PATH_KV_ONLY);
      Piece<KV>::store(arena, kh + (i64)pos * HD + d0, kq, t);
      Piece<KV>::store(arena, vh + (i64)pos * HD + d0, vq, t);
    }
  }
  if (mode == DA_ATTEND_ONLY && slab == 0 && t == 0 && has_new) WF_PATH(slot_id, PATH_ATTEND_ONLY);
  if (mode == DA_KV_ONLY) return;  // the whole block: has_new holds for its one split
  block_sync();

  // q's A fragments: held in registers, or (RDNA3, whose fragments take 8 registers each)
  // read from shared memory at each use.
  MmaA qa[DM_Q_REGS ? KS : 1];
#pragma unroll
  for (int kk = 0; kk < (DM_Q_REGS ? KS : 0); ++kk) qa[kk] = dm_q_fragment(qs, LD, kk);

  const int n_tiles = (j1 - j0 + DM_TILE - 1) / DM_TILE;
  const int iters = (n_tiles + DM_WAVES - 1) / DM_WAVES;  // the same for every wave
  uint16_t* wscratch = scratch + w * 16 * MMA_SCRATCH_LD;
  const float cap2 = softcap * FA_LOG2E, cap_k = softcap > 0.0f ? -2.0f / softcap : 0.0f;

  float m[MMA_ROWS], l[MMA_ROWS];
#pragma unroll
  for (int r = 0; r < MMA_ROWS; ++r) {
    m[r] = -wf_inf();
    l[r] = 0.0f;
  }
  MmaC o[KS];
#pragma unroll
  for (int n = 0; n < KS; ++n) mma_zero(o[n]);

#if defined(WF_CP_ASYNC)
  for (int i = 0; i < STAGES - 1; ++i) tiles.patch(i, i);
  tiles.defer = false;
#else
  uint32_t kr[Tiles::PER][4], vr[Tiles::PER][4];  // the next tile's arena rows
  if (DM_PREFETCH) {
    tiles.fetch_kv(0, kr, vr);
    tiles.put_kv(0, kr, vr);
  }
#endif
  for (int i = 0; i < iters; ++i) {
#if defined(WF_CP_ASYNC)
    cp_async_wait<STAGES - 2>();
    wave_sync();  // tile i landed for every lane; every lane is past tile i − 1's slot
    tiles.issue(i + STAGES - 1, (i + STAGES - 1) % STAGES);
    // A tile wholly past the split (the wave's last ones) was not filled: nothing to add (the
    // wave's remaining tiles are past it too; no sync follows on this path).
    if (tiles.key0(i) >= j1) continue;
    const uint16_t* kt = tiles.k_tile(i % STAGES);
#else
    if (!DM_PREFETCH) tiles.copy(i);
    wave_sync();  // tile i stored by every lane
    if (DM_PREFETCH && i + 1 < iters) tiles.fetch_kv(i + 1, kr, vr);
    const uint16_t* kt = tiles.k_tile(0);
#endif
    const uint16_t* vt = kt + Tiles::PLANE;
    const int key0 = tiles.key0(i);
    if (t == 0) WF_PATH(slot_id, PATH_KEYS);
    MmaC sc;
    mma_zero(sc);
#pragma unroll
    for (int kk = 0; kk < KS; ++kk) {
      mma<KV>(sc, DM_Q_REGS ? qa[kk] : dm_q_fragment(qs, LD, kk), mma_b_nk(kt + 16 * kk, LD));
      dm_order();
    }
    if (softcap > 0.0f) {  // before the mask: a masked score stays −inf
      if (t == 0) WF_PATH(slot_id, PATH_SOFTCAP);
#pragma unroll
      for (int e = 0; e < MMA_C; ++e) sc.c[e] = fa_softcap(sc.c[e], cap2, cap_k);
    }
    if (key0 + DM_TILE > j1) {
      if (lane == 0) WF_PATH(slot_id, PATH_TAIL);
#pragma unroll
      for (int e = 0; e < MMA_C; ++e)
        if (key0 + mma_c_col(lane, e) >= j1) sc.c[e] = -wf_inf();
    }
    if (key0 <= pos && pos < key0 + DM_TILE && lane == 0) WF_PATH(slot_id, PATH_NEW);
    // Online softmax (log2 units: q carries scale · log2 e).
    float mx[MMA_ROWS], corr[MMA_ROWS], sum[MMA_ROWS];
#pragma unroll
    for (int r = 0; r < MMA_ROWS; ++r) mx[r] = -wf_inf();
#pragma unroll
    for (int e = 0; e < MMA_C; ++e) mx[mma_c_slot(e)] = max_num(mx[mma_c_slot(e)], sc.c[e]);
#pragma unroll
    for (int r = 0; r < MMA_ROWS; ++r) {
      // m stays −inf while the wave has seen no key (a tile wholly past the split): the
      // weights (all 0) and the correction are taken against 0 then, not −inf.
      const float m_new = max_num(m[r], mma_row_max(mx[r]));
      corr[r] = fa_exp2(m[r] - fa_ref(m_new));
      m[r] = m_new;
      sum[r] = 0.0f;
    }
#pragma unroll
    for (int e = 0; e < MMA_C; ++e) {
      const float p = fa_exp2(sc.c[e] - fa_ref(m[mma_c_slot(e)]));
      sc.c[e] = p;
      sum[mma_c_slot(e)] += p;
    }
#pragma unroll
    for (int r = 0; r < MMA_ROWS; ++r) l[r] = l[r] * corr[r] + mma_row_sum(sum[r]);
#pragma unroll
    for (int n = 0; n < KS; ++n)
#pragma unroll
      for (int e = 0; e < MMA_C; ++e) o[n].c[e] *= corr[mma_c_slot(e)];
    // O += P · V
    const MmaA pa = mma_c_to_a<KV>(sc, wscratch);
#pragma unroll
    for (int n = 0; n < KS; ++n) {
      mma<KV>(o[n], pa, mma_b_kn(vt + 16 * n, LD));
      dm_order();
    }
#if !defined(WF_CP_ASYNC)
    wave_sync();  // every lane is done with tile i
    if (DM_PREFETCH && i + 1 < iters) tiles.put_kv(i + 1, kr, vr);
#endif
  }
#if defined(WF_CP_ASYNC)
  cp_async_wait<0>();  // no copy still lands in shared memory
#endif
  block_sync();  // the tiles' memory becomes the merge's

  // The waves' (m, ℓ, O) of the valid rows, merged: M = max_w m_w, O = Σ_w O_w·2^(m_w − M).
  float* mo = (float*)dynamic_shared_u16();     // (DM_WAVES, DM_GROUP, HD)
  float* mm = mo + DM_WAVES * DM_GROUP * HD;    // (DM_WAVES, DM_GROUP)
  float* ml = mm + DM_WAVES * DM_GROUP;         // (DM_WAVES, DM_GROUP)
#pragma unroll
  for (int e = 0; e < MMA_C; ++e) {
    const int row = mma_c_row(lane, e), col = mma_c_col(lane, e);
    if (row < gb) {
#pragma unroll
      for (int n = 0; n < KS; ++n) mo[(w * DM_GROUP + row) * HD + 16 * n + col] = o[n].c[e];
      if (col == 0) {
        mm[w * DM_GROUP + row] = m[mma_c_slot(e)];
        ml[w * DM_GROUP + row] = l[mma_c_slot(e)];
      }
    }
  }
  block_sync();
  const bool single = n_split == 1;
  float* part_acc = ws;                                  // (n_heads, s_max, head_dim)
  float* part_ml = ws + (i64)n_heads * s_max * HD;        // (n_heads, s_max, 2)
  for (int x = t; x < gb * HD; x += DM_BLOCK) {
    const int g = x / HD, d = x - g * HD, h = h0 + g;
    float big = -wf_inf();
#pragma unroll
    for (int u = 0; u < DM_WAVES; ++u) big = max_num(big, mm[u * DM_GROUP + g]);
    float num = 0.0f, den = 0.0f;
#pragma unroll
    for (int u = 0; u < DM_WAVES; ++u) {
      const float f = fa_exp2(mm[u * DM_GROUP + g] - big);  // 0 for a wave that saw no key
      num += mo[(u * DM_GROUP + g) * HD + d] * f;
      den += ml[u * DM_GROUP + g] * f;
    }
    if (single) {
      WF_PATH(slot_id, PATH_SINGLE);
      out[(i64)h * HD + d] = num / den;
    } else {
      WF_PATH(slot_id, PATH_PARTIAL);
      part_acc[((i64)h * s_max + s) * HD + d] = num;
      if (d == 0) {
        part_ml[((i64)h * s_max + s) * 2] = big;
        part_ml[((i64)h * s_max + s) * 2 + 1] = den;
      }
    }
  }
  if (single) return;
  block_sync();  // the merge's shared memory becomes the combine's
  da_combine<DM_BLOCK, DM_GROUP, true, DM_COMBINE_ELEMS, DM_COMBINE_ROUND>(
      part_acc, part_ml, counters + block_index_x(), n_split, gb, h0, HD, s_max, out,
      (float*)dynamic_shared_u16(), &last, slot_id);
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
// The one-row kernel a rows launch runs for each of its rows: the vector kernel (HD = 0) or the
// matrix-instruction one of head dim HD; GROUP: its query heads a block column.
template <class KV, int HD>
struct DaRowKernel {
  enum { GROUP = DM_GROUP };
  static WF_DEVICE void run(const float* q, const float* k, const float* v, const float* inv_freq,
                            uint16_t* arena, float* out, float* ws, int* counters, int layer,
                            int pos, int n_heads, int n_kv_heads, int, int capacity, int s_max,
                            float scale, const int* step, int window, float softcap, int slot_id,
                            int mode) {
    decode_attention_mma_kernel<KV, HD>(q, k, v, inv_freq, arena, out, ws, counters, layer, pos,
                                        n_heads, n_kv_heads, capacity, s_max, scale, step, window,
                                        softcap, slot_id, mode);
  }
};
template <class KV>
struct DaRowKernel<KV, 0> {
  enum { GROUP = DA_GROUP };
  static WF_DEVICE void run(const float* q, const float* k, const float* v, const float* inv_freq,
                            typename KV::storage* arena, float* out, float* ws, int* counters,
                            int layer, int pos, int n_heads, int n_kv_heads, int head_dim,
                            int capacity, int s_max, float scale, const int* step, int window,
                            float softcap, int slot_id, int mode) {
    decode_attention_kernel<KV>(q, k, v, inv_freq, arena, out, ws, counters, layer, pos, n_heads,
                                n_kv_heads, head_dim, capacity, s_max, scale, step, window,
                                softcap, slot_id, mode);
  }
};

template <class KV, int HD>
WF_DEVICE void decode_attention_rows_kernel(const float* q, const float* k, const float* v,
                                             const float* inv_freq, float* out, float* ws,
                                             int* counters, int layer, int pos0, int n_heads,
                                             int n_kv_heads, int head_dim, int capacity,
                                             int s_max, float scale, int window, float softcap,
                                             int mode, const DaRows& rows, int slot_id) {
  const int z = block_index_z();
  if (z >= DA_ROWS) return;
#if defined(WF_HIP)
  // Row z's pointers: AMD's kernel arguments are memory the scalar unit loads from at a uniform
  // index (selecting by constant indices held all 32 words in SGPRs, which the matrix kernels'
  // rows forms spilled on CDNA).
  const unsigned long long arena = rows.arena[z], step = rows.step[z];
#else
  // Row z's pointers by constant indices (a dynamic index into a by-value parameter may copy
  // the whole struct to local memory).
  unsigned long long arena = 0, step = 0;
#pragma unroll
  for (int r = 0; r < DA_ROWS; ++r) {
    arena = r == z ? rows.arena[r] : arena;
    step = r == z ? rows.step[r] : step;
  }
#endif
  if (z > 0 && block_index_x() == 0 && block_index_y() == 0 && thread_index() == 0)
    WF_PATH(slot_id, PATH_ROWS);
  constexpr int GROUP = DaRowKernel<KV, HD>::GROUP;
  const int slabs = (n_heads / n_kv_heads + GROUP - 1) / GROUP;
  const i64 qd = (i64)n_heads * head_dim, kvd = (i64)n_kv_heads * head_dim;
  const i64 ws_row = (i64)n_heads * s_max * (head_dim + 2);
  DaRowKernel<KV, HD>::run(q + z * qd, k + z * kvd, v + z * kvd, inv_freq,
                           (typename KV::storage*)arena, out + z * qd, ws + z * ws_row,
                           counters + z * n_kv_heads * slabs, layer, pos0 + z, n_heads,
                           n_kv_heads, head_dim, capacity, s_max, scale, (const int*)step, window,
                           softcap, slot_id, mode);
}

extern "C" __global__ void __launch_bounds__(DA_BLOCK, DA_MIN_BLOCKS)
    decode_attention_rows_f16(const float* q, const float* k, const float* v,
                              const float* inv_freq, float* out, float* ws, int* counters,
                              int layer, int pos0, int n_heads, int n_kv_heads, int head_dim,
                              int capacity, int s_max, float scale, int window, float softcap,
                              int mode, DaRows rows) {
  decode_attention_rows_kernel<F16, 0>(q, k, v, inv_freq, out, ws, counters, layer, pos0, n_heads,
                                    n_kv_heads, head_dim, capacity, s_max, scale, window,
                                    softcap, mode, rows, 3 + F16::id - 1);
}

extern "C" __global__ void __launch_bounds__(DA_BLOCK, DA_MIN_BLOCKS)
    decode_attention_rows_bf16(const float* q, const float* k, const float* v,
                               const float* inv_freq, float* out, float* ws, int* counters,
                               int layer, int pos0, int n_heads, int n_kv_heads, int head_dim,
                               int capacity, int s_max, float scale, int window, float softcap,
                               int mode, DaRows rows) {
  decode_attention_rows_kernel<BF16, 0>(q, k, v, inv_freq, out, ws, counters, layer, pos0, n_heads,
                                     n_kv_heads, head_dim, capacity, s_max, scale, window,
                                     softcap, mode, rows, 3 + BF16::id - 1);
}

extern "C" __global__ void __launch_bounds__(DA_BLOCK, DA_MIN_BLOCKS)
    decode_attention_rows_q8_0(const float* q, const float* k, const float* v,
                               const float* inv_freq, float* out, float* ws, int* counters,
                               int layer, int pos0, int n_heads, int n_kv_heads, int head_dim,
                               int capacity, int s_max, float scale, int window, float softcap,
                               int mode, DaRows rows) {
  decode_attention_rows_kernel<Q8, 0>(q, k, v, inv_freq, out, ws, counters, layer, pos0, n_heads,
                                   n_kv_heads, head_dim, capacity, s_max, scale, window, softcap,
                                   mode, rows, 3 + Q8::id - 1);
}

// The matrix-instruction forms (head_dim = HD; the host picks them, see its `mma`).
extern "C" __global__ void __launch_bounds__(DM_BLOCK)
    decode_attention_mma_64_f16(const float* q, const float* k, const float* v,
                                const float* inv_freq, uint16_t* arena, float* out, float* ws,
                                int* counters, int layer, int pos0, int n_heads, int n_kv_heads,
                                int head_dim, int capacity, int s_max, float scale,
                                const int* step, int window, float softcap) {
  (void)head_dim;  // = 64 (the host's contract)
  decode_attention_mma_kernel<F16, 64>(q, k, v, inv_freq, arena, out, ws, counters, layer, pos0,
                                    n_heads, n_kv_heads, capacity, s_max, scale, step, window,
                                    softcap, 6 + 0 + F16::id - 1, DA_FULL);
}

extern "C" __global__ void __launch_bounds__(DM_BLOCK)
    decode_attention_mma_64_bf16(const float* q, const float* k, const float* v,
                                const float* inv_freq, uint16_t* arena, float* out, float* ws,
                                int* counters, int layer, int pos0, int n_heads, int n_kv_heads,
                                int head_dim, int capacity, int s_max, float scale,
                                const int* step, int window, float softcap) {
  (void)head_dim;  // = 64 (the host's contract)
  decode_attention_mma_kernel<BF16, 64>(q, k, v, inv_freq, arena, out, ws, counters, layer, pos0,
                                    n_heads, n_kv_heads, capacity, s_max, scale, step, window,
                                    softcap, 6 + 0 + BF16::id - 1, DA_FULL);
}

extern "C" __global__ void __launch_bounds__(DM_BLOCK)
    decode_attention_mma_128_f16(const float* q, const float* k, const float* v,
                                const float* inv_freq, uint16_t* arena, float* out, float* ws,
                                int* counters, int layer, int pos0, int n_heads, int n_kv_heads,
                                int head_dim, int capacity, int s_max, float scale,
                                const int* step, int window, float softcap) {
  (void)head_dim;  // = 128 (the host's contract)
  decode_attention_mma_kernel<F16, 128>(q, k, v, inv_freq, arena, out, ws, counters, layer, pos0,
                                    n_heads, n_kv_heads, capacity, s_max, scale, step, window,
                                    softcap, 6 + 2 + F16::id - 1, DA_FULL);
}

extern "C" __global__ void __launch_bounds__(DM_BLOCK)
    decode_attention_mma_128_bf16(const float* q, const float* k, const float* v,
                                const float* inv_freq, uint16_t* arena, float* out, float* ws,
                                int* counters, int layer, int pos0, int n_heads, int n_kv_heads,
                                int head_dim, int capacity, int s_max, float scale,
                                const int* step, int window, float softcap) {
  (void)head_dim;  // = 128 (the host's contract)
  decode_attention_mma_kernel<BF16, 128>(q, k, v, inv_freq, arena, out, ws, counters, layer, pos0,
                                    n_heads, n_kv_heads, capacity, s_max, scale, step, window,
                                    softcap, 6 + 2 + BF16::id - 1, DA_FULL);
}

extern "C" __global__ void __launch_bounds__(DM_BLOCK)
    decode_attention_mma_rows_64_f16(const float* q, const float* k, const float* v,
                                     const float* inv_freq, float* out, float* ws,
                                     int* counters, int layer, int pos0, int n_heads,
                                     int n_kv_heads, int head_dim, int capacity, int s_max,
                                     float scale, int window, float softcap, int mode,
                                     DaRows rows) {
  decode_attention_rows_kernel<F16, 64>(q, k, v, inv_freq, out, ws, counters, layer, pos0,
                                       n_heads, n_kv_heads, head_dim, capacity, s_max, scale,
                                       window, softcap, mode, rows, 10 + 0 + F16::id - 1);
}

extern "C" __global__ void __launch_bounds__(DM_BLOCK)
    decode_attention_mma_rows_64_bf16(const float* q, const float* k, const float* v,
                                     const float* inv_freq, float* out, float* ws,
                                     int* counters, int layer, int pos0, int n_heads,
                                     int n_kv_heads, int head_dim, int capacity, int s_max,
                                     float scale, int window, float softcap, int mode,
                                     DaRows rows) {
  decode_attention_rows_kernel<BF16, 64>(q, k, v, inv_freq, out, ws, counters, layer, pos0,
                                       n_heads, n_kv_heads, head_dim, capacity, s_max, scale,
                                       window, softcap, mode, rows, 10 + 0 + BF16::id - 1);
}

extern "C" __global__ void __launch_bounds__(DM_BLOCK)
    decode_attention_mma_rows_128_f16(const float* q, const float* k, const float* v,
                                     const float* inv_freq, float* out, float* ws,
                                     int* counters, int layer, int pos0, int n_heads,
                                     int n_kv_heads, int head_dim, int capacity, int s_max,
                                     float scale, int window, float softcap, int mode,
                                     DaRows rows) {
  decode_attention_rows_kernel<F16, 128>(q, k, v, inv_freq, out, ws, counters, layer, pos0,
                                       n_heads, n_kv_heads, head_dim, capacity, s_max, scale,
                                       window, softcap, mode, rows, 10 + 2 + F16::id - 1);
}

extern "C" __global__ void __launch_bounds__(DM_BLOCK)
    decode_attention_mma_rows_128_bf16(const float* q, const float* k, const float* v,
                                     const float* inv_freq, float* out, float* ws,
                                     int* counters, int layer, int pos0, int n_heads,
                                     int n_kv_heads, int head_dim, int capacity, int s_max,
                                     float scale, int window, float softcap, int mode,
                                     DaRows rows) {
  decode_attention_rows_kernel<BF16, 128>(q, k, v, inv_freq, out, ws, counters, layer, pos0,
                                       n_heads, n_kv_heads, head_dim, capacity, s_max, scale,
                                       window, softcap, mode, rows, 10 + 2 + BF16::id - 1);
}
