// The HTML page of a `qeval diagnose` run (docs/diagnose.md): the gate, the
// checks, the per-layer profile of the cfg's own job (cosine and saturation
// charts, the table), the sensitivity ranking as a chart and a table, and the
// fix with its before/after metric. Torch-free; reads only what the store holds.
#pragma once

#include <string>
#include <vector>

#include "harness/job_result.h"
#include "reports/store.h"

namespace qeval {

// `jobs[0]` is the profiled job (the cfg as run_eval runs it).
std::string diagnose_html(const RunInfo& run, const std::vector<JobResult>& jobs, const std::vector<Finding>& findings);

}  // namespace qeval
