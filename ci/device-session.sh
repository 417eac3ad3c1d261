#!/usr/bin/env bash
# One device session on a lent NVIDIA GPU (the `device` tool of this workplace), in two calls
# because the default model (98 MB) is larger than what one call may carry (64 MiB):
#
#   here:   ci/device-session.sh pack        (builds, strips, compresses into .device/)
#   call 1: ci/device-session.sh ops         (carry .device/ops: every binary, model part 0)
#   call 2: ci/device-session.sh llama       (carry .device/ops, or nothing within the warm
#                                             window (30 s): .device/ is ignored, so it stays)
#   call 3: ci/device-session.sh smollm2     (carry .device/models: model part 1, within the
#                                             warm window of a call that had part 0)
#
# Stage `ops`: the GPU test binaries (every op case and the kernel path coverage at WAVE=32 and
# the emulated WAVE=64, a planted kernel that does not compile, an arena past 2^32 elements,
# graphs, the vendor layer), then wavefront-conformance on every op and fixture (the committed
# report). Stage `llama`: Llama-3.2-1B and 3.1-8B shaped HF directories run with no --context
# and at --context 131072, and the random-weight benchmarks (8B at depth 32768 too). Stage
# `smollm2`: SmolLM2 model-level checks and golden tokens (test binaries and the report), a
# greedy run, its bench. Every GPU test runs with WAVEFRONT_REQUIRE_GPU=1.
# Results are gathered in /tmp/wavefront-results/<stage> and come back as one archive,
# $OUT/<stage>.tar.gz (the tool returns at most 8 files); a short table is printed last.
# Several stages in one call (the same stage twice among them): ci/device-chain.sh.
set -uo pipefail
# Each command runs under its own `timeout`, which puts it in a process group of its own and
# kills that whole group when it expires (ncu's target and bench --serve's server with it).
# Do not put another `timeout` around a stage (`timeout 300 ci/device-session.sh ...`): it stops
# the stage but not the command the stage is running, which keeps the GPU busy while the next
# stage measures (bench/results/2026-12-06-attn-prefetch-h100, sixth call). Limit a stage with
# the device call's own time limit, or give the stage's commands their limits.
# A GPU test that would skip here is a failure (DESIGN.md "Conformance policy").
export WAVEFRONT_REQUIRE_GPU=1
stage=${1:?usage: ci/device-session.sh pack|pack-lean|pack-blob|unblob|ops|llama|smollm2|decode|attention|prefill|kvq8-check|quant-check|quant-gpu|batch|batch-bench|batch-profile|rows|spec|batch-check|steps|mma|attn-rows|rows-profile|qgemv-profile|kvq8-bench|kvq8-ab|sampler|serve-gpu|serve-shape|verify-graph|q8a|qgemv-groups|gemv-groups|short-attn|variants|gemma3|sync}
# insta finds the snapshots from the workspace root without cargo (there is none there).
export INSTA_WORKSPACE_ROOT=/work/main
DEST=${OUT:-/tmp/wavefront-out}
OUT=/tmp/wavefront-results/$stage
model=$HOME/.cache/wavefront/models/SmolLM2-135M-Instruct.Q4_1.gguf
sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
OPS_TESTS="conformance:ops_gpu conformance:gpu_required conformance:gpu_large_arena wavefront:gpu_graph wavefront:gpu_gemv wavefront:gpu_vendor"
MODEL_TESTS=${MODEL_TESTS-conformance:model_gpu conformance:golden_tokens}

# The test binaries know their sources by the path they were built at; give them that path.
built_at=/work/main

test_binary() { # package:test → the newest release test binary of it
  local t=${1#*:}
  ls -t target/release/deps/"$t"-* 2>/dev/null | grep -v '\.d$' | head -n 1
}

pack() {
  local t
  cargo build --release -p wavefront -p wavefront-conformance || exit 1
  # One cargo call per package (the test names are per package).
  cargo test --release --no-run -p wavefront-conformance \
    $(for t in $OPS_TESTS $MODEL_TESTS; do [ "${t%%:*}" = conformance ] && echo "--test ${t#*:}"; done) || exit 1
  cargo test --release --no-run -p wavefront \
    $(for t in $OPS_TESTS $MODEL_TESTS; do [ "${t%%:*}" = wavefront ] && echo "--test ${t#*:}"; done) || exit 1
  # The engine's unit tests (the GPU ones among them run against the device there).
  lib_tests=$(cargo test --release --no-run -p wavefront --lib 2>&1 |
    sed -n 's/.*Executable unittests src\/lib.rs (\(.*\))/\1/p' | tail -n 1)
  [ -n "$lib_tests" ] || exit 1
  rm -rf .device && mkdir -p .device/ops .device/models
  put() { # file dest-dir name
    cp "$1" "$2/$3" && strip "$2/$3" && xz -6 -T2 "$2/$3"
  }
  put target/release/wavefront-conformance .device/ops wavefront-conformance
  put target/release/wavefront .device/ops wavefront
  for t in $OPS_TESTS $MODEL_TESTS; do put "$(test_binary "$t")" .device/ops "${t#*:}"; done
  put "$lib_tests" .device/ops engine_lib
  [ -f "$model" ] || target/release/wavefront info >/dev/null # fetches the default model
  # What travels is at most 64 MiB a call, the working tree included: 38 MiB of the model
  # with the binaries, the rest alone.
  head -c $((38 << 20)) "$model" >.device/ops/model.part00
  tail -c +$(((38 << 20) + 1)) "$model" >.device/models/model.part01
  git rev-parse HEAD >.device/ops/commit
  du -sh .device/ops .device/models
}

# pack, then only the binaries named in LEAN_BINS in .device/ops (default: wavefront,
# wavefront-conformance, golden_tokens: 9.6 MB of xz, what `smollm2 QUICK=1`, `qgemv-groups
# PART=check` and the benches run) and the default model in two parts, .device/m1 (LEAN_FIRST
# bytes, default 38,500,000) and .device/m2 (the rest), so that it travels in two calls of one
# warm window: call 1 carries .device/ops and .device/m1 with the whole tree (~14 MB with
# bench/results and conformance/reports moved aside), call 2 .device/m2 (60 MB) with the tree
# less fixtures/models, fixtures/quant_models and fixtures/gguf (moved aside for that call:
# `smollm2` needs only fixtures/smollm2). A base binary for an A/B goes to .device/ops/base/
# (ci/device-ab.sh runs it beside the new one and the kernel variants in .device/ops).
pack_lean() {
  local keep=" ${LEAN_BINS:-wavefront wavefront-conformance golden_tokens} " f b
  local first=${LEAN_FIRST:-38500000}
  pack
  for f in .device/ops/*.xz; do
    b=$(basename "$f" .xz)
    case "$keep" in *" $b "*) ;; *) rm -f "$f" ;; esac
  done
  rm -rf .device/ops/model.part00 .device/models .device/m[0-9]
  mkdir -p .device/m1 .device/m2
  head -c "$first" "$model" >.device/m1/smolpart.00
  tail -c +$((first + 1)) "$model" >.device/m2/smolpart.01
  du -sb .device/ops .device/m1 .device/m2
}

unpack() { # dir
  mkdir -p .device/bin
  ln -sfn .device/bin bin
  for f in "$1"/*.xz; do
    [ -f "$f" ] || continue
    xz -dc "$f" >".device/bin/$(basename "$f" .xz)" && chmod +x ".device/bin/$(basename "$f" .xz)"
  done
  # The binaries look for fixtures and for each other where they were built.
  if [ "$(pwd)" != "$built_at" ]; then
    mkdir -p "$(dirname "$built_at")" && ln -sfn "$(pwd)" "$built_at"
  fi
  mkdir -p target/release
  for b in wavefront wavefront-conformance; do
    [ -x "bin/$b" ] && ln -sf "$(pwd)/.device/bin/$b" "target/release/$b"
  done
}

model_from_parts() { # the default model from .device/m1..m3 (three calls' carries), checked
  mkdir -p "$(dirname "$model")"
  if [ -f "$model" ] && echo "$sha  $model" | sha256sum -c --status - 2>/dev/null; then
    return # an earlier call (or `unblob`) put it there
  fi
  cat .device/m[1-9]/smolpart.* >"$model" # m1, m2 (pack-lean) or m1..m3, in order
  echo "$sha  $model" | sha256sum -c - || exit 3
}

default_model() { # the default model from whichever parts the calls carried: .device/m1..m3
  # (three calls) or m1, m2 (pack-lean's two), else pack's two (model.part00 beside the
  # binaries, .device/models), checked; an earlier call's copy if it checks out
  if [ -f "$model" ] && echo "$sha  $model" | sha256sum -c --status - 2>/dev/null; then
    return
  fi
  if [ -d .device/m1 ]; then
    model_from_parts
    return
  fi
  mkdir -p "$(dirname "$model")"
  cat .device/ops/model.part00 .device/models/model.part01 >"$model"
  echo "$sha  $model" | sha256sum -c - || exit 3
}

gemma=$HOME/.cache/wavefront/models/gemma-3-270m-q4_k_m.gguf
gemma_sha=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
gemma_bytes=253113024

# Both real models as one stream (Gemma 3's file, then the default model) cut into parts
# .device/d01/part, .device/d02/part, … of at most BLOB_PART bytes: `pack-blob` here, one part a
# call there within the warm window (the first call's smaller, beside the binaries: BLOB_FIRST);
# `unblob` writes each file whose bytes have all arrived, sha256-checked.
pack_blob() {
  local first=${BLOB_FIRST:-25000000} part=${BLOB_PART:-49000000} i=1 off=0 size n
  [ -f "$gemma" ] || target/release/wavefront info --model gemma3 >/dev/null
  [ -f "$model" ] || target/release/wavefront info >/dev/null
  rm -rf .device/d[0-9]*
  size=$(( gemma_bytes + $(stat -c %s "$model") ))
  while [ "$off" -lt "$size" ]; do
    n=$part; [ "$i" = 1 ] && n=$first
    mkdir -p "$(printf '.device/d%02d' "$i")"
    cat "$gemma" "$model" | tail -c +$((off + 1)) | head -c "$n" >"$(printf '.device/d%02d/part' "$i")"
    off=$((off + n)); i=$((i + 1))
  done
  du -b .device/d[0-9]*/part
}

unblob() {
  local have
  have=$(cat .device/d[0-9]*/part 2>/dev/null | wc -c)
  mkdir -p "$(dirname "$model")"
  if [ "$have" -ge "$gemma_bytes" ] && ! echo "$gemma_sha  $gemma" | sha256sum -c --status - 2>/dev/null; then
    cat .device/d[0-9]*/part | head -c "$gemma_bytes" >"$gemma"
    echo "$gemma_sha  $gemma" | sha256sum -c - || exit 3
  fi
  if [ "$have" -gt "$gemma_bytes" ] && ! echo "$sha  $model" | sha256sum -c --status - 2>/dev/null; then
    cat .device/d[0-9]*/part | tail -c +$((gemma_bytes + 1)) >"$model"
    echo "$sha  $model" | sha256sum -c - 2>/dev/null || rm -f "$model" # not all there yet
  fi
  echo "blob: $have bytes; gemma3 $([ -f "$gemma" ] && echo ok || echo absent), smollm2 $([ -f "$model" ] && echo ok || echo absent)"
}

finish() { # archive the stage's results into the one file that comes back (after every step,
  # so that a call stopped at its time limit still returns what was done)
  mkdir -p "$DEST"
  tar -C /tmp/wavefront-results -czf "$DEST/$stage.tar.gz" "$stage"
}

begin_summary() { # the stage's summary table, empty
  echo "| step | exit | time | result |" >"$OUT/summary.md"
  echo "|---|---:|---:|---|" >>"$OUT/summary.md"
}

gpu_info() {
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
}

bench() { # name, args...
  local name=$1 start=$SECONDS
  shift
  bin/wavefront bench --backend gpu "$@" --json "$OUT/bench-$name.json" --markdown "$OUT/bench-$name.md" \
    >"$OUT/bench-$name.log" 2>&1
  echo "| bench $name | $? | $((SECONDS - start)) s | |" | tee -a "$OUT/summary.md"
  finish
}

fixtures_conformance() { # name [extra args]: wavefront-conformance on the fixtures (model-level
  # checks and sampled streams through the device sampler, both waves), a summary row
  local name=$1 start=$SECONDS
  shift
  timeout 240 bin/wavefront-conformance --backend gpu --wave all --no-coverage --op sample \
    --fixtures fixtures/models --model fixtures/gguf/model.f32.gguf --model fixtures/gguf/tiny_llama \
    "$@" --report "$OUT/$name.md" --json "$OUT/$name.json" >"$OUT/$name.log" 2>&1
  echo "| wavefront-conformance $name | $? | $((SECONDS - start)) s | $(tail -n 1 "$OUT/$name.log") |" | tee -a "$OUT/summary.md"
  grep -E "FAIL|✗" "$OUT/$name.log" | head -20
  finish
}

run_test() { # name
  local log="$OUT/test-$1.log" start=$SECONDS
  "bin/$1" --test-threads=1 --nocapture >"$log" 2>&1
  local rc=$?
  echo "| test $1 | $rc | $((SECONDS - start)) s | $(grep -E '^test result' "$log" | tail -n 1) |" | tee -a "$OUT/summary.md"
  [ "$rc" = 0 ] || grep -E "panicked|FAILED|failed" "$log" | head -20
}

filtered_test() { # binary filter [pattern [label note]]: the binary's tests whose names hold
  # filter, into test-<binary>-<filter>.log; a summary row; the log's panics, failures and
  # lines matching pattern
  local log="$OUT/test-$1-$2.log" start=$SECONDS
  "bin/$1" "$2" --test-threads=1 --nocapture >"$log" 2>&1
  echo "| test $1 $2${4:+ $4} | $? | $((SECONDS - start)) s | $(grep -E '^test result' "$log" | tail -n 1) |" | tee -a "$OUT/summary.md"
  grep -E "panicked|FAILED${3:+|$3}" "$log" | head -20
  finish
}

GEMV_OPS="--op linear --op linear_stacked --op norm_linear_stacked --op gate_up_swiglu --op norm_gate_up_swiglu --op linear_residual"

op_cases() { # name seconds pattern [args...]: wavefront-conformance's op cases at both waves
  # (OPS_WAVE=32 or 64: that wave alone) (args: the --op list, --kernels, --no-coverage ...) into
  # NAME.{md,json,log}, a summary row, the log's failures and lines matching pattern
  local name=$1 secs=$2 pattern=$3 start=$SECONDS
  shift 3
  timeout "$secs" bin/wavefront-conformance --backend gpu --wave "${OPS_WAVE:-all}" "$@" \
    --report "$OUT/$name.md" --json "$OUT/$name.json" >"$OUT/$name.log" 2>&1
  echo "| wavefront-conformance $name | $? | $((SECONDS - start)) s | $(tail -n 1 "$OUT/$name.log") |" | tee -a "$OUT/summary.md"
  grep -E "FAIL|✗${pattern:+|$pattern}" "$OUT/$name.log" | head -30
  finish
}

gemv_ops() { # pattern: the GEMV op cases at both waves with path coverage (gemv-ops.*)
  # shellcheck disable=SC2086
  op_cases gemv-ops 300 "${1-}" $GEMV_OPS
}

attn_ops() { # seconds pattern: the rope_attention op cases at both waves with path coverage
  # (attn-ops.*)
  op_cases attn-ops "$1" "${2-}" --op rope_attention
}

gemv_bench_modes() { # the GEMV microbench (per projection) with the matrix-core GEMVs on, then
  # off (bench-gemv-mma{1,0}.*), a summary row each; the first table's rows
  local on start
  for on in 1 0; do
    start=$SECONDS
    WAVEFRONT_GEMV_MMA=$on timeout 150 bin/wavefront bench --gemv --backend gpu \
      --json "$OUT/bench-gemv-mma$on.json" --markdown "$OUT/bench-gemv-mma$on.md" >"$OUT/bench-gemv-mma$on.log" 2>&1
    echo "| bench --gemv (WAVEFRONT_GEMV_MMA=$on) | $? | $((SECONDS - start)) s | |" | tee -a "$OUT/summary.md"
    finish
  done
  grep -hE "^\| [a-z]" "$OUT"/bench-gemv-mma1.md | head -20
}

mkdir -p "$OUT"
case $stage in
pack) pack ;;
pack-lean) pack_lean ;;
pack-blob) pack_blob ;;
unblob) unblob ;;
ops)
  unpack .device/ops
  cp .device/ops/model.part00 /root/wavefront-model.part00
  begin_summary
  gpu_info
  bin/wavefront info --devices | tee "$OUT/devices.txt"
  for t in $OPS_TESTS engine_lib; do run_test "${t#*:}"; done
  start=$SECONDS
  bin/wavefront-conformance --backend gpu --wave all \
    --fixtures fixtures/models --model fixtures/gguf/model.f32.gguf --model fixtures/gguf/tiny_llama \
    --report "$OUT/conformance-ops.md" --json "$OUT/conformance-ops.json" >"$OUT/conformance-ops.log" 2>&1
  echo "| wavefront-conformance ops + fixtures | $? | $((SECONDS - start)) s | $(tail -n 1 "$OUT/conformance-ops.log") |" | tee -a "$OUT/summary.md"
  grep -E "FAIL|✗|UNREACHED" "$OUT/conformance-ops.log" | head -30
  grep -E "^\| gpu" "$OUT/conformance-ops.log"
  finish
  cat "$OUT/summary.md"
  ;;
