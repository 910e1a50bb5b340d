// run_eval's process pool: each job runs in its own worker process (the same
// binary, `--worker SPEC.json --worker-out RESULT.json`), at most pool_size at
// a time, scheduled on a TBB task arena. A worker that dies from a signal or
// exits without a result is recorded as `crashed` (signal, last log lines); one
// that runs past the timeout is killed (SIGKILL to its process group) and
// recorded as `timeout`. The other jobs go on. Torch-free.
// Jobs stopped by RunnerOptions::stop are "interrupted": not finished, not stored,
// rerun by `run_eval --resume`.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "harness/job_result.h"

namespace qeval {

struct RunnerOptions {
  int pool_size = 2;
  double timeout_s = 0;        // per job; 0 = none
  std::string worker_exe;      // the binary to run in worker mode
  bool tty = false;            // live progress line (\r) instead of plain lines
  // Called once per finished job, serialised (the results store writes here).
  // Not called for jobs stopped by `stop`.
  std::function<void(const JobResult&)> on_done;
  // Set (e.g. by a SIGINT handler) to stop: running workers are killed, waiting
  // jobs are not started; both come back with status "interrupted".
  const std::atomic<bool>* stop = nullptr;
};

// The JobResult of each spec, in spec order. Each spec's work_dir receives
// spec.json, worker.log, result.json and the stage file.
std::vector<JobResult> run_jobs(const std::vector<JobSpec>& specs, const RunnerOptions& opts);

// The last `n` lines of a text file ("" lines dropped).
std::vector<std::string> tail_lines(const std::string& path, size_t n);

}  // namespace qeval
