set -u
export WAVEFRONT_REQUIRE_GPU=1
O=${OUT:-/tmp/wavefront-out}
C=$O/a; mkdir -p $C
[ "$(pwd)" = /work/main ] || [ -e /work/main ] || { mkdir -p /work && ln -sfn "$(pwd)" /work/main; }
t0=$SECONDS
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv,noheader | tee $C/gpu.txt
cat .device/ops/commit
mkdir -p .device/bin; for f in .device/ops/*.xz; do b=$(basename $f .xz); [ -x .device/bin/$b ] || { xz -dc $f > .device/bin/$b && chmod +x .device/bin/$b; }; done
( WORK=/tmp/wavefront-gpu-peer bash bench/gpu-peer.sh build .device/ops/llama-src.tar.xz > $C/peer-build.log 2>&1; echo "peer build rc=$? $((SECONDS-t0)) s" >> $C/peer-build.log ) &
GEMV_OPS="--op linear --op linear_stacked --op norm_linear_stacked --op gate_up_swiglu --op norm_gate_up_swiglu --op linear_residual"
s=$SECONDS
timeout 200 .device/bin/wavefront-conformance --backend gpu --wave all --no-coverage --op sample \
  --fixtures fixtures/models --model fixtures/gguf/model.f32.gguf --model fixtures/gguf/tiny_llama \
  $(for f in fixtures/quant_models/*.gguf; do echo --model "$f"; done) --report $C/fixtures-default.md > $C/fixtures-default.log 2>&1
echo "fixtures default rc=$? $((SECONDS-s)) s: $(tail -n 1 $C/fixtures-default.log)"; grep -E "FAIL|✗" $C/fixtures-default.log | head -5
for q8 in 0 1; do
  s=$SECONDS
  WAVEFRONT_QGEMV_Q8=$q8 timeout 100 .device/bin/wavefront-conformance --backend gpu --wave all --no-coverage $GEMV_OPS --report $C/ops-q8a$q8.md > $C/ops-q8a$q8.log 2>&1
  echo "ops q8a$q8 rc=$? $((SECONDS-s)) s: $(tail -n 1 $C/ops-q8a$q8.log)"; grep -E "FAIL|✗" $C/ops-q8a$q8.log | head -5
done
wait
MODE=tg SHAPES="llama-3.1-8b" QUANTS="q8_0 q4_0" VARS="new" bash ci/device-ab.sh
tail -n 3 $C/peer-build.log
ls -la /tmp/wavefront-gpu-peer/build/bin/llama-bench
tar -C $O -czf $O/a.tar.gz a && rm -rf $C
echo "all done $((SECONDS-t0)) s"
