#!/usr/bin/env python3
"""The kernel ABI as data, and the checks that hold kernels/ (and their compiled code) to it.

The ABI table below is the one the GPU backend's Rust side launches against
(engine/src/backend/gpu/ops; the semantics are the Backend trait's). If a kernel's name, file,
parameter types or names, or its block size drift from it, this fails, so the two sides cannot
drift silently.

Usage (python3, standard library only):
  kernel-abi-check.py [--kernels DIR]
      Parses every `extern "C" __global__` entry point in DIR/*.hip (default: kernels/) and
      checks it against the table: the set of kernels, the file each lives in, the parameter
      list (types and names), and __launch_bounds__ (= the ABI block size). Then the host's
      launch constants: every `const` of the GPU backend (engine/src/backend/gpu, or --host
      DIR) whose doc comment names a kernel constant, "(ABI: `NAME`", must equal the
      `constexpr int NAME` of kernels/ (a block size, a ring's depth, a tile: a host that
      sizes a launch for other numbers than the kernel's reads or writes out of bounds).
  kernel-abi-check.py asm --arch gfx942 --wave 64 DIR [--report]
      Checks AMDGPU assembly (clang -S output, DIR/*.s) against the table: every ABI kernel is
      present, its kernel arguments have the ABI's sizes and kinds, max_flat_workgroup_size is
      the ABI block, wavefront_size is WAVE, no kernel calls a function (an unresolved device-
      library call would make the resource numbers meaningless), and no kernel spills.
      With --report, prints the per-kernel table of VGPRs, AGPRs, SGPRs, LDS bytes, scratch
      bytes and VGPR/SGPR spills read from the AMDGPU metadata.
  kernel-abi-check.py self-test
      Plants each kind of drift in a copy of the sources and checks that it is reported.
Exit status 0 iff everything matched.
"""

import argparse
import glob
import os
import re
import sys

# --- the ABI ----------------------------------------------------------------------------------
# kernel: (file, parameters, block, grid). T is the KV or table element type of the suffix
# (_f32: float, _f16/_bf16: uint16_t, _q8_0: uint8_t, the KV cache's Q8_0 bytes); S/D the
# convert source/destination types.

EMBEDDING = ("const T* table, const int* tokens, float* out, int n_tokens, int hidden, int vocab, "
             "float scale")
ROPE = ("float* q, const float* k, const float* v, const float* inv_freq, T* arena, int layer, "
        "int pos0, int rows, int n_heads, int n_kv_heads, int head_dim, int capacity, "
        "const int* step")
ATTENTION = ("const float* q, const T* arena, float* out, int layer, int pos0, int rows, "
             "int n_heads, int n_kv_heads, int head_dim, int capacity, float scale, const int* step, "
             "int window, float softcap")
ELEMENTS = "(ceil(n/256))"

ABI = {}
for suffix, t in (("f32", "float"), ("f16", "uint16_t"), ("bf16", "uint16_t"),
                  ("q8_0", "uint8_t")):
    if suffix != "q8_0":  # the KV cache's Q8_0 is no embedding table type
        ABI[f"embedding_{suffix}"] = ("embedding.hip", EMBEDDING.replace("T*", t + "*"), 256,
                                      "(n_tokens)")
    ABI[f"rope_kv_write_{suffix}"] = ("rope.hip", ROPE.replace("T*", t + "*"), 256, "(rows)")
    ABI[f"attention_{suffix}"] = ("attention.hip", ATTENTION.replace("T*", t + "*"), 128,
                                  "(n_heads, rows)")
    ABI[f"attention_decode_{suffix}"] = ("attention.hip", ATTENTION.replace("T*", t + "*"), 1024,
                                         "(n_heads, 1)")
