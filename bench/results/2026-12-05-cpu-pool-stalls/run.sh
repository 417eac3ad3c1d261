#!/usr/bin/env bash
# The CPU pool with and without stall adaptation (WAVEFRONT_POOL_ADAPT=0), beside 0, 1 and 2
# busy-looping shell processes on this 2-core machine; alternating rounds; prints one line a run:
# hogs dots mode tg64_tok/s. Usage: run.sh [ROUNDS] (default 3), from the repository root.
set -u
rounds=${1:-3}
wf=./target/release/wavefront
for r in $(seq 1 "$rounds"); do
  for h in 0 1 2; do
    for dots in q8 f32; do
      for mode in adapt off; do
        pids=""
        for _ in $(seq 1 "$h"); do (while :; do :; done) & pids="$pids $!"; done
        if [ "$mode" = off ]; then export WAVEFRONT_POOL_ADAPT=0; else unset WAVEFRONT_POOL_ADAPT; fi
        v=$("$wf" bench --backend cpu --pp 16 --tg 64 --reps 3 --cpu-dots "$dots" 2>&1 |
          awk -F'|' '/^\| tg64 /{gsub(/ /,"",$3); print $3}')
        for p in $pids; do kill "$p"; done
        wait 2>/dev/null
        echo "$h $dots $mode ${v:-error}"
      done
    done
  done
done
