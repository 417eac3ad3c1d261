#!/usr/bin/env bash
# A/B on the device machine: the binary a stage unpacked from .device/ops (`new`) against a base
# binary (.device/ops/base/wavefront.xz, e.g. the last stop's `.device/ops/wavefront.xz`), and
# kernel variants run by `new` with `--kernels .device/ops/NAME` (a copy of kernels/ with one
# change: carried with .device/ops, no rebuild), and variants of `new` under an environment
# (a name NAME with ENV_NAME set: `ENV_t512=WAVEFRONT_QGEMV_THREADS=512 VARS="new t512"`,
# several assignments space-separated). Run from the repository root:
#   MODE=gemv QUANTS="q4_0 q4_k" VARS="new base k1" bash ci/device-ab.sh
#     `wavefront bench --gemv` over the 8B shape (GEMV_SHAPE) per quantization and variant;
#   MODE=tg SHAPES="llama-3.1-8b llama-3.2-1b" QUANTS="q4_0" [ROUNDS=2] [TG=128] bash ci/device-ab.sh
#     tg of each shape, quantization and variant, the variants alternating within a round.
# Results: $OUT/ab-$MODE/ (one markdown table and log a run) and $OUT/ab-$MODE.tar.gz; a line a
# run on stdout (tg: tok/s and % of the roofline), a per-product table last (gemv).
set -u
MODE=${MODE:?MODE=gemv or MODE=tg}
QUANTS=${QUANTS:?QUANTS: the quantizations, e.g. "q4_0 q4_k q8_0"}
VARS=${VARS:-new base}
mkdir -p .device/bin
for f in .device/ops/*.xz; do
  b=$(basename "$f" .xz)
  [ -x ".device/bin/$b" ] || { xz -dc "$f" >".device/bin/$b" && chmod +x ".device/bin/$b"; }
done
base=/tmp/wavefront-ab-base
case " $VARS " in *" base "*)
  [ -x "$base" ] || { xz -dc .device/ops/base/wavefront.xz >"$base" && chmod +x "$base"; } || exit 1
  ;;
esac
O=${OUT:-/tmp/wavefront-out}/ab-$MODE
mkdir -p "$O"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader >"$O/gpu.txt" 2>/dev/null
binary() { if [ "$1" = base ]; then echo "$base"; else echo .device/bin/wavefront; fi; }
envs() { # a variant's environment (ENV_NAME), else nothing
  local n="ENV_${1//[^A-Za-z0-9_]/_}"
  echo "${!n-}"
}
kernels() { # a variant that is a directory of .device/ops: its kernels
  if [ "$1" != base ] && [ "$1" != new ] && [ -d ".device/ops/$1" ]; then echo "--kernels .device/ops/$1"; fi
}
if [ "$MODE" = gemv ]; then
  for q in $QUANTS; do
    for v in $VARS; do
      s=$SECONDS
      # shellcheck disable=SC2046  # envs: none or some; kernels: no argument or two
      env $(envs "$v") timeout 150 "$(binary "$v")" bench --gemv $(kernels "$v") --backend gpu --quant "$q" \
        --shape "${GEMV_SHAPE:-llama-3.1-8b}" --markdown "$O/gemv-$q-$v.md" >"$O/gemv-$q-$v.log" 2>&1
      echo "gemv $q $v rc=$? $((SECONDS - s)) s"
    done
  done
  for f in "$O"/gemv-*.md; do
    echo "== $(basename "$f" .md)"
    grep -E "^\| [a-z]" "$f" | awk -F'|' '$3 !~ /projection/ {printf "%s %s %s|", $3, $6, $8}'
    echo
  done
else
  for r in $(seq 1 "${ROUNDS:-1}"); do
    for q in $QUANTS; do
      for s in ${SHAPES:?SHAPES: the bench shapes}; do
        for v in $VARS; do
          m="$O/tg-$v-$q-$s-$r.md"
          # shellcheck disable=SC2046
          env $(envs "$v") timeout 120 "$(binary "$v")" bench --backend gpu $(kernels "$v") --quant "$q" --shape "$s" \
            --reps 3 --depth 0 --pp "${PP:-1}" --tg "${TG:-128}" --markdown "$m" >"${m%.md}.log" 2>&1
          echo "$v $q $s $r rc=$? $(grep -E '^\| (tg|pp)' "$m" | awk -F'|' '{printf "%s=%s %s ", $2, $3, $8}')"
        done
      done
    done
  done
fi
tar -C "$(dirname "$O")" -czf "$O.tar.gz" "ab-$MODE"
