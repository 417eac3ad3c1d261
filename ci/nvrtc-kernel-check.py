#!/usr/bin/env python3
"""Runs every kernel in kernels/ on an NVIDIA GPU against NumPy references, for WAVE=32 (native)
and WAVE=64 (the 64-lane wave emulated by common.h), compiled by NVRTC the way the engine does:
the .hip file as the program, common.h as an in-memory header, options
--gpu-architecture=sm_XY -DWAVE=W, and launched with the ABI's grid and block.

This is the kernels' own check, for use before (and beside) the Rust conformance suite: it needs
an NVIDIA GPU, CuPy and cuda-python (cuda.bindings), none of which CI has. Every output buffer
is poisoned with NaN and surrounded by guard elements that must come back untouched; inputs are
never zeros; the KV arena outside the positions a kernel may touch is NaN, so a read outside the
causal window poisons the result.

Usage: python3 ci/nvrtc-kernel-check.py [--kernels DIR] [--wave 32] [--wave 64]
Prints one line per check and "N passed, M failed"; exit status 0 iff none failed.
"""

import argparse
import os
import sys
import tempfile

import cupy as cp
import ml_dtypes
import numpy as np
from cuda.bindings import nvrtc

GUARD = 16  # elements on each side of every device buffer
GUARD_BITS32 = 0x7FC0DEAD  # a NaN pattern no kernel writes
GUARD_BITS16 = 0x7E5A

RESULTS = {"pass": 0, "fail": 0}


def check(ok, what):
    RESULTS["pass" if ok else "fail"] += 1
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    return ok


# --- compilation ------------------------------------------------------------------------------


def compile_module(path, common_h, wave, arch, tmpdir):
    src = open(path, "rb").read()
    err, prog = nvrtc.nvrtcCreateProgram(src, os.path.basename(path).encode(), 1,
                                         [common_h], [b"common.h"])
    assert err == nvrtc.nvrtcResult.NVRTC_SUCCESS, err
    opts = [f"--gpu-architecture={arch}".encode(), f"-DWAVE={wave}".encode()]
    (err,) = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
    _, log_size = nvrtc.nvrtcGetProgramLogSize(prog)
    log = b" " * log_size
    nvrtc.nvrtcGetProgramLog(prog, log)
    log = log.decode(errors="replace").strip("\x00 \n")
    if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        raise RuntimeError(f"NVRTC failed on {path} WAVE={wave}:\n{log}")
    _, size = nvrtc.nvrtcGetCUBINSize(prog)
    cubin = b" " * size
    nvrtc.nvrtcGetCUBIN(prog, cubin)
    out = os.path.join(tmpdir, f"{os.path.basename(path)}.{wave}.cubin")
    open(out, "wb").write(cubin)
    return cp.RawModule(path=out), log


# --- buffers with guards ----------------------------------------------------------------------


class Buf:
    """A device array `view` of n elements inside guards; `shift` moves the view by elements
    (to make it misaligned). Output buffers start as NaN."""

    def __init__(self, host, shift=0):
        host = np.ascontiguousarray(host)
        self.dtype = host.dtype
        n = host.size
        bits = GUARD_BITS32 if self.dtype.itemsize == 4 else GUARD_BITS16
        udt = np.uint32 if self.dtype.itemsize == 4 else np.uint16
        self.base = cp.asarray(np.full(n + 2 * GUARD + shift, bits, dtype=udt).view(self.dtype))
        self.lo = GUARD + shift
        self.view = self.base[self.lo:self.lo + n]
        self.view[...] = cp.asarray(host.reshape(-1))
        self.n = n
        self.bits = bits
        self.udt = udt

    @classmethod
    def poisoned(cls, n, dtype=np.float32, shift=0):
        dtype = np.dtype(dtype)
        nan = np.full(n, np.nan, np.float32).astype(dtype) if dtype.kind == "f" else \
            np.full(n, 0x7E00, dtype)
        return cls(nan, shift)

    def get(self):
        return cp.asnumpy(self.view)

    def guards_ok(self):
        b = cp.asnumpy(self.base).view(self.udt)
        return bool(np.all(b[:self.lo] == self.bits) and np.all(b[self.lo + self.n:] == self.bits))


