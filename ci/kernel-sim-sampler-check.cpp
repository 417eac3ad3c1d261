// kernels/sampling.hip's sampler (sample_prep, sample_topk, sample_pick) run whole on the host
// (ci/kernel-sim.h: every thread of a block a fiber, real barriers and wave shuffles at WAVE
// lanes), launched as ops/sampling.rs launches it: prep and (a sampled step) topk over
// ceil(vocab / 2048) blocks of 256 threads, then pick in one block of 1024, with the step
// block, the device-side history and the workspace. The oracle is a port of the engine's
// `sampler::distribution` + `pick` (engine/src/sampler.rs, itself the reference's arithmetic
// step for step): the penalties over the window's distinct ids and counts, the argmax, the
// temperature on max-shifted logits, top-k ≥ the k-th largest, the softmax with common.h's
// wf_sampler_exp (the Rust sampler's bits), top-p by rank, min-p, the renormalisation and the
// draw, each f32 operation in the same order. Checked, per vocabulary size and parameters:
//   1. the token is the oracle's, bit for bit the same decision (greedy, sampled with a given
//      coin, and with the coin drawn from the SplitMix64 state, which must advance as
//      CoinRng::next_u64);
//   2. the step block: token, pos + 1, calls + 1, the state; hist[pos + 1] = the token and no
//      other history entry touched; a refused row (NaN, +inf, every value -inf, +inf after a
//      penalty, a coin outside [0, 1)) gives -1 with pos and the history unchanged;
//   3. the same token and step block with the threads in reverse order between barriers.
//   4. every path the three kernels name (WF_PATH, built here with WF_COVERAGE) is reached:
//      candidates in shared memory and in the workspace, top-k by ranks and by radix select,
//      top-p by ranks, in shared memory and in the workspace, min-p, the penalties, ….
//
// Usage: kernel-sim-sampler-check   Exit status 0 iff every check passed.
// Build: c++ -O2 -std=c++17 -Wno-unknown-pragmas -DWAVE=32 -I kernels -I ci \
//          ci/kernel-sim-sampler-check.cpp   (and -DWAVE=64)

#include "kernel-sim.h"

// Path coverage on (common.h WF_PATH): the check asserts that its cases reach every path of
// sample_pick, sample_prep and sample_topk.
#define WF_COVERAGE 1
#include "sampling.hip"

#include "kernel-sim-util.h"

#include <algorithm>
#include <numeric>

struct Params {
  float temperature = 1.0f;
  int top_k = 0;
  float top_p = 1.0f, min_p = 0.0f, repeat = 1.0f, presence = 0.0f, frequency = 0.0f;
};

// ---------------------------------------------------------------------------------------------
// The oracle: engine/src/sampler.rs `distribution` then `pick`, -1 where it refuses the row.

