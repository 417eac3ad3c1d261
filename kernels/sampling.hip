// Sampling on the device: greedy argmax (only the id crosses to the host), and the whole
// sampler (sample_prep, sample_topk, sample_pick), bit for bit the reference's `distribution` +
// `pick`.
//
// argmax: out[0] = the index of the largest x[i], i < n; the lowest index on ties; or -1 when
//   the logits cannot be sampled, as the reference sampler refuses them: a NaN, a +inf, every
//   value -inf, or n ≤ 0 (the host reports it rather than taking a token it did not choose).
//   Shapes: x (n) f32; out (1) i32.
//   Launch: grid (1); block ARGMAX_BLOCK = 1024; no dynamic shared memory.
//   Indexing: thread t scans its elements in ascending order (float4 vectors t, t + 1024, …
//   when x is 16-byte aligned, then the scalar tail; else elements t, t + 1024, …), keeping
//   the first maximum and noting any NaN or +inf; the (value, index) pairs are then reduced
//   over the wave and the waves with the order "larger value, then smaller index", which is
//   total on the candidates (no NaN ever becomes a candidate).
// Paths (WF_PATH, slot 0):
//   vec:     x starts on 16 bytes: float4 loads
//   tail:    after the vectors, the n mod 4 elements, scalar
//   scalar:  x not on 16 bytes: every element scalar
//   invalid: NaN, +inf, all -inf or n ≤ 0: returns -1
//
// The sampler of a decode step: one decode step's token from one logits row, the repetition,
//   presence and frequency penalties taken over the device-side history, the coin given or drawn from a device-side
//   SplitMix64 state; bit for bit the reference's `distribution` + `pick`. Three launches, so
//   that every pass over the vocabulary is spread over the device (one block per SAMPLE_CHUNK
//   ids) and only the candidates reach the one block that draws:
//     sample_prep (G blocks):  the penalties, the row's checks and each chunk's argmax;
//     sample_topk (G blocks):  sampled steps only (temperature > 0): each chunk's scaled logits
//                              and its own top-k candidates;
//     sample_pick (1 block):   the decisions, the global top-k over the candidates, the softmax,
//                              top-p, min-p, the draw; the step block and history updated.
//   G = ceil(vocab / SAMPLE_CHUNK) ≤ SAMPLE_PICK_BLOCK (vocab ≤ 2,000,000, checked by the host).
//   Shapes: logits (vocab) f32; step: the 32-byte step block, int32 words
//     0 token (written: the id, or -1 when the row cannot be sampled),
//     1 pos (the context is hist[0 ..= pos], -1 = empty; on success hist[pos + 1] = token when
//       pos + 1 < hist_cap, and pos += 1; unchanged on failure),
//     2 calls (incremented every call),
//     3 flags (bit 0: the coin is drawn from the SplitMix64 state, advanced once per call as
//       CoinRng::next_u64 then coin(); clear: the coin is the f32 at byte 24),
//     4-5 the SplitMix64 state (u64, little-endian), 6 the coin (f32), 7 reserved;
//   hist (hist_cap) i32 ids; the workspace, for this vocab: work, stage_p, tmp_p, cand_p
//   (vocab) f32; stage_id, tmp_id, cand_id (vocab) i32; keys (next power of two ≥ vocab) u64;
//   part (G, 12) i32: per chunk the argmax value's bits, its id, the flags (bit 0 a NaN or +inf
//   in the row, bit 1 a value other than -inf, bit 2 +inf after the penalty), the number of
//   candidates, then the bits of the penalised maximum of each of its 8 groups (group g: the
//   ids of threads 32g … 32g + 31, 256 ids).
//   Contract (the host's): vocab ≥ 1, the workspace sized for ≥ vocab; temperature finite;
//   top_k in [0, vocab) (0 = off); top_p in (0, 1] (≥ 1 = off); min_p in [0, 1] (0 = off);
//   repeat_penalty finite > 0 (1 = off); presence_penalty, frequency_penalty in [-2, 2] (0 =
//   off); window ≥ 0 (0 = the whole context).
//   Steps (the reference's; float operations in its order, so the ids agree exactly):
//   sample_prep, block b over ids [b·CHUNK, min((b + 1)·CHUNK, vocab)):
//   1. the chunk's ids counted in shared memory (atomic adds: the count, not the order,
//      matters) from hist[max(0, pos + 1 − window) ..= min(pos, hist_cap − 1)] (ids ≥ vocab
//      fall in no chunk);
//   2. per id: a NaN or +inf, a value other than -inf (the raw row); for an id counted c > 0
//      times (the repetition penalty once, the reference's "distinct ids"): l ← l · penalty if
//      l < 0 else l / penalty, then l ← l − (c · frequency + presence), each rounded; +inf
//      after them; the chunk's argmax (lowest id on ties);
//      the penalised row written to work when the step samples (temperature > 0); the
//      maxima of the chunk's 8 groups.
//   sample_topk, block b (every block first folds all G parts: the row's maximum M and its
//   checks; a step that fails or is greedy stops here):
//   3. scaled = (l − M) / temperature for the chunk's ids, in shared memory;
//   4. top-k (0 < k < vocab): a bound β, the k-th largest of the G chunk maxima when k ≤ G ≤
//      512, else of the 8·G group maxima when k ≤ 8·G ≤ 512, by ranks (each thread counts the
//      maxima above its own), else none (β = -inf); the maxima of disjoint sets of ids, so at
//      least k ids are ≥ β and the row's k-th largest is ≥ β; scaled β = (β − M) / T. The
//      chunk's ids with scaled ≥ β (not -inf) are its candidates unless there are more than k:
//      then also ≥ the chunk's own k-th largest τ_b, by a radix select (four passes of 8 bits
//      over a key in f32 total order); in id order at stage[b·CHUNK ..], their count in
//      part[b]. The global k-th largest scaled τ is ≥ both (scaling is nondecreasing; a chunk
//      is a subset), so every id with scaled ≥ τ is a candidate, and τ is the k-th largest
//      candidate. On real logits β leaves a few candidates a chunk: no select runs.
//   sample_pick (one block):
//   5. the parts folded: a NaN or +inf, every value -inf, a coin outside [0, 1): token -1;
//      +inf after the penalty: -1; greedy (temperature ≤ 0), or every value -inf after the
//      penalty (the reference's NaN-filled distribution then draws id 0, the argmax): the
//      argmax;
//   6. the chunks' candidates gathered in id order, into shared memory when there are at most
//      SAMPLE_PICK_BLOCK (one a thread), else into tmp; top-k: τ = their k-th largest when
//      there are more than k of them (by ranks in shared memory, else a radix select), else
//      every one is kept (fewer than k values in the row are above -inf); kept: scaled ≥ τ,
//      compacted in id order (in shared memory, each thread's candidate in its registers;
//      else into cand)
//      (thread t owns a contiguous range; a block scan gives its offset); e =
//      wf_sampler_exp(scaled) (the reference's softmax subtracts the kept maximum, +0:
//      v − 0 = v); sum serial in id order by thread 0; p = e / sum;
//   7. top-p (< 1): keys (~bits(p) << 32 | position) sorted ascending (up to SAMPLE_PICK_BLOCK
//      keys each placed at its rank; else bitonic, in shared memory up to SAMPLE_SORT_LDS
//      keys, else in keys): p descending, id ascending; thread 0
//      walks them, zeroing p of each token of rank > 0 whose mass ranked above is ≥ top_p;
//   8. min-p (> 0): threshold = min_p · (max of p, folded from 0); p < threshold zeroed;
//   9. thread 0: total = Σ p (id order), dist = p / total, total2 = Σ dist, r = coin · total2;
//      the first candidate with r < the running Σ dist, else the last with dist > 0.
//   Launch: sample_prep and sample_topk grid (G), block SAMPLE_PART_BLOCK = 256 (thread t reads
//   ids t, t + 256, … of its chunk: SAMPLE_CHUNK / 256 loads in flight, coalesced);
//   sample_pick grid (1), block SAMPLE_PICK_BLOCK = 1024. No dynamic shared memory (static:
//   prep 8 KiB, topk ≤ 27 KiB, pick ≤ 33 KiB). The serial sums and walks of sample_pick run
//   on thread 0 over the candidates (k of top-k plus ties; every id above -inf when top-k is
//   off).
// Paths (WF_PATH; sample_pick slot 1, sample_prep slot 2, sample_topk slot 3):
//   unsamplable:  (pick) a NaN, +inf, all -inf, or a bad coin: token -1
//   penalty_inf:  (pick) +inf after the penalty: token -1
//   greedy:       (pick) temperature ≤ 0 (or all -inf after the penalty): the argmax
//   top_k:        (pick) the radix select of the k-th largest candidate (over 1024 of them)
//   top_k_rank:   (pick) the k-th largest of at most 1024 candidates, by ranks
//   candidates_lds:    (pick) at most 1024 candidates: gathered and kept in shared memory
//   candidates_global: (pick) more: gathered into tmp, kept into cand
//   softmax:      (pick) a sampled step: candidates, softmax, the draw
//   top_p_rank:   (pick) top-p over at most 1024 candidates, each key placed at its rank
//   top_p_lds:    (pick) top-p with its bitonic sort in shared memory
//   top_p_global: (pick) top-p with its sort in the keys workspace
//   min_p:        (pick) the min-p filter
//   penalty:      (prep) the window's ids counted and penalised
//   counts:       (prep) presence/frequency on: c · frequency + presence subtracted
//   work:         (prep) the penalised row written for a sampled step
//   stop:         (topk) a failed or greedy step: no candidates
//   chunk_top_k:  (topk) more than k candidates: the chunk's radix select of its k-th largest
//   bound:        (topk) the bound β left at most k candidates: no select
//   all:          (topk) no bound and at most k ids above -inf, or top-k off: every id above
//                 -inf

