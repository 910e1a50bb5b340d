#!/usr/bin/env bash
# qeval train / zoo end to end on a small budget: train (cache miss), train again
# (cache hit), corrupt entry rebuilt, zoo build + eval, and errors (exit 2, one
# line naming the problem).
set -u
QEVAL=$1
WORK=$2
rm -rf "$WORK" && mkdir -p "$WORK"
source "$(dirname "$0")/../../scripts/testlib.sh"
export QEVAL_CACHE="$WORK/cache"



TRAIN=(train lenet5 --epochs 1 --train-limit 512 --eval-limit 300 --threads 1)
"$QEVAL" "${TRAIN[@]}" --out "$WORK/lenet5.qmodel" >"$WORK/first" 2>"$WORK/first.err"
check "first train exits 0" test $? -eq 0
check "first train is cached" grep -q "cached at $QEVAL_CACHE/fp32/lenet5-" "$WORK/first"
check "progress line printed" grep -q "epoch 1/1 step 4/4 loss" "$WORK/first.err"
check "no checkpoint folder left" bash -c "! ls -d $QEVAL_CACHE/fp32/*.ckpt 2>/dev/null"
"$QEVAL" "${TRAIN[@]}" >"$WORK/second" 2>&1
check "second train is a cache hit" grep -q "cache hit" "$WORK/second"
top1_a=$(grep -o 'top-1 [0-9.]*%' "$WORK/first")
top1_b=$(grep -o 'top-1 [0-9.]*%' "$WORK/second")
check "hit reports the trained top-1 ($top1_a)" test "$top1_a" = "$top1_b"
entry=$(ls "$QEVAL_CACHE"/fp32/lenet5-*.qmodel)
printf 'garbage' | dd of="$entry" bs=1 seek=200 conv=notrunc status=none
"$QEVAL" "${TRAIN[@]}" >"$WORK/third" 2>"$WORK/third.err"
check "corrupt entry detected" grep -q "rebuilding" "$WORK/third.err"
check "corrupt entry retrained to the same score" bash -c "grep -q '$top1_a' '$WORK/third'"
"$QEVAL" zoo eval lenet5 --weights "$WORK/lenet5.qmodel" --eval-limit 300 --threads 1 >"$WORK/eval" 2>&1
check "zoo eval of the --out file gives the same top-1" grep -q "$top1_a" "$WORK/eval"
"$QEVAL" zoo build det_tiny --out "$WORK/det.qmodel" >/dev/null 2>&1
check "zoo build" test -s "$WORK/det.qmodel"

expect_error "unknown model" "unknown zoo model 'resnet9'" "$QEVAL" train resnet9
head -c 300 "$WORK/lenet5.qmodel" >"$WORK/truncated.qmodel"
expect_error "truncated weights" "truncated.qmodel" "$QEVAL" zoo eval lenet5 --weights "$WORK/truncated.qmodel"
expect_error "weights of another model" "resnet8\|shape\|input" "$QEVAL" zoo eval resnet8 --weights "$WORK/lenet5.qmodel" --eval-limit 10
QEVAL_FASHION_MNIST=$WORK/nowhere expect_error "missing dataset folder" "$WORK/nowhere" "$QEVAL" train resnet8 --cache bypass

echo "$fails failure(s)"
test "$fails" -eq 0