llama)
  # Llama 3 shapes as Hugging Face directories (the model's context, 131072, by default), and
  # the benchmarks of the random-weight shapes. Needs no model file.
  unpack .device/ops
  begin_summary
  for shape in llama-3.2-1b llama-3.1-8b; do
    dir=/tmp/hf-$shape
    start=$SECONDS
    [ -f "$dir/model.safetensors" ] || python3 ci/make-hf-shape.py "$shape" "$dir" 2>>"$OUT/make-hf.log"
    echo "| make $dir | $? | $((SECONDS - start)) s | |" >>"$OUT/summary.md"
    for ctx in "" "--context 131072"; do
      start=$SECONDS
      log="$OUT/run-$shape${ctx:+-131072}.txt"
      # shellcheck disable=SC2086
      bin/wavefront run --backend gpu --model "$dir" --temperature 0 --max-tokens 16 $ctx "t5 t6 t7" >"$log" 2>&1
      echo "| run $shape ${ctx:-(no --context)} | $? | $((SECONDS - start)) s | $(grep -E '^\[' "$log" | tr '\n' ' ') |" | tee -a "$OUT/summary.md"
    done
    rm -rf "$dir"
    finish
  done
  start=$SECONDS
  bin/wavefront bench --gemv --backend gpu --json "$OUT/bench-gemv.json" --markdown "$OUT/bench-gemv.md" \
    >"$OUT/bench-gemv.log" 2>&1
  echo "| bench --gemv | $? | $((SECONDS - start)) s | |" | tee -a "$OUT/summary.md"
  bench llama-3.2-1b --shape llama-3.2-1b --reps 5 --depth 0 --sampling greedy,default
  bench llama-3.1-8b --shape llama-3.1-8b --reps 5 --depth 0 --sampling greedy,default
  # Decode at depth 32768 with the phase-1 attention kernel is slow: a few tokens suffice to
  # show it runs (the attention issue brings the split-K kernel).
  bench llama-3.1-8b-d32768 --shape llama-3.1-8b --reps 2 --tg 8 --pp 64 --depth 0,32768
  cat "$OUT"/bench-*.md
  cat "$OUT/summary.md"
  ;;