ABI.update({
    "rms_norm": ("rms_norm.hip", "float* x, const float* residual, const float* w, float* out, "
                 "int rows, int dim, float eps, int accumulate", 256, "(rows)"),
    "swiglu": ("elementwise.hip", "const float* gate, const float* up, float* out, i64 n, int act",
               256,
               ELEMENTS),
    "add": ("elementwise.hip", "float* x, const float* y, i64 n", 256, ELEMENTS),
    "softcap": ("elementwise.hip", "float* x, i64 n, float c, float inv_c", 256, ELEMENTS),
    "bias_add": ("elementwise.hip", "float* out, const float* bias, int rows, int cols", 256,
                 "(ceil(rows*cols/256))"),
    "convert_f32_to_f16": ("convert.hip", "const float* in, uint16_t* out, i64 n", 256, ELEMENTS),
    "convert_f32_to_bf16": ("convert.hip", "const float* in, uint16_t* out, i64 n", 256, ELEMENTS),
    # The grid-synchronisation probes (bench --sync; a grid of resident blocks).
    "sync_barrier_probe": ("sync.hip", "int* bar, int* marks, int* errors, int blocks, int rounds, "
                           "int mode", 256, "(blocks)"),
    "sync_chain_probe": ("sync.hip", "int* marks, int* errors, int blocks, int link", 256,
                         "(blocks)"),
    "gemv_chain_bf16": ("gemv.hip", "const uint16_t* w, float* x, const float* norm_w, float eps, "
                        "int k, int layers, int blocks, int* bar", 256, "(blocks)"),
    "argmax": ("sampling.hip", "const float* x, int n, int* out", 1024, "(1)"),
    "sample_prep": ("sampling.hip", "const float* logits, int vocab, const int* step, "
                    "const int* hist, int hist_cap, int window, float repeat_penalty, "
                    "float presence_penalty, float frequency_penalty, int write_work, "
                    "float* work, int* part", 256, "(ceil(vocab/2048))"),
    "sample_topk": ("sampling.hip", "int vocab, float temperature, int top_k, const float* work, "
                    "int* part, int n_parts, int* stage_id, float* stage_p", 256,
                    "(ceil(vocab/2048))"),
    "sample_pick": ("sampling.hip", "int* step, int* hist, int hist_cap, float temperature, "
                    "int top_k, float top_p, float min_p, const int* part, int n_parts, "
                    "const int* stage_id, const float* stage_p, int* tmp_id, float* tmp_p, "
                    "int* cand_id, float* cand_p, u64* keys", 1024, "(1)"),
})
DECODE_ATTENTION = ("const float* q, const float* k, const float* v, const float* inv_freq, "
                    "uint16_t* arena, float* out, float* ws, int* counters, int layer, int pos0, "
                    "int n_heads, int n_kv_heads, int head_dim, int capacity, int s_max, "
                    "float scale, const int* step, int window, float softcap")
for suffix, t in (("f16", "uint16_t"), ("bf16", "uint16_t"), ("q8_0", "uint8_t")):
    ABI[f"decode_attention_{suffix}"] = ("decode_attention.hip",
                                         DECODE_ATTENTION.replace("uint16_t* arena", t + "* arena"),
                                         256, "(n_kv_heads*slabs, s_max)")
# Several decode rows a launch (grid z = rows): the rows' arenas and step blocks by value.
DECODE_ATTENTION_ROWS = ("const float* q, const float* k, const float* v, const float* inv_freq, "
                         "float* out, float* ws, int* counters, int layer, int pos0, int n_heads, "
                         "int n_kv_heads, int head_dim, int capacity, int s_max, float scale, "
                         "int window, float softcap, int mode, DaRows rows")
for suffix in ("f16", "bf16", "q8_0"):
    ABI[f"decode_attention_rows_{suffix}"] = ("decode_attention.hip", DECODE_ATTENTION_ROWS, 256,
                                              "(n_kv_heads*slabs, s_max, rows)")
# The matrix-instruction forms (head_dim = HD, 16-bit KV, 16 query heads a block): blocks of 4
# waves, so the block is a function of WAVE (a string the asm check evaluates per target).
for hd in (64, 128):
    for suffix in ("f16", "bf16"):
        ABI[f"decode_attention_mma_{hd}_{suffix}"] = (
            "decode_attention.hip", DECODE_ATTENTION, "4*WAVE",
            "(n_kv_heads*ceil(n_heads/n_kv_heads/16), s_max)")
        ABI[f"decode_attention_mma_rows_{hd}_{suffix}"] = (
            "decode_attention.hip", DECODE_ATTENTION_ROWS, "4*WAVE",
            "(n_kv_heads*ceil(n_heads/n_kv_heads/16), s_max, rows)")
