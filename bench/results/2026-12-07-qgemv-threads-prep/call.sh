set -u
export WAVEFRONT_REQUIRE_GPU=1
O=${OUT:-/tmp/wavefront-out}
LIMIT=${LIMIT:-530}
[ -e /work/rt ] || { mkdir -p /work && ln -sfn "$(pwd)" /work/rt; }
t0=$SECONDS
room() { [ $((LIMIT - (SECONDS - t0))) -ge "$1" ]; }  # at least $1 s left of the call
export ENV_t512=WAVEFRONT_QGEMV_THREADS=512 ENV_t256=WAVEFRONT_QGEMV_THREADS=256 ENV_q8=WAVEFRONT_QGEMV_Q8=1
C=$O/check; mkdir -p $C
pack() { tar -C $O -czf $O/check.tar.gz check; }
MODE=gemv QUANTS="q4_0 q4_k" VARS="new t512 base k-diet" bash ci/device-ab.sh 2>&1 | tail -n 20
echo "gemv done $((SECONDS-t0)) s"
mv "$O/ab-gemv.tar.gz" "$O/ab-gemv1.tar.gz"; rm -rf "$O/ab-gemv"
GEMV_OPS="--op linear --op linear_stacked --op norm_linear_stacked --op gate_up_swiglu --op norm_gate_up_swiglu --op linear_residual"
ops() { # name kernels-dir|- env... : GEMV op cases both waves, no coverage
  local n=$1 k=$2 s=$SECONDS; shift 2
  local ka=(); [ "$k" = - ] || ka=(--kernels "$k")
  env "$@" timeout 150 .device/bin/wavefront-conformance --backend gpu --wave all --no-coverage "${ka[@]}" $GEMV_OPS --report $C/$n.md > $C/$n.log 2>&1
  echo "ops $n rc=$? $((SECONDS-s)) s: $(tail -n 1 $C/$n.log)"; grep -E "FAIL|✗" $C/$n.log | head -5
  pack
}
room 160 && ops rt-t512-q8a1 - WAVEFRONT_QGEMV_THREADS=512 WAVEFRONT_QGEMV_Q8=1
room 160 && ops kdiet-q8a1 .device/ops/k-diet WAVEFRONT_QGEMV_Q8=1
room 120 && MODE=tg SHAPES="llama-3.1-8b llama-3.2-1b" QUANTS="q4_k" VARS="new t512 k-diet" bash ci/device-ab.sh
[ -f "$O/ab-tg.tar.gz" ] && mv "$O/ab-tg.tar.gz" "$O/ab-tg1.tar.gz"; rm -rf "$O/ab-tg"
echo "tg done $((SECONDS-t0)) s"
room 100 && ops rt-t256-q8a0 - WAVEFRONT_QGEMV_THREADS=256 WAVEFRONT_QGEMV_Q8=0
room 100 && ops rt-default - WAVEFRONT_X=0
room 60 && MODE=gemv QUANTS="q4_1" VARS="new q8" bash ci/device-ab.sh 2>&1 | tail -n 4
rm -rf "$O/ab-gemv" $C
echo "all done $((SECONDS-t0)) s"