smollm2)
  # SmolLM2: the model-level test binaries (model_gpu includes the prompt-lookup speculation
  # check under the greedy divergence rule), conformance with golden tokens, runs, the bench, and
  # prompt-lookup speculation against plain decode. QUICK=1: instead of the test binaries,
  # golden_tokens' GPU SmolLM2 streams (both waves) with any snapshot they no longer equal
  # brought back as snap-new/*.snap.new (to review and commit), the golden conformance, one
  # greedy run and the bench; not the sampled runs nor lookup. MODEL_TESTS= names the test
  # binaries (default model_gpu and golden_tokens). The model comes from an earlier call's
  # copy, `unblob`'s, pack's two parts, or (when the call carried .device/m1..m3, as
  # batch-check) from three.
  unpack .device/ops
  default_model
  begin_summary
  if [ "${QUICK:-0}" = 1 ]; then
    rm -f conformance/tests/snapshots/*.snap.new
    filtered_test golden_tokens gpu_greedy_streams_match_transformers_on_smollm2
    if ls conformance/tests/snapshots/*.snap.new >/dev/null 2>&1; then
      # the first stream off its snapshot stops the test: again with the snapshot assertions
      # passing (the checks against transformers still assert), for every wave's new stream
      INSTA_FORCE_PASS=1 INSTA_UPDATE=new filtered_test golden_tokens gpu_greedy_streams_match_transformers_on_smollm2 \
        "" "(INSTA_FORCE_PASS=1)"
    fi
    mkdir -p "$OUT/snap-new"
    cp conformance/tests/snapshots/*.snap.new "$OUT/snap-new/" 2>/dev/null &&
      echo "| snapshots no longer equal: $(ls "$OUT/snap-new" | tr '\n' ' ') | 1 | | |" | tee -a "$OUT/summary.md"
    finish
  else
    for t in $MODEL_TESTS; do run_test "${t#*:}"; finish; done
  fi
  start=$SECONDS
  # The SmolLM2 model-level report is model_gpu's output (in its log); this adds the golden
  # streams against transformers.
  bin/wavefront-conformance --backend gpu --wave all --op sample \
    --golden fixtures/smollm2/greedy_goldens.json --streams-dir "$OUT" \
    --report "$OUT/conformance-smollm2.md" --json "$OUT/conformance-smollm2.json" >"$OUT/conformance-smollm2.log" 2>&1
  echo "| wavefront-conformance golden tokens | $? | $((SECONDS - start)) s | $(tail -n 1 "$OUT/conformance-smollm2.log") |" | tee -a "$OUT/summary.md"
  grep -E "✗" "$OUT/conformance-smollm2.log" | head -20
  finish
  bin/wavefront run --backend gpu --temperature 0 --max-tokens 64 "The capital of France is" >"$OUT/run.txt" 2>&1
  echo "| run SmolLM2 | $? | | $(grep -E '^\[' "$OUT/run.txt" | tr '\n' ' ') |" | tee -a "$OUT/summary.md"
  if [ "${QUICK:-0}" = 1 ]; then
    bench smollm2-135m-q4_1 --model "$model" --reps 3 --depth 0 --sampling greedy
    grep -E "^\| (tg|pp)" "$OUT/bench-smollm2-135m-q4_1.md"
    cat "$OUT/summary.md"
    exit 0
  fi
  bin/wavefront run --backend gpu --seed 7 --max-tokens 256 "Once upon a time" >"$OUT/run-sampled.txt" 2>&1
  echo "| run SmolLM2 sampled (CLI defaults) | $? | | $(grep -E '^\[' "$OUT/run-sampled.txt" | tr '\n' ' ') |" | tee -a "$OUT/summary.md"
  WAVEFRONT_NO_GRAPH=1 bin/wavefront run --backend gpu --seed 7 --max-tokens 256 "Once upon a time" >"$OUT/run-sampled-nograph.txt" 2>&1
  echo "| run SmolLM2 sampled, WAVEFRONT_NO_GRAPH=1 | $? | | $(grep -E '^\[' "$OUT/run-sampled-nograph.txt" | tr '\n' ' ') |" | tee -a "$OUT/summary.md"
  cmp <(grep -v '^\[' "$OUT/run-sampled.txt") <(grep -v '^\[' "$OUT/run-sampled-nograph.txt") \
    && echo "| sampled text identical with and without graphs | 0 | | |" | tee -a "$OUT/summary.md"
  bench smollm2-135m-q4_1 --model "$model" --reps 5 --depth 0 --sampling greedy,default
  bench smollm2-lookup --model "$model" --lookup 8 --tg 128 --reps 5
  for l in 0 8; do
    args=(); [ $l = 0 ] || args=(--lookup $l)
    bin/wavefront run --backend gpu --temperature 0 --max-tokens 128 "${args[@]}" \
      "Repeat this sentence exactly: the quick brown fox jumps over the lazy dog, and the lazy dog sleeps." \
      >"$OUT/run-lookup$l.txt" 2>&1
    echo "| run greedy, lookup $l | $? | | $(grep -E '^\[' "$OUT/run-lookup$l.txt" | tr '\n' ' ') |" | tee -a "$OUT/summary.md"
  done
  if cmp -s <(grep -v '^\[' "$OUT/run-lookup0.txt") <(grep -v '^\[' "$OUT/run-lookup8.txt"); then
    echo "| greedy text identical with and without lookup | 0 | | |" | tee -a "$OUT/summary.md"
  else
    echo "| greedy text differs with lookup (rows through the prefill kernels: divergence rule) | 1 | | |" | tee -a "$OUT/summary.md"
  fi
  finish
  cat "$OUT"/bench-*.md
  cat "$OUT/summary.md"
  ;;
decode)
  # The decode-path session (issue 8): the GPU unit tests, the op conformance binary (every
  # case at both waves with kernel path coverage) and the graph test; conformance on the
  # fixtures (model-level checks and sampled streams through the device sampler); the GEMV
  # microbench; the random-weight benches of the three shapes, greedy and sampled, and again
  # without overlapped GEMV launches (WAVEFRONT_NO_PDL=1) for the A/B; and a per-kernel time
  # profile (ncu) of Llama-3.2-1B decode steps against the step time.
  unpack .device/ops
  begin_summary
  gpu_info
  for t in engine_lib ops_gpu gpu_graph; do run_test "$t"; finish; done
  fixtures_conformance conformance-fixtures
  if [ "${QUICK:-0}" = 1 ]; then  # the checks, and the 1B and SmolLM2 benches alone
    for shape in smollm2-135m llama-3.2-1b; do
      bench "$shape" --shape "$shape" --reps 5 --depth 0 --sampling greedy,default
    done
    for f in "$OUT"/bench-*.md; do echo "== $f"; grep -E "^\| (tg|pp)" "$f"; done
    cat "$OUT/summary.md"
    exit 0
  fi
  start=$SECONDS
  timeout 150 bin/wavefront bench --gemv --backend gpu --json "$OUT/bench-gemv.json" --markdown "$OUT/bench-gemv.md" \
    >"$OUT/bench-gemv.log" 2>&1
  echo "| bench --gemv | $? | $((SECONDS - start)) s | |" | tee -a "$OUT/summary.md"
  finish
  for shape in smollm2-135m llama-3.2-1b llama-3.1-8b; do
    bench "$shape" --shape "$shape" --reps 5 --depth 0 --sampling greedy,default
    WAVEFRONT_NO_PDL=1 bench "$shape-nopdl" --shape "$shape" --reps 5 --depth 0 --sampling greedy
  done
  if command -v ncu >/dev/null; then
    start=$SECONDS
    timeout 120 ncu --clock-control none --cache-control none --metrics gpu__time_duration.sum --csv \
      --log-file "$OUT/ncu-1b-default.csv" bin/wavefront bench --backend gpu \
      --shape llama-3.2-1b --pp 1 --tg 4 --reps 1 --depth 0 --sampling default \
      >"$OUT/ncu-1b-default.log" 2>&1
    echo "| ncu llama-3.2-1b decode default | $? | $((SECONDS - start)) s | |" | tee -a "$OUT/summary.md"
    python3 ci/ncu-step-profile.py "$OUT"/ncu-1b-*.csv | tee "$OUT/ncu-1b.md"
    finish
  fi
  for f in "$OUT"/bench-*.md; do echo "== $f"; grep -E "^\| (tg|pp)|^\| [a-z].*\| (qkv|o_proj|gate_up|down|lm_head) " "$f"; done
  cat "$OUT/summary.md"
  ;;
attention)
  # The decode-attention session (issue 9): the GPU unit tests, the op conformance binary (the
  # fused RoPE + KV write + split-K decode kernel at every length of the grid, both waves, path
  # coverage) and the graph test; conformance on the fixtures; the attention microbench (fused
  # against separate kernels per shape and depth); the three shapes at depth 0
  # (greedy and sampled) and at depths 8192 and 32768, each again with the separate RoPE and
  # attention kernels (WAVEFRONT_NO_FUSED_ATTENTION=1) for the A/B; a per-kernel profile (ncu)
  # of Llama-3.2-1B decode steps at depth 0 and 8192.
  unpack .device/ops
  begin_summary
  gpu_info
  for t in ${TESTS:-engine_lib ops_gpu gpu_graph}; do run_test "$t"; finish; done
  fixtures_conformance conformance-fixtures
  start=$SECONDS
  timeout 240 bin/wavefront bench --attention --backend gpu --json "$OUT/bench-attention.json" \
    --markdown "$OUT/bench-attention.md" >"$OUT/bench-attention.log" 2>&1
  echo "| bench --attention | $? | $((SECONDS - start)) s | |" | tee -a "$OUT/summary.md"
  finish
  # QUICK=1: the fused kernel's benches alone (no A/B, no profile); TESTS= the test binaries
  for shape in smollm2-135m llama-3.2-1b llama-3.1-8b; do
    bench "$shape" --shape "$shape" --reps 5 --depth 0 --sampling greedy,default
    [ "${QUICK:-0}" = 1 ] ||
      WAVEFRONT_NO_FUSED_ATTENTION=1 bench "$shape-unfused" --shape "$shape" --reps 5 --depth 0 --sampling greedy
  done
  for shape in llama-3.2-1b llama-3.1-8b; do
    bench "$shape-deep" --shape "$shape" --pp 16 --tg 32 --reps 3 --depth 8192,32768 --sampling greedy
    [ "${QUICK:-0}" = 1 ] && continue
    WAVEFRONT_NO_FUSED_ATTENTION=1 timeout 120 bin/wavefront bench --backend gpu --shape "$shape" --pp 16 --tg 16 \
      --reps 1 --depth 8192 --sampling greedy --markdown "$OUT/bench-$shape-deep-unfused.md" >"$OUT/bench-$shape-deep-unfused.log" 2>&1
    echo "| bench $shape-deep-unfused | $? | | |" | tee -a "$OUT/summary.md"
    finish
  done
  if [ "${QUICK:-0}" != 1 ] && command -v ncu >/dev/null; then
    for depth in 0 8192; do
      timeout 90 ncu --clock-control none --cache-control none --metrics gpu__time_duration.sum --csv \
        --log-file "$OUT/ncu-1b-d$depth.csv" bin/wavefront bench --backend gpu \
        --shape llama-3.2-1b --pp 1 --tg 4 --reps 1 --depth $depth --sampling greedy \
        >"$OUT/ncu-1b-d$depth.log" 2>&1
      echo "| ncu llama-3.2-1b decode d$depth | $? | | |" | tee -a "$OUT/summary.md"
      python3 ci/ncu-step-profile.py "$OUT/ncu-1b-d$depth.csv" | tee "$OUT/ncu-1b-d$depth.md" | head -14
      finish
    done
  fi
  for f in "$OUT"/bench-*.md; do echo "== $f"; grep -E "^\| (tg|pp)|^\| [a-z].* × [0-9]+ \|" "$f"; done
  cat "$OUT/summary.md"
  ;;
prefill)
  # The flash-prefill session (issue 9): first, where VARIANTS names kernel directories (copies
  # of kernels/ with edits, carried in the working tree), each one's prefill attention rows of
  # bench --attention (8B and 1B shapes, 4096 and 16384 rows) and, where CHECK names them too,
  # its attention_prefill conformance at both waves; then the GPU unit tests (TESTS, default
  # engine_lib ops_gpu gpu_graph: the op conformance binary has the flash kernel's cases at both
  # waves and the path coverage), conformance on the fixtures, the attention microbench (decode
  # rows, and prefill rows flash against simple) and torch's SDPA (flash and cuDNN backends) on
  # the same lengths (NO_TORCH=1 skips it); pp at PPS (default 512 4096 16384) of Llama-3.2-1B
  # and 3.1-8B, PP_REPS reps, and at SIMPLE_PPS (default 512 4096) again with the simple kernel
  # (WAVEFRONT_NO_FLASH_ATTENTION=1); a per-kernel profile (ncu) of the 1B and 8B pp512
  # forwards. QUICK=1 skips the simple-kernel pp runs and the profile.
  unpack .device/ops
  begin_summary
  gpu_info
  for v in ${VARIANTS:-}; do
    for shape in llama-3.1-8b llama-3.2-1b; do
      start=$SECONDS
      md="$OUT/variant-$(basename "$v")-$shape.md"
      timeout 120 bin/wavefront bench --attention --backend gpu --kernels "$v" --shape "$shape" --depth 1024 \
        --prefill-len 4096,16384 --markdown "$md" >"$md.log" 2>&1
      echo "| variant $v $shape | $? | $((SECONDS - start)) s | $(grep -E "\| (4096|16384) \|" "$md" | awk -F'|' '{printf "%s: %s TFLOP/s; ", $4, $7}') |" | tee -a "$OUT/summary.md"
    done
    finish
  done
  for t in ${TESTS-engine_lib ops_gpu gpu_graph}; do run_test "$t"; finish; done
  fixtures_conformance conformance-fixtures
  for v in ${CHECK:-}; do
    start=$SECONDS
    timeout 150 bin/wavefront-conformance --backend gpu --wave all --no-coverage --op attention_prefill \
      --kernels "$v" --report "$OUT/conformance-$(basename "$v").md" >"$OUT/conformance-$(basename "$v").log" 2>&1
    echo "| conformance attention_prefill $v | $? | $((SECONDS - start)) s | $(tail -n 1 "$OUT/conformance-$(basename "$v").log") |" | tee -a "$OUT/summary.md"
    finish
  done
  start=$SECONDS
  timeout 240 bin/wavefront bench --attention --backend gpu ${ATTN_ARGS:-} --json "$OUT/bench-attention.json" \
    --markdown "$OUT/bench-attention.md" >"$OUT/bench-attention.log" 2>&1
  echo "| bench --attention | $? | $((SECONDS - start)) s | |" | tee -a "$OUT/summary.md"
  finish
  if [ "${NO_TORCH:-0}" != 1 ]; then
    start=$SECONDS
    timeout 120 python3 ci/torch-sdpa-bench.py --markdown "$OUT/torch-sdpa.md" >"$OUT/torch-sdpa.log" 2>&1
    echo "| torch SDPA | $? | $((SECONDS - start)) s | |" | tee -a "$OUT/summary.md"
    finish
  fi
  # One bench call per shape and kernel (each call generates the shape's random weights).
  pps=$(echo ${PPS:-512 4096 16384} | tr ' ' ',')
  simple_pps=$(echo ${SIMPLE_PPS-512 4096} | tr ' ' ',')
  for shape in llama-3.2-1b llama-3.1-8b; do
    bench "$shape-pp" --shape "$shape" --pp "$pps" --tg 1 --reps "${PP_REPS:-3}" --depth 0 --sampling greedy
    [ "${QUICK:-0}" = 1 ] || [ -z "$simple_pps" ] ||
      WAVEFRONT_NO_FLASH_ATTENTION=1 bench "$shape-pp-simple" --shape "$shape" --pp "$simple_pps" --tg 1 \
        --reps "${PP_REPS:-3}" --depth 0 --sampling greedy
  done
  if [ "${QUICK:-0}" != 1 ] && [ "${NO_NCU:-0}" != 1 ] && command -v ncu >/dev/null; then
    for shape in llama-3.2-1b llama-3.1-8b; do
      timeout 120 ncu --clock-control none --cache-control none --metrics gpu__time_duration.sum --csv \
        --log-file "$OUT/ncu-$shape-pp512.csv" bin/wavefront bench --backend gpu \
        --shape "$shape" --pp 512 --tg 1 --reps 1 --depth 0 --sampling greedy \
        >"$OUT/ncu-$shape-pp512.log" 2>&1
      echo "| ncu $shape pp512 | $? | | |" | tee -a "$OUT/summary.md"
      python3 ci/ncu-step-profile.py --prefill "$OUT/ncu-$shape-pp512.csv" | tee "$OUT/ncu-$shape-pp512.md" | head -16
      finish
    done
  fi
  grep -E "^\| [a-z].* \| [0-9]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \|" "$OUT/bench-attention.md" | tail -12
  grep "^| llama" "$OUT/torch-sdpa.md" 2>/dev/null
  for f in "$OUT"/bench-*pp*.md; do echo "== $f"; grep -E "^\| pp" "$f"; done
  cat "$OUT/summary.md"
  ;;
kvq8-check)
  # The Q8_0 KV session, part 1 (issue 9): the GPU unit tests and the op conformance binary
  # (every case at both waves with kernel path coverage: the Q8_0 kernels' among them), the
  # graph test; conformance on the fixtures with the default (f16) and the Q8_0 KV cache.
  unpack .device/ops
  begin_summary
  gpu_info
  for t in ${TESTS-engine_lib ops_gpu gpu_graph}; do run_test "$t"; finish; done
  for kv in f16 q8_0; do fixtures_conformance "conformance-fixtures-$kv" --kv-type $kv; done
  cat "$OUT/summary.md"
  ;;
quant-check)
  # Issue 10's CPU session changed paths every backend shares (how weights are held, the
  # linear cases of every GGUF block type): the GPU unit tests, every op case at both waves
  # (block types through the GPU's conversion to 16 bits), the graph test, and conformance on
  # the fixtures and on the quantized fixtures (fixtures/quant_models, converted at load).
  unpack .device/ops
  begin_summary
  gpu_info
  for t in ${TESTS-engine_lib ops_gpu gpu_graph}; do run_test "$t"; finish; done
  # shellcheck disable=SC2046
  fixtures_conformance conformance-fixtures $(for f in fixtures/quant_models/*.gguf; do echo --model "$f"; done)
  cat "$OUT/summary.md"
  ;;
quant-gpu)
  # Issue 10's GPU half: the GPU unit tests, every op case at both waves with path coverage
  # (qgemv.hip: the block types' GEMVs, fused forms, mixed stacks, the dequantized GEMM, the
  # embedding of quantized tables), the graph test, conformance on the fixtures and on the
  # quantized fixtures (held as blocks on the device now); then the random-weight benches of
  # SHAPES (default llama-3.2-1b llama-3.1-8b) in each of QUANTS (default q4_0 q4_k q8_0):
  # pp512 and tg128, greedy and default sampling.
  unpack .device/ops
  begin_summary
  gpu_info
  for t in ${TESTS-engine_lib ops_gpu gpu_graph}; do run_test "$t"; finish; done
  if [ "${NO_FIXTURES:-0}" != 1 ]; then
    # shellcheck disable=SC2046
    fixtures_conformance conformance-fixtures $(for f in fixtures/quant_models/*.gguf; do echo --model "$f"; done)
  fi
  # The GEMV microbench over the 8B shape's projections per block type (GEMV_QUANTS), and for
  # each kernel directory of VARIANTS (edited copies of kernels/) over Q4_0.
  for q in ${GEMV_QUANTS-q4_0 q4_k q8_0}; do
    start=$SECONDS
    timeout 120 bin/wavefront bench --gemv --backend gpu --shape llama-3.1-8b --quant "$q" \
      --markdown "$OUT/bench-gemv-8b-$q.md" >"$OUT/bench-gemv-8b-$q.log" 2>&1
    echo "| bench --gemv 8b $q | $? | $((SECONDS - start)) s | |" | tee -a "$OUT/summary.md"
  done
  for v in ${VARIANTS:-}; do
    start=$SECONDS
    timeout 120 bin/wavefront bench --gemv --backend gpu --shape llama-3.1-8b --quant q4_0 --kernels "$v" \
      --markdown "$OUT/bench-gemv-8b-q4_0-$(basename "$v").md" >"$OUT/bench-gemv-$(basename "$v").log" 2>&1
    echo "| bench --gemv 8b q4_0 variant $v | $? | $((SECONDS - start)) s | |" | tee -a "$OUT/summary.md"
  done
  finish
  for f in "$OUT"/bench-gemv-*.md; do echo "== $f"; grep -E "^\| llama" "$f" | awk -F'|' '{print $3, $6, $7, $8, $12}'; done
  for q in ${QUANTS:-q4_0 q4_k q8_0}; do
    for shape in ${SHAPES:-llama-3.2-1b llama-3.1-8b}; do
      bench "$shape-$q" --shape "$shape" --quant "$q" --reps 5 --depth 0 --sampling greedy,default
    done
  done
  for f in "$OUT"/bench-llama*.md; do echo "== $f"; grep -E "^\| (tg|pp)" "$f"; done
  cat "$OUT/summary.md"
  ;;
batch)
  # Issue 11's batched decode pass on the GPU (the GEMVs over up to 16 input rows): the GPU unit
  # tests, every op case at both waves with path coverage (the multi-row GEMV and, past 16 rows,
  # BLAS), the graph test, conformance on the plain and the quantized fixtures (prefill chunks of
  # up to 16 rows now take the GEMVs). The batch-invariance check itself is model_gpu's (stage
  # smollm2, which needs the model).
  unpack .device/ops
  begin_summary
  gpu_info
  for t in ${TESTS-engine_lib ops_gpu gpu_graph}; do run_test "$t"; finish; done
  # shellcheck disable=SC2046
  fixtures_conformance conformance-fixtures $(for f in fixtures/quant_models/*.gguf; do echo --model "$f"; done)
  cat "$OUT/summary.md"
  ;;
batch-profile)
  # Where a batched decode pass's time goes (issue 11): the 1B shape's bf16 bench alone and in
  # batches of BATCHES (default 2,4,16: the wall time per pass), then Nsight Compute's kernel
  # times of a `bench --batch 16` run cut into passes (ci/ncu-step-profile.py --batch: a table
  # per rows a pass), then its full sections on one batched launch of each GEMV kernel (the
  # first launch whose grid is 16 times the one-row grid: found in the timing CSV; KERNS names
  # them, default the one-row kernels; SECTIONS_ONLY=1: only these, on the first launch when
  # no timing CSV was carried in .device/).
  unpack .device/ops
  begin_summary
  gpu_info
  if [ "${SECTIONS_ONLY:-0}" != 1 ]; then
    bench 1b-bf16 --shape llama-3.2-1b --reps 3 --depth 0 --pp 1 --batch "${BATCHES:-2,4,16}"
    grep -E "^\| tg" "$OUT/bench-1b-bf16.md"
  fi
  if command -v ncu >/dev/null && [ "${SECTIONS_ONLY:-0}" = 1 ]; then
    cp .device/ncu-1b-x16.csv "$OUT/" 2>/dev/null # an earlier call's timing run, if carried
  elif command -v ncu >/dev/null; then
    start=$SECONDS
    timeout 200 ncu --clock-control none --cache-control none --metrics gpu__time_duration.sum --csv \
      --log-file "$OUT/ncu-1b-x16.csv" bin/wavefront bench --backend gpu \
      --shape llama-3.2-1b --pp 1 --tg 4 --reps 1 --depth 0 --batch 16 \
      >"$OUT/ncu-1b-x16.log" 2>&1
    echo "| ncu llama-3.2-1b x16 | $? | $((SECONDS - start)) s | |" | tee -a "$OUT/summary.md"
    python3 ci/ncu-step-profile.py --batch "$OUT/ncu-1b-x16.csv" | tee "$OUT/ncu-1b-x16.md"
    finish
  fi
  if command -v ncu >/dev/null; then
    for kern in ${KERNS:-gemv_bf16 gemv_swiglu_bf16}; do
      skip=$(python3 - "$OUT/ncu-1b-x16.csv" "$kern" <<'PY'
import csv, sys
lines = [l for l in open(sys.argv[1], newline="") if l.startswith('"')]
seen, grids = 0, []
for row in csv.DictReader(lines):
    if row.get("Metric Name") != "gpu__time_duration.sum" or row["Kernel Name"].split("(")[0] != sys.argv[2]:
        continue
    g = int((row.get("Grid Size") or "0").strip("()").split(",")[0] or 0)
    grids.append(g)
one = min(grids, default=0)  # the several-row kernels run in batched passes only: launch 0
print(next((i for i, g in enumerate(grids) if g == 16 * one and i > 0), 0))
PY
)
      start=$SECONDS
      timeout 150 ncu --clock-control none --kernel-name "$kern" --launch-skip "$skip" --launch-count 1 \
        --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy \
        --section SchedulerStats --section WarpStateStats --section LaunchStats --section ComputeWorkloadAnalysis \
        bin/wavefront bench --backend gpu --shape llama-3.2-1b --pp 1 --tg 4 --reps 1 --depth 0 --batch 16 \
        >"$OUT/ncu-$kern-x16.txt" 2>&1
      echo "| ncu $kern x16 (launch $skip) | $? | $((SECONDS - start)) s | |" | tee -a "$OUT/summary.md"
      finish
    done
  fi
  cat "$OUT/summary.md"
  ;;
rows)
  # The several-row GEMVs of a batched pass (issue 11), in two calls. Call 1 (carry .device/ops):
  # the GEMV op cases at both waves with path coverage, the graph test, the 1B and 8B bf16
  # batched benches with the several-row kernels and without them (WAVEFRONT_NO_GEMV_ROWS=1)
  # for the A/B, and the kernel-time profile of a 1B pass of 16. Call 2 (carry .device/models,
  # PART=2): model_gpu's batch invariance (fixtures, quantized fixtures and SmolLM2 × batches of
  # 2, 3, 5, 11 × both waves: every row bit for bit its sequence alone; MODEL_FILTER= runs
  # every model_gpu test) and the golden streams.
  unpack .device/ops
  begin_summary
  gpu_info
  if [ "${PART:-1}" = 1 ]; then
    gemv_ops "gemv_stage|gemv_rows|gemv_swiglu_rows"
    run_test gpu_graph; finish
    for shape in llama-3.2-1b llama-3.1-8b; do
      bench "$shape" --shape "$shape" --reps 3 --depth 0 --pp 1 --batch "${BATCHES:-2,4,8,16}"
      WAVEFRONT_NO_GEMV_ROWS=1 bench "$shape-one-row-grid" --shape "$shape" --reps 3 --depth 0 --pp 1 --batch 16
    done
    for f in "$OUT"/bench-llama*.md; do echo "== $f"; grep -E "^\| tg" "$f"; done
    if command -v ncu >/dev/null; then
      start=$SECONDS
      timeout 200 ncu --clock-control none --cache-control none --metrics gpu__time_duration.sum --csv \
        --log-file "$OUT/ncu-1b-x16.csv" bin/wavefront bench --backend gpu \
        --shape llama-3.2-1b --pp 1 --tg 4 --reps 1 --depth 0 --batch 16 >"$OUT/ncu-1b-x16.log" 2>&1
      echo "| ncu llama-3.2-1b x16 | $? | $((SECONDS - start)) s | |" | tee -a "$OUT/summary.md"
      python3 ci/ncu-step-profile.py --batch "$OUT/ncu-1b-x16.csv" | tee "$OUT/ncu-1b-x16.md" | tail -14
      finish
    fi
  else
    default_model
    log="$OUT/test-model_gpu-batched.log" start=$SECONDS
    bin/model_gpu "${MODEL_FILTER-gpu_batched}" --test-threads=1 --nocapture >"$log" 2>&1
    echo "| test model_gpu ${MODEL_FILTER-gpu_batched} | $? | $((SECONDS - start)) s | $(grep -E '^test result' "$log" | tail -n 1) |" | tee -a "$OUT/summary.md"
    grep -cE "\| bit-identical \|" "$log"; grep -E "panicked|FAILED|differ" "$log" | head -20
    finish
    run_test golden_tokens; finish
  fi
  cat "$OUT/summary.md"
  ;;
steps)
  # Verifications as decode steps and the one-weight-row-a-wave several-row GEMVs (issues 11
  # and 13), in two calls as `rows`. Call 1 (carry .device/ops): the GEMV op cases at both
  # waves with path coverage (SKIP_OPS=1: not), the graph test, the 8B and 1B benches (greedy decode at depths 0
  # and 8192, batched passes of 2, 4, 8 and 16, verifications of 2, 5 and 9 rows as decode
  # steps) and the verifications through the prefill path (WAVEFRONT_VERIFY_PREFILL=1) for the
  # A/B. Call 2 (carry the model parts, PART=2): model_gpu's speculation tests (rows as steps by
  # bits, the exact streams, the divergence rule), its batch invariance, the golden streams.
  unpack .device/ops
  begin_summary
  gpu_info
  if [ "${PART:-1}" = 1 ]; then
    [ "${SKIP_OPS:-0}" = 1 ] || gemv_ops
    run_test gpu_graph; finish
    for shape in llama-3.1-8b llama-3.2-1b; do
      bench "$shape" --shape "$shape" --reps 3 --depth 0,8192 --pp 1 --tg 32 --batch 2,4,8,16 --verify 1,4,8
      WAVEFRONT_VERIFY_PREFILL=1 bench "$shape-prefill-verify" --shape "$shape" --reps 3 --depth 0,8192 --pp 1 --tg 32 --verify 1,4,8
    done
    for f in "$OUT"/bench-llama*.md; do echo "== $f"; grep -E "^\| (tg|verify)" "$f"; done
  else
    default_model
    filtered_test model_gpu speculation "differ|diverged"
    # The prefill verification path under the divergence rule (its tests' subject).
    WAVEFRONT_VERIFY_PREFILL=1 filtered_test model_gpu divergence_rule "" "(WAVEFRONT_VERIFY_PREFILL=1)"
    filtered_test model_gpu gpu_batched differ
    # SmolLM2's golden streams (Gemma 3's file is not among this stage's carries).
    filtered_test golden_tokens smollm2
  fi
  cat "$OUT/summary.md"
  ;;
mma)
  # The matrix-core GEMVs (gemv_mma_{T}, WAVEFRONT_GEMV_MMA=1; issues 8, 11 and 13), in two
  # calls as `steps`. Call 1 (carry .device/ops): the GEMV op cases at both waves with path
  # coverage (SKIP_OPS=1: not; they include the matrix-core cases), the graph test with the
  # mode on, then the 8B and 1B benches (greedy decode at depth 0, batched passes of 4 and 16,
  # verifications of 5 rows as decode steps) with the mode on and off, alternating, decode with
  # the inputs never staged in the kernel's LDS (WAVEFRONT_GEMV_MMA_NO_LDS=1), and the
  # GEMV microbench in both modes (GEMV_BENCH=0: not). Call 2
  # (carry the model parts, PART=2): with the mode on, model_gpu's speculation tests (rows as
  # steps by bits, the exact streams), its batch invariance and SmolLM2's golden streams.
  unpack .device/ops
  begin_summary
  gpu_info
  if [ "${PART:-1}" = 1 ]; then
    [ "${SKIP_OPS:-0}" = 1 ] || gemv_ops "_mma"
    WAVEFRONT_GEMV_MMA=1 run_test gpu_graph; finish
    for shape in ${SHAPES:-llama-3.1-8b llama-3.2-1b}; do
      for mode in mma fma; do
        on=0; [ "$mode" = mma ] && on=1
        WAVEFRONT_GEMV_MMA=$on bench "$shape-$mode" --shape "$shape" --reps 3 --depth 0 --pp 1 --tg 32 --batch 4,16 --verify 4
      done
      # the inputs staged by gemv_stage always (no LDS staging in the kernel), for the A/B
      WAVEFRONT_GEMV_MMA=1 WAVEFRONT_GEMV_MMA_NO_LDS=1 bench "$shape-mma-nolds" --shape "$shape" --reps 3 --depth 0 --pp 1 --tg 32
    done
    for f in "$OUT"/bench-llama*.md; do echo "== $f"; grep -E "^\| (tg|verify)" "$f"; done
    [ "${GEMV_BENCH:-1}" = 1 ] && gemv_bench_modes
  else
    default_model
    export WAVEFRONT_GEMV_MMA=1
    filtered_test model_gpu speculation "differ|diverged" "(WAVEFRONT_GEMV_MMA=1)"
    filtered_test model_gpu gpu_batched differ "(WAVEFRONT_GEMV_MMA=1)"
    filtered_test golden_tokens smollm2 "" "(WAVEFRONT_GEMV_MMA=1)"
  fi
  cat "$OUT/summary.md"
  ;;
attn-rows)
  # This stage checks two kernels never run on a GPU when they were committed (issues 8, 11, 13):
  # the rows attention kernel (decode_attention_rows_{T}: a batched pass's rows, and a
  # verification's rows as decode steps, in one launch) and the matrix-core GEMVs' cp.async
  # weight ring (NVIDIA sm_80+). Four kinds of call (PART):
  #   PART=1 (carry .device/ops): the GEMV op cases and the rope_attention op cases at both
  #     waves with path coverage (the rows kernels' cases compare each row with the one-row
  #     kernel by bits; the ring gives the register path's bits), the graph test in both GEMV
  #     modes, the GEMV microbench in both modes.
  #   PART=bench (carry .device/ops): the 8B and 1B benches (decode at depths 0 and 8192,
  #     batched passes of 4 and 16, verifications of 5 rows) in both GEMV modes with the rows
  #     kernel on and off (WAVEFRONT_NO_ATTENTION_ROWS=1); SHAPES picks the shapes.
  #   PART=2 (carry the model parts, as `steps`): model_gpu's speculation tests and batch
  #     invariance in both GEMV modes, SmolLM2's golden streams.
  unpack .device/ops
  begin_summary
  gpu_info
  case "${PART:-1}" in
  1)
    gemv_ops "_mma"
    attn_ops 300 UNREACHED
    run_test gpu_graph; finish
    WAVEFRONT_GEMV_MMA=1 run_test gpu_graph; finish
    gemv_bench_modes
    ;;
  bench)
    for shape in ${SHAPES:-llama-3.1-8b llama-3.2-1b}; do
      for mma in 1 0; do
        for rows in on off; do
          no=0; [ "$rows" = off ] && no=1
          WAVEFRONT_GEMV_MMA=$mma WAVEFRONT_NO_ATTENTION_ROWS=$no bench "$shape-mma$mma-rows-$rows" \
            --shape "$shape" --reps 3 --depth 0,8192 --pp 1 --tg 32 --batch 4,16 --verify 4
        done
      done
    done
    for f in "$OUT"/bench-llama*.md; do echo "== $f"; grep -E "^\| (tg|verify)" "$f"; done
    ;;
  *)
    default_model
    filtered_test model_gpu speculation "differ|diverged"
    WAVEFRONT_GEMV_MMA=1 filtered_test model_gpu speculation "differ|diverged" "(WAVEFRONT_GEMV_MMA=1)"
    filtered_test model_gpu gpu_batched differ
    WAVEFRONT_GEMV_MMA=1 filtered_test model_gpu gpu_batched differ "(WAVEFRONT_GEMV_MMA=1)"
    filtered_test golden_tokens smollm2
    WAVEFRONT_GEMV_MMA=1 filtered_test golden_tokens smollm2 "" "(WAVEFRONT_GEMV_MMA=1)"
    ;;
  esac
  cat "$OUT/summary.md"
  ;;
rows-profile)
  # Where a few-row pass goes on the 8B shape (issues 11 and 13), carry .device/ops: the kernel
  # times of a 5-row verification (`bench --verify 4`: the prefill path, BLAS and flash; the
  # last forward of the run, by kernel) and of batched passes of 4 (the several-row GEMVs), then
  # Nsight Compute's full sections on launches of gemv_rows_bf16 and gemv_swiglu_rows_bf16 in a
  # pass of 4 and of gemv_bf16 and gemv_swiglu_bf16 in a one-row step (KERNEL_DIRS: a list of
  # edited kernel directories benched the same way after the embedded ones, `--kernels`).
  unpack .device/ops
  begin_summary
  gpu_info
  shape=${SHAPE:-llama-3.1-8b}
  bench "$shape" --shape "$shape" --reps 3 --depth 0 --pp 1 --tg 32 --batch 4 --verify 4
  for d in ${KERNEL_DIRS:-}; do
    WAVEFRONT_KERNELS_DIR=$d bench "$shape-$(basename "$d")" --shape "$shape" --reps 3 --depth 0 --pp 1 --tg 32 --batch 4 --verify 4
  done
  for f in "$OUT"/bench-*.md; do echo "== $f"; grep -E "^\| (tg|verify)" "$f"; done
  if command -v ncu >/dev/null; then
    start=$SECONDS
    timeout 150 ncu --clock-control none --cache-control none --metrics gpu__time_duration.sum --csv \
      --log-file "$OUT/ncu-verify4.csv" bin/wavefront bench --backend gpu --shape "$shape" --pp 1 \
      --tg 1 --reps 1 --depth 0 --verify 4 >"$OUT/ncu-verify4.log" 2>&1
    echo "| ncu $shape verify4 | $? | $((SECONDS - start)) s | |" | tee -a "$OUT/summary.md"
    python3 - "$OUT/ncu-verify4.csv" <<'PY' | tee "$OUT/ncu-verify4.md"
import collections, csv, sys
units = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3}
lines = [l for l in open(sys.argv[1], newline="") if l.startswith('"')]
ks = [(r["Kernel Name"].split("(")[0].strip(), float(r["Metric Value"].replace(",", "")) * units[r["Metric Unit"]])
      for r in csv.DictReader(lines) if r.get("Metric Name") == "gpu__time_duration.sum"]
cut = max(i for i, (n, _) in enumerate(ks) if n.startswith("embedding_"))  # the last forward
last = ks[cut:]
tot = collections.Counter(); cnt = collections.Counter()
for n, us in last:
    tot[n] += us; cnt[n] += 1
print(f"last forward (a verification of 5 rows): {len(last)} launches, {sum(tot.values()):.1f} us of kernel time\n")
print("| kernel | launches | us | share |\n|---|---:|---:|---:|")
for n, us in tot.most_common():
    print(f"| {n} | {cnt[n]} | {us:.1f} | {100 * us / sum(tot.values()):.1f}% |")
PY
    finish
    start=$SECONDS
    timeout 150 ncu --clock-control none --cache-control none --metrics gpu__time_duration.sum --csv \
      --log-file "$OUT/ncu-x4.csv" bin/wavefront bench --backend gpu --shape "$shape" --pp 1 \
      --tg 4 --reps 1 --depth 0 --batch 4 >"$OUT/ncu-x4.log" 2>&1
    echo "| ncu $shape x4 | $? | $((SECONDS - start)) s | |" | tee -a "$OUT/summary.md"
    python3 ci/ncu-step-profile.py --batch "$OUT/ncu-x4.csv" | tee "$OUT/ncu-x4.md" | tail -24
    finish
    for spec in "gemv_rows_bf16 4" "gemv_swiglu_rows_bf16 4" "gemv_bf16 1" "gemv_swiglu_bf16 1"; do
      set -- $spec
      start=$SECONDS
      if [ "$2" = 1 ]; then extra="--tg 8"; else extra="--tg 4 --batch 4"; fi
      timeout 150 ncu --clock-control none --set full --kernel-name "$1" --launch-skip 64 --launch-count 3 \
        bin/wavefront bench --backend gpu --shape "$shape" --pp 1 --reps 1 --depth 0 $extra \
        >"$OUT/ncu-full-$1.txt" 2>&1
      echo "| ncu full $1 | $? | $((SECONDS - start)) s | |" | tee -a "$OUT/summary.md"
      finish
    done
  fi
  cat "$OUT/summary.md"
  ;;
spec)
  # Speculation on the GPU (issue 13), in two calls as `rows`. Call 1 (carry .device/ops): the
  # cost of a K+1-row verification in decode steps on the 1B and 8B shapes (bench --verify) at
  # depths 0 and 8192. Call 2 (carry the model parts, PART=2): model_gpu's speculation tests
  # (lookup and draft model under the greedy divergence rule, penalised cases judged on their
  # penalised logits) at both waves.
  unpack .device/ops
  begin_summary
  gpu_info
  if [ "${PART:-1}" = 1 ]; then
    for shape in llama-3.2-1b llama-3.1-8b; do
      bench "verify-$shape" --shape "$shape" --reps 3 --depth 0,8192 --pp 1 --tg 32 --verify 1,4,8
    done
    for f in "$OUT"/bench-verify-*.md; do echo "== $f"; grep -E "^\| (tg|verify)" "$f"; done
  else
    default_model
    filtered_test model_gpu speculation diverged
  fi
  cat "$OUT/summary.md"
  ;;
gemma3)
  # Gemma 3 270M Q4_K_M (253 MB) on the GPU: carry .device/ops with .device/g1, then .device/g2
  # .. .device/gN (the file split in parts of at most 45 MB, one a call within the warm window).
  # The golden streams against transformers at both waves (golden_tokens' gemma3 test; the
  # snapshot of a new device label is written for review), greedy and sampled runs, the bench.
  unpack .device/ops
  mkdir -p "$(dirname "$gemma")"
  if ! echo "$gemma_sha  $gemma" | sha256sum -c --status - 2>/dev/null; then
    cat .device/g*/gemmapart.* >"$gemma"
    echo "$gemma_sha  $gemma" | sha256sum -c - || exit 3
  fi
  begin_summary
  gpu_info
  log="$OUT/test-golden_tokens-gemma3.log" start=$SECONDS
  bin/golden_tokens gemma3 --test-threads=1 --nocapture >"$log" 2>&1
  echo "| test golden_tokens gemma3 | $? | $((SECONDS - start)) s | $(grep -E '^test result' "$log" | tail -n 1) |" | tee -a "$OUT/summary.md"
  grep -E "panicked|FAILED|diverge" "$log" | head -20
  mkdir -p "$OUT/golden-streams" && cp target/golden-streams/gemma3* "$OUT/golden-streams/" 2>/dev/null
  finish
  bin/wavefront run --backend gpu --model "$gemma" --temperature 0 --max-tokens 64 "The capital of France is" >"$OUT/run.txt" 2>&1
  echo "| run Gemma 3 greedy | $? | | $(grep -E '^\[' "$OUT/run.txt" | tr '\n' ' ') |" | tee -a "$OUT/summary.md"
  WAVEFRONT_NO_GRAPH=1 bin/wavefront run --backend gpu --model "$gemma" --temperature 0 --max-tokens 64 "The capital of France is" >"$OUT/run-nograph.txt" 2>&1
  cmp <(grep -v '^\[' "$OUT/run.txt") <(grep -v '^\[' "$OUT/run-nograph.txt") \
    && echo "| greedy text identical with and without graphs | 0 | | |" | tee -a "$OUT/summary.md"
  bench gemma3-270m-q4_k_m --model "$gemma" --reps 5 --depth 0 --sampling greedy,default
  finish
  # llama.cpp on the same file, when the call carried its source (.device/peer, from
  # `bench/gpu-peer.sh pack`; an earlier call of the warm machine may have started the build).
  if [ -f .device/peer/llama-src.tar.xz ]; then
    start=$SECONDS
    while pgrep -f "gpu-peer.sh build" >/dev/null; do sleep 5; done
    [ -x /tmp/wavefront-gpu-peer/build/bin/llama-bench ] ||
      bash bench/gpu-peer.sh build .device/peer/llama-src.tar.xz >"$OUT/peer-build.log" 2>&1
    WF=bin/wavefront bash bench/gpu-peer.sh bench "$gemma" "${PEER_ROUNDS:-3}" >"$OUT/peer-gemma3.md" 2>"$OUT/peer-gemma3.log"
    echo "| llama.cpp side by side | $? | $((SECONDS - start)) s | $(grep -E '^\| Wavefront /' "$OUT/peer-gemma3.md") |" | tee -a "$OUT/summary.md"
    cat "$OUT/peer-gemma3.md"
    finish
  fi
  cat "$OUT"/bench-*.md
  cat "$OUT/summary.md"
  ;;
