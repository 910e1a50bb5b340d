#!/usr/bin/env bash
# Determinism of stored results (issue 9): the same sweep from cold caches
# (fp32 baseline trained, QAT run, simulator scored) stores identical metric
# values under
#   --pool_size 1 / 2 / 4, --threads (simulator) 1 / 2, and a second run of the
#   same settings (same seeds);
# and, at --torch_threads 2, two cold runs agree with each other. resnet8 has a
# strided 1x1 shortcut convolution, the op whose oneDNN weight gradient depends
# on the LibTorch thread count; how many values --torch_threads 2 changes
# against 1 is printed, not checked (it is LibTorch's business).
# Usage: determinism_test.sh RUN_EVAL WORKDIR        (ctest label: slow)
set -u
RUN_EVAL=$1
WORK=$2
rm -rf "$WORK" && mkdir -p "$WORK"
source "$(dirname "$0")/../../scripts/testlib.sh"

cat >"$WORK/resnet8_qat.yaml" <<'YAML'
model: resnet8
name: resnet8_qat
qat: {epochs: 1, lr: 0.002, schedule: cosine}
metric_tolerance: {top1_drop: 10.0}
YAML
cat >"$WORK/lenet5_ptq.yaml" <<'YAML'
model: lenet5
name: lenet5_ptq
metric_tolerance: {top1_drop: 10.0}
YAML
cat >"$WORK/sweep.yaml" <<'YAML'
chips: [bm1690, uint8-asym]
fast_test_count: 60
models: [resnet8_qat.yaml, lenet5_ptq.yaml]
YAML

sweep() {  # sweep NAME run_eval-flags...: a cold-cache sweep; its metrics in $WORK/NAME.metrics
  local name=$1
  shift
  local t0=$SECONDS
  QEVAL_CACHE="$WORK/cache-$name" "$RUN_EVAL" --fast_test "$@" --db "$WORK/$name.db" --out_dir "$WORK/runs-$name" \
    "$WORK/sweep.yaml" >"$WORK/$name.out" 2>"$WORK/$name.err"
  local rc=$?
  check "$name ($*): exit 0 (rc=$rc, $((SECONDS - t0)) s)" test $rc -eq 0
  db_metrics "$WORK/$name.db" >"$WORK/$name.metrics"
}
same() {  # same A B: identical stored values
  check "$1 and $2 store identical metric values ($(wc -l <"$WORK/$1.metrics") values)" \
    cmp -s "$WORK/$1.metrics" "$WORK/$2.metrics"
}

sweep p1t1 --pool_size 1 --threads 1
check "4 jobs stored" test "$(cut -d' ' -f1 "$WORK/p1t1.metrics" | sort -u | wc -l)" -eq 4
sweep p2t2 --pool_size 2 --threads 2
sweep p4t1 --pool_size 4 --threads 1
sweep p2t1 --pool_size 2 --threads 1
same p1t1 p2t2
same p1t1 p4t1
same p1t1 p2t1
sweep tt2a --pool_size 2 --torch_threads 2
sweep tt2b --pool_size 2 --torch_threads 2 --threads 2
same tt2a tt2b
echo "info: --torch_threads 2 vs 1: $(diff "$WORK/p1t1.metrics" "$WORK/tt2a.metrics" | grep -c '^<') of" \
  "$(wc -l <"$WORK/p1t1.metrics") stored values differ"
finish
