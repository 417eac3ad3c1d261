#!/usr/bin/env bash
# One device session on a lent NVIDIA GPU (the `device` tool of this workplace), in two stages
# because the default model (98 MB) is larger than what one call may carry:
#
#   here:   cargo build --release -p wavefront -p wavefront-conformance
#           mkdir -p .device && cp target/release/{wavefront,wavefront-conformance} .device/
#           strip .device/* && xz -6 .device/wavefront .device/wavefront-conformance
#           split -b 49M -d ~/.cache/wavefront/models/SmolLM2-135M-Instruct.Q4_1.gguf .device/model.part
#   call 1: ci/device-session.sh ops      (carry .device/*.xz and .device/model.part00)
#   call 2: ci/device-session.sh models   (carry .device/model.part01; within the warm window)
#
# Stage `ops`: every op case at WAVE=32 and the emulated WAVE=64, and the model-level checks on
# every tiny fixture. Stage `models`: SmolLM2 model-level checks and golden tokens, a greedy run,
# and the benchmarks. Results land in $OUT; a short table is printed last.
set -uo pipefail
# A GPU test that would skip here is a failure (DESIGN.md "Conformance policy").
export WAVEFRONT_REQUIRE_GPU=1
stage=${1:?usage: ci/device-session.sh ops|models}
OUT=${OUT:-/tmp/wavefront-out}
mkdir -p "$OUT" bin
part0=/root/wavefront-model.part00
model=$HOME/.cache/wavefront/models/SmolLM2-135M-Instruct.Q4_1.gguf
sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

for b in wavefront wavefront-conformance; do
    if [ -f ".device/$b.xz" ]; then xz -dc ".device/$b.xz" > "bin/$b" && chmod +x "bin/$b"; fi
done
[ -x bin/wavefront ] || { echo "no binaries: carry .device/*.xz" >&2; exit 2; }

case $stage in
ops)
    [ -f .device/model.part00 ] && cp .device/model.part00 "$part0"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
    bin/wavefront info --devices | tee "$OUT/devices.txt"
    bin/wavefront-conformance --backend gpu --wave all \
        --fixtures fixtures/models --model fixtures/gguf/model.f32.gguf --model fixtures/gguf/tiny_llama \
        --report "$OUT/conformance-ops.md" --json "$OUT/conformance-ops.json" > "$OUT/conformance-ops.log" 2>&1
    echo "conformance exit $?"
    grep -E "FAIL|✗" "$OUT/conformance-ops.log" | head -30
    tail -25 "$OUT/conformance-ops.log"
    ;;
models)
    mkdir -p "$(dirname "$model")"
    cat "$part0" .device/model.part01 > "$model"
    echo "$sha  $model" | sha256sum -c - || exit 3
    bin/wavefront run --backend gpu --temperature 0 --max-tokens 64 "The capital of France is" > "$OUT/run.txt" 2>&1
    cat "$OUT/run.txt"
    bin/wavefront run --backend gpu --temperature 0 --max-tokens 128 --format json "Once upon a time, in a small village," > "$OUT/run.json" 2>&1
    bin/wavefront-conformance --backend gpu --wave all --op sample --model "$model" \
        --golden fixtures/smollm2/greedy_goldens.json --streams-dir "$OUT" \
        --report "$OUT/conformance-smollm2.md" --json "$OUT/conformance-smollm2.json" > "$OUT/conformance-smollm2.log" 2>&1
    echo "conformance exit $?"
    grep -E "✗" "$OUT/conformance-smollm2.log" | head -20
    for shape in model llama-3.2-1b llama-3.1-8b; do
        if [ "$shape" = model ]; then args=(--model "$model"); name=smollm2-135m-q4_1; else args=(--shape "$shape"); name=$shape; fi
        bin/wavefront bench --backend gpu "${args[@]}" --reps 5 --depth 0,8192,32768 \
            --json "$OUT/bench-$name.json" --markdown "$OUT/bench-$name.md" > "$OUT/bench-$name.log" 2>&1
        echo "bench $name exit $?"
    done
    tail -6 "$OUT/conformance-smollm2.log"
    cat "$OUT"/bench-*.md
    ;;
*) echo "unknown stage $stage" >&2; exit 2 ;;
esac
