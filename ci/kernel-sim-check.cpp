// kernels/qgemv.hip's one-row GEMVs run whole on the host (ci/kernel-sim.h: every thread of a
// block a fiber, real barriers and wave shuffles at WAVE lanes), at the launches the engine
// makes (ops/qgemv.rs: the kernel's threads, row groups of threads/WAVE rows or outputs, grid
// n_in · blocks), for every weight type in both activation forms (f32: qgemv_{T},
// qgemv_swiglu_{T}; 8-bit: qgemv_q8a_{T}, qgemv_swiglu_q8a_{T}), with one input tile and with
// two (K past QGEMV_TILE / Q8A_TILE). Weights: the fixtures' blocks (fixtures/quants/{T}.bin,
// quantized by gguf-py) laid out row by row in the device's split layout; their values are
// gguf-py's (fixtures/quants/{T}.f32). Checked, per type, form and K:
//   1. the product against Σ w·x in double (f32 form: within 2Ku·Σ|w·x|; 8-bit form: against
//      the inputs rounded here as the kernel's records hold them, within (K/16 + 4)·u·Σ|w·dq|:
//      ci/kernel-quant-check.cpp's bounds, there for one lane's chunks, here for the launch);
//   2. the same bits with the block's threads run in the reverse order between barriers (a
//      read of another thread's shared-memory write with no barrier between differs);
//   3. the same bits with 1 and 2 blocks a launch, each looping over its share of the row
//      groups (the doc's "neither blocks nor B changes a bit"), and for row 0 of a batch of
//      two input rows (batch invariance);
//   4. bias, residual and stacked outputs (m0, m1, m2) in one launch: out = r + (y + bias),
//      bit for bit, each row in its own output;
//   5. the RMSNorm prologue: the product of x with norm_w equals the plain product of
//      a = g·(x·s) (s: common.h's rms_scale<RMS_NORM_BLOCK>, rms_norm.hip's scale, run here
//      too) bit for bit;
//   6. qgemv_swiglu: out = act(gate)·up with gate and up qgemv's sums of the stacked rows, bit
//      for bit (silu and gelu_tanh, and with the norm prologue).
// What the device suite checks and this cannot: the vendor compilers' code, memory ordering
// and timing (ci/kernel-sim.h says what it models).
//
// Usage: kernel-sim-check [--threads N,N,...] FIXTURES_DIR [TYPE...]
//   FIXTURES_DIR: fixtures/quants; TYPE: Q4_0, …, default every type; --threads: also launch
//   every kernel at these block sizes (those below its bound; for kernels that take their
//   block from the launch), the same bits as at the bound.
// Exit status 0 iff every check passed. Prints "N passed, M failed".
//
// Build: c++ -O2 -std=c++17 -Wno-unknown-pragmas -DWAVE=32 -I kernels -I ci ci/kernel-sim-check.cpp
//   (and again with -DWAVE=64: each build checks its wave).

#include "kernel-sim.h"

#include "qgemv.hip"

#include "kernel-sim-util.h"

#include <math.h>

#include <algorithm>

typedef void (*Qgemv)(const uint8_t*, const uint8_t*, const float*, const float*, float,
                      const float*, float*, float*, float*, int, int, int, int, int, int, int);
typedef void (*Swiglu)(const uint8_t*, const uint8_t*, const float*, const float*, float, float*,
                       int, int, int, int, int);

// A type and its four entry points with the threads the host launches each at (ops/qgemv.rs
// `threads`: the kernels' __launch_bounds__).
struct Type {
  const char* name;
  int bb, q0, qb, be;  // block bytes, first quant byte, quant bytes, elements
  Qgemv qgemv, qgemv_q8;
  Swiglu swiglu, swiglu_q8;
  int t_qgemv, t_qgemv_q8, t_swiglu;
};

// A matrix of the fixture's blocks: row r's block j is fixture block (5r + 3j) mod nb.
struct Mat {
  int m = 0, k = 0;
  std::vector<uint8_t> split;  // qa, then sa (16-byte aligned), then padding
  size_t sa = 0;
  std::vector<float> w;  // (m, k), gguf-py's values
};

