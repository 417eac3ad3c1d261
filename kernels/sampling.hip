// Sampling on the device: greedy argmax (only the id crosses to the host), and the whole
// sampler in one block (sample_step), bit for bit the reference's `distribution` + `pick`.
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
// sample_step: one decode step's token from one logits row, the repetition penalty taken over
//   the device-side history, the coin given or drawn from a device-side SplitMix64 state.
//   Shapes: logits (vocab) f32; step: the 32-byte step block, int32 words
//     0 token (written: the id, or -1 when the row cannot be sampled),
//     1 pos (the context is hist[0 ..= pos], -1 = empty; on success hist[pos + 1] = token when
//       pos + 1 < hist_cap, and pos += 1; unchanged on failure),
//     2 calls (incremented every call; the stamp that de-duplicates history ids in marks),
//     3 flags (bit 0: the coin is drawn from the SplitMix64 state, advanced once per call as
//       CoinRng::next_u64 then coin(); clear: the coin is the f32 at byte 24),
//     4-5 the SplitMix64 state (u64, little-endian), 6 the coin (f32), 7 reserved;
//   hist (hist_cap) i32 ids; the workspace, for this vocab: work (vocab) f32, marks (vocab) i32
//   zeroed once at creation (and left zeroed by every call), cand_id (vocab) i32, cand_p
//   (vocab) f32, keys (next power of two ≥ vocab) u64.
//   Launch: grid (1); block SAMPLE_BLOCK = 1024; no dynamic shared memory (static ≤ 42 KiB).
//   Contract (the host's): vocab ≥ 1, the workspace sized for ≥ vocab; temperature finite;
//   top_k in [0, vocab) (0 = off); top_p in (0, 1] (≥ 1 = off); min_p in [0, 1] (0 = off);
//   repeat_penalty finite > 0 (1 = off); window ≥ 0 (0 = the whole context).
//   Steps (the reference's; float operations in its order, so the ids agree exactly):
//   1. the row is copied to work; a NaN or +inf, every value -inf, or a coin outside [0, 1):
//      token -1;
//   2. repetition penalty over the distinct ids of hist[max(0, pos + 1 - window) ..= pos] (ids
//      ≥ vocab ignored): the thread whose atomic exchange of the call's stamp into marks[id]
//      finds another value penalises; marks are reset after a barrier. A +inf after it: -1;
//   3. the argmax (lowest id on ties); greedy (temperature ≤ 0), or every value -inf after
//      the penalty (the reference's NaN-filled distribution then draws id 0, the argmax): the
//      token is the argmax;
//   4. scaled = (l - max) / temperature in work; top-k: the k-th largest scaled value by a
//      radix select (4 passes of 8 bits over a key in f32 total order), kept: scaled ≥ it;
//   5. candidates (kept, not -inf: a -inf has probability exactly 0 and adds +0 to every sum)
//      compacted in ascending id order (thread t owns a contiguous id range; a block scan
//      gives its offset) into cand_id / cand_p; e = wf_sampler_exp(scaled) (the reference's
//      softmax subtracts the kept maximum, +0: v - 0 = v); sum serial in id order by thread 0;
//      p = e / sum;
//   6. top-p (< 1): keys (~bits(p) << 32 | position) sorted ascending (bitonic; in shared
//      memory up to SAMPLE_SORT_LDS keys, else in keys): p descending, id ascending; thread 0
//      walks them, zeroing p of each token of rank > 0 whose mass ranked above is ≥ top_p;
//   7. min-p (> 0): threshold = min_p · (max of p, folded from 0); p < threshold zeroed;
//   8. thread 0: total = Σ p (id order), dist = p / total, total2 = Σ dist, r = coin · total2;
//      the first candidate with r < the running Σ dist, else the last with dist > 0.
//   Indexing: element loops are strided by 1024 (thread t: t, t + 1024, …) except step 5's
//   contiguous ranges; the serial sums and walks run on thread 0 over the candidates (k of
//   top-k plus ties; the whole vocabulary when top-k is off).
// Paths (WF_PATH, slot 1):
//   unsamplable: a NaN, +inf, all -inf, or a bad coin: token -1
//   penalty:     the repetition penalty over a non-empty window
//   penalty_inf: +inf after the penalty: token -1
//   greedy:      temperature ≤ 0 (or all -inf after the penalty): the argmax
//   top_k:       the radix select of the k-th largest scaled logit
//   softmax:     a sampled step: candidates, softmax, the draw
//   top_p_lds:   top-p with its sort in shared memory
//   top_p_global: top-p with its sort in the keys workspace
//   min_p:       the min-p filter

