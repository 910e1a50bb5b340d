// Reading the results store across runs: trends, run-to-run comparison,
// per-model history, merging sharded databases (run_eval report|compare|merge|
// history, docs/results-store.md). Torch-free.
#pragma once

#include <string>
#include <vector>

#include "reports/report.h"
#include "reports/store.h"

namespace qeval {

// Trends of the primary metric of every job of `run_id`, over the last `last_n`
// runs up to and including it (runs without that job are skipped).
Result<std::vector<Trend>> trends_for_run(const ResultStore& store, int64_t run_id, int last_n);

// B against A, job by job and metric by metric (jobs of both runs). A metric
// regressed when it passed in A and fails in B, or when its int8 value fell by
// more than the metric's allowed drop (top1/top5: the top*_drop tolerance in
// points; mAP: map_drop, or (1 - map_ratio) x fp32). A job regressed when it
// passed in A and did not pass in B.
Result<std::vector<MetricDiff>> compare_runs(const ResultStore& store, int64_t run_a, int64_t run_b);

// One row per run holding the job: run id, start time, chip, mode, fp32, int8, result.
struct HistoryRow {
  int64_t run_id = 0;
  std::string started, job_key, status, metric;
  double fp32 = kNaN, int8 = kNaN;
  bool pass = false;
};
Result<std::vector<HistoryRow>> metric_history(const ResultStore& store, const std::string& model,
                                               const std::string& metric);

struct MergeStats {
  int64_t runs_added = 0, runs_skipped = 0, jobs_added = 0, shards_merged = 0;
};
// Copies every run of `source_path` not already in `target` (runs are identified
// by their uuid), with their jobs, metrics, layers and artifacts. The shard runs
// of a sweep (`run_eval --shard i/N --sweep S`) become one run: the first shard
// merged creates it, later ones add their jobs; it is `done` once all N are in
// (`partial` before), and merging a shard again changes nothing.
Result<MergeStats> merge_into(ResultStore& target, const std::string& source_path);

}  // namespace qeval
