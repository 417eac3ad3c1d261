// kernels/gemv.hip's one-row and several-row GEMVs over 16-bit weights run whole on the host
// (ci/kernel-sim.h: every thread of a block a fiber, real barriers and wave shuffles at WAVE
// lanes), at the launches the engine makes (ops/gemv.rs: GEMV_BLOCK threads, row groups of one
// row a wave, grid n_in · blocks; the several-row kernels after gemv_stage_{T}), for f16 and
// bf16 weights, with K on every path (staged in LDS and kept in registers, staged past the
// kept vectors, a scalar tail and rows off 16 bytes, too long to stage; x off 16 bytes), and
// the matrix-core forms.
// Checked, per type and K:
//   1. the product against Σ w·ã in double, ã the input rounded to the weight type (the
//      BLAS path's arithmetic), within 2Ku·Σ|w·ã|;
//   2. the same bits with the threads run in reverse order between barriers, with 1 and 2
//      blocks looping over the row groups, and for row 0 of a batch of two input rows;
//   3. bias, residual and stacked outputs in one launch: out = r + (y + bias) bit for bit;
//   4. the RMSNorm prologue equals rms_norm (common.h rms_scale, run here) then the plain
//      product, bit for bit;
//   5. gemv_swiglu: act(gate)·up of gemv's sums of the stacked rows, bit for bit (silu,
//      gelu_tanh, with the norm), and the same bits in reverse order and with one block;
//   6. where the host takes the several-row kernels (K a multiple of 8, everything on 16
//      bytes): gemv_stage + gemv_rows / gemv_swiglu_rows over 11 input rows (two groups of
//      GEMV_NB) give every row the one-row kernel's bits, plain and with the norm.
//   7. the matrix-core forms (gemv_mma_{T}, gemv_swiglu_mma_{T}; K a multiple of 32): against
//      Σ w·ã, the same bits with the inputs staged in LDS by the kernel and by gemv_stage, in
//      reverse thread order, for every row of a batch of 5 and of 16 as for the row alone;
//      bias/residual/stacked, the norm and SwiGLU bit for bit as above. Built with
//      -DWF_SIM_MMA=2 (WAVE=64) or 3 (WAVE=32), on common.h's MFMA or WMMA layouts.
//
// Usage: kernel-sim-gemv-check   Exit status 0 iff every check passed.
// Build: c++ -O2 -std=c++17 -Wno-unknown-pragmas -DWAVE=32 -I kernels -I ci \
//          ci/kernel-sim-gemv-check.cpp   (and -DWAVE=64)

#include "kernel-sim.h"

#include "gemv.hip"

#include "kernel-sim-util.h"

#include <algorithm>

typedef void (*Gemv)(const uint16_t*, const float*, const float*, float, const float*, float*,
                     float*, float*, int, int, int, int, int, int, int);
typedef void (*GemvSwiglu)(const uint16_t*, const float*, const float*, float, float*, int, int,
                           int, int, int);
typedef void (*Stage)(const float*, const float*, float, uint16_t*, int, int);
typedef void (*Rows)(const uint16_t*, const uint16_t*, int, const float*, float*, float*, float*,
                     int, int, int, int, int, int);
typedef void (*SwigluRows)(const uint16_t*, const uint16_t*, int, float*, int, int, int, int);
typedef void (*Mma)(const uint16_t*, const float*, const float*, float, const uint16_t*, int,
                    const float*, float*, float*, float*, int, int, int, int, int, int);
typedef void (*SwigluMma)(const uint16_t*, const float*, const float*, float, const uint16_t*, int,
                          float*, int, int, int, int);

struct Type {
  const char* name;
  Gemv gemv;
  GemvSwiglu swiglu;
  Stage stage;
  Rows rows;
  SwigluRows swiglu_rows;
  Mma mma;
  SwigluMma swiglu_mma;
  uint16_t (*store)(float);
  float (*load)(uint16_t);
};

static const float EPS = 1e-5f;
constexpr int WAVES = GEMV_BLOCK / WAVE;

struct Mat {
  int m, k;
  std::vector<uint16_t> w;  // (m, k) + 8 of padding
  std::vector<float> wf;    // its values
};