FLASH_ATTENTION = ATTENTION.replace(", const int* step", "").replace(
    "float softcap", "float softcap_log2, float softcap_k")
# HD 256 splits each row tile's dims over a pair of waves: half the rows a block, twice the tiles.
for hd, split in ((64, 1), (128, 1), (256, 2)):
    for suffix, t in (("f16", "uint16_t"), ("bf16", "uint16_t"), ("q8_0", "uint8_t")):
        ABI[f"flash_attention_{hd}_{suffix}"] = (
            "flash_attention.hip", FLASH_ATTENTION.replace("T*", t + "*"), 256,
            "(n_kv_heads, ceil(rows*n_heads/n_kv_heads/(16*256/WAVE"
            + ("" if split == 1 else f"/{split}") + ")))")
# The one-row forms end with the blocks per input row, each looping over its share of the row
# groups (the quantized forms below too).
GEMV = ("const uint16_t* w, const float* x, const float* norm_w, float eps, const float* bias, "
        "float* out0, float* out1, float* out2, int m0, int m1, int m2, int k, int residual, "
        "int n_in, int blocks")
GEMV_SWIGLU = ("const uint16_t* w, const float* x, const float* norm_w, float eps, float* out, "
               "int inter, int k, int n_in, int act, int blocks")
GEMV_STAGE = "const float* x, const float* norm_w, float eps, uint16_t* xh, int k, int ks"
GEMV_ROWS = ("const uint16_t* w, const uint16_t* xh, int ks, const float* bias, float* out0, "
             "float* out1, float* out2, int m0, int m1, int m2, int k, int residual, int n_in")
GEMV_SWIGLU_ROWS = ("const uint16_t* w, const uint16_t* xh, int ks, float* out, int inter, "
                    "int k, int n_in, int act")
GEMV_MMA = ("const uint16_t* w, const float* x, const float* norm_w, float eps, "
            "const uint16_t* xh, int ks, const float* bias, float* out0, float* out1, "
            "float* out2, int m0, int m1, int m2, int k, int residual, int n_in")
GEMV_SWIGLU_MMA = ("const uint16_t* w, const float* x, const float* norm_w, float eps, "
                   "const uint16_t* xh, int ks, float* out, int inter, int k, int n_in, int act")
for suffix in ("f16", "bf16"):
    ABI[f"gemv_{suffix}"] = ("gemv.hip", GEMV, 256, "(n_in*blocks)")
    ABI[f"gemv_swiglu_{suffix}"] = ("gemv.hip", GEMV_SWIGLU, 256, "(n_in*blocks)")
    ABI[f"gemv_stage_{suffix}"] = ("gemv.hip", GEMV_STAGE, 256, "(n_in)")
    ABI[f"gemv_rows_{suffix}"] = ("gemv.hip", GEMV_ROWS, 256,
                                  "(ceil(n_in/8)*ceil((m0+m1+m2)/(2*256/WAVE)))")
    ABI[f"gemv_swiglu_rows_{suffix}"] = ("gemv.hip", GEMV_SWIGLU_ROWS, 256,
                                         "(ceil(n_in/8)*ceil(inter/(256/WAVE)))")
    ABI[f"gemv_mma_{suffix}"] = ("gemv.hip", GEMV_MMA, 256,
                                 "(ceil(n_in/16)*ceil((m0+m1+m2)/16))")
    ABI[f"gemv_swiglu_mma_{suffix}"] = ("gemv.hip", GEMV_SWIGLU_MMA, 256,
                                        "(ceil(n_in/16)*ceil(inter/8))")
QGEMV = GEMV.replace("const uint16_t* w, ", "const uint8_t* qa, const uint8_t* sa, ")
QGEMV_SWIGLU = GEMV_SWIGLU.replace("const uint16_t* w, ", "const uint8_t* qa, const uint8_t* sa, ")
DEQUANT = ("const uint8_t* qa, const uint8_t* sa, const int* ids, int row0, int n_rows, int k, "
           "int vocab, void* out, int out_f16, float scale")