static Mat make_mat(const Type& t, const std::vector<uint8_t>& file, const std::vector<float>& vals,
                    int m, int k) {
  const int nb = (int)(file.size() / t.bb), bpr = k / t.be;
  Mat a;
  a.m = m;
  a.k = k;
  const size_t blocks = (size_t)m * bpr;
  a.sa = blocks * t.qb;
  a.split.assign(a.sa + blocks * (t.bb - t.qb) + 64, 0);
  a.w.resize((size_t)m * k);
  for (int r = 0; r < m; ++r) {
    for (int j = 0; j < bpr; ++j) {
      const int src = (5 * r + 3 * j) % nb;
      const size_t i = (size_t)r * bpr + j;
      const uint8_t* b = file.data() + (size_t)src * t.bb;
      memcpy(a.split.data() + i * t.qb, b + t.q0, t.qb);
      uint8_t* s = a.split.data() + a.sa + i * (t.bb - t.qb);
      memcpy(s, b, t.q0);
      memcpy(s + t.q0, b + t.q0 + t.qb, t.bb - t.q0 - t.qb);
      memcpy(&a.w[(size_t)r * k + (size_t)j * t.be], &vals[(size_t)src * t.be], 4 * t.be);
    }
  }
  return a;
}

static const float EPS = 1e-5f;

// --threads: block sizes below the kernels' bounds to run them at as well (kernels that take
// their block from the launch), each compared bit for bit with the launch at the bound.
static std::vector<int> g_threads;

static bool run_qgemv(const Type& t, bool q8, const Mat& a, const Launch& l,
                      std::vector<float>& out) {
  const int threads = l.threads > 0 ? l.threads : q8 ? t.t_qgemv_q8 : t.t_qgemv;
  const int rows = QGEMV_ROWS_A_WAVE * (threads / WAVE);
  const int groups = (a.m + rows - 1) / rows;
  const int blocks = l.blocks > 0 ? std::min(l.blocks, groups) : groups;
  const Qgemv f = q8 ? t.qgemv_q8 : t.qgemv;
  const uint8_t* qa = a.split.data();
  const uint8_t* sa = qa + a.sa;
  Stacked st(out, a.m, l.m0, l.m1, l.m2, l.n_in);
  poison_shared();
  const bool ok = sim::launch((unsigned)(l.n_in * blocks), (unsigned)threads, [&] {
    f(qa, sa, l.x, l.norm, EPS, l.bias, st.g0.p(), st.g1.p(), st.g2.p(), l.m0, l.m1, l.m2, a.k,
      l.residual, l.n_in, blocks);
  }, l.reverse);
  const bool clean = launched(ok, {&st.g0, &st.g1, &st.g2}, "qgemv");
  st.back(out);
  return clean;
}

static bool run_swiglu(const Type& t, bool q8, const Mat& a, const float* x, const float* norm,
                       int act, int blocks_req, bool reverse, std::vector<float>& out,
                       int threads_req = 0) {
  const int inter = a.m / 2;
  const int threads = threads_req > 0 ? threads_req : t.t_swiglu;
  const int outs = threads / WAVE;
  const int groups = (inter + outs - 1) / outs;
  const int blocks = blocks_req > 0 ? std::min(blocks_req, groups) : groups;
  const Swiglu f = q8 ? t.swiglu_q8 : t.swiglu;
  const uint8_t* qa = a.split.data();
  const uint8_t* sa = qa + a.sa;
  Guarded o(inter);
  for (int i = 0; i < inter; ++i) o.p()[i] = nanf("");
  poison_shared();
  const bool ok = sim::launch((unsigned)blocks, (unsigned)threads, [&] {
    f(qa, sa, x, norm, EPS, o.p(), inter, a.k, 1, act, blocks);
  }, reverse);
  const bool clean = launched(ok, {&o}, "qgemv_swiglu");
  out.assign(o.p(), o.p() + inter);
  return clean;
}
static double oracle_ratio(const Mat& a, bool q8, const std::vector<float>& x,
                           const std::vector<float>& y, size_t y_off) {
  const int k = a.k;
  std::vector<double> xin(k);
  for (int i = 0; i < k; ++i) xin[i] = x[i];
  if (q8) {
    for (int g = 0; g < k / 32; ++g) {
      float amax = 0.0f;
      for (int i = 32 * g; i < 32 * g + 32; ++i) amax = fmaxf(amax, fabsf(x[i]));
      const float d = amax / 127.0f, id = amax > 0.0f ? 1.0f / d : 0.0f;
      for (int i = 32 * g; i < 32 * g + 32; ++i) xin[i] = (double)d * rintf(x[i] * id);
    }
  }
  double worst = 0.0;
  for (int r = 0; r < a.m; ++r) {
    double exact = 0.0, mag = 0.0;
    const float* w = a.w.data() + (size_t)r * k;
    for (int i = 0; i < k; ++i) {
      exact += (double)w[i] * xin[i];
      mag += fabs((double)w[i] * xin[i]);
    }
    const double bound = (q8 ? (k / 16 + 4) : 2.0 * k) * ldexp(1.0, -24) * mag;
    const double e = fabs((double)y[y_off + r] - exact);
    const double ratio = e == 0.0 ? 0.0 : (bound > 0.0 ? e / bound : INFINITY);
    if (!(ratio <= worst)) worst = ratio;  // NaN → NaN
  }
  return worst;
}