batch-check)
  # The batched pass's second look (the GEMVs over several rows only inside a batched decode
  # pass): carry .device/ops with .device/m1, then .device/m2, then .device/m3 (the default
  # model in three parts, one a call within the warm window). The GEMV op cases at both waves,
  # the GPU unit tests, model_gpu's batch-invariance test and the golden streams, and the
  # benches of the 8B bf16 and 1B Q4_0 shapes (pp16 on BLAS again, pp17, tg128 x16).
  unpack .device/ops
  model_from_parts
  begin_summary
  gpu_info
  start=$SECONDS
  # With path coverage (the other kernels' paths are not reached by these ops: read gemv.hip's).
  timeout 240 bin/wavefront-conformance --backend gpu --wave all --op linear --op linear_stacked \
    --op gate_up_swiglu --op norm_linear_stacked --op norm_gate_up_swiglu --op linear_residual \
    --report "$OUT/conformance-gemv.md" >"$OUT/conformance-gemv.log" 2>&1
  echo "| conformance gemv ops, both waves | $? | $((SECONDS - start)) s | $(grep -c '✗' "$OUT/conformance-gemv.log") ✗ |" | tee -a "$OUT/summary.md"
  grep -E "✗" "$OUT/conformance-gemv.log" | head -20
  grep -E "gemv" "$OUT/conformance-gemv.log" | grep -iE "unreached|reached" | head -20
  finish
  run_test engine_lib
  finish
  start=$SECONDS
  bin/model_gpu --test-threads=1 --nocapture gpu_batched >"$OUT/test-model_gpu-batched.log" 2>&1
  echo "| test model_gpu gpu_batched | $? | $((SECONDS - start)) s | $(grep -c bit-identical "$OUT/test-model_gpu-batched.log") bit-identical runs, $(grep -E '^test result' "$OUT/test-model_gpu-batched.log") |" | tee -a "$OUT/summary.md"
  finish
  run_test golden_tokens
  finish
  bench llama-3.1-8b-bf16 --shape llama-3.1-8b --reps 3 --depth 0 --pp 16,17 --batch "${BATCHES:-4,16}"
  bench llama-3.2-1b-bf16 --shape llama-3.2-1b --reps 3 --depth 0 --pp 16,17 --batch "${BATCHES:-4,16}"
  bench llama-3.2-1b-q4_0 --shape llama-3.2-1b --quant q4_0 --reps 3 --depth 0 --pp 16,17 --batch "${BATCHES:-4,16}"
  for f in "$OUT"/bench-llama*.md; do echo "== $f"; grep -E "^\| (tg|pp)" "$f"; done
  cat "$OUT/summary.md"
  ;;
