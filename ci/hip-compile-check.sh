#!/usr/bin/env bash
# AMD compile check (DESIGN.md "Backends"): every kernel in kernels/ compiled ahead of time with
# Debian's clang-19 and the HIP headers of libamdhip64-dev, for
#   gfx90a (CDNA2, WAVE=64), gfx942 (CDNA3, WAVE=64), gfx1100 (RDNA3, WAVE=32),
# plus the checks around it:
#   1. ci/kernel-abi-check.py: the extern "C" entry points match the kernel ABI, the GPU
#      backend's launch constants (block sizes, rings, tiles) the kernels' (and the checker's
#      own self-test);
#   2. ci/kernel-math-check.cpp: common.h's 16-bit conversions and sin/cos against independent
#      oracles on the host (x86-64 with F16C; skipped elsewhere); ci/kernel-quant-check.cpp:
#      qgemv.hip's block decoders run on the host against gguf-py's dequantized values
#      (fixtures/quants) bit for bit, and its GEMV dot products (f32 and 8-bit inputs) against f64;
#      ci/kernel-sim-{,gemv-,attn-,flash-,misc-,sampler-}check.cpp: qgemv.hip's and gemv.hip's
#      GEMVs, decode_attention.hip's, flash_attention.hip's, attention.hip's, rms_norm.hip's,
#      rope.hip's, embedding.hip's and sampling.hip's kernels run whole on the host (ci/kernel-sim.h: a block's threads as
#      fibers with real barriers and shuffles) at WAVE=32 and WAVE=64, the matrix-core GEMVs
#      and the attention kernels also on AMD's MFMA and WMMA layouts (instructions emulated);
#   3. the compile, with -Wall -Wextra -Werror: any error or warning fails;
#   4. on the assembly of each architecture: every ABI kernel present with the ABI's argument
#      sizes, block size and wave size, no function calls (an unresolved device-library call
#      would make the register numbers meaningless), no scratch, no spills;
#   5. the gfx942 resource report: VGPRs, AGPRs, SGPRs, LDS bytes, scratch, spills per kernel.
#
# Usage: ci/hip-compile-check.sh [--out DIR] [--no-install]
#   --out DIR      where the .s files go (default: target/hip-compile-check)
#   --no-install   fail instead of running apt-get when clang-19 or the HIP headers are missing
# Environment: CLANG (default clang-19), CLANGXX (default clang++-19), HIP_INCLUDE (the
# directory holding hip/hip_runtime.h, default /usr/include).
set -euo pipefail

usage() {
  sed -n '/^# Usage:/,/^# Environment/p' "$0" | sed 's/^# \{0,1\}//' | sed '$d'
}

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/target/hip-compile-check"
INSTALL=1
while [ $# -gt 0 ]; do
  case "$1" in
    --out)
      [ $# -ge 2 ] || { echo "hip-compile-check: --out needs a directory" >&2; exit 2; }
      OUT="$2"
      shift 2
      ;;
    --no-install) INSTALL=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "hip-compile-check: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done

CLANG="${CLANG:-clang-19}"
CLANGXX="${CLANGXX:-clang++-19}"
HIP_INCLUDE="${HIP_INCLUDE:-/usr/include}"
TARGETS="gfx90a:64 gfx942:64 gfx1100:32"
REPORT_ARCH=gfx942
START=$(date +%s)

# --- 0. tools ---------------------------------------------------------------------------------
missing() {
  ! command -v "$CLANG" >/dev/null 2>&1 || ! command -v "$CLANGXX" >/dev/null 2>&1 ||
    [ ! -f "$HIP_INCLUDE/hip/hip_runtime.h" ]
}
if missing; then
  if [ "$INSTALL" = 0 ]; then
    echo "hip-compile-check: $CLANG, $CLANGXX or $HIP_INCLUDE/hip/hip_runtime.h is missing" \
      "(install: apt-get install clang-19 libamdhip64-dev)" >&2
    exit 1
  fi
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  echo "hip-compile-check: installing clang-19 and libamdhip64-dev (Debian 12 main)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    clang-19 libamdhip64-dev >/dev/null
  if missing; then
    echo "hip-compile-check: still missing $CLANG / $CLANGXX / hip_runtime.h after install" >&2
    exit 1
  fi