# The GGUF weight block types (split layout, qgemv.hip).
# Blocks (the host's ops/qgemv.rs `threads`): as many threads as keep the registers unspilled,
# 1024 for qgemv, 512 for qgemv_swiglu and the heavier qgemv forms, 256 for the heaviest.
for suffix in ("q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q4_k", "q5_k", "q6_k"):
    heavy = suffix in ("q5_k", "q6_k")
    ABI[f"qgemv_{suffix}"] = ("qgemv.hip", QGEMV, 512 if heavy or suffix == "q4_k" else 1024,
                              "(n_in*blocks)")
    ABI[f"qgemv_swiglu_{suffix}"] = ("qgemv.hip", QGEMV_SWIGLU, 256 if heavy else 512,
                                     "(n_in*blocks)")
    ABI[f"dequant_{suffix}"] = ("qgemv.hip", DEQUANT, 256, "(n_rows)")
    # The 8-bit-activation forms (WAVEFRONT_QGEMV_Q8=1): the same parameters and grids.
    ABI[f"qgemv_q8a_{suffix}"] = ("qgemv.hip", QGEMV, 512 if heavy else 1024, "(n_in*blocks)")
    ABI[f"qgemv_swiglu_q8a_{suffix}"] = ("qgemv.hip", QGEMV_SWIGLU, 256 if heavy else 512,
                                         "(n_in*blocks)")

# --- source parsing ---------------------------------------------------------------------------

ENTRY = re.compile(
    r'extern\s+"C"\s+__global__\s+void\s+'
    r'(?:__launch_bounds__\s*\(\s*([A-Za-z_0-9]+)\s*(?:,\s*[A-Za-z_0-9]+\s*)?\)\s+)?'
    r'([A-Za-z_][A-Za-z_0-9]*)\s*\(([^)]*)\)', re.S)
CONSTANT = re.compile(r'constexpr\s+int\s+([A-Za-z_][A-Za-z_0-9]*)\s*=\s*(\d+)\s*;')
CONST_EXPR = re.compile(r'constexpr\s+int\s+([A-Za-z_][A-Za-z_0-9]*)\s*=\s*([^;]+);')


def block_expr(expr, consts):
    """A launch bound's constexpr expression with the file's constexpr ints put in and the
    spaces taken out ("DM_WAVES * WAVE" -> "4*WAVE"): a block that depends on WAVE."""
    text = re.sub(r"[A-Za-z_][A-Za-z_0-9]*",
                  lambda m: str(consts.get(m.group(0), m.group(0))), expr)
    return "".join(text.split())


def block_at(block, wave):
    """An ABI block (an int, or an expression of WAVE such as "4*WAVE") at WAVE = wave."""
    if isinstance(block, int):
        return block
    if not re.fullmatch(r"[0-9*WAVE]+", block):
        raise ValueError(f"ABI block {block!r} is not a product of integers and WAVE")
    value = 1
    for factor in block.split("*"):
        value *= wave if factor == "WAVE" else int(factor)
    return value


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def normalize_params(params):
    """'const float *x,int n' → ['const float* x', 'int n'] (whitespace and * placement)."""
    out = []
    for p in params.split(","):
        p = re.sub(r"\s*\*\s*", "* ", " ".join(p.split()))
        p = p.replace("* *", "**").strip()
        if p and p != "void":
            out.append(p)
    return out


def parse_sources(files):
    """{kernel: (file, [params], block or None)} and a list of parse errors."""
    found, errors = {}, []
    for name, text in files.items():
        text = strip_comments(text)
        consts = {k: int(v) for k, v in CONSTANT.findall(text)}
        exprs = dict(CONST_EXPR.findall(text))
        for bound, kernel, params in ENTRY.findall(text):
            block = None
            if bound:
                block = int(bound) if bound.isdigit() else consts.get(bound)
                if block is None and bound in exprs:
                    block = block_expr(exprs[bound], consts)
                if block is None:
                    errors.append(f"{name}: {kernel}: __launch_bounds__({bound}) is not a "
                                  "constexpr int of the file")
            if kernel in found:
                errors.append(f"{name}: {kernel} is defined twice (also in {found[kernel][0]})")
            found[kernel] = (name, normalize_params(params), block)
        # extern "C" __global__ that the pattern could not read (e.g. a macro in between)
        if len(re.findall(r'extern\s+"C"\s+__global__', text)) != len(ENTRY.findall(text)):
            errors.append(f"{name}: an extern \"C\" __global__ declaration is not in the form "
                          "`extern \"C\" __global__ void __launch_bounds__(N) name(params)`")
    return found, errors


