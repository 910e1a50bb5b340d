#!/usr/bin/env bash
# Full-size inference benchmark (issue 12; bench/README.md): the integer simulator
# against onnxruntime int8 (the same QDQ model), LibTorch int8 (torch.ao FX PTQ,
# quantized engine onednn) and LibTorch fp32, same machine, threads, inputs, in one
# run: resnet18 224x224 at batch 1 and 8, and the YOLOv5s-style detector 640x640 at
# batch 1 (mobilenet_v2 224 with --models). Peak memory of each peer process
# (ru_maxrss) is reported beside its images/s.
#
#   bench/fullsize_bench.sh [--work DIR] [--models "resnet18 yolov5s"] [--threads 2]
#                           [--passes 3] [--rounds 2] [--round-seconds 2] [--warmup-seconds 2]
#
# Timing: --passes alternating passes over the peers (qeval, onnxruntime, torch
# int8, torch fp32, then again), each measuring --rounds rounds per peer, so
# that a drift of the machine's speed (a shared host) during the run reaches
# every peer alike; a peer's images/s is the median of all its rounds.
#
# Steps: regression/fullsize/prepare.sh (models, images) -> run_eval --fast_test on
# bench/fullsize/NAME_onnx_qdq.yaml (PTQ, onnx-qdq profile: NAME.qmodel and
# NAME_qdq.onnx from one quantization) -> input batches of generated images ->
# bench_sim, ort_bench.js, torch_bench.py -> bench/report.py.
# Exit: 0 when every measurement ran, 1 otherwise (the table says which), 2 on setup errors.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=/usr/bin/python3
WORK=/tmp/qeval-fullsize-bench
MODELS="resnet18 yolov5s"
THREADS=2
PASSES=3
ROUNDS=2
ROUND_S=2
WARMUP_S=2
die() { echo "fullsize_bench: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  [ $# -ge 2 ] || die "$1 needs a value"
  case "$1" in
    --work) WORK=$2 ;;
    --models) MODELS=$2 ;;
    --threads) THREADS=$2 ;;
    --passes) PASSES=$2 ;;
    --rounds) ROUNDS=$2 ;;
    --round-seconds) ROUND_S=$2 ;;
    --warmup-seconds) WARMUP_S=$2 ;;
    *) die "unknown argument '$1' (see the header of $0)" ;;
  esac
  shift 2
done
RUN_EVAL=$ROOT/build/bin/run_eval
BENCH_SIM=$ROOT/build/bin/bench_sim
[ -x "$RUN_EVAL" ] && [ -x "$BENCH_SIM" ] || die "build run_eval and bench_sim first (scripts/setup.sh)"
mkdir -p "$WORK"/{logs,inputs,ort} || die "cannot create $WORK"
WORK=$(cd "$WORK" && pwd)
export REGRESSION_PATH=${REGRESSION_PATH:-$WORK/data} QEVAL_CACHE=${QEVAL_CACHE:-$WORK/cache}
RESULTS=$WORK/results.jsonl
: > "$RESULTS"
machine() {  # the report's header line: when, load, timing settings
  printf '{"bench": "machine", "when": "%s", "loadavg": "%s", "threads": %s, "passes": %s, "rounds": %s, "round_seconds": %s, "baseline": "random init (models/peers/fullsize.py)", "artifacts": "%s", "omp_wait_policy": "default"}\n' \
    "$1" "$(cut -d' ' -f1-3 /proc/loadavg)" "$THREADS" "$PASSES" "$ROUNDS" "$ROUND_S" "$WORK/cache" >> "$RESULTS"
}
FAILED=0
say() { echo "[fullsize-bench] $*" >&2; }
TIMING=(--threads "$THREADS" --rounds "$ROUNDS" --round-seconds "$ROUND_S" --warmup-seconds "$WARMUP_S")

