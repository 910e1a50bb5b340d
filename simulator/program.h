// Lowering a quantized graph to an integer program, and executing it.
#pragma once

#include <map>
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
  // again for another profile with lower_graph first).
  static Result<Executor> create(Graph program, ChipProfile profile);

  Result<std::map<std::string, Tensor>> run(const std::map<std::string, Tensor>& inputs,
                                            const RunOptions& opts = {}) const;
  const Graph& graph() const { return graph_; }
  const ChipProfile& profile() const { return profile_; }

 private:
  Graph graph_;
  ChipProfile profile_;
  std::vector<EvalFn> kernels_;
  std::vector<std::vector<std::string>> frees_;  // per node: values dead after it
};

}  // namespace qeval
