#include "models/graph_builder.h"

#include <cmath>

namespace qeval {

GraphBuilder::GraphBuilder(std::string graph_name, uint64_t seed) : rng_(seed * 0x2545F4914F6CDD1Dull + 1) {
  g_.name = std::move(graph_name);
}

std::string GraphBuilder::unique(const std::string& base) {
  const int n = used_[base]++;
  return n == 0 ? base : base + "_" + std::to_string(n);
}

Tensor GraphBuilder::uniform(Shape shape, double bound) {
  Tensor t(DType::kFloat32, std::move(shape));
  for (float& v : t.span<float>()) {
    const double u = rng_.uniform();  // [0, 1)
    v = static_cast<float>((2.0 * u - 1.0) * bound);
  }
  return t;
}

std::string GraphBuilder::input(const std::string& name, const Shape& shape) {
  g_.inputs.push_back(name);
  ValueInfo& v = g_.value(name);
  v.dtype = DType::kFloat32;
  v.shape = shape;
  return name;
}

void GraphBuilder::output(const std::string& value, const std::string& as) {
  if (as.empty() || as == value) {
    g_.outputs.push_back(value);
    return;
  }
  for (Node& n : g_.nodes) {
    for (std::string& o : n.outputs) o = o == value ? as : o;
    for (std::string& i : n.inputs) i = i == value ? as : i;
  }
  g_.values[as] = g_.values[value];
  g_.values[as].name = as;
  g_.values.erase(value);
  g_.outputs.push_back(as);
}

std::string GraphBuilder::node(OpKind op, const std::string& name, std::vector<std::string> inputs,
                               std::map<std::string, AttrValue> attrs) {
  Node n;
  n.op = op;
  n.name = unique(name);
  n.inputs = std::move(inputs);
  n.outputs = {n.name};
  n.attrs = std::move(attrs);
  g_.value(n.name).dtype = DType::kFloat32;
  g_.nodes.push_back(std::move(n));
  return g_.nodes.back().name;
}

std::string GraphBuilder::conv(const std::string& x, const std::string& prefix, int64_t cin,
                               int64_t cout, int64_t k, int64_t stride, int64_t pad, int64_t groups,
                               bool bias) {
  const int64_t fan_in = cin / groups * k * k;
  // PyTorch's default (kaiming_uniform_ with a = √5): bound = 1/√fan_in, as the peers use.
  g_.constants[prefix + ".weight"] = uniform({cout, cin / groups, k, k}, 1.0 / std::sqrt(static_cast<double>(fan_in)));
  std::vector<std::string> ins = {x, prefix + ".weight"};
  if (bias) {
    g_.constants[prefix + ".bias"] = uniform({cout}, 1.0 / std::sqrt(static_cast<double>(fan_in)));
    ins.push_back(prefix + ".bias");
  }
  return node(OpKind::kConv2d, prefix, std::move(ins),
              {{"strides", std::vector<int64_t>{stride, stride}},
               {"pads", std::vector<int64_t>{pad, pad, pad, pad}},
               {"dilations", std::vector<int64_t>{1, 1}},
               {"group", groups}});
}

std::string GraphBuilder::bn(const std::string& x, const std::string& prefix, int64_t c) {
  auto fill = [&](const std::string& name, float v) {
    Tensor t(DType::kFloat32, {c});
    for (float& e : t.span<float>()) e = v;
    g_.constants[prefix + "." + name] = t;
    return prefix + "." + name;
  };
  std::vector<std::string> ins = {x, fill("weight", 1.f), fill("bias", 0.f), fill("running_mean", 0.f),
                                  fill("running_var", 1.f)};
  return node(OpKind::kBatchNorm, prefix, std::move(ins), {{"epsilon", 1e-5}, {"momentum", 0.1}});
}

std::string GraphBuilder::linear(const std::string& x, const std::string& prefix, int64_t in, int64_t out) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));
  g_.constants[prefix + ".weight"] = uniform({out, in}, bound);
  g_.constants[prefix + ".bias"] = uniform({out}, bound);
  return node(OpKind::kLinear, prefix, {x, prefix + ".weight", prefix + ".bias"});
}

std::string GraphBuilder::relu(const std::string& x) { return node(OpKind::kRelu, x + ".relu", {x}); }
std::string GraphBuilder::relu6(const std::string& x) { return node(OpKind::kRelu6, x + ".relu6", {x}); }
std::string GraphBuilder::silu(const std::string& x) { return node(OpKind::kSiLU, x + ".silu", {x}); }
std::string GraphBuilder::add(const std::string& a, const std::string& b) {
  return node(OpKind::kAdd, a + ".add", {a, b});
}
std::string GraphBuilder::concat(const std::vector<std::string>& xs, int64_t axis) {
  return node(OpKind::kConcat, xs.front() + ".cat", xs, {{"axis", axis}});
}
std::string GraphBuilder::max_pool(const std::string& x, int64_t k, int64_t stride) {
  return node(OpKind::kMaxPool, x + ".maxpool", {x},
              {{"kernel", std::vector<int64_t>{k, k}},
               {"strides", std::vector<int64_t>{stride, stride}},
               {"pads", std::vector<int64_t>{0, 0, 0, 0}}});
}
std::string GraphBuilder::global_avg_pool(const std::string& x) {
  return node(OpKind::kGlobalAvgPool, x + ".gap", {x});
}
std::string GraphBuilder::flatten(const std::string& x) {
  return node(OpKind::kFlatten, x + ".flatten", {x}, {{"axis", int64_t{1}}});
}
std::string GraphBuilder::upsample_nearest(const std::string& x, int64_t factor) {
  return node(OpKind::kUpsample, x + ".up", {x}, {{"scales", std::vector<int64_t>{factor, factor}}});
}

Result<Graph> GraphBuilder::finish() {
  QEVAL_RETURN_IF_ERROR(g_.validate());
  QEVAL_RETURN_IF_ERROR(g_.infer_shapes());
  return g_;
}

}  // namespace qeval
