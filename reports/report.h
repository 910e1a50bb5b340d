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
// The metric that always shows, gated or not: top1 for a classifier, mAP for a detector.
std::string primary_metric_of(const JobResult& j);

std::string results_table_text(const std::vector<JobResult>& jobs);
std::string results_markdown(const RunInfo& run, const std::vector<JobResult>& jobs);
// JUnit XML: one <testsuite name="qeval"> with one <testcase classname="MODEL.CHIP.MODE"
// name="METRIC"> per gated metric (<failure> when it failed) and one testcase
// named "job" with <error> for jobs that errored, crashed or timed out.
std::string results_junit(const RunInfo& run, const std::vector<JobResult>& jobs);
// History of one (job, metric) over runs, oldest first (trend plots).
struct TrendPoint {
  int64_t run_id = 0;
  std::string started;
  double fp32 = kNaN, int8 = kNaN;
};
struct Trend {
  std::string job_key, metric;  // "resnet8/bm1690/qat", "top1"
  std::vector<TrendPoint> points;
};

// One row of a run-to-run comparison (reports/history.h compare_runs).
struct MetricDiff {
  std::string job_key, metric;
  double before = kNaN, after = kNaN, delta = kNaN;  // int8 values; delta = after - before
  std::string before_status, after_status;           // the metric's PASS/FAIL, or the job's status
  std::string rule;                                   // why it counts as a regression, "" when it does not
  bool regressed = false;
};

// What the HTML report shows beyond the run's own jobs.
struct HtmlExtras {
  std::vector<Trend> trends;      // one SVG line plot each (int8 and fp32 over runs)
  int64_t baseline_run = 0;       // the run `diff` compares against (0: none)
  std::vector<MetricDiff> diff;   // regressions highlighted
};

// One self-contained HTML file: summary table with PASS/FAIL colours, per-model
// trend plots (int8 vs fp32 of the primary metric over the last runs), the diff
// against a baseline run with regressions highlighted, and per job the per-layer
// cosine similarity as an inline SVG bar chart. Every plotted point carries its
// value in a data-value attribute.
std::string results_html(const RunInfo& run, const std::vector<JobResult>& jobs, const HtmlExtras& extras = {});

// Pieces other HTML pages reuse (reports/diagnose_report.cc).
std::string html_escape(const std::string& s);
std::string layer_cos_chart(const JobResult& j);  // the per-layer cosine bar chart of results_html
const char* report_css();

}  // namespace qeval
