#!/usr/bin/env bash
# The hot loops of a kernel file's kernels in sm_90 SASS, counted here, without a GPU: the file
# compiled by NVRTC as the engine compiles it (ci/nvrtc-compile.py with the toolchain that
# ci/nvrtc-compile-check.sh unpacks into target/nvrtc), assembled by ptxas, disassembled by
# nvdisasm (NVIDIA's PyPI wheel nvidia-cuda-nvdisasm, unpacked into target/nvdisasm; the oldest
# on PyPI is 13.2), then ci/sass-loops.py: each kernel's instructions and the loops holding KEY.
# A step of a GEMV's loop in issue slots, beside the bytes it moves (see
# bench/results/2026-12-07-qgemv-blocks-check-h100/README.md).
#
# Usage: ci/sass-loops.sh [--kernels DIR] [--file qgemv.hip] [--wave 32|64] [--key IDP] [--mix]
#                         KERNEL...
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KERNELS="$ROOT/kernels"
FILE=qgemv.hip
WAVE=32
PY_ARGS=()
NAMES=()
while [ $# -gt 0 ]; do
  case "$1" in
    --kernels) KERNELS="$2"; shift 2 ;;
    --file) FILE="$2"; shift 2 ;;
    --wave) WAVE="$2"; shift 2 ;;
    --key) PY_ARGS+=(--key "$2"); shift 2 ;;
    --mix) PY_ARGS+=(--mix); shift ;;
    -h | --help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "sass-loops: unknown argument $1" >&2; exit 2 ;;
    *) NAMES+=("$1"); shift ;;
  esac
done
[ ${#NAMES[@]} -gt 0 ] || { echo "sass-loops: name at least one kernel" >&2; exit 2; }
case "$WAVE" in 32 | 64) ;; *) echo "sass-loops: --wave 32 or 64" >&2; exit 2 ;; esac

NV="$ROOT/target/nvrtc/nvidia/cu13"
if [ ! -f "$NV/lib/libnvrtc.so.13" ] || [ ! -x "$NV/bin/ptxas" ]; then
  echo "sass-loops: no NVRTC in target/nvrtc: run ci/nvrtc-compile-check.sh --arch sm_90 once" >&2
  exit 1
fi
DIS_VERSION=13.2.78
DIS="$ROOT/target/nvdisasm"
# shellcheck source=ci/nv-wheels.sh
. "$ROOT/ci/nv-wheels.sh"
nv_wheels "$DIS" "$DIS_VERSION" "$DIS/nvidia/cu13/bin/nvdisasm" nvidia-cuda-nvdisasm

OUT="$ROOT/target/sass-loops"
rm -rf "$OUT" && mkdir -p "$OUT/in"
cp "$KERNELS/$FILE" "$KERNELS/common.h" "$OUT/in/"
LD_LIBRARY_PATH="$NV/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
  python3 "$ROOT/ci/nvrtc-compile.py" --nvrtc "$NV/lib/libnvrtc.so.13" --ptxas "$NV/bin/ptxas" \
  --kernels "$OUT/in" --out "$OUT/nv" --arch sm_90 >"$OUT/nvrtc.log"
"$NV/bin/ptxas" -arch=sm_90 -O3 "$OUT/nv/$FILE.sm_90.w$WAVE.ptx" -o "$OUT/$FILE.w$WAVE.cubin"
"$DIS/nvidia/cu13/bin/nvdisasm" -c "$OUT/$FILE.w$WAVE.cubin" >"$OUT/$FILE.w$WAVE.sass"
grep -E "^\| kernel|^\|---" "$OUT/nvrtc.log" | head -n 2
for n in "${NAMES[@]}"; do grep -E "^\| $n \|" "$OUT/nvrtc.log" || true; done
python3 "$ROOT/ci/sass-loops.py" "$OUT/$FILE.w$WAVE.sass" "${NAMES[@]}" "${PY_ARGS[@]}"