fi
echo "hip-compile-check: $("$CLANG" --version | head -n 1); HIP headers" \
  "$(sed -n 's/^#define HIP_VERSION_MAJOR //p;s/^#define HIP_VERSION_MINOR //p' \
    "$HIP_INCLUDE/hip/hip_version.h" 2>/dev/null | paste -sd. -)"

# --- 1. ABI of the sources --------------------------------------------------------------------
mkdir -p "$OUT"
python3 "$ROOT/ci/kernel-abi-check.py" self-test >"$OUT/abi-self-test.log" 2>&1 || {
  cat "$OUT/abi-self-test.log" >&2
  echo "hip-compile-check: kernel-abi-check.py failed its self-test" >&2
  exit 1
}
python3 "$ROOT/ci/kernel-abi-check.py" --kernels "$ROOT/kernels"

# --- 2. host math of common.h -----------------------------------------------------------------
if [ "$(uname -m)" = x86_64 ] && grep -qw f16c /proc/cpuinfo 2>/dev/null; then
  "$CLANGXX" -O2 -mf16c -DWAVE=32 -DWF_HOST_TEST -I "$ROOT/kernels" \
    "$ROOT/ci/kernel-math-check.cpp" -o "$OUT/kernel-math-check" -lm
  "$OUT/kernel-math-check" | grep -v '^ok ' || true
  "$OUT/kernel-math-check" >/dev/null
else
  echo "hip-compile-check: skipping the host math check (needs x86-64 with F16C)"
fi

# --- 2b. qgemv.hip's block decoders on the host, against gguf-py's values ----------------------
"$CLANGXX" -O1 -std=c++17 -Wno-unknown-pragmas -DWAVE=32 -I "$ROOT/kernels" \
  "$ROOT/ci/kernel-quant-check.cpp" -o "$OUT/kernel-quant-check"
"$OUT/kernel-quant-check" "$ROOT/fixtures/quants" | grep -v '^ok ' || true
"$OUT/kernel-quant-check" "$ROOT/fixtures/quants" >/dev/null

# --- 2c. GEMV, attention and per-layer kernels whole on the host (fibers for threads) ----------
# ci/kernel-sim.h's emulator under qgemv.hip (--threads: the kernels take their block from the
# launch, WAVEFRONT_QGEMV_THREADS: every block below the bound gives the bound's bits),
# gemv.hip, decode_attention.hip, flash_attention.hip, (misc) attention.hip, rms_norm.hip,
# rope.hip, embedding.hip and argmax, and the device sampler against a port of the engine's, at
# both waves.
sim_check() { # NAME WAVE MMA ARGS...: build ci/NAME.cpp at WAVE (MMA: - for the FMA twin, or
  # 2 / 3 for AMD's MFMA / WMMA layouts on emulated instructions), run it with ARGS
  local name="$1" wave="$2" mma="$3" tag="$1-$2" def=()
  shift 3
  if [ "$mma" != - ]; then
    def=(-DWF_SIM_MMA="$mma")
    tag="$tag-mma$mma"
  fi
  "$CLANGXX" -O2 -std=c++17 -Wno-unknown-pragmas -Wno-psabi -DWAVE="$wave" "${def[@]}" \
    -I "$ROOT/kernels" -I "$ROOT/ci" "$ROOT/ci/$name.cpp" -o "$OUT/$tag"
  "$OUT/$tag" "$@" >"$OUT/$tag.log" || {
    grep -v '^ok ' "$OUT/$tag.log" >&2
    echo "hip-compile-check: $tag failed" >&2
    exit 1
  }
  tail -n 1 "$OUT/$tag.log" | sed "s/^/$tag: /"
}
for wave in 32 64; do
  sim_check kernel-sim-check "$wave" - --threads 256,512 "$ROOT/fixtures/quants"
  sim_check kernel-sim-gemv-check "$wave" -
  sim_check kernel-sim-attn-check "$wave" -
  sim_check kernel-sim-flash-check "$wave" -
  sim_check kernel-sim-misc-check "$wave" -
  sim_check kernel-sim-sampler-check "$wave" -