#include "common.h"

constexpr int ARGMAX_BLOCK = 1024;
enum SamplingPath { PATH_VEC, PATH_TAIL, PATH_SCALAR, PATH_INVALID };
enum SamplePickPath {
  PATH_UNSAMPLABLE,
  PATH_PENALTY_INF,
  PATH_GREEDY,
  PATH_TOP_K,
  PATH_SOFTMAX,
  PATH_TOP_P_LDS,
  PATH_TOP_P_GLOBAL,
  PATH_MIN_P,
  PATH_TOP_K_RANK,
  PATH_TOP_P_RANK,
  PATH_CANDIDATES_LDS,
  PATH_CANDIDATES_GLOBAL
};
enum SamplePrepPath { PATH_PENALTY, PATH_WORK, PATH_COUNTS };
enum SampleTopkPath { PATH_STOP, PATH_CHUNK_TOP_K, PATH_ALL, PATH_BOUND };

// (v, i) beats (best_v, best_i): larger value, or equal value and smaller index. NaN v never
// beats anything (both comparisons are false).
WF_DEVICE bool argmax_beats(float v, int i, float best_v, int best_i) {
  return v > best_v || (v == best_v && i < best_i);
}

// A value no sampler takes: NaN or +inf.
WF_DEVICE int argmax_bad(float v) { return (wf_isnan(v) || v == wf_inf()) ? 1 : 0; }

