#!/usr/bin/env bash
# Several stages of ci/device-session.sh in one device call, each stage's results in an archive
# of its own, so the same stage can run twice (an A/B, then a check) and one call still returns
# at most one file per stage (the device tool returns at most 8).
#
# Usage (from the repository root, on the device machine):
#   bash ci/device-chain.sh 'TAG STAGE [VAR=VALUE ...]' ...
# Each argument is one stage: a tag naming its archive ($OUT/TAG.tar.gz), the stage, then the
# stage's variables as shell assignments (quote values with spaces:
#   'attn variants VARIANTS="embedded .device/ops/k-a" ATTN_BENCH=1 SHAPES='
#   'check variants VARIANTS=.device/ops/k-a PART=check ATTN=1').
# The archive holds the stage's results directory, named TAG in it (so the archives of two stages
# of the same name unpack side by side), with the stage's output (chain.log) in it.
# A stage that the call's time limit stops leaves the archive its last step wrote,
# $OUT/STAGE.tar.gz (without chain.log). Prints each stage's last TAIL (30) lines.
set -u
D=${OUT:-/tmp/wavefront-out}
mkdir -p "$D"
for spec in "$@"; do
  read -r tag stage vars <<<"$spec"
  if [ -z "${stage:-}" ]; then
    echo "device-chain: '$spec' names no stage (want 'TAG STAGE [VAR=VALUE ...]')" >&2
    exit 2
  fi
  res=/tmp/wavefront-results/$stage
  rm -rf "$res" "$D/$stage.tar.gz"
  mkdir -p "$res"
  # shellcheck disable=SC2086  # the assignments are the caller's shell words
  eval "env ${vars:-} bash ci/device-session.sh $stage" >"$res/chain.log.tmp" 2>&1
  echo "rc=$?" >>"$res/chain.log.tmp"
  mv "$res/chain.log.tmp" "$res/chain.log"
  # (the stage's own archive goes, unless the tag is the stage's name: then it is this one)
  tar -C /tmp/wavefront-results --transform "s,^$stage,$tag," -czf "$D/$tag.tar.gz" "$stage" &&
    if [ "$tag" != "$stage" ]; then rm -f "$D/$stage.tar.gz"; fi
  echo "=== $tag ($stage)"
  tail -n "${TAIL:-30}" "$res/chain.log"
done