static int oracle(const std::vector<float>& logits, const Params& p,
                  const std::vector<int>& history, float coin) {
  const int n = (int)logits.size();
  if (!(coin >= 0.0f && coin < 1.0f)) return -1;
  bool any = false;
  for (float v : logits) {
    if (std::isnan(v) || v == INFINITY) return -1;
    any = any || v != -INFINITY;
  }
  if (!any) return -1;
  std::vector<float> l = logits;
  if (p.repeat != 1.0f) {  // each distinct id once
    std::vector<bool> seen(n, false);
    for (int id : history) {
      if (id >= 0 && id < n && !seen[id]) {
        seen[id] = true;
        l[id] = l[id] < 0.0f ? l[id] * p.repeat : l[id] / p.repeat;
      }
    }
  }
  if (p.presence != 0.0f || p.frequency != 0.0f) {
    std::vector<int> count(n, 0);
    for (int id : history)
      if (id >= 0 && id < n) ++count[id];
    for (int i = 0; i < n; ++i) {
      if (count[i] > 0) {
        const float a = (float)count[i] * p.frequency;  // separate statements: no FMA
        const float b = a + p.presence;
        l[i] = l[i] - b;
      }
    }
  }
  for (float v : l)
    if (v == INFINITY) return -1;
  int best = 0;
  for (int i = 0; i < n; ++i) best = l[i] > l[best] ? i : best;
  if (p.temperature <= 0.0f) return best;
  const float max = l[best];
  std::vector<float> scaled(n);
  for (int i = 0; i < n; ++i) scaled[i] = (l[i] - max) / p.temperature;
  std::vector<bool> keep(n, true);
  if (p.top_k > 0 && p.top_k < n) {  // ≥ the k-th largest
    std::vector<float> s = scaled;
    std::nth_element(s.begin(), s.begin() + (p.top_k - 1), s.end(), std::greater<float>());
    const float kth = s[p.top_k - 1];
    for (int i = 0; i < n; ++i) keep[i] = keep[i] && scaled[i] >= kth;
  }
  // softmax over the kept (the rest -inf: e = 0)
  float m = -INFINITY;
  for (int i = 0; i < n; ++i) m = std::max(m, keep[i] ? scaled[i] : -INFINITY);
  std::vector<float> probs(n);
  float sum = 0.0f;
  for (int i = 0; i < n; ++i) sum += probs[i] = wf_sampler_exp((keep[i] ? scaled[i] : -INFINITY) - m);
  for (float& x : probs) x = x / sum;
  if (p.top_p < 1.0f) {  // descending probability, ties by lower id
    std::vector<int> order;
    for (int i = 0; i < n; ++i)
      if (keep[i]) order.push_back(i);
    std::sort(order.begin(), order.end(), [&](int a, int b) {
      return probs[a] > probs[b] || (probs[a] == probs[b] && a < b);
    });
    float above = 0.0f;
    for (size_t r = 0; r < order.size(); ++r) {
      if (r > 0 && above >= p.top_p) keep[order[r]] = false;
      above += probs[order[r]];
    }
  }
  for (int i = 0; i < n; ++i)
    if (!keep[i]) probs[i] = 0.0f;
  if (p.min_p > 0.0f) {
    float top = 0.0f;
    for (int i = 0; i < n; ++i)
      if (keep[i]) top = std::max(top, probs[i]);
    const float threshold = p.min_p * top;
    for (int i = 0; i < n; ++i) keep[i] = keep[i] && probs[i] >= threshold;
    for (int i = 0; i < n; ++i)
      if (!keep[i]) probs[i] = 0.0f;
  }
  float total = 0.0f;
  for (float x : probs) total += x;
  std::vector<float> dist(n);
  for (int i = 0; i < n; ++i) dist[i] = probs[i] / total;
  float t2 = 0.0f;
  for (float x : dist) t2 += x;
  const float r = coin * t2;
  float acc = 0.0f;
  for (int i = 0; i < n; ++i) {
    acc += dist[i];
    if (r < acc) return i;
  }
  for (int i = n - 1; i >= 0; --i)
    if (dist[i] > 0.0f) return i;
  return 0;
}

