// Lowering a quantized graph to an integer program, and executing it.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/graph.h"
#include "simulator/kernels/kernel.h"
#include "simulator/profile.h"

namespace qeval {

// Lowering: infers shapes, checks every node against the profile, and derives
// each node's integer parameters (node.params: multipliers, shifts, LUTs).
// The result is a qmodel: metadata["profile"] names the profile.
Result<Graph> lower_graph(Graph graph, const ChipProfile& profile);

struct RunOptions {
  bool keep_intermediates = false;  // return every value, not only graph outputs
};

class Executor {
 public:
  // `program` must have been lowered for `profile` (a qmodel may be lowered
  // again for another profile with lower_graph first). Kernels: `mode`, or
  // $QEVAL_SIM_KERNELS (default optimized); every mode computes the same bits.
  static Result<Executor> create(Graph program, ChipProfile profile);
  static Result<Executor> create(Graph program, ChipProfile profile, KernelMode mode);

  Result<std::map<std::string, Tensor>> run(const std::map<std::string, Tensor>& inputs,
                                            const RunOptions& opts = {}) const;
  const Graph& graph() const { return graph_; }
  const ChipProfile& profile() const { return profile_; }

 private:
  Graph graph_;
  ChipProfile profile_;
  std::vector<EvalFn> kernels_;
  // Fusion (optimized modes, runs without keep_intermediates): a Conv2d whose
  // only consumer is a Relu / Relu6 that is a clamp into the same dtype
  // computes the clamped output itself (kern::opt::prepare_conv2d_clamped)
  // into the Relu's output value, and the Relu node is skipped. Runs that keep
  // intermediates run every node unfused, so that every value exists.
  struct Fused {
    EvalFn fn;            // set on the conv: writes the output of node `into`
    size_t into = 0;
    bool skip = false;    // set on the Relu
  };
  std::vector<Fused> fused_;
  Status plan_fusion(KernelMode mode);
  // Per node: values dead after it, and whether a node produced them (then
  // only this run holds them and their storage may serve a later output).
  struct Free {
    std::string value;
    bool produced = false;
  };
  std::vector<std::vector<Free>> frees_;
  // Storage of dead intermediates, kept for later outputs of the same dtype and
  // size (this run's and the next runs'): a fresh multi-MB allocation at every
  // node costs more in page faults and zero-filling than some kernels take
  // (kernels write all of their outputs, kernel.h). Shared by copies.
  struct Spare;
  std::shared_ptr<Spare> spare_;
};

}  // namespace qeval