__device__ void argmax_kernel(const float* x, int n, int* out) {
  const int t = thread_index();
  const int none = 0x7fffffff;  // index of "no candidate yet"
  float best_v = -wf_inf();
  int best_i = none;
  int bad = 0;
  int tail = 0;
  const bool aligned = is_aligned(x, 16);
  if (aligned) {
    const int n_vec = n / 4;
    for (int k = t; k < n_vec; k += ARGMAX_BLOCK) {
      WF_PATH(0, PATH_VEC);
      float v[4];
      load_f32x4(x + 4 * k, v);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        bad |= argmax_bad(v[j]);
        if (argmax_beats(v[j], 4 * k + j, best_v, best_i)) {
          best_v = v[j];
          best_i = 4 * k + j;
        }
      }
    }
    tail = 4 * n_vec;
  }
  for (int i = tail + t; i < n; i += ARGMAX_BLOCK) {
    WF_PATH(0, aligned ? PATH_TAIL : PATH_SCALAR);
    bad |= argmax_bad(x[i]);
    if (argmax_beats(x[i], i, best_v, best_i)) {
      best_v = x[i];
      best_i = i;
    }
  }
  // wave: butterfly over (value, index) pairs and the bad flags
#pragma unroll
  for (int m = WAVE / 2; m > 0; m >>= 1) {
    const float ov = wave_shfl_xor(best_v, m);
    const int oi = wave_shfl_xor(best_i, m);
    bad |= wave_shfl_xor(bad, m);
    if (argmax_beats(ov, oi, best_v, best_i)) {
      best_v = ov;
      best_i = oi;
    }
  }
  // block: one pair and flag per wave, folded by thread 0
  __shared__ float wave_v[ARGMAX_BLOCK / WAVE];
  __shared__ int wave_i[ARGMAX_BLOCK / WAVE];
  __shared__ int wave_bad[ARGMAX_BLOCK / WAVE];
  if (wave_lane() == 0) {
    wave_v[wave_index()] = best_v;
    wave_i[wave_index()] = best_i;
    wave_bad[wave_index()] = bad;
  }
  block_sync();
  if (t == 0) {
    for (int w = 1; w < ARGMAX_BLOCK / WAVE; ++w) {
      bad |= wave_bad[w];
      if (argmax_beats(wave_v[w], wave_i[w], best_v, best_i)) {
        best_v = wave_v[w];
        best_i = wave_i[w];
      }
    }
    // every value -inf leaves best_v at -inf (n ≤ 0 leaves no candidate at all)
    const bool invalid = bad || best_i == none || best_v == -wf_inf();
    if (invalid) WF_PATH(0, PATH_INVALID);
    out[0] = invalid ? -1 : best_i;
  }
}

extern "C" __global__ void __launch_bounds__(ARGMAX_BLOCK) argmax(const float* x, int n, int* out) {
  argmax_kernel(x, n, out);
}

// ---------------------------------------------------------------------------------------------
// The sampler: sample_prep, sample_topk, sample_pick
// ---------------------------------------------------------------------------------------------

constexpr int SAMPLE_CHUNK = 2048;      // ids per block of sample_prep and sample_topk
constexpr int SAMPLE_PART_BLOCK = 256;  // their threads
constexpr int SAMPLE_PER_THREAD = SAMPLE_CHUNK / SAMPLE_PART_BLOCK;
constexpr int SAMPLE_PICK_BLOCK = 1024;
constexpr int SAMPLE_SORT_LDS = 2048;  // top-p keys sorted in shared memory up to this many
constexpr int SAMPLE_GROUPS = SAMPLE_PART_BLOCK / 32;  // 32-thread groups of a prep block
constexpr int SAMPLE_PART_WORDS = 4 + SAMPLE_GROUPS;  // i32 words per chunk in part
constexpr int SAMPLE_BOUND_MAX = 512;  // maxima a topk block ranks for its bound, at most
// sample_pick's rank sort holds n ≤ SAMPLE_PICK_BLOCK keys and them sorted in s_a
static_assert(2 * SAMPLE_PICK_BLOCK <= SAMPLE_SORT_LDS, "s_a holds the rank sort");
// part[b] flags
constexpr int SAMPLE_BAD = 1;      // a NaN or +inf in the row
constexpr int SAMPLE_ANY = 2;      // a value other than -inf in the row
constexpr int SAMPLE_POS_INF = 4;  // +inf after the penalty

