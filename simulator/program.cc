#include "simulator/program.h"

#include "simulator/kernels/opt_kernels.h"

#include <mutex>
#include <optional>
#include <set>

namespace qeval {

// Only this executor's runs hold the tensors given back (node outputs no
// longer referenced), so their storage is free to reuse; at most kMaxBytes
// are kept.
struct Executor::Spare {
  static constexpr int64_t kMaxBytes = int64_t{256} << 20;
  std::mutex mu;
  std::multimap<std::pair<DType, int64_t>, Tensor> free;
  int64_t bytes = 0;

  std::optional<Tensor> take(DType dtype, int64_t numel) {
    std::lock_guard<std::mutex> lock(mu);
    auto it = free.find({dtype, numel});
    if (it == free.end()) return std::nullopt;
    Tensor t = std::move(it->second);
    free.erase(it);
    bytes -= static_cast<int64_t>(t.nbytes());
    return t;
  }
  void give(Tensor t) {
    std::lock_guard<std::mutex> lock(mu);
    if (bytes + static_cast<int64_t>(t.nbytes()) > kMaxBytes) return;
    bytes += static_cast<int64_t>(t.nbytes());
    free.emplace(std::make_pair(t.dtype(), t.numel()), std::move(t));
  }
};

Result<Graph> lower_graph(Graph g, const ChipProfile& profile) {
  QEVAL_RETURN_IF_ERROR(g.validate());
  QEVAL_RETURN_IF_ERROR(g.infer_shapes());
  for (Node& n : g.nodes) {
    n.params.clear();
    QEVAL_RETURN_IF_ERROR(lower_node(n, g, profile));
  }
  g.metadata["profile"] = profile.name;
  return g;
}

Result<Executor> Executor::create(Graph program, ChipProfile profile) {
  QEVAL_ASSIGN_OR_RETURN(KernelMode mode, kernel_mode_from_env());
  return create(std::move(program), std::move(profile), mode);
}

Result<Executor> Executor::create(Graph program, ChipProfile profile, KernelMode mode) {
  if (!kernel_mode_supported(mode)) {
    return unsupported("kernel mode '{}': this CPU lacks the instruction set",
                       kernel_mode_name(mode));
  }
  Executor ex;
  ex.spare_ = std::make_shared<Spare>();
  ex.graph_ = std::move(program);
  ex.profile_ = std::move(profile);
  QEVAL_RETURN_IF_ERROR(ex.graph_.validate());
  auto it = ex.graph_.metadata.find("profile");
  if (it != ex.graph_.metadata.end() && it->second != ex.profile_.name) {
    return invalid_argument("the program was lowered for profile '{}', not '{}'; lower it again",
                            it->second, ex.profile_.name);
  }
  for (const Node& n : ex.graph_.nodes) {
    QEVAL_ASSIGN_OR_RETURN(EvalFn fn, prepare_node(KernelArgs{n, ex.graph_, ex.profile_, mode}));
    ex.kernels_.push_back(std::move(fn));
  }
  ex.fused_.assign(ex.graph_.nodes.size(), {});
  if (mode != KernelMode::kReference) QEVAL_RETURN_IF_ERROR(ex.plan_fusion(mode));
  // Free each intermediate after its last consumer.
  std::map<std::string, size_t> last;
  for (size_t i = 0; i < ex.graph_.nodes.size(); ++i) {
    for (const auto& in : ex.graph_.nodes[i].inputs) {
      if (!in.empty()) last[in] = i;
    }
  }
  std::set<std::string> keep(ex.graph_.outputs.begin(), ex.graph_.outputs.end());
  const std::set<std::string> inputs(ex.graph_.inputs.begin(), ex.graph_.inputs.end());
  ex.frees_.assign(ex.graph_.nodes.size(), {});
  for (const auto& [name, i] : last) {
    if (!keep.count(name) && !ex.graph_.is_constant(name)) {
      ex.frees_[i].push_back({name, !inputs.count(name)});
    }
  }
  return ex;
}

Status Executor::plan_fusion(KernelMode mode) {
  const Graph& g = graph_;
  std::map<std::string, std::vector<size_t>> consumers;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    for (const auto& in : g.nodes[i].inputs) {
      if (!in.empty()) consumers[in].push_back(i);
    }
  }
  const std::set<std::string> outputs(g.outputs.begin(), g.outputs.end());
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& conv = g.nodes[i];
    if (conv.op != OpKind::kConv2d || conv.outputs.size() != 1) continue;
    const std::string& v = conv.outputs[0];
    auto it = consumers.find(v);
    if (outputs.count(v) || it == consumers.end() || it->second.size() != 1) continue;
    const size_t j = it->second[0];
    const Node& act = g.nodes[j];
    if ((act.op != OpKind::kRelu && act.op != OpKind::kRelu6) || act.inputs.size() != 1 ||
        act.outputs.size() != 1 || fused_[j].skip) {
      continue;
    }
    QEVAL_ASSIGN_OR_RETURN(EvalFn act_ref,
                           prepare_node(KernelArgs{act, g, profile_, KernelMode::kReference}));
    const auto clamp =
        kern::opt::unary_as_clamp(KernelArgs{act, g, profile_, mode}, act_ref);
    if (!clamp) continue;
    QEVAL_ASSIGN_OR_RETURN(EvalFn conv_ref,
                           prepare_node(KernelArgs{conv, g, profile_, KernelMode::kReference}));
    // What the fused kernel hands back to the specification: conv, then the clamp.
    EvalFn both = [conv_ref, act_ref](const std::vector<const Tensor*>& in,
                                      std::vector<Tensor*>& out) -> Status {
      Tensor tmp(out[0]->dtype(), out[0]->shape());
      std::vector<Tensor*> t{&tmp};
      QEVAL_RETURN_IF_ERROR(conv_ref(in, t));
      return act_ref({&tmp}, out);
    };
    auto fn = kern::opt::prepare_conv2d_clamped(KernelArgs{conv, g, profile_, mode},
                                                clamp->first, clamp->second, both);
    if (!fn) continue;
    fused_[i].fn = std::move(*fn);
    fused_[i].into = j;
    fused_[j].skip = true;
  }
  return Status::ok();
}

