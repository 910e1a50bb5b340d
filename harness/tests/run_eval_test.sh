#!/usr/bin/env bash
# run_eval end to end (issue 6 acceptance, small models so it fits the default suite):
#   - a tolerance the model cannot meet -> exit 1, the table names model and metric
#   - a misspelt cfg key -> exit 2 with file:line and a did-you-mean, before any job runs
#   - --pool_size 1 / --threads 1 and --pool_size 2 / --threads 2 from cold caches store identical
#     metric values (the slow determinism_test.sh adds pool 4, a 1x1-conv model and --torch_threads)
#   - a worker killed with SIGKILL mid-sweep: the sweep finishes, the job is `crashed`, exit 2
#   - --timeout kills a slow job: `timeout`, exit 2
#   - a tpu-mlir style .cfg (the seed's resnet18 keys) on an ImageFolder dataset runs and passes
#   - --list, --markdown/--junit/--html files; --qat_model_path
#   - run_eval report (HTML checked against the DB by reports/tests/html_check.py), compare
#     (exit 1 on a regression), merge (idempotent), history
# Usage: run_eval_test.sh RUN_EVAL QEVAL WORKDIR
set -u
RUN_EVAL=$1
QEVAL=$2
WORK=$3
rm -rf "$WORK" && mkdir -p "$WORK"
source "$(dirname "$0")/../../scripts/testlib.sh"
export QEVAL_CACHE_SHARED=${QEVAL_CACHE:-$HOME/.cache/qeval}

db_job() {  # db_job DB KEY: "status signal" of that job in the latest run
  /usr/bin/python3 - "$1" "$2" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
run = c.execute("select max(id) from runs").fetchone()[0]
r = c.execute("select status, signal from jobs where run_id = ? and job_key = ?", (run, sys.argv[2])).fetchone()
print(*(r or ("missing", 0)))
PY
}

# --- cfgs ------------------------------------------------------------------
cat >"$WORK/lenet5_ptq.yaml" <<'EOF'
model: lenet5
int8_sym_tolerance: [0.95, 0.80]
int8_asym_tolerance: [0.95, 0.80]
metric_tolerance: {top1_drop: 5.0}
EOF
cat >"$WORK/lenet5_qat.cfg" <<'EOF'
[DEFAULT]
model = lenet5
name = lenet5_qat
int8_sym_tolerance = 0.95,0.80
int8_asym_tolerance = 0.95,0.80
[qat]
epochs = 1
lr = 0.002
[metric_tolerance]
top1_drop = 5.0
EOF
cat >"$WORK/small.yaml" <<'EOF'
chips: [bm1690, onnx-qdq]
fast_test_count: 40
models:
  - lenet5_ptq.yaml
  - lenet5_qat.cfg
EOF
# cos = euclid = 1 on every layer: only a lossless model meets it.
cat >"$WORK/impossible.yaml" <<'EOF'
model: lenet5
name: lenet5_strict
int8_sym_tolerance: [1.0, 1.0]
metric_tolerance: {top1_drop: 5.0}
EOF
printf 'model = lenet5\nchip = bm1690\nresize_dim = 28,28\n' >"$WORK/misspelt.cfg"

# --- plan only -------------------------------------------------------------
expect_ok "--list" "$RUN_EVAL" --list --fast_test "$WORK/small.yaml"
check "--list shows 4 jobs" grep -q "^4 job(s) (fast test)" "$WORK/out"
check "--list names the QAT job on onnx-qdq" grep -q "lenet5_qat/onnx-qdq/qat" "$WORK/out"

# --- misspelt key: exit 2 before any job ------------------------------------
expect_error "misspelt key" "misspelt.cfg:3: unknown key 'resize_dim' (did you mean 'resize_dims'?)" \
  "$RUN_EVAL" --fast_test --db "$WORK/err.db" "$WORK/misspelt.cfg"
check "no database written for a bad cfg" test ! -e "$WORK/err.db"
expect_error "unknown chip" "nosuchchip" "$RUN_EVAL" --fast_test --chip nosuchchip --db "$WORK/err.db" "$WORK/lenet5_ptq.yaml"

