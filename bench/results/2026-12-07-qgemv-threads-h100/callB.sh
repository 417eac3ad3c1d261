set -u
export WAVEFRONT_REQUIRE_GPU=1 INSTA_WORKSPACE_ROOT=/work/main
O=${OUT:-/tmp/wavefront-out}
C=$O/b; mkdir -p $C
[ "$(pwd)" = /work/main ] || [ -e /work/main ] || { mkdir -p /work && ln -sfn "$(pwd)" /work/main; }
t0=$SECONDS
model=$HOME/.cache/wavefront/models/SmolLM2-135M-Instruct.Q4_1.gguf
mkdir -p "$(dirname "$model")"
cat .device/m1/smolpart.00 .device/m2/smolpart.01 > "$model"
echo "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  $model" | sha256sum -c - || exit 3
rm -f conformance/tests/snapshots/*.snap.new
.device/bin/golden_tokens gpu_greedy_streams_match_transformers_on_smollm2 --test-threads=1 > $C/golden.log 2>&1
echo "golden_tokens smollm2 gpu (default forms) rc=$?: $(grep -E '^test result' $C/golden.log)"
ls conformance/tests/snapshots/*.snap.new 2>/dev/null && cp conformance/tests/snapshots/*.snap.new $C/
for r in 1 2 3; do
  for v in default f32; do
    e=WAVEFRONT_X=0; [ $v = f32 ] && e=WAVEFRONT_QGEMV_Q8=0
    env $e timeout 60 .device/bin/wavefront bench --backend gpu --model "$model" --reps 3 --depth 0 --pp 512 --tg 128 \
      --markdown $C/bench-$v-$r.md > $C/bench-$v-$r.log 2>&1
    echo "$v $r rc=$? $(grep -E '^\| (tg|pp)' $C/bench-$v-$r.md | awk -F'|' '{printf "%s=%s %s ", $2, $3, $8}')"
  done
done
WORK=/tmp/wavefront-gpu-peer WF=.device/bin/wavefront timeout 300 bash bench/gpu-peer.sh bench "$model" 3 > $C/peer.md 2> $C/peer.err
echo "peer rc=$?"; cat $C/peer.md
tar -C $O -czf $O/b.tar.gz b
echo "all done $((SECONDS-t0)) s"
