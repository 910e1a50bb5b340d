// `qeval quantize`: the whole QAT flow for a zoo classifier, LibTorch inside
// (none in this header):
//   prepare (quant/plan) -> calibrate -> PTQ model -> QAT fine-tune (optional)
//   -> freeze -> convert_deploy -> lower for the chip profile -> score in the
//   simulator, with the deploy-aligned forward checked against the simulator
//   element for element, and the plain fake-quant model's disagreement per layer.
// Writes into the output folder: MODEL.qmodel (lowered program), MODEL_ptq.qmodel,
// MODEL_cali_table (tpu-mlir format), MODEL_qdq.onnx, summary.json, and QAT
// checkpoints under checkpoints/ (resumable).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "models/trainer.h"
#include "quant/qconfig.h"

namespace qeval {

struct QuantizeOptions {
  QuantizeCfg cfg;
  bool ptq_only = false;
  int threads = 2;
  std::string out_dir;
  bool resume = false;     // continue QAT from out_dir/checkpoints
  bool progress = true;
  int64_t eval_limit = 0;  // test images scored (0 = all 10k)
  int64_t train_limit = 0; // training images used by QAT (0 = all 60k)
  bool compare = true;     // aligned/fake-quant vs simulator comparison
  bool score_ptq = true;   // score the PTQ model in the simulator (it is written either way)
  // false: only produce the artifacts (no fp32/PTQ/fake-quant/simulator scoring);
  // run_eval scores them itself. Detectors (det_tiny) need evaluate = false.
  bool evaluate = true;
  std::string data_root;
  uint64_t seed = 0;
  // Data-parallel QAT (models/trainer.h distributed_from_env): every rank
  // calibrates alike and trains on its slice of each batch; only rank 0
  // scores and writes the outputs.
  std::shared_ptr<const Distributed> dist;
  // LibTorch device of calibration and QAT ("cpu", "cuda", "cuda:N"; docs/cuda.md).
  std::string device = "cpu";
  // Calibration and QAT images of a model from outside the zoo (an ImageFolder read
  // through the cfg's preprocessing; float NCHW). Set: used instead of the zoo
  // model's training set, and QAT distils (below): the images carry no usable labels.
  std::optional<Tensor> train_images;
  // QAT loss: the mean squared error between the QAT model's outputs and the fp32
  // model's on the same batch (label-free distillation) instead of the task loss.
  bool distill = false;
};

// Disagreement of one integer activation between a QAT forward and the simulator.
struct LayerAgreement {
  std::string value;
  int64_t elements = 0;
  int64_t mismatched = 0;
  int64_t max_lsb = 0;
};

struct QuantizeResult {
  std::string model, chip;
  EvalResult fp32, ptq_sim, qat_fake_quant, qat_sim;
  bool did_qat = false;
  std::vector<double> qat_epoch_loss;
  double qat_seconds = 0, qat_images_per_second = 0;
  // Deploy-aligned forward vs simulator and plain fake quant vs simulator.
  std::vector<LayerAgreement> aligned, fake_quant;
  int64_t aligned_elements = 0, aligned_mismatched = 0;
  double class_agreement_aligned = 0;  // fraction of images with the same top-1
  std::vector<std::string> float_nodes;  // hybrid: nodes the simulator runs in float
  std::vector<std::string> int16_values; // activations kept in 16 bits
  std::vector<std::string> files;      // what was written
};

Result<QuantizeResult> quantize_zoo_model(const ZooModel& model, const Graph& fp32, const QuantizeOptions& opts);

// Lowers a quantized graph (or a qmodel lowered for another profile) for `p` at
// batch 1, then frees the inputs' batch dimension: the simulator and `qeval sim`
// run any batch size, and lowering's parameters do not depend on it.
Result<Graph> lower_batch_free(Graph quantized, const ChipProfile& p);

// summary.json text of a result.
std::string quantize_summary_json(const QuantizeResult& r);

}  // namespace qeval