static void check_type(const Type& t, const std::string& dir) {
  const std::vector<uint8_t> file = read_file(dir + "/" + t.name + ".bin");
  const std::vector<uint8_t> vb = read_file(dir + "/" + t.name + ".f32");
  if (file.empty() || file.size() % t.bb != 0 || vb.size() != file.size() / t.bb * t.be * 4) {
    check(false, std::string(t.name) + ": fixtures missing or not whole blocks");
    return;
  }
  std::vector<float> vals(vb.size() / 4);
  memcpy(vals.data(), vb.data(), vb.size());
  for (int q8 = 0; q8 < 2; ++q8) {
    const int tile = q8 ? Q8A_TILE : QGEMV_TILE;
    const int threads = q8 ? t.t_qgemv_q8 : t.t_qgemv;
    const int rows = QGEMV_ROWS_A_WAVE * (threads / WAVE);
    for (const int k : {512, (tile / 256 + 1) * 256}) {
      const std::string tag = std::string(q8 ? "qgemv_q8a_" : "qgemv_") + t.name + " K=" +
                              std::to_string(k) + " (" + std::to_string(threads) + " threads, " +
                              (k > tile ? "two tiles" : "one tile") + ")";
      const int m = 2 * rows + 5;  // three row groups, the last one part live
      const Mat a = make_mat(t, file, vals, m, k);
      const std::vector<float> x = seeded(k, 1, -1.0f, 1.0f), x2 = seeded(k, 2, -2.0f, 2.0f);
      const std::vector<float> g = seeded(k, 3, 0.5f, 1.5f), bias = seeded(m, 4, -1.0f, 1.0f);
      const std::vector<float> r0 = seeded(m, 5, -4.0f, 4.0f);
      std::vector<float> y(m, nanf(""));
      Launch l(x.data(), m);
      const bool ok = run_qgemv(t, q8, a, l, y);
      check(ok, tag + ": the launch's barriers and shuffles line up, its writes in its outputs");
      if (!ok) continue;
      const double ratio = oracle_ratio(a, q8, x, y, 0);
      check(ratio <= 1.0, tag + ": every row within its bound of Σ w·x (worst " + fmt(ratio) +
                              " of it)");
      std::vector<float> yr(m, nanf(""));
      l.reverse = true;
      run_qgemv(t, q8, a, l, yr);
      check(same_bits(y, yr, m), tag + ": the same bits with the threads run in reverse order");
      l.reverse = false;
      for (const int blocks : {1, 2}) {
        std::vector<float> yb(m, nanf(""));
        l.blocks = blocks;
        run_qgemv(t, q8, a, l, yb);
        check(same_bits(y, yb, m), tag + ": the same bits with " + std::to_string(blocks) +
                                       " block(s) looping over the 3 row groups");
      }
      l.blocks = 0;
      {  // two input rows: row 0 the one-row launch's bits, row 1 within the bound
        std::vector<float> xx(x);
        xx.insert(xx.end(), x2.begin(), x2.end());
        std::vector<float> yy(2 * (size_t)m, nanf(""));
        Launch lb(xx.data(), m);
        lb.n_in = 2;
        lb.blocks = 2;
        run_qgemv(t, q8, a, lb, yy);
        const double r2 = oracle_ratio(a, q8, x2, yy, m);
        check(same_bits(y, yy, m) && r2 <= 1.0,
              tag + ": two input rows: row 0 the one-row bits, row 1 within its bound (" +
                  fmt(r2) + ")");
      }
      {  // bias, residual and three stacked outputs
        std::vector<float> ys(r0);
        Launch ls(x.data(), rows - 1);
        ls.bias = bias.data();
        ls.m1 = rows + 3;
        ls.m2 = m - ls.m0 - ls.m1;
        ls.residual = 1;
        run_qgemv(t, q8, a, ls, ys);
        const size_t bad = epilogue_misses(r0.data(), y.data(), bias.data(), ys.data(), m);
        check(bad == 0, tag + ": stacked into 3 outputs with bias and residual: r + (y + bias) "
                              "bit for bit (" + std::to_string(bad) + " differ)");
      }
      {  // the RMSNorm prologue = rms_norm's scale, then the plain product
        const float s = norm_scale(x.data(), k, EPS);
        std::vector<float> an(k);
        for (int i = 0; i < k; ++i) an[i] = g[i] * (x[i] * s);
        std::vector<float> ya(m, nanf("")), yn(m, nanf(""));
        Launch la(an.data(), m);
        run_qgemv(t, q8, a, la, ya);
        Launch ln(x.data(), m);
        ln.norm = g.data();
        run_qgemv(t, q8, a, ln, yn);
        check(same_bits(ya, yn, m) && std::isfinite(s) && s > 0.0f,
              tag + ": the norm prologue equals rms_norm then the product, bit for bit");
        for (const int th : g_threads) {
          if (th >= threads) continue;
          std::vector<float> yt(m, nanf("")), ynt(m, nanf(""));
          Launch lt(x.data(), m);
          lt.threads = th;
          run_qgemv(t, q8, a, lt, yt);
          ln.threads = th;
          ln.blocks = 1;
          run_qgemv(t, q8, a, ln, ynt);
          check(same_bits(y, yt, m) && same_bits(yn, ynt, m),
                tag + ": at " + std::to_string(th) + " threads a block the same bits (plain; "
                      "with the norm, one block for every group)");
        }
      }
    }
    // qgemv_swiglu over [W_g; W_u] (2I rows), one tile and two.
    for (const int k : {512, (tile / 256 + 1) * 256}) {
      const int outs = t.t_swiglu / WAVE;
      const int inter = 2 * outs + 3;
      const std::string tag = std::string(q8 ? "qgemv_swiglu_q8a_" : "qgemv_swiglu_") + t.name +
                              " K=" + std::to_string(k) + " (" + std::to_string(t.t_swiglu) +
                              " threads)";
      const Mat a = make_mat(t, file, vals, 2 * inter, k);
      const std::vector<float> x = seeded(k, 6, -1.0f, 1.0f), g = seeded(k, 7, 0.5f, 1.5f);
      std::vector<float> rows_y(2 * (size_t)inter, nanf(""));
      Launch l(x.data(), 2 * inter);
      run_qgemv(t, q8, a, l, rows_y);
      for (const int act : {ACT_SILU, ACT_GELU_TANH}) {
        std::vector<float> out;
        run_swiglu(t, q8, a, x.data(), nullptr, act, 0, false, out);
        size_t bad = 0;
        for (int i = 0; i < inter; ++i) {
          const float gv = rows_y[i], uv = rows_y[inter + i];
          const float want = (act == ACT_GELU_TANH ? wf_gelu_tanh(gv) : wf_silu(gv)) * uv;
          bad += memcmp(&want, &out[i], 4) != 0;
        }
        check(bad == 0, tag + (act == ACT_SILU ? " silu" : " gelu_tanh") +
                            ": act(gate)·up of qgemv's sums bit for bit (" + std::to_string(bad) +
                            " differ)");
      }
      std::vector<float> o1, o2, o3;
      run_swiglu(t, q8, a, x.data(), nullptr, ACT_SILU, 0, false, o1);
      run_swiglu(t, q8, a, x.data(), nullptr, ACT_SILU, 0, true, o2);
      run_swiglu(t, q8, a, x.data(), nullptr, ACT_SILU, 1, false, o3);
      check(same_bits(o1, o2, inter) && same_bits(o1, o3, inter),
            tag + ": the same bits in reverse thread order and with one block for the 3 groups");
      const float s = norm_scale(x.data(), k, EPS);
      std::vector<float> an(k);
      for (int i = 0; i < k; ++i) an[i] = g[i] * (x[i] * s);
      std::vector<float> on, oa;
      run_swiglu(t, q8, a, x.data(), g.data(), ACT_SILU, 0, false, on);
      run_swiglu(t, q8, a, an.data(), nullptr, ACT_SILU, 0, false, oa);
      check(same_bits(on, oa, inter), tag + ": the norm prologue equals rms_norm then the "
                                            "product, bit for bit");
      for (const int th : g_threads) {
        if (th >= t.t_swiglu) continue;
        std::vector<float> ot, ont;
        run_swiglu(t, q8, a, x.data(), nullptr, ACT_SILU, 0, false, ot, th);
        run_swiglu(t, q8, a, x.data(), g.data(), ACT_SILU, 1, false, ont, th);
        check(same_bits(o1, ot, inter) && same_bits(on, ont, inter),
              tag + ": at " + std::to_string(th) + " threads a block the same bits (plain; with "
                    "the norm, one block for every group)");
      }
    }
  }
}

