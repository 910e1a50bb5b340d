#!/usr/bin/env bash
# Data-parallel training (issue 10): 2 local ranks (torchrun's environment,
# c10d + Gloo over TCP on localhost) reach the weights of 1 process with the
# same global batch, for fp32 training (SyncBN over the ranks) and for QAT
# (observers calibrated alike, rank 0's state broadcast, BN statistics synced,
# gradients all-reduced). A run with another batch size must NOT match (the
# tolerance is meaningful). Prints the img/s of 1 process x 2 threads and
# 2 ranks x 1 thread.
# Usage: ddp_test.sh QEVAL WORKDIR
set -u
QEVAL=$(readlink -f "$1")
WORK=$2
rm -rf "$WORK" && mkdir -p "$WORK"
source "$(dirname "$0")/../../scripts/testlib.sh"
export QEVAL_CACHE=${QEVAL_CACHE:-$WORK/cache}
# Tolerances: largest |difference| / largest |value| of any tensor. Training
# from random init amplifies float-reduction differences quickly (BN biases
# near 0): after 4 steps one process at 1 vs 2 LibTorch threads already
# differs by 0.008, so the fp32 check runs 4 steps with tolerance 0.02 (batch
# 32 instead of 64 gives 0.78). QAT (8 steps from those weights, BN batch
# statistics for 4): 1 vs 2 threads differ by 0.034, so 0.1 (batch 64 instead
# of 128 must exceed it).
TOL_FP32=0.02
TOL_QAT=0.1
TRAIN=(train resnet8 --epochs 1 --train-limit 256 --lr 0.01 --eval-limit 200 --cache bypass --seed 5)

ranks() {  # ranks N LOG cmd...: N local ranks of cmd; fails if any rank fails
  local n=$1 log=$2
  shift 2
  local port=$((30000 + RANDOM % 20000)) pids=() rc=0
  for r in $(seq 0 $((n - 1))); do
    RANK=$r WORLD_SIZE=$n MASTER_ADDR=127.0.0.1 MASTER_PORT=$port "$@" >"$log.$r" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  return $rc
}
ips() { grep -o '[0-9]* img/s' "$1" | tail -1; }

# --- fp32 training ----------------------------------------------------------
expect_ok "1 process, batch 64" "$QEVAL" "${TRAIN[@]}" --batch 64 --threads 2 --out "$WORK/w1.qmodel"
cp "$WORK/out" "$WORK/w1.log"
check "2 ranks, global batch 64 (${TRAIN[*]})" ranks 2 "$WORK/w2.log" "$QEVAL" "${TRAIN[@]}" --batch 64 --threads 1 \
  --out "$WORK/w2.qmodel"
check "rank 1 wrote nothing" test ! -s "$WORK/w2.log.1"
expect_ok "fp32: 2 ranks == 1 process (tol $TOL_FP32)" "$QEVAL" zoo diff "$WORK/w1.qmodel" "$WORK/w2.qmodel" \
  --tol $TOL_FP32
echo "info: $(cat "$WORK/out")"
"$QEVAL" "${TRAIN[@]}" --batch 32 --threads 2 --out "$WORK/w32.qmodel" >/dev/null 2>&1
"$QEVAL" zoo diff "$WORK/w1.qmodel" "$WORK/w32.qmodel" --tol $TOL_FP32 >"$WORK/neg.out" 2>&1
rc=$?
check "control: batch 32 differs beyond the tolerance ($(cat "$WORK/neg.out"))" test $rc -eq 1
echo "info: fp32 training speed: 1 process x 2 threads $(ips "$WORK/w1.log"); 2 ranks x 1 thread $(ips "$WORK/w2.log.0")"

# --- QAT --------------------------------------------------------------------
# BN statistics from the batch for the first half of the epoch (synchronised
# over the ranks), frozen for the second.
for b in 128 64; do
  printf 'chip: bm1690\nqat: {epochs: 1, lr: 0.002, batch: %s, freeze_bn_epoch: 0.5}\n' $b >"$WORK/qat$b.yaml"
done
QAT=(quantize --model resnet8 --weights "$WORK/w1.qmodel" --train-limit 1024 --eval-limit 200
  --no-compare --no-ptq-eval)
expect_ok "QAT, 1 process" "$QEVAL" "${QAT[@]}" --cfg "$WORK/qat128.yaml" --threads 2 --out "$WORK/q1"
check "QAT, 2 ranks" ranks 2 "$WORK/q2.log" "$QEVAL" "${QAT[@]}" --cfg "$WORK/qat128.yaml" --threads 1 --out "$WORK/q2"
ck=checkpoints/resnet8.qat.epoch001.qmodel
expect_ok "QAT: 2 ranks == 1 process, weights and scales (tol $TOL_QAT)" \
  "$QEVAL" zoo diff "$WORK/q1/$ck" "$WORK/q2/$ck" --tol $TOL_QAT
echo "info: $(cat "$WORK/out")"
"$QEVAL" "${QAT[@]}" --cfg "$WORK/qat64.yaml" --threads 2 --out "$WORK/q64" >/dev/null 2>&1
"$QEVAL" zoo diff "$WORK/q1/$ck" "$WORK/q64/$ck" --tol $TOL_QAT >"$WORK/neg.out" 2>&1
rc=$?
check "control: QAT batch 64 differs beyond the tolerance ($(cat "$WORK/neg.out"))" test $rc -eq 1
expect_ok "QAT: deployed programs compared" "$QEVAL" zoo diff "$WORK/q1/resnet8.qmodel" "$WORK/q2/resnet8.qmodel" \
  --tol 1
echo "info: deployed int8 constants: $(cat "$WORK/out")"
q1s=$(/usr/bin/python3 -c "import json;d=json.load(open('$WORK/q1/summary.json'));print(d['qat_seconds'])")
q2s=$(/usr/bin/python3 -c "import json;d=json.load(open('$WORK/q2/summary.json'));print(d['qat_seconds'])")
echo "info: QAT epoch (1024 images): 1 process x 2 threads ${q1s} s; 2 ranks x 1 thread ${q2s} s"
finish
