#!/usr/bin/env bash
# qeval against its peers, measured in one run on the same machine, thread
# count, models, batches and input data (issue 8; bench/README.md):
#   inference images/s: qeval simulator int8 (bench_sim), onnxruntime int8
#   (ort_bench.js), LibTorch int8 onednn and LibTorch fp32 (torch_bench.py);
#   QAT training images/s: qeval quantize vs torch.ao FX QAT.
#
#   bench/run_bench.sh [--work DIR] [--artifacts DIR] [--models "resnet8 mobilenetv2_tiny"]
#                      [--batches "1 64"] [--threads 2] [--passes 3] [--rounds 2] [--round-seconds 1]
#                      [--warmup-seconds 1] [--layers 3] [--qat-images 4096]
#                      [--baseline quick|cached] [--omp-passive] [--qeval BIN] [--bench-sim BIN]
#
# Inference timing: --passes alternating passes over the peers (qeval,
# onnxruntime, torch int8, torch fp32, then again), --rounds rounds per peer
# each, so that a drift of the machine's speed (a shared host) during the run
# reaches every peer alike; a peer's images/s is the median of all its rounds.
#
# --omp-passive: OMP_WAIT_POLICY=PASSIVE for the LibTorch processes (the torch
# peers and qeval's QAT alike). On a machine whose cores are busy with other
# work, OpenMP's spin-waiting threads make LibTorch many times slower (resnet8
# fp32 batch 1: 7 vs 78 images/s at load 5 on 2 cores); on a quiet machine
# leave it off, as users run LibTorch.
#
# Exit 0 when every measurement ran; 1 when one failed or a peer was skipped
# (the table says which and why); 2 on bad arguments or missing qeval parts.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=/usr/bin/python3
WORK=/tmp/qeval-bench
ARTIFACTS=""
MODELS="resnet8 mobilenetv2_tiny"
BATCHES="1 64"
THREADS=2
PASSES=3
ROUNDS=2
ROUND_S=1
WARMUP_S=1
LAYERS=3
QAT_IMAGES=4096
BASELINE=quick
OMP_POLICY=default
QEVAL=$ROOT/build/bin/qeval
BENCH_SIM=$ROOT/build/bin/bench_sim
QAT_CFG=$ROOT/bench/qat_bench.yaml

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; }
die() { echo "run_bench: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --omp-passive) OMP_POLICY=passive; shift; continue ;;
  esac
  [ $# -ge 2 ] || die "$1 needs a value"
  case "$1" in
    --work) WORK=$2 ;;
    --artifacts) ARTIFACTS=$2 ;;
    --models) MODELS=$2 ;;
    --batches) BATCHES=$2 ;;
    --threads) THREADS=$2 ;;
    --passes) PASSES=$2 ;;
    --rounds) ROUNDS=$2 ;;
    --round-seconds) ROUND_S=$2 ;;
    --warmup-seconds) WARMUP_S=$2 ;;
    --layers) LAYERS=$2 ;;
    --qat-images) QAT_IMAGES=$2 ;;
    --baseline) BASELINE=$2 ;;
    --qeval) QEVAL=$2 ;;
    --bench-sim) BENCH_SIM=$2 ;;
    *) usage >&2; die "unknown argument '$1'" ;;
  esac
  shift 2
done
case "$BASELINE" in quick|cached) ;; *) die "--baseline: quick or cached, not '$BASELINE'" ;; esac
for n in "$THREADS" "$ROUNDS" "$LAYERS" "$QAT_IMAGES" $BATCHES; do
  case "$n" in ''|*[!0-9]*) die "not a whole number: '$n'" ;; esac
done
[ "$QAT_IMAGES" -le 60000 ] || die "--qat-images: Fashion-MNIST has 60000 training images"
[ -x "$BENCH_SIM" ] || die "$BENCH_SIM not found; build it: cmake --build build --target bench_sim (or pass --bench-sim)"
if [ -z "$ARTIFACTS" ] || [ "$QAT_IMAGES" -gt 0 ]; then
  # Creating artifacts and the QAT comparison need the LibTorch build of qeval.
  "$QEVAL" quantize --help >/dev/null 2>&1 ||
    die "$QEVAL has no 'quantize' (the LibTorch build: scripts/setup.sh); pass --qeval, or --artifacts DIR --qat-images 0"
fi
[ -x "$PY" ] || die "$PY not found (it runs the report and the PyTorch peers)"

mkdir -p "$WORK"/{logs,inputs,artifacts,ort,qat} || die "cannot create $WORK"
WORK=$(cd "$WORK" && pwd)
RESULTS=$WORK/results.jsonl
: > "$RESULTS"
FAILED=0

say() { echo "[bench] $*" >&2; }
[ "$OMP_POLICY" = passive ] && export OMP_WAIT_POLICY=PASSIVE

# record KEY=VALUE...: one JSON line into results.jsonl (values are strings,
# except those that parse as numbers).
record() {
  "$PY" - "$@" >> "$RESULTS" <<'EOF'
import json, sys
def value(v):
    try:
        return float(v) if any(c in v for c in ".e") else int(v)
    except ValueError:
        return v
print(json.dumps({k: value(v) for k, v in (a.split("=", 1) for a in sys.argv[1:])}))
EOF
}