RNG = np.random.default_rng(1234)


def randn(*shape):
    """Normal f32 values, never exactly zero."""
    x = RNG.standard_normal(shape).astype(np.float32)
    x[x == 0] = 0.5
    return x


def to_kv(x32, kv):
    """f32 → KV storage (uint16 bits for 16-bit types), round to nearest even (NumPy/ml_dtypes)."""
    if kv == "f32":
        return x32.astype(np.float32)
    if kv == "f16":
        return x32.astype(np.float16).view(np.uint16)
    return x32.astype(ml_dtypes.bfloat16).view(np.uint16)


def from_kv(s, kv):
    if kv == "f32":
        return s.astype(np.float32)
    if kv == "f16":
        return s.view(np.float16).astype(np.float32)
    return (s.astype(np.uint32) << 16).view(np.float32)


def kv_np_dtype(kv):
    return np.float32 if kv == "f32" else np.uint16


def nmse(got, want):
    got = got.astype(np.float64)
    want = want.astype(np.float64)
    return float(np.sum((got - want) ** 2) / max(np.sum(want ** 2), 1e-300))


i32, i64, f32 = np.int32, np.int64, np.float32

# --- ops --------------------------------------------------------------------------------------


def test_embedding(mod, tag):
    for kv in ("f32", "f16", "bf16"):
        fn = mod.get_function(f"embedding_{kv}")
        for hidden, shift in ((64, 0), (67, 0), (576, 0), (64, 1)):
            vocab, n_tok = 37, 6
            table = to_kv(randn(vocab, hidden), kv)
            tokens = np.array([0, 36, 5, 5, 17, 2], np.int32)
            t, tk = Buf(table), Buf(tokens)
            out = Buf.poisoned(n_tok * hidden, shift=shift)
            fn((n_tok,), (256,), (t.view, tk.view, out.view, i32(n_tok), i32(hidden), i32(vocab)))
            want = from_kv(table[tokens].reshape(-1), kv)
            got = out.get()
            check(np.array_equal(got.view(np.uint32), want.view(np.uint32)) and out.guards_ok(),
                  f"{tag} embedding_{kv} hidden={hidden} shift={shift}")


def test_rms_norm(mod, tag):
    fn = mod.get_function("rms_norm")
    for rows, dim, res, shift in ((1, 64, True, 0), (3, 67, True, 0), (5, 576, False, 0),
                                  (2, 2051, True, 0), (3, 576, True, 1)):
        eps = 1e-5
        x, r, w = randn(rows, dim), randn(rows, dim), randn(dim)
        bx, bw = Buf(x, shift), Buf(w)
        br = Buf(r) if res else None
        out = Buf.poisoned(rows * dim)
        null = np.uint64(0)  # a null pointer argument
        fn((rows,), (256,), (bx.view, br.view if res else null, bw.view, out.view, i32(rows),
                             i32(dim), f32(eps)))
        xs = (x + r) if res else x  # f32 add, as the kernel
        xd = xs.astype(np.float64)
        want = w * (xd / np.sqrt(np.mean(xd * xd, axis=1, keepdims=True) + eps))
        got = out.get().reshape(rows, dim)
        x_back = bx.get().reshape(rows, dim)
        rel = np.max(np.abs(got - want) / (np.abs(want) + 1e-30))
        ok = (np.array_equal(x_back, xs) and rel < 2e-6 and nmse(got, want) < 1e-12
              and bx.guards_ok() and out.guards_ok())
        check(ok, f"{tag} rms_norm rows={rows} dim={dim} residual={res} shift={shift} "
                  f"max_rel={rel:.2e}")


def rope_ref(x, pos, inv_freq):
    """x (n, head_dim) f32 rotated in f64 from the f32 angle (exact rotation of the inputs)."""
    half = x.shape[-1] // 2
    ang = (np.float32(pos) * inv_freq).astype(np.float64)  # the f32 product, as the kernel
    s, c = np.sin(ang), np.cos(ang)
    a, b = x[..., :half].astype(np.float64), x[..., half:].astype(np.float64)
    return np.concatenate([a * c - b * s, b * c + a * s], axis=-1)


