#!/usr/bin/env bash
# Tests of ci/rocm-golden.sh's non-GPU parts, runnable anywhere: argument handling, exit codes,
# the ROCm/GPU checks, the results layout the workflow uploads, and the exact commands it runs.
# rocminfo, cargo and the conformance binary are stubs on PATH that record how they were
# called; /dev/kfd is a file (KFD_DEVICE). Prints one line per check and "N passed, M failed";
# exit status 0 iff none failed.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRIPT="$ROOT/ci/rocm-golden.sh"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
PASS=0
FAIL=0

check() { # description, then a command that must succeed
  local what="$1"
  shift
  if "$@"; then
    PASS=$((PASS + 1))
    echo "ok   $what"
  else
    FAIL=$((FAIL + 1))
    echo "FAIL $what"
  fi
}

# --- stubs ------------------------------------------------------------------------------------
STUBS="$TMP/bin"
mkdir -p "$STUBS"
cat >"$STUBS/rocminfo" <<'EOF'
#!/usr/bin/env bash
# Agents as rocminfo prints them: a CPU, then one GPU per name in $STUB_GPUS.
echo "ROCk module is loaded"
n=1
printf '*******\nAgent %d\n*******\n  Name:                    AMD EPYC 9654\n  Device Type:             CPU\n' $n
for g in ${STUB_GPUS:-}; do
  n=$((n + 1))
  printf '*******\nAgent %d\n*******\n  Name:                    %s\n  Marketing Name:          AMD Instinct\n  Device Type:             GPU\n' $n "$g"
  printf '  ISA Info:\n    ISA 1\n      Name:                    amdgcn-amd-amdhsa--%s:sramecc+:xnack-\n' "$g"
done
EOF
cat >"$STUBS/cargo" <<'EOF'
#!/usr/bin/env bash
echo "cargo $* WAVEFRONT_REQUIRE_GPU=${WAVEFRONT_REQUIRE_GPU:-unset}" >>"$STUB_LOG"
if [ "$1" = build ]; then
  mkdir -p "$CARGO_TARGET_DIR/release"
  cat >"$CARGO_TARGET_DIR/release/wavefront-conformance" <<'EOB'
#!/usr/bin/env bash
echo "conformance $* HIP_VISIBLE_DEVICES=${HIP_VISIBLE_DEVICES:-unset} WAVEFRONT_REQUIRE_GPU=${WAVEFRONT_REQUIRE_GPU:-unset}" >>"$STUB_LOG"
while [ $# -gt 0 ]; do
  case "$1" in
    --report) echo "# report" >"$2"; shift 2 ;;
    --json) echo "{}" >"$2"; shift 2 ;;
    *) shift ;;
  esac
done
exit "${STUB_CONF_RC:-0}"
EOB
  chmod +x "$CARGO_TARGET_DIR/release/wavefront-conformance"
  exit "${STUB_BUILD_RC:-0}"
fi
exit "${STUB_TEST_RC:-0}"
EOF
chmod +x "$STUBS/rocminfo" "$STUBS/cargo"
touch "$TMP/kfd"
chmod 666 "$TMP/kfd"

# Runs the script with the stubs; sets RC, OUT_TEXT. Extra environment via `env`.
run() {
  OUT_TEXT="$(env PATH="$STUBS:$PATH" STUB_LOG="$TMP/calls.log" CARGO_TARGET_DIR="$TMP/target" \
    KFD_DEVICE="${KFD:-$TMP/kfd}" ROCM_PATH="$TMP/no-rocm" "$@" 2>&1)"
  RC=$?
}
fresh() { rm -rf "$TMP/out" "$TMP/calls.log" "$TMP/target"; }
has() { grep -qF -- "$2" "$1" 2>/dev/null; }
lacks() { ! grep -qF -- "$2" "$1" 2>/dev/null; }
rc_is() { [ "$RC" = "$1" ]; }

# --- arguments --------------------------------------------------------------------------------
run "$SCRIPT" --help
check "--help exits 0 with the usage" eval 'rc_is 0 && [[ "$OUT_TEXT" == *"Usage: ci/rocm-golden.sh"* ]]'
run "$SCRIPT" --frobnicate
check "an unknown argument exits 2" rc_is 2
run "$SCRIPT" --out
check "--out without a directory exits 2" rc_is 2
for bad in 942 gfx94z GFX942 "gfx942 --dry-run" ""; do
  run "$SCRIPT" --dry-run --arch "$bad" --out "$TMP/out"
  check "--arch '$bad' exits 2" rc_is 2
done

# --- dry run: layout and the exact commands ---------------------------------------------------
fresh
run "$SCRIPT" --dry-run --arch gfx942 --out "$TMP/out"
S="$TMP/out/summary.md"
check "--dry-run exits 0" rc_is 0
check "--dry-run writes summary.md, environment.txt and logs/" \
  eval '[ -f "$S" ] && [ -f "$TMP/out/environment.txt" ] && [ -d "$TMP/out/logs" ]'
check "--dry-run plans the build" has "$S" '`cargo build --release -p wavefront-conformance`'
check "--dry-run plans the conformance run with the report paths in DIR" has "$S" \
  "\`$TMP/target/release/wavefront-conformance --backend gpu --report $TMP/out/report.md --json $TMP/out/report.json\`"
check "--dry-run plans the golden-token tests" has "$S" \
  '`cargo test --release -p wavefront-conformance --test golden_tokens -- --include-ignored`'