static Mat make_mat(const Type& t, int m, int k, uint64_t seed) {
  Mat a{m, k, {}, {}};
  const std::vector<float> v = seeded(m * k, seed, -1.0f, 1.0f);
  a.w.assign((size_t)m * k + 8, 0);
  a.wf.resize((size_t)m * k);
  for (size_t i = 0; i < v.size(); ++i) {
    a.w[i] = t.store(v[i]);
    a.wf[i] = t.load(a.w[i]);
  }
  return a;
}

static void run_gemv(const Type& t, const Mat& a, const Launch& l, std::vector<float>& out) {
  const int groups = (a.m + WAVES - 1) / WAVES;
  const int blocks = l.blocks > 0 ? std::min(l.blocks, groups) : groups;
  Stacked s(out, a.m, l.m0, l.m1, l.m2, l.n_in);
  poison_shared();
  const bool ok = sim::launch((unsigned)(l.n_in * blocks), GEMV_BLOCK, [&] {
    t.gemv(a.w.data(), l.x, l.norm, EPS, l.bias, s.g0.p(), s.g1.p(), s.g2.p(), l.m0, l.m1, l.m2,
           a.k, l.residual, l.n_in, blocks);
  }, l.reverse);
  launched(ok, {&s.g0, &s.g1, &s.g2}, "gemv");
  s.back(out);
}

static void run_swiglu(const Type& t, const Mat& a, const float* x, const float* norm, int act,
                       int blocks_req, bool reverse, std::vector<float>& out) {
  const int inter = a.m / 2, groups = (inter + WAVES - 1) / WAVES;
  const int blocks = blocks_req > 0 ? std::min(blocks_req, groups) : groups;
  Guarded o(inter);
  poison_shared();
  const bool ok = sim::launch((unsigned)blocks, GEMV_BLOCK, [&] {
    t.swiglu(a.w.data(), x, norm, EPS, o.p(), inter, a.k, 1, act, blocks);
  }, reverse);
  launched(ok, {&o}, "gemv_swiglu");
  out.assign(o.p(), o.p() + inter);
}

// gemv_stage_{T} of n_in rows of x (K), then the several-row kernel: gemv_rows (swiglu false;
// out (n_in, m)) or gemv_swiglu_rows (out (n_in, m/2)).
static void run_rows(const Type& t, const Mat& a, const float* x, const float* norm, int n_in,
                     bool swiglu, std::vector<float>& out) {
  const int ks = (a.k + 7) / 8 * 8;
  Guarded xh((size_t)n_in * ks / 2);  // 16-bit values, two a float slot
  bool ok = sim::launch((unsigned)n_in, GEMV_BLOCK, [&] {
    t.stage(x, norm, EPS, (uint16_t*)xh.p(), a.k, ks);
  }, false);
  launched(ok, {&xh}, "gemv_stage");
  const int in_groups = (n_in + GEMV_NB - 1) / GEMV_NB;
  if (!swiglu) {
    const int blocks = (a.m + WAVES * GEMV_NR - 1) / (WAVES * GEMV_NR);
    Guarded o((size_t)n_in * a.m);
    ok = sim::launch((unsigned)(blocks * in_groups), GEMV_BLOCK, [&] {
      t.rows(a.w.data(), (const uint16_t*)xh.p(), ks, nullptr, o.p(), o.p(), o.p(), a.m, 0, 0,
             a.k, 0, n_in);
    }, false);
    launched(ok, {&o}, "gemv_rows");
    out.assign(o.p(), o.p() + (size_t)n_in * a.m);
  } else {
    const int inter = a.m / 2, blocks = (inter + WAVES - 1) / WAVES;
    Guarded o((size_t)n_in * inter);
    ok = sim::launch((unsigned)(blocks * in_groups), GEMV_BLOCK, [&] {
      t.swiglu_rows(a.w.data(), (const uint16_t*)xh.p(), ks, o.p(), inter, a.k, n_in, ACT_SILU);
    }, false);
    launched(ok, {&o}, "gemv_swiglu_rows");
    out.assign(o.p(), o.p() + (size_t)n_in * inter);
  }
}