# measure BENCH PEER MODEL BATCH LOG CMD...: runs CMD, appends its JSON lines to
# results.jsonl; a missing peer (exit 77) or a failure becomes a visible
# 'skipped' row with the reason, never a silent gap or a zero.
measure() {
  local bench=$1 peer=$2 model=$3 batch=$4 log=$5
  shift 5
  if [ "$bench" = qat ]; then say "$peer $model: QAT, $QAT_IMAGES images"; else say "$peer $model batch $batch"; fi
  local out rc
  out=$("$@" 2> "$log")
  rc=$?
  if [ $rc -eq 0 ]; then
    grep '^{' <<< "$out" >> "$RESULTS"
    return 0
  fi
  FAILED=1
  local why
  if [ $rc -eq 77 ]; then
    why="not available: $(tr '\n' ' ' < "$log")"
  else
    why="failed (exit $rc): $(grep -v '^\s*$' "$log" | tail -n 1) [log: $log]"
  fi
  say "  $why"
  record bench="$bench" peer="$peer" model="$model" batch="$batch" skipped="$why"
  return 1
}

# The artifacts of MODEL: sets QMODEL, ONNX (may not exist) and FP32 ("" when
# there are no fp32 weights: the PyTorch peers then use their default init).
artifacts() {
  local m=$1 dir
  if [ -n "$ARTIFACTS" ]; then
    for dir in "$ARTIFACTS" "$ARTIFACTS/$m"; do
      [ -f "$dir/$m.qmodel" ] && break
    done
    [ -f "$dir/$m.qmodel" ] || die "no $m.qmodel in $ARTIFACTS or $ARTIFACTS/$m"
    QMODEL=$dir/$m.qmodel ONNX=$dir/${m}_qdq.onnx FP32=$dir/${m}_fp32.qmodel
    [ -f "$FP32" ] || FP32=""
    return 0
  fi
  dir=$WORK/artifacts/$m
  QMODEL=$dir/$m.qmodel ONNX=$dir/${m}_qdq.onnx FP32=$dir/${m}_fp32.qmodel
  if [ -f "$QMODEL" ] && [ -f "$FP32" ]; then
    say "$m: reusing $dir (delete it to rebuild)"
    return 0
  fi
  mkdir -p "$dir"
  if [ "$BASELINE" = quick ]; then
    # Speed does not depend on how well the weights are trained: one epoch on
    # 4096 images (~1 min), kept out of the shared cache.
    say "$m: quick fp32 baseline (1 epoch, 4096 images)"
    "$QEVAL" train "$m" --epochs 1 --train-limit 4096 --eval-limit 500 --cache bypass --threads "$THREADS" \
      --out "$FP32" > "$WORK/logs/$m.train.log" 2>&1 || die "$m: qeval train failed, see $WORK/logs/$m.train.log"
  else
    say "$m: cached fp32 baseline (trained with the full recipe if the cache misses: tens of minutes)"
    "$QEVAL" train "$m" --threads "$THREADS" --out "$FP32" > "$WORK/logs/$m.train.log" 2>&1 ||
      die "$m: qeval train failed, see $WORK/logs/$m.train.log"
  fi
  # PTQ only: the inference benchmark needs the deployed program, not a fine-tuned one.
  say "$m: PTQ -> $m.qmodel, ${m}_qdq.onnx"
  "$QEVAL" quantize --model "$m" --cfg "$QAT_CFG" --ptq --weights "$FP32" --out "$dir" --eval-limit 200 \
    --no-ptq-eval --no-compare --threads "$THREADS" > "$WORK/logs/$m.quantize.log" 2>&1 ||
    die "$m: qeval quantize failed, see $WORK/logs/$m.quantize.log"
}

