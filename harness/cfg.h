// run_eval's inputs: per-model cfg files and model-list files (docs/run_eval.md).
// Torch-free.
//
// A model cfg is either
//   * a tpu-mlir `.cfg` (also `.ini`): `key = value` lines (or `key=value`),
//     `#` / `;` comments (whole line, or after a value when preceded by a space),
//     an optional `[DEFAULT]` section (keys before any section belong to it), and
//     qeval's block sections `[quant]`, `[qat]`, `[metric_tolerance]` whose keys
//     are those of the YAML blocks; or
//   * YAML (`.yaml`/`.yml`) with the same keys, blocks as mappings.
// `${VAR}` in a value expands from the environment; `${CFG_DIR}` is the folder
// of the cfg file. An unset variable is an error naming file:line.
// Relative paths (model_path, qat_model_path, dataset, test_input) resolve
// against the cfg's folder.
//
// A cfg patch names the cfg it changes with `base: PATH` (relative to the patch;
// bases may nest): the keys the patch gives replace the base's, inside the
// quant, qat and metric_tolerance blocks key by key; `name` defaults to the
// patch's file stem. `qeval diagnose` writes its fixes so (docs/diagnose.md):
//   base: mobilenetv2_tiny_w4.yaml
//   quant: {layer_bits: {features.1.conv.0: 8}, float_layers: [classifier]}
//
// Keys (DESIGN.md "Configuration"): base, model, model_path, qat_model_path, dataset,
// test_input, input_shapes, resize_dims, mean, scale, pixel_format,
// channel_format, keep_aspect_ratio, int8_sym_tolerance, int8_asym_tolerance,
// debug_cmd, task, metric_tolerance, fast_test_count, chip, quant, qat, name.
// Unknown keys are errors with file:line and a did-you-mean suggestion.
//
// A model list (YAML with a top-level `models` key):
//   chips: [bm1690]            # optional: default chips of the entries
//   fast_test_count: 30        # optional: default for the entries
//   models:
//     - cfg/lenet5.cfg                     # a path (relative to the list file)
//     - {cfg: cfg/resnet8.yaml, chip: [bm1690, onnx-qdq]}
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/status.h"
#include "core/text.h"  // did_you_mean
#include "quant/qconfig.h"

namespace qeval {

// metric_tolerance block. Absent fields are not gated.
struct MetricTolerance {
  double top1_drop = -1;   // points: fp32 top-1 − int8 top-1 must be <= this (>= 0 when set)
  double top5_drop = -1;   // points
  double map_ratio = -1;   // int8 mAP / fp32 mAP must be >= this (0..1]
  double map_drop = -1;    // fp32 mAP − int8 mAP (absolute, 0..1) must be <= this
  std::string source;      // "file:line" of the block
};

// A similarity tolerance "cos,euclid" (tpu-mlir's int8_sym_tolerance).
struct SimilarityTolerance {
  double cos = -1, euclid = -1;  // -1: not set
  std::string source;
  bool set() const { return cos >= 0; }
};

struct ModelCfg {
  std::string path;          // the cfg file
  std::string name;          // `name`, else the file stem ("resnet18_qat.cfg" -> "resnet18_qat")
  std::string model;         // zoo model (`model`); "" when model_path is a file of its own
  std::string model_path;    // fp32 model file (.qmodel float graph, .onnx, .pt); "" = zoo baseline
  std::string qat_model_path;  // already quantized model (.qmodel / QDQ .onnx) or a folder holding one
  // classify | detect | raw ("" = from the zoo model; an external model without `model`:
  // classify). raw: no post-processing; the job scores the outputs' similarity to fp32.
  std::string task;
  std::string dataset;       // ImageFolder root ("" = the zoo model's own test set)
  // ImageFolder that calibration and QAT read, through the cfg's preprocessing
  // ("" = `dataset` for an external model, the zoo model's training set otherwise).
  std::string calibration_dataset;
  std::string test_input;    // one image for the per-layer comparison ("" = first eval sample)
  std::vector<std::string> chips;   // `chip`: one name or a list ("" = from the list file / bm1690)
  int64_t fast_test_count = 30;
  bool fast_test_count_set = false;
  std::string debug_cmd;
  SimilarityTolerance int8_sym_tolerance, int8_asym_tolerance;
  MetricTolerance metric_tolerance;
  // Preprocessing keys as raw strings (datasets/preprocess.h parse_preprocess_config):
  // input_shapes, resize_dims, mean, scale, pixel_format, channel_format, keep_aspect_ratio.
  // YAML lists are joined with ',' ("[[1,3,224,224]]" stays as written).
  std::map<std::string, std::string> preprocess;
  // The `quant` and `qat` blocks (quant/qconfig.h parse_quant_config /
  // parse_qat_config, so their errors name file:line too); defaults when absent.
  QuantConfig quant;
  QatConfig qat;
  bool has_qat_block = false;
};

// Loads one model cfg (.cfg/.ini or .yaml/.yml by extension; other extensions are
// an error). Every error names "file:line: key".
Result<ModelCfg> load_model_cfg(const std::string& path);
// Same from text; `path` names the file and decides the format.
Result<ModelCfg> parse_model_cfg(const std::string& text, const std::string& path);

// One entry of a model list, or a cfg given on the command line.
struct CfgEntry {
  std::string cfg_path;
  std::vector<std::string> chips;  // entry's chips ("" = cfg's own / list default)
  int64_t fast_test_count = -1;    // list default (-1 = none)
};

// A command-line argument is a model list when it is YAML with a top-level
// `models` key; otherwise it is a model cfg. Returns the entries in order.
Result<std::vector<CfgEntry>> expand_cfg_argument(const std::string& path);


}  // namespace qeval
