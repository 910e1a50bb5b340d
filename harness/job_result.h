// What one run_eval job produced: the record a worker process writes (JSON) and
// the parent reads back, stores in SQLite and prints. Torch-free.
//
// Status of a job:
//   pass     every gated metric within its tolerance
//   fail     the job ran, a gated metric is outside its tolerance
//   error    the job could not run (bad cfg value, missing data, unsupported op)
//   crashed  the worker died (signal) or exited without a result
//   timeout  the worker ran past --timeout and was killed
//   interrupted  stopped by Ctrl-C / SIGTERM before it finished (never stored; --resume reruns it)
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "core/status.h"

namespace qeval {

inline constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

struct MetricResult {
  std::string name;       // top1, top5 (percent), mAP, mAP50 (0..1), output_cos, min_layer_cos, ...
  double value = kNaN;    // int8 (the simulator's)
  double baseline = kNaN; // fp32
  double delta = kNaN;    // value - baseline
  std::string tolerance;  // human-readable rule: "drop <= 1.00", ">= 0.97", "ratio >= 0.95"; "" = not gated
  bool gated = false;     // part of the PASS/FAIL decision
  bool pass = true;
  // How far the int8 value may fall between two runs before `run_eval compare`
  // calls it a regression (top1/top5: the drop tolerance in points; mAP: map_drop
  // or (1 - map_ratio) x fp32); NaN: only a PASS -> FAIL change counts.
  double allowed_drop = kNaN;
};

// fp32 vs simulator similarity of one activation (tpu-mlir's npz compare measures).
struct LayerResult {
  std::string name;        // value name in the graph
  std::string op;          // op of the node that produces it
  double cos = kNaN;       // cosine similarity
  double euclid = kNaN;    // 1 - ||a - b|| / ||(a + b) / 2||
  double sqnr = kNaN;      // dB
  int64_t max_lsb = -1;    // max |quantize(fp32) - q_sim| in LSBs (-1: not an integer value)
  bool pass = true;        // cos and euclid within the job's similarity tolerance
  // Profile of the fp32 activation against the simulator's quantizer (qeval diagnose).
  double lo = kNaN, hi = kNaN;  // fp32 min and max on the comparison samples
  double saturation = kNaN;     // fraction of fp32 elements outside the quantizer's range (clipped)
  double outlier = kNaN;        // max |x| / 99.9th percentile of |x|: > 4 means outliers set the range
  double scale = kNaN;          // the simulator's scale (per-tensor; per-channel: the largest)
  int64_t zero_point = 0;
  int bits = 0;                 // integer bits of the value in the simulator (0: float)
};

struct JobResult {
  std::string id;          // stable: "<model>/<chip>/<mode>"
  std::string model, chip, mode, task, cfg_path;
  std::string status = "error";
  std::string message;     // error / failure summary, one line
  int signal = 0;          // crashed: the signal that killed the worker
  std::vector<std::string> log_tail;  // crashed / timeout / error: last lines of the worker's log
  double seconds = 0;
  int64_t samples = 0;     // evaluation samples
  bool baseline_cache_hit = false, quant_cache_hit = false;
  std::vector<MetricResult> metrics;
  std::vector<LayerResult> layers;
  std::map<std::string, std::string> artifacts;  // kind -> path (qmodel, cali_table, qdq_onnx, fp32, log)
  std::map<std::string, std::string> artifact_hashes;  // kind -> XXH64 of the file (filled by the parent)
  std::string cfg_hash;    // XXH64 of the cfg file's bytes (filled by the parent)

  bool passed() const { return status == "pass"; }
  const MetricResult* metric(const std::string& name) const;
};

// What the parent hands a worker process (`run_eval --worker SPEC.json`).
struct JobSpec {
  std::string id, cfg_path, chip, mode;  // mode: ptq | qat | qat_model
  bool fast_test = false;
  int64_t count = 0;            // evaluation samples (0 = the whole test set)
  int64_t batch_size = 0;       // simulator / fp32 batch (0 = 100)
  int threads = 1;              // simulator (TBB) threads of this worker
  // LibTorch intra-op threads (training, QAT, fp32 inference). The numbers
  // depend on it: oneDNN splits some reductions by thread count (a 1x1
  // convolution's weight gradient), so it is part of the cache keys and is
  // set apart from `threads`, which changes speed only.
  int torch_threads = 1;
  std::string qat_model_path;   // --qat_model_path: overrides the cfg's
  std::string debug_cmd;        // --debug_cmd: overrides the cfg's
  std::string work_dir;         // the job's folder: log, result, artifacts
  std::string stage_file;       // the worker writes its current stage here
  int64_t compare_count = 4;    // samples of the per-layer fp32 vs simulator comparison
  // LibTorch device of fp32 training and QAT (run_eval --device; docs/cuda.md).
  // The simulator and fp32 inference for the metrics run on the CPU.
  std::string device = "cpu";
};
std::string job_spec_to_json(const JobSpec& s);

// Sharded sweeps (`run_eval --shard i/N`): "i/N" with 1 <= i <= N.
struct Shard {
  int index = 1, count = 1;
};
Result<Shard> parse_shard(const std::string& text);
// The jobs of one shard, in plan order. A cfg's jobs (its chips and modes)
// stay together, so a shard trains each fp32 baseline it needs once; cfgs go,
// in plan order, to the shard with the fewest jobs so far (ties: the lowest
// index). With fewer cfgs than shards, jobs are dealt one by one instead. The
// partition depends only on the plan, so every shard of a sweep computes the
// same one.
std::vector<JobSpec> select_shard(const std::vector<JobSpec>& plan, const Shard& shard);
Result<JobSpec> job_spec_from_json(const std::string& text, const std::string& source);

std::string job_result_to_json(const JobResult& r);
// `source` names the file in errors.
Result<JobResult> job_result_from_json(const std::string& text, const std::string& source);

// A metric value as every table prints it: top1/top5 (percent) with 2 decimals,
// the rest (mAP, cos, euclid, SQNR) with 4; NaN as "-"; `sign` adds + to positives.
std::string format_metric(const std::string& metric, double v, bool sign = false);

// Exit code of a whole run (DESIGN.md): 2 if any job is error/crashed/timeout,
// else 1 if any failed, else 0.
int exit_code_of(const std::vector<JobResult>& jobs);

}  // namespace qeval
