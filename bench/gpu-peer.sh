#!/usr/bin/env bash
# Side-by-side GPU numbers on the lent device: llama.cpp (the copy vendored in the
# `llama-cpp-python` source package on PyPI, built there for CUDA) and `wavefront bench --backend
# gpu` on the same GGUF file, alternating rounds so drift on a shared machine hits both.
#
#   here:   bench/gpu-peer.sh pack TARBALL        (fetches the sdist, keeps what a CUDA build of
#                                                   llama-bench needs: ~4 MB of xz to carry)
#   device: bench/gpu-peer.sh build TARBALL        (CMake + ninja, sm_90a; ~4 min on 16 cores)
#   device: bench/gpu-peer.sh bench MODEL [ROUNDS]  (one markdown table: pp512, tg128 medians)
#
# The device has no network, hence the carried source. Builds outside the repository (WORK,
# default /tmp/wavefront-gpu-peer); nothing built from the package is committed. WF names the
# Wavefront binary (default target/release/wavefront).
set -euo pipefail

VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
WORK=${WORK:-/tmp/wavefront-gpu-peer}
WF=${WF:-target/release/wavefront}
BENCH="$WORK/build/bin/llama-bench"
mkdir -p "$WORK"

case ${1:?usage: bench/gpu-peer.sh pack TARBALL | build TARBALL | bench MODEL [ROUNDS]} in
pack)
  out=$(realpath -m "${2:?pack TARBALL}")
  python3 - "$VERSION" "$WORK/src.tar.gz" <<'PY'
import re, sys, urllib.parse, urllib.request
version, dest = sys.argv[1], sys.argv[2]
index = "https://pypi.org/simple/llama-cpp-python/"
page = urllib.request.urlopen(index).read().decode()
name = f"llama_cpp_python-{version}.tar.gz"
href = next(h for h in re.findall(r'href="([^"]+)"', page) if name in h)
urllib.request.urlretrieve(urllib.parse.urljoin(index, href.split("#")[0]), dest)
PY
  rm -rf "$WORK/unpacked" "$WORK/llama.cpp" && mkdir -p "$WORK/unpacked" "$WORK/llama.cpp"
  tar -xzf "$WORK/src.tar.gz" -C "$WORK/unpacked"
  src=$(ls -d "$WORK"/unpacked/llama_cpp_python-*/vendor/llama.cpp)
  # The build's inputs only (the docs and vocabulary files are 110 of its 176 MB), and of ggml's
  # backends only the CPU and CUDA ones.
  for d in CMakeLists.txt cmake ggml src include common tools vendor licenses LICENSE; do
    cp -a "$src/$d" "$WORK/llama.cpp/"
  done
  rm -rf "$WORK/llama.cpp/tools/ui" "$WORK"/llama.cpp/ggml/src/ggml-{et,metal,hexagon,sycl,vulkan,opencl}
  tar -C "$WORK" -cJf "$out" llama.cpp
  ls -la "$out"
  ;;
build)
  tarball=$(realpath "${2:?build TARBALL}")
  rm -rf "$WORK/llama.cpp" && tar -xJf "$tarball" -C "$WORK"
  cmake -S "$WORK/llama.cpp" -B "$WORK/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES=90a -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_TOOLS=ON \
    >"$WORK/cmake.log" 2>&1
  cmake --build "$WORK/build" --target llama-bench -j "$(nproc)" >"$WORK/build.log" 2>&1
  "$BENCH" --help >/dev/null 2>&1 || { tail -20 "$WORK/build.log"; exit 1; }
  echo "built $BENCH"
  ;;
bench)
  model=${2:?bench MODEL [ROUNDS]}
  rounds=${3:-3}
  median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
  : >"$WORK/llama.txt"
  : >"$WORK/wf.txt"
  for r in $(seq "$rounds"); do
    echo "round $r/$rounds" >&2
    # csv: the last two columns are avg_ts, stddev_ts; n_prompt is 512 for pp, 0 for tg.
    "$BENCH" -m "$model" -ngl 99 -fa 1 -p 512 -n 128 -r 3 -o csv 2>"$WORK/llama-bench.err" |
      awk -F, 'NR > 1 { gsub(/"/, ""); print ($0 ~ /,512,0,/ ? "pp" : "tg"), $(NF-1) }' \
        >>"$WORK/llama.txt"
    "$WF" bench --backend gpu --model "$model" --pp 512 --tg 128 --reps 3 --depth 0 \
      --sampling greedy,default 2>/dev/null |
      awk -F'|' '/^\| pp512 / { print "pp", $3 } /^\| tg128 \|/ { print "tg", $3 }
        /^\| tg128 sampled / { print "ts", $3 }' >>"$WORK/wf.txt"
  done
  med() { awk -v k="$1" '$1 == k { gsub(/,/, "", $2); print $2 }' "$2" | median; }
  lpp=$(med pp "$WORK/llama.txt")
  ltg=$(med tg "$WORK/llama.txt")
  wpp=$(med pp "$WORK/wf.txt")
  wtg=$(med tg "$WORK/wf.txt")
  wts=$(med ts "$WORK/wf.txt")
  [ -n "$lpp" ] && [ -n "$ltg" ] || { echo "llama-bench gave no figures:"; tail -5 "$WORK/llama-bench.err"; exit 1; }
  [ -n "$wtg" ] || { echo "wavefront bench gave no figures"; exit 1; }
  echo
  echo "$(basename "$model"): medians of $rounds alternating rounds ($(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1), $(date -u +%F))."
  echo "llama-bench -fa 1 -ngl 99 has no sampler; Wavefront's sampled row runs the CLI's default sampling."
  echo
  echo "| engine | pp512 tok/s | tg128 tok/s | tg128 sampled tok/s |"
  echo "|---|---:|---:|---:|"
  printf "| llama.cpp (llama-cpp-python %s) | %.1f | %.1f | — |\n" "$VERSION" "$lpp" "$ltg"
  printf "| Wavefront (--backend gpu) | %.1f | %.1f | %.1f |\n" "$wpp" "$wtg" "${wts:-0}"
  awk -v a="$wpp" -v b="$lpp" -v c="$wtg" -v d="$ltg" -v e="${wts:-0}" \
    'BEGIN { printf "| Wavefront / llama.cpp | %.2f× | %.2f× | %.2f× |\n", a / b, c / d, e / d }'
  ;;
*)
  echo "usage: bench/gpu-peer.sh pack TARBALL | build TARBALL | bench MODEL [ROUNDS]" >&2
  exit 2
  ;;
esac