batch-bench)
  # The batched decode's throughput: random-weight SHAPES (default llama-3.2-1b llama-3.1-8b) in
  # bf16 and each of QUANTS (default q4_0): tg128 alone and in batches of BATCHES (default
  # 2,4,8,16) sequences (rows "tg128 xB", aggregate tok/s), and short prompts either side of the
  # GEMV's 16 rows (pp8, pp16 on the GEMVs, pp17, pp32 on BLAS) beside pp512.
  unpack .device/ops
  begin_summary
  gpu_info
  for shape in ${SHAPES:-llama-3.2-1b llama-3.1-8b}; do
    for q in bf16 ${QUANTS-q4_0}; do
      quant=()
      [ "$q" = bf16 ] || quant=(--quant "$q")
      bench "$shape-$q" --shape "$shape" "${quant[@]}" --reps 3 --depth 0 --pp 8,16,17,32,512 \
        --batch "${BATCHES:-2,4,8,16}"
    done
  done
  for f in "$OUT"/bench-llama*.md; do echo "== $f"; grep -E "^\| (tg|pp)" "$f"; done
  cat "$OUT/summary.md"
  ;;
qgemv-profile)
  # Where the block-quantized GEMV's time goes: the GEMV op cases at both waves (the routing a
  # change touched), TESTS (default engine_lib gpu_graph), then Nsight Compute's full set on
  # one launch of each of the 8B shape's products per type of PROFILE_QUANTS (default q4_0
  # q4_k) inside `bench --gemv` (launches counted per kernel name: qkv, o_proj, down, lm_head
  # use qgemv_T in that order with 11, 16, 5, 1 weight copies × 21 samples; gate_up
  # qgemv_swiglu_T), and VARIANTS' microbench over Q4_0 and Q4_K.
  unpack .device/ops
  begin_summary
  gpu_info
  start=$SECONDS
  timeout 240 bin/wavefront-conformance --backend gpu --wave all --no-coverage --op linear --op linear_stacked \
    --op gate_up_swiglu --op norm_linear_stacked --op norm_gate_up_swiglu --op linear_residual --op embedding \
    --report "$OUT/conformance-gemv.md" >"$OUT/conformance-gemv.log" 2>&1
  echo "| conformance gemv ops, both waves | $? | $((SECONDS - start)) s | $(tail -n 1 "$OUT/conformance-gemv.log") |" | tee -a "$OUT/summary.md"
  finish
  for t in ${TESTS-engine_lib gpu_graph}; do run_test "$t"; finish; done
  if command -v ncu >/dev/null; then
    for q in ${PROFILE_QUANTS-q4_0 q4_k}; do
      for spec in "qgemv_$q:10:qkv" "qgemv_$q:582:down" "qgemv_$q:682:lm_head" "qgemv_swiglu_$q:10:gate_up"; do
        IFS=: read -r kname skip proj <<<"$spec"
        start=$SECONDS
        timeout 150 ncu --set full --kernel-name "$kname" --launch-skip "$skip" --launch-count 1 \
          -o "$OUT/ncu-$q-$proj" bin/wavefront bench --gemv --backend gpu --shape llama-3.1-8b --quant "$q" \
          >"$OUT/ncu-$q-$proj.log" 2>&1
        echo "| ncu $q $proj | $? | $((SECONDS - start)) s | |" | tee -a "$OUT/summary.md"
        ncu -i "$OUT/ncu-$q-$proj.ncu-rep" --page details >"$OUT/ncu-$q-$proj.txt" 2>&1
        finish
      done
    done
  fi
  for v in ${VARIANTS:-}; do
    for q in q4_0 q4_k; do
      start=$SECONDS
      timeout 120 bin/wavefront bench --gemv --backend gpu --shape llama-3.1-8b --quant $q --kernels "$v" \
        --markdown "$OUT/bench-gemv-8b-$q-$(basename "$v").md" >"$OUT/bench-gemv-$q-$(basename "$v").log" 2>&1
      echo "| bench --gemv 8b $q variant $v | $? | $((SECONDS - start)) s | |" | tee -a "$OUT/summary.md"
      finish
    done
  done
  for f in "$OUT"/ncu-*.txt; do
    echo "== $f"
    grep -E "^ +(Duration|Memory Throughput|DRAM Throughput|Compute \(SM\) Throughput|Issue Slots Busy|Registers Per Thread|Achieved Occupancy|Theoretical Occupancy|L1/TEX Hit Rate|L2 Hit Rate|Executed Ipc Active|Warp Cycles Per Issued Instruction|Block Limit Registers|Executed Instructions) " "$f" | awk '{$1=$1; print}' | tr '\n' ';'
    echo
  done
  for f in "$OUT"/bench-gemv-*.md; do echo "== $f"; grep -E "^\| llama" "$f" | awk -F'|' '{print $3, $6, $7}'; done
  cat "$OUT/summary.md"
  ;;
kvq8-bench)
  # Part 2: the attention microbench (decode rows over f16 and Q8_0 K/V; prefill rows flash
  # against simple), torch's SDPA on the same prefill rows (NO_TORCH=1 skips it), and the model
  # benches of Llama-3.2-1B and 3.1-8B with f16 and Q8_0 K/V: pp at PPS (default 512 4096 16384)
  # and tg32 at depths 0, 8192, 32768.
  unpack .device/ops
  begin_summary
  gpu_info
  for shape in llama-3.2-1b llama-3.1-8b; do
    for kv in f16 q8_0; do
      start=$SECONDS
      lens=""
      [ $kv = f16 ] && lens="--prefill-len 4096,16384"
      # shellcheck disable=SC2086
      timeout 150 bin/wavefront bench --attention --backend gpu --shape $shape \
        --depth 8192,32768,131071 $lens --kv-type $kv --json "$OUT/bench-attention-$shape-$kv.json" \
        --markdown "$OUT/bench-attention-$shape-$kv.md" >"$OUT/bench-attention-$shape-$kv.log" 2>&1
      echo "| bench --attention $shape kv=$kv | $? | $((SECONDS - start)) s | |" | tee -a "$OUT/summary.md"
      finish
    done
  done
  if [ "${NO_TORCH:-0}" != 1 ]; then
    start=$SECONDS
    timeout 120 python3 ci/torch-sdpa-bench.py --markdown "$OUT/torch-sdpa.md" >"$OUT/torch-sdpa.log" 2>&1
    echo "| torch SDPA | $? | $((SECONDS - start)) s | |" | tee -a "$OUT/summary.md"
    finish
  fi
  pps=$(echo ${PPS:-512 4096 16384} | tr ' ' ',')
  for shape in llama-3.2-1b llama-3.1-8b; do
    for kv in f16 q8_0; do
      bench "$shape-$kv" --shape "$shape" --pp "$pps" --tg 32 --reps "${REPS:-3}" --depth 0,8192,32768 \
        --sampling greedy --kv-type $kv
    done
  done
  for f in "$OUT"/bench-attention-*.md; do echo "== $f"; grep -E "^\| llama" "$f"; done
  grep "^| llama" "$OUT/torch-sdpa.md" 2>/dev/null
  for f in "$OUT"/bench-llama*.md; do echo "== $f"; grep -E "^\| (pp|tg)" "$f"; done
  cat "$OUT/summary.md"
  ;;
