#!/usr/bin/env bash
# NVIDIA compile check: every kernel in kernels/ compiled by NVRTC as the engine compiles it on
# an NVIDIA device (the emulated WAVE=64 and the coverage build included), for sm_90 (H100/H200)
# and sm_80 (A100), then assembled by ptxas: a kernel that would not build on the device (a
# syntax NVRTC rejects, static shared memory past 48 KiB, ...) fails here, on a machine with no
# GPU, instead of in a device session. Prints the sm_90 registers / spills / shared memory table.
#
# NVRTC and ptxas come from NVIDIA's PyPI wheels (nvidia-cuda-nvrtc, nvidia-cuda-nvcc, pinned to
# CUDA 13.0, the H200's NVRTC), unpacked into target/nvrtc (no CUDA toolkit, no driver needed).
# The device's own NVRTC stays the authority.
#
# Usage: ci/nvrtc-compile-check.sh [--kernels DIR] [--arch sm_XX ...]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KERNELS="$ROOT/kernels"
ARCHS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --kernels) KERNELS="$2"; shift 2 ;;
    --arch) ARCHS+=(--arch "$2"); shift 2 ;;
    -h | --help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "nvrtc-compile-check: unknown argument $1" >&2; exit 2 ;;
  esac
done

VERSION=13.0.88
DIR="$ROOT/target/nvrtc"
NVRTC="$DIR/nvidia/cu13/lib/libnvrtc.so.13"
PTXAS="$DIR/nvidia/cu13/bin/ptxas"
# shellcheck source=ci/nv-wheels.sh
. "$ROOT/ci/nv-wheels.sh"
[ -f "$NVRTC" ] || rm -f "$DIR/version"  # both tools or a fresh download
nv_wheels "$DIR" "$VERSION" "$PTXAS" nvidia-cuda-nvrtc nvidia-cuda-nvcc
[ -f "$NVRTC" ] || { echo "nvrtc-compile-check: no $NVRTC in the wheels" >&2; exit 1; }

# (NVRTC 13 opens its builtins library by name: from beside it.)
LD_LIBRARY_PATH="$(dirname "$NVRTC")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
  python3 "$ROOT/ci/nvrtc-compile.py" --nvrtc "$NVRTC" --ptxas "$PTXAS" --kernels "$KERNELS" \
  --out "$ROOT/target/nvrtc-compile-check" "${ARCHS[@]}"