// SplitMix64 as CoinRng::next_u64.
WF_DEVICE u64 sample_splitmix64(u64* state) {
  *state += 0x9E3779B97F4A7C15ull;
  u64 z = *state;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The step's coin: given (flags bit 0 clear: the f32 at word 6) or drawn from the SplitMix64
// state (CoinRng::next_u64 then coin()); *next, when given, the state after the step.
WF_DEVICE float sample_step_coin(const int* step, u64* next) {
  u64 state = (u64)(uint32_t)step[4] | ((u64)(uint32_t)step[5] << 32);
  float coin = f32_from_bits((uint32_t)step[6]);
  if ((step[3] & 1) != 0) coin = (float)(uint32_t)(sample_splitmix64(&state) >> 40) / 16777216.0f;
  if (next) *next = state;
  return coin;
}

// f32 → u32 whose unsigned order is f32::total_cmp's (−0 below +0; no NaN reaches it).
WF_DEVICE uint32_t sample_key(float f) {
  const uint32_t u = f32_bits(f);
  return (u >> 31) ? ~u : (u | 0x80000000u);
}
WF_DEVICE float sample_unkey(uint32_t k) {
  return f32_from_bits((k >> 31) ? (k & 0x7fffffffu) : ~k);
}

// The first id of the window of the context hist[0 ..= pos] the penalty looks at, and its last.
WF_DEVICE void sample_window(int pos, int hist_cap, int window, int* lo, int* hi) {
  *hi = pos < hist_cap - 1 ? pos : hist_cap - 1;
  *lo = (window > 0 && pos + 1 - window > 0) ? pos + 1 - window : 0;
}

// Exclusive prefix sum of v over the block's threads (in thread order); *total = the sum. Each
// wave scans by butterflies (after the exchange at mask m, `sum` is the total of the lane's
// aligned group of 2m lanes and `pre` the part of it below the lane), then every thread adds
// the totals of the waves before its own: two barriers, whatever the block size.
template <int BLOCK>
WF_DEVICE int sample_block_scan(int v, int* total) {
  WF_SHARED int s_wave[BLOCK / WAVE];
  const int lane = wave_lane(), w = wave_index();
  int sum = v, pre = 0;
#pragma unroll
  for (int m = 1; m < WAVE; m <<= 1) {
    const int o = wave_shfl_xor(sum, m);
    if (lane & m) pre += o;
    sum += o;
  }
  if (lane == 0) s_wave[w] = sum;
  block_sync();
  int before = 0, all = 0;
  // not unrolled: unrolled, its LDS reads take scalar registers that wave64 targets spill
#pragma unroll 1
  for (int i = 0; i < BLOCK / WAVE; ++i) {
    const int x = s_wave[i];
    before += i < w ? x : 0;
    all += x;
  }
  *total = all;
  block_sync();  // s_wave may be reused by the next call
  return before + pre;
}

// The k-th largest of x[0, n) (1 ≤ k ≤ n ≤ BLOCK · per) by ranks: each thread counts, for its
// elements, those of x greater and those greater or equal; the value with greater < k ≤ greater
// or equal is the k-th largest (every thread holding it writes the same value). x is in shared
// memory; n · n comparisons in all, for the small sets where a radix select's sixteen barriers
// cost more. `out` is the caller's shared word. Every thread gets the value.
template <int BLOCK>
WF_DEVICE float sample_kth_by_rank(const float* x, int n, int k, float* out) {
  for (int i = thread_index(); i < n; i += BLOCK) {
    const float v = x[i];
    int gt = 0, ge = 0;
    for (int j = 0; j < n; ++j) {
      gt += x[j] > v ? 1 : 0;
      ge += x[j] >= v ? 1 : 0;
    }
    if (gt < k && k <= ge) *out = v;
  }
  block_sync();
  const float r = *out;
  block_sync();  // *out may be reused
  return r;
}

// The k-th largest of x[0, n) (1 ≤ k ≤ n) in total order: four 8-bit digits of sample_key,
// most significant first, each chosen by a histogram of the elements matching the digits so far.
// The histogram has SAMPLE_HIST_COPIES copies, thread t counting into copy t mod 32, so the lanes
// of one wave never add to the same shared word (logits crowd into a few digits: one shared
// counter per digit serialises every wave's atomics 32 ways). A copy holds 16-bit counts, two
// per word (digit d in half d & 1 of word d / 2); a copy counts at most
// (BLOCK / 32) · ceil(n / BLOCK) elements, below 2^16 for n ≤ 2,000,000 at BLOCK = 1024 (the
// host refuses larger vocabularies: SAMPLE_MAX_VOCAB in engine/src/backend/gpu/ops/sampling.rs).
// The digit: the largest d whose count of matching elements with a digit ≥ d reaches k, found
// by every digit at once (a suffix sum by a block scan, digit 255 − t at thread t).
// `words` is the caller's shared memory for the copies: SAMPLE_HIST_WORDS u32.
constexpr int SAMPLE_HIST_COPIES = 32;
constexpr int SAMPLE_HIST_WORDS = SAMPLE_HIST_COPIES * 128;  // 16 KiB
template <int BLOCK>
WF_DEVICE float sample_kth_largest(const float* x, int n, int k, uint32_t* words) {
  WF_SHARED uint32_t s_prefix;
  WF_SHARED int s_k;
  const int t = thread_index();
  uint32_t* mine = words + (t & (SAMPLE_HIST_COPIES - 1)) * 128;
  uint32_t prefix = 0, mask = 0;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int w = t; w < SAMPLE_HIST_COPIES * 128; w += BLOCK) words[w] = 0;
    block_sync();
    for (int i = t; i < n; i += BLOCK) {
      const uint32_t key = sample_key(x[i]);
      if ((key & mask) == prefix) {
        const uint32_t d = (key >> shift) & 255u;
        wf_atomic_add((int*)&mine[d >> 1], 1 << ((d & 1u) * 16));
      }
    }
    block_sync();
    const int d = 255 - t;  // this thread's digit (threads past 255: none)
    int count = 0;
    if (t < 256) {
      for (int c = 0; c < SAMPLE_HIST_COPIES; ++c) {
        count += (words[c * 128 + (d >> 1)] >> ((d & 1) * 16)) & 0xffffu;
      }
    }
    int total;
    const int above = sample_block_scan<BLOCK>(count, &total);  // matching, digit > d
    if (t < 256 && above < k && k <= above + count) {
      s_prefix = prefix | ((uint32_t)d << shift);
      s_k = k - above;
    }
    block_sync();
    prefix = s_prefix;
    k = s_k;
    mask |= 255u << shift;
    block_sync();  // s_prefix, s_k read before the next digit writes them
  }
  return sample_unkey(prefix);
}

