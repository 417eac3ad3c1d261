#!/usr/bin/env bash
# Side-by-side CPU numbers: llama.cpp (the copy vendored in the `llama-cpp-python` source
# package on PyPI, built here with its native CPU flags) and `wavefront bench --backend cpu` on
# the same GGUF file, same thread count, alternating runs so drift on a shared machine hits both.
#
#   bench/cpu-peer.sh [MODEL.gguf] [ROUNDS]
#
# WF_ARGS adds flags to Wavefront's runs (for example WF_ARGS="--cpu-dots q8", the 8-bit
# activations llama.cpp's CPU build also uses).
#
# Builds outside the repository (WORK, default /tmp/wavefront-cpu-peer); nothing built from the
# package is committed. Needs cmake (installed with pip into the work directory if missing), a
# C++ compiler, and the registry. Prints one markdown table: pp128 and tg64 medians per engine
# (TG=128 measures tg128 instead)
# and their ratio.
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL=${1:-$HOME/.cache/wavefront/models/SmolLM2-135M-Instruct.Q4_1.gguf}
ROUNDS=${2:-3}
TG=${TG:-64}
THREADS=${THREADS:-$(nproc)}
WORK=${WORK:-/tmp/wavefront-cpu-peer}
VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
mkdir -p "$WORK"

if [ ! -f "$MODEL" ]; then
    cargo run --release -q -- info >/dev/null # fetches the default model on first use
fi

BENCH="$WORK/build/bin/llama-bench"
if [ ! -x "$BENCH" ]; then
    if ! command -v cmake >/dev/null; then
        python3 -m venv "$WORK/venv"
        "$WORK/venv/bin/pip" install -q cmake
        export PATH="$WORK/venv/bin:$PATH"
    fi
    # The source distribution itself (pip download would build its build dependencies).
    python3 - "$VERSION" "$WORK/src.tar.gz" <<'PY'
import re, sys, urllib.parse, urllib.request
version, dest = sys.argv[1], sys.argv[2]
index = "https://pypi.org/simple/llama-cpp-python/"
page = urllib.request.urlopen(index).read().decode()
name = f"llama_cpp_python-{version}.tar.gz"
href = next(h for h in re.findall(r'href="([^"]+)"', page) if name in h)
urllib.request.urlretrieve(urllib.parse.urljoin(index, href.split("#")[0]), dest)
PY
    tar -xzf "$WORK/src.tar.gz" -C "$WORK"
    SRC=$(ls -d "$WORK"/llama_cpp_python-*/vendor/llama.cpp)
    # The CPU's vector extensions, named from /proc/cpuinfo rather than -march=native: on a VM
    # that advertises AMX without granting its tile state (this workplace's Sapphire Rapids
    # guests), -march=native compiles ggml's AMX kernels and llama-bench dies of SIGILL.
    has() { grep -qw "$1" /proc/cpuinfo && echo ON || echo OFF; }
    cmake -S "$SRC" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF \
        -DGGML_AVX="$(has avx)" -DGGML_AVX2="$(has avx2)" -DGGML_FMA="$(has fma)" \
        -DGGML_F16C="$(has f16c)" -DGGML_AVX512="$(has avx512f)" \
        -DGGML_AVX512_VBMI="$(has avx512vbmi)" -DGGML_AVX512_VNNI="$(has avx512_vnni)" \
        -DGGML_AVX512_BF16="$(has avx512_bf16)" \
        -DLLAMA_CURL=OFF -DGGML_OPENMP=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
        -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TOOLS=ON >/dev/null
    cmake --build "$WORK/build" --target llama-bench -j "$THREADS" >/dev/null
fi
if [ "${BUILD_ONLY:-0}" = 1 ]; then exit 0; fi

cargo build --release -q
WF=target/release/wavefront
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

: >"$WORK/llama.txt"
: >"$WORK/wf.txt"
for r in $(seq "$ROUNDS"); do
    echo "round $r/$ROUNDS" >&2
    "$BENCH" -m "$MODEL" -t "$THREADS" -p 128 -n "$TG" -r 3 -o csv 2>/dev/null |
        awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
            { gsub(/"/, ""); print ($(col["n_gen"]) == 0 ? "pp" : "tg"), $(col["avg_ts"]) }' \
            >>"$WORK/llama.txt"
    # shellcheck disable=SC2086 # WF_ARGS is a list of flags
    "$WF" bench --backend cpu --model "$MODEL" --pp 128 --tg "$TG" --reps 3 --sampling greedy,default ${WF_ARGS:-} \
        2>/dev/null | awk -F'|' -v tg="tg$TG" '/^\| pp128 / { print "pp", $3 }
            $2 == " " tg " " { print "tg", $3 } $2 == " " tg " sampled " { print "ts", $3 }' >>"$WORK/wf.txt"
done

med() { awk -v k="$1" '$1 == k { print $2 }' "$2" | median; }
lpp=$(med pp "$WORK/llama.txt")
ltg=$(med tg "$WORK/llama.txt")
wpp=$(med pp "$WORK/wf.txt")
wtg=$(med tg "$WORK/wf.txt")
wts=$(med ts "$WORK/wf.txt")
echo
echo "Medians of $ROUNDS alternating rounds ($(nproc) cores, $THREADS threads, $(date -u +%F))."
echo "llama-bench's tg has no sampler; Wavefront's sampled row runs the CLI's default sampling."
echo
echo "| engine | pp128 tok/s | tg$TG tok/s | tg$TG sampled tok/s |"
echo "|---|---:|---:|---:|"
printf "| llama.cpp (llama-cpp-python %s, -t %s) | %.1f | %.1f | — |\n" "$VERSION" "$THREADS" "$lpp" "$ltg"
printf "| Wavefront %s (--backend cpu%s) | %.1f | %.1f | %.1f |\n" "$(git rev-parse --short HEAD)" "${WF_ARGS:+ $WF_ARGS}" "$wpp" "$wtg" "$wts"
awk -v a="$wpp" -v b="$lpp" -v c="$wtg" -v d="$ltg" -v e="$wts" \
    'BEGIN { printf "| Wavefront / llama.cpp | %.2f× | %.2f× | %.2f× |\n", a / b, c / d, e / d }'