kvq8-ab)
  # A/B of decode-kernel variants over Q8_0 K/V: for each kernel directory of VARIANTS (copies
  # of kernels/ with edits, carried in .device/ops), the fused kernel's rope_attention
  # conformance at both waves, the attention microbench over Q8_0 K/V (1B and 8B shapes,
  # depths 8192, 32768, 131071), and tg32 at depths 0, 8192, 32768 (Q8_0 K/V); the embedded
  # kernels' f16 microbench rows once, for the ratio.
  unpack .device/ops
  begin_summary
  gpu_info
  for v in ${VARIANTS:-kernels}; do
    name=$(basename "$v")
    start=$SECONDS
    timeout 120 bin/wavefront-conformance --backend gpu --wave all --no-coverage --op rope_attention \
      --kernels "$v" --report "$OUT/conformance-$name.md" >"$OUT/conformance-$name.log" 2>&1
    echo "| conformance rope_attention $name | $? | $((SECONDS - start)) s | $(tail -n 1 "$OUT/conformance-$name.log") |" | tee -a "$OUT/summary.md"
    for shape in llama-3.2-1b llama-3.1-8b; do
      start=$SECONDS
      md="$OUT/attention-$name-$shape.md"
      timeout 60 bin/wavefront bench --attention --backend gpu --kernels "$v" --shape $shape --kv-type q8_0 \
        --depth 8192,32768,131071 --prefill-len 512 --markdown "$md" >"$md.log" 2>&1
      echo "| attention $name $shape | $? | $((SECONDS - start)) s | $(grep -E "^\| llama.* \| (8192|32768|131071) \|" "$md" | awk -F'|' '{printf "%s: %s us, %s GB/s; ", $4, $6, $7}') |" | tee -a "$OUT/summary.md"
      bench "$name-$shape" --kernels "$v" --shape $shape --pp 512 --tg 32 --reps 3 --depth 0,8192,32768 \
        --sampling greedy --kv-type q8_0
    done
    finish
  done
  for shape in llama-3.2-1b llama-3.1-8b; do
    timeout 60 bin/wavefront bench --attention --backend gpu --shape $shape --depth 8192,32768,131071 \
      --prefill-len 512 --markdown "$OUT/attention-f16-$shape.md" >/dev/null 2>&1
  done
  finish
  for f in "$OUT"/bench-*.md; do echo "== $f"; grep -E "^\| tg" "$f"; done
  cat "$OUT/summary.md"
  ;;
sampler)
  # The device sampler (issues 8 and 11): the sample op cases at both waves with the path
  # coverage of the sampling kernels, the GPU unit tests, the graph test, the sampled streams
  # of the fixtures through the device sampler (the model-level settings include the
  # penalties), and greedy vs default sampling (tg128).
  unpack .device/ops
  begin_summary
  gpu_info
  start=$SECONDS
  timeout 240 bin/wavefront-conformance --backend gpu --wave all --op sample \
    --report "$OUT/conformance-sample.md" >"$OUT/conformance-sample.log" 2>&1
  echo "| conformance sample op, both waves | $? | $((SECONDS - start)) s | $(grep -c '✗' "$OUT/conformance-sample.log") ✗ |" | tee -a "$OUT/summary.md"
  grep -E "✗" "$OUT/conformance-sample.log" | head -20
  grep -iE "unreached" "$OUT/conformance-sample.log" | head -20
  finish
  for t in ${TESTS-engine_lib gpu_graph}; do run_test "$t"; finish; done
  fixtures_conformance conformance-fixtures
  # The sampler's cost beside greedy on every shape (issue 8: within 3%): Llama 3's vocabulary
  # (63 chunks: sample_topk's bound from the chunk maxima) and SmolLM2's (24 chunks, fewer than
  # top-k 40: from the groups' maxima).
  for shape in ${SHAPES:-llama-3.2-1b smollm2-135m llama-3.1-8b}; do
    bench $shape-sampling --shape $shape --reps 5 --depth 0 --pp 512 --tg 128 --sampling greedy,default
    grep -E "^\| (tg|pp)" "$OUT/bench-$shape-sampling.md"
  done
  cat "$OUT/summary.md"
  ;;
serve-gpu)
  # Issue 11's serving numbers on the GPU: `wavefront serve` on the default model (SmolLM2 Q4_1)
  # under 1, 4, 16 and 64 concurrent streaming clients (`bench --serve`; slots = streams), and the
  # engine-level rows (tg128 alone, x4, x16). Carry .device/ops with .device/m1, then .device/m2,
  # then .device/m3 and this stage (the model in three parts, as batch-check).
  unpack .device/ops
  model_from_parts
  begin_summary
  gpu_info
  bench smollm2-batch --model "$model" --reps 3 --depth 0 --pp 512 --tg 128 --batch 4,16
  start=$SECONDS
  timeout 420 bin/wavefront bench --serve --model "$model" --backend gpu --streams "${STREAMS:-1,4,16,64}" \
    --tg 128 --reps 3 --json "$OUT/serve-smollm2.json" --markdown "$OUT/serve-smollm2.md" \
    >"$OUT/serve-smollm2.log" 2>&1
  echo "| bench --serve smollm2 | $? | $((SECONDS - start)) s | |" | tee -a "$OUT/summary.md"
  finish
  grep -E "^\| (tg|pp)" "$OUT/bench-smollm2-batch.md"
  cat "$OUT/serve-smollm2.md"
  tail -5 "$OUT/serve-smollm2.log"
  cat "$OUT/summary.md"
  ;;
