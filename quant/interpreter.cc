#include "quant/interpreter.h"

#include <algorithm>
#include <optional>
#include <set>

namespace qeval {

namespace F = torch::nn::functional;

namespace {
// The dtypes both sides have, one pair each.
constexpr std::pair<DType, c10::ScalarType> kDTypes[] = {
    {DType::kFloat32, torch::kFloat32}, {DType::kInt8, torch::kInt8},   {DType::kUInt8, torch::kUInt8},
    {DType::kInt16, torch::kInt16},     {DType::kInt32, torch::kInt32}, {DType::kInt64, torch::kInt64}};
}  // namespace

torch::Tensor to_torch(const Tensor& t) {
  c10::ScalarType st = torch::kFloat32;
  for (const auto& [d, s] : kDTypes) {
    if (d == t.dtype()) st = s;
  }
  std::vector<int64_t> shape(t.shape().begin(), t.shape().end());
  return torch::from_blob(const_cast<void*>(t.raw()), shape, st).clone();
}

Result<Tensor> from_torch(const torch::Tensor& in) {
  torch::Tensor t = in.detach().contiguous().cpu();
  const auto* it = std::find_if(std::begin(kDTypes), std::end(kDTypes),
                                [&](const auto& p) { return p.second == t.scalar_type(); });
  if (it == std::end(kDTypes)) {
    return unsupported("tensor of torch dtype {} has no qeval dtype", c10::toString(t.scalar_type()));
  }
  const DType d = it->first;
  Tensor out(d, Shape(t.sizes().begin(), t.sizes().end()));
  std::memcpy(out.raw(), t.data_ptr(), out.nbytes());
  return out;
}

Result<torch::Device> parse_device(const std::string& name) {
  std::optional<torch::Device> d;
  try {
    d.emplace(name);
  } catch (const std::exception&) {
    return invalid_argument("device '{}': expected cpu, cuda or cuda:N", name);
  }
  if (d->is_cuda()) {
    if (!torch::cuda::is_available()) {
      return unsupported("device '{}': this LibTorch has no CUDA or no GPU is visible (Debian's libtorch-dev is "
                         "CPU-only; build with -DQEVAL_CUDA=ON against a CUDA LibTorch, docs/cuda.md)", name);
    }
    const int64_t n = static_cast<int64_t>(torch::cuda::device_count());
    if (d->has_index() && d->index() >= n) {
      return invalid_argument("device '{}': only {} CUDA device(s) are visible", name, n);
    }
  } else if (!d->is_cpu()) {
    return invalid_argument("device '{}': expected cpu, cuda or cuda:N", name);
  }
  return *d;
}

Result<std::unique_ptr<GraphModule>> GraphModule::create(const Graph& g, bool channels_last) {
  std::unique_ptr<GraphModule> m(new GraphModule(g));
  QEVAL_RETURN_IF_ERROR(m->init(channels_last));
  return m;
}

Status GraphModule::init(bool channels_last) {
  QEVAL_RETURN_IF_ERROR(graph_.validate());
  // Which constants train: weights/biases of Conv2d, Linear, BatchNorm (γ, β), LayerNorm.
  std::set<std::string> trainable;
  for (const Node& n : graph_.nodes) {
    switch (n.op) {
      case OpKind::kConv2d:
      case OpKind::kLinear:
        for (size_t i = 1; i < n.inputs.size(); ++i) trainable.insert(n.inputs[i]);
        break;
      case OpKind::kBatchNorm:
        trainable.insert(n.inputs[1]);
        trainable.insert(n.inputs[2]);
        break;
      case OpKind::kLayerNorm:
        for (size_t i = 1; i < n.inputs.size(); ++i) trainable.insert(n.inputs[i]);
        break;
      case OpKind::kQuantize:
      case OpKind::kDequantize:
      case OpKind::kDynamicQuantize:
        return unsupported("{}: the float interpreter runs float graphs only", n.describe());
      default:
        break;
    }
  }
  for (const auto& [name, t] : graph_.constants) {
    if (t.dtype() != DType::kFloat32 && trainable.count(name)) {
      return invalid_argument("constant '{}' is {}, expected float32", name, dtype_name(t.dtype()));
    }
    tensors_[name] = to_torch(t);
    if (channels_last) tensors_[name] = to_channels_last(tensors_[name]);
  }
  std::set<std::string> seen;
  for (const Node& n : graph_.nodes) {
    for (const std::string& in : n.inputs) {
      if (trainable.count(in) && seen.insert(in).second) {
        tensors_[in].set_requires_grad(true);
        params_.emplace_back(in, tensors_[in]);
      }
    }
  }
  return Status::ok();
}

torch::Tensor GraphModule::to_channels_last(const torch::Tensor& x) {
  return x.dim() == 4 ? x.contiguous(at::MemoryFormat::ChannelsLast) : x;
}

std::vector<torch::Tensor> GraphModule::parameters() const {
  std::vector<torch::Tensor> out;
  for (const auto& p : params_) out.push_back(p.second);
  return out;
}

namespace {

std::vector<int64_t> ints(const Node& n, const std::string& k, std::vector<int64_t> def) {
  return n.attr_ints(k, std::move(def));
}

// Pads [top, left, bottom, right]: symmetric ones go to the op, others to F::pad.
torch::Tensor pad_asym(const torch::Tensor& x, const std::vector<int64_t>& p, double value,
                       std::vector<int64_t>* sym) {
  if (p[0] == p[2] && p[1] == p[3]) {
    *sym = {p[0], p[1]};
    return x;
  }
  *sym = {0, 0};
  return F::pad(x, F::PadFuncOptions({p[1], p[3], p[0], p[2]}).value(value));
}

}  // namespace

torch::Tensor GraphModule::run_node(const Node& n, const std::vector<torch::Tensor>& in) {
  const torch::Tensor& x = in[0];
  switch (n.op) {
    case OpKind::kConv2d: {
      std::vector<int64_t> pad;
      torch::Tensor xp = pad_asym(x, ints(n, "pads", {0, 0, 0, 0}), 0.0, &pad);
      return torch::conv2d(xp, in[1], in.size() > 2 ? in[2] : torch::Tensor(), ints(n, "strides", {1, 1}),
                           pad, ints(n, "dilations", {1, 1}), n.attr_int("group", 1));
    }
    case OpKind::kLinear:
      return torch::linear(x, in[1], in.size() > 2 ? in[2] : torch::Tensor());
    case OpKind::kMatMul:
      return torch::matmul(x, in[1]);
    case OpKind::kBatchNorm: {
      // Running statistics are buffers: updated in place in training mode.
      if (training_ && dist_) {
        return sync_batch_norm(dist_.get(), x, in[1], in[2], tensors_.at(n.inputs[3]), tensors_.at(n.inputs[4]),
                               n.attr_float("momentum", 0.1), n.attr_float("epsilon", 1e-5));
      }
      return torch::batch_norm(x, in[1], in[2], tensors_.at(n.inputs[3]), tensors_.at(n.inputs[4]),
                               training_, n.attr_float("momentum", 0.1), n.attr_float("epsilon", 1e-5),
                               false);
    }
    case OpKind::kRelu: return torch::relu(x);
    case OpKind::kRelu6: return torch::hardtanh(x, 0.0, 6.0);
    case OpKind::kClip: return torch::clamp(x, n.attr_float("min", -INFINITY), n.attr_float("max", INFINITY));
    case OpKind::kSigmoid: return torch::sigmoid(x);
    case OpKind::kSiLU: return torch::silu(x);
    case OpKind::kGELU: return torch::gelu(x);
    case OpKind::kAdd: return x + in[1];
    case OpKind::kMul: return x * in[1];
    case OpKind::kConcat: return torch::cat(in, n.attr_int("axis", 1));
    case OpKind::kMaxPool: {
      std::vector<int64_t> pad;
      torch::Tensor xp = pad_asym(x, ints(n, "pads", {0, 0, 0, 0}), -INFINITY, &pad);
      const auto k = ints(n, "kernel", {});
      return torch::max_pool2d(xp, k, ints(n, "strides", k), pad, ints(n, "dilations", {1, 1}),
                               n.attr_int("ceil_mode", 0) != 0);
    }
    case OpKind::kAvgPool: {
      std::vector<int64_t> pad;
      torch::Tensor xp = pad_asym(x, ints(n, "pads", {0, 0, 0, 0}), 0.0, &pad);
      const auto k = ints(n, "kernel", {});
      return torch::avg_pool2d(xp, k, ints(n, "strides", k), pad, n.attr_int("ceil_mode", 0) != 0,
                               n.attr_int("count_include_pad", 0) != 0);
    }
    case OpKind::kGlobalAvgPool: return x.mean({2, 3}, /*keepdim=*/true);
    case OpKind::kFlatten: {
      const int64_t axis = n.attr_int("axis", 1);
      int64_t outer = 1;
      for (int64_t i = 0; i < axis; ++i) outer *= x.size(i);
      return x.reshape({outer, -1});
    }
    case OpKind::kReshape: {
      std::vector<int64_t> shape = ints(n, "shape", {});
      for (size_t i = 0; i < shape.size(); ++i) {
        if (shape[i] == 0) shape[i] = x.size(static_cast<int64_t>(i));
      }
      return x.reshape(shape);
    }
    case OpKind::kUpsample: {
      const auto s = ints(n, "scales", {2, 2});
      return x.repeat_interleave(s[0], 2).repeat_interleave(s[1], 3);
    }
    case OpKind::kSoftmax: return torch::softmax(x, n.attr_int("axis", -1));
    case OpKind::kLayerNorm: {
      int64_t axis = n.attr_int("axis", -1);
      if (axis < 0) axis += x.dim();
      std::vector<int64_t> norm(x.sizes().begin() + axis, x.sizes().end());
      return torch::layer_norm(x, norm, in.size() > 1 ? in[1] : torch::Tensor(),
                               in.size() > 2 ? in[2] : torch::Tensor(), n.attr_float("epsilon", 1e-5));
    }
    default:
      throw std::runtime_error(std::string("op ") + op_name(n.op) + " is not supported by the float interpreter");
  }
}

Status GraphModule::run(const std::vector<torch::Tensor>& inputs, std::map<std::string, torch::Tensor>& env) {
  if (inputs.size() != graph_.inputs.size()) {
    return invalid_argument("graph '{}' takes {} inputs, got {}", graph_.name, graph_.inputs.size(), inputs.size());
  }
  try {
    for (size_t i = 0; i < inputs.size(); ++i) env[graph_.inputs[i]] = prepare_input(i, inputs[i]);
  } catch (const std::exception& e) {
    return invalid_argument("graph input: {}", first_line(e.what()));
  }
  for (const Node& n : graph_.nodes) {
    std::vector<torch::Tensor> in;
    in.reserve(n.inputs.size());
    for (const std::string& name : n.inputs) {
      if (name.empty()) {
        in.emplace_back();
        continue;
      }
      auto it = env.find(name);
      if (it != env.end()) {
        in.push_back(it->second);
      } else {
        in.push_back(tensors_.at(name));
      }
    }
    try {
      env[n.outputs[0]] = run_node(n, in);
    } catch (const std::exception& e) {
      return invalid_argument("{}: {}", n.describe(), first_line(e.what()));
    }
  }
  return Status::ok();
}

Status GraphModule::to_device(const torch::Device& d) {
  if (d == device_) return Status::ok();
  torch::NoGradGuard ng;
  try {
    for (auto& [name, t] : tensors_) {
      const bool grad = t.requires_grad();
      torch::Tensor moved = t.to(d).detach();
      if (grad) moved.set_requires_grad(true);
      t = moved;
    }
    for (auto& [name, p] : params_) p = tensors_.at(name);
  } catch (const std::exception& e) {
    return unsupported("cannot move {} to {}: {}", graph_.name, d.str(), first_line(e.what()));
  }
  device_ = d;
  return Status::ok();
}

namespace {
std::vector<torch::Tensor> on_device(const std::vector<torch::Tensor>& in, const torch::Device& d) {
  std::vector<torch::Tensor> out;
  for (const auto& x : in) out.push_back(x.defined() && x.device() != d ? x.to(d) : x);
  return out;
}
}  // namespace

Result<std::vector<torch::Tensor>> GraphModule::forward(const std::vector<torch::Tensor>& inputs) {
  std::map<std::string, torch::Tensor> env;
  QEVAL_RETURN_IF_ERROR(run(device_.is_cpu() ? inputs : on_device(inputs, device_), env));
  std::vector<torch::Tensor> out;
  const bool back = !training_ && !device_.is_cpu();
  for (const std::string& o : graph_.outputs) out.push_back(back ? env.at(o).cpu() : env.at(o));
  return out;
}

Result<std::map<std::string, torch::Tensor>> GraphModule::forward_all(const std::vector<torch::Tensor>& inputs) {
  std::map<std::string, torch::Tensor> env;
  QEVAL_RETURN_IF_ERROR(run(device_.is_cpu() ? inputs : on_device(inputs, device_), env));
  if (!training_ && !device_.is_cpu()) {
    for (auto& [name, t] : env) t = t.cpu();
  }
  return env;
}

Status GraphModule::load_weights(const Graph& g) {
  torch::NoGradGuard no_grad;
  for (auto& [name, t] : tensors_) {
    const Tensor* src = g.find_constant(name);
    if (!src) return data_loss("weights lack constant '{}'", name);
    torch::Tensor v = to_torch(*src);
    if (v.sizes() != t.sizes()) {
      return data_loss("constant '{}' has shape {}, expected {}", name, shape_str(src->shape()),
                       shape_str(Shape(t.sizes().begin(), t.sizes().end())));
    }
    t.copy_(v);
  }
  return Status::ok();
}

Result<Graph> GraphModule::to_graph() const {
  Graph g = graph_;
  for (auto& [name, t] : g.constants) {
    QEVAL_ASSIGN_OR_RETURN(t, from_torch(tensors_.at(name)));
  }
  return g;
}

}  // namespace qeval
