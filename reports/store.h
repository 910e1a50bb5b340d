// The results store: one SQLite file (default results/qeval.db) that every
// run_eval run appends to. Torch-free. Schema (docs/results-store.md):
//
//   runs(id INTEGER PRIMARY KEY, started TEXT, finished TEXT, status TEXT,
//        command TEXT, host TEXT, git_sha TEXT, fast_test INTEGER, seconds REAL,
//        exit_code INTEGER, uuid TEXT UNIQUE,                           (uuid: v2)
//        sweep TEXT, shard TEXT)                   (v3; shard "i/N", NULL when whole)
//   run_parts(run_id, uuid TEXT UNIQUE, shard, status)   (v3: shard runs merged into run_id)
//   jobs(id INTEGER PRIMARY KEY, run_id, job_key TEXT, model, chip, mode, task,
//        cfg_path, cfg_hash, status, message, signal, seconds, samples,
//        baseline_cache_hit, quant_cache_hit, log_tail TEXT)   UNIQUE(run_id, job_key)
//   metrics(job_id, name, value, baseline, delta, tolerance, gated, pass, allowed_drop)  (allowed_drop: v2)
//   layers(job_id, idx, name, op, cos, euclid, sqnr, max_lsb, pass,
//          lo, hi, saturation, outlier, scale, zero_point, bits)          (v4: the profile)
//   findings(run_id, idx, kind, subject, rank, value, value2, detail)   (v4: qeval diagnose)
//   artifacts(job_id, kind, path, hash)
//
// NaN values are stored as NULL. WAL journal, busy timeout 30 s, schema version
// in PRAGMA user_version (a newer version than this code knows is an error;
// older ones are migrated in place). One transaction per finished job.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "harness/job_result.h"

struct sqlite3;

namespace qeval {

inline constexpr int kStoreSchemaVersion = 4;

struct RunInfo {
  int64_t id = 0;
  std::string uuid;               // identifies the run across databases (merge); made by begin_run
  std::string started, finished;  // ISO 8601 UTC
  std::string status;             // running | done | interrupted | partial (a sweep missing shards)
  std::string command, host, git_sha;
  bool fast_test = false;
  double seconds = 0;
  int exit_code = -1;
  std::string sweep;  // run_eval --sweep: the sweep this run is a shard of
  std::string shard;  // "i/N" for a shard's own run; empty for a whole run or a merged sweep
};

// One finding of `qeval diagnose` (docs/diagnose.md), stored with its run:
//   check        subject: the check's name, detail: what it found (value: a figure)
//   sensitivity  subject: a layer; rank; value: the metric with only this layer
//                quantized; value2: with only this layer in float
//   fix          subject: a layer; detail: its change (layer_bits 8 | int16 | float)
//   fix_result   detail: the patch file; value: metric before; value2: after
struct Finding {
  std::string kind, subject, detail;
  int64_t rank = 0;
  double value = kNaN, value2 = kNaN;
};

// A shard run folded into a merged sweep run.
struct RunPart {
  std::string uuid, shard, status;
};

class ResultStore {
 public:
  // Opens (creating the file and its folder when missing) and migrates.
  static Result<std::unique_ptr<ResultStore>> open(const std::string& path);
  ~ResultStore();
  ResultStore(const ResultStore&) = delete;
  ResultStore& operator=(const ResultStore&) = delete;

  // A new run row (status running); returns its id.
  Result<int64_t> begin_run(const RunInfo& info);
  // A finished run copied from another database, every field as given (merge).
  Result<int64_t> import_run(const RunInfo& info);
  // True for a run's uuid and for a shard run already merged into a sweep run.
  Result<bool> has_run_uuid(const std::string& uuid) const;
  // The merged run of a sweep (the one without a shard), 0 when there is none.
  Result<int64_t> sweep_run(const std::string& sweep) const;
  Status add_run_part(int64_t run_id, const RunPart& part);
  Result<std::vector<RunPart>> run_parts(int64_t run_id) const;
  // Rewrites started, finished, status, exit_code and seconds of a run.
  Status update_run(const RunInfo& info);
  Result<std::vector<RunInfo>> runs() const;  // all, oldest first
  // One transaction: the job row with its metrics, layers and artifacts.
  // Writing the same job_key twice for a run replaces the earlier rows.
  Status add_job(int64_t run_id, const JobResult& job, const std::string& cfg_hash = "");
  Status finish_run(int64_t run_id, const std::string& status, int exit_code, double seconds);

  Result<RunInfo> run(int64_t id) const;
  Result<int64_t> latest_run_id() const;  // not_found when the store is empty
  Result<std::vector<JobResult>> jobs(int64_t run_id) const;  // in insertion order, metrics and layers filled
  // Replaces the run's findings (one transaction).
  Status set_findings(int64_t run_id, const std::vector<Finding>& findings);
  Result<std::vector<Finding>> findings(int64_t run_id) const;  // in the order given

  const std::string& path() const { return path_; }

 private:
  ResultStore(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  sqlite3* db_ = nullptr;
  std::string path_;
};

}  // namespace qeval