#include "common.h"

constexpr int ARGMAX_BLOCK = 1024;
enum SamplingPath { PATH_VEC, PATH_TAIL, PATH_SCALAR, PATH_INVALID };
enum SampleStepPath {
  PATH_UNSAMPLABLE,
  PATH_PENALTY,
  PATH_PENALTY_INF,
  PATH_GREEDY,
  PATH_TOP_K,
  PATH_SOFTMAX,
  PATH_TOP_P_LDS,
  PATH_TOP_P_GLOBAL,
  PATH_MIN_P
};

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
// sample_step
// ---------------------------------------------------------------------------------------------

constexpr int SAMPLE_BLOCK = 1024;
constexpr int SAMPLE_SORT_LDS = 2048;  // top-p keys sorted in shared memory up to this many

// SplitMix64 as CoinRng::next_u64.
WF_DEVICE u64 sample_splitmix64(u64* state) {
  *state += 0x9E3779B97F4A7C15ull;
  u64 z = *state;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// f32 → u32 whose unsigned order is f32::total_cmp's (−0 below +0; no NaN reaches it).
WF_DEVICE uint32_t sample_key(float f) {
  const uint32_t u = f32_bits(f);
  return (u >> 31) ? ~u : (u | 0x80000000u);
}
WF_DEVICE float sample_unkey(uint32_t k) {
  return f32_from_bits((k >> 31) ? (k & 0x7fffffffu) : ~k);
}

// The block's (max, lowest index of it) over x[0, n), and whether any x is +inf; every thread
// gets the result. x holds no NaN (refused before).
WF_DEVICE void sample_block_argmax(const float* x, int n, float* best_v_out, int* best_i_out,
                                   int* pos_inf_out) {
  const int t = thread_index();
  float best_v = -wf_inf();
  int best_i = 0x7fffffff;
  int pos_inf = 0;
  for (int i = t; i < n; i += SAMPLE_BLOCK) {
    const float v = x[i];
    pos_inf |= v == wf_inf() ? 1 : 0;
    if (argmax_beats(v, i, best_v, best_i)) {
      best_v = v;
      best_i = i;
    }
  }
#pragma unroll
  for (int m = WAVE / 2; m > 0; m >>= 1) {
    const float ov = wave_shfl_xor(best_v, m);
    const int oi = wave_shfl_xor(best_i, m);
    pos_inf |= wave_shfl_xor(pos_inf, m);
    if (argmax_beats(ov, oi, best_v, best_i)) {
      best_v = ov;
      best_i = oi;
    }
  }
  __shared__ float wave_v[SAMPLE_BLOCK / WAVE];
  __shared__ int wave_i[SAMPLE_BLOCK / WAVE];
  __shared__ int wave_inf[SAMPLE_BLOCK / WAVE];
  if (wave_lane() == 0) {
    wave_v[wave_index()] = best_v;
    wave_i[wave_index()] = best_i;
    wave_inf[wave_index()] = pos_inf;
  }
  block_sync();
  best_v = wave_v[0];
  best_i = wave_i[0];
  pos_inf = wave_inf[0];
  for (int w = 1; w < SAMPLE_BLOCK / WAVE; ++w) {
    pos_inf |= wave_inf[w];
    if (argmax_beats(wave_v[w], wave_i[w], best_v, best_i)) {
      best_v = wave_v[w];
      best_i = wave_i[w];
    }
  }
  block_sync();  // the partials may be reused
  *best_v_out = best_v;
  *best_i_out = best_i;
  *pos_inf_out = pos_inf;
}

// Exclusive prefix sum of v over the block's threads (in thread order); *total = the sum.
WF_DEVICE int sample_block_scan(int v, int* total) {
  __shared__ int s[SAMPLE_BLOCK];
  const int t = thread_index();
  s[t] = v;
  block_sync();
  for (int off = 1; off < SAMPLE_BLOCK; off <<= 1) {
    const int x = t >= off ? s[t - off] : 0;
    block_sync();
    s[t] += x;
    block_sync();
  }
  const int inclusive = s[t];
  *total = s[SAMPLE_BLOCK - 1];
  block_sync();
  return inclusive - v;
}

// The k-th largest of x[0, n) (1 ≤ k ≤ n) in total order: four 8-bit digits of sample_key,
// most significant first, each chosen by a histogram of the elements matching the digits so far.
// The histogram has SAMPLE_HIST_COPIES copies, thread t counting into copy t mod 32, so the lanes
// of one wave never add to the same shared word (logits crowd into a few digits: one shared
// counter per digit serialises every wave's atomics 32 ways). A copy holds 16-bit counts, two
// per word (digit d in half d & 1 of word d / 2); a copy counts at most
// (SAMPLE_BLOCK / 32) · ceil(n / SAMPLE_BLOCK) elements, below 2^16 for n ≤ 2,000,000 (the
// host refuses larger vocabularies: SAMPLE_MAX_VOCAB in engine/src/backend/gpu/ops/sampling.rs).
constexpr int SAMPLE_HIST_COPIES = 32;
WF_DEVICE float sample_kth_largest(const float* x, int n, int k) {
  __shared__ uint32_t copies[SAMPLE_HIST_COPIES][128];
  __shared__ int hist[256];
  __shared__ uint32_t s_prefix;
  __shared__ int s_k;
  const int t = thread_index();
  uint32_t* words = &copies[0][0];
  uint32_t* mine = copies[t & (SAMPLE_HIST_COPIES - 1)];
  uint32_t prefix = 0, mask = 0;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int w = t; w < SAMPLE_HIST_COPIES * 128; w += SAMPLE_BLOCK) words[w] = 0;
    block_sync();
    for (int i = t; i < n; i += SAMPLE_BLOCK) {
      const uint32_t key = sample_key(x[i]);
      if ((key & mask) == prefix) {
        const uint32_t d = (key >> shift) & 255u;
        wf_atomic_add((int*)&mine[d >> 1], 1 << ((d & 1u) * 16));
      }
    }
    block_sync();
    for (int d = t; d < 256; d += SAMPLE_BLOCK) {
      int sum = 0;
      for (int c = 0; c < SAMPLE_HIST_COPIES; ++c) sum += (copies[c][d >> 1] >> ((d & 1) * 16)) & 0xffffu;
      hist[d] = sum;
    }
    block_sync();
    if (t == 0) {
      int above = 0;  // elements matching the prefix with a larger digit
      int d = 255;
      for (; d > 0; --d) {
        if (above + hist[d] >= k) break;
        above += hist[d];
      }
      s_prefix = prefix | ((uint32_t)d << shift);
      s_k = k - above;
    }
    block_sync();
    prefix = s_prefix;
    k = s_k;
    mask |= 255u << shift;
  }
  return sample_unkey(prefix);
}

