#!/usr/bin/env bash
# The malformed-input corpus (issue 9): every file of harness/tests/malformed/ is
# a broken cfg or model list whose first line says what the error must name:
#   # expect: REGEX        (grep -E, matched against run_eval's stderr + stdout)
# Each must end with exit 2 (never a crash, never 0/1), and no job of it may be
# stored as passed. Errors in the cfg stop run_eval before any job; errors the
# worker finds (missing or corrupted models and datasets) are stored as `error`.
# Usage: malformed_test.sh RUN_EVAL QEVAL WORKDIR
set -u
RUN_EVAL=$1
QEVAL=$2
WORK=$3
rm -rf "$WORK" && mkdir -p "$WORK"
source "$(dirname "$0")/../../scripts/testlib.sh"
CORPUS=$(cd "$(dirname "$0")/malformed" && pwd)

# Data the job-level cases point at (${MALFORMED_DATA}).
export MALFORMED_DATA="$WORK/data"
mkdir -p "$MALFORMED_DATA"
"$QEVAL" dataset export fashion-mnist --split test --limit 20 --out "$MALFORMED_DATA/fmnist" >/dev/null
cp -r "$MALFORMED_DATA/fmnist" "$MALFORMED_DATA/truncated_png"
victim=$(find "$MALFORMED_DATA/truncated_png" -name '*.png' | sort | head -1)
head -c 60 "$victim" >"$victim.tmp" && mv "$victim.tmp" "$victim"
cp -r "$MALFORMED_DATA/fmnist" "$MALFORMED_DATA/eleven"
mkdir -p "$MALFORMED_DATA/eleven/extra_class"
cp "$(find "$MALFORMED_DATA/fmnist" -name '*.png' | head -1)" "$MALFORMED_DATA/eleven/extra_class/x.png"
rm -f "$MALFORMED_DATA/eleven/labels.txt"
"$QEVAL" lower regression/examples/resblock_u8.onnx --out "$WORK/full.qmodel" >/dev/null
head -c 200 "$WORK/full.qmodel" >"$MALFORMED_DATA/trunc.qmodel"
echo "not a model" >"$MALFORMED_DATA/text.onnx"
echo "weights" >"$MALFORMED_DATA/weights.bin"

count=0
for f in "$CORPUS"/*; do
  count=$((count + 1))
  name=$(basename "$f")
  want=$(head -1 "$f" | sed -n 's/^# expect: //p')
  db="$WORK/$name.db"
  "$RUN_EVAL" --fast_test --db "$db" --out_dir "$WORK/runs_$name" "$f" >"$WORK/$name.out" 2>&1
  rc=$?
  passed=0
  if [ -e "$db" ]; then
    passed=$(/usr/bin/python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(\"select count(*) from jobs where status = 'pass'\").fetchone()[0])" "$db")
  fi
  if [ "$rc" -eq 2 ] && [ -n "$want" ] && grep -Eq -- "$want" "$WORK/$name.out" && [ "$passed" -eq 0 ]; then
    echo "ok: $name: $(grep -E -m1 -o -- "$want" "$WORK/$name.out" | head -c 160)"
    pass=$((pass + 1))
  else
    echo "FAIL: $name: rc=$rc, passed jobs=$passed, expected /$want/, output:"
    tail -5 "$WORK/$name.out"
    fails=$((fails + 1))
  fi
done
# Beyond the files: a missing argument and an unknown extension.
expect_error "missing cfg file" "nothere.yaml: no such file" "$RUN_EVAL" --fast_test --db "$WORK/x.db" "$WORK/nothere.yaml"
echo "model = lenet5" >"$WORK/model.txt"
expect_error "unknown cfg extension" "model.txt: unknown cfg format" "$RUN_EVAL" --fast_test --db "$WORK/x.db" "$WORK/model.txt"
check "corpus holds at least 50 cases ($count)" test "$count" -ge 50
finish
