#include "simulator/program.h"

#include <set>

namespace qeval {

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
  Executor ex;
  ex.graph_ = std::move(program);
  ex.profile_ = std::move(profile);
  QEVAL_RETURN_IF_ERROR(ex.graph_.validate());
  auto it = ex.graph_.metadata.find("profile");
  if (it != ex.graph_.metadata.end() && it->second != ex.profile_.name) {
    return invalid_argument("the program was lowered for profile '{}', not '{}'; lower it again",
                            it->second, ex.profile_.name);
  }
  for (const Node& n : ex.graph_.nodes) {
    QEVAL_ASSIGN_OR_RETURN(EvalFn fn, prepare_node(KernelArgs{n, ex.graph_, ex.profile_}));
    ex.kernels_.push_back(std::move(fn));
  }
  // Free each intermediate after its last consumer.
  std::map<std::string, size_t> last;
  for (size_t i = 0; i < ex.graph_.nodes.size(); ++i) {
    for (const auto& in : ex.graph_.nodes[i].inputs) {
      if (!in.empty()) last[in] = i;
    }
  }
  std::set<std::string> keep(ex.graph_.outputs.begin(), ex.graph_.outputs.end());
  ex.frees_.assign(ex.graph_.nodes.size(), {});
  for (const auto& [name, i] : last) {
    if (!keep.count(name) && !ex.graph_.is_constant(name)) ex.frees_[i].push_back(name);
  }
  return ex;
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
  for (size_t i = 0; i < graph_.nodes.size(); ++i) {
    const Node& n = graph_.nodes[i];
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
    for (size_t o = 0; o < n.outputs.size(); ++o) {
      const ValueInfo* vi = graph_.find_value(n.outputs[o]);
      outs.emplace_back(vi ? vi->dtype : DType::kFloat32, out_shapes[o]);
    }
    std::vector<Tensor*> out_ptrs;
    for (Tensor& t : outs) out_ptrs.push_back(&t);
    Status s = kernels_[i](ins, out_ptrs);
    if (!s.is_ok()) return s.with_context(n.describe());
    for (size_t o = 0; o < n.outputs.size(); ++o) env[n.outputs[o]] = std::move(outs[o]);
    if (!opts.keep_intermediates) {
      for (const std::string& f : frees_[i]) env.erase(f);
    }
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