Result<std::map<std::string, Tensor>> Executor::run(const std::map<std::string, Tensor>& inputs,
                                                    const RunOptions& opts) const {
  std::map<std::string, Tensor> env;
  for (const std::string& name : graph_.inputs) {
    auto it = inputs.find(name);
    if (it == inputs.end()) return invalid_argument("missing input '{}'", name);
    const ValueInfo* vi = graph_.find_value(name);
    const Tensor& t = it->second;
    if (vi) {
      if (t.dtype() != vi->dtype) {
        return invalid_argument("input '{}' is {}, the model expects {}", name,
                                dtype_name(t.dtype()), dtype_name(vi->dtype));
      }
      bool ok = vi->shape.empty() || vi->shape.size() == t.shape().size();
      for (size_t d = 0; ok && d < vi->shape.size(); ++d) {
        ok = vi->shape[d] < 0 || vi->shape[d] == t.shape()[d];
      }
      if (!ok) {
        return invalid_argument("input '{}' has shape {}, the model expects {}", name,
                                shape_str(t.shape()), shape_str(vi->shape));
      }
    }
    env[name] = t;
  }
  for (const auto& [name, t] : inputs) {
    if (!env.count(name)) return invalid_argument("'{}' is not an input of the model", name);
  }
  const bool fuse = !opts.keep_intermediates;
  auto release = [&](size_t i) {
    if (opts.keep_intermediates) return;
    for (const Free& f : frees_[i]) {
      auto it = env.find(f.value);
      if (it == env.end()) continue;
      if (f.produced) spare_->give(std::move(it->second));
      env.erase(it);
    }
  };
  for (size_t i = 0; i < graph_.nodes.size(); ++i) {
    const Node& n = graph_.nodes[i];
    if (fuse && fused_[i].skip) {  // computed by the conv it follows
      release(i);
      continue;
    }
    const bool fused = fuse && fused_[i].fn;
    const std::vector<std::string>& out_names =
        fused ? graph_.nodes[fused_[i].into].outputs : n.outputs;
    std::vector<const Tensor*> ins;
    std::vector<Shape> shapes;
    for (const std::string& name : n.inputs) {
      if (name.empty()) {
        ins.push_back(nullptr);
        shapes.emplace_back();
        continue;
      }
      const Tensor* t = graph_.find_constant(name);
      if (!t) {
        auto it = env.find(name);
        if (it == env.end()) return internal_error("{}: value '{}' was freed", n.describe(), name);
        t = &it->second;
      }
      ins.push_back(t);
      shapes.push_back(t->shape());
    }
    QEVAL_ASSIGN_OR_RETURN(std::vector<Shape> out_shapes, infer_node_shapes(n, shapes));
    std::vector<Tensor> outs;
    for (size_t o = 0; o < out_names.size(); ++o) {
      const ValueInfo* vi = graph_.find_value(out_names[o]);
      const DType dtype = vi ? vi->dtype : DType::kFloat32;
      std::optional<Tensor> reused = spare_->take(dtype, shape_numel(out_shapes[o]));
      if (!reused) {
        outs.emplace_back(dtype, out_shapes[o]);
        continue;
      }
      QEVAL_ASSIGN_OR_RETURN(Tensor t, reused->reshaped(out_shapes[o]));
      outs.push_back(std::move(t));
    }
    std::vector<Tensor*> out_ptrs;
    for (Tensor& t : outs) out_ptrs.push_back(&t);
    Status s = (fused ? fused_[i].fn : kernels_[i])(ins, out_ptrs);
    if (!s.is_ok()) return s.with_context(n.describe());
    for (size_t o = 0; o < out_names.size(); ++o) env[out_names[o]] = std::move(outs[o]);
    release(i);
  }
  if (opts.keep_intermediates) return env;
  std::map<std::string, Tensor> result;
  for (const std::string& o : graph_.outputs) {
    auto it = env.find(o);
    if (it != env.end()) {
      result[o] = it->second;
    } else if (const Tensor* c = graph_.find_constant(o)) {
      result[o] = *c;
    }
  }
  return result;
}

}  // namespace qeval