def arena_offset(layer, kv, h, pos, n_kv, cap, hd):
    return (((layer * 2 + kv) * n_kv + h) * cap + pos) * hd


def test_rope(mod, tag):
    # (n_heads, n_kv_heads, head_dim, rows, pos0, capacity, layer, n_layers)
    cases = [(4, 2, 64, 3, 0, 16, 1, 2), (6, 2, 80, 5, 7, 20, 0, 1), (3, 3, 6, 2, 3, 8, 0, 1),
             (4, 1, 96, 2, 9, 12, 2, 3), (2, 1, 64, 3, 199990, 200000, 0, 1)]
    for kv in ("f32", "f16", "bf16"):
        fn = mod.get_function(f"rope_kv_write_{kv}")
        for nh, nkv, hd, rows, pos0, cap, layer, nl in cases:
            half = hd // 2
            inv = (1.0 / (10000.0 ** (np.arange(half, dtype=np.float32) * 2 / hd))).astype(f32)
            q, k, v = randn(rows, nh, hd), randn(rows, nkv, hd), randn(rows, nkv, hd)
            bq, bk, bv, bi = Buf(q), Buf(k), Buf(v), Buf(inv)
            n_arena = 2 * nl * nkv * cap * hd
            sentinel = np.full(n_arena, GUARD_BITS32 if kv == "f32" else GUARD_BITS16,
                               np.uint32 if kv == "f32" else np.uint16)
            ba = Buf(sentinel.view(np.float32) if kv == "f32" else sentinel)
            fn((rows,), (256,), (bq.view, bk.view, bv.view, bi.view, ba.view, i32(layer),
                                 i32(pos0), i32(rows), i32(nh), i32(nkv), i32(hd), i32(cap),
                                 np.uint64(0)))  # no step block: pos0 as given
            arena = ba.get()
            arena_bits = arena.view(np.uint32) if kv == "f32" else arena
            written = np.zeros(n_arena, bool)
            q_err = k_err = 0.0
            v_exact = True
            for i in range(rows):
                pos = pos0 + i
                qw = rope_ref(q[i], pos, inv)
                q_err = max(q_err, float(np.max(np.abs(bq.get().reshape(rows, nh, hd)[i] - qw)
                                                / (np.abs(q[i]).max() + 1e-30))))
                kw = rope_ref(k[i], pos, inv)
                for h in range(nkv):
                    ko = arena_offset(layer, 0, h, pos, nkv, cap, hd)
                    vo = arena_offset(layer, 1, h, pos, nkv, cap, hd)
                    written[ko:ko + hd] = written[vo:vo + hd] = True
                    kg = from_kv(arena[ko:ko + hd], kv).astype(np.float64)
                    # the kernel rounds its f32 result once to the KV type: allow one unit of
                    # that type's rounding (relative 2^-24 f32, 2^-11 f16, 2^-8 bf16) plus f32 noise
                    unit = {"f32": 2.0 ** -24, "f16": 2.0 ** -11, "bf16": 2.0 ** -8}[kv]
                    k_err = max(k_err, float(np.max(np.abs(kg - kw[h]) /
                                                    (np.abs(kw[h]) * unit + 4e-7 * np.abs(k[i, h]).max()))))
                    v_exact &= np.array_equal(arena[vo:vo + hd], to_kv(v[i, h], kv))
            untouched = np.all(arena_bits[~written] == (GUARD_BITS32 if kv == "f32" else GUARD_BITS16))
            ok = (q_err < 4e-7 and k_err <= 1.0 + 1e-9 and v_exact and untouched
                  and bq.guards_ok() and ba.guards_ok())
            check(ok, f"{tag} rope_kv_write_{kv} heads={nh}/{nkv} hd={hd} rows={rows} pos0={pos0} "
                      f"q_err={q_err:.2e} k_err={k_err:.2f} v_exact={v_exact} untouched={untouched}")


