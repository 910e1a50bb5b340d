#!/usr/bin/env bash
# Issue 10 acceptance: a 2-shard sweep through a real Slurm, merged, equals a
# single run_eval run. Starts a private single-node cluster on localhost
# (munged, slurmctld and slurmd from Debian's slurm-wlm + munge, with a
# configuration written here under WORKDIR), submits
# regression/slurm/nightly.sbatch as an array of 2 with `sbatch`, waits for
# the shards and the dependent merge job, then compares every stored metric
# value of the merged sweep run with a plain run_eval run of the same list
# (its own cold cache). Needs root; exits 77 (skipped) without slurm-wlm.
# Usage: local_slurm_test.sh RUN_EVAL WORKDIR     (ctest run_eval_slurm, label e2e; ~2 min)
set -u
RUN_EVAL=$(readlink -f "$1")
WORK=$(readlink -m "$2")
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
for tool in slurmctld slurmd munged sbatch; do
  command -v $tool >/dev/null || { echo "skip: $tool not installed (apt-get install slurm-wlm munge)"; exit 77; }
done
[ "$(id -u)" = 0 ] || { echo "skip: a private slurmd needs root"; exit 77; }
rm -rf "$WORK" && mkdir -p "$WORK"/{state,spool,munge,log}
source "$ROOT/scripts/testlib.sh"

# --- a private cluster: munge, slurmctld, slurmd on localhost -----------------
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
}
trap cleanup EXIT
dd if=/dev/urandom of="$WORK/munge/munge.key" bs=1024 count=1 status=none
chmod 700 "$WORK/munge" && chmod 400 "$WORK/munge/munge.key"
MUNGE_SOCKET=$WORK/munge/munge.socket
munged --foreground --force --key-file="$WORK/munge/munge.key" --socket="$MUNGE_SOCKET" \
  --pid-file="$WORK/munge/munged.pid" --seed-file="$WORK/munge/seed" >"$WORK/log/munged.log" 2>&1 &
PIDS+=($!)
PORT=$((20000 + RANDOM % 20000))
CPUS=$(nproc)
MEM=$(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2))
export SLURM_CONF=$WORK/slurm.conf
cat >"$SLURM_CONF" <<CONF
ClusterName=qeval-test
SlurmctldHost=localhost
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/slurmctld.pid
SlurmdPidFile=$WORK/slurmd.pid
SlurmctldLogFile=$WORK/log/slurmctld.log
SlurmdLogFile=$WORK/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=localhost CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
for i in $(seq 50); do [ -S "$MUNGE_SOCKET" ] && break; sleep 0.1; done
slurmctld -D -f "$SLURM_CONF" >"$WORK/log/slurmctld.stdout" 2>&1 &
PIDS+=($!)
slurmd -D -f "$SLURM_CONF" >"$WORK/log/slurmd.stdout" 2>&1 &
PIDS+=($!)
up=0
for i in $(seq 60); do
  if sinfo -h -o '%T' 2>/dev/null | grep -Eq 'idle|mixed'; then up=1; break; fi
  sleep 1
done
check "local Slurm cluster is up (sinfo: $(sinfo -h -o '%N %T' 2>&1 | head -1))" test $up -eq 1
if [ $up -ne 1 ]; then
  tail -5 "$WORK"/log/*.log "$WORK"/log/*.stdout
  finish
  exit 1
fi

# --- the sweep: 2 cfgs x 2 chips, fast test -----------------------------------
mkdir -p "$WORK/cfg"
cat >"$WORK/cfg/lenet5_ptq.yaml" <<'YAML'
model: lenet5
name: lenet5_ptq
metric_tolerance: {top1_drop: 10.0}
YAML
cat >"$WORK/cfg/lenet5_qat.yaml" <<'YAML'
model: lenet5
name: lenet5_qat
qat: {epochs: 1, lr: 0.002}
metric_tolerance: {top1_drop: 10.0}
YAML
cat >"$WORK/cfg/sweep.yaml" <<'YAML'
chips: [bm1690, onnx-qdq]
fast_test_count: 40
models: [lenet5_ptq.yaml, lenet5_qat.yaml]
YAML

t0=$SECONDS
# The repository's build is what the script runs; point it at RUN_EVAL's.
mkdir -p "$WORK/root/build/bin" "$WORK/root/regression/slurm"
ln -s "$RUN_EVAL" "$WORK/root/build/bin/run_eval"
ln -s "$ROOT/regression/slurm/nightly.sbatch" "$WORK/root/regression/slurm/nightly.sbatch"
jid=$(cd "$WORK/root" && QEVAL_ROOT="$WORK/root" QEVAL_FLAGS="--fast_test" QEVAL_OUT="$WORK/out" \
  QEVAL_DB="$WORK/merged.db" QEVAL_CACHE="$WORK/cache-slurm" \
  sbatch --parsable --array=1-2 --cpus-per-task=1 --output="$WORK/log/shard-%a.out" \
  regression/slurm/nightly.sbatch "$WORK/cfg/sweep.yaml" 2>"$WORK/sbatch.err")
check "sbatch accepted the array (job $jid)" test -n "$jid"
# Meanwhile, the same list in one plain run_eval process (its own cold cache).
QEVAL_CACHE="$WORK/cache-single" "$RUN_EVAL" --fast_test --db "$WORK/single.db" --out_dir "$WORK/runs-single" \
  "$WORK/cfg/sweep.yaml" >"$WORK/single.out" 2>&1
check "single-process run: exit 0" test $? -eq 0
for i in $(seq 900); do
  [ -z "$(squeue -h 2>/dev/null)" ] && [ -s "$WORK/out/merge.jobid" ] && break
  sleep 1
done
echo "info: shards and merge finished in $((SECONDS - t0)) s"
for f in "$WORK"/log/shard-*.out "$WORK/out/merge.out"; do echo "--- $f"; tail -4 "$f"; done
check "each shard stored its own database" test -s "$WORK/out/shard-1.db" -a -s "$WORK/out/shard-2.db"
check "the merge job ran after the array" grep -q "merging 2 shard database(s) of slurm-$jid" "$WORK/out/merge.out"
check "the merge job wrote the reports" test -s "$WORK/out/report.html" -a -s "$WORK/out/junit.xml"

sweep_metrics() {  # the merged sweep run's "job metric value" lines
  /usr/bin/python3 - "$1" "slurm-$jid" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
run = c.execute("select id from runs where sweep = ? and shard is null", (sys.argv[2],)).fetchone()
rows = c.execute("select j.job_key, m.name, m.value from metrics m join jobs j on m.job_id = j.id "
                 "where j.run_id = ? order by j.job_key, m.name", (run[0] if run else -1,)).fetchall()
for r in rows:
    print(r[0], r[1], repr(r[2]))
PY
}
sweep_metrics "$WORK/merged.db" >"$WORK/merged.metrics"
db_metrics "$WORK/single.db" >"$WORK/single.metrics"
check "the merged sweep run holds all 4 jobs" \
  test "$(cut -d' ' -f1 "$WORK/merged.metrics" | sort -u | wc -l)" -eq 4
check "merged sweep == single run_eval run ($(wc -l <"$WORK/single.metrics") metric values)" \
  cmp -s "$WORK/merged.metrics" "$WORK/single.metrics"
check "the sweep run is done with exit code 0" test "$(/usr/bin/python3 -c "
import sqlite3; c = sqlite3.connect('$WORK/merged.db')
print(*c.execute(\"select status, exit_code from runs where sweep = 'slurm-$jid' and shard is null\").fetchone())")" = "done 0"
finish
