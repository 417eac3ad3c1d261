set -u
export WAVEFRONT_REQUIRE_GPU=1
O=${OUT:-/tmp/wavefront-out}
LIMIT=${LIMIT:-560}
[ -e /work/main ] || { mkdir -p /work && ln -sfn "$(pwd)" /work/main; }
t0=$SECONDS
room() { [ $((LIMIT - (SECONDS - t0))) -ge "$1" ]; }  # at least $1 s left of the call
export ENV_t512=WAVEFRONT_QGEMV_THREADS=512 ENV_t256=WAVEFRONT_QGEMV_THREADS=256 ENV_q8=WAVEFRONT_QGEMV_Q8=1
C=$O/check; mkdir -p $C
pack() { tar -C $O -czf $O/check.tar.gz check; }
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv,noheader | tee $C/gpu.txt
MODE=gemv QUANTS="q4_0 q4_k" VARS="new t512 t256 base k-diet k-scale" bash ci/device-ab.sh 2>&1 | tail -n 24
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
fixtures() { # name env...: model-level checks on the fixtures and quantized fixtures, both waves
  local n=$1 s=$SECONDS; shift
  env "$@" timeout 150 .device/bin/wavefront-conformance --backend gpu --wave all --no-coverage --op sample \
    --fixtures fixtures/models --model fixtures/gguf/model.f32.gguf --model fixtures/gguf/tiny_llama \
    $(for f in fixtures/quant_models/*.gguf; do echo --model "$f"; done) --report $C/$n.md > $C/$n.log 2>&1
  echo "fixtures $n rc=$? $((SECONDS-s)) s: $(tail -n 1 $C/$n.log)"; grep -E "FAIL|✗" $C/$n.log | head -5
  pack
}
room 100 && fixtures fixtures-default WAVEFRONT_X=0
room 120 && MODE=tg SHAPES="llama-3.1-8b llama-3.2-1b" QUANTS="q4_k q4_0" VARS="new t512 base" bash ci/device-ab.sh
[ -f "$O/ab-tg.tar.gz" ] && mv "$O/ab-tg.tar.gz" "$O/ab-tg1.tar.gz"; rm -rf "$O/ab-tg"
echo "tg done $((SECONDS-t0)) s"
room 100 && ops rt-t512-q8a1 - WAVEFRONT_QGEMV_THREADS=512 WAVEFRONT_QGEMV_Q8=1
room 100 && ops rt-t256-q8a0 - WAVEFRONT_QGEMV_THREADS=256 WAVEFRONT_QGEMV_Q8=0
room 100 && ops rt-default - WAVEFRONT_X=0
room 100 && ops kscale-q8a1 .device/ops/k-scale WAVEFRONT_QGEMV_Q8=1
room 100 && ops kdiet-q8a1 .device/ops/k-diet WAVEFRONT_QGEMV_Q8=1
room 60 && MODE=gemv QUANTS="q4_1" VARS="new q8" bash ci/device-ab.sh 2>&1 | tail -n 4
rm -rf "$O/ab-gemv" $C
echo "all done $((SECONDS-t0)) s"