// Row r's bound 2Ku·Σ|w·ã| (the one oracle_ratio holds the product to).
static double row_bound(const Type& t, const Mat& a, const float* x, int r) {
  double mag = 0.0;
  for (int i = 0; i < a.k; ++i) mag += fabs((double)a.wf[(size_t)r * a.k + i] * t.load(t.store(x[i])));
  return 2.0 * a.k * ldexp(1.0, -24) * mag;
}

// act(gate)·up of gemv's sums gv, uv for one output: bit for bit where the kernel reads the gate
// and up rows as gemv reads them (both on 16 bytes or both off: gemv_swiglu takes its vector
// path only when both are), else within what the two sums' bounds (bg, bu, each kernel within
// its bound of the exact sum) and act's slope (|silu'|, |gelu_tanh'| < 1.2) allow, plus the
// epilogue's roundings.
static bool swiglu_ok(int act, float gv, float uv, float got, bool same_path, double bg,
                      double bu) {
  const float want = (act == ACT_GELU_TANH ? wf_gelu_tanh(gv) : wf_silu(gv)) * uv;
  if (same_path) return memcmp(&want, &got, 4) == 0;
  const double tol = 1.2 * 2.0 * bg * fabs((double)uv) + 1.2 * fabs((double)gv) * 2.0 * bu +
                     4.0 * bg * bu + 8.0 * ldexp(1.0, -24) * fabs((double)want);
  return fabs((double)got - want) <= tol;
}

// gemv_stage_{T} then gemv_rows_{T} with bias, residual (out preset, (n_in, m)) and the rows
// stacked into three outputs (m0 = WAVES − 1, m1 = WAVES + 3, m2 the rest).
static void run_rows_stacked(const Type& t, const Mat& a, const float* x, int n_in,
                             const float* bias, std::vector<float>& out) {
  const int ks = (a.k + 7) / 8 * 8, m0 = WAVES - 1, m1 = WAVES + 3, m2 = a.m - m0 - m1;
  Guarded xh((size_t)n_in * ks / 2);
  bool ok = sim::launch((unsigned)n_in, GEMV_BLOCK, [&] {
    t.stage(x, nullptr, EPS, (uint16_t*)xh.p(), a.k, ks);
  }, false);
  launched(ok, {&xh}, "gemv_stage");
  const int in_groups = (n_in + GEMV_NB - 1) / GEMV_NB;
  const int blocks = (a.m + WAVES * GEMV_NR - 1) / (WAVES * GEMV_NR);
  Stacked s(out, a.m, m0, m1, m2, n_in);
  ok = sim::launch((unsigned)(blocks * in_groups), GEMV_BLOCK, [&] {
    t.rows(a.w.data(), (const uint16_t*)xh.p(), ks, bias, s.g0.p(), s.g1.p(), s.g2.p(), m0, m1,
           m2, a.k, 1, n_in);
  }, false);
  launched(ok, {&s.g0, &s.g1, &s.g2}, "gemv_rows");
  s.back(out);
}

static double oracle_ratio(const Type& t, const Mat& a, const float* x, const std::vector<float>& y,
                           size_t off) {
  double worst = 0.0;
  for (int r = 0; r < a.m; ++r) {
    double exact = 0.0, mag = 0.0;
    for (int i = 0; i < a.k; ++i) {
      const double p = (double)a.wf[(size_t)r * a.k + i] * t.load(t.store(x[i]));
      exact += p;
      mag += fabs(p);
    }
    const double bound = 2.0 * a.k * ldexp(1.0, -24) * mag;
    const double e = fabs((double)y[off + r] - exact);
    const double ratio = e == 0.0 ? 0.0 : (bound > 0.0 ? e / bound : INFINITY);
    if (!(ratio <= worst)) worst = ratio;
  }
  return worst;
}

