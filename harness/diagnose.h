// qeval diagnose (docs/diagnose.md): why a model misses its tolerance and what to
// change. The torch-free parts, unit-tested on their own:
//   - checks of the deployed program against the float graph, the cfg and the
//     chip profile (Horizon's accuracy-tuning checklist: unfused ops, quantizer
//     configs off the profile's rules, Add/Concat inputs with mismatched scales);
//   - checks of the per-layer profile a run_eval job measured (saturation,
//     outlier-dominated ranges, NaN, the calibration/float accuracy ratio);
//   - the sensitivity ranking and the greedy search for the fewest layers to
//     change, over an evaluator the caller supplies (cmd_diagnose.cc runs each
//     evaluation as a run_eval job on the worker pool);
//   - the cfg patch that records a fix (`base:` + quant keys, harness/cfg.h).
#pragma once

#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "core/graph.h"
#include "harness/job_result.h"
#include "quant/plan.h"
#include "reports/store.h"

namespace qeval {

// Thresholds of the profile checks (Horizon's guide: calibration accuracy
// below 80% of float is a problem to look at before QAT).
struct CheckThresholds {
  double calibration_ratio = 0.80;  // PTQ metric / fp32 metric
  double saturation = 0.01;         // fraction of an activation clipped
  double outlier = 4.0;             // max|x| / p99.9|x| (4: two bits of the range spent on outliers)
  double scale_mismatch = 2.0;      // Add/Concat: largest / smallest input scale
};

// Checks of a deployed (lowered) program against its float graph, the cfg and
// the profile. Findings of kind "check"; subject names the check, detail the layer
// and what was found.
std::vector<Finding> program_checks(const Graph& fp32, const Graph& program, const QuantConfig& cfg,
                                    const ChipProfile& profile, const CheckThresholds& t = {});

// Checks of a job's per-layer profile (LayerResult lo/hi/saturation/outlier).
std::vector<Finding> layer_checks(const std::vector<LayerResult>& layers, const CheckThresholds& t = {});

// The metric a tolerance is about: top1 (points) for classifiers, mAP for detectors.
struct GateMetric {
  std::string name;        // top1 | mAP
  double fp32 = kNaN, value = kNaN;
  double allowed_drop = kNaN;  // from the cfg's metric_tolerance or --tolerance
  // The job's other gates (per-layer similarity, a second metric): run_eval must pass them too.
  bool others_pass = true;
  std::vector<std::string> other_failures;
  double drop() const { return fp32 - value; }
  bool metric_passes() const { return drop() <= allowed_drop + 1e-9; }
  bool passes() const { return metric_passes() && others_pass; }
};
// The gate metric of a finished job under `allowed_drop` (NaN: the job's own rule).
Result<GateMetric> gate_metric(const JobResult& job, double allowed_drop);

// One layer's two sensitivity measurements (PTQ, the rest of the cfg unchanged):
// only this layer quantized (the others float), and only this layer float.
struct Sensitivity {
  std::string layer;
  double only_quantized = kNaN, only_quantized_sqnr = kNaN;  // metric, output SQNR (dB)
  double only_float = kNaN, only_float_sqnr = kNaN;
  int64_t rank = 0;  // 1 = most sensitive
};
// Ranks by the metric gained when the layer alone stays float, then by the
// metric lost when it alone is quantized, then by the output SQNR of the same
// two runs (continuous, so ties among few samples still order); stable.
void rank_sensitivity(std::vector<Sensitivity>& rows, double fp32_metric, double all_quantized_metric,
                      double all_quantized_sqnr);

// What a fix does to a layer.
enum class FixAction { kBits8, kInt16, kFloat };
const char* fix_action_name(FixAction a);  // "layer_bits 8" | "int16" | "float"
Result<FixAction> parse_fix_action(const std::string& s);  // bits8 | int16 | float

// The greedy search: layers are taken in `order` (the ranking); a prefix is tried
// `batch` at a time (the pool evaluates prefixes k..k+batch-1 together) until one
// passes; then single layers are dropped from it while it still passes. `eval`
// gets a batch of layer sets and returns, for each, whether it passes and its metric.
struct FixTrial {
  std::vector<std::string> layers;
  bool pass = false;
  double metric = kNaN;
};
using FixEvaluator = std::function<Result<std::vector<FixTrial>>(const std::vector<std::vector<std::string>>&)>;
struct FixSearch {
  bool found = false;
  std::vector<std::string> layers;  // the fix (in ranking order)
  double metric = kNaN;
  std::vector<FixTrial> trials;     // every evaluation, in order
};
Result<FixSearch> search_fix(const std::vector<std::string>& order, size_t max_layers, size_t batch,
                             const FixEvaluator& eval);

// A cfg patch (YAML) over `base_cfg` that changes `layers` by `action` on top of
// the base's own quant keys (its float_layers, int16_layers, layer_bits are kept).
std::string fix_patch_yaml(const std::string& base_cfg, const std::string& name, const QuantConfig& base,
                           const std::vector<std::string>& layers, FixAction action,
                           const std::string& comment = "");
// The float_layers patch for one sensitivity run: `float_layers` replaces the base's.
std::string float_layers_patch_yaml(const std::string& base_cfg, const std::string& name,
                                    const std::vector<std::string>& float_layers);

}  // namespace qeval