def test_attention(mod, tag):
    # (n_heads, n_kv_heads, head_dim, rows, pos0, capacity)
    cases = [(4, 4, 64, 3, 0, 8), (6, 2, 80, 5, 4, 16), (8, 2, 128, 1, 512, 520),
             (3, 1, 96, 4, 9, 16), (2, 1, 256, 2, 30, 40), (4, 1, 32, 7, 0, 8), (2, 2, 33, 2, 3, 8)]
    layer, nl = 1, 2
    for kv in ("f32", "f16", "bf16"):
        fn = mod.get_function(f"attention_{kv}")
        for nh, nkv, hd, rows, pos0, cap in cases:
            keys_total = pos0 + rows
            arena32 = np.full((nl, 2, nkv, cap, hd), np.nan, np.float32)
            arena32[layer, :, :, :keys_total, :] = randn(2, nkv, keys_total, hd)
            store = to_kv(arena32.reshape(-1), kv)
            vals = from_kv(store, kv).reshape(nl, 2, nkv, cap, hd).astype(np.float64)
            q = randn(rows, nh, hd)
            scale = np.float32(1.0 / np.sqrt(np.float32(hd)))
            bq, ba = Buf(q), Buf(store)
            out = Buf.poisoned(rows * nh * hd)
            fn((nh, rows), (1024,), (bq.view, ba.view, out.view, i32(layer), i32(pos0), i32(rows),
                                    i32(nh), i32(nkv), i32(hd), i32(cap), scale,
                                    np.uint64(0)))  # no step block: pos0 as given
            want = np.zeros((rows, nh, hd))
            for i in range(rows):
                n_keys = pos0 + i + 1
                for h in range(nh):
                    g = h // (nh // nkv)
                    K, V = vals[layer, 0, g, :n_keys], vals[layer, 1, g, :n_keys]
                    s = K @ q[i, h].astype(np.float64) * float(scale)
                    p = np.exp(s - s.max())
                    want[i, h] = (p / p.sum()) @ V
            got = out.get().reshape(rows, nh, hd)
            e = nmse(got, want)
            ok = np.all(np.isfinite(got)) and e < 1e-11 and out.guards_ok()
            check(ok, f"{tag} attention_{kv} heads={nh}/{nkv} hd={hd} rows={rows} pos0={pos0} "
                      f"nmse={e:.2e}")