int main(int argc, char** argv) {
  int a0 = 1;
  if (argc > 2 && strcmp(argv[1], "--threads") == 0) {
    const char* p = argv[2];
    for (;;) {
      char* end;
      const long v = strtol(p, &end, 10);
      if (end == p || (*end != ',' && *end != 0) || v < QGEMV_NORM_BLOCK ||
          v > sim::MAX_THREADS || v % WAVE != 0) {
        fprintf(stderr, "kernel-sim-check: --threads: '%s' is not a list N,N,... of block sizes "
                        "(multiples of the wave, %d to %d)\n", argv[2], QGEMV_NORM_BLOCK,
                sim::MAX_THREADS);
        return 2;
      }
      g_threads.push_back((int)v);
      if (*end == 0) break;
      p = end + 1;
    }
    a0 = 3;
  }
  if (argc <= a0) {
    fprintf(stderr, "usage: kernel-sim-check [--threads N,N,...] FIXTURES_DIR [TYPE...]\n");
    return 2;
  }
  const std::string dir = argv[a0];
  // Threads a block, per entry point, as ops/qgemv.rs `threads` launches them.
  const int B = QGEMV_BLOCK, M = QGEMV_BLOCK_MID, H = QGEMV_BLOCK_HEAVY;
  const Type types[] = {
      {"Q8_0", 34, 2, 32, 32, qgemv_q8_0, qgemv_q8a_q8_0, qgemv_swiglu_q8_0,
       qgemv_swiglu_q8a_q8_0, B, B, M},
      {"Q4_0", 18, 2, 16, 32, qgemv_q4_0, qgemv_q8a_q4_0, qgemv_swiglu_q4_0,
       qgemv_swiglu_q8a_q4_0, B, B, M},
      {"Q4_1", 20, 4, 16, 32, qgemv_q4_1, qgemv_q8a_q4_1, qgemv_swiglu_q4_1,
       qgemv_swiglu_q8a_q4_1, B, B, M},
      {"Q5_0", 22, 6, 16, 32, qgemv_q5_0, qgemv_q8a_q5_0, qgemv_swiglu_q5_0,
       qgemv_swiglu_q8a_q5_0, B, B, M},
      {"Q5_1", 24, 8, 16, 32, qgemv_q5_1, qgemv_q8a_q5_1, qgemv_swiglu_q5_1,
       qgemv_swiglu_q8a_q5_1, B, B, M},
      {"Q4_K", 144, 16, 128, 256, qgemv_q4_k, qgemv_q8a_q4_k, qgemv_swiglu_q4_k,
       qgemv_swiglu_q8a_q4_k, M, B, M},
      {"Q5_K", 176, 16, 160, 256, qgemv_q5_k, qgemv_q8a_q5_k, qgemv_swiglu_q5_k,
       qgemv_swiglu_q8a_q5_k, M, M, H},
      {"Q6_K", 210, 0, 192, 256, qgemv_q6_k, qgemv_q8a_q6_k, qgemv_swiglu_q6_k,
       qgemv_swiglu_q8a_q6_k, M, M, H},
  };
  printf("kernel-sim-check: WAVE=%d\n", WAVE);
  for (const Type& t : types) {
    bool want = argc == a0 + 1;
    for (int i = a0 + 1; i < argc; ++i) want |= strcmp(argv[i], t.name) == 0;
    if (want) check_type(t, dir);
  }
  return finish();
}