def check_sources(files):
    found, errors = parse_sources(files)
    for kernel, (file, params, block, _grid) in ABI.items():
        if kernel not in found:
            errors.append(f"{kernel}: missing (the ABI puts it in {file})")
            continue
        got_file, got_params, got_block = found[kernel]
        want = normalize_params(params)
        if got_file != file:
            errors.append(f"{kernel}: defined in {got_file}, the ABI puts it in {file}")
        if got_params != want:
            errors.append(f"{kernel}: parameters ({', '.join(got_params)}) differ from the "
                          f"ABI's ({', '.join(want)})")
        if got_block != block:
            errors.append(f"{kernel}: __launch_bounds__ {got_block}, the ABI block is {block}")
    for kernel in sorted(set(found) - set(ABI)):
        errors.append(f"{kernel}: extern \"C\" kernel in {found[kernel][0]} is not in the ABI "
                      "(add it to the table in ci/kernel-abi-check.py and its launch in "
                      "engine/src/backend/gpu/ops)")
    return errors


CONSTANT_EXPR = re.compile(r'constexpr\s+int\s+([A-Za-z_][A-Za-z_0-9]*)\s*=\s*([^;]+);')


def eval_int(expr, values):
    """A constexpr int's value from integers, known names, + - * / and parentheses (C++
    division of non-negative values), or None where it is anything else."""
    names = re.findall(r"[A-Za-z_][A-Za-z_0-9]*", expr)
    if any(n not in values for n in names):
        return None
    text = re.sub(r"[A-Za-z_][A-Za-z_0-9]*", lambda m: str(values[m.group(0)]), expr)
    if not re.fullmatch(r"[0-9+\-*/() \t\n]+", text):
        return None
    try:
        return int(eval(text.replace("/", "//"), {"__builtins__": {}}))  # digits and operators
    except (SyntaxError, ZeroDivisionError):
        return None


HOST_CONST = re.compile(
    r'((?:[ \t]*///[^\n]*\n)+)[ \t]*(?:pub(?:\([^)]*\))?\s+)?const\s+([A-Za-z_][A-Za-z_0-9]*)\s*:'
    r'\s*[A-Za-z0-9_]+\s*=\s*([^;]+);')
ABI_NAME = re.compile(r'\(ABI: `([A-Za-z_][A-Za-z_0-9]*)`')


def check_host_constants(files, host_files):
    """Every host const documented "(ABI: `NAME`" against kernels' `constexpr int NAME`."""
    kernel_consts, errors = {}, []
    for name, text in files.items():
        values = {}  # this file's constexpr ints, in order (an expression of earlier ones)
        for k, expr in CONSTANT_EXPR.findall(strip_comments(text)):
            v = eval_int(expr, values)
            if v is not None:
                values[k] = v
                kernel_consts.setdefault(k, (name, v))
    checked = 0
    for path, text in sorted(host_files.items()):
        for doc, const, value in HOST_CONST.findall(text):
            m = ABI_NAME.search(" ".join(doc.split()))
            if not m or not re.fullmatch(r"[A-Z][A-Z0-9_]*", m.group(1)):
                continue  # no kernel constant named (an enum, a grid formula)
            kname = m.group(1)
            where = f"{path}: const {const} (ABI: {kname})"
            if kname not in kernel_consts:
                errors.append(f"{where}: no kernel file defines `constexpr int {kname}`")
                continue
            literal = value.strip().replace("_", "")
            if not re.fullmatch(r"\d+", literal):
                errors.append(f"{where}: the value `{value.strip()}` is not an integer literal")
                continue
            kfile, kvalue = kernel_consts[kname]
            checked += 1
            if int(literal) != kvalue:
                errors.append(f"{where} = {literal}, but {kfile} has {kname} = {kvalue}")
    if host_files and checked == 0:
        errors.append("no host constant names a kernel constant: is --host the GPU backend?")
    return errors