static void check_type(const Type& t) {
  struct Case {
    int k, x_off;
    const char* what;
  };
  const Case cases[] = {
      {512, 0, "staged, held in registers"},
      {3000, 0, "staged past the kept vectors"},
      {1003, 0, "a scalar tail, rows off 16 bytes"},
      {16392, 0, "too long to stage"},
      {520, 1, "x off 16 bytes"},
  };
  for (const Case& c : cases) {
    const int k = c.k, m = 2 * WAVES + 5;
    const std::string tag = std::string("gemv_") + t.name + " K=" + std::to_string(k) + " (" +
                            c.what + ")";
    const Mat a = make_mat(t, m, k, 11 + k);
    // x at an offset of x_off floats from 16 bytes (the norm weights likewise).
    std::vector<float> xb = seeded(2 * k + 8, 21 + k, -1.0f, 1.0f), gb = seeded(k + 8, 22, 0.5f, 1.5f);
    const float* x = xb.data() + c.x_off;
    const float* x2 = xb.data() + c.x_off + k;  // a second input row right after the first
    const float* g = gb.data() + c.x_off;
    const std::vector<float> bias = seeded(m, 23, -1.0f, 1.0f), r0 = seeded(m, 24, -4.0f, 4.0f);
    std::vector<float> y(m, nanf(""));
    run_gemv(t, a, Launch(x, m), y);
    const double ratio = oracle_ratio(t, a, x, y, 0);
    check(ratio <= 1.0, tag + ": every row within 2Ku·Σ|w·ã| of Σ w·ã (worst " + fmt(ratio) +
                            " of it)");
    {
      std::vector<float> yr(m, nanf("")), y1(m, nanf("")), y2(m, nanf(""));
      Launch l(x, m);
      l.reverse = true;
      run_gemv(t, a, l, yr);
      l.reverse = false;
      l.blocks = 1;
      run_gemv(t, a, l, y1);
      l.blocks = 2;
      run_gemv(t, a, l, y2);
      check(same_bits(y, yr, m) && same_bits(y, y1, m) && same_bits(y, y2, m),
            tag + ": the same bits in reverse thread order and with 1 and 2 blocks");
    }
    {
      std::vector<float> yy(2 * (size_t)m, nanf(""));
      Launch l(x, m);
      l.n_in = 2;
      run_gemv(t, a, l, yy);
      const double r2 = oracle_ratio(t, a, x2, yy, m);
      check(same_bits(y, yy, m) && r2 <= 1.0,
            tag + ": two input rows: row 0 the one-row bits, row 1 within its bound (" + fmt(r2) +
                ")");
    }
    {
      std::vector<float> ys(r0);
      Launch l(x, WAVES - 1);
      l.m1 = WAVES + 3;
      l.m2 = m - l.m0 - l.m1;
      l.bias = bias.data();
      l.residual = 1;
      run_gemv(t, a, l, ys);
      const size_t bad = epilogue_misses(r0.data(), y.data(), bias.data(), ys.data(), m);
      check(bad == 0, tag + ": stacked into 3 outputs with bias and residual: r + (y + bias) "
                            "bit for bit (" + std::to_string(bad) + " differ)");
    }
    const float s = norm_scale(x, k, EPS);
    std::vector<float> an(k);
    for (int i = 0; i < k; ++i) an[i] = g[i] * (x[i] * s);
    std::vector<float> ya(m, nanf("")), yn(m, nanf(""));
    {
      Launch l(x, m);
      l.norm = g;
      run_gemv(t, a, l, yn);
      run_gemv(t, a, Launch(an.data(), m), ya);
      check(same_bits(ya, yn, m) && std::isfinite(s) && s > 0.0f,
            tag + ": the norm prologue equals rms_norm then the product, bit for bit");
    }
    // gemv_swiglu over the same rows as [W_g; W_u] (m even: one row dropped).
    {
      const int inter = (m - 1) / 2;
      Mat w2 = a;
      w2.m = 2 * inter;
      std::vector<float> rows_y(y.begin(), y.begin() + 2 * inter), rows_n(ya.begin(), ya.begin() + 2 * inter);
      const std::string st = std::string("gemv_swiglu_") + t.name + " K=" + std::to_string(k) +
                             " (" + c.what + ")";
      // Whether output i's gate and up rows take the same path (both on 16 bytes or neither).
      auto same_path = [&](int i) {
        return ((size_t)i * k % 8 == 0) == ((size_t)(inter + i) * k % 8 == 0);
      };
      int mixed = 0;
      for (int i = 0; i < inter; ++i) mixed += !same_path(i);
      const std::string how = mixed ? " (bit for bit but " + std::to_string(mixed) +
                                          " outputs with one row on 16 bytes: within the sums' bounds)"
                                    : " bit for bit";
      for (const int act : {ACT_SILU, ACT_GELU_TANH}) {
        std::vector<float> o;
        run_swiglu(t, w2, x, nullptr, act, 0, false, o);
        size_t bad = 0;
        for (int i = 0; i < inter; ++i) {
          bad += !swiglu_ok(act, rows_y[i], rows_y[inter + i], o[i], same_path(i),
                            row_bound(t, a, x, i), row_bound(t, a, x, inter + i));
        }
        check(bad == 0, st + (act == ACT_SILU ? " silu" : " gelu_tanh") +
                            ": act(gate)·up of gemv's sums" + how + " (" + std::to_string(bad) +
                            " differ)");
      }
      std::vector<float> o1, o2, o3, on;
      run_swiglu(t, w2, x, nullptr, ACT_SILU, 0, false, o1);
      run_swiglu(t, w2, x, nullptr, ACT_SILU, 0, true, o2);
      run_swiglu(t, w2, x, nullptr, ACT_SILU, 1, false, o3);
      run_swiglu(t, w2, x, g, ACT_SILU, 0, false, on);
      size_t bad = 0;
      for (int i = 0; i < inter; ++i) {
        bad += !swiglu_ok(ACT_SILU, rows_n[i], rows_n[inter + i], on[i], same_path(i),
                          row_bound(t, a, an.data(), i), row_bound(t, a, an.data(), inter + i));
      }
      check(same_bits(o1, o2, inter) && same_bits(o1, o3, inter) && bad == 0,
            st + ": the same bits in reverse order and with one block; with the norm, act(gate)·up "
                 "of the normed rows' sums" + how + " (" + std::to_string(bad) + " differ)");
      // The several-row kernels, where the host takes them.
      if (k % 8 == 0 && c.x_off == 0 && k <= 65536) {
        const int n_in = 11;
        std::vector<float> xs = seeded(n_in * k, 31 + k, -1.0f, 1.0f);
        std::vector<float> rows_out, sw_out, rows_norm;
        run_rows(t, a, xs.data(), nullptr, n_in, false, rows_out);
        run_rows(t, w2, xs.data(), nullptr, n_in, true, sw_out);
        run_rows(t, a, xs.data(), g, n_in, false, rows_norm);
        const std::vector<float> rs = seeded(n_in * m, 32, -4.0f, 4.0f);
        std::vector<float> rows_st(rs);
        run_rows_stacked(t, a, xs.data(), n_in, bias.data(), rows_st);
        size_t bad_rows = 0, bad_sw = 0, bad_norm = 0, bad_st = 0;
        for (int i = 0; i < n_in; ++i) {
          const float* xi = xs.data() + (size_t)i * k;
          std::vector<float> one(m, nanf("")), one_n(m, nanf("")), one_sw;
          run_gemv(t, a, Launch(xi, m), one);
          Launch ln(xi, m);
          ln.norm = g;
          run_gemv(t, a, ln, one_n);
          run_swiglu(t, w2, xi, nullptr, ACT_SILU, 0, false, one_sw);
          bad_rows += !same_bits(one, rows_out, m, 0, (size_t)i * m);
          bad_norm += !same_bits(one_n, rows_norm, m, 0, (size_t)i * m);
          bad_sw += !same_bits(one_sw, sw_out, inter, 0, (size_t)i * inter);
          bad_st += epilogue_misses(rs.data() + (size_t)i * m, one.data(), bias.data(),
                                    rows_st.data() + (size_t)i * m, m);
        }
        check(bad_rows == 0 && bad_norm == 0 && bad_sw == 0 && bad_st == 0,
              std::string("gemv_stage + gemv_rows / gemv_swiglu_rows_") + t.name + " K=" +
                  std::to_string(k) + ", 11 input rows: each row the one-row kernel's bits "
                  "(plain, normed, swiglu: " + std::to_string(bad_rows) + ", " +
                  std::to_string(bad_norm) + ", " + std::to_string(bad_sw) + " rows differ; "
                  "stacked with bias and residual, r + (y + bias): " + std::to_string(bad_st) +
                  " values differ)");
      }
    }
  }
}