// Ascending bitonic sort of keys[0, n), n a power of two; every thread takes part.
WF_DEVICE void sample_bitonic_sort(u64* keys, int n) {
  const int t = thread_index();
  for (int size = 2; size <= n; size <<= 1) {
    for (int j = size >> 1; j > 0; j >>= 1) {
      for (int i = t; i < n; i += SAMPLE_PICK_BLOCK) {
        const int l = i ^ j;
        if (l > i) {
          const u64 a = keys[i], b = keys[l];
          const bool up = (i & size) == 0;
          if ((a > b) == up) {
            keys[i] = b;
            keys[l] = a;
          }
        }
      }
      block_sync();
    }
  }
}

// The (value, id) pair that wins over the block (argmax_beats), and the flags OR-ed; every
// thread gets the result.
template <int BLOCK>
WF_DEVICE void sample_block_best(float* v, int* i, int* flags) {
  float best_v = *v;
  int best_i = *i, f = *flags;
#pragma unroll
  for (int m = WAVE / 2; m > 0; m >>= 1) {
    const float ov = wave_shfl_xor(best_v, m);
    const int oi = wave_shfl_xor(best_i, m);
    f |= wave_shfl_xor(f, m);
    if (argmax_beats(ov, oi, best_v, best_i)) {
      best_v = ov;
      best_i = oi;
    }
  }
  WF_SHARED float wave_v[BLOCK / WAVE];
  WF_SHARED int wave_i[BLOCK / WAVE];
  WF_SHARED int wave_f[BLOCK / WAVE];
  if (wave_lane() == 0) {
    wave_v[wave_index()] = best_v;
    wave_i[wave_index()] = best_i;
    wave_f[wave_index()] = f;
  }
  block_sync();
  best_v = wave_v[0];
  best_i = wave_i[0];
  f = wave_f[0];
  for (int w = 1; w < BLOCK / WAVE; ++w) {
    f |= wave_f[w];
    if (argmax_beats(wave_v[w], wave_i[w], best_v, best_i)) {
      best_v = wave_v[w];
      best_i = wave_i[w];
    }
  }
  block_sync();  // the partials may be reused
  *v = best_v;
  *i = best_i;
  *flags = f;
}

// The row's argmax and flags from the G chunks' parts; every thread gets them.
template <int BLOCK>
WF_DEVICE void sample_fold_parts(const int* part, int n_parts, float* best_v, int* best_i,
                                 int* flags) {
  float v = -wf_inf();
  int i = 0x7fffffff, f = 0;
  for (int b = thread_index(); b < n_parts; b += BLOCK) {
    const int* p = part + (i64)b * SAMPLE_PART_WORDS;
    f |= p[2];
    if (argmax_beats(f32_from_bits((uint32_t)p[0]), p[1], v, i)) {
      v = f32_from_bits((uint32_t)p[0]);
      i = p[1];
    }
  }
  sample_block_best<BLOCK>(&v, &i, &f);
  *best_v = v;
  *best_i = i;
  *flags = f;
}

extern "C" __global__ void __launch_bounds__(SAMPLE_PART_BLOCK)
    sample_prep(const float* logits, int vocab, const int* step, const int* hist, int hist_cap,
                int window, float repeat_penalty, float presence_penalty,
                float frequency_penalty, int write_work, float* work, int* part) {
  WF_SHARED int count[SAMPLE_CHUNK];
  const int t = thread_index(), b = block_index_x();
  const int begin = b * SAMPLE_CHUNK;
  const int n = vocab - begin < SAMPLE_CHUNK ? vocab - begin : SAMPLE_CHUNK;
  // the chunk's logits loaded first: in flight while the history is counted
  float raw[SAMPLE_PER_THREAD];
#pragma unroll
  for (int u = 0; u < SAMPLE_PER_THREAD; ++u) {
    const int j = t + u * SAMPLE_PART_BLOCK;
    raw[u] = j < n ? logits[begin + j] : -wf_inf();
  }
  for (int j = t; j < SAMPLE_CHUNK; j += SAMPLE_PART_BLOCK) count[j] = 0;
  block_sync();
  // 1. the window's ids in this chunk, counted
  int lo, hi;
  sample_window(step[1], hist_cap, window, &lo, &hi);
  const bool counts = presence_penalty != 0.0f || frequency_penalty != 0.0f;
  const bool penalise = (repeat_penalty != 1.0f || counts) && lo <= hi;
  if (penalise) {
    if (b == 0 && t == 0) WF_PATH(2, PATH_PENALTY);
    if (b == 0 && t == 0 && counts) WF_PATH(2, PATH_COUNTS);
    for (int j = lo + t; j <= hi; j += SAMPLE_PART_BLOCK) {
      const uint32_t at = (uint32_t)(hist[j] - begin);  // ids below begin wrap past n
      if (hist[j] >= 0 && at < (uint32_t)n) wf_atomic_add(&count[at], 1);
    }
  }
  block_sync();
  // 2. checks, penalty, argmax; the penalised row
  if (write_work && b == 0 && t == 0) WF_PATH(2, PATH_WORK);
  float best_v = -wf_inf();
  int best_i = 0x7fffffff, flags = 0;
  float group_max = -wf_inf();  // of this thread's ids, then of its 32-thread group's
#pragma unroll
  for (int u = 0; u < SAMPLE_PER_THREAD; ++u) {
    const int j = t + u * SAMPLE_PART_BLOCK;
    if (j >= n) continue;
    float v = raw[u];
    flags |= argmax_bad(v) ? SAMPLE_BAD : 0;
    flags |= v != -wf_inf() ? SAMPLE_ANY : 0;
    const int c = penalise ? count[j] : 0;
    if (c > 0) {
      v = v < 0.0f ? v * repeat_penalty : v / repeat_penalty;  // × or ÷ 1 when off: exact
      if (counts) v = __fsub_rn(v, __fadd_rn(__fmul_rn((float)c, frequency_penalty), presence_penalty));
    }
    flags |= v == wf_inf() ? SAMPLE_POS_INF : 0;
    if (argmax_beats(v, begin + j, best_v, best_i)) {
      best_v = v;
      best_i = begin + j;
    }
    group_max = v > group_max ? v : group_max;
    if (write_work) work[begin + j] = v;
  }
  // the maxima of the 32-thread groups (lanes of one group differ in bits 0-4 only, whatever
  // the wave size): sample_topk's lower bound of the k-th largest
#pragma unroll
  for (int m = 16; m > 0; m >>= 1) {
    const float o = wave_shfl_xor(group_max, m);
    group_max = o > group_max ? o : group_max;
  }
  int* p = part + (i64)b * SAMPLE_PART_WORDS;
  if ((t & 31) == 0) p[4 + (t >> 5)] = (int)f32_bits(group_max);
  sample_block_best<SAMPLE_PART_BLOCK>(&best_v, &best_i, &flags);
  if (t == 0) {
    p[0] = (int)f32_bits(best_v);
    p[1] = best_i;
    p[2] = flags;
    p[3] = 0;
  }
}