done
# The matrix-core GEMVs' and the attention kernels' products on AMD's layouts (common.h
# WF_MMA_MFMA at WAVE=64 for CDNA, WF_MMA_WMMA at WAVE=32 for RDNA3), the instructions
# emulated: paths no GPU here runs.
for mma_wave in "2 64" "3 32"; do
  set -- $mma_wave
  sim_check kernel-sim-gemv-check "$2" "$1"
  sim_check kernel-sim-attn-check "$2" "$1"
  sim_check kernel-sim-flash-check "$2" "$1"
done

# --- 3. compile -------------------------------------------------------------------------------
# -include hip/hip_runtime.h: what hipcc adds (clang's HIP wrapper does not include it);
# -nogpulib: no ROCm device libraries (common.h needs none).
FLAGS=(-x hip --cuda-device-only -nogpulib -O3 -S -Wall -Wextra -Werror
  -idirafter "$HIP_INCLUDE" -include hip/hip_runtime.h -I "$ROOT/kernels")
jobs_file="$OUT/jobs"
: >"$jobs_file"
# Each file for each target, and again with -DWF_COVERAGE (the path-coverage build the
# conformance suite runs: it must build for AMD too), into $OUT/<arch>-coverage/.
for target in $TARGETS; do
  arch="${target%:*}"
  wave="${target#*:}"
  for variant in plain coverage; do
    dir="$OUT/$arch"
    if [ "$variant" = coverage ]; then dir="$OUT/$arch-coverage"; fi
    rm -rf "${dir:?}"
    mkdir -p "$dir"
    for src in "$ROOT"/kernels/*.hip; do
      printf '%s\t%s\t%s\t%s\n' "$arch" "$wave" "$src" "$variant" >>"$jobs_file"
    done
  done
done
compile_one() {
  local arch="$1" wave="$2" src="$3" variant="$4" out extra=()
  out="$OUT/$arch/$(basename "$src" .hip).s"
  if [ "$variant" = coverage ]; then
    out="$OUT/$arch-coverage/$(basename "$src" .hip).s"
    extra=(-DWF_COVERAGE)
  fi
  if ! "$CLANG" "${FLAGS[@]}" "${extra[@]}" --offload-arch="$arch" -DWAVE="$wave" "$src" \
    -o "$out" 2>"$out.log"; then
    echo "hip-compile-check: FAILED $arch WAVE=$wave $variant $(basename "$src"):" >&2
    cat "$out.log" >&2
    return 1
  fi
  rm -f "$out.log"
}
export -f compile_one
export CLANG OUT
FLAGS_STR="$(printf '%q ' "${FLAGS[@]}")"
export FLAGS_STR
status=0
# One compiler per core; every failure is printed before the check fails.
tr '\t' '\n' <"$jobs_file" | xargs -d '\n' -n 4 -P "$(nproc)" \
  bash -c 'eval "FLAGS=($FLAGS_STR)"; compile_one "$@"' _ || status=$?
if [ "$status" != 0 ]; then
  echo "hip-compile-check: compile errors (above)" >&2
  exit 1
fi
n_files=$(wc -l <"$jobs_file")
echo "hip-compile-check: compiled $n_files (file, arch, plain|coverage) builds for $TARGETS"

# --- 4./5. assembly checks and the report -----------------------------------------------------
asm_status=0
for target in $TARGETS; do
  arch="${target%:*}"
  wave="${target#*:}"
  report=()
  if [ "$arch" = "$REPORT_ARCH" ]; then report=(--report); fi
  python3 "$ROOT/ci/kernel-abi-check.py" asm "$OUT/$arch" --arch "$arch" --wave "$wave" \
    "${report[@]}" || asm_status=1
done
if [ "$asm_status" != 0 ]; then
  echo "hip-compile-check: the assembly does not match the ABI or uses calls/scratch/spills" >&2
  exit 1
fi
echo "hip-compile-check: all checks passed in $(($(date +%s) - START)) s"