def read_host(host_dir):
    """The GPU backend's Rust sources under host_dir, by path relative to it."""
    files = {}
    for path in sorted(glob.glob(os.path.join(host_dir, "**", "*.rs"), recursive=True)):
        with open(path, encoding="utf-8") as f:
            files[os.path.relpath(path, host_dir)] = f.read()
    return files


def read_sources(kernels_dir):
    files = {}
    for path in sorted(glob.glob(os.path.join(kernels_dir, "*.hip"))):
        with open(path, encoding="utf-8") as f:
            files[os.path.basename(path)] = f.read()
    return files


# --- assembly ---------------------------------------------------------------------------------

def parse_metadata(text):
    """Kernel entries of the .amdgpu_metadata block: {name: {key: value, 'args': [...]}}."""
    m = re.search(r"\.amdgpu_metadata\n(.*?)\.end_amdgpu_metadata", text, re.S)
    if not m:
        return {}
    kernels, cur, arg = {}, None, None
    for line in m.group(1).splitlines():
        if re.match(r"^\S", line):  # amdhsa.kernels:, amdhsa.target: …: top level
            cur = arg = None
            if line.startswith("amdhsa.kernels:"):
                cur = {}
            continue
        km = re.match(r"^(  - |    |      - |        )\.([a-z_]+):\s*(.*)$", line)
        if not km or cur is None:
            continue
        lead, key, value = km.group(1), km.group(2), km.group(3).strip()
        if lead == "  - ":  # a new kernel entry
            cur = {"args": []}
            arg = None
            lead = "    "
        if lead == "      - ":  # a new argument of the current kernel
            arg = {}
            cur.setdefault("args", []).append(arg)
            lead = "        "
        if lead == "        " and arg is not None:
            arg[key] = value
        elif lead == "    " and key != "args":
            arg = None
            cur[key] = value
            if key == "name":
                kernels[value] = cur
    return kernels


def param_kind(param):
    """(size, value_kind) the ABI parameter must have in the AMDGPU kernarg metadata."""
    if "*" in param:
        return ("8", "global_buffer")
    if param.startswith("i64 "):
        return ("8", "by_value")  # element counts past 2^31
    if param.startswith("DaRows "):
        return ("256", "by_value")  # decode_attention.hip's DaRows: 16 arenas, 16 step blocks
    return ("4", "by_value")  # int, float


def check_asm(asm_dir, arch, wave, report):
    errors, meta, calls = [], {}, {}
    paths = sorted(glob.glob(os.path.join(asm_dir, "*.s")))
    if not paths:
        return [f"{asm_dir}: no .s files"], meta
    for path in paths:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for name, entry in parse_metadata(text).items():
            entry["file"] = os.path.basename(path)
            meta[name] = entry
        # a call anywhere (s_swappc_b64) means an unresolved device-library function
        for callee in re.findall(r"s_swappc_b64[^\n]*\n?", text):
            calls.setdefault(os.path.basename(path), []).append(callee.strip())
        for sym in sorted(set(re.findall(r"(__o[cl][mk]l_[a-z0-9_]+)", text))):
            calls.setdefault(os.path.basename(path), []).append(sym)
    for file, what in calls.items():
        errors.append(f"{arch} {file}: calls a function ({', '.join(sorted(set(what))[:4])}): "
                      "use the builtins in common.h so the code needs no device library")
    for kernel, (_file, params, block, _grid) in ABI.items():
        e = meta.get(kernel)
        if e is None:
            errors.append(f"{arch}: kernel {kernel} is missing from the assembly")
            continue
        want = [param_kind(p) for p in normalize_params(params)]
        got = [(a.get("size"), a.get("value_kind")) for a in e["args"]
               if not a.get("value_kind", "").startswith("hidden_")]
        if got != want:
            errors.append(f"{arch} {kernel}: kernel arguments {got} differ from the ABI's {want}")
        if e.get("max_flat_workgroup_size") != str(block_at(block, wave)):
            errors.append(f"{arch} {kernel}: max_flat_workgroup_size "
                          f"{e.get('max_flat_workgroup_size')}, the ABI block is {block}")
        if e.get("wavefront_size") != str(wave):
            errors.append(f"{arch} {kernel}: wavefront_size {e.get('wavefront_size')}, WAVE={wave}")
        for key in ("vgpr_spill_count", "sgpr_spill_count"):
            if e.get(key, "0") != "0":
                errors.append(f"{arch} {kernel}: {key} = {e[key]} (spills fail the check)")
        if e.get("private_segment_fixed_size", "0") != "0":
            errors.append(f"{arch} {kernel}: {e['private_segment_fixed_size']} bytes of scratch")
    for kernel in sorted(set(meta) - set(ABI)):
        errors.append(f"{arch}: kernel {kernel} in {meta[kernel]['file']} is not in the ABI")
    if report:
        print_report(arch, wave, meta)
    return errors, meta