"$ROOT/regression/fullsize/prepare.sh" > "$WORK/logs/prepare.log" 2>&1 || die "prepare.sh failed: $WORK/logs/prepare.log"
cfgs=()
for m in $MODELS; do cfgs+=("$ROOT/bench/fullsize/${m}_onnx_qdq.yaml"); done
say "PTQ (onnx-qdq) of $MODELS with run_eval"
"$RUN_EVAL" --fast_test "${cfgs[@]}" --pool_size 1 --threads "$THREADS" --torch_threads "$THREADS" \
  --db "$WORK/quant.db" --out_dir "$WORK/runs" > "$WORK/logs/run_eval.log" 2>&1
[ $? -le 1 ] || die "run_eval failed: $WORK/logs/run_eval.log"

measure() {  # measure PEER MODEL BATCH LOG CMD...
  local peer=$1 model=$2 batch=$3 log=$4
  shift 4
  say "$peer $model batch $batch"
  local out rc
  out=$("$@" 2> "$log")
  rc=$?
  if [ $rc -eq 0 ]; then grep '^{' <<< "$out" >> "$RESULTS"; return 0; fi
  FAILED=1
  echo "{\"bench\": \"infer\", \"peer\": \"$peer\", \"model\": \"$model\", \"batch\": $batch, \"skipped\": \"exit $rc, log $log\"}" >> "$RESULTS"
}

machine start
for m in $MODELS; do
  read -r QMODEL ONNX <<< "$("$PY" - "$WORK/quant.db" "${m}_bench" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
a = dict(c.execute("select a.kind, a.path from artifacts a join jobs j on a.job_id = j.id where j.model = ? "
                   "order by j.id", (sys.argv[2],)).fetchall())
print(a.get("qmodel", "-"), a.get("qdq_onnx", "-"))
PY
)"
  [ -f "$QMODEL" ] || die "$m: no quantized model in $WORK/quant.db (see $WORK/logs/run_eval.log)"
  size=224; [ "$m" = yolov5s ] && size=640
  batches="1 8"; [ "$m" = yolov5s ] && batches="1"
  calib=$WORK/inputs/${m}_calib.npy
  "$PY" - "$ROOT" "$REGRESSION_PATH" "$size" "$WORK/inputs/$m" "$calib" $batches <<'PY' || die "inputs of $m"
import sys, numpy as np
sys.path.insert(0, sys.argv[1] + "/models/peers")
import fullsize
root, size, stem, calib = sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
for b in map(int, sys.argv[6:]):
    np.save(f"{stem}_b{b}.npy", fullsize.load_images(root + "/dataset/ILSVRC2012", size, b).numpy())
np.save(calib, fullsize.load_images(root + "/dataset/calib_small", size, 16).numpy())
PY
  for b in $batches; do
    input=$WORK/inputs/${m}_b$b.npy
    for pass in $(seq "$PASSES"); do
      layers=(); [ "$pass" = 1 ] && layers=(--layers 3)  # the per-layer table once
      measure qeval-sim-int8 "$m" "$b" "$WORK/logs/sim_${m}_b${b}_$pass.log" \
        "$BENCH_SIM" "$QMODEL" --input "$input" --name "$m" "${layers[@]}" "${TIMING[@]}"
      measure onnxruntime-int8 "$m" "$b" "$WORK/logs/ort_${m}_b${b}_$pass.log" \
        node "$ROOT/bench/ort_bench.js" "$ONNX" "$input" --model "$m" --save-optimized "$WORK/ort/$m.optimized.onnx" \
        "${TIMING[@]}"
      for p in int8 fp32; do
        measure "torch-$p" "$m" "$b" "$WORK/logs/torch_${p}_${m}_b${b}_$pass.log" \
          "$PY" "$ROOT/bench/torch_bench.py" infer --model "$m" --input "$input" --peer "$p" --calib "$calib" \
          --weights "$REGRESSION_PATH/models/$m.pt" "${TIMING[@]}"
      done
    done
  done
done
machine end
"$PY" "$ROOT/bench/report.py" "$RESULTS" --ort-dir "$WORK/ort" | tee "$WORK/report.txt"
say "results: $RESULTS, table: $WORK/report.txt, logs: $WORK/logs"
exit $FAILED