# --- pool 1 / 1 thread vs pool 2 / 2 simulator threads, each from its own cold cache
for p in 1 2; do
  QEVAL_CACHE="$WORK/cache$p" "$RUN_EVAL" --fast_test --pool_size $p --threads $p --db "$WORK/pool$p.db" \
    --out_dir "$WORK/runs$p" "$WORK/small.yaml" >"$WORK/pool$p.out" 2>"$WORK/pool$p.err"
  rc=$?
  check "pool $p: exit 0 (rc=$rc)" test $rc -eq 0
  db_metrics "$WORK/pool$p.db" >"$WORK/pool$p.metrics"
done
check "pool 1 stored 4 jobs' metrics" test "$(cut -d' ' -f1 "$WORK/pool1.metrics" | sort -u | wc -l)" -eq 4
check "pool 1 x 1 thread and pool 2 x 2 threads store identical metric values" cmp -s "$WORK/pool1.metrics" "$WORK/pool2.metrics"
check "table has a PASS row for lenet5_qat on onnx-qdq" grep -Eq "lenet5_qat +onnx-qdq +qat +top1 .*PASS" "$WORK/pool2.out"

# The same sweep again: both caches hit, same values.
QEVAL_CACHE="$WORK/cache2" "$RUN_EVAL" --fast_test --db "$WORK/pool2.db" --out_dir "$WORK/runs2" \
  --markdown "$WORK/r.md" --junit "$WORK/r.xml" --html "$WORK/r.html" "$WORK/small.yaml" >"$WORK/warm.out" 2>&1
check "warm rerun: exit 0" test $? -eq 0
db_metrics "$WORK/pool2.db" >"$WORK/warm.metrics"
check "warm rerun: identical values" cmp -s "$WORK/pool1.metrics" "$WORK/warm.metrics"
check "warm rerun: baseline and quantized-model caches hit" \
  test "$(grep -c '"quant_cache_hit": true' "$WORK"/runs2/run-2/*/result.json | awk -F: '{s+=$2} END {print s}')" -eq 4
check "markdown written" grep -q "| lenet5_qat |" "$WORK/r.md"
check "junit written with 4 jobs' testcases" test "$(grep -c '<testcase' "$WORK/r.xml")" -ge 4
check "html written" grep -q "<svg" "$WORK/r.html"

# --- report / compare / merge / history over the stored runs -----------------
# pool2.db holds two runs of the same sweep (cold, warm).
expect_ok "report --html" "$RUN_EVAL" report --db "$WORK/pool2.db" --html "$WORK/rep.html" --junit "$WORK/rep.xml"
check "report: HTML well-formed, trend and layer points equal the DB" \
  /usr/bin/python3 reports/tests/html_check.py "$WORK/rep.html" "$WORK/pool2.db" 2
check "report: JUnit parsed back, testcase/failure/error counts equal the DB" /usr/bin/python3 - "$WORK/rep.xml" "$WORK/pool2.db" <<'PY'
import sqlite3, sys, xml.etree.ElementTree as ET
suite = ET.parse(sys.argv[1]).getroot().find("testsuite")
cases = suite.findall("testcase")
c = sqlite3.connect(sys.argv[2])
run = c.execute("select max(id) from runs").fetchone()[0]
gated, failed = c.execute("select count(*), sum(1 - m.pass) from metrics m join jobs j on m.job_id = j.id "
                          "where j.run_id = ? and m.gated = 1", (run,)).fetchone()
broken = c.execute("select count(*) from jobs where run_id = ? and status in ('error', 'crashed', 'timeout')",
                   (run,)).fetchone()[0]
got = (len(cases), sum(1 for t in cases if t.find("failure") is not None),
       sum(1 for t in cases if t.find("error") is not None), int(suite.get("tests")), int(suite.get("failures")))
want = (gated + broken, failed or 0, broken, gated + broken, failed or 0)
print("junit", got, "db", want)
sys.exit(0 if got == want and gated > 0 else 1)
PY
check "report: 4 trend plots" test "$(grep -o 'class="trend"' "$WORK/rep.html" | wc -l)" -eq 4
check "report: diff against run 1" grep -q "Changes since run 1" "$WORK/rep.html"
expect_ok "compare 1 2: no regression" "$RUN_EVAL" compare 1 2 --db "$WORK/pool2.db"
check "compare: 0 regressions" grep -q "0 regression(s)" "$WORK/out"
cp "$WORK/pool2.db" "$WORK/regressed.db"
/usr/bin/python3 - "$WORK/regressed.db" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.execute("update metrics set value = value - 10 where name = 'top1' and job_id in "
          "(select id from jobs where run_id = 2 and job_key = 'lenet5_qat/bm1690/qat')")
