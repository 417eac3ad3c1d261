#!/usr/bin/env bash
# ROCm golden-token run: the GPU backend on a real AMD GPU against the reference.
#   1. checks that a ROCm runtime and a GPU are usable (rocminfo, /dev/kfd read-write);
#   2. builds: cargo build --release -p wavefront-conformance;
#   3. runs the op and model conformance on the GPU:
#        <target>/release/wavefront-conformance --backend gpu --report DIR/report.md --json DIR/report.json
#   4. runs the golden-token snapshots:
#        cargo test --release -p wavefront-conformance --test golden_tokens -- --include-ignored
# Steps 3 and 4 both run even if one fails; the exit status is non-zero if anything failed.
# Everything lands in DIR for the workflow's upload-artifact step (and for a person):
#   DIR/summary.md        each step, its command, exit status and time; the verdict
#   DIR/environment.txt   commit, host, ROCm version, the GPU agents rocminfo lists
#   DIR/rocminfo.txt      rocminfo's full output (when it ran)
#   DIR/report.md         the conformance report (op × case table, coverage)
#   DIR/report.json       the conformance results
#   DIR/logs/<step>.log   the output of each step (build, conformance, golden-tokens)
#
# Usage: ci/rocm-golden.sh [--out DIR] [--dry-run] [--arch gfxNNN]
#   --out DIR      where the results go (default: target/rocm-golden); created, or emptied if
#                  an earlier run made it (any other non-empty directory is refused)
#   --dry-run      check the arguments, write summary.md with the commands it would run and
#                  environment.txt, and stop: needs no ROCm, builds nothing
#   --arch gfxNNN  require a GPU of this architecture (e.g. gfx942) and run on the first one
#                  (HIP_VISIBLE_DEVICES); without it, the first GPU rocminfo lists
# Exit status: 0 all passed; 1 a step failed; 2 bad arguments; 3 no usable ROCm runtime/GPU.
# Environment: ROCM_PATH (default /opt/rocm), KFD_DEVICE (default /dev/kfd),
# CARGO_TARGET_DIR (default target/), CARGO (default cargo).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() {
  sed -n '/^# Usage:/,/^# Environment:/p' "$0" | sed 's/^# \{0,1\}//' | sed '$d'
}

die_usage() {
  echo "rocm-golden: $1" >&2
  usage >&2
  exit 2
}

OUT="$ROOT/target/rocm-golden"
DRY_RUN=0
ARCH=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out)
      [ $# -ge 2 ] && [ -n "$2" ] || die_usage "--out needs a directory"
      OUT="$2"
      shift 2
      ;;
    --dry-run) DRY_RUN=1; shift ;;
    --arch)
      [ $# -ge 2 ] || die_usage "--arch needs an architecture such as gfx942"
      [[ "$2" =~ ^gfx[0-9a-f]{3,4}$ ]] || die_usage "--arch '$2' is not an AMD GPU architecture (gfxNNN)"
      ARCH="$2"
      shift 2
      ;;
    -h | --help) usage; exit 0 ;;
    *) die_usage "unknown argument '$1'" ;;
  esac
done