// The matrix-core forms (ops/gemv.rs mma_inputs): n_in rows of x staged by the kernel in LDS
// when n_in·K ≤ GEMV_LDS_MAX and `lds`, else by gemv_stage_{T} (xh); grid (tiles of 16 weight
// rows, or 8 outputs, × input groups of 16). Plain (out (n_in, m), with bias, residual and
// the stacked outputs when `stacked`) or SwiGLU (out (n_in, m/2)).
struct MmaRun {
  const float* x;
  const float* norm = nullptr;
  const float* bias = nullptr;
  int n_in = 1;
  bool lds = true, swiglu = false, stacked = false, reverse = false;
  int act = ACT_SILU;
};

static void run_mma(const Type& t, const Mat& a, const MmaRun& r, std::vector<float>& out) {
  const int ks = (a.k + 7) / 8 * 8, groups = (r.n_in + GEMV_MMA_NB - 1) / GEMV_MMA_NB;
  const bool in_lds = r.lds && (size_t)r.n_in * a.k <= (size_t)GEMV_LDS_MAX;
  Guarded xh((size_t)r.n_in * ks / 2 + 1);
  if (!in_lds) {
    const bool ok = sim::launch((unsigned)r.n_in, GEMV_BLOCK, [&] {
      t.stage(r.x, r.norm, EPS, (uint16_t*)xh.p(), a.k, ks);
    }, false);
    launched(ok, {&xh}, "gemv_stage");
  }
  const uint16_t* xhp = in_lds ? nullptr : (const uint16_t*)xh.p();
  poison_shared();
  if (r.swiglu) {
    const int inter = a.m / 2, tiles = (inter + GEMV_MMA_NB / 2 - 1) / (GEMV_MMA_NB / 2);
    Guarded o((size_t)r.n_in * inter);
    const bool ok = sim::launch((unsigned)(tiles * groups), GEMV_BLOCK, [&] {
      t.swiglu_mma(a.w.data(), r.x, r.norm, EPS, xhp, ks, o.p(), inter, a.k, r.n_in, r.act);
    }, r.reverse);
    launched(ok, {&o}, "gemv_swiglu_mma");
    out.assign(o.p(), o.p() + (size_t)r.n_in * inter);
    return;
  }
  const int tiles = (a.m + GEMV_MMA_NB - 1) / GEMV_MMA_NB;
  const int m0 = r.stacked ? 17 : a.m, m1 = r.stacked ? 5 : 0, m2 = a.m - m0 - m1;
  Stacked st(out, a.m, m0, m1, m2, r.n_in);
  const bool ok = sim::launch((unsigned)(tiles * groups), GEMV_BLOCK, [&] {
    t.mma(a.w.data(), r.x, r.norm, EPS, xhp, ks, r.bias, st.g0.p(), st.g1.p(), st.g2.p(), m0, m1,
          m2, a.k, r.stacked ? 1 : 0, r.n_in);
  }, r.reverse);
  launched(ok, {&st.g0, &st.g1, &st.g2}, "gemv_mma");
  st.back(out);
}