extern "C" __global__ void __launch_bounds__(SAMPLE_PART_BLOCK)
    sample_topk(int vocab, float temperature, int top_k, const float* work, int* part,
                int n_parts, int* stage_id, float* stage_p) {
  WF_SHARED float xs[SAMPLE_CHUNK];
  WF_SHARED uint32_t hist_words[SAMPLE_HIST_WORDS];
  WF_SHARED float bound_vals[SAMPLE_BOUND_MAX];
  WF_SHARED float s_bound;
  const int t = thread_index(), b = block_index_x();
  const int begin = b * SAMPLE_CHUNK;
  const int n = vocab - begin < SAMPLE_CHUNK ? vocab - begin : SAMPLE_CHUNK;
  // 4. (its maxima) a lower bound of the row's k-th largest: the k-th largest of the chunks'
  //    maxima, or of their 32-thread groups' maxima (the maxima of disjoint sets of ids: at
  //    least k ids of the row are ≥ it), ranked in shared memory when there are few enough
  const bool top_k_on = top_k > 0 && top_k < vocab;
  int m = 0;
  bool groups = false;
  if (top_k_on && top_k <= n_parts && n_parts <= SAMPLE_BOUND_MAX) {
    m = n_parts;
  } else if (top_k_on && top_k <= n_parts * SAMPLE_GROUPS &&
             n_parts * SAMPLE_GROUPS <= SAMPLE_BOUND_MAX) {
    m = n_parts * SAMPLE_GROUPS;
    groups = true;
  }
  // The maxima and the chunk's penalised logits are loaded before the fold, their reads in
  // flight with its own (the fold's barriers publish bound_vals).
  for (int i = t; i < m; i += SAMPLE_PART_BLOCK) {
    const int w = groups ? (i / SAMPLE_GROUPS) * SAMPLE_PART_WORDS + 4 + i % SAMPLE_GROUPS
                         : i * SAMPLE_PART_WORDS;
    bound_vals[i] = f32_from_bits((uint32_t)part[w]);
  }
  float l[SAMPLE_PER_THREAD];
#pragma unroll
  for (int u = 0; u < SAMPLE_PER_THREAD; ++u) {
    const int j = t + u * SAMPLE_PART_BLOCK;
    l[u] = j < n ? work[begin + j] : 0.0f;
  }
  float best_v;
  int best_i, flags;
  sample_fold_parts<SAMPLE_PART_BLOCK>(part, n_parts, &best_v, &best_i, &flags);
  const bool fail = (flags & (SAMPLE_BAD | SAMPLE_POS_INF)) != 0 || (flags & SAMPLE_ANY) == 0;
  if (fail || temperature <= 0.0f || best_v == -wf_inf()) {
    if (b == 0 && t == 0) WF_PATH(3, PATH_STOP);
    return;  // block-uniform; sample_pick reads no candidate count of such a step
  }
  // 3. scaled logits
#pragma unroll
  for (int u = 0; u < SAMPLE_PER_THREAD; ++u) {
    const int j = t + u * SAMPLE_PART_BLOCK;
    if (j < n) xs[j] = (l[u] - best_v) / temperature;
  }
  block_sync();
  float thr = -wf_inf();  // scaled: candidates are ≥ it and not -inf
  if (m > 0) {
    const float bound = sample_kth_by_rank<SAMPLE_PART_BLOCK>(bound_vals, m, top_k, &s_bound);
    // scaled as the chunk's logits are: (l − M) / T is nondecreasing in l, so an id whose
    // scaled logit reaches the k-th largest scaled logit reaches this too
    thr = (bound - best_v) / temperature;
  }
  //    then this chunk's candidates, ≥ the bound; more than k of them: this chunk's own k-th
  //    largest (a radix select), also a lower bound (a chunk is a subset of the row)
  const int j0 = t * SAMPLE_PER_THREAD;  // thread t owns ids [j0, j0 + SAMPLE_PER_THREAD)
  int count = 0;
#pragma unroll
  for (int u = 0; u < SAMPLE_PER_THREAD; ++u) {
    const int j = j0 + u;
    count += (j < n && xs[j] >= thr && xs[j] != -wf_inf()) ? 1 : 0;
  }
  int total;
  int at = begin + sample_block_scan<SAMPLE_PART_BLOCK>(count, &total);
  if (top_k_on && total > top_k) {
    if (t == 0) WF_PATH(3, PATH_CHUNK_TOP_K);
    const float kth = sample_kth_largest<SAMPLE_PART_BLOCK>(xs, n, top_k, hist_words);
    thr = kth > thr ? kth : thr;
    count = 0;
#pragma unroll
    for (int u = 0; u < SAMPLE_PER_THREAD; ++u) {
      const int j = j0 + u;
      count += (j < n && xs[j] >= thr && xs[j] != -wf_inf()) ? 1 : 0;
    }
    at = begin + sample_block_scan<SAMPLE_PART_BLOCK>(count, &total);
  } else if (t == 0) {
    WF_PATH(3, m > 0 ? PATH_BOUND : PATH_ALL);
  }
#pragma unroll
  for (int u = 0; u < SAMPLE_PER_THREAD; ++u) {
    const int j = j0 + u;
    if (j < n && xs[j] >= thr && xs[j] != -wf_inf()) {
      stage_id[at] = begin + j;
      stage_p[at] = xs[j];
      ++at;
    }
  }
  if (t == 0) part[(i64)b * SAMPLE_PART_WORDS + 3] = total;
}