c.commit()
PY
"$RUN_EVAL" compare 1 latest --db "$WORK/regressed.db" >"$WORK/cmp.out" 2>&1
rc=$?
check "compare: a 10-point top-1 fall (5 allowed) exits 1 (rc=$rc)" test $rc -eq 1
check "compare: names the regressed job and metric" grep -Eq "lenet5_qat/bm1690/qat +top1 .*REGRESSED" "$WORK/cmp.out"
expect_ok "merge" "$RUN_EVAL" merge "$WORK/pool1.db" "$WORK/pool2.db" --into "$WORK/merged.db"
expect_ok "merge again" "$RUN_EVAL" merge "$WORK/pool1.db" "$WORK/pool2.db" --into "$WORK/merged.db"
check "merge: the same inputs twice add nothing" grep -q "0 run(s) added, 0 shard(s) merged into a sweep run (0 job(s)), 2 already in" "$WORK/out"
runs=$(/usr/bin/python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from runs').fetchone()[0])" "$WORK/merged.db")
check "merge: 3 runs in the merged db ($runs)" test "$runs" -eq 3
expect_ok "history" "$RUN_EVAL" history lenet5_qat --db "$WORK/merged.db"
check "history: one row per run and chip (6)" test "$(grep -c 'lenet5_qat/' "$WORK/out")" -eq 6

# --- --qat_model_path: evaluate an already quantized model ------------------
# The qmodel the PTQ job cached, given back as a folder: the same program, so the same numbers.
qm=$(/usr/bin/python3 - "$WORK/pool2.db" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
print(c.execute("select a.path from artifacts a join jobs j on a.job_id = j.id where j.job_key = "
                "'lenet5_ptq/bm1690/ptq' and a.kind = 'qmodel' order by a.job_id desc").fetchone()[0])
PY
)
printf 'fast_test_count: 40\nmodels: [lenet5_ptq.yaml]\n' >"$WORK/qm_list.yaml"
QEVAL_CACHE="$WORK/cache2" "$RUN_EVAL" --fast_test --chip bm1690 --qat_model_path "/nonexistent,$(dirname "$qm")" \
  --db "$WORK/qm.db" --out_dir "$WORK/runsq" "$WORK/qm_list.yaml" >"$WORK/qm.out" 2>&1
rc=$?
check "qat_model_path: exit 0 (rc=$rc)" test $rc -eq 0
db_metrics "$WORK/qm.db" | sed 's|/qat_model | |' >"$WORK/qm.metrics"
grep '^lenet5_ptq/bm1690/ptq ' "$WORK/pool2.metrics" | sed 's|/ptq | |' >"$WORK/ptq.metrics"
check "qat_model_path: same metric values as the PTQ job that made the model" cmp -s "$WORK/qm.metrics" "$WORK/ptq.metrics"
QEVAL_CACHE="$WORK/cache2" "$RUN_EVAL" --fast_test --chip bm1690 --qat_model_path "$WORK/data_none" \
  --db "$WORK/qm2.db" --out_dir "$WORK/runsq2" "$WORK/lenet5_ptq.yaml" >"$WORK/qm2.out" 2>&1
rc=$?
check "qat_model_path without a model: exit 2 (rc=$rc)" test $rc -eq 2
check "qat_model_path without a model: the table says so" grep -q "ERROR" "$WORK/qm2.out"
check "qat_model_path without a model: stored as error" test "$(db_job "$WORK/qm2.db" lenet5_ptq/bm1690/qat_model)" = "error 0"

# --- a tolerance the model cannot meet: exit 1 ------------------------------
QEVAL_CACHE="$WORK/cache2" "$RUN_EVAL" --fast_test --db "$WORK/fail.db" --out_dir "$WORK/runsf" \
  "$WORK/impossible.yaml" >"$WORK/fail.out" 2>"$WORK/fail.err"
rc=$?
check "impossible tolerance: exit 1 (rc=$rc)" test $rc -eq 1
check "impossible tolerance: the table names model and metric" \
  grep -Eq "lenet5_strict +bm1690 +ptq +min_layer_cos .*FAIL" "$WORK/fail.out"
check "impossible tolerance: stored as fail" test "$(db_job "$WORK/fail.db" lenet5_strict/bm1690/ptq)" = "fail 0"

# --- SIGKILL of a worker mid-sweep ------------------------------------------
# Cold cache: the first job trains its baseline for a few seconds; kill that worker.
QEVAL_CACHE="$WORK/cache_kill" "$RUN_EVAL" --fast_test --pool_size 1 --db "$WORK/kill.db" \
  --out_dir "$WORK/runsk" --chip bm1690 "$WORK/small.yaml" >"$WORK/kill.out" 2>"$WORK/kill.err" &
runner=$!
victim=""
for _ in $(seq 1 300); do
  victim=$(pgrep -f -- "--worker .*runsk/run-1/lenet5_ptq_bm1690_ptq/spec.json" | head -1)
  [ -n "$victim" ] && [ -e "$WORK/runsk/run-1/lenet5_ptq_bm1690_ptq/stage" ] && break
  sleep 0.1
done
sleep 1
[ -n "$victim" ] && kill -9 "$victim"
wait $runner
rc=$?
check "SIGKILL: a worker was found and killed" test -n "$victim"
check "SIGKILL: exit 2 (rc=$rc)" test $rc -eq 2
check "SIGKILL: killed job stored as crashed, signal 9" test "$(db_job "$WORK/kill.db" lenet5_ptq/bm1690/ptq)" = "crashed 9"
check "SIGKILL: the other job finished and passed" test "$(db_job "$WORK/kill.db" lenet5_qat/bm1690/qat)" = "pass 0"
check "SIGKILL: the table shows CRASHED" grep -q "CRASHED" "$WORK/kill.out"

# --- run_eval itself SIGKILLed mid-sweep, then --resume -----------------------
jobs_in() {  # jobs_in DB: rows in jobs (0 when the db does not exist yet)
  /usr/bin/python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from jobs').fetchone()[0])" "$1" 2>/dev/null || echo 0
}
QEVAL_CACHE="$WORK/cache_resume" "$RUN_EVAL" --fast_test --pool_size 1 --db "$WORK/resume.db" \
  --out_dir "$WORK/runsr" "$WORK/small.yaml" >"$WORK/resume1.out" 2>&1 &
runner=$!
for _ in $(seq 1 600); do [ "$(jobs_in "$WORK/resume.db")" -ge 1 ] && break; sleep 0.1; done
kill -9 $runner
wait $runner 2>/dev/null
stored=$(jobs_in "$WORK/resume.db")
check "resume: run_eval killed mid-sweep ($stored of 4 jobs stored)" test "$stored" -ge 1 -a "$stored" -lt 4
# A worker still loading its libraries reaches its parent check a moment later.
for _ in $(seq 1 100); do [ -z "$(pgrep -f -- "--worker .*runsr/")" ] && break; sleep 0.1; done
check "resume: no worker outlives run_eval" test -z "$(pgrep -f -- "--worker .*runsr/")"
QEVAL_CACHE="$WORK/cache_resume" "$RUN_EVAL" --resume 1 --db "$WORK/resume.db" --out_dir "$WORK/runsr" \
  >"$WORK/resume2.out" 2>"$WORK/resume2.err"
rc=$?
check "resume: exit 0 (rc=$rc)" test $rc -eq 0
check "resume: reran only the unfinished jobs" grep -q "resuming run 1: $stored job(s) stored, $((4 - stored)) to run" "$WORK/resume2.err"
check "resume: every job exactly once, run done" test "$(/usr/bin/python3 - "$WORK/resume.db" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
keys = [k for (k,) in c.execute("select job_key from jobs where run_id = 1")]
print(len(keys), len(set(keys)), c.execute("select status from runs where id = 1").fetchone()[0])
PY
)" = "4 4 done"
db_metrics "$WORK/resume.db" >"$WORK/resume.metrics"
check "resume: same metric values as an uninterrupted sweep" cmp -s "$WORK/pool1.metrics" "$WORK/resume.metrics"