def test_elementwise(mod, tag):
    for n in (1, 255, 256, 257, 100003):
        g, u = randn(n) * 4, randn(n)
        bg, bu, out = Buf(g), Buf(u), Buf.poisoned(n)
        grid = ((n + 255) // 256,)
        mod.get_function("swiglu")(grid, (256,), (bg.view, bu.view, out.view, i64(n)))
        gd = g.astype(np.float64)
        want = gd / (1 + np.exp(-gd)) * u
        rel = float(np.max(np.abs(out.get() - want) / np.abs(want)))
        check(rel < 1e-6 and out.guards_ok(), f"{tag} swiglu n={n} max_rel={rel:.2e}")

        x, y = randn(n), randn(n)
        bx, by = Buf(x), Buf(y)
        mod.get_function("add")(grid, (256,), (bx.view, by.view, i64(n)))
        check(np.array_equal(bx.get(), x + y) and bx.guards_ok(), f"{tag} add n={n}")
    for rows, cols in ((1, 1), (3, 7), (5, 256), (17, 1000)):
        o, b = randn(rows, cols), randn(cols)
        bo, bb = Buf(o), Buf(b)
        n = rows * cols
        mod.get_function("bias_add")(((n + 255) // 256,), (256,), (bo.view, bb.view, i32(rows),
                                                                   i32(cols)))
        check(np.array_equal(bo.get().reshape(rows, cols), o + b) and bo.guards_ok(),
              f"{tag} bias_add rows={rows} cols={cols}")


def special_f32():
    bits = np.array([0x00000000, 0x80000000, 0x00000001, 0x33000000, 0x33000001, 0x387FC000,
                     0x38800000, 0x477FE000, 0x477FEFFF, 0x477FF000, 0x7F7F8000, 0x7F7FFFFF,
                     0x7F800000, 0xFF800000, 0x3F808000, 0x3F818000, 0x3F8FF000], np.uint32)
    return np.concatenate([bits.view(np.float32), randn(5000) * 100, randn(5000) * 1e-6])


def test_convert(mod, tag):
    x = special_f32()
    n = x.size
    grid = ((n + 255) // 256,)
    for kv in ("f16", "bf16"):
        bi, out = Buf(x), Buf.poisoned(n, np.uint16)
        mod.get_function(f"convert_f32_to_{kv}")(grid, (256,), (bi.view, out.view, i64(n)))
        check(np.array_equal(out.get(), to_kv(x, kv)) and out.guards_ok(),
              f"{tag} convert_f32_to_{kv} n={n} (subnormals, ties, overflow, inf)")
    nan_in = np.array([np.nan, -np.nan], np.float32)
    for kv in ("f16", "bf16"):
        bi, out = Buf(nan_in), Buf.poisoned(2, np.uint16)
        mod.get_function(f"convert_f32_to_{kv}")((1,), (256,), (bi.view, out.view, i64(2)))
        check(np.all(np.isnan(from_kv(out.get(), kv))) and out.guards_ok(),
              f"{tag} convert_f32_to_{kv} NaN stays NaN")


def argmax_ref(x):
    """The reference sampler's greedy choice, or -1 where it refuses the logits (a NaN, a
    +inf, every value -inf, none at all)."""
    if x.size == 0 or np.isnan(x).any() or (x == np.inf).any() or (x == -np.inf).all():
        return -1
    return int(np.flatnonzero(x == x.max())[0])


def test_sampling(mod, tag):
    fn = mod.get_function("argmax")
    cases = []
    for n in (1, 3, 113, 1023, 1024, 1025, 100003):
        cases.append((f"random n={n}", randn(n)))
    t = randn(5000)
    t[[4000, 17, 2500]] = 9.0
    cases.append(("ties at 17/2500/4000", t))
    t = randn(3000)
    t[0] = np.nan
    t[1234] = np.nan
    cases.append(("NaN at 0 and 1234", t))
    cases.append(("all -inf", np.full(777, -np.inf, np.float32)))
    cases.append(("all NaN", np.full(50, np.nan, np.float32)))
    cases.append(("n=0", np.zeros(0, np.float32)))
    t = np.full(4096, -np.inf, np.float32)
    t[100] = np.nan
    t[3000] = -1e30
    cases.append(("-inf, NaN, one finite", t))
    t = randn(1500)
    t[900] = np.inf
    cases.append(("+inf at 900", t))
    t = np.full(999, -np.inf, np.float32)
    t[998] = -3.0
    cases.append(("-inf but the last", t))
    t = randn(2048)
    t[[1500, 7]] = 0.0
    t[:] = np.minimum(t, 0.0)
    t[7] = -0.0
    cases.append(("max is ±0 at 7 and 1500", t))
    for shift in (0, 1):
        for name, x in cases:
            bx, out = Buf(x, shift), Buf(np.array([-7], np.int32))
            fn((1,), (1024,), (bx.view, i32(x.size), out.view))
            got, want = int(out.get()[0]), argmax_ref(x)
            check(got == want and out.guards_ok(),
                  f"{tag} argmax {name} shift={shift}: {got} (want {want})")


# A probe of common.h's logical wave (not an op: compiled from this string). Every result is
# exact, so a wrong lane mapping shows even where a reduction's total would hide it.
WAVE_PROBE = b"""
#include "common.h"
extern "C" __global__ void __launch_bounds__(256)
    wave_probe(const float* vals, int* lanes, float* shfl, int* ishfl, float* sums, float* bsums,
               float* bmax) {
  const int t = thread_index();
  lanes[2 * t] = wave_lane();
  lanes[2 * t + 1] = wave_index();
  int k = 0;
  for (int m = 1; m < WAVE; m <<= 1, ++k) shfl[t * 6 + k] = wave_shfl_xor(vals[t], m);
  ishfl[t] = wave_shfl_xor(t * 7 + 1, WAVE / 2);
  sums[t] = wave_sum(vals[t]);
  bsums[t] = block_sum<256>(vals[t]);
  bmax[t] = block_max<256>(vals[t]);
}
"""


def test_wave(common_h, wave, arch, tmp):
    tag = f"[WAVE={wave} common.h]"
    path = os.path.join(tmp, "wave_probe.hip")
    open(path, "wb").write(WAVE_PROBE)
    mod, _ = compile_module(path, common_h, wave, arch, tmp)
    n = 256
    vals = randn(n) * np.float32(1000)  # sums whose rounding depends on the order
    bv = Buf(vals)
    lanes, shfl, ishfl = Buf.poisoned(2 * n, np.int32), Buf.poisoned(6 * n), Buf.poisoned(n, np.int32)
    sums, bsums, bmax = Buf.poisoned(n), Buf.poisoned(n), Buf.poisoned(n)
    mod.get_function("wave_probe")((1,), (n,), (bv.view, lanes.view, shfl.view, ishfl.view,
                                                sums.view, bsums.view, bmax.view))
    t = np.arange(n)
    got = lanes.get().reshape(n, 2)
    check(np.array_equal(got[:, 0], t % wave) and np.array_equal(got[:, 1], t // wave),
          f"{tag} wave_lane / wave_index")
    masks = [1 << k for k in range(wave.bit_length() - 1)]
    sh = shfl.get().reshape(n, 6)
    ok = all(np.array_equal(sh[:, k], vals[t ^ m]) for k, m in enumerate(masks))
    check(ok, f"{tag} wave_shfl_xor(float) lane l gets lane l ^ m for m in {masks}")
    check(np.array_equal(ishfl.get(), (t ^ (wave // 2)) * 7 + 1), f"{tag} wave_shfl_xor(int)")
    # the butterfly in f32, mask WAVE/2 first: the exact order the kernels promise
    v = vals.reshape(-1, wave).copy()
    lane = np.arange(wave)
    m = wave // 2
    while m:
        v = (v + v[:, lane ^ m]).astype(np.float32)
        m //= 2
    check(np.array_equal(sums.get(), v.reshape(-1)), f"{tag} wave_sum bit-exact butterfly order")
    parts = v[:, 0]
    total = parts[0]
    for p in parts[1:]:
        total = np.float32(total + p)
    check(np.all(bsums.get() == total), f"{tag} block_sum bit-exact wave order")
    check(np.all(bmax.get() == vals.max()) and bmax.guards_ok(), f"{tag} block_max")


TESTS = {
    "embedding.hip": test_embedding,
    "rms_norm.hip": test_rms_norm,
    "rope.hip": test_rope,
    "attention.hip": test_attention,
    "elementwise.hip": test_elementwise,
    "convert.hip": test_convert,
    "sampling.hip": test_sampling,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kernels", default=os.path.join(os.path.dirname(__file__), "..", "kernels"))
    ap.add_argument("--wave", type=int, action="append", choices=(32, 64))
    args = ap.parse_args()
    waves = args.wave or [32, 64]
    cc = cp.cuda.Device().compute_capability
    arch = f"sm_{cc}"
    print(f"device: {cp.cuda.runtime.getDeviceProperties(0)['name'].decode()} ({arch}), "
          f"NVRTC {nvrtc.nvrtcVersion()[1:]}")
    common_h = open(os.path.join(args.kernels, "common.h"), "rb").read()
    with tempfile.TemporaryDirectory() as tmp:
        for wave in waves:
            test_wave(common_h, wave, arch, tmp)
            for file, test in TESTS.items():
                tag = f"[WAVE={wave} {file}]"
                try:
                    mod, log = compile_module(os.path.join(args.kernels, file), common_h, wave,
                                              arch, tmp)
                except RuntimeError as e:
                    check(False, f"{tag} compile: {e}")
                    continue
                check(log == "", f"{tag} compiles without warnings{': ' + log if log else ''}")
                test(mod, tag)
                cp.cuda.Device().synchronize()
    print(f"{RESULTS['pass']} passed, {RESULTS['fail']} failed")
    return 0 if RESULTS["fail"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