// Keeps src[0, n) with value ≥ kth, compacted in order into (dst_id, dst_p); returns the count
// (every thread). Thread t owns a contiguous range, a block scan gives its offset.
WF_DEVICE int sample_compact(const int* src_id, const float* src_p, int n, float kth, int* dst_id,
                             float* dst_p) {
  const int t = thread_index();
  const int per = (n + SAMPLE_PICK_BLOCK - 1) / SAMPLE_PICK_BLOCK;
  const int begin = t * per < n ? t * per : n;
  const int end = begin + per < n ? begin + per : n;
  int count = 0;
  for (int i = begin; i < end; ++i) count += src_p[i] >= kth ? 1 : 0;
  int total;
  int at = sample_block_scan<SAMPLE_PICK_BLOCK>(count, &total);
  for (int i = begin; i < end; ++i) {
    if (src_p[i] >= kth) {
      dst_id[at] = src_id[i];
      dst_p[at] = src_p[i];
      ++at;
    }
  }
  block_sync();
  return total;
}

extern "C" __global__ void __launch_bounds__(SAMPLE_PICK_BLOCK)
    sample_pick(int* step, int* hist, int hist_cap, float temperature, int top_k,
                float top_p, float min_p, const int* part, int n_parts, const int* stage_id,
                const float* stage_p, int* tmp_id, float* tmp_p, int* cand_id, float* cand_p,
                u64* keys) {
  WF_SHARED int s_token;
  WF_SHARED float s_sum, s_threshold;
  // Two 16 KiB regions, each reused: A holds the chunks' offsets during the gather, the radix
  // histogram copies, then the top-p keys; B the gathered candidates (ids, p) when there are at
  // most SAMPLE_PICK_BLOCK, then the kept candidates when they fit.
  WF_SHARED u64 s_a[SAMPLE_SORT_LDS];
  WF_SHARED u64 s_b[SAMPLE_SORT_LDS];
  int* s_off = (int*)s_a;  // the chunks' offsets, before any use of s_a below
  int* s_id = (int*)s_b;
  float* s_p = (float*)s_b + SAMPLE_SORT_LDS;
  const int t = thread_index();
  // The step block, read by every thread here for the coin; thread 0 reads it again and
  // rewrites it after the last barrier (the position and the state are not held in
  // registers across the kernel: wave64 targets would spill scalar registers).
  const float coin = sample_step_coin(step, nullptr);
  // 5. the decisions
  float best_v;
  int best_i, flags;
  sample_fold_parts<SAMPLE_PICK_BLOCK>(part, n_parts, &best_v, &best_i, &flags);
  bool fail = (flags & SAMPLE_BAD) != 0 || (flags & SAMPLE_ANY) == 0 ||
              !(coin >= 0.0f && coin < 1.0f);
  if (fail && t == 0) WF_PATH(1, PATH_UNSAMPLABLE);
  if (!fail && (flags & SAMPLE_POS_INF) != 0) {
    fail = true;
    if (t == 0) WF_PATH(1, PATH_PENALTY_INF);
  }
  const bool greedy = !fail && (temperature <= 0.0f || best_v == -wf_inf());
  if (greedy && t == 0) {
    WF_PATH(1, PATH_GREEDY);
    s_token = best_i;
  }
  if (!fail && !greedy) {
    if (t == 0) WF_PATH(1, PATH_SOFTMAX);
    // 6. the candidates in id order (chunk order is id order)
    const int c = t < n_parts ? part[(i64)t * SAMPLE_PART_WORDS + 3] : 0;
    int n_c;
    const int off = sample_block_scan<SAMPLE_PICK_BLOCK>(c, &n_c);
    s_off[t] = off;
    block_sync();
    // At most one a thread (the chunks' bound keeps real logits there): gathered, ranked and
    // compacted in shared memory, each thread holding its candidate in registers; else through
    // the workspace (tmp, then cand).
    const bool small = n_c <= SAMPLE_PICK_BLOCK;
    if (t == 0) WF_PATH(1, small ? PATH_CANDIDATES_LDS : PATH_CANDIDATES_GLOBAL);
    int* g_id = small ? s_id : tmp_id;
    float* g_p = small ? s_p : tmp_p;
    // wave w gathers chunks w, w + waves, … (their counts read in parallel)
    constexpr int NW = SAMPLE_PICK_BLOCK / WAVE;
    for (int b = wave_index(); b < n_parts; b += NW) {
      const int cb = part[(i64)b * SAMPLE_PART_WORDS + 3];
      for (int j = wave_lane(); j < cb; j += WAVE) {
        g_id[s_off[b] + j] = stage_id[(i64)b * SAMPLE_CHUNK + j];
        g_p[s_off[b] + j] = stage_p[(i64)b * SAMPLE_CHUNK + j];
      }
    }
    block_sync();
    float kth = -wf_inf();
    int n;
    if (small) {
      if (top_k > 0 && n_c > top_k) {
        if (t == 0) WF_PATH(1, PATH_TOP_K_RANK);
        kth = sample_kth_by_rank<SAMPLE_PICK_BLOCK>(s_p, n_c, top_k, &s_threshold);
      }
      const int my_id = t < n_c ? s_id[t] : 0;
      const float my_p = t < n_c ? s_p[t] : -wf_inf();
      const bool keep = t < n_c && my_p >= kth;
      const int at = sample_block_scan<SAMPLE_PICK_BLOCK>(keep ? 1 : 0, &n);  // synchronises
      if (keep) {
        s_id[at] = my_id;
        s_p[at] = wf_sampler_exp(my_p);
      }
    } else {
      if (top_k > 0 && n_c > top_k) {
        if (t == 0) WF_PATH(1, PATH_TOP_K);
        kth = sample_kth_largest<SAMPLE_PICK_BLOCK>(tmp_p, n_c, top_k, (uint32_t*)s_a);
      }
      n = sample_compact(tmp_id, tmp_p, n_c, kth, cand_id, cand_p);
    }
    // The serial steps below read the candidates from shared memory when they fit.
    const bool fits = n <= SAMPLE_SORT_LDS;
    int* ids = fits ? s_id : cand_id;
    float* ps = fits ? s_p : cand_p;
    if (!small) {
      for (int j = t; j < n; j += SAMPLE_PICK_BLOCK) {
        const float e = wf_sampler_exp(cand_p[j]);
        if (fits) ids[j] = cand_id[j];
        ps[j] = e;
      }
    }
    block_sync();
    if (t == 0) {
      float sum = 0.0f;
      for (int j = 0; j < n; ++j) sum += ps[j];
      s_sum = sum;
    }
    block_sync();
    for (int j = t; j < n; j += SAMPLE_PICK_BLOCK) ps[j] = ps[j] / s_sum;
    block_sync();
    // 7. top-p
    if (top_p < 1.0f) {
      int n2 = 1;
      while (n2 < n) n2 <<= 1;
      const bool rank = n <= SAMPLE_PICK_BLOCK;
      const bool lds = n2 <= SAMPLE_SORT_LDS;
      if (t == 0) WF_PATH(1, rank ? PATH_TOP_P_RANK : lds ? PATH_TOP_P_LDS : PATH_TOP_P_GLOBAL);
      u64* k = rank ? s_a + SAMPLE_PICK_BLOCK : lds ? s_a : keys;
      if (rank) {
        // one key a thread, placed at its rank (the keys are distinct: the position is in
        // them), s_a[0, n) the keys and s_a[SAMPLE_PICK_BLOCK, + n) them sorted
        u64 key = 0;
        if (t < n) {
          key = ((u64)(~f32_bits(ps[t])) << 32) | (u64)(uint32_t)t;
          s_a[t] = key;
        }
        block_sync();
        if (t < n) {
          int r = 0;
          for (int j = 0; j < n; ++j) r += s_a[j] < key ? 1 : 0;
          k[r] = key;
        }
        block_sync();
      } else {
        for (int j = t; j < n2; j += SAMPLE_PICK_BLOCK) {
          k[j] = j < n ? ((u64)(~f32_bits(ps[j])) << 32) | (u64)(uint32_t)j : ~0ull;
        }
        block_sync();
        sample_bitonic_sort(k, n2);
      }
      if (t == 0) {
        float above = 0.0f;  // the mass ranked above, dropped tokens included
        for (int r = 0; r < n; ++r) {
          const int j = (int)(uint32_t)(k[r] & 0xffffffffull);
          const float p = ps[j];
          if (r > 0 && above >= top_p) ps[j] = 0.0f;
          above += p;
        }
      }
      block_sync();
    }
    // 8. min-p
    if (min_p > 0.0f) {
      if (t == 0) {
        WF_PATH(1, PATH_MIN_P);
        float p_max = 0.0f;
        for (int j = 0; j < n; ++j) p_max = ps[j] > p_max ? ps[j] : p_max;
        s_threshold = min_p * p_max;
      }
      block_sync();
      for (int j = t; j < n; j += SAMPLE_PICK_BLOCK) {
        if (ps[j] < s_threshold) ps[j] = 0.0f;
      }
      block_sync();
    }
    // 9. renormalise and draw, serially in id order
    if (t == 0) {
      float total = 0.0f;
      for (int j = 0; j < n; ++j) total += ps[j];
      float total2 = 0.0f;
      int last = 0;  // the last candidate with dist > 0 (the top token always has)
      for (int j = 0; j < n; ++j) {
        const float d = ps[j] / total;
        ps[j] = d;
        total2 += d;
        if (d > 0.0f) last = j;
      }
      const float r = coin * total2;
      float acc = 0.0f;
      int pick = last;  // reached only by rounding
      for (int j = 0; j < n; ++j) {
        acc += ps[j];
        if (r < acc) {
          pick = j;
          break;
        }
      }
      s_token = ids[pick];
    }
  }
  block_sync();
  if (t == 0) {
    u64 state;
    sample_step_coin(step, &state);
    const int pos = step[1];
    const int token = fail ? -1 : s_token;
    step[0] = token;
    if (!fail) {
      if (pos + 1 >= 0 && pos + 1 < hist_cap) hist[pos + 1] = token;
      step[1] = pos + 1;
    }
    step[2] = (int)((uint32_t)step[2] + 1u);
    step[4] = (int)(uint32_t)state;
    step[5] = (int)(uint32_t)(state >> 32);
  }
}
