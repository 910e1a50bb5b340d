// Dispatch tables generated from core/ops.inc, and the kernel mode.
#include <cstdlib>

#include "simulator/kernels/kernel.h"
#include "simulator/kernels/opt_kernels.h"

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

const char* kernel_mode_name(KernelMode m) {
  switch (m) {
    case KernelMode::kReference: return "reference";
    case KernelMode::kOptimized: return "optimized";
    case KernelMode::kScalar: return "scalar";
    case KernelMode::kAvx2: return "avx2";
    case KernelMode::kAvx512Vnni: return "avx512vnni";
    case KernelMode::kAmx: return "amx";
  }
  return "?";
}

Result<KernelMode> kernel_mode_from_name(const std::string& s) {
  for (KernelMode m : {KernelMode::kReference, KernelMode::kOptimized, KernelMode::kScalar,
                       KernelMode::kAvx2, KernelMode::kAvx512Vnni, KernelMode::kAmx}) {
    if (s == kernel_mode_name(m)) return m;
  }
  return invalid_argument("unknown kernel mode '{}' (allowed: reference, optimized, scalar, avx2, "
                          "avx512vnni, amx)", s);
}

Result<KernelMode> kernel_mode_from_env() {
  const char* v = std::getenv("QEVAL_SIM_KERNELS");
  if (!v || !*v) return KernelMode::kOptimized;
  auto m = kernel_mode_from_name(v);
  if (!m.is_ok()) return m.status().with_context("$QEVAL_SIM_KERNELS");
  return m;
}

bool kernel_mode_supported(KernelMode m) {
  switch (m) {
    case KernelMode::kReference:
    case KernelMode::kOptimized:
    case KernelMode::kScalar: return true;
    case KernelMode::kAvx2: return kern::opt::cpu_has(kern::opt::Isa::kAvx2);
    case KernelMode::kAvx512Vnni: return kern::opt::cpu_has(kern::opt::Isa::kAvx512Vnni);
    case KernelMode::kAmx: return kern::opt::amx_usable();
  }
  return false;
}

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