# The batches in ascending order; conv layers are timed at the largest.
BATCHES=$(tr ' ' '\n' <<< "$BATCHES" | sort -nu | xargs)
MAX_BATCH=${BATCHES##* }
TIMING=(--threads "$THREADS" --rounds "$ROUNDS" --round-seconds "$ROUND_S" --warmup-seconds "$WARMUP_S")
LOAD=$(cut -d' ' -f1 /proc/loadavg)
if "$PY" -c "import os, sys; sys.exit(not float('$LOAD') > os.cpu_count() - $THREADS + 0.5)"; then
  say "WARNING: load average $LOAD on $(nproc) CPUs: other work competes for the $THREADS threads, the timings"
  say "         will be noisy and LibTorch's may collapse (see --omp-passive); use a quiet machine for real figures"
fi
record bench=machine when=start loadavg="$(cut -d' ' -f1-3 /proc/loadavg)" threads="$THREADS" \
  passes="$PASSES" rounds="$ROUNDS" round_seconds="$ROUND_S" baseline="$BASELINE" artifacts="${ARTIFACTS:-$WORK/artifacts}" \
  omp_wait_policy="$OMP_POLICY"

for m in $MODELS; do
  artifacts "$m"
  for b in $BATCHES; do
    input=$WORK/inputs/${m}_b$b.npy
    for pass in $(seq "$PASSES"); do
      layers=() sim_input=(--input "$input")
      if [ "$pass" = 1 ]; then
        [ "$b" = "$MAX_BATCH" ] && [ "$LAYERS" -gt 0 ] && layers=(--layers "$LAYERS")
        # bench_sim builds the batch (the first b Fashion-MNIST test images, the zoo's
        # preprocessing) and saves it: every peer runs on exactly these inputs.
        sim_input=(--batch "$b" --save-input "$input")
      fi
      if ! measure infer qeval-sim-int8 "$m" "$b" "$WORK/logs/sim_${m}_b${b}_$pass.log" \
        "$BENCH_SIM" "$QMODEL" "${sim_input[@]}" "${TIMING[@]}" "${layers[@]}"; then
        for p in onnxruntime-int8 torch-int8 torch-fp32; do
          record bench=infer peer=$p model="$m" batch="$b" skipped="no input batch: bench_sim failed"
        done
        break
      fi
      if ! command -v node > /dev/null; then
        FAILED=1
        record bench=infer peer=onnxruntime-int8 model="$m" batch="$b" \
          skipped="not available: node is not installed (apt-get install nodejs npm; then (cd simulator/tests/referee && npm install --ignore-scripts))"
      elif [ ! -f "$ONNX" ]; then
        FAILED=1
        record bench=infer peer=onnxruntime-int8 model="$m" batch="$b" skipped="not available: no $ONNX"
      else
        measure infer onnxruntime-int8 "$m" "$b" "$WORK/logs/ort_${m}_b${b}_$pass.log" \
          node "$ROOT/bench/ort_bench.js" "$ONNX" "$input" --model "$m" \
          --save-optimized "$WORK/ort/$m.optimized.onnx" "${TIMING[@]}"
      fi
      for p in int8 fp32; do
        measure infer "torch-$p" "$m" "$b" "$WORK/logs/torch_${p}_${m}_b${b}_$pass.log" \
          "$PY" "$ROOT/bench/torch_bench.py" infer --model "$m" --input "$input" --peer "$p" \
          ${FP32:+--weights "$FP32"} "${TIMING[@]}"
      done
    done
  done

  if [ "$QAT_IMAGES" -gt 0 ]; then
    if [ -z "$FP32" ]; then
      # The QAT comparison starts both from the same fp32 weights.
      FAILED=1
      record bench=qat peer=qeval-qat model="$m" batch=0 skipped="no ${m}_fp32.qmodel in $ARTIFACTS"
      continue
    fi
    # qeval: one QAT epoch over the first N training images; summary.json's
    # qat_seconds is the training loop alone (models/train_loop.cc: every step
    # plus the epoch's checkpoint; not calibration, conversion or scoring).
    out=$WORK/qat/$m
    rm -rf "$out"
    measure qat qeval-qat "$m" 0 "$WORK/logs/qat_qeval_$m.log" \
      "$PY" - "$QEVAL" "$m" "$QAT_CFG" "$FP32" "$QAT_IMAGES" "$THREADS" "$out" <<'EOF'
import json, re, subprocess, sys, yaml
qeval, model, cfg, fp32, images, threads, out = sys.argv[1:]
r = subprocess.run([qeval, "quantize", "--model", model, "--cfg", cfg, "--weights", fp32, "--qat-epochs", "1",
                    "--train-limit", images, "--eval-limit", "100", "--no-compare", "--no-ptq-eval",
                    "--threads", threads, "--out", out], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
sys.stderr.write(r.stderr)
if r.returncode:
    sys.exit(r.returncode)
s = json.load(open(f"{out}/summary.json"))
# "[quantize M] prepare: 15 activation quantizers, 10 weight quantizers, 9 BN folded, 0 float nodes"
act, wq, bn = map(int, re.search(r"prepare: (\d+) activation quantizers, (\d+) weight quantizers, (\d+) BN folded",
                                 r.stderr).groups())
print(json.dumps({"bench": "qat", "peer": "qeval-qat", "model": model, "images": int(images),
                  "batch": yaml.safe_load(open(cfg))["qat"]["batch"], "threads": int(threads),
                  "seconds": s["qat_seconds"], "images_per_s": int(images) / s["qat_seconds"],
                  "mean_loss": s["qat_epoch_loss"][0], "activation_fake_quants": act,
                  "activation_fake_quant_calls": act, "weight_fake_quants": wq, "conv_bn_folded": bn}))
EOF
    measure qat torch-fx-qat "$m" 0 "$WORK/logs/qat_torch_$m.log" \
      "$PY" "$ROOT/bench/torch_bench.py" qat --model "$m" --images "$QAT_IMAGES" --cfg "$QAT_CFG" \
      --weights "$FP32" --threads "$THREADS"
  fi
done

record bench=machine when=end loadavg="$(cut -d' ' -f1-3 /proc/loadavg)"
"$PY" "$ROOT/bench/report.py" "$RESULTS" --ort-dir "$WORK/ort" | tee "$WORK/report.txt"
say "results: $RESULTS, table: $WORK/report.txt, logs: $WORK/logs"
exit $FAILED
