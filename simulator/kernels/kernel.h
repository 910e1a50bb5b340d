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
//
// The reference kernels are the specification. prepare_* returns an optimized
// kernel instead (opt_kernels.h) where one applies; it computes every output
// element bit-identically, which kernels_opt_test checks.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/graph.h"
#include "simulator/profile.h"

namespace qeval {

// Which kernels prepare_* returns ($QEVAL_SIM_KERNELS names one):
//   reference   the reference kernels only;
//   optimized   optimized kernels with the best instruction set the CPU has (default);
//   scalar, avx2, avx512vnni   optimized kernels limited to that instruction set
//               (tests and debugging; one the CPU lacks is an error at Executor::create).
enum class KernelMode { kReference, kOptimized, kScalar, kAvx2, kAvx512Vnni, kAmx };
const char* kernel_mode_name(KernelMode m);
Result<KernelMode> kernel_mode_from_name(const std::string& s);
// $QEVAL_SIM_KERNELS, or kOptimized when unset; an unknown name is an error.
Result<KernelMode> kernel_mode_from_env();
// Whether this CPU runs the kernels of `m` (reference and optimized: always).
bool kernel_mode_supported(KernelMode m);

struct KernelArgs {
  const Node& node;
  const Graph& graph;
  const ChipProfile& profile;
  KernelMode mode = KernelMode::kReference;
};

// Inputs (nullptr for an absent optional input) and pre-allocated outputs
// (shapes from shape inference, dtypes from the graph's ValueInfo). An output
// may reuse the storage of a dead intermediate: its contents are unspecified,
// and every kernel writes every element of its outputs.
using EvalFn = std::function<Status(const std::vector<const Tensor*>&, std::vector<Tensor*>&)>;

#define QEVAL_OP(Name, min_in, max_in, n_out)                     \
  Status lower_##Name(Node& node, const Graph& graph, const ChipProfile& profile); \
  Result<EvalFn> prepare_##Name(const KernelArgs& args);
#include "core/ops.inc"
#undef QEVAL_OP

Status lower_node(Node& node, const Graph& graph, const ChipProfile& profile);
Result<EvalFn> prepare_node(const KernelArgs& args);

}  // namespace qeval