// Ascending bitonic sort of keys[0, n), n a power of two; every thread takes part.
WF_DEVICE void sample_bitonic_sort(u64* keys, int n) {
  const int t = thread_index();
  for (int size = 2; size <= n; size <<= 1) {
    for (int j = size >> 1; j > 0; j >>= 1) {
      for (int i = t; i < n; i += SAMPLE_BLOCK) {
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

WF_DEVICE void sample_step_kernel(const float* logits, int vocab, int* step, int* hist,
                                  int hist_cap, int window, float temperature, int top_k,
                                  float top_p, float min_p, float repeat_penalty, float* work,
                                  int* marks, int* cand_id, float* cand_p, u64* keys) {
  __shared__ int s_bad, s_any, s_token;
  __shared__ float s_sum, s_threshold;
  __shared__ u64 s_keys[SAMPLE_SORT_LDS];
  const int t = thread_index();
  // The step block, read by every thread here; thread 0 rewrites it after the last barrier.
  const int pos = step[1];
  const uint32_t calls = (uint32_t)step[2] + 1u;
  const int stamp = calls == 0u ? 1 : (int)calls;  // never 0, the marks' idle value
  u64 state = (u64)(uint32_t)step[4] | ((u64)(uint32_t)step[5] << 32);
  const bool drawn = (step[3] & 1) != 0;
  float coin = f32_from_bits((uint32_t)step[6]);
  if (drawn) coin = (float)(uint32_t)(sample_splitmix64(&state) >> 40) / 16777216.0f;
  if (t == 0) {
    s_bad = 0;
    s_any = 0;
  }
  block_sync();
  // 1. copy; refuse NaN, +inf, all -inf, a bad coin
  int bad = 0, any = 0;
  for (int i = t; i < vocab; i += SAMPLE_BLOCK) {
    const float v = logits[i];
    bad |= argmax_bad(v);
    any |= v != -wf_inf() ? 1 : 0;
    work[i] = v;
  }
  if (bad) wf_atomic_or(&s_bad, 1);
  if (any) wf_atomic_or(&s_any, 1);
  block_sync();
  bool fail = s_bad != 0 || s_any == 0 || !(coin >= 0.0f && coin < 1.0f);
  if (fail && t == 0) WF_PATH(1, PATH_UNSAMPLABLE);
  // 2. repetition penalty over the window's distinct ids
  const int hi = pos < hist_cap - 1 ? pos : hist_cap - 1;
  const int lo = (window > 0 && pos + 1 - window > 0) ? pos + 1 - window : 0;
  if (!fail && repeat_penalty != 1.0f && lo <= hi) {
    if (t == 0) WF_PATH(1, PATH_PENALTY);
    for (int j = lo + t; j <= hi; j += SAMPLE_BLOCK) {
      const int id = hist[j];
      if ((uint32_t)id < (uint32_t)vocab && wf_atomic_exch(&marks[id], stamp) != stamp) {
        const float l = work[id];
        work[id] = l < 0.0f ? l * repeat_penalty : l / repeat_penalty;
      }
    }
    block_sync();
    for (int j = lo + t; j <= hi; j += SAMPLE_BLOCK) {
      const int id = hist[j];
      if ((uint32_t)id < (uint32_t)vocab) marks[id] = 0;
    }
  }
  // 3. argmax; greedy
  float best_v;
  int best_i, pos_inf;
  sample_block_argmax(work, vocab, &best_v, &best_i, &pos_inf);
  if (!fail && pos_inf) {
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
    // 4. temperature on logits shifted to a maximum of 0; top-k threshold
    for (int i = t; i < vocab; i += SAMPLE_BLOCK) work[i] = (work[i] - best_v) / temperature;
    block_sync();
    float kth = -wf_inf();
    if (top_k > 0 && top_k < vocab) {
      if (t == 0) WF_PATH(1, PATH_TOP_K);
      kth = sample_kth_largest(work, vocab, top_k);
    }
    // 5. candidates in id order: thread t owns ids [begin, end)
    const int per = (vocab + SAMPLE_BLOCK - 1) / SAMPLE_BLOCK;
    const int begin = t * per < vocab ? t * per : vocab;
    const int end = begin + per < vocab ? begin + per : vocab;
    int count = 0;
    for (int i = begin; i < end; ++i) {
      const float v = work[i];
      count += (v >= kth && v != -wf_inf()) ? 1 : 0;
    }
    int n;
    int at = sample_block_scan(count, &n);
    for (int i = begin; i < end; ++i) {
      const float v = work[i];
      if (v >= kth && v != -wf_inf()) {
        cand_id[at] = i;
        cand_p[at] = v;
        ++at;
      }
    }
    block_sync();
    for (int j = t; j < n; j += SAMPLE_BLOCK) cand_p[j] = wf_sampler_exp(cand_p[j]);
    block_sync();
    if (t == 0) {
      float sum = 0.0f;
      for (int j = 0; j < n; ++j) sum += cand_p[j];
      s_sum = sum;
    }
    block_sync();
    for (int j = t; j < n; j += SAMPLE_BLOCK) cand_p[j] = cand_p[j] / s_sum;
    block_sync();
    // 6. top-p
    if (top_p < 1.0f) {
      int n2 = 1;
      while (n2 < n) n2 <<= 1;
      const bool lds = n2 <= SAMPLE_SORT_LDS;
      if (t == 0) WF_PATH(1, lds ? PATH_TOP_P_LDS : PATH_TOP_P_GLOBAL);
      u64* k = lds ? s_keys : keys;
      for (int j = t; j < n2; j += SAMPLE_BLOCK) {
        k[j] = j < n ? ((u64)(~f32_bits(cand_p[j])) << 32) | (u64)(uint32_t)j : ~0ull;
      }
      block_sync();
      sample_bitonic_sort(k, n2);
      if (t == 0) {
        float above = 0.0f;  // the mass ranked above, dropped tokens included
        for (int r = 0; r < n; ++r) {
          const int j = (int)(uint32_t)(k[r] & 0xffffffffull);
          const float p = cand_p[j];
          if (r > 0 && above >= top_p) cand_p[j] = 0.0f;
          above += p;
        }
      }
      block_sync();
    }
    // 7. min-p
    if (min_p > 0.0f) {
      if (t == 0) {
        WF_PATH(1, PATH_MIN_P);
        float p_max = 0.0f;
        for (int j = 0; j < n; ++j) p_max = cand_p[j] > p_max ? cand_p[j] : p_max;
        s_threshold = min_p * p_max;
      }
      block_sync();
      for (int j = t; j < n; j += SAMPLE_BLOCK) {
        if (cand_p[j] < s_threshold) cand_p[j] = 0.0f;
      }
      block_sync();
    }
    // 8. renormalise and draw, serially in id order
    if (t == 0) {
      float total = 0.0f;
      for (int j = 0; j < n; ++j) total += cand_p[j];
      float total2 = 0.0f;
      int last = 0;  // the last candidate with dist > 0 (the top token always has)
      for (int j = 0; j < n; ++j) {
        const float d = cand_p[j] / total;
        cand_p[j] = d;
        total2 += d;
        if (d > 0.0f) last = j;
      }
      const float r = coin * total2;
      float acc = 0.0f;
      int pick = last;  // reached only by rounding
      for (int j = 0; j < n; ++j) {
        acc += cand_p[j];
        if (r < acc) {
          pick = j;
          break;
        }
      }
      s_token = cand_id[pick];
    }
  }
  block_sync();
  if (t == 0) {
    const int token = fail ? -1 : s_token;
    step[0] = token;
    if (!fail) {
      if (pos + 1 >= 0 && pos + 1 < hist_cap) hist[pos + 1] = token;
      step[1] = pos + 1;
    }
    step[2] = (int)calls;
    step[4] = (int)(uint32_t)state;
    step[5] = (int)(uint32_t)(state >> 32);
  }
}

extern "C" __global__ void __launch_bounds__(SAMPLE_BLOCK) sample_step(
    const float* logits, int vocab, int* step, int* hist, int hist_cap, int window,
    float temperature, int top_k, float top_p, float min_p, float repeat_penalty, float* work,
    int* marks, int* cand_id, float* cand_p, u64* keys) {
  sample_step_kernel(logits, vocab, step, hist, hist_cap, window, temperature, top_k, top_p,
                     min_p, repeat_penalty, work, marks, cand_id, cand_p, keys);
}
