#!/usr/bin/env bash
# qeval diagnose end to end on lenet5 (issue 11; the mobilenetv2_tiny acceptance run is
# in docs/diagnose.md). From a cold cache:
#   - lenet5 as shipped: within tolerance, no FLAG, "no fix needed", exit 0
#   - lenet5 with conv2's calibration forced to a tiny range (quant.ranges): the
#     profiler flags conv2's saturation, the calibration ratio, and ranks conv2 first;
#     the fix search changes exactly conv2; the patch it writes passes run_eval;
#   - findings and jobs are in the store, the HTML report holds the charts
# Usage: diagnose_test.sh QEVAL RUN_EVAL WORKDIR
set -u
QEVAL=$1
RUN_EVAL=$2
WORK=$3
rm -rf "$WORK" && mkdir -p "$WORK"
source "$(dirname "$0")/../../scripts/testlib.sh"
export QEVAL_CACHE="$WORK/cache"
REPO=$(cd "$(dirname "$0")/../.." && pwd)

# --- lenet5 as shipped -------------------------------------------------------------
"$QEVAL" diagnose "$REPO/regression/cfg/lenet5.cfg" --fast_test --samples 300 --out "$WORK/ok" \
  --db "$WORK/ok.db" >"$WORK/ok.out" 2>"$WORK/ok.err"
rc=$?
check "a model within tolerance: exit 0 (rc=$rc)" [ "$rc" -eq 0 ]
check "it says no fix is needed" grep -q "within its tolerance on bm1690: no fix needed" "$WORK/ok.out"
check "no check is flagged on it" bash -c "! grep -q '^  FLAG' '$WORK/ok.out'"
check "the profile lists every compared value" grep -q "^conv2.relu " "$WORK/ok.out"
check "sensitivity ranks all 5 layers" bash -c "grep -cE '^ +[1-5]  (conv|fc)' '$WORK/ok.out' | grep -qx 5"

# --- a deliberately broken calibration -------------------------------------------
cat >"$WORK/lenet5_broken.yaml" <<EOF
base: $REPO/regression/cfg/lenet5.cfg
quant:
  ranges: {conv2: [0, 0.05]}
EOF
"$QEVAL" diagnose "$WORK/lenet5_broken.yaml" --fast_test --samples 300 --out "$WORK/broken" \
  --db "$WORK/broken.db" >"$WORK/broken.out" 2>"$WORK/broken.err"
rc=$?
cat "$WORK/broken.out"
check "a fix was found: exit 0 (rc=$rc)" [ "$rc" -eq 0 ]
check "the gate fails before the fix" grep -qE "info +gate +ptq top1: .* FAILS" "$WORK/broken.out"
check "conv2's saturation is flagged with its rate" \
  grep -qE "FLAG +saturation +conv2.relu: [0-9.]+% of fp32 values are clipped" "$WORK/broken.out"
sat=$(grep -oE "saturation +conv2.relu: [0-9.]+%" "$WORK/broken.out" | grep -oE "[0-9.]+%" | tr -d %)
check "saturation above 10% (got $sat%)" /usr/bin/python3 -c "import sys; sys.exit(not float('$sat') > 10)"
check "only conv2 is flagged for saturation" bash -c "[ \$(grep -c 'FLAG   saturation' '$WORK/broken.out') -eq 1 ]"
check "the calibration ratio is flagged" grep -qE "FLAG +calibration_ratio" "$WORK/broken.out"
check "conv2 is the most sensitive layer" grep -qE "^ +1  conv2 " "$WORK/broken.out"
check "the fix changes exactly conv2" grep -qE "^Fix: 1 layer\(s\) -> [a-z0-9 ]+: conv2$" "$WORK/broken.out"
patch="$WORK/broken/lenet5_broken-bm1690/lenet5_broken_fix.yaml"
check "the cfg patch is written" test -f "$patch"
check "the patch names its base" grep -q "^base: '../../lenet5_broken.yaml'" "$patch"
QEVAL_CACHE="$WORK/cache" "$RUN_EVAL" --fast_test --db "$WORK/fix.db" --out_dir "$WORK/fixruns" "$patch" \
  >"$WORK/fix.out" 2>"$WORK/fix.err"
rc=$?
check "run_eval accepts the patch and it passes (rc=$rc)" [ "$rc" -eq 0 ]
check "run_eval scored it on the diagnosis's 300 samples" \
  bash -c "/usr/bin/python3 - '$WORK/fix.db' <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
n = c.execute('select samples from jobs').fetchone()[0]
sys.exit(0 if n == 300 else 1)
PY"

# --- the store and the report ----------------------------------------------------
/usr/bin/python3 - "$WORK/broken.db" >"$WORK/findings.txt" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
run = c.execute("select max(id) from runs").fetchone()[0]
for k, s, r, d in c.execute("select kind, subject, rank, detail from findings where run_id = ? order by idx", (run,)):
    print(k, s, r, d)
print("jobs", c.execute("select count(*) from jobs where run_id = ?", (run,)).fetchone()[0])
print("profiled", c.execute("select count(*) from layers where saturation is not null").fetchone()[0])
PY
check "the store holds the saturation finding" grep -q "^check saturation 0 conv2.relu" "$WORK/findings.txt"
check "the store holds the ranking" grep -q "^sensitivity conv2 1 " "$WORK/findings.txt"
check "the store holds the fix" grep -qE "^fix conv2 0 " "$WORK/findings.txt"
check "the store holds every job (1 + 10 sensitivity + trials)" \
  bash -c "[ \$(grep '^jobs ' '$WORK/findings.txt' | cut -d' ' -f2) -ge 12 ]"
check "layers carry their profile in the store" bash -c "[ \$(grep '^profiled ' '$WORK/findings.txt' | cut -d' ' -f2) -gt 0 ]"
html="$WORK/broken/lenet5_broken-bm1690/report.html"
check "the HTML report has the saturation chart" grep -q 'id="chart-saturation"' "$html"
check "the HTML report has the sensitivity chart with conv2" grep -q 'id="chart-sensitivity"' "$html"
check "the sensitivity chart has a bar for conv2" grep -q 'data-layer="conv2"' "$html"
check "every id in the report is unique" bash -c "[ -z \"\$(grep -o 'id=\"[^\"]*\"' '$html' | sort | uniq -d)\" ]"
check "the HTML report shows the fix" grep -q 'class="fix"' "$html"

# --- errors --------------------------------------------------------------------------
expect_error "a missing cfg names the file" "nonexistent.yaml" "$QEVAL" diagnose "$WORK/nonexistent.yaml"
expect_error "a bad --fix_with lists the choices" "allowed: auto, bits8, int16, float" \
  "$QEVAL" diagnose "$REPO/regression/cfg/lenet5.cfg" --fix_with int4
finish
