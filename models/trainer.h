// fp32 trainer over the IR (LibTorch inside, none in this header): trains a
// zoo graph on its dataset with the model's recipe, checkpointing every epoch,
// and evaluates it. Deterministic: shuffling and augmentation of epoch e come
// from (seed, e), weights from the builder's seed, so a resumed run continues
// exactly where the interrupted one would have gone (same thread count).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/graph.h"
#include "core/text.h"  // format_duration
#include "models/zoo.h"

namespace qeval {

class Distributed;  // quant/distributed.h

struct TrainOptions {
  int threads = 2;
  std::string checkpoint_dir;  // "" = no checkpoints
  bool resume = false;         // continue from the newest checkpoint in checkpoint_dir
  bool progress = true;        // live progress line on stderr
  int64_t eval_limit = 0;      // 0 = whole test set
  std::string data_root;       // Fashion-MNIST folder ("" = default)
  // Data-parallel training (run_train_loop): each global batch is split over
  // the ranks; null or world size 1 = one process.
  std::shared_ptr<const Distributed> dist;
  // LibTorch device of training ("cpu", "cuda", "cuda:N"; docs/cuda.md). The
  // simulator and the metrics always run on the CPU.
  std::string device = "cpu";
};

struct EvalResult {
  std::string metric;  // "top1" (classifiers) or "mAP" (detector)
  double top1 = 0, top5 = 0;        // percent
  std::array<double, 12> coco{};    // detector: the 12 COCO stats
  int64_t samples = 0;
  double seconds = 0;
  double primary() const { return metric == "mAP" ? coco[0] : top1; }
};

struct TrainResult {
  Graph graph;  // trained weights; metadata records recipe and accuracy
  EvalResult eval;
  std::vector<double> epoch_loss;
  double train_seconds = 0;
  double images_per_second = 0;
  int first_epoch = 0;  // > 0 when resumed
};


Result<TrainResult> train_zoo_model(const ZooModel& model, const TrainOptions& opts);

// The data-parallel group of this process from torchrun's environment (RANK,
// WORLD_SIZE, MASTER_ADDR, MASTER_PORT; quant/distributed.h); null when
// WORLD_SIZE is unset or 1. Blocks until every rank has joined.
Result<std::shared_ptr<const Distributed>> distributed_from_env();
bool is_lead_rank(const Distributed* dist);  // rank 0, or not data-parallel (null)
// Whether LibTorch can use `device` ("cpu", "cuda", "cuda:N"; docs/cuda.md): checked
// before any training, so a bad device fails at once rather than after the baseline.
Status check_device(const std::string& device);

// Scores a float graph of `model` on its test data (Fashion-MNIST test set, or
// 500 held-out synthetic scenes for det_tiny) with the LibTorch interpreter.
Result<EvalResult> evaluate_zoo_model(const ZooModel& model, const Graph& g, const TrainOptions& opts);

// The held-out detection scenes det_tiny is scored on (seed and count fixed here).
inline constexpr uint64_t kDetTestSeed = 20261123;
inline constexpr int64_t kDetTestCount = 500;

}  // namespace qeval
