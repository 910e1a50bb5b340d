#include "reports/store.h"

#include <sqlite3.h>

#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <iterator>
#include <system_error>
#include <thread>

namespace qeval {

namespace {

// Schema migrations, applied in order inside one transaction by open(). A step
// takes the database from version `to - 1` to `to`; append new steps, never edit
// old ones (databases in the wild were built by them).
struct Migration {
  int to;
  const char* sql;
};

constexpr Migration kMigrations[] = {
    {1, R"sql(
CREATE TABLE runs(
  id INTEGER PRIMARY KEY, started TEXT NOT NULL, finished TEXT, status TEXT NOT NULL,
  command TEXT, host TEXT, git_sha TEXT, fast_test INTEGER NOT NULL DEFAULT 0,
  seconds REAL, exit_code INTEGER);
CREATE TABLE jobs(
  id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  job_key TEXT NOT NULL, model TEXT, chip TEXT, mode TEXT, task TEXT, cfg_path TEXT, cfg_hash TEXT,
  status TEXT NOT NULL, message TEXT, signal INTEGER, seconds REAL, samples INTEGER,
  baseline_cache_hit INTEGER, quant_cache_hit INTEGER, log_tail TEXT,
  UNIQUE(run_id, job_key));
CREATE TABLE metrics(
  job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE, name TEXT NOT NULL,
  value REAL, baseline REAL, delta REAL, tolerance TEXT, gated INTEGER, pass INTEGER);
CREATE TABLE layers(
  job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE, idx INTEGER NOT NULL,
  name TEXT, op TEXT, cos REAL, euclid REAL, sqnr REAL, max_lsb INTEGER, pass INTEGER);
CREATE TABLE artifacts(
  job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE, kind TEXT NOT NULL,
  path TEXT NOT NULL, hash TEXT);
-- jobs(run_id) lookups use the index behind UNIQUE(run_id, job_key).
CREATE INDEX metrics_job ON metrics(job_id);
CREATE INDEX layers_job ON layers(job_id, idx);
CREATE INDEX artifacts_job ON artifacts(job_id);
)sql"},
    // v2: runs get a uuid (merging databases keeps each run once), metrics the drop
    // that `run_eval compare` allows between runs.
    {2, R"sql(
ALTER TABLE runs ADD COLUMN uuid TEXT;
UPDATE runs SET uuid = lower(hex(randomblob(16))) WHERE uuid IS NULL;
CREATE UNIQUE INDEX runs_uuid ON runs(uuid);
ALTER TABLE metrics ADD COLUMN allowed_drop REAL;
)sql"},
    // v3: sharded sweeps. A shard's run names its sweep and "i/N"; `run_eval
    // merge` folds the shards of a sweep into one run (shard NULL) and lists the
    // merged shard runs in run_parts, so merging again changes nothing.
    {3, R"sql(
ALTER TABLE runs ADD COLUMN sweep TEXT;
ALTER TABLE runs ADD COLUMN shard TEXT;
CREATE TABLE run_parts(
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE, uuid TEXT NOT NULL UNIQUE,
  shard TEXT NOT NULL, status TEXT NOT NULL);
)sql"},
    // v4: qeval diagnose. Layers get the fp32 activation's profile against the
    // simulator's quantizer; findings hold a run's checks, sensitivity ranking and fix.
    {4, R"sql(
ALTER TABLE layers ADD COLUMN lo REAL;
ALTER TABLE layers ADD COLUMN hi REAL;
ALTER TABLE layers ADD COLUMN saturation REAL;
ALTER TABLE layers ADD COLUMN outlier REAL;
ALTER TABLE layers ADD COLUMN scale REAL;
ALTER TABLE layers ADD COLUMN zero_point INTEGER;
ALTER TABLE layers ADD COLUMN bits INTEGER;
CREATE TABLE findings(
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE, idx INTEGER NOT NULL,
  kind TEXT NOT NULL, subject TEXT, rank INTEGER, value REAL, value2 REAL, detail TEXT);
CREATE INDEX findings_run ON findings(run_id, idx);
)sql"},
};
static_assert(std::size(kMigrations) == kStoreSchemaVersion &&
                  kMigrations[std::size(kMigrations) - 1].to == kStoreSchemaVersion,
              "one migration step per schema version");

// The start of a statement, on one line, for error messages.
std::string brief(const char* sql) {
  std::string out;
  for (const char* p = sql; *p && out.size() < 60; ++p) {
    const bool space = *p == ' ' || *p == '\n' || *p == '\t';
    if (!space) out += *p;
    else if (!out.empty() && out.back() != ' ') out += ' ';
  }
  if (out.size() >= 60) out += "...";
  return out;
}

// Maps an SQLite result code to our Status codes. Messages leave the database path
// out: the public functions add it (with what they were doing) as context.
Status sql_error(sqlite3* db, int rc, const char* what) {
  const char* why = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  const std::string msg = fmt::format("{}: {}", brief(what), why);
  switch (rc & 0xff) {
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
      return data_loss("not an SQLite results database ({})", why);
    case SQLITE_CANTOPEN:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_BUSY:  // still locked after the 30 s busy timeout
    case SQLITE_LOCKED:
      return {StatusCode::kIo, msg};
    default:
      return {StatusCode::kInternal, msg};
  }
}

// A prepared statement (RAII). Values are always bound, never formatted into SQL.
class Stmt {
 public:
  explicit Stmt(sqlite3* db) : db_(db) {}
  ~Stmt() { sqlite3_finalize(st_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Status prepare(const char* sql) {
    int rc = sqlite3_prepare_v2(db_, sql, -1, &st_, nullptr);
    return rc == SQLITE_OK ? Status::ok() : sql_error(db_, rc, sql);
  }
  // Bind helpers take 1-based parameter indexes.
  void text(int i, const std::string& s) {
    sqlite3_bind_text(st_, i, s.data(), int(s.size()), SQLITE_TRANSIENT);
  }
  void null(int i) { sqlite3_bind_null(st_, i); }
  void integer(int i, int64_t v) { sqlite3_bind_int64(st_, i, v); }
  void real(int i, double v) {  // NaN ("not measured") is stored as NULL
    if (std::isnan(v)) sqlite3_bind_null(st_, i); else sqlite3_bind_double(st_, i, v);
  }
  // SQLITE_ROW -> true, SQLITE_DONE -> false.
  Result<bool> step() {
    int rc = sqlite3_step(st_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return sql_error(db_, rc, sqlite3_sql(st_));
  }
  void reset() {  // ready to be bound and stepped again
    sqlite3_reset(st_);
    sqlite3_clear_bindings(st_);
  }
  Status run() {  // a statement that returns no rows
    auto r = step();
    reset();
    return r.status();
  }
  std::string col_text(int i) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(st_, i));
    return p ? std::string(p, size_t(sqlite3_column_bytes(st_, i))) : std::string();
  }
  bool col_null(int i) const { return sqlite3_column_type(st_, i) == SQLITE_NULL; }
  int64_t col_int(int i, int64_t if_null = 0) const {
    return col_null(i) ? if_null : sqlite3_column_int64(st_, i);
  }
  double col_real(int i) const { return col_null(i) ? kNaN : sqlite3_column_double(st_, i); }

 private:
  sqlite3* db_;
  sqlite3_stmt* st_ = nullptr;
};

Status exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
  if (rc == SQLITE_OK) return Status::ok();
  sqlite3_free(err);  // sqlite3_errmsg(db) still holds the same text
  return sql_error(db, rc, sql);
}

// Rolls back an open transaction unless commit() ran, so every error path is clean.
class Transaction {
 public:
  explicit Transaction(sqlite3* db) : db_(db) {}
  ~Transaction() {
    if (open_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  Status begin(const char* sql) {
    QEVAL_RETURN_IF_ERROR(exec(db_, sql));
    open_ = true;
    return Status::ok();
  }
  Status commit() {
    QEVAL_RETURN_IF_ERROR(exec(db_, "COMMIT"));
    open_ = false;
    return Status::ok();
  }

 private:
  sqlite3* db_;
  bool open_ = false;
};

std::string now_utc() {
  std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string join_lines(const std::vector<std::string>& lines) {
  std::string s;
  for (size_t i = 0; i < lines.size(); ++i) s += (i ? "\n" : "") + lines[i];
  return s;
}

std::vector<std::string> split_lines(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  for (size_t nl; (nl = s.find('\n', start)) != std::string::npos; start = nl + 1) {
    out.push_back(s.substr(start, nl - start));
  }
  out.push_back(s.substr(start));
  return out;
}

Result<int> user_version(sqlite3* db) {
  Stmt st(db);
  QEVAL_RETURN_IF_ERROR(st.prepare("PRAGMA user_version"));
  QEVAL_ASSIGN_OR_RETURN(bool row, st.step());
  if (!row) return internal_error("PRAGMA user_version returned nothing");
  return int(st.col_int(0));
}

// Brings the schema to kStoreSchemaVersion. BEGIN IMMEDIATE takes the write lock
// before reading the version, so two processes creating the same file cannot both
// run the v0 -> v1 step.
Status migrate(sqlite3* db) {
  Transaction tx(db);
  QEVAL_RETURN_IF_ERROR(tx.begin("BEGIN IMMEDIATE"));
  QEVAL_ASSIGN_OR_RETURN(int version, user_version(db));
  if (version > kStoreSchemaVersion) {
    return invalid_argument("results database has schema version {}, this qeval knows up to {} "
                            "(newer qeval wrote it)", version, kStoreSchemaVersion);
  }
  if (version == kStoreSchemaVersion) return Status::ok();  // ~Transaction ends the read
  for (const Migration& m : kMigrations) {
    if (m.to <= version) continue;
    QEVAL_RETURN_IF_ERROR(exec(db, m.sql).with_context(fmt::format("migration to schema v{}", m.to)));
    // PRAGMA takes no bound parameters; m.to is our own constant.
    QEVAL_RETURN_IF_ERROR(exec(db, fmt::format("PRAGMA user_version = {}", m.to).c_str()));
  }
  return tx.commit();
}

}  // namespace

Result<std::unique_ptr<ResultStore>> ResultStore::open(const std::string& path) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
    if (ec) return io_error("{}: cannot create folder {}: {}", path, parent.string(), ec.message());
  }
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  // The store owns the handle from here on (even a failed open returns one to close).
  std::unique_ptr<ResultStore> store(new ResultStore(db, path));
  Status s = [&]() -> Status {
    if (rc != SQLITE_OK) return sql_error(db, rc, "cannot open");
    // Busy timeout first: switching to WAL and migrating may wait on other writers.
    sqlite3_busy_timeout(db, 30000);
    // Switching a new file to WAL (and reading a schema another process is
    // creating) can fail with SQLITE_BUSY without the busy handler being called
    // (SQLite avoids a deadlock there), so those steps are retried for 30 s.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    for (;;) {
      Status step = exec(db, "PRAGMA journal_mode=WAL");
      if (step.is_ok()) step = exec(db, "PRAGMA foreign_keys=ON");
      if (step.is_ok()) step = migrate(db);
      const int code = sqlite3_errcode(db) & 0xff;
      const bool busy = code == SQLITE_BUSY || code == SQLITE_LOCKED;
      if (step.is_ok() || !busy || std::chrono::steady_clock::now() > deadline) return step;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }();
  if (!s.is_ok()) return s.with_context(path);
  return store;
}

ResultStore::~ResultStore() { sqlite3_close_v2(db_); }

Result<int64_t> ResultStore::begin_run(const RunInfo& info) {
  RunInfo r = info;
  if (r.started.empty()) r.started = now_utc();
  r.status = "running";
  r.finished.clear();
  r.exit_code = -1;
  r.seconds = kNaN;
  auto id = import_run(r);
  if (!id.is_ok()) return id.status().with_context("begin_run");
  return id;
}

Result<int64_t> ResultStore::import_run(const RunInfo& info) {
  Stmt st(db_);
  Status s = st.prepare(
      "INSERT INTO runs(started, finished, status, command, host, git_sha, fast_test, seconds, exit_code, uuid, "
      "sweep, shard) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, COALESCE(?, lower(hex(randomblob(16)))), ?, ?)");
  if (s.is_ok()) {
    st.text(1, info.started);
    if (info.finished.empty()) st.null(2); else st.text(2, info.finished);
    st.text(3, info.status);
    st.text(4, info.command);
    st.text(5, info.host);
    st.text(6, info.git_sha);
    st.integer(7, info.fast_test);
    st.real(8, info.seconds);
    if (info.exit_code < 0) st.null(9); else st.integer(9, info.exit_code);
    if (info.uuid.empty()) st.null(10); else st.text(10, info.uuid);
    if (info.sweep.empty()) st.null(11); else st.text(11, info.sweep);
    if (info.shard.empty()) st.null(12); else st.text(12, info.shard);
    s = st.run();
  }
  if (!s.is_ok()) return s.with_context(path_);
  return int64_t{sqlite3_last_insert_rowid(db_)};
}

Result<bool> ResultStore::has_run_uuid(const std::string& uuid) const {
  Stmt st(db_);
  QEVAL_RETURN_IF_ERROR(
      st.prepare("SELECT 1 FROM runs WHERE uuid = ?1 UNION ALL SELECT 1 FROM run_parts WHERE uuid = ?1")
          .with_context(path_));
  st.text(1, uuid);
  auto row = st.step();
  if (!row.is_ok()) return row.status().with_context(path_);
  return *row;
}

namespace {

Status insert_job(sqlite3* db, int64_t run_id, const JobResult& job, const std::string& cfg_hash) {
  Transaction tx(db);
  QEVAL_RETURN_IF_ERROR(tx.begin("BEGIN IMMEDIATE"));
  // Replace an earlier row of the same job (a re-run): children first, then the job
  // (explicitly, not relying on ON DELETE CASCADE, which needs foreign_keys=ON).
  for (const char* sql :
       {"DELETE FROM metrics WHERE job_id IN (SELECT id FROM jobs WHERE run_id = ?1 AND job_key = ?2)",
        "DELETE FROM layers WHERE job_id IN (SELECT id FROM jobs WHERE run_id = ?1 AND job_key = ?2)",
        "DELETE FROM artifacts WHERE job_id IN (SELECT id FROM jobs WHERE run_id = ?1 AND job_key = ?2)",
        "DELETE FROM jobs WHERE run_id = ?1 AND job_key = ?2"}) {
    Stmt del(db);
    QEVAL_RETURN_IF_ERROR(del.prepare(sql));
    del.integer(1, run_id);
    del.text(2, job.id);
    QEVAL_RETURN_IF_ERROR(del.run());
  }
  Stmt ins(db);
  QEVAL_RETURN_IF_ERROR(ins.prepare(
      "INSERT INTO jobs(run_id, job_key, model, chip, mode, task, cfg_path, cfg_hash, status, message, "
      "signal, seconds, samples, baseline_cache_hit, quant_cache_hit, log_tail) "
      "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
  ins.integer(1, run_id);
  ins.text(2, job.id);
  ins.text(3, job.model);
  ins.text(4, job.chip);
  ins.text(5, job.mode);
  ins.text(6, job.task);
  ins.text(7, job.cfg_path);
  ins.text(8, cfg_hash.empty() ? job.cfg_hash : cfg_hash);
  ins.text(9, job.status);
  ins.text(10, job.message);
  ins.integer(11, job.signal);
  ins.real(12, job.seconds);
  ins.integer(13, job.samples);
  ins.integer(14, job.baseline_cache_hit);
  ins.integer(15, job.quant_cache_hit);
  // NULL = no log ("" is one empty line).
  if (job.log_tail.empty()) ins.null(16); else ins.text(16, join_lines(job.log_tail));
  QEVAL_RETURN_IF_ERROR(ins.run());
  const int64_t job_id = sqlite3_last_insert_rowid(db);

  Stmt m(db);
  QEVAL_RETURN_IF_ERROR(m.prepare(
      "INSERT INTO metrics(job_id, name, value, baseline, delta, tolerance, gated, pass, allowed_drop) "
      "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)"));
  for (const MetricResult& x : job.metrics) {
    m.integer(1, job_id);
    m.text(2, x.name);
    m.real(3, x.value);
    m.real(4, x.baseline);
    m.real(5, x.delta);
    m.text(6, x.tolerance);
    m.integer(7, x.gated);
    m.integer(8, x.pass);
    m.real(9, x.allowed_drop);
    QEVAL_RETURN_IF_ERROR(m.run());
  }
  Stmt l(db);
  QEVAL_RETURN_IF_ERROR(l.prepare(
      "INSERT INTO layers(job_id, idx, name, op, cos, euclid, sqnr, max_lsb, pass, lo, hi, saturation, outlier, "
      "scale, zero_point, bits) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
  for (size_t i = 0; i < job.layers.size(); ++i) {
    const LayerResult& x = job.layers[i];
    l.integer(1, job_id);
    l.integer(2, int64_t(i));
    l.text(3, x.name);
    l.text(4, x.op);
    l.real(5, x.cos);
    l.real(6, x.euclid);
    l.real(7, x.sqnr);
    l.integer(8, x.max_lsb);
    l.integer(9, x.pass);
    l.real(10, x.lo);
    l.real(11, x.hi);
    l.real(12, x.saturation);
    l.real(13, x.outlier);
    l.real(14, x.scale);
    l.integer(15, x.zero_point);
    l.integer(16, x.bits);
    QEVAL_RETURN_IF_ERROR(l.run());
  }
  // The content hash is filled in by whoever hashes artifacts; "" until then.
  Stmt a(db);
  QEVAL_RETURN_IF_ERROR(a.prepare("INSERT INTO artifacts(job_id, kind, path, hash) VALUES(?, ?, ?, ?)"));
  for (const auto& [kind, file] : job.artifacts) {
    a.integer(1, job_id);
    a.text(2, kind);
    a.text(3, file);
    auto h = job.artifact_hashes.find(kind);
    a.text(4, h == job.artifact_hashes.end() ? "" : h->second);
    QEVAL_RETURN_IF_ERROR(a.run());
  }
  return tx.commit();
}

JobResult read_job_row(const Stmt& st) {
  JobResult j;
  j.id = st.col_text(1);
  j.model = st.col_text(2);
  j.chip = st.col_text(3);
  j.mode = st.col_text(4);
  j.task = st.col_text(5);
  j.cfg_path = st.col_text(6);
  j.status = st.col_text(7);
  j.message = st.col_text(8);
  j.signal = int(st.col_int(9));
  j.seconds = st.col_real(10);
  j.samples = st.col_int(11);
  j.baseline_cache_hit = st.col_int(12) != 0;
  j.quant_cache_hit = st.col_int(13) != 0;
  if (!st.col_null(14)) j.log_tail = split_lines(st.col_text(14));
  j.cfg_hash = st.col_text(15);
  return j;
}

// Steps `st` (bound to one job id) to the end, calling row() for each row, then resets it.
template <typename F>
Status each_row(Stmt& st, int64_t job_id, F&& row) {
  st.integer(1, job_id);
  for (;;) {
    auto r = st.step();
    if (!r.is_ok() || !*r) {
      st.reset();
      return r.status();
    }
    row();
  }
}

Result<std::vector<JobResult>> read_jobs(sqlite3* db, int64_t run_id) {
  std::vector<JobResult> out;
  std::vector<int64_t> ids;
  Stmt st(db);
  QEVAL_RETURN_IF_ERROR(st.prepare(
      "SELECT id, job_key, model, chip, mode, task, cfg_path, status, message, signal, seconds, samples, "
      "baseline_cache_hit, quant_cache_hit, log_tail, cfg_hash FROM jobs WHERE run_id = ? ORDER BY id"));
  QEVAL_RETURN_IF_ERROR(each_row(st, run_id, [&] {
    ids.push_back(st.col_int(0));
    out.push_back(read_job_row(st));
  }));
  Stmt m(db), l(db), a(db);
  QEVAL_RETURN_IF_ERROR(m.prepare(
      "SELECT name, value, baseline, delta, tolerance, gated, pass, allowed_drop FROM metrics "
      "WHERE job_id = ? ORDER BY rowid"));
  QEVAL_RETURN_IF_ERROR(l.prepare(
      "SELECT name, op, cos, euclid, sqnr, max_lsb, pass, lo, hi, saturation, outlier, scale, zero_point, bits "
      "FROM layers WHERE job_id = ? ORDER BY idx"));
  QEVAL_RETURN_IF_ERROR(a.prepare("SELECT kind, path, hash FROM artifacts WHERE job_id = ?"));
  for (size_t i = 0; i < out.size(); ++i) {
    JobResult& j = out[i];
    QEVAL_RETURN_IF_ERROR(each_row(m, ids[i], [&] {
      j.metrics.push_back({m.col_text(0), m.col_real(1), m.col_real(2), m.col_real(3), m.col_text(4),
                           m.col_int(5) != 0, m.col_int(6, 1) != 0, m.col_real(7)});
    }));
    QEVAL_RETURN_IF_ERROR(each_row(l, ids[i], [&] {
      LayerResult x{l.col_text(0), l.col_text(1), l.col_real(2), l.col_real(3), l.col_real(4),
                    l.col_int(5, -1), l.col_int(6, 1) != 0};
      x.lo = l.col_real(7);
      x.hi = l.col_real(8);
      x.saturation = l.col_real(9);
      x.outlier = l.col_real(10);
      x.scale = l.col_real(11);
      x.zero_point = l.col_int(12, 0);
      x.bits = static_cast<int>(l.col_int(13, 0));
      j.layers.push_back(x);
    }));
    QEVAL_RETURN_IF_ERROR(each_row(a, ids[i], [&] {
      j.artifacts[a.col_text(0)] = a.col_text(1);
      if (!a.col_text(2).empty()) j.artifact_hashes[a.col_text(0)] = a.col_text(2);
    }));
  }
  return out;
}

}  // namespace

Status ResultStore::add_job(int64_t run_id, const JobResult& job, const std::string& cfg_hash) {
  return insert_job(db_, run_id, job, cfg_hash)
      .with_context(fmt::format("{}: add_job '{}' to run {}", path_, job.id, run_id));
}

Status ResultStore::finish_run(int64_t run_id, const std::string& status, int exit_code, double seconds) {
  Stmt st(db_);
  Status s = st.prepare("UPDATE runs SET finished = ?, status = ?, exit_code = ?, seconds = ? WHERE id = ?");
  if (s.is_ok()) {
    st.text(1, now_utc());
    st.text(2, status);
    st.integer(3, exit_code);
    st.real(4, seconds);
    st.integer(5, run_id);
    s = st.run();
  }
  if (!s.is_ok()) return s.with_context(path_ + ": finish_run");
  if (sqlite3_changes(db_) == 0) return not_found("{}: no run {}", path_, run_id);
  return Status::ok();
}

namespace {

constexpr const char* kRunColumns =
    "SELECT id, started, finished, status, command, host, git_sha, fast_test, seconds, exit_code, uuid, sweep, shard "
    "FROM runs";

RunInfo read_run_row(const Stmt& st) {
  RunInfo r;
  r.id = st.col_int(0);
  r.started = st.col_text(1);
  r.finished = st.col_text(2);
  r.status = st.col_text(3);
  r.command = st.col_text(4);
  r.host = st.col_text(5);
  r.git_sha = st.col_text(6);
  r.fast_test = st.col_int(7) != 0;
  r.seconds = st.col_null(8) ? 0 : st.col_real(8);  // NULL while running
  r.exit_code = int(st.col_int(9, -1));
  r.uuid = st.col_text(10);
  r.sweep = st.col_text(11);
  r.shard = st.col_text(12);
  return r;
}

}  // namespace

Result<RunInfo> ResultStore::run(int64_t id) const {
  Stmt st(db_);
  QEVAL_RETURN_IF_ERROR(st.prepare(fmt::format("{} WHERE id = ?", kRunColumns).c_str()).with_context(path_));
  st.integer(1, id);
  auto row = st.step();
  if (!row.is_ok()) return row.status().with_context(path_);
  if (!*row) return not_found("{}: no run {}", path_, id);
  return read_run_row(st);
}

Result<std::vector<RunInfo>> ResultStore::runs() const {
  Stmt st(db_);
  QEVAL_RETURN_IF_ERROR(st.prepare(fmt::format("{} ORDER BY id", kRunColumns).c_str()).with_context(path_));
  std::vector<RunInfo> out;
  for (;;) {
    auto row = st.step();
    if (!row.is_ok()) return row.status().with_context(path_);
    if (!*row) break;
    out.push_back(read_run_row(st));
  }
  return out;
}

Result<int64_t> ResultStore::sweep_run(const std::string& sweep) const {
  Stmt st(db_);
  QEVAL_RETURN_IF_ERROR(
      st.prepare("SELECT id FROM runs WHERE sweep = ? AND shard IS NULL ORDER BY id LIMIT 1").with_context(path_));
  st.text(1, sweep);
  auto row = st.step();
  if (!row.is_ok()) return row.status().with_context(path_);
  return *row ? st.col_int(0) : int64_t{0};
}

Status ResultStore::add_run_part(int64_t run_id, const RunPart& part) {
  Stmt st(db_);
  Status s = st.prepare("INSERT INTO run_parts(run_id, uuid, shard, status) VALUES(?, ?, ?, ?)");
  if (s.is_ok()) {
    st.integer(1, run_id);
    st.text(2, part.uuid);
    st.text(3, part.shard);
    st.text(4, part.status);
    s = st.run();
  }
  return s.is_ok() ? s : s.with_context(path_ + ": add_run_part");
}

Result<std::vector<RunPart>> ResultStore::run_parts(int64_t run_id) const {
  Stmt st(db_);
  QEVAL_RETURN_IF_ERROR(
      st.prepare("SELECT uuid, shard, status FROM run_parts WHERE run_id = ? ORDER BY rowid").with_context(path_));
  st.integer(1, run_id);
  std::vector<RunPart> parts;
  while (true) {
    auto row = st.step();
    if (!row.is_ok()) return row.status().with_context(path_);
    if (!*row) break;
    parts.push_back({st.col_text(0), st.col_text(1), st.col_text(2)});
  }
  return parts;
}

Status ResultStore::update_run(const RunInfo& info) {
  Stmt st(db_);
  Status s = st.prepare("UPDATE runs SET started = ?, finished = ?, status = ?, exit_code = ?, seconds = ? WHERE id = ?");
  if (s.is_ok()) {
    st.text(1, info.started);
    if (info.finished.empty()) st.null(2); else st.text(2, info.finished);
    st.text(3, info.status);
    if (info.exit_code < 0) st.null(4); else st.integer(4, info.exit_code);
    st.real(5, info.seconds);
    st.integer(6, info.id);
    s = st.run();
  }
  if (!s.is_ok()) return s.with_context(path_ + ": update_run");
  if (sqlite3_changes(db_) == 0) return not_found("{}: no run {}", path_, info.id);
  return Status::ok();
}

Result<int64_t> ResultStore::latest_run_id() const {
  Stmt st(db_);
  QEVAL_RETURN_IF_ERROR(st.prepare("SELECT max(id) FROM runs").with_context(path_));
  auto row = st.step();
  if (!row.is_ok()) return row.status().with_context(path_);
  if (!*row || st.col_null(0)) return not_found("{}: no runs yet", path_);
  return st.col_int(0);
}

Result<std::vector<JobResult>> ResultStore::jobs(int64_t run_id) const {
  QEVAL_RETURN_IF_ERROR(run(run_id).status());
  // One read transaction: a consistent snapshot even while another process writes.
  Transaction tx(db_);
  QEVAL_RETURN_IF_ERROR(tx.begin("BEGIN").with_context(path_));
  auto r = read_jobs(db_, run_id);
  if (!r.is_ok()) return r.status().with_context(fmt::format("{}: jobs of run {}", path_, run_id));
  return r;
}

Status ResultStore::set_findings(int64_t run_id, const std::vector<Finding>& findings) {
  auto write = [&]() -> Status {
    Transaction tx(db_);
    QEVAL_RETURN_IF_ERROR(tx.begin("BEGIN IMMEDIATE"));
    Stmt del(db_);
    QEVAL_RETURN_IF_ERROR(del.prepare("DELETE FROM findings WHERE run_id = ?"));
    del.integer(1, run_id);
    QEVAL_RETURN_IF_ERROR(del.run());
    Stmt ins(db_);
    QEVAL_RETURN_IF_ERROR(ins.prepare(
        "INSERT INTO findings(run_id, idx, kind, subject, rank, value, value2, detail) VALUES(?, ?, ?, ?, ?, ?, ?, ?)"));
    for (size_t i = 0; i < findings.size(); ++i) {
      const Finding& f = findings[i];
      ins.integer(1, run_id);
      ins.integer(2, int64_t(i));
      ins.text(3, f.kind);
      ins.text(4, f.subject);
      ins.integer(5, f.rank);
      ins.real(6, f.value);
      ins.real(7, f.value2);
      ins.text(8, f.detail);
      QEVAL_RETURN_IF_ERROR(ins.run());
    }
    return tx.commit();
  };
  return write().with_context(fmt::format("{}: findings of run {}", path_, run_id));
}

Result<std::vector<Finding>> ResultStore::findings(int64_t run_id) const {
  std::vector<Finding> out;
  Stmt st(db_);
  Status s = st.prepare("SELECT kind, subject, rank, value, value2, detail FROM findings WHERE run_id = ? ORDER BY idx");
  if (s.is_ok()) {
    s = each_row(st, run_id, [&] {
      out.push_back({st.col_text(0), st.col_text(1), st.col_text(5), st.col_int(2), st.col_real(3), st.col_real(4)});
    });
  }
  if (!s.is_ok()) return s.with_context(fmt::format("{}: findings of run {}", path_, run_id));
  return out;
}

}  // namespace qeval
