#!/usr/bin/env python3
"""NVIDIA compile check (ci/nvrtc-compile-check.sh runs it): every kernel in kernels/ compiled
by NVRTC as the engine's CUDA vendor compiles it at run time (engine/src/backend/gpu/vendor/
cuda.rs: the file's source, `common.h` as an in-memory header, `--gpu-architecture=ARCH` and
the wave option), then assembled by ptxas for the per-kernel resource table.

Usage: nvrtc-compile.py --nvrtc LIB --ptxas BIN --kernels DIR --out DIR [--arch sm_90 ...]
Each file is compiled for every arch at -DWAVE=32, -DWAVE=64 (the emulated wave64) and
-DWAVE=32 -DWF_COVERAGE (the path-coverage build). Any NVRTC or ptxas error fails (exit 1);
the table (registers, spilled bytes, stack, static shared memory per kernel, at the first
arch's WAVE=32 and WAVE=64) is printed. Standard library only.
"""

import argparse
import ctypes
import glob
import os
import re
import subprocess
import sys

VARIANTS = (("w32", ["-DWAVE=32"]), ("w64", ["-DWAVE=64"]), ("cov", ["-DWAVE=32", "-DWF_COVERAGE"]))


def compile_ptx(lib, source, name, common, options):
    """(ok, ptx bytes or None, log text) for one NVRTC compile."""
    prog = ctypes.c_void_p()
    hdrs = (ctypes.c_char_p * 1)(common)
    names = (ctypes.c_char_p * 1)(b"common.h")
    r = lib.nvrtcCreateProgram(ctypes.byref(prog), source, name.encode(), 1, hdrs, names)
    if r != 0:
        return False, None, f"nvrtcCreateProgram failed ({r})"
    try:
        opts = [o.encode() for o in options]
        arr = (ctypes.c_char_p * len(opts))(*opts)
        r = lib.nvrtcCompileProgram(prog, len(opts), arr)
        n = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(n))
        log = ctypes.create_string_buffer(max(n.value, 1))
        lib.nvrtcGetProgramLog(prog, log)
        text = log.value.decode(errors="replace").strip()
        if r != 0:
            return False, None, text or f"nvrtcCompileProgram failed ({r})"
        lib.nvrtcGetPTXSize(prog, ctypes.byref(n))
        ptx = ctypes.create_string_buffer(n.value)
        lib.nvrtcGetPTX(prog, ptx)
        return True, ptx.value, text
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


ENTRY = re.compile(r"Compiling entry function '(\w+)' for '(\w+)'")
STACK = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
USED = re.compile(r"Used (\d+) registers.*?(?:, (\d+) bytes smem)?$")


def ptxas_report(ptxas, ptx_path, arch):
    """(ok, {kernel: (regs, spill stores, spill loads, stack, smem)}, output)."""
    p = subprocess.run([ptxas, f"-arch={arch}", "-v", ptx_path, "-o", os.devnull],
                       capture_output=True, text=True)
    out = p.stdout + p.stderr
    table, cur = {}, None
    for line in out.splitlines():
        m = ENTRY.search(line)
        if m:
            cur = m.group(1)
            table[cur] = [0, 0, 0, 0, 0]
            continue
        if cur is None:
            continue
        m = STACK.search(line)
        if m:
            table[cur][3], table[cur][1], table[cur][2] = (int(x) for x in m.groups())
        m = USED.search(line)
        if m:
            table[cur][0] = int(m.group(1))
            table[cur][4] = int(m.group(2) or 0)
    return p.returncode == 0, table, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nvrtc", required=True)
    ap.add_argument("--ptxas", required=True)
    ap.add_argument("--kernels", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--arch", action="append", default=None)
    a = ap.parse_args()
    archs = a.arch or ["sm_90", "sm_80"]
    lib = ctypes.CDLL(a.nvrtc)
    common = open(os.path.join(a.kernels, "common.h"), "rb").read()
    os.makedirs(a.out, exist_ok=True)
    failures, reports = [], {}
    files = sorted(glob.glob(os.path.join(a.kernels, "*.hip")))
    if not files:
        print(f"nvrtc-compile: no .hip files in {a.kernels}", file=sys.stderr)
        return 1
    for path in files:
        name = os.path.basename(path)
        source = open(path, "rb").read()
        for arch in archs:
            for tag, opts in VARIANTS:
                ok, ptx, log = compile_ptx(lib, source, name, common,
                                           [f"--gpu-architecture={arch}"] + opts)
                label = f"{name} {arch} {' '.join(opts)}"
                if not ok:
                    failures.append(f"{label}: NVRTC\n{log}")
                    continue
                if log:
                    failures.append(f"{label}: NVRTC warnings\n{log}")
                ptx_path = os.path.join(a.out, f"{name}.{arch}.{tag}.ptx")
                with open(ptx_path, "wb") as f:
                    f.write(ptx)
                ok, table, out = ptxas_report(a.ptxas, ptx_path, arch)
                if not ok:
                    failures.append(f"{label}: ptxas\n{out}")
                    continue
                if arch == archs[0] and tag != "cov":
                    for k, row in table.items():
                        reports[(k, tag)] = row
        print(f"nvrtc-compile: {name}: {'failed' if any(f.startswith(name) for f in failures) else 'ok'}")
    kernels = sorted({k for k, _ in reports})
    print(f"\n{archs[0]} resources (ptxas): registers, spilled bytes (stores/loads), stack, static "
          "shared memory")
    print("| kernel | regs w32 | spill w32 | regs w64 | spill w64 | stack w32 | smem w32 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for k in kernels:
        r32, r64 = reports.get((k, "w32")), reports.get((k, "w64"))
        if r32 is None or r64 is None:
            continue
        print(f"| {k} | {r32[0]} | {r32[1]}/{r32[2]} | {r64[0]} | {r64[1]}/{r64[2]} | {r32[3]} | "
              f"{r32[4]} |")
    for f in failures:
        print(f"\nFAIL {f}", file=sys.stderr)
    print(f"\nnvrtc-compile: {len(files)} files x {len(archs)} archs x {len(VARIANTS)} variants: "
          f"{'ok' if not failures else f'{len(failures)} failures'}")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
