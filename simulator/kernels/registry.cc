// Dispatch tables generated from core/ops.inc.
#include "simulator/kernels/kernel.h"

namespace qeval {

namespace {
using LowerFn = Status (*)(Node&, const Graph&, const ChipProfile&);
using PrepareFn = Result<EvalFn> (*)(const KernelArgs&);
constexpr LowerFn kLower[] = {
#define QEVAL_OP(Name, min_in, max_in, n_out) &lower_##Name,
#include "core/ops.inc"
#undef QEVAL_OP
};
constexpr PrepareFn kPrepare[] = {
#define QEVAL_OP(Name, min_in, max_in, n_out) &prepare_##Name,
#include "core/ops.inc"
#undef QEVAL_OP
};
}  // namespace

Status lower_node(Node& node, const Graph& graph, const ChipProfile& profile) {
  return kLower[static_cast<int>(node.op)](node, graph, profile);
}

Result<EvalFn> prepare_node(const KernelArgs& args) {
  auto r = kPrepare[static_cast<int>(args.node.op)](args);
  if (!r.is_ok() && r.status().message().find(args.node.name) == std::string::npos) {
    return r.status().with_context(args.node.describe());
  }
  return r;
}

}  // namespace qeval
