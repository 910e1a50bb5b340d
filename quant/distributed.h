// Data-parallel training over c10d (LibTorch's collective layer) with Gloo:
// the torchrun environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) or
// explicit values, a TCPStore rendezvous at MASTER_ADDR:MASTER_PORT, and the
// collectives the training loop and the interpreter need:
//
//   - gradients: one all-reduce (sum) of every parameter's gradient per step;
//     each rank scales its loss by its share of the global batch, so the sum is
//     the global-batch gradient of a single process;
//   - BatchNorm in training mode: synchronised batch statistics (the sums are
//     all-reduced in an autograd function whose backward all-reduces too, as
//     torch.distributed.nn.functional.all_reduce), so BN sees the global batch;
//   - model state: rank 0's weights, running statistics and QAT scales
//     (calibrated observers included) are broadcast before training.
//
// Includes LibTorch: include from quant/ and models/ sources only.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>

#include "core/status.h"

namespace qeval {

struct DistOptions {
  int rank = 0, world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  int timeout_s = 300;  // rendezvous and collectives
  // Collectives of CUDA tensors: gloo (any build) or nccl (a CUDA build with
  // NCCL; environment QEVAL_DIST_BACKEND). CPU tensors always go through Gloo.
  std::string backend = "gloo";
};

// RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT (torchrun's names); world size 1
// when WORLD_SIZE is unset. Errors name the variable.
Result<DistOptions> dist_options_from_env();

class Distributed {
 public:
  // Rendezvous of all ranks (rank 0 hosts the TCPStore); returns nullptr-free
  // handle for world size 1 too (every collective is then a no-op).
  static Result<std::shared_ptr<Distributed>> create(const DistOptions& opts);
  ~Distributed();

  int rank() const { return opts_.rank; }
  int world_size() const { return opts_.world_size; }
  bool active() const { return opts_.world_size > 1; }

  // In place, summed over ranks (float32/float64/int64; CUDA tensors through
  // NCCL when the backend is nccl, else Gloo).
  void all_reduce_sum(torch::Tensor& t) const;
  // Sum over ranks that autograd differentiates (backward: the sum of the gradients).
  torch::Tensor all_reduce_sum_autograd(const torch::Tensor& t) const;
  // Sums the gradients of `params` over ranks in one flat all-reduce.
  void all_reduce_gradients(const std::vector<torch::Tensor>& params) const;
  // Rank 0's bytes on every rank.
  Result<std::string> broadcast_bytes(const std::string& bytes) const;
  void barrier() const;

 private:
  explicit Distributed(DistOptions o);
  struct Impl;
  DistOptions opts_;
  std::unique_ptr<Impl> impl_;
};

// BatchNorm in training mode over the batches of all ranks (biased variance
// normalises, unbiased updates running_var, as torch::batch_norm). `dist`
// inactive: torch::batch_norm itself.
torch::Tensor sync_batch_norm(const Distributed* dist, const torch::Tensor& x, const torch::Tensor& weight,
                              const torch::Tensor& bias, torch::Tensor& running_mean, torch::Tensor& running_var,
                              double momentum, double eps);

}  // namespace qeval