# --- Ctrl-C: workers stopped, run marked interrupted, resumable ---------------
QEVAL_CACHE="$WORK/cache_int" "$RUN_EVAL" --fast_test --pool_size 2 --db "$WORK/int.db" \
  --out_dir "$WORK/runsi" "$WORK/small.yaml" >"$WORK/int1.out" 2>"$WORK/int1.err" &
runner=$!
for _ in $(seq 1 300); do ls "$WORK"/runsi/run-1/*/stage >/dev/null 2>&1 && break; sleep 0.1; done
sleep 1
kill -INT $runner
wait $runner
rc=$?
check "Ctrl-C: exit 2 (rc=$rc)" test $rc -eq 2
check "Ctrl-C: run marked interrupted" test "$(/usr/bin/python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select status from runs where id = 1').fetchone()[0])" "$WORK/int.db")" = interrupted
check "Ctrl-C: says how to resume" grep -q "run_eval --resume 1" "$WORK/int1.err"
check "Ctrl-C: no worker left" test -z "$(pgrep -f -- "--worker .*runsi/")"
QEVAL_CACHE="$WORK/cache_int" "$RUN_EVAL" --resume 1 --db "$WORK/int.db" --out_dir "$WORK/runsi" >"$WORK/int2.out" 2>&1
rc=$?
check "Ctrl-C then --resume: exit 0 and 4 jobs (rc=$rc)" test $rc -eq 0 -a "$(jobs_in "$WORK/int.db")" -eq 4

# --- timeout ----------------------------------------------------------------
QEVAL_CACHE="$WORK/cache_timeout" "$RUN_EVAL" --fast_test --timeout 1 --db "$WORK/timeout.db" \
  --out_dir "$WORK/runst" "$WORK/lenet5_ptq.yaml" >"$WORK/timeout.out" 2>&1
rc=$?
check "timeout: exit 2 (rc=$rc)" test $rc -eq 2
check "timeout: stored as timeout" test "$(db_job "$WORK/timeout.db" lenet5_ptq/bm1690/ptq)" = "timeout 0"

# --- tpu-mlir style cfg on an ImageFolder -----------------------------------
"$QEVAL" dataset export fashion-mnist --split test --limit 300 --out "$WORK/data/fmnist" >/dev/null
first=$(find "$WORK/data/fmnist" -name '*.png' | sort | head -1)
# The keys of the seed's resnet18_qat.cfg (tpu-mlir docs, QAT chapter); values for
# a 28x28 gray Fashion-MNIST classifier: mean = 255 * 0.2860, scale = 1 / (255 * 0.3530).
cat >"$WORK/lenet5_qat_tpu.cfg" <<EOF
model = lenet5
dataset=\${DATA_ROOT}/fmnist
test_input=$first
input_shapes=[[1,1,28,28]] #Modified according to the actual shape
#The following is the image preprocessing parameters
resize_dims=28,28
mean=72.93
scale=0.011109
pixel_format=gray
int8_sym_tolerance=0.97,0.80
int8_asym_tolerance=0.98,0.80
debug_cmd=use_pil_resize
EOF
DATA_ROOT="$WORK/data" QEVAL_CACHE="$WORK/cache2" "$RUN_EVAL" --db "$WORK/tpu.db" --out_dir "$WORK/runs_tpu" \
  --fast_test "$WORK/lenet5_qat_tpu.cfg" >"$WORK/tpu.out" 2>"$WORK/tpu.err"
rc=$?
check "tpu-mlir cfg on ImageFolder: exit 0 (rc=$rc)" test $rc -eq 0
check "tpu-mlir cfg: job passed" test "$(db_job "$WORK/tpu.db" lenet5_qat_tpu/bm1690/ptq)" = "pass 0"
check "tpu-mlir cfg: evaluated 30 ImageFolder images" grep -q "30 evaluation samples from $WORK/data/fmnist" \
  "$WORK"/runs_tpu/run-1/*/worker.log
check "tpu-mlir cfg: layer comparison on test_input" grep -q "layer comparison on $first" \
  "$WORK"/runs_tpu/run-1/*/worker.log
# Bounds, not equality: 30 images of a 1-epoch baseline; a broken preprocessing gives ~10%.
top1=$(db_metrics "$WORK/tpu.db" | awk '$2 == "top1" {print $3}')
check "tpu-mlir cfg: int8 top-1 ($top1) is that of a trained model (>= 60%)" \
  /usr/bin/python3 -c "import sys; sys.exit(0 if float('$top1') >= 60 else 1)"

finish
