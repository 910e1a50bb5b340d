#!/usr/bin/env bash
# qeval quantize end to end on a small budget (randomly initialised resnet8, 256
# training images, 64 test images): PTQ + one QAT epoch for bm1690 with every
# output file, the deploy-aligned forward equal to the simulator, config errors
# (exit 2, one line naming file, key and allowed values), and the ONNX QDQ
# export run by onnxruntime-node and the simulator (skipped without node).
set -u
QEVAL=$1
WORK=$2
rm -rf "$WORK" && mkdir -p "$WORK"
source "$(dirname "$0")/../../scripts/testlib.sh"
HERE=$(cd "$(dirname "$0")" && pwd)

"$QEVAL" zoo build resnet8 --out "$WORK/r8.qmodel" --seed 3 >/dev/null
check "random resnet8 built" test -f "$WORK/r8.qmodel"
cat >"$WORK/bm.yaml" <<'CFG'
chip: bm1690
quant: {observer: percentile, percentile: 99.99}
qat: {epochs: 1, lr: 0.01, batch: 64, calib_images: 128}
CFG
Q=(quantize --model resnet8 --weights "$WORK/r8.qmodel" --train-limit 256 --eval-limit 64 --threads 2)
"$QEVAL" "${Q[@]}" --cfg "$WORK/bm.yaml" --out "$WORK/bm" >"$WORK/bm.out" 2>"$WORK/bm.err"
check "quantize exits 0" test $? -eq 0
for f in resnet8.qmodel resnet8_ptq.qmodel resnet8_cali_table resnet8_qdq.onnx summary.json \
         checkpoints/resnet8.qat.epoch001.qmodel; do
  check "wrote $f" test -s "$WORK/bm/$f"
done
check "table has fp32, PTQ, QAT columns" grep -q "| resnet8 | bm1690 |" "$WORK/bm.out"
check "progress names the stages" bash -c "grep -q 'calibrate: 128 images' '$WORK/bm.err' && grep -q 'epoch 1/1 step 4/4' '$WORK/bm.err'"
check "deploy-aligned == simulator" grep -q '"aligned_mismatched": 0,' "$WORK/bm/summary.json"
check "aligned check compared activations" bash -c "grep -q '\"aligned_elements\": [1-9]' '$WORK/bm/summary.json'"
check "cali table header" grep -qx "# work_mode:QAT_all_int8" "$WORK/bm/resnet8_cali_table"
check "cali table weight scales" grep -q "^layer3.conv2_weight 64 " "$WORK/bm/resnet8_cali_table"
# The exported qmodel runs on its own in `qeval sim` with any batch size.
/usr/bin/python3 -c "import numpy as np; np.save('$WORK/in.npy', np.zeros((3,1,32,32), np.float32))"
expect_ok "qeval sim runs the exported qmodel (batch 3)" "$QEVAL" sim "$WORK/bm/resnet8.qmodel" \
  --input input="$WORK/in.npy" --output-dir "$WORK/simout"

# Config errors: exit 2, one line naming file:line, key and allowed values.
printf 'chip: bm1690\nquant:\n  weight_bits: 3\n' >"$WORK/bad_bits.yaml"
expect_error_fixed "3-bit weights" "bad_bits.yaml:3: quant.weight_bits: 3 (bm1690 allows 4, 8)" \
  "$QEVAL" "${Q[@]}" --cfg "$WORK/bad_bits.yaml" --out "$WORK/e1"
printf 'quant:\n  observer: kl\n' >"$WORK/bad_obs.yaml"
expect_error "unknown observer" "bad_obs.yaml:2: quant: observer = 'kl': allowed minmax, ema_minmax, percentile, mse" \
  "$QEVAL" "${Q[@]}" --cfg "$WORK/bad_obs.yaml" --out "$WORK/e2"
printf 'quant:\n  float_layers: [fc9]\n' >"$WORK/bad_layer.yaml"
expect_error_fixed "unknown layer" "quant.float_layers: 'fc9' is not a layer of resnet8" \
  "$QEVAL" "${Q[@]}" --cfg "$WORK/bad_layer.yaml" --out "$WORK/e3"
printf 'qat:\n  epochz: 2\n' >"$WORK/bad_key.yaml"
expect_error_fixed "unknown qat key" "bad_key.yaml:2: unknown key 'qat.epochz'" \
  "$QEVAL" "${Q[@]}" --cfg "$WORK/bad_key.yaml" --out "$WORK/e4"
# --device (docs/cuda.md): checked before any training.
expect_error_fixed "a malformed device" "device 'tpu': expected cpu, cuda or cuda:N" \
  "$QEVAL" "${Q[@]}" --out "$WORK/e6" --device tpu
if ! command -v nvidia-smi >/dev/null; then  # Debian's CPU LibTorch: a CUDA device says how to get one
  expect_error_fixed "cuda on a CPU LibTorch" "build with -DQEVAL_CUDA=ON against a CUDA LibTorch, docs/cuda.md" \
    "$QEVAL" "${Q[@]}" --out "$WORK/e7" --device cuda
fi
printf 'chip: bm1690\nquant:\n  int16_layers: [stem.0]\n  float_layers: [fc]\n' >"$WORK/ok16.yaml"
expect_ok "int16 + hybrid float layer accepted by bm1690" "$QEVAL" "${Q[@]}" --cfg "$WORK/ok16.yaml" --ptq --out "$WORK/i16"
check "report marks the float layer" grep -q "hybrid: runs in float on the chip: fc" "$WORK/out"
check "summary lists it" grep -q '"float_layers": \["fc"\]' "$WORK/i16/summary.json"
check "16-bit activations reported" grep -q '"int16_activations": \["stem.1", "stem.1.relu"\]' "$WORK/i16/summary.json"
check "hybrid: aligned == simulator" grep -q '"aligned_mismatched": 0,' "$WORK/i16/summary.json"
check "hybrid cali table is mixed precision" grep -qx "# work_mode:QAT_mix_prec" "$WORK/i16/resnet8_cali_table"
printf 'chip: onnx-qdq\nquant:\n  int16_layers: [stem.0]\n' >"$WORK/bad16.yaml"
expect_error "int16 layer refused by onnx-qdq" "quant.int16_layers: onnx-qdq has no 16-bit activations" \
  "$QEVAL" "${Q[@]}" --cfg "$WORK/bad16.yaml" --ptq --out "$WORK/e5"

# ONNX QDQ: onnxruntime vs the simulator. 7-bit weights cannot saturate
# onnxruntime's AVX2 u8 x s8 kernels, so every logit must be bit-identical.
printf 'chip: onnx-qdq\nquant:\n  weight_bits: 7\n' >"$WORK/qdq.yaml"
expect_ok "onnx-qdq PTQ" "$QEVAL" "${Q[@]}" --cfg "$WORK/qdq.yaml" --ptq --no-compare --out "$WORK/qdq"
/usr/bin/python3 "$HERE/qdq_referee.py" --qeval "$QEVAL" --onnx "$WORK/qdq/resnet8_qdq.onnx" \
  --workdir "$WORK/ref" --limit 200 --min-agreement 1.0 >"$WORK/ref.out" 2>&1
rc=$?
if [ $rc -eq 77 ]; then
  echo "skip: onnxruntime-node not installed (simulator/tests/referee: npm install --ignore-scripts)"
else
  check "onnxruntime and simulator agree on every image: $(tail -1 "$WORK/ref.out")" test $rc -eq 0
  check "every logit bit-identical" grep -q "bit-identical logits 2000/2000" "$WORK/ref.out"
fi
finish
