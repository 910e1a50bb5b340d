// GraphModule: runs a float IR graph on LibTorch with autograd. Weights of
// Conv2d/Linear/BatchNorm/LayerNorm become trainable tensors, BatchNorm running
// statistics buffers; `to_graph()` writes them back into the IR. The fp32
// trainer uses it as is; the QAT core extends it by overriding run_node()
// (fake quant around the ops) — one interpreter, two uses.
//
// Includes LibTorch: include this header only from quant/ and models/ sources.
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "core/graph.h"
#include "quant/distributed.h"

namespace qeval {

torch::Tensor to_torch(const Tensor& t);
Result<Tensor> from_torch(const torch::Tensor& t);  // copies to the CPU first

// "cpu", "cuda", "cuda:1" as a torch::Device. A CUDA device on a LibTorch without
// CUDA (Debian's libtorch-dev) or without a visible GPU is an error that says how
// to get one (docs/cuda.md).
Result<torch::Device> parse_device(const std::string& name);

class GraphModule {
 public:
  virtual ~GraphModule() = default;
  // Takes a float graph. Errors name the node whose op the interpreter lacks.
  static Result<std::unique_ptr<GraphModule>> create(const Graph& g, bool channels_last = false);

  // Trainable tensors, by constant name (state_dict order: graph node order).
  const std::vector<std::pair<std::string, torch::Tensor>>& named_parameters() const { return params_; }
  std::vector<torch::Tensor> parameters() const;
  void train(bool on) { training_ = on; }
  // Channels-last (NHWC) memory for inputs; with create(g, true) the 4-D weights
  // are kept so too, as oneDNN prefers (~1.5x faster training on 2 CPU cores).
  static torch::Tensor to_channels_last(const torch::Tensor& x);
  bool is_training() const { return training_; }

  // Inputs in the order of graph().inputs; returns graph().outputs in order.
  // LibTorch errors (shape mismatch, ...) come back as a Status naming the node.
  Result<std::vector<torch::Tensor>> forward(const std::vector<torch::Tensor>& inputs);
  // Same, returning every value the graph computes (inputs and node outputs) by
  // name: run_eval's per-layer fp32 vs simulator comparison.
  Result<std::map<std::string, torch::Tensor>> forward_all(const std::vector<torch::Tensor>& inputs);

  // Copies every constant of `g` (weights, running statistics) into this module;
  // `g` must have the same constants with the same shapes (a checkpoint).
  virtual Status load_weights(const Graph& g);
  // The graph with the current weights and running statistics.
  virtual Result<Graph> to_graph() const;
  const Graph& graph() const { return graph_; }
  // Data-parallel training: BatchNorm in training mode then normalises with the
  // statistics of every rank's batch (quant/distributed.h).
  void set_distributed(std::shared_ptr<const Distributed> d) { dist_ = std::move(d); }
  const Distributed* distributed() const { return dist_.get(); }
  // Device placement (docs/cuda.md): moves every constant and trainable tensor
  // to `d`; call it right after create(), before calibration or training.
  // forward()/forward_all() move their inputs to the device; outside training
  // mode their results come back on the CPU (metrics, the simulator and the
  // deploy path are CPU code). In training mode the outputs stay on the device
  // (the loss is computed there: move the targets with .to(out.device())).
  Status to_device(const torch::Device& d);
  const torch::Device& device() const { return device_; }

 protected:
  explicit GraphModule(Graph g) : graph_(std::move(g)) {}
  Status init(bool channels_last);
  // Computes one node (float semantics of docs/ir.md). Override to add fake quant.
  virtual torch::Tensor run_node(const Node& n, const std::vector<torch::Tensor>& in);
  // Applied to graph input i before the first node (the QAT core quantizes it).
  virtual torch::Tensor prepare_input(size_t /*i*/, const torch::Tensor& x) { return x; }
  Status run(const std::vector<torch::Tensor>& inputs, std::map<std::string, torch::Tensor>& env);

  Graph graph_;
  std::map<std::string, torch::Tensor> tensors_;  // constants as torch tensors
  std::vector<std::pair<std::string, torch::Tensor>> params_;
  bool training_ = false;
  std::shared_ptr<const Distributed> dist_;
  torch::Device device_ = torch::kCPU;
};

}  // namespace qeval