ROCM_PATH="${ROCM_PATH:-/opt/rocm}"
KFD_DEVICE="${KFD_DEVICE:-/dev/kfd}"
CARGO="${CARGO:-cargo}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$OUT" in /*) ;; *) OUT="$PWD/$OUT" ;; esac

# The results directory: made fresh, so an artifact never mixes two runs. Only a directory
# this script made (it holds the marker) is emptied; any other non-empty one is refused.
MARKER=".rocm-golden-results"
if [ -d "$OUT" ] && [ -n "$(ls -A "$OUT")" ] && [ ! -e "$OUT/$MARKER" ]; then
  die_usage "--out $OUT is a non-empty directory this script did not create; not emptying it"
fi
mkdir -p "$OUT"
find "$OUT" -mindepth 1 -delete
touch "$OUT/$MARKER"
mkdir -p "$OUT/logs"

SUMMARY="$OUT/summary.md"
STATUS=0
{
  echo "# ROCm golden-token run"
  echo
  echo "| step | command | exit | seconds |"
  echo "|---|---|---:|---:|"
} >"$SUMMARY"

# Appends a row to the summary.
record() { # step, command, exit, seconds
  printf '| %s | `%s` | %s | %s |\n' "$1" "$2" "$3" "$4" >>"$SUMMARY"
}

# Runs a step, logging to logs/<step>.log; a failure is recorded, not fatal.
run_step() { # step, command...
  local step="$1" start rc
  shift
  start=$(date +%s)
  echo "rocm-golden: $step: $*"
  set +e
  (cd "$ROOT" && "$@") >"$OUT/logs/$step.log" 2>&1
  rc=$?
  set -e
  record "$step" "$*" "$rc" "$(($(date +%s) - start))"
  if [ "$rc" != 0 ]; then
    echo "rocm-golden: $step FAILED (exit $rc); last lines of logs/$step.log:" >&2
    tail -n 30 "$OUT/logs/$step.log" >&2 || true
    STATUS=1
  fi
  return "$rc"
}

finish() { # verdict, exit status
  {
    echo
    echo "Verdict: $1"
  } >>"$SUMMARY"
  echo "rocm-golden: $1 (results in $OUT)"
  exit "$2"
}

BUILD=("$CARGO" build --release -p wavefront-conformance)
CONFORMANCE=("$TARGET_DIR/release/wavefront-conformance" --backend gpu
  --report "$OUT/report.md" --json "$OUT/report.json")
GOLDEN=("$CARGO" test --release -p wavefront-conformance --test golden_tokens -- --include-ignored)

{
  echo "commit: $(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "host: $(uname -n) $(uname -srm)"
  echo "required arch: ${ARCH:-any}"
  echo "ROCm path: $ROCM_PATH ($(cat "$ROCM_PATH/.info/version" 2>/dev/null || echo 'version unknown'))"
} >"$OUT/environment.txt"

if [ "$DRY_RUN" = 1 ]; then
  record "rocm-check" "rocminfo; test -r -w $KFD_DEVICE" "dry-run" 0
  record "build" "${BUILD[*]}" "dry-run" 0
  record "conformance" "${CONFORMANCE[*]}" "dry-run" 0
  record "golden-tokens" "${GOLDEN[*]}" "dry-run" 0
  finish "dry run: nothing was run" 0
fi

# --- 1. ROCm runtime and GPU ------------------------------------------------------------------
no_rocm() {
  echo "rocm-golden: $1" >&2
  record "rocm-check" "rocminfo; test -r -w $KFD_DEVICE" 3 0
  finish "no usable ROCm runtime or GPU: $1" 3
}
ROCMINFO="$(command -v rocminfo || true)"
if [ -z "$ROCMINFO" ] && [ -x "$ROCM_PATH/bin/rocminfo" ]; then ROCMINFO="$ROCM_PATH/bin/rocminfo"; fi
[ -n "$ROCMINFO" ] || no_rocm "rocminfo not found (PATH, $ROCM_PATH/bin): is ROCm installed?"
[ -e "$KFD_DEVICE" ] || no_rocm "$KFD_DEVICE does not exist: the amdgpu kernel driver is not loaded"
[ -r "$KFD_DEVICE" ] && [ -w "$KFD_DEVICE" ] ||
  no_rocm "$KFD_DEVICE is not read-write for $(id -un): add the user to the render and video groups"
if ! "$ROCMINFO" >"$OUT/rocminfo.txt" 2>&1; then
  no_rocm "rocminfo failed (see rocminfo.txt)"
fi
# GPU agents in rocminfo order: the first "Name:" of each agent block that is a GPU.
mapfile -t GPUS < <(awk '
  /^Agent [0-9]+/ { if (name != "" && gpu) print name; name = ""; gpu = 0; next }
  /^  Name:/ && name == "" { name = $2 }
  /^  Device Type:/ && $3 == "GPU" { gpu = 1 }
  END { if (name != "" && gpu) print name }' "$OUT/rocminfo.txt")
[ "${#GPUS[@]}" -gt 0 ] || no_rocm "rocminfo lists no GPU agent"
echo "GPU agents: ${GPUS[*]}" >>"$OUT/environment.txt"
DEVICE=0
if [ -n "$ARCH" ]; then
  DEVICE=-1
  for i in "${!GPUS[@]}"; do
    if [ "${GPUS[$i]}" = "$ARCH" ]; then DEVICE=$i; break; fi
  done
  [ "$DEVICE" -ge 0 ] || no_rocm "no $ARCH GPU (rocminfo lists: ${GPUS[*]})"
fi
export HIP_VISIBLE_DEVICES="$DEVICE"
echo "running on: GPU $DEVICE (${GPUS[$DEVICE]}), HIP_VISIBLE_DEVICES=$DEVICE" >>"$OUT/environment.txt"
record "rocm-check" "rocminfo; test -r -w $KFD_DEVICE" 0 0
# On a GPU machine a GPU test that would skip is a failure, and so is a missing golden snapshot.
export WAVEFRONT_REQUIRE_GPU=1
# The engine opens libamdhip64, libhiprtc and librocblas at run time.
if [ -d "$ROCM_PATH/lib" ]; then export LD_LIBRARY_PATH="$ROCM_PATH/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; fi

# --- 2. build; 3. conformance; 4. golden tokens -----------------------------------------------
run_step build "${BUILD[@]}" || finish "FAILED: the build" 1
run_step conformance "${CONFORMANCE[@]}" || true
run_step golden-tokens "${GOLDEN[@]}" || true
if [ "$STATUS" != 0 ]; then finish "FAILED (see the table and logs/)" 1; fi
finish "passed" 0