// The matrix-core forms: against Σ w·ã, in LDS and staged alike, each row of a batch its
// one-row launch's bits, thread order, bias/residual/stacked, the norm, SwiGLU.
static void check_mma(const Type& t) {
  for (const int k : {512, 3008, 16416}) {
    const int m = 3 * GEMV_MMA_NB + 5, inter = m / 2;
    const std::string tag = std::string("gemv_mma_") + t.name + " K=" + std::to_string(k);
    const Mat a = make_mat(t, m, k, 61 + k);
    Mat w2 = a;
    w2.m = 2 * inter;
    const int n_in = GEMV_MMA_NB;  // the most rows the host gives them (GEMV_MAX_ROWS)
    const std::vector<float> xs = seeded(n_in * k, 62, -1.0f, 1.0f), g = seeded(k, 63, 0.5f, 1.5f);
    const std::vector<float> bias = seeded(m, 64, -1.0f, 1.0f), r0 = seeded(n_in * m, 65, -4.0f, 4.0f);
    // one row, in LDS and staged
    std::vector<float> y(m, nanf("")), ys(m, nanf("")), yr(m, nanf(""));
    MmaRun r{xs.data()};
    run_mma(t, a, r, y);
    const double ratio = oracle_ratio(t, a, xs.data(), y, 0);
    r.lds = false;
    run_mma(t, a, r, ys);
    r.lds = true;
    r.reverse = true;
    run_mma(t, a, r, yr);
    r.reverse = false;
    check(ratio <= 1.0 && same_bits(y, ys, m) && same_bits(y, yr, m),
          tag + ": within 2Ku·Σ|w·ã| of Σ w·ã (worst " + fmt(ratio) + " of it); the same bits "
                "staged by gemv_stage and in reverse thread order");
    // a batch: every row its one-row launch's bits (5 rows and 16: one group, then 16 rows)
    size_t bad = 0;
    for (const int rows : {5, n_in}) {
      std::vector<float> yy((size_t)rows * m, nanf(""));
      MmaRun rb{xs.data()};
      rb.n_in = rows;
      run_mma(t, a, rb, yy);
      for (int i = 0; i < rows; ++i) {
        std::vector<float> one(m, nanf(""));
        run_mma(t, a, MmaRun{xs.data() + (size_t)i * k}, one);
        bad += !same_bits(one, yy, m, 0, (size_t)i * m);
      }
    }
    check(bad == 0, tag + ": 5 and " + std::to_string(n_in) + " input rows: each row the "
                          "one-row launch's bits (" + std::to_string(bad) + " rows differ)");
    // bias, residual, stacked; the norm
    {
      std::vector<float> yst(r0.begin(), r0.begin() + m);
      MmaRun rs{xs.data()};
      rs.bias = bias.data();
      rs.stacked = true;
      run_mma(t, a, rs, yst);
      const size_t badst = epilogue_misses(r0.data(), y.data(), bias.data(), yst.data(), m);
      const float sc = norm_scale(xs.data(), k, EPS);
      std::vector<float> an(k);
      for (int i = 0; i < k; ++i) an[i] = g[i] * (xs[i] * sc);
      std::vector<float> yn(m, nanf("")), ya(m, nanf(""));
      MmaRun rn{xs.data()};
      rn.norm = g.data();
      run_mma(t, a, rn, yn);
      run_mma(t, a, MmaRun{an.data()}, ya);
      check(badst == 0 && same_bits(yn, ya, m),
            tag + ": stacked with bias and residual r + (y + bias) bit for bit (" +
                std::to_string(badst) + " differ); the norm prologue equals rms_norm then the "
                "product");
    }
    // SwiGLU: act(gate)·up of gemv_mma's sums of the same rows
    for (const int act : {ACT_SILU, ACT_GELU_TANH}) {
      std::vector<float> o;
      MmaRun rw{xs.data()};
      rw.swiglu = true;
      rw.act = act;
      run_mma(t, w2, rw, o);
      size_t badw = 0;
      for (int i = 0; i < inter; ++i) {
        const float gv = y[i], uv = y[inter + i];
        const float want = (act == ACT_GELU_TANH ? wf_gelu_tanh(gv) : wf_silu(gv)) * uv;
        badw += memcmp(&want, &o[i], 4) != 0;
      }
      check(badw == 0, std::string("gemv_swiglu_mma_") + t.name + " K=" + std::to_string(k) +
                           (act == ACT_SILU ? " silu" : " gelu_tanh") +
                           ": act(gate)·up of gemv_mma's sums bit for bit (" +
                           std::to_string(badw) + " differ)");
    }
  }
}

static uint16_t f16_store(float v) { return F16::store(v); }
static float f16_load(uint16_t h) { return F16::load(h); }
static uint16_t bf16_store(float v) { return BF16::store(v); }
static float bf16_load(uint16_t h) { return BF16::load(h); }

int main() {
  printf("kernel-sim-gemv-check: WAVE=%d\n", WAVE);
  const Type types[] = {
      {"f16", gemv_f16, gemv_swiglu_f16, gemv_stage_f16, gemv_rows_f16, gemv_swiglu_rows_f16,
       gemv_mma_f16, gemv_swiglu_mma_f16, f16_store, f16_load},
      {"bf16", gemv_bf16, gemv_swiglu_bf16, gemv_stage_bf16, gemv_rows_bf16,
       gemv_swiglu_rows_bf16, gemv_mma_bf16, gemv_swiglu_mma_bf16, bf16_store, bf16_load},
  };
  for (const Type& t : types) {
    check_type(t);
    check_mma(t);
  }
  return finish();
}
