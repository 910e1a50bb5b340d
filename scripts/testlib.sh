# Shared helpers of the CLI test scripts (source it after setting WORK).
#   expect_error "what" "regex" cmd...        exit 2, exactly one stderr line matching regex
#   expect_error_fixed "what" "text" cmd...   the same with a fixed string
#   expect_ok "what" cmd...                   exit 0
#   check "what" cmd...                       cmd succeeds
#   db_metrics DB                             "job metric value" lines of the DB's latest run
# Each prints "ok: ..." or "FAIL: ..." and counts into $pass / $fails;
# finish prints the counts and returns non-zero on any failure.
pass=0
fails=0

_expect_error() {  # _expect_error GREP_FLAG "what" "pattern" cmd...
  local flag=$1 what=$2 pattern=$3
  shift 3
  "$@" >"$WORK/out" 2>"$WORK/err"
  local rc=$?
  if [ "$rc" -ne 2 ] || [ "$(wc -l <"$WORK/err")" -ne 1 ] || ! grep -q $flag -- "$pattern" "$WORK/err"; then
    echo "FAIL: $what: rc=$rc, stderr:"; cat "$WORK/err"
    fails=$((fails + 1))
  else
    echo "ok: $what: $(cat "$WORK/err")"
    pass=$((pass + 1))
  fi
}
expect_error() { _expect_error "" "$@"; }
expect_error_fixed() { _expect_error -F "$@"; }

expect_ok() {
  local what=$1
  shift
  if "$@" >"$WORK/out" 2>"$WORK/err"; then
    echo "ok: $what"; pass=$((pass + 1))
  else
    echo "FAIL: $what: rc=$?, stderr:"; cat "$WORK/err"; fails=$((fails + 1))
  fi
}

check() {
  local what=$1
  shift
  if "$@"; then echo "ok: $what"; pass=$((pass + 1)); else echo "FAIL: $what"; fails=$((fails + 1)); fi
}

finish() {
  echo "$pass passed, $fails failed"
  [ "$fails" -eq 0 ]
}

db_metrics() {  # db_metrics DB: "job metric value" lines of the latest run, sorted
  /usr/bin/python3 - "$1" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
run = c.execute("select max(id) from runs").fetchone()[0]
rows = c.execute("select j.job_key, m.name, m.value from metrics m join jobs j on m.job_id = j.id "
                 "where j.run_id = ? order by j.job_key, m.name", (run,)).fetchall()
for r in rows:
    print(r[0], r[1], repr(r[2]))
PY
}