check "--dry-run records the required arch" has "$TMP/out/environment.txt" "required arch: gfx942"
check "--dry-run runs nothing" eval '[ ! -e "$TMP/calls.log" ]'

mkdir -p "$TMP/foreign"
echo keep >"$TMP/foreign/precious.txt"
run "$SCRIPT" --dry-run --out "$TMP/foreign"
check "a non-empty directory it did not make is refused (exit 2) and left alone" \
  eval 'rc_is 2 && [ -f "$TMP/foreign/precious.txt" ]'
echo stale >"$TMP/out/stale.txt"
run "$SCRIPT" --dry-run --out "$TMP/out"
check "its own earlier results directory is emptied and reused" \
  eval 'rc_is 0 && [ ! -e "$TMP/out/stale.txt" ] && [ -f "$TMP/out/summary.md" ]'
(cd "$TMP" && run "$SCRIPT" --dry-run --out rel-out && rc_is 0 && [ -f "$TMP/rel-out/summary.md" ])
check "a relative --out is taken from the working directory" eval '[ -f "$TMP/rel-out/summary.md" ]'

# --- the ROCm checks --------------------------------------------------------------------------
fresh
run env PATH="/usr/bin:/bin" "$SCRIPT" --out "$TMP/out"
check "no rocminfo: exit 3, nothing built, the verdict written" \
  eval 'rc_is 3 && [ ! -e "$TMP/calls.log" ] && has "$TMP/out/summary.md" "no usable ROCm runtime"'
fresh
KFD="$TMP/no-such-kfd" run env STUB_GPUS=gfx942 "$SCRIPT" --out "$TMP/out"
check "no /dev/kfd: exit 3" eval 'rc_is 3 && has "$TMP/out/summary.md" "does not exist"'
if [ "$(id -u)" != 0 ]; then
  chmod 444 "$TMP/kfd"
  run env STUB_GPUS=gfx942 "$SCRIPT" --out "$TMP/out"
  check "/dev/kfd not writable: exit 3 naming the groups" \
    eval 'rc_is 3 && has "$TMP/out/summary.md" "render and video"'
  chmod 666 "$TMP/kfd"
else
  echo "skip /dev/kfd permission check (root can always open it)"
fi
fresh
run env STUB_GPUS="" "$SCRIPT" --out "$TMP/out"
check "rocminfo with no GPU agent: exit 3" eval 'rc_is 3 && has "$TMP/out/summary.md" "no GPU agent"'
fresh
run env STUB_GPUS="gfx942" "$SCRIPT" --arch gfx1100 --out "$TMP/out"
check "--arch not present: exit 3 listing the GPUs" \
  eval 'rc_is 3 && has "$TMP/out/summary.md" "no gfx1100 GPU (rocminfo lists: gfx942)"'

# --- full runs with stubs ---------------------------------------------------------------------
fresh
run env STUB_GPUS="gfx942 gfx90a" "$SCRIPT" --arch gfx90a --out "$TMP/out"
L="$TMP/calls.log"
check "a passing run exits 0" rc_is 0
check "it builds with the exact command" has "$L" "cargo build --release -p wavefront-conformance"
check "it runs conformance on the chosen GPU with the report paths" has "$L" \
  "conformance --backend gpu --report $TMP/out/report.md --json $TMP/out/report.json HIP_VISIBLE_DEVICES=1 WAVEFRONT_REQUIRE_GPU=1"
check "it runs the golden-token tests with the exact command, a skip being a failure" has "$L" \
  "cargo test --release -p wavefront-conformance --test golden_tokens -- --include-ignored WAVEFRONT_REQUIRE_GPU=1"
for f in summary.md environment.txt rocminfo.txt report.md report.json logs/build.log \
  logs/conformance.log logs/golden-tokens.log; do
  check "the results hold $f" test -f "$TMP/out/$f"
done
check "summary.md says passed" has "$TMP/out/summary.md" "Verdict: passed"
check "environment.txt names the GPU" has "$TMP/out/environment.txt" "GPU 1 (gfx90a)"

fresh
run env STUB_GPUS="gfx942" "$SCRIPT" --out "$TMP/out"
check "without --arch the first GPU is used" has "$TMP/calls.log" "HIP_VISIBLE_DEVICES=0"

fresh
run env STUB_GPUS=gfx942 STUB_CONF_RC=1 "$SCRIPT" --out "$TMP/out"
check "a conformance failure exits 1" rc_is 1
check "... and the golden tokens still run" has "$TMP/calls.log" "cargo test --release"
check "... and the summary says FAILED with the step's exit" \
  eval 'has "$TMP/out/summary.md" "Verdict: FAILED" && has "$TMP/out/summary.md" "| 1 |"'

fresh
run env STUB_GPUS=gfx942 STUB_TEST_RC=101 "$SCRIPT" --out "$TMP/out"
check "a golden-token failure exits 1" eval 'rc_is 1 && has "$TMP/out/summary.md" "| 101 |"'

fresh
run env STUB_GPUS=gfx942 STUB_BUILD_RC=101 "$SCRIPT" --out "$TMP/out"
check "a build failure exits 1 and runs nothing else" \
  eval 'rc_is 1 && lacks "$TMP/calls.log" "conformance --backend" && lacks "$TMP/calls.log" "cargo test"'
check "... with the build log kept" test -f "$TMP/out/logs/build.log"

echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
