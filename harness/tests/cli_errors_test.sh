#!/usr/bin/env bash
# qeval sim on bad input: exit code 2 and one line on stderr that names the
# file and the problem; never a crash (exit code > 128) or a stack trace.
set -u
QEVAL=$1
WORK=$2
rm -rf "$WORK" && mkdir -p "$WORK"
source "$(dirname "$0")/../../scripts/testlib.sh"
MODEL=regression/examples/resblock_u8.onnx
INPUT=regression/examples/resblock_u8.x.npy


head -c 100 "$MODEL" >"$WORK/truncated.onnx"
echo "not a model" >"$WORK/text.onnx"
head -c 90 "$INPUT" >"$WORK/short.npy"
/usr/bin/python3 - "$WORK" <<'PY'
import numpy as np, sys
np.save(sys.argv[1] + "/wrong_shape.npy", np.zeros((1, 3, 5, 5), np.float32))
np.save(sys.argv[1] + "/wrong_dtype.npy", np.zeros((2, 3, 12, 12), np.float64))
np.save(sys.argv[1] + "/int_input.npy", np.zeros((2, 3, 12, 12), np.int32))
PY

expect_error "missing model" "nope.onnx" "$QEVAL" sim nope.onnx --input x=$INPUT --output-dir "$WORK/o"
expect_error "truncated model" "truncated.onnx" "$QEVAL" sim "$WORK/truncated.onnx" --input x=$INPUT --output-dir "$WORK/o"
expect_error "text as model" "text.onnx" "$QEVAL" sim "$WORK/text.onnx" --input x=$INPUT --output-dir "$WORK/o"
expect_error "unknown extension" "model.bin" "$QEVAL" sim model.bin --input x=$INPUT --output-dir "$WORK/o"
expect_error "missing input" "missing input 'x'" "$QEVAL" sim $MODEL --output-dir "$WORK/o"
expect_error "unknown input name" "'y' is not an input" "$QEVAL" sim $MODEL --input x=$INPUT --input y=$INPUT --output-dir "$WORK/o"
expect_error "missing input file" "nothere.npy" "$QEVAL" sim $MODEL --input x=nothere.npy --output-dir "$WORK/o"
expect_error "truncated npy" "short.npy" "$QEVAL" sim $MODEL --input x="$WORK/short.npy" --output-dir "$WORK/o"
expect_error "wrong shape" "shape \[1, 3, 5, 5\]" "$QEVAL" sim $MODEL --input x="$WORK/wrong_shape.npy" --output-dir "$WORK/o"
expect_error "unsupported npy dtype" "<f8" "$QEVAL" sim $MODEL --input x="$WORK/wrong_dtype.npy" --output-dir "$WORK/o"
expect_error "wrong dtype" "int32" "$QEVAL" sim $MODEL --input x="$WORK/int_input.npy" --output-dir "$WORK/o"
expect_error "bad input spec" "NAME=FILE" "$QEVAL" sim $MODEL --input "$INPUT" --output-dir "$WORK/o"
expect_error "unknown profile" "nosuchchip" "$QEVAL" sim $MODEL --input x=$INPUT --output-dir "$WORK/o" --profile nosuchchip

# A good run, and the qmodel round trip gives the same bytes.
"$QEVAL" sim $MODEL --input x=$INPUT --output-dir "$WORK/good" --save-qmodel "$WORK/m.qmodel" >/dev/null || { echo "FAIL: good run"; fails=$((fails + 1)); }
"$QEVAL" sim "$WORK/m.qmodel" --input x=$INPUT --output-dir "$WORK/good_q" >/dev/null || { echo "FAIL: qmodel run"; fails=$((fails + 1)); }
if cmp -s "$WORK/good/y.npy" "$WORK/good_q/y.npy"; then pass=$((pass + 1)); echo "ok: qmodel round trip"; else echo "FAIL: qmodel output differs"; fails=$((fails + 1)); fi
# A corrupted qmodel is detected.
cp "$WORK/m.qmodel" "$WORK/bad.qmodel"
printf '\x55' | dd of="$WORK/bad.qmodel" bs=1 seek=200 conv=notrunc 2>/dev/null
expect_error "corrupted qmodel" "checksum" "$QEVAL" sim "$WORK/bad.qmodel" --input x=$INPUT --output-dir "$WORK/o"

echo "$pass passed, $fails failed"
[ "$fails" -eq 0 ]
