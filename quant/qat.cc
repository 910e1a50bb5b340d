#include "quant/qat.h"

#include <cmath>

namespace qeval {

namespace {

constexpr const char* kStageMeta = "qat_stage";
constexpr const char* kStepsMeta = "qat_steps";

std::string act_key(const std::string& v, const char* what) { return "qat:" + v + ":" + what; }

FakeQuantSpec fq_spec(const QuantSpec& s, int axis, RoundingMode mode) {
  FakeQuantSpec f;
  f.qmin = s.qmin();
  f.qmax = s.qmax();
  f.axis = axis;
  f.rounding = mode;
  return f;
}

// Power-of-two rounding of scales (up: the range never shrinks), as choose_qparams.
torch::Tensor pot(const torch::Tensor& s) { return torch::exp2(torch::ceil(torch::log2(s))); }

}  // namespace

Result<std::unique_ptr<QatModule>> QatModule::create(const Graph& g, const QuantConfig& cfg,
                                                     const ChipProfile& profile, const QatOptions& opts,
                                                     bool channels_last) {
  if (opts.act_fake_quant != "lsq" && opts.act_fake_quant != "ste") {
    return invalid_argument("qat.fake_quant: '{}' (allowed: lsq, ste)", opts.act_fake_quant);
  }
  if (opts.weight_fake_quant != "minmax" && opts.weight_fake_quant != "lsq") {
    return invalid_argument("qat.weight_fake_quant: '{}' (allowed: minmax, lsq)", opts.weight_fake_quant);
  }
  if (!profile.weight_symmetric) {
    return unsupported("profile {}: asymmetric weights are not supported by the QAT core", profile.name);
  }
  QEVAL_ASSIGN_OR_RETURN(QuantPlan plan, plan_quantization(g, cfg, profile));
  std::unique_ptr<QatModule> m(new QatModule(g, std::move(plan), profile, opts));
  QEVAL_RETURN_IF_ERROR(m->init(channels_last));
  QEVAL_RETURN_IF_ERROR(m->init_qat(channels_last, cfg));
  return m;
}

Status QatModule::init_qat(bool, const QuantConfig& cfg) {
  for (const Node& n : graph_.nodes) {
    auto it = plan_.folded_bn.find(n.name);
    if (it == plan_.folded_bn.end()) continue;
    for (const Node& b : graph_.nodes) {
      if (b.name == it->second) bn_node_[n.name] = &b;
    }
  }
  const std::set<std::string> inputs(graph_.inputs.begin(), graph_.inputs.end());
  for (const std::string& v : plan_.act_order) {
    ActQuant a;
    a.spec = plan_.act.at(v);
    // Graph inputs are quantized by a Quantize node, the rest by requantization.
    a.fq = fq_spec(a.spec, -1, inputs.count(v) ? profile_.quantize_rounding : profile_.rounding);
    ObserverOptions oo = cfg.observer;
    oo.layer = v;
    QEVAL_ASSIGN_OR_RETURN(a.observer, make_observer(oo));
    act_[v] = std::move(a);
  }
  for (const auto& [node, spec] : plan_.weight) {
    WeightQuant w;
    w.spec = spec;
    w.fq = fq_spec(spec, plan_.weight_per_channel.at(node) ? 0 : -1, profile_.quantize_rounding);
    wq_[node] = std::move(w);
  }
  return Status::ok();
}

void QatModule::enable_calibration() {
  observe_ = true;
  fq_on_ = false;
}

Status QatModule::enable_quantization() {
  observe_ = false;
  for (const std::string& v : plan_.act_order) {
    ActQuant& a = act_.at(v);
    if (a.ready) continue;
    if (a.observer->count() == 0) {
      return invalid_argument("calibration saw no data for '{}'; run calibration batches first", v);
    }
    Range r;
    if (auto o = plan_.range_override.find(v); o != plan_.range_override.end()) {
      r = o->second;  // quant.ranges: the cfg's range replaces calibration's
    } else {
      QEVAL_ASSIGN_OR_RETURN(r, a.observer->range(a.spec));
    }
    QEVAL_ASSIGN_OR_RETURN(auto qp, choose_qparams(r, a.spec));
    const auto on = torch::TensorOptions().dtype(torch::kFloat32).device(device_);
    a.scale = torch::full({1}, qp.first, on);
    a.zero_point = torch::full({1}, static_cast<float>(qp.second), on);
    if (opts_.act_fake_quant == "lsq" && !a.spec.power_of_two) {
      a.scale.set_requires_grad(true);
      params_.emplace_back(act_key(v, "scale"), a.scale);
    }
    a.ready = true;
  }
  if (opts_.weight_fake_quant == "lsq") {
    torch::NoGradGuard ng;
    for (auto& [node, w] : wq_) {
      if (w.lsq_scale.defined()) continue;
      const Node* n = nullptr;
      for (const Node& x : graph_.nodes) {
        if (x.name == node) n = &x;
      }
      w.lsq_scale = weight_scale(node, folded(*n).first).clone();
      w.lsq_scale.set_requires_grad(true);
      params_.emplace_back(act_key(node, "wscale"), w.lsq_scale);
    }
  }
  fq_on_ = true;
  return Status::ok();
}

void QatModule::freeze() {
  observe_ = false;
  frozen_ = true;
  for (auto& [v, a] : act_) {
    if (a.scale.defined()) a.scale.set_requires_grad(false);
  }
  for (auto& [n, w] : wq_) {
    if (w.lsq_scale.defined()) w.lsq_scale.set_requires_grad(false);
  }
}

torch::Tensor QatModule::weight_scale(const std::string& node, const torch::Tensor& w) const {
  const WeightQuant& q = wq_.at(node);
  if (q.lsq_scale.defined()) return q.lsq_scale.clamp_min(1e-12f);
  torch::NoGradGuard ng;
  torch::Tensor amax;
  if (q.fq.axis == 0) {
    std::vector<int64_t> dims;
    for (int64_t d = 1; d < w.dim(); ++d) dims.push_back(d);
    amax = w.detach().abs().amax(dims);
  } else {
    amax = w.detach().abs().max().reshape({1});
  }
  const float qpos = static_cast<float>((int64_t{1} << (q.spec.bits - 1)) - 1);
  torch::Tensor s = torch::where(amax > 0, amax / qpos, torch::ones_like(amax));
  if (q.spec.power_of_two) s = pot(s);
  return s;
}

torch::Tensor QatModule::bn_factor(const Node& bn) const {
  const float eps = static_cast<float>(bn.attr_float("epsilon", 1e-5));
  return tensors_.at(bn.inputs[1]) / torch::sqrt(tensors_.at(bn.inputs[4]) + eps);
}

std::pair<torch::Tensor, torch::Tensor> QatModule::folded(const Node& n) const {
  torch::Tensor w = tensors_.at(n.inputs[1]);
  torch::Tensor b = n.inputs.size() > 2 && !n.inputs[2].empty() ? tensors_.at(n.inputs[2]) : torch::Tensor();
  auto it = bn_node_.find(n.name);
  if (it == bn_node_.end()) return {w, b};
  const Node& bn = *it->second;
  const torch::Tensor& beta = tensors_.at(bn.inputs[2]);
  const torch::Tensor& mean = tensors_.at(bn.inputs[3]);
  const torch::Tensor factor = bn_factor(bn);
  std::vector<int64_t> shape(w.dim(), 1);
  shape[0] = -1;
  torch::Tensor wf = w * factor.reshape(shape);
  torch::Tensor bf = beta + ((b.defined() ? b : torch::zeros_like(mean)) - mean) * factor;
  return {wf, bf};
}

torch::Tensor QatModule::run_layer(const Node& n, const std::vector<torch::Tensor>& in) {
  const bool is_float = plan_.float_nodes.count(n.name) > 0;
  auto bn_it = bn_node_.find(n.name);
  const bool batch_stats = bn_it != bn_node_.end() && training_ && !frozen_ && fq_on_ &&
                           steps_ < opts_.freeze_bn_step;
  auto [w, b] = folded(n);
  if (fq_on_ && !is_float) {
    WeightQuant& q = wq_.at(n.name);
    torch::Tensor s = weight_scale(n.name, w);
    torch::Tensor z = torch::zeros_like(s);
    w = q.lsq_scale.defined() && !frozen_ ? fake_quant_lsq(w, s, z, q.fq) : fake_quant_ste(w, s.detach(), z, q.fq);
  }
  if (!batch_stats) {
    std::vector<torch::Tensor> args{in[0], w};
    if (b.defined()) args.push_back(b);
    return GraphModule::run_node(n, args);
  }
  // Before the BN freeze step: convolve with the folded, quantized weight, undo
  // the fold, and let BatchNorm normalise with the batch statistics (updating
  // its running statistics), as torch.ao.nn.intrinsic.qat.ConvBn2d does.
  const Node& bn = *bn_it->second;
  torch::Tensor y = GraphModule::run_node(n, {in[0], w}) / bn_factor(bn).reshape({1, -1, 1, 1});
  if (n.inputs.size() > 2 && !n.inputs[2].empty()) y = y + tensors_.at(n.inputs[2]).reshape({1, -1, 1, 1});
  return sync_batch_norm(dist_.get(), y, tensors_.at(bn.inputs[1]), tensors_.at(bn.inputs[2]),
                         tensors_.at(bn.inputs[3]), tensors_.at(bn.inputs[4]), bn.attr_float("momentum", 0.1),
                         bn.attr_float("epsilon", 1e-5));
}

torch::Tensor QatModule::quantize_act(const std::string& v, const torch::Tensor& x) {
  ActQuant& a = act_.at(v);
  if (observe_) {
    torch::NoGradGuard ng;
    torch::Tensor c = x.detach().to(torch::kFloat32).contiguous().cpu();  // observers read host memory
    Status s = a.observer->observe(std::span<const float>(c.data_ptr<float>(), c.numel()));
    if (!s.is_ok()) throw std::runtime_error(s.message());
  }
  if (!fq_on_) return x;
  if (a.scale.requires_grad() && training_) {
    return fake_quant_lsq(x, a.scale.clamp_min(1e-12f), a.zero_point, a.fq);
  }
  torch::Tensor s = a.scale.detach().clamp_min(1e-12f);
  torch::Tensor r = fake_quant_ste(x, s, a.zero_point, a.fq);
  if (capture_) {
    // r = (q − z)·s in float32, so r / s is within an ulp of q − z.
    (*capture_)[v] = (torch::round(r.detach() / s) + a.zero_point).to(torch::kInt32).cpu();
  }
  return r;
}

torch::Tensor QatModule::prepare_input(size_t i, const torch::Tensor& x) {
  const std::string& v = graph_.inputs[i];
  return act_.count(v) ? quantize_act(v, x) : x;
}

torch::Tensor QatModule::run_node(const Node& n, const std::vector<torch::Tensor>& in) {
  torch::Tensor r;
  if (opts_.check_finite && (n.op == OpKind::kConv2d || n.op == OpKind::kLinear)) {
    for (size_t i = 1; i < in.size(); ++i) {
      if (in[i].defined() && !torch::isfinite(in[i]).all().item<bool>()) {
        throw std::runtime_error(fmt::format("its parameter '{}' contains NaN/Inf", n.inputs[i]));
      }
    }
  }
  if (n.op == OpKind::kConv2d || n.op == OpKind::kLinear) {
    r = run_layer(n, in);
  } else if (n.op == OpKind::kBatchNorm && plan_.group_of.count(n.name) &&
             plan_.folded_bn.count(plan_.group_of.at(n.name))) {
    r = in[0];  // applied by its conv (folded)
  } else {
    r = GraphModule::run_node(n, in);
  }
  if (opts_.check_finite && !torch::isfinite(r).all().item<bool>()) {
    throw std::runtime_error("non-finite values (NaN/Inf) in its output");
  }
  const std::string& out = n.outputs[0];
  return act_.count(out) ? quantize_act(out, r) : r;
}

Result<QuantParams> QatModule::act_params(const std::string& v) const {
  auto it = act_.find(v);
  if (it == act_.end() || !it->second.ready) return invalid_argument("'{}' has no quantization parameters yet", v);
  QuantParams q;
  QEVAL_ASSIGN_OR_RETURN(q.dtype, it->second.spec.dtype());
  q.scale = {it->second.scale.detach().clamp_min(1e-12f).item<float>()};
  q.zero_point = {static_cast<int32_t>(it->second.zero_point.item<float>())};
  return q;
}

Result<DeployParams> QatModule::deploy_params() const {
  torch::NoGradGuard ng;
  DeployParams dp;
  dp.rounding = profile_.quantize_rounding;
  for (const std::string& v : plan_.act_order) {
    QEVAL_ASSIGN_OR_RETURN(dp.act[v], act_params(v));
  }
  for (const Node& n : graph_.nodes) {
    if (n.op != OpKind::kConv2d && n.op != OpKind::kLinear) continue;
    auto [w, b] = folded(n);
    QEVAL_ASSIGN_OR_RETURN(dp.weight_f[n.name], from_torch(w.contiguous()));
    if (b.defined()) {
      QEVAL_ASSIGN_OR_RETURN(dp.bias_f[n.name], from_torch(b.contiguous()));
    }
    if (!wq_.count(n.name)) continue;
    const WeightQuant& q = wq_.at(n.name);
    torch::Tensor s = weight_scale(n.name, w).contiguous().cpu();
    QuantParams wp;
    QEVAL_ASSIGN_OR_RETURN(wp.dtype, q.spec.dtype());
    wp.scale.assign(s.data_ptr<float>(), s.data_ptr<float>() + s.numel());
    wp.zero_point.assign(wp.scale.size(), 0);
    wp.axis = q.fq.axis == 0 ? 0 : -1;
    if (wp.scale.size() == 1) wp.axis = -1;
    dp.weight[n.name] = std::move(wp);
  }
  return dp;
}

Result<Graph> QatModule::convert_deploy() const {
  QEVAL_ASSIGN_OR_RETURN(DeployParams dp, deploy_params());
  QEVAL_ASSIGN_OR_RETURN(Graph fg, GraphModule::to_graph());
  QEVAL_ASSIGN_OR_RETURN(Graph q, build_quantized_graph(fg, plan_, dp));
  q.metadata["quantized_for"] = profile_.name;
  q.metadata[kStageMeta] = frozen_ ? "frozen" : fq_on_ ? "quantize" : "calibrate";
  return q;
}

Result<Graph> QatModule::to_graph() const {
  QEVAL_ASSIGN_OR_RETURN(Graph g, GraphModule::to_graph());
  for (const auto& [v, a] : act_) {
    if (!a.ready) continue;
    QEVAL_ASSIGN_OR_RETURN(g.constants[act_key(v, "scale")], from_torch(a.scale));
    QEVAL_ASSIGN_OR_RETURN(g.constants[act_key(v, "zero_point")], from_torch(a.zero_point));
  }
  for (const auto& [n, w] : wq_) {
    if (w.lsq_scale.defined()) {
      QEVAL_ASSIGN_OR_RETURN(g.constants[act_key(n, "wscale")], from_torch(w.lsq_scale));
    }
  }
  g.metadata[kStageMeta] = frozen_ ? "frozen" : fq_on_ ? "quantize" : "calibrate";
  g.metadata[kStepsMeta] = std::to_string(steps_);
  return g;
}

Status QatModule::load_weights(const Graph& g) {
  QEVAL_RETURN_IF_ERROR(GraphModule::load_weights(g));
  torch::NoGradGuard ng;
  auto copy_into = [&](torch::Tensor& dst, const std::string& key) -> Status {
    const Tensor* t = g.find_constant(key);
    if (!t) return data_loss("checkpoint lacks '{}'", key);
    torch::Tensor src = to_torch(*t);
    if (!dst.defined()) {
      dst = src.to(device_);
    } else {
      if (src.sizes() != dst.sizes()) return data_loss("'{}' has the wrong shape", key);
      dst.copy_(src);
    }
    return Status::ok();
  };
  for (auto& [v, a] : act_) {
    if (!g.find_constant(act_key(v, "scale"))) continue;
    if (!a.ready) return invalid_argument("load a QAT checkpoint after enable_quantization()");
    QEVAL_RETURN_IF_ERROR(copy_into(a.scale, act_key(v, "scale")));
    QEVAL_RETURN_IF_ERROR(copy_into(a.zero_point, act_key(v, "zero_point")));
  }
  for (auto& [n, w] : wq_) {
    if (w.lsq_scale.defined()) QEVAL_RETURN_IF_ERROR(copy_into(w.lsq_scale, act_key(n, "wscale")));
  }
  if (auto it = g.metadata.find(kStepsMeta); it != g.metadata.end()) steps_ = std::stoll(it->second);
  return Status::ok();
}

}  // namespace qeval
