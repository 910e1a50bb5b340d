// The training loop shared by the classifier and detector trainers (LibTorch
// inside: include from models/ sources only). The caller supplies the loss of
// a batch; the loop owns the optimizer, LR schedule, shuffling, progress line
// and per-epoch checkpoints.
#pragma once

#include <torch/torch.h>

#include <functional>

#include "core/random.h"
#include "datasets/idx.h"
#include "models/detect.h"
#include "models/trainer.h"
#include "quant/interpreter.h"

namespace qeval {

// Mean loss of the batch `idx` (sample indices); `rng` is a seed derived from
// (recipe seed, epoch, batch) for augmentation decisions (core/random.h), and
// `first` the position of idx[0] in the global batch: a data-parallel rank
// trains on a slice of it and must draw the augmentation bits of its samples
// (random_hflip, det_batch), not of the slice's first ones.
using BatchLossFn = std::function<torch::Tensor(const std::vector<int64_t>& idx, uint64_t rng, int64_t first)>;

struct LoopResult {
  std::vector<double> epoch_loss;
  double seconds = 0;
  double images_per_second = 0;
  int first_epoch = 0;
};

Result<LoopResult> run_train_loop(GraphModule& module, const ZooModel& model, int64_t num_samples,
                                  const BatchLossFn& loss_fn, const TrainOptions& opts);

// The trained graph (recipe, dataset and fp32 score written into its metadata),
// its score and the loop's figures.
TrainResult make_train_result(Graph g, const ZooModel& m, const EvalResult& ev, const LoopResult& loop);

// Classifier inputs as ZOO.md normalises them (x/255, (x − mean)/std, zero pad),
// the first `limit` images (0 = all), NCHW float32; and their labels.
torch::Tensor classifier_inputs(const ImageSet& s, const ZooModel& m, int64_t limit);
torch::Tensor labels_of(const ImageSet& s, int64_t limit);

// Flips each sample of the batch horizontally with p = 0.5, one bit of
// SplitMix64(rng) per sample (the trainers' augmentation), in place; sample k
// takes draw first + k.
void random_hflip(torch::Tensor& xb, uint64_t rng, int64_t first = 0);

// Top-1/top-5 of a module (fp32 or QAT) on the Fashion-MNIST test set.
Result<EvalResult> evaluate_classifier(const ZooModel& model, GraphModule& module, const TrainOptions& opts);

// det_tiny's data and loss (models/train_detect.cc), shared by the fp32 trainer,
// the QAT driver and run_eval's jobs.
struct DetSceneSet {
  torch::Tensor images;  // [N, 1, S, S], normalised as ZOO.md (x/255 − mean) / std
  std::vector<std::vector<DetBox>> boxes;
};
inline constexpr int64_t kDetDefaultTrainScenes = 10000;
inline constexpr uint64_t kDetTrainSeedBase = 0x5eed0001;
// Scenes composited from `source` (Fashion-MNIST train or test images).
Result<DetSceneSet> make_det_scenes(const ImageSet& source, uint64_t seed, int64_t count, const ZooModel& m);
// The training batch `idx`: images (optionally flipped, one bit of SplitMix64(rng)
// per sample) and their CenterNet targets.
struct DetBatch {
  torch::Tensor images, heat, reg, mask;
};
DetBatch det_batch(const DetSceneSet& s, const std::vector<int64_t>& idx, uint64_t rng, bool hflip,
                   int64_t first = 0);
// CenterNet focal loss on the class heatmaps + L1 on offset and log-size.
torch::Tensor det_loss(const torch::Tensor& head, const DetBatch& b);

// The 12 COCO bbox stats of detector outputs `heads` [N, kDetHeadChannels, G, G]
// (decoded by decode_det_head) against the boxes of the first N scenes.
Result<std::array<double, 12>> score_det_heads(const std::vector<std::vector<DetBox>>& truth,
                                               const torch::Tensor& heads);

// LR of step t of T under the recipe's schedule (one-cycle as torch's OneCycleLR
// with cos annealing: start peak/25, rise over warmup·T, fall to start/1e4).
double scheduled_lr(const TrainRecipe& r, int64_t t, int64_t total);
// SGD momentum of step t (recipe.momentum unless one-cycle cycles it).
double scheduled_momentum(const TrainRecipe& r, int64_t t, int64_t total);

}  // namespace qeval