q8a)
  # Issue 10: the block-quantized GEMVs with 8-bit activations and integer dot products
  # (WAVEFRONT_QGEMV_Q8=1: qgemv_q8a_{T}, qgemv_swiglu_q8a_{T}; the tolerance is the Q8_0
  # input bound, Backend::matmul_input_dtype). Carry .device/ops. Variants are made here from
  # the tree's kernels/ (sed on a copy): lanesL (Q8A_STAGE_LANES = L: 1, 2, 4 or 8; the tree's
  # value gives no variant), u4 (Q8A_UNROLL = 4).
  #   PART=check: the GEMV op cases at both waves with path coverage in the mode (a cold
  #     kernel cache compiles four builds of qgemv.hip: minutes), the same cases at WAVE=32 for
  #     each variant, the model-level checks on the fixtures and quantized fixtures in the mode.
  #   PART=bench (default): the GEMV microbench over the 8B shape per type of GEMV_QUANTS
  #     (default q4_0 q4_k q8_0) in the mode and out of it, then per variant in the mode; tg32
  #     of SHAPES (default llama-3.1-8b) in QUANTS (default q4_0 q4_k q8_0) both ways (and per
  #     variant, VARIANT_TG=1).
  unpack .device/ops
  begin_summary
  gpu_info
  variants=""
  for v in ${VARIANTS-lanes1 lanes8 u4}; do
    d=/tmp/kvar-$v
    rm -rf "$d" && cp -r kernels "$d"
    case $v in
    lanes[1248]) sed -i "s/constexpr int Q8A_STAGE_LANES = [0-9]*;/constexpr int Q8A_STAGE_LANES = ${v#lanes};/" "$d/qgemv.hip" ;;
    u4) sed -i 's/constexpr int Q8A_UNROLL = 2;/constexpr int Q8A_UNROLL = 4;/' "$d/qgemv.hip" ;;
    esac
    if cmp -s kernels/qgemv.hip "$d/qgemv.hip"; then echo "variant $v: no edit applied" >&2; continue; fi
    variants="$variants $d"
  done
  case "${PART:-bench}" in
  check)
    start=$SECONDS
    # shellcheck disable=SC2086
    WAVEFRONT_QGEMV_Q8=1 timeout 420 bin/wavefront-conformance --backend gpu --wave all $GEMV_OPS \
      --report "$OUT/conformance-gemv-q8a.md" >"$OUT/conformance-gemv-q8a.log" 2>&1
    echo "| conformance gemv ops, both waves, coverage (WAVEFRONT_QGEMV_Q8=1) | $? | $((SECONDS - start)) s | $(tail -n 1 "$OUT/conformance-gemv-q8a.log") |" | tee -a "$OUT/summary.md"
    grep -E "FAIL|✗|unreached" "$OUT/conformance-gemv-q8a.log" | head -20
    finish
    for v in $variants; do
      start=$SECONDS
      # shellcheck disable=SC2086
      WAVEFRONT_QGEMV_Q8=1 timeout 150 bin/wavefront-conformance --backend gpu --wave 32 --no-coverage $GEMV_OPS \
        --kernels "$v" --report "$OUT/conformance-gemv-q8a-$(basename "$v").md" >"$OUT/conformance-gemv-q8a-$(basename "$v").log" 2>&1
      echo "| conformance gemv ops, WAVE=32, variant $v (WAVEFRONT_QGEMV_Q8=1) | $? | $((SECONDS - start)) s | $(tail -n 1 "$OUT/conformance-gemv-q8a-$(basename "$v").log") |" | tee -a "$OUT/summary.md"
      finish
    done
    # shellcheck disable=SC2046
    WAVEFRONT_QGEMV_Q8=1 fixtures_conformance conformance-fixtures-q8a $(for f in fixtures/quant_models/*.gguf; do echo --model "$f"; done)
    ;;
  *)
    gemv() { # name [args]
      local name=$1 start=$SECONDS
      shift
      timeout 120 bin/wavefront bench --gemv --backend gpu --shape llama-3.1-8b "$@" \
        --markdown "$OUT/bench-gemv-8b-$name.md" >"$OUT/bench-gemv-8b-$name.log" 2>&1
      echo "| bench --gemv 8b $name | $? | $((SECONDS - start)) s | |" | tee -a "$OUT/summary.md"
      finish
    }
    for q in ${GEMV_QUANTS-q4_0 q4_k q8_0}; do
      WAVEFRONT_QGEMV_Q8=0 gemv "$q-q8a0" --quant "$q"
      WAVEFRONT_QGEMV_Q8=1 gemv "$q-q8a1" --quant "$q"
      for v in $variants; do WAVEFRONT_QGEMV_Q8=1 gemv "$q-q8a1-$(basename "$v")" --quant "$q" --kernels "$v"; done
    done
    for f in "$OUT"/bench-gemv-*.md; do echo "== $f"; grep -E "^\| llama" "$f" | awk -F'|' '{print $3, $6, $7, $8}'; done
    for q in ${QUANTS:-q4_0 q4_k q8_0}; do
      for shape in ${SHAPES:-llama-3.1-8b}; do
        for q8 in 1 0; do
          WAVEFRONT_QGEMV_Q8=$q8 bench "$shape-$q-q8a$q8" --shape "$shape" --quant "$q" --reps 3 --depth 0 --pp 1 --tg 32
        done
        if [ "${VARIANT_TG:-0}" = 1 ]; then
          for v in $variants; do
            WAVEFRONT_QGEMV_Q8=1 bench "$shape-$q-q8a1-$(basename "$v")" --shape "$shape" --quant "$q" --reps 3 \
              --depth 0 --pp 1 --tg 32 --kernels "$v"
          done
        fi
      done
    done
    for f in "$OUT"/bench-llama*.md; do echo "== $f"; grep -E "^\| tg" "$f"; done
    ;;
  esac
  cat "$OUT/summary.md"
  ;;
gemv-groups)
  # Issue 8: the 16-bit one-row GEMVs (gemv_{T}, gemv_swiglu_{T}) launch at most what the device
  # holds at once, each block looping over its share of the row groups with its prologue once
  # (WAVEFRONT_GEMV_BLOCKS=N caps them at N; "all" below is one block a group, the grid before).
  # Carry .device/ops.
  #   PART=check: the GEMV op cases at both waves with path coverage (the groups path among
  #     them); at WAVE=32 with WAVEFRONT_GEMV_BLOCKS=1 (one block a row: every group); the
  #     model-level checks on the fixtures; gpu_gemv; gpu_graph; the engine's GPU unit tests.
  #   PART=profile: ncu's per-kernel times of greedy decode steps of SHAPES (smollm2-135m,
  #     llama-3.2-1b), random weights in QUANT's block type if set.
  #   PART=bench (default): the GEMV microbench over the three shapes (bf16) per cap of CAPS,
  #     then tg128 of each shape of SHAPES at each cap of TG_CAPS.
  unpack .device/ops
  begin_summary
  gpu_info
  cap_env() { # cap → the variable's setting (empty: the default)
    case $1 in default) echo "" ;; all) echo 1000000000 ;; *) echo "$1" ;; esac
  }
  case "${PART:-bench}" in
  check)
    gemv_ops "groups"
    start=$SECONDS
    WAVEFRONT_GEMV_BLOCKS=1 timeout 200 bin/wavefront-conformance --backend gpu --wave 32 --no-coverage \
      --op linear --op linear_stacked --op gate_up_swiglu --op norm_linear_stacked --op norm_gate_up_swiglu \
      --op linear_residual --report "$OUT/conformance-gemv-blocks1.md" >"$OUT/conformance-gemv-blocks1.log" 2>&1
    echo "| conformance gemv ops, WAVE=32, WAVEFRONT_GEMV_BLOCKS=1 | $? | $((SECONDS - start)) s | $(tail -n 1 "$OUT/conformance-gemv-blocks1.log") |" | tee -a "$OUT/summary.md"
    grep -E "FAIL|✗" "$OUT/conformance-gemv-blocks1.log" | head -10
    finish
    fixtures_conformance conformance-fixtures
    run_test gpu_gemv
    finish
    run_test gpu_graph
    finish
    # The engine's GPU unit tests (the whole binary also holds serve tests that fetch the
    # default model, which this stage does not carry: the device has no network).
    filtered_test engine_lib backend::gpu
    ;;
  profile)
    # Per-kernel device time of a greedy decode step (ncu, serialised kernels) against the
    # step's time in the bench: what the gaps between kernels cost on the small shapes.
    for shape in ${SHAPES-smollm2-135m llama-3.2-1b}; do
      start=$SECONDS
      timeout 150 ncu --clock-control none --cache-control none --metrics gpu__time_duration.sum --csv \
        --log-file "$OUT/ncu-$shape.csv" bin/wavefront bench --backend gpu \
        --shape "$shape" ${QUANT:+--quant "$QUANT"} --pp 1 --tg 4 --reps 1 --depth 0 >"$OUT/ncu-$shape.log" 2>&1
      echo "| ncu $shape ${QUANT-} decode | $? | $((SECONDS - start)) s | |" | tee -a "$OUT/summary.md"
      python3 ci/ncu-step-profile.py "$OUT/ncu-$shape.csv" | tee "$OUT/ncu-$shape.md"
      finish
    done
    ;;
  *)
    for cap in ${CAPS-all default 264 528}; do
      start=$SECONDS
      WAVEFRONT_GEMV_BLOCKS=$(cap_env "$cap") timeout 120 bin/wavefront bench --gemv --backend gpu \
        --markdown "$OUT/bench-gemv-bf16-$cap.md" >"$OUT/bench-gemv-bf16-$cap.log" 2>&1
      echo "| bench --gemv bf16 $cap | $? | $((SECONDS - start)) s | |" | tee -a "$OUT/summary.md"
      finish
    done
    for f in "$OUT"/bench-gemv-*.md; do echo "== $(basename "$f" .md)"; grep -E "^\| [a-z]" "$f" | awk -F'|' '{printf "%s %s |", $3, $6}'; echo; done
    for shape in ${SHAPES-llama-3.1-8b llama-3.2-1b smollm2-135m}; do
      for cap in ${TG_CAPS-default all}; do
        WAVEFRONT_GEMV_BLOCKS=$(cap_env "$cap") bench "$shape-$cap" --shape "$shape" --reps 3 --depth 0 --pp 1 \
          --tg "${TG:-128}"
      done
    done
    for f in "$OUT"/bench-llama*.md "$OUT"/bench-smollm2*.md; do echo "== $(basename "$f" .md)"; grep -E "^\| tg" "$f"; done
    ;;
  esac
  ;;
sync)
  # Issue 8, a persistent decode kernel's question: what a grid barrier inside one launch costs
  # against a transition between two launches of a captured graph (kernels/sync.hip). The
  # probes' device tests (the engine's unit tests named sync_, both waves: the barriers let no
  # block through early, the planted broken one is caught, the words are left for the next
  # launch; SYNC_TESTS=0 skips them), then `wavefront bench --sync` (native wave; REPS, default
  # 20) for each name of VARIANTS ("embedded", the default, or a kernel directory), into
  # bench-sync-NAME.md. Carry .device/ops.
  unpack .device/ops
  begin_summary
  gpu_info
  if [ "${SYNC_TESTS:-1}" = 1 ]; then
    filtered_test engine_lib sync_
    finish
  fi
  for v in ${VARIANTS-embedded}; do
    name=$(basename "$v")
    kargs=()
    [ "$v" = embedded ] || kargs=(--kernels "$v")
    start=$SECONDS
    timeout 240 bin/wavefront bench --sync --backend gpu "${kargs[@]}" --reps "${REPS:-20}" \
      --markdown "$OUT/bench-sync-$name.md" >"$OUT/bench-sync-$name.log" 2>&1
    echo "| bench --sync $name | $? | $((SECONDS - start)) s | |" | tee -a "$OUT/summary.md"
    finish
    echo "== $name"
    cat "$OUT/bench-sync-$name.md" 2>/dev/null || tail -n 20 "$OUT/bench-sync-$name.log"
  done
  ;;
short-attn)
  # Issues 8/9: A/B of decode-attention kernels at short contexts (written for the short path
  # of a5d5789, a block a query head and no splits, measured slower and reverted: see
  # bench/results/2026-12-05-short-attn-h100). Carry .device/ops.
  #   PART=check: the rope_attention op cases at both waves with path coverage (past 300 s on
  #     an H100 in a5d5789's run; past 450 with the matrix decode kernels' cases at 0bdf0ea, no
  #     report: set OPS_WAVE=32 and OPS_WAVE=64 in two calls, ATTN_OPS_TIMEOUT seconds each,
  #     default 450, or OPS_PARALLEL=1: both waves in one call as two processes at once), the
  #     model-level checks on the fixtures, gpu_graph, the engine's GPU unit tests.
  #   PART=bench (default): for the embedded kernels and each directory of VARIANTS (copies of
  #     kernels/ with edits, carried in .device/ops), the attention microbench of SHAPES at
  #     depths 64, 128, 256, 1024 and tg128 of each shape of SHAPES at depth 0; for each
  #     directory of ATT_VARIANTS, the microbench only.
  unpack .device/ops
  begin_summary
  gpu_info
  case "${PART:-bench}" in
  check)
    if [ "${OPS_PARALLEL:-0}" = 1 ]; then
      # both waves at once, two processes (attn-ops-w32.*, attn-ops-w64.*; 112 and 186 s side
      # by side on an H100 at 9f56f10, where one process for both had passed 450 s)
      for wave in 32 64; do
        (
          finish() { :; } # one archive, after both
          OPS_WAVE=$wave op_cases "attn-ops-w$wave" "${ATTN_OPS_TIMEOUT:-450}" UNREACHED \
            --op rope_attention
        ) &
      done
      wait
      finish
    else
      attn_ops "${ATTN_OPS_TIMEOUT:-450}" UNREACHED
    fi
    fixtures_conformance conformance-fixtures
    run_test gpu_graph
    finish
    filtered_test engine_lib backend::gpu
    ;;
  *)
    for v in embedded ${VARIANTS-} ${ATT_VARIANTS-}; do
      name=$(basename "$v")
      kargs=()
      [ "$v" = embedded ] || kargs=(--kernels "$v")
      for shape in ${SHAPES-smollm2-135m llama-3.2-1b llama-3.1-8b}; do
        start=$SECONDS
        md="$OUT/attention-$name-$shape.md"
        timeout 60 bin/wavefront bench --attention --backend gpu "${kargs[@]}" --shape $shape \
          --depth 64,128,256,1024 --prefill-len 512 --markdown "$md" >"$md.log" 2>&1
        echo "| attention $name $shape | $? | $((SECONDS - start)) s | |" | tee -a "$OUT/summary.md"
        finish
        case " ${ATT_VARIANTS-} " in *" $v "*) continue ;; esac
        bench "$name-$shape" "${kargs[@]}" --shape "$shape" --reps 3 --depth 0 --pp 1 --tg "${TG:-128}"
      done
    done
    for f in "$OUT"/attention-*.md; do echo "== $(basename "$f" .md)"; grep -E "^\| [a-z]" "$f" | head -8; done
    for f in "$OUT"/bench-*.md; do echo "== $(basename "$f" .md)"; grep -E "^\| tg" "$f"; done
    ;;
  esac
  ;;
variants)
  # A/B of kernel directories (copies of kernels/ with edits, carried in .device/ops) against
  # the embedded kernels, with one binary: every name of VARIANTS ("embedded" or a directory),
  # ROUNDS rounds in turn (default 1). Carry .device/ops.
  #   PART=bench (default): per round and variant, tg128 (TG) of each shape of SHAPES at the
  #     depths DEPTHS (default 0); with GEMV_BENCH=1 also the GEMV microbench (bf16, all three
  #     shapes) per variant, once; with ATTN_BENCH=1 the decode attention microbench of
  #     ATTN_SHAPES (the 1B and 8B) at ATTN_DEPTHS (8192, 32768, 131071) per variant, once.
  #   PART=check: for each directory of VARIANTS, the GEMV op cases (GEMV=1) and the
  #     rope_attention ones (ATTN=1) at both waves without coverage, then the model-level checks
  #     on the fixtures (and with GEMV=1 the gpu_gemv tests on the directory's kernels).
  #   PART=mma: the matrix-core GEMVs (WAVEFRONT_GEMV_MMA=1) of each name of VARIANTS: the
  #     GEMV microbench, tg32 and a 5-row verification of SHAPES (the 8B and 1B).
  #   PART=ncu-attn: Nsight Compute on one decode attention launch of the attention microbench
  #     per name of VARIANTS, shape of ATTN_SHAPES (the 8B) and depth of ATTN_DEPTHS (32768):
  #     speed of light, scheduler, warp states, and every stall reason's share of the active
  #     warps (where the latency-bound kernel waits) with the instruction count.
  #   PART=ncu-mma: Nsight Compute's sections of NCU_COUNT one-row GEMV launches of decode
  #     steps of SHAPES (the 8B) after NCU_SKIP, matrix-core then FMA.
  #   PART=ncu-q: Nsight Compute on NCU_COUNT (4) launches named qgemv* after NCU_SKIP (200)
  #     of decode steps of the 8B in each type of QUANTS (q4_0 q8_0), per name of VARIANTS:
  #     speed of light, scheduler, warp states, occupancy, instruction counts, stall reasons.
  # QUANT (bench and the GEMV microbench): every weight quantized in that type (--quant).
  unpack .device/ops
  begin_summary
  gpu_info
  kargs_of() { [ "$1" = embedded ] || echo "--kernels $1"; }
  quant_args() { [ -z "${QUANT-}" ] || echo "--quant $QUANT"; }
  gemv_bench_of() { # variant tag: the GEMV microbench of a variant (bench-gemv-TAG.*), a row
    local start=$SECONDS
    # shellcheck disable=SC2046
    timeout 150 bin/wavefront bench --gemv --backend gpu $(kargs_of "$1") $(quant_args) ${QUANT:+--shape llama-3.1-8b} \
      --markdown "$OUT/bench-gemv-$2.md" >"$OUT/bench-gemv-$2.log" 2>&1
    echo "| bench --gemv $2 | $? | $((SECONDS - start)) s | |" | tee -a "$OUT/summary.md"
    finish
  }
  case "${PART:-bench}" in
  check)
    for v in ${VARIANTS-}; do
      [ "$v" = embedded ] && continue
      name=$(basename "$v")
      ops=()
      # shellcheck disable=SC2206
      [ "${GEMV:-0}" = 1 ] && ops+=($GEMV_OPS)
      [ "${ATTN:-0}" = 1 ] && ops+=(--op rope_attention)
      if [ ${#ops[@]} = 0 ]; then echo "variants PART=check: set GEMV=1 and/or ATTN=1" >&2; exit 2; fi
      op_cases "ops-$name" "${OPS_TIMEOUT:-240}" "" --kernels "$v" --no-coverage "${ops[@]}"
      fixtures_conformance "fixtures-$name" --kernels "$v"
      # the GEMV's own device tests (the block cap changes no bit) on the directory's kernels
      if [ "${GEMV:-0}" = 1 ]; then WAVEFRONT_KERNELS_DIR=$v run_test gpu_gemv; fi
    done
    ;;
  mma)
    # the matrix-core GEMVs (WAVEFRONT_GEMV_MMA=1) of each name of VARIANTS: the GEMV
    # microbench, then tg32 and a 5-row verification on SHAPES
    export WAVEFRONT_GEMV_MMA=1
    for v in ${VARIANTS-embedded}; do
      name=$(basename "$v")
      gemv_bench_of "$v" "mma-$name"
      for shape in ${SHAPES-llama-3.1-8b llama-3.2-1b}; do
        bench "mma-$name-$shape" $(kargs_of "$v") --shape "$shape" --reps 3 --depth 0 --pp 1 --tg 32 --verify 4
      done
    done
    for f in "$OUT"/bench-gemv-mma-*.md; do echo "== $(basename "$f" .md)"; grep -E "^\| [a-z]" "$f" | awk -F'|' '{printf "%s %s %s|", $2, $3, $6}'; echo; done
    for f in "$OUT"/bench-mma-*.md; do echo "== $(basename "$f" .md)"; grep -E "^\| (tg|verify)" "$f"; done
    ;;
  ncu-attn)
    for v in ${VARIANTS-embedded}; do
      name=$(basename "$v")
      for shape in ${ATTN_SHAPES-llama-3.1-8b}; do
        for depth in ${ATTN_DEPTHS-32768}; do
          start=$SECONDS
          f="$OUT/ncu-attn-$name-$shape-$depth.txt"
          timeout 150 ncu --clock-control none --kernel-name regex:decode_attention \
            --launch-skip 40 --launch-count 1 --section SpeedOfLight --section SchedulerStats \
            --section WarpStateStats --section Occupancy \
            --metrics "regex:smsp__warp_issue_stalled_.*_per_warp_active\.pct,smsp__inst_executed.sum" \
            bin/wavefront bench --attention --backend gpu $(kargs_of "$v") --shape "$shape" \
            --depth "$depth" --prefill-len 512 >"$f" 2>&1
          echo "| ncu attention $name $shape $depth | $? | $((SECONDS - start)) s | |" | tee -a "$OUT/summary.md"
          finish
          echo "== $name $shape $depth"
          grep -E "Duration|DRAM Throughput|No Eligible|inst_executed" "$f"
          # the five largest stall reasons
          grep -E "warp_issue_stalled_.*_per_warp_active" "$f" | sort -k3 -g -r | head -5
        done
      done
    done
    ;;
  ncu-q)
    for v in ${VARIANTS-embedded}; do
      name=$(basename "$v")
      for q in ${QUANTS-q4_0 q8_0}; do
        start=$SECONDS
        f="$OUT/ncu-q-$name-$q.txt"
        # shellcheck disable=SC2046
        timeout 200 ncu --clock-control none --kernel-name "regex:^qgemv" \
          --launch-skip "${NCU_SKIP:-200}" --launch-count "${NCU_COUNT:-4}" --section SpeedOfLight \
          --section SchedulerStats --section WarpStateStats --section Occupancy --section LaunchStats \
          --metrics "regex:smsp__warp_issue_stalled_.*_per_warp_active\.pct,smsp__inst_executed.sum" \
          bin/wavefront bench --backend gpu $(kargs_of "$v") --shape llama-3.1-8b --quant "$q" --pp 1 \
          --tg 4 --reps 1 --depth 0 >"$f" 2>&1
        echo "| ncu-q $name $q | $? | $((SECONDS - start)) s | |" | tee -a "$OUT/summary.md"
        finish
        echo "== $name $q"
        grep -E "^  qgemv|Duration|DRAM Throughput|Issued Warp|No Eligible|Registers Per|Achieved Occupancy|inst_executed.sum" "$f"
        grep -E "warp_issue_stalled_.*_per_warp_active" "$f" | sort -k3 -g -r | head -8
      done
    done
    ;;
  ncu-mma)
    for on in 1 0; do
      for shape in ${SHAPES-llama-3.1-8b}; do
        start=$SECONDS
        WAVEFRONT_GEMV_MMA=$on timeout 200 ncu --clock-control none --kernel-name "regex:^gemv_" \
          --launch-skip "${NCU_SKIP:-200}" --launch-count "${NCU_COUNT:-8}" --section SpeedOfLight \
          --section MemoryWorkloadAnalysis --section WarpStateStats --section Occupancy \
          --section LaunchStats --section SchedulerStats bin/wavefront bench --backend gpu \
          --shape "$shape" --pp 1 --tg 4 --reps 1 --depth 0 >"$OUT/ncu-mma$on-$shape.txt" 2>&1
        echo "| ncu mma=$on $shape | $? | $((SECONDS - start)) s | |" | tee -a "$OUT/summary.md"
        finish
      done
    done
    grep -hE "^  [a-z_]+bf16|Duration|DRAM Throughput|Achieved Occupancy|Registers Per|Stall Long|L1TEX Hit|Mem Busy|Max Bandwidth" "$OUT"/ncu-mma*.txt | head -80
    ;;
  *)
    if [ "${GEMV_BENCH:-0}" = 1 ]; then
      for v in ${VARIANTS-embedded}; do
        gemv_bench_of "$v" "$(basename "$v")"
      done
    fi
    if [ "${ATTN_BENCH:-0}" = 1 ]; then
      for v in ${VARIANTS-embedded}; do
        name=$(basename "$v")
        for shape in ${ATTN_SHAPES-llama-3.2-1b llama-3.1-8b}; do
          start=$SECONDS
          timeout 90 bin/wavefront bench --attention --backend gpu $(kargs_of "$v") --shape "$shape" \
            --depth "${ATTN_DEPTHS:-8192,32768,131071}" --prefill-len 512 \
            --markdown "$OUT/attention-$name-$shape.md" >"$OUT/attention-$name-$shape.log" 2>&1
          echo "| bench --attention $name $shape | $? | $((SECONDS - start)) s | |" | tee -a "$OUT/summary.md"
          finish
        done
      done
    fi
    for r in $(seq 1 "${ROUNDS:-1}"); do
      for v in ${VARIANTS-embedded}; do
        name=$(basename "$v")
        for shape in ${SHAPES-smollm2-135m llama-3.2-1b llama-3.1-8b}; do
          # shellcheck disable=SC2046
          bench "$name-$shape-$r" $(kargs_of "$v") $(quant_args) --shape "$shape" --reps 3 --depth "${DEPTHS:-0}" --pp 1 --tg "${TG:-128}"
        done
      done
    done
    for f in "$OUT"/bench-gemv-*.md; do echo "== $(basename "$f" .md)"; grep -E "^\| [a-z]" "$f" | awk -F'|' '{printf "%s %s %s|", $2, $3, $6}'; echo; done
    for f in "$OUT"/attention-*.md; do
      [ -f "$f" ] || continue
      echo "$(basename "$f" .md): $(awk -F'|' 'NF == 12 && $2 ~ /llama/ {printf "%s: %s us, %s GB/s; ", $4, $6, $7}' "$f")"
    done
    for shape in ${SHAPES-smollm2-135m llama-3.2-1b llama-3.1-8b}; do
      echo "$shape: $(for f in "$OUT"/bench-*-"$shape"-*.md; do b=$(basename "$f" .md); b=${b#bench-}; echo -n "${b%%-$shape*}${b##*$shape} $(grep -E '^\| tg' "$f" | awk -F'|' '{printf "%s=%s ", $2, $3}')|"; done)"
    done
    ;;
  esac
  ;;
qgemv-groups)
  # Issue 10: the block-quantized GEMVs launch at most multiprocessors · 2 blocks, each looping
  # over its share of the row groups with the input staged once (WAVEFRONT_QGEMV_BLOCKS=N caps
  # them at N instead; "all" below is one block a group, the grid before). Carry .device/ops.
  #   PART=check: the GEMV op cases at both waves with path coverage (the groups path among
  #     them) per mode of Q8_CHECK (default: every type but Q8_0, Q4_1 and Q5_0 8-bit;
  #     0: every type f32; 1: every type 8-bit); then at WAVE=32 with
  #     WAVEFRONT_QGEMV_BLOCKS=1 (every launch one block a row: every group, tiles restaged) in
  #     both forms; then the model-level checks on the fixtures and the quantized fixtures in
  #     the default mode.
  #   PART=bench (default): the GEMV microbench over the 8B shape per type of GEMV_QUANTS and
  #     cap of CAPS, in both forms (Q8S), and per variant of VARIANTS (made here from the tree's
  #     kernels/ by sed: lanesL = Q8A_STAGE_LANES L) in the 8-bit form; then tg32 of the 8B
  #     shape in QUANTS at each cap of TG_CAPS (default, all), both forms, and per variant.
  unpack .device/ops
  begin_summary
  gpu_info
  cap_env() { # cap → the variable's setting (empty: the default)
    case $1 in default) echo "" ;; all) echo 1000000000 ;; *) echo "$1" ;; esac
  }
  variants=""
  for v in ${VARIANTS-}; do
    d=/tmp/kvar-$v
    rm -rf "$d" && cp -r kernels "$d"
    case $v in
    lanes[1248]) sed -i "s/constexpr int Q8A_STAGE_LANES = [0-9]*;/constexpr int Q8A_STAGE_LANES = ${v#lanes};/" "$d/qgemv.hip" ;;
    esac
    if cmp -s kernels/qgemv.hip "$d/qgemv.hip"; then echo "variant $v: no edit applied" >&2; continue; fi
    variants="$variants $d"
  done
  case "${PART:-bench}" in
  check)
    for q8 in ${Q8_CHECK-default 0 1}; do
      start=$SECONDS
      # shellcheck disable=SC2086
      WAVEFRONT_QGEMV_Q8=${q8#default} timeout 420 bin/wavefront-conformance --backend gpu --wave all $GEMV_OPS \
        --report "$OUT/conformance-gemv-q8a$q8.md" >"$OUT/conformance-gemv-q8a$q8.log" 2>&1
      echo "| conformance gemv ops, both waves, coverage (WAVEFRONT_QGEMV_Q8=$q8) | $? | $((SECONDS - start)) s | $(tail -n 1 "$OUT/conformance-gemv-q8a$q8.log") |" | tee -a "$OUT/summary.md"
      grep -E "FAIL|✗|unreached" "$OUT/conformance-gemv-q8a$q8.log" | head -20
      finish
    done
    for q8 in 0 1; do
      start=$SECONDS
      # shellcheck disable=SC2086
      WAVEFRONT_QGEMV_Q8=$q8 WAVEFRONT_QGEMV_BLOCKS=1 timeout 200 bin/wavefront-conformance --backend gpu --wave 32 \
        --no-coverage $GEMV_OPS --report "$OUT/conformance-gemv-blocks1-q8a$q8.md" \
        >"$OUT/conformance-gemv-blocks1-q8a$q8.log" 2>&1
      echo "| conformance gemv ops, WAVE=32, WAVEFRONT_QGEMV_BLOCKS=1 (WAVEFRONT_QGEMV_Q8=$q8) | $? | $((SECONDS - start)) s | $(tail -n 1 "$OUT/conformance-gemv-blocks1-q8a$q8.log") |" | tee -a "$OUT/summary.md"
      grep -E "FAIL|✗" "$OUT/conformance-gemv-blocks1-q8a$q8.log" | head -10
      finish
    done
    # shellcheck disable=SC2046
    fixtures_conformance conformance-fixtures $(for f in fixtures/quant_models/*.gguf; do echo --model "$f"; done)
    ;;
  *)
    for q in ${GEMV_QUANTS-q4_0 q4_k q8_0}; do
      for q8 in ${Q8S-0 1}; do
        for cap in ${CAPS-all default 132 396 528}; do
          start=$SECONDS
          name=$q-q8a$q8-$cap
          WAVEFRONT_QGEMV_Q8=${q8#default} WAVEFRONT_QGEMV_BLOCKS=$(cap_env "$cap") timeout 120 bin/wavefront bench --gemv \
            --backend gpu --shape llama-3.1-8b --quant "$q" --markdown "$OUT/bench-gemv-8b-$name.md" \
            >"$OUT/bench-gemv-8b-$name.log" 2>&1
          echo "| bench --gemv 8b $name | $? | $((SECONDS - start)) s | |" | tee -a "$OUT/summary.md"
          finish
        done
      done
      for v in $variants; do
        start=$SECONDS
        name=$q-q8a1-$(basename "$v")
        WAVEFRONT_QGEMV_Q8=1 timeout 120 bin/wavefront bench --gemv --backend gpu --shape llama-3.1-8b \
          --quant "$q" --kernels "$v" --markdown "$OUT/bench-gemv-8b-$name.md" >"$OUT/bench-gemv-8b-$name.log" 2>&1
        echo "| bench --gemv 8b $name | $? | $((SECONDS - start)) s | |" | tee -a "$OUT/summary.md"
        finish
      done
    done
    for f in "$OUT"/bench-gemv-*.md; do echo "== $(basename "$f" .md)"; grep -E "^\| llama" "$f" | awk -F'|' '{printf "%s %s |", $3, $6}'; echo; done
    for q in ${QUANTS-q4_0 q4_k q8_0}; do
      for q8 in ${Q8S-0 1}; do
        for cap in ${TG_CAPS-default all}; do
          WAVEFRONT_QGEMV_Q8=${q8#default} WAVEFRONT_QGEMV_BLOCKS=$(cap_env "$cap") bench "llama-3.1-8b-$q-q8a$q8-$cap" \
            --shape llama-3.1-8b --quant "$q" --reps 3 --depth 0 --pp 1 --tg 32
        done
      done
      for v in $variants; do
        WAVEFRONT_QGEMV_Q8=1 bench "llama-3.1-8b-$q-q8a1-$(basename "$v")" --shape llama-3.1-8b --quant "$q" \
          --reps 3 --depth 0 --pp 1 --tg 32 --kernels "$v"
      done
    done
    for f in "$OUT"/bench-llama*.md; do echo "== $(basename "$f" .md)"; grep -E "^\| tg" "$f"; done
    ;;
  esac
  cat "$OUT/summary.md"
  ;;
verify-graph)
  # Issue 13's verification with its pass captured (42a3b33: a forward as steps reads its rows'
  # tokens and positions from device memory, is captured once per row count and replayed; the
  # logits through page-locked memory), and issue 11's 1B-shape serving figure. Carry
  # .device/ops with .device/m1 (PART=1), then .device/m2 (any command), then .device/m3 with
  # PART=2.
  #   PART=1: gpu_graph (captured verifications equal uncaptured ones by bits) in both GEMV
  #     modes; the 8B and 1B benches (tg32, verify4 at depth 0) in both GEMV modes with the
  #     verification captured (the default since this stage's PART=2 passed) and not
  #     (WAVEFRONT_NO_VERIFY_GRAPH=1).
  #   PART=2: `bench --serve --shape llama-3.2-1b` in both GEMV modes (as serve-shape); then
  #     model_gpu's speculation tests (rows as steps by bits against one-row forwards, now
  #     replayed) and SmolLM2's golden streams in both GEMV modes.
  #   PART=graph: gpu_graph alone, both GEMV modes (carry .device/ops).
  unpack .device/ops
  begin_summary
  gpu_info
  case "${PART:-1}" in
  graph)
    run_test gpu_graph; finish
    WAVEFRONT_GEMV_MMA=1 run_test gpu_graph; finish
    ;;
  1)
    run_test gpu_graph; finish
    WAVEFRONT_GEMV_MMA=1 run_test gpu_graph; finish
    for shape in ${SHAPES:-llama-3.1-8b llama-3.2-1b}; do
      for mma in 1 0; do
        for vg in on off; do
          no=0; [ "$vg" = off ] && no=1
          WAVEFRONT_GEMV_MMA=$mma WAVEFRONT_NO_VERIFY_GRAPH=$no bench "$shape-mma$mma-vgraph-$vg" \
            --shape "$shape" --reps 3 --depth 0 --pp 1 --tg 32 --verify 4
        done
      done
    done
    for f in "$OUT"/bench-llama*.md; do echo "== $f"; grep -E "^\| (tg|verify)" "$f"; done
    ;;
  *)
    model_from_parts
    for mma in 1 0; do
      start=$SECONDS
      WAVEFRONT_GEMV_MMA=$mma timeout 200 bin/wavefront bench --serve --shape llama-3.2-1b \
        --backend gpu --streams "${STREAMS:-1,4,16,64}" --tg 128 --reps 3 \
        --json "$OUT/serve-1b-mma$mma.json" --markdown "$OUT/serve-1b-mma$mma.md" \
        >"$OUT/serve-1b-mma$mma.log" 2>&1
      echo "| bench --serve --shape llama-3.2-1b (WAVEFRONT_GEMV_MMA=$mma) | $? | $((SECONDS - start)) s | |" | tee -a "$OUT/summary.md"
      finish
      cat "$OUT/serve-1b-mma$mma.md"
      grep -E "error|panicked" "$OUT/serve-1b-mma$mma.log" | head -5
    done
    # Through the verification graphs (the default since these passed, 2026-12-05).
    filtered_test model_gpu speculation "diverged"
    WAVEFRONT_GEMV_MMA=1 filtered_test model_gpu speculation "diverged" "(WAVEFRONT_GEMV_MMA=1)"
    filtered_test golden_tokens smollm2
    WAVEFRONT_GEMV_MMA=1 filtered_test golden_tokens smollm2 "" "(WAVEFRONT_GEMV_MMA=1)"
    ;;
  esac
  cat "$OUT/summary.md"
  ;;
serve-shape)
  # Issue 11's serving target on its own terms: `wavefront serve --shape llama-3.2-1b` (random
  # bf16 weights in the 1B shape, the default model's tokenizer padded to its vocabulary) under
  # 1, 4, 16 and 64 concurrent streaming clients, with the default GEMV kernels and with the
  # matrix-core ones (WAVEFRONT_GEMV_MMA=1: every row of a batch through the same kernel, so
  # batch invariance holds in either mode). Carry .device/ops with .device/m1, then .device/m2,
  # then .device/m3 and this stage (the tokenizer's model in three parts, as serve-gpu).
  unpack .device/ops
  model_from_parts
  begin_summary
  gpu_info
  shape=${SHAPE:-llama-3.2-1b}
  for mma in 0 1; do
    start=$SECONDS
    WAVEFRONT_GEMV_MMA=$mma timeout 280 bin/wavefront bench --serve --shape "$shape" --backend gpu \
      --streams "${STREAMS:-1,4,16,64}" --tg 128 --reps 3 --json "$OUT/serve-$shape-mma$mma.json" \
      --markdown "$OUT/serve-$shape-mma$mma.md" >"$OUT/serve-$shape-mma$mma.log" 2>&1
    echo "| bench --serve --shape $shape (WAVEFRONT_GEMV_MMA=$mma) | $? | $((SECONDS - start)) s | |" | tee -a "$OUT/summary.md"
    finish
    cat "$OUT/serve-$shape-mma$mma.md"
    grep -E "error|panicked" "$OUT/serve-$shape-mma$mma.log" | head -5
  done
  cat "$OUT/summary.md"
  ;;
*) echo "unknown stage $stage" >&2; exit 2 ;;
esac
