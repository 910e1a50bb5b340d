// Reference kernels of the integer simulator: the executable specification.
//
// Each op has two functions, generated for every entry of core/ops.inc:
//   lower_<Op>(node, graph, profile)  : called once by lowering; derives the
//       integer parameters (multipliers, shifts, LUTs) from the value scales and
//       stores them in node.params, so a qmodel carries them.
//   prepare_<Op>(args) -> EvalFn      : called once when a program is loaded;
//       validates dtypes/params and returns the function that runs the op.
// A node runs in integer arithmetic when its output value carries QuantParams
// (or is an unquantized int32 accumulator, as ONNX ConvInteger), else in float32.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "core/graph.h"
#include "simulator/profile.h"

namespace qeval {

struct KernelArgs {
  const Node& node;
  const Graph& graph;
  const ChipProfile& profile;
};

// Inputs (nullptr for an absent optional input) and pre-allocated outputs
// (shapes from shape inference, dtypes from the graph's ValueInfo).
using EvalFn = std::function<Status(const std::vector<const Tensor*>&, std::vector<Tensor*>&)>;

#define QEVAL_OP(Name, min_in, max_in, n_out)                     \
  Status lower_##Name(Node& node, const Graph& graph, const ChipProfile& profile); \
  Result<EvalFn> prepare_##Name(const KernelArgs& args);
#include "core/ops.inc"
#undef QEVAL_OP

Status lower_node(Node& node, const Graph& graph, const ChipProfile& profile);
Result<EvalFn> prepare_node(const KernelArgs& args);

}  // namespace qeval