static uint64_t splitmix(uint64_t* s) {
  *s += 0x9E3779B97F4A7C15ull;
  uint64_t z = *s;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// ---------------------------------------------------------------------------------------------
// One decode step's sampling on the emulator, as ops/sampling.rs launches it.

struct Step {
  int token, pos, calls, flags;
  uint64_t state;
  float coin;
};

struct Outcome {
  int step[8];
  std::vector<int> hist;
  bool ok;
};

static Outcome run_sampler(const std::vector<float>& logits, const Params& p, const Step& in,
                           const std::vector<int>& hist0, int window, bool reverse) {
  const int vocab = (int)logits.size();
  const int chunks = (vocab + SAMPLE_CHUNK - 1) / SAMPLE_CHUNK;
  const int top_k = p.top_k >= vocab ? 0 : p.top_k;
  int keys_n = 1;
  while (keys_n < vocab) keys_n <<= 1;
  std::vector<float> work(vocab), stage_p(vocab), tmp_p(vocab), cand_p(vocab);
  std::vector<int> stage_id(vocab), tmp_id(vocab), cand_id(vocab);
  std::vector<u64> keys(keys_n);
  std::vector<int> part((size_t)chunks * SAMPLE_PART_WORDS, 0x5a5a5a5a);
  Outcome o;
  o.hist = hist0;
  int* step = o.step;
  step[0] = in.token;
  step[1] = in.pos;
  step[2] = in.calls;
  step[3] = in.flags;
  step[4] = (int)(uint32_t)in.state;
  step[5] = (int)(uint32_t)(in.state >> 32);
  step[6] = (int)f32_bits(in.coin);
  step[7] = 0;
  const int hist_cap = (int)o.hist.size();
  const bool sampled = p.temperature > 0.0f;
  bool ok = sim::launch((unsigned)chunks, SAMPLE_PART_BLOCK, [&] {
    sample_prep(logits.data(), vocab, step, o.hist.data(), hist_cap, window, p.repeat, p.presence,
                p.frequency, sampled ? 1 : 0, work.data(), part.data());
  }, reverse);
  ok = launched(ok, {}, "sample_prep") && ok;
  if (sampled) {
    const bool l = sim::launch((unsigned)chunks, SAMPLE_PART_BLOCK, [&] {
      sample_topk(vocab, p.temperature, top_k, work.data(), part.data(), chunks, stage_id.data(),
                  stage_p.data());
    }, reverse);
    ok = launched(l, {}, "sample_topk") && ok;
  }
  const bool l = sim::launch(1, SAMPLE_PICK_BLOCK, [&] {
    sample_pick(step, o.hist.data(), hist_cap, p.temperature, top_k, p.top_p, p.min_p,
                part.data(), chunks, stage_id.data(), stage_p.data(), tmp_id.data(), tmp_p.data(),
                cand_id.data(), cand_p.data(), keys.data());
  }, reverse);
  o.ok = launched(l, {}, "sample_pick") && ok;
  return o;
}

// Logits like a model's: most ids far below the top, a few near it, some -inf.
static std::vector<float> model_logits(int vocab, uint64_t seed, float spread) {
  std::vector<float> u = seeded(vocab, seed, 0.0f, 1.0f);
  std::vector<float> l(vocab);
  for (int i = 0; i < vocab; ++i) {
    const float x = u[i];
    l[i] = spread * (x * x * x * x) - 2.0f;  // a long low tail, a thin top
    if (i % 997 == 5) l[i] = -INFINITY;
  }
  return l;
}

static int g_case = 0;

static void check_case(const char* what, const std::vector<float>& logits, const Params& p,
                       int window, float coin, bool rng) {
  const int vocab = (int)logits.size();
  ++g_case;
  // a context of 40 ids (some repeated, one outside the vocabulary), room for more
  std::vector<int> hist(64, -77);
  const int pos = 39;
  std::vector<float> pick_u = seeded(pos + 1, 4000 + g_case, 0.0f, 1.0f);
  for (int j = 0; j <= pos; ++j) hist[j] = (int)(pick_u[j] * (j % 3 == 0 ? 50 : vocab)) % vocab;
  hist[7] = vocab + 3;
  hist[11] = hist[12] = hist[13];
  Step in{-5, pos, 17, rng ? 1 : 0, 0x0123456789abcdefull + (uint64_t)g_case, coin};
  // the oracle's coin and history window
  uint64_t st = in.state;
  float c = coin;
  if (rng) c = (float)(uint32_t)(splitmix(&st) >> 40) / 16777216.0f;
  const int hi = std::min(pos, (int)hist.size() - 1);
  const int lo = window > 0 && pos + 1 - window > 0 ? pos + 1 - window : 0;
  const std::vector<int> window_ids(hist.begin() + lo, hist.begin() + hi + 1);
  const int want = oracle(logits, p, window_ids, c);
  const Outcome a = run_sampler(logits, p, in, hist, window, false);
  const Outcome b = run_sampler(logits, p, in, hist, window, true);
  // the expected step block and history
  std::vector<int> hist_want = hist;
  if (want >= 0) hist_want[pos + 1] = want;
  const bool step_ok = a.step[0] == want && a.step[1] == (want >= 0 ? pos + 1 : pos) &&
                       a.step[2] == in.calls + 1 && a.step[3] == in.flags &&
                       (uint32_t)a.step[4] == (uint32_t)st && (uint32_t)a.step[5] == (uint32_t)(st >> 32) &&
                       a.hist == hist_want;
  char tag[200];
  snprintf(tag, sizeof tag,
           "sampler %s vocab %d T %g k %d p %g min_p %g pen %g/%g/%g window %d %s %g", what, vocab,
           p.temperature, p.top_k, p.top_p, p.min_p, p.repeat, p.presence, p.frequency, window,
           rng ? "rng" : "coin", rng ? c : coin);
  check(a.ok && step_ok, std::string(tag) + ": token " + std::to_string(a.step[0]) + ", the oracle's " +
                             std::to_string(want) + "; step block and history");
  check(b.ok && memcmp(a.step, b.step, sizeof a.step) == 0 && a.hist == b.hist,
        std::string(tag) + ": the same in reverse thread order");
}

int main() {
  printf("kernel-sim-sampler-check: WAVE=%d\n", WAVE);
  Params greedy;
  greedy.temperature = 0.0f;
  Params plain;  // T = 1, nothing else
  Params typical;
  typical.temperature = 0.8f;
  typical.top_k = 40;
  typical.top_p = 0.9f;
  typical.min_p = 0.05f;
  Params wide;  // more than 1024 candidates after top-k: the radix select, the global sort
  wide.temperature = 1.3f;
  wide.top_k = 1500;
  wide.top_p = 0.95f;
  Params nucleus;  // top-p alone
  nucleus.temperature = 0.7f;
  nucleus.top_p = 0.5f;
  Params minp;
  minp.temperature = 1.0f;
  minp.min_p = 0.1f;
  Params pen = typical;
  pen.repeat = 1.3f;
  pen.presence = 0.5f;
  pen.frequency = 0.3f;
  Params greedy_pen = greedy;
  greedy_pen.repeat = 1.5f;
  greedy_pen.frequency = 2.0f;
  const int vocabs[] = {1000, 5000, 49152, 70001};
  uint64_t seed = 77;
  for (int vocab : vocabs) {
    const std::vector<float> flat = model_logits(vocab, seed += 11, 6.0f);    // many near the top
    const std::vector<float> peaked = model_logits(vocab, seed += 11, 22.0f);  // few near the top
    check_case("greedy", peaked, greedy, 0, 0.5f, false);
    check_case("greedy, penalties", peaked, greedy_pen, 8, 0.5f, false);
    for (float coin : {0.0f, 0.37f, 0.999f}) check_case("plain", flat, plain, 0, coin, false);
    check_case("plain", peaked, plain, 0, 0.0f, true);
    check_case("typical", peaked, typical, 0, 0.61f, false);
    check_case("typical", flat, typical, 0, 0.0f, true);
    check_case("top-k 1500, top-p", flat, wide, 0, 0.42f, false);
    check_case("top-p", flat, nucleus, 0, 0.73f, false);
    check_case("top-p", peaked, nucleus, 0, 0.2f, false);
    check_case("min-p", flat, minp, 0, 0.9f, false);
    check_case("penalties", peaked, pen, 0, 0.3f, false);
    check_case("penalties, window 8", peaked, pen, 8, 0.3f, true);
  }
  // decisions at exact boundaries: four tied logits (each p exactly 1/4) under top-p 0.5 keep
  // two (the mass above the third is exactly 0.5, ≥ top_p); min-p 1 keeps both of two tied
  // maxima (p ≥ the threshold, equal); coin 0 with the first candidates dropped by top-p
  // draws the first id with mass, not one zeroed
  for (int vocab : {3000, 40000}) {
    std::vector<float> tie(vocab, -INFINITY);
    tie[5] = tie[900] = tie[1700] = tie[2999] = 3.0f;
    Params half = plain;
    half.top_p = 0.5f;
    for (float coin : {0.3f, 0.6f, 0.9f}) check_case("four tied, top-p 0.5", tie, half, 0, coin, false);
    std::vector<float> two = model_logits(vocab, seed += 11, 6.0f);
    two[100] = two[vocab - 100] = 9.0f;
    Params all_max = plain;
    all_max.min_p = 1.0f;
    for (float coin : {0.2f, 0.7f}) check_case("two tied maxima, min-p 1", two, all_max, 0, coin, false);
    Params narrow = plain;
    narrow.top_p = 0.3f;
    check_case("coin 0, top-p 0.3", model_logits(vocab, seed += 11, 6.0f), narrow, 0, 0.0f, false);
  }
  // rows the sampler refuses, and a refused coin
  std::vector<float> row = model_logits(5000, 999, 10.0f);
  std::vector<float> bad = row;
  bad[1234] = NAN;
  check_case("a NaN", bad, plain, 0, 0.5f, false);
  bad = row;
  bad[4999] = INFINITY;
  check_case("a +inf", bad, greedy, 0, 0.5f, false);
  bad.assign(5000, -INFINITY);
  check_case("every value -inf", bad, plain, 0, 0.5f, false);
  check_case("a coin of 1", row, plain, 0, 1.0f, false);
  // every logit 1e10: the history's ids divided by a penalty of 1e-30 overflow to +inf
  Params over = plain;
  over.repeat = 1.0e-30f;
  check_case("+inf after the penalty", std::vector<float>(5000, 1.0e10f), over, 0, 0.5f, false);
  // every named path of the three kernels reached by the cases above (slots: sampling.hip's
  // Paths list; the enums' sizes)
  const struct {
    const char* kernel;
    int slot, paths;
  } slots[] = {{"sample_pick", 1, PATH_CANDIDATES_GLOBAL + 1},
               {"sample_prep", 2, PATH_COUNTS + 1},
               {"sample_topk", 3, PATH_BOUND + 1}};
  for (const auto& k : slots) {
    const unsigned want = (1u << k.paths) - 1, got = wf_coverage[k.slot] & want;
    char b[120];
    snprintf(b, sizeof b, "%s: every one of its %d paths reached (mask %#x of %#x)", k.kernel,
             k.paths, got, want);
    check(got == want, b);
  }
  return finish();
}