def print_report(arch, wave, meta):
    cols = ("kernel", "VGPRs", "AGPRs", "SGPRs", "LDS bytes", "scratch bytes", "VGPR spills",
            "SGPR spills")
    keys = ("vgpr_count", "agpr_count", "sgpr_count", "group_segment_fixed_size",
            "private_segment_fixed_size", "vgpr_spill_count", "sgpr_spill_count")
    rows = [[k] + [meta[k].get(key, "-") for key in keys] for k in sorted(meta)]
    widths = [max(len(str(r[i])) for r in rows + [list(cols)]) for i in range(len(cols))]
    print(f"\nAMDGPU resources, {arch}, WAVE={wave} (clang -O3, from the assembly's metadata):")
    line = "| " + " | ".join(c.ljust(w) for c, w in zip(cols, widths)) + " |"
    print(line)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(str(v).ljust(w) if i == 0 else str(v).rjust(w)
                                for i, (v, w) in enumerate(zip(r, widths))) + " |")
    print()


# --- self-test --------------------------------------------------------------------------------

def self_test(kernels_dir, host_dir):
    """Each planted drift must produce an error naming the kernel."""
    base = read_sources(kernels_dir)
    host = read_host(host_dir)
    failures, checks = 0, 2  # the two direct checks below, plus one per expect()

    def expect(label, files, needle):
        nonlocal failures, checks
        checks += 1
        errs = check_sources(files)
        ok = any(needle in e for e in errs)
        print(("ok   " if ok else "FAIL ") + f"self-test: {label} is reported")
        failures += not ok

    clean = check_sources(base)
    print(("ok   " if not clean else "FAIL ") + "self-test: the sources as they are match")
    failures += bool(clean)
    f = dict(base)
    f["rms_norm.hip"] = f["rms_norm.hip"].replace("float eps, int accumulate)", "int eps, int accumulate)")
    expect("a parameter type change", f, "rms_norm: parameters")
    f = dict(base)
    f["sampling.hip"] = f["sampling.hip"].replace("argmax(const float* x, int n, int* out) {",
                                                  "argmax(const float* x, int* out, int n) {")
    expect("swapped parameters", f, "argmax: parameters")
    f = dict(base)
    f["elementwise.hip"] = f["elementwise.hip"].replace("bias_add(", "add_bias(")
    expect("a renamed kernel (missing)", f, "bias_add: missing")
    expect("a renamed kernel (extra)", f, "add_bias: extern")
    f = dict(base)
    f["attention.hip"] = f["attention.hip"].replace("ATTENTION_BLOCK = 128", "ATTENTION_BLOCK = 256")
    expect("a block size change", f, "attention_f32: __launch_bounds__")
    f = dict(base)
    f["decode_attention.hip"] = f["decode_attention.hip"].replace(
        "constexpr int DM_WAVES = 4;", "constexpr int DM_WAVES = 2;")
    expect("a wave-dependent block size change", f,
           "decode_attention_mma_64_f16: __launch_bounds__ 2*WAVE")
    at = all(block_at("4*WAVE", w) == b for w, b in ((32, 128), (64, 256)))
    print(("ok   " if at else "FAIL ") + "self-test: a block of 4*WAVE is 128 at WAVE=32, 256 at 64")
    failures += not at
    checks += 1
    f = dict(base)
    f["convert.hip"] += f["elementwise.hip"][f["elementwise.hip"].index('extern "C"'):]
    f.pop("elementwise.hip")
    f["convert.hip"] = "constexpr int ELEMENTWISE_BLOCK = 256;\n" + f["convert.hip"]
    expect("a kernel moved to another file", f, "add: defined in convert.hip")
    asm = ("\t.amdgpu_metadata\n---\namdhsa.kernels:\n  - .agpr_count:     0\n    .args:\n"
           "      - .address_space:  global\n        .offset:         0\n        .size:           8\n"
           "        .value_kind:     global_buffer\n      - .offset:         8\n        .size:           4\n"
           "        .value_kind:     by_value\n    .max_flat_workgroup_size: 1024\n"
           "    .name:           softmax_rows\n    .vgpr_count:     7\n    .vgpr_spill_count: 3\n"
           "    .wavefront_size: 64\namdhsa.target:   amdgcn-amd-amdhsa--gfx942\n...\n"
           "\t.end_amdgpu_metadata\n")
    checks += 4
    clean = check_host_constants(base, host)
    print(("ok   " if not clean else "FAIL ") + "self-test: the host's ABI constants match")
    failures += bool(clean)
    f = dict(base)
    f["decode_attention.hip"] = f["decode_attention.hip"].replace(
        "constexpr int DA_STAGES = ", "constexpr int DA_STAGES = 1")
    errs = check_host_constants(f, host)
    ok = any("RING_STAGES (ABI: DA_STAGES)" in e for e in errs)
    print(("ok   " if ok else "FAIL ") + "self-test: a kernel constant the host does not follow")
    failures += not ok
    h = {k: v.replace("(ABI: `DA_UNROLL`)", "(ABI: `DA_UNROLLS`)") for k, v in host.items()}
    ok = any("no kernel file defines `constexpr int DA_UNROLLS`" in e
             for e in check_host_constants(base, h))
    print(("ok   " if ok else "FAIL ") + "self-test: a host doc naming no kernel constant")
    failures += not ok
    none = {"x.rs": "/// nothing (ABI: `Mode`)\nconst A: u32 = 1;\n"}
    ok = bool(check_host_constants(base, none))
    print(("ok   " if ok else "FAIL ") + "self-test: a host directory with no ABI constants")
    failures += not ok
    meta = parse_metadata(asm)
    ok = (meta.get("softmax_rows", {}).get("vgpr_spill_count") == "3"
          and len(meta["softmax_rows"]["args"]) == 2)
    print(("ok   " if ok else "FAIL ") + "self-test: AMDGPU metadata is parsed")
    failures += not ok
    print(f"{checks - failures} passed, {failures} failed")
    return failures == 0


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    default_kernels = os.path.join(here, "..", "kernels")
    ap = argparse.ArgumentParser(description="Check kernels/ against the kernel ABI.")
    ap.add_argument("--kernels", default=default_kernels)
    ap.add_argument("--host", default=os.path.join(here, "..", "engine", "src", "backend", "gpu"))
    sub = ap.add_subparsers(dest="cmd")
    a = sub.add_parser("asm", help="check compiled AMDGPU assembly")
    a.add_argument("dir")
    a.add_argument("--arch", required=True)
    a.add_argument("--wave", type=int, required=True, choices=(32, 64))
    a.add_argument("--report", action="store_true")
    sub.add_parser("self-test", help="plant drifts and check they are reported")
    args = ap.parse_args()

    if args.cmd == "self-test":
        return 0 if self_test(args.kernels, args.host) else 1
    if args.cmd == "asm":
        errors, meta = check_asm(args.dir, args.arch, args.wave, args.report)
        what = f"{len(meta)} kernels in {args.dir} ({args.arch}, WAVE={args.wave})"
    else:
        files = read_sources(args.kernels)
        if not files:
            print(f"kernel-abi-check: no .hip files in {args.kernels}", file=sys.stderr)
            return 1
        errors = check_sources(files) + check_host_constants(files, read_host(args.host))
        what = (f"{len(ABI)} ABI kernels in {len(files)} files of {os.path.normpath(args.kernels)}"
                " and the host's ABI constants")
    for e in errors:
        print(f"kernel-abi-check: {e}", file=sys.stderr)
    print(f"kernel-abi-check: {what}: " + ("ok" if not errors else f"{len(errors)} problem(s)"))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
