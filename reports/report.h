// Report writers over the jobs of one run (run_eval --markdown/--junit/--html).
// Torch-free; they read only what the store holds.
#pragma once

#include <string>
#include <vector>

#include "harness/job_result.h"
#include "reports/store.h"

namespace qeval {

// The console / Markdown summary table: model, chip, mode, metric, fp32, int8,
// delta, tolerance, result — one row per gated metric (and one row for a job that
// did not produce metrics: status and message).
std::string results_table_text(const std::vector<JobResult>& jobs);
std::string results_markdown(const RunInfo& run, const std::vector<JobResult>& jobs);
// JUnit XML: one <testsuite name="qeval"> with one <testcase classname="MODEL.CHIP.MODE"
// name="METRIC"> per gated metric (<failure> when it failed) and one testcase
// named "job" with <error> for jobs that errored, crashed or timed out.
std::string results_junit(const RunInfo& run, const std::vector<JobResult>& jobs);
// One self-contained HTML file: summary table with PASS/FAIL colours and, per
// job, the per-layer cosine similarity as an inline SVG bar chart.
std::string results_html(const RunInfo& run, const std::vector<JobResult>& jobs);

}  // namespace qeval
