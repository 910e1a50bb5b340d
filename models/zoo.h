// The model zoo: IR builders for the architectures of ../shared/ZOO.md and
// each model's data and fp32 training recipe. Torch-free, so the simulator
// and harness can build zoo graphs without LibTorch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/graph.h"

namespace qeval {

// fp32 recipe (ZOO.md "fp32 recipe"): SGD + Nesterov, one-cycle LR.
struct TrainRecipe {
  std::string optimizer = "sgd";  // sgd | adam
  double peak_lr = 0.1;
  double momentum = 0.9;
  bool nesterov = true;
  double weight_decay = 5e-4;
  int64_t batch = 128;
  int epochs = 6;
  std::string schedule = "onecycle";  // onecycle | cosine | constant
  double warmup = 0.15;               // one-cycle: fraction of steps rising to peak_lr
  // one-cycle with SGD: momentum falls from max to min while the LR rises and
  // comes back (torch OneCycleLR's cycle_momentum, its defaults 0.95 / 0.85).
  bool cycle_momentum = true;
  double max_momentum = 0.95, min_momentum = 0.85;
  bool hflip = true;                  // random horizontal flip, p = 0.5
  uint64_t seed = 0;
  int64_t train_limit = 0;            // 0 = whole training set
  double grad_clip = 0;               // max global gradient norm (0 = no clipping)
};

struct ZooModel {
  std::string name;
  std::string task;     // classify | detect
  std::string dataset;  // fashion-mnist | synth-detection
  Shape input_shape;    // [1, C, H, W]
  // Input normalisation (ZOO.md): x/255, then (x − mean) / std, zero-padded by `pad`.
  float mean = 0.2860f, std = 0.3530f;
  int64_t pad = 0;
  int64_t num_classes = 10;
  TrainRecipe recipe;
  std::string description;
};

const std::vector<std::string>& zoo_names();
Result<ZooModel> zoo_model(const std::string& name);
// A freshly initialised float graph (weights from `seed`), input "input", output "logits"
// (classifiers) or "head" (det_tiny: [N, 4 + classes... see models/README.md]).
Result<Graph> build_zoo_graph(const std::string& name, uint64_t seed = 0);

}  // namespace qeval
