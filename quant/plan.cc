#include "quant/plan.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include <fmt/ranges.h>

namespace qeval {

namespace {

bool is_act(OpKind op) { return op == OpKind::kRelu || op == OpKind::kRelu6 || op == OpKind::kClip; }

bool is_pass_through(OpKind op) {
  return op == OpKind::kMaxPool || op == OpKind::kFlatten || op == OpKind::kReshape ||
         op == OpKind::kUpsample;
}

bool is_layer(OpKind op) {
  return op == OpKind::kConv2d || op == OpKind::kLinear || op == OpKind::kMatMul;
}

}  // namespace

std::string QuantPlan::owner(const std::string& v) const {
  auto it = share.find(v);
  return it == share.end() ? std::string() : it->second;
}

std::vector<std::string> quantizable_layers(const Graph& g) {
  std::vector<std::string> out;
  for (const Node& n : g.nodes) {
    if (n.op != OpKind::kBatchNorm && !is_pass_through(n.op)) out.push_back(n.name);
  }
  return out;
}

std::vector<std::string> quantized_group_heads(const Graph& g, const QuantPlan& plan) {
  std::vector<std::string> out;
  for (const Node& n : g.nodes) {
    auto it = plan.group_of.find(n.name);
    if (it == plan.group_of.end() || it->second != n.name || plan.float_nodes.count(n.name)) continue;
    if (n.op == OpKind::kBatchNorm || is_pass_through(n.op)) continue;
    const bool owns = plan.weight.count(n.name) > 0 || plan.act.count(n.outputs.at(0)) > 0 ||
                      !plan.owner(n.outputs.at(0)).empty();
    if (owns) out.push_back(n.name);
  }
  return out;
}

Result<QuantPlan> plan_quantization(const Graph& g, const QuantConfig& cfg, const ChipProfile& profile) {
  QEVAL_RETURN_IF_ERROR(g.validate());
  QEVAL_RETURN_IF_ERROR(check_quant_config(cfg, profile));
  std::map<std::string, std::vector<const Node*>> consumers;
  std::map<std::string, const Node*> producer;
  for (const Node& n : g.nodes) {
    if (n.op == OpKind::kQuantize || n.op == OpKind::kDequantize || n.op == OpKind::kDynamicQuantize) {
      return invalid_argument("{}: prepare takes a float graph; this one is already quantized", n.describe());
    }
    for (const auto& in : n.inputs) {
      if (!in.empty() && !g.is_constant(in)) consumers[in].push_back(&n);
    }
    for (const auto& o : n.outputs) producer[o] = &n;
  }
  std::set<std::string> graph_outputs(g.outputs.begin(), g.outputs.end());
  auto sole_consumer = [&](const std::string& v, auto pred) -> const Node* {
    auto it = consumers.find(v);
    if (it == consumers.end() || it->second.size() != 1 || graph_outputs.count(v)) return nullptr;
    return pred(*it->second[0]) && it->second[0]->inputs[0] == v ? it->second[0] : nullptr;
  };

  // Config names must be layers of this graph.
  std::set<std::string> names;
  for (const Node& n : g.nodes) names.insert(n.name);
  const std::vector<std::string> layers = quantizable_layers(g);
  auto check_names = [&](const std::vector<std::string>& list, const char* key) -> Status {
    for (const auto& l : list) {
      if (!names.count(l)) {
        return invalid_argument("{}: quant.{}: '{}' is not a layer of {} (layers: {})", cfg.source, key, l,
                                g.name, fmt::join(layers, ", "));
      }
    }
    return Status::ok();
  };
  QEVAL_RETURN_IF_ERROR(check_names(cfg.float_layers, "float_layers"));
  QEVAL_RETURN_IF_ERROR(check_names(cfg.int16_layers, "int16_layers"));
  std::vector<std::string> bit_layers;
  for (const auto& lb : cfg.layer_bits) {
    const std::string& l = lb.first;  // a plain name: lambdas may not capture structured bindings (clang < 16)
    bit_layers.push_back(l);
    auto it = std::find_if(g.nodes.begin(), g.nodes.end(), [&](const Node& n) { return n.name == l; });
    if (it != g.nodes.end() && !is_layer(it->op)) {
      return invalid_argument("{}: quant.layer_bits: '{}' is a {} and has no weights", cfg.source, l,
                              op_name(it->op));
    }
  }
  QEVAL_RETURN_IF_ERROR(check_names(bit_layers, "layer_bits"));
  const std::set<std::string> float_set(cfg.float_layers.begin(), cfg.float_layers.end());

  QuantPlan plan;
  // Pass 1: groups. head -> members in order; the last member's output is the group value.
  std::map<std::string, std::vector<const Node*>> groups;
  std::vector<std::string> heads;
  for (const Node& n : g.nodes) {
    if (plan.group_of.count(n.name)) continue;
    std::vector<const Node*> members{&n};
    if (n.op == OpKind::kConv2d || n.op == OpKind::kLinear || n.op == OpKind::kMatMul ||
        n.op == OpKind::kAdd) {
      if (n.op == OpKind::kConv2d) {
        if (const Node* bn = sole_consumer(n.outputs[0], [](const Node& c) { return c.op == OpKind::kBatchNorm; })) {
          members.push_back(bn);
          plan.folded_bn[n.name] = bn->name;
        }
      }
      if (const Node* act = sole_consumer(members.back()->outputs[0], [](const Node& c) { return is_act(c.op); })) {
        members.push_back(act);
      }
    }
    for (const Node* m : members) plan.group_of[m->name] = n.name;
    groups[n.name] = members;
    heads.push_back(n.name);
  }

  // Pass 2: float nodes. A hybrid group is float; a pass-through op of a float value is float;
  // a BatchNorm not folded into a conv runs in float too (the simulator has no integer BN).
  for (const std::string& h : heads) {
    const Node& head = *groups[h][0];
    bool is_float = float_set.count(h) > 0;
    for (const Node* m : groups[h]) is_float = is_float || float_set.count(m->name);
    if (head.op == OpKind::kBatchNorm) is_float = true;
    if (is_pass_through(head.op)) {
      const std::string& in = head.inputs[0];
      is_float = producer.count(in) && plan.float_nodes.count(producer[in]->name);
    }
    if (is_float) {
      for (const Node* m : groups[h]) plan.float_nodes.insert(m->name);
    }
  }

  // Pass 3: quantizers. Which values are needed as integers: inputs of integer nodes.
  auto needs_int = [&](const std::string& v) {
    if (graph_outputs.count(v) && !consumers.count(v)) {
      // A graph output produced by an integer node stays integer (then dequantized).
      return producer.count(v) && !plan.float_nodes.count(producer[v]->name);
    }
    auto it = consumers.find(v);
    if (it == consumers.end()) return false;
    for (const Node* c : it->second) {
      if (!plan.float_nodes.count(c->name)) return true;
    }
    // Produced by an integer node: stays integer until a consumer dequantizes it.
    return producer.count(v) && !plan.float_nodes.count(producer[v]->name);
  };
  auto add_owner = [&](const std::string& v, const std::string& layer) {
    QuantSpec spec = activation_spec(cfg, profile, layer);
    plan.act[v] = spec;
    plan.act_order.push_back(v);
    plan.share[v] = v;
  };
  for (const std::string& in : g.inputs) {
    if (needs_int(in)) add_owner(in, in);
  }
  for (const std::string& h : heads) {
    const auto& members = groups[h];
    const Node& head = *members[0];
    const std::string out = members.back()->outputs[0];
    const bool is_float = plan.float_nodes.count(h) > 0;
    if (is_layer(head.op) && !is_float) {
      plan.weight[h] = weight_spec(cfg, profile, h);
      plan.weight_per_channel[h] = cfg.per_channel && profile.weight_per_channel;
    }
    if (is_float) {
      if (needs_int(out)) add_owner(out, h);
      continue;
    }
    if (is_pass_through(head.op)) {
      const std::string src = plan.owner(head.inputs[0]);
      if (src.empty()) {
        return internal_error("{}: its input '{}' has no quantization", head.describe(), head.inputs[0]);
      }
      plan.share[out] = src;
      continue;
    }
    add_owner(out, h);
    for (const Node* m : members) plan.share[m->outputs[0]] = out;
  }
  for (const auto& [layer, r] : cfg.ranges) {
    auto it = std::find_if(g.nodes.begin(), g.nodes.end(), [&](const Node& n) { return n.name == layer; });
    if (it == g.nodes.end()) {
      return invalid_argument("{}: quant.ranges: '{}' is not a layer of {} (layers: {})", cfg.source, layer, g.name,
                              fmt::join(layers, ", "));
    }
    const std::string o = plan.owner(it->outputs.at(0));
    if (o.empty() || plan.float_nodes.count(layer)) continue;  // a float layer has no quantizer to set
    plan.range_override[o] = Range{static_cast<float>(r.at(0)), static_cast<float>(r.at(1))};
  }
  return plan;
}

int32_t quantize_bias(float b, float s_x, float s_w) {
  const double v = static_cast<double>(b) / (static_cast<double>(s_x) * static_cast<double>(s_w));
  const double r = std::round(v);  // half away from zero
  const double lim = std::numeric_limits<int32_t>::max();
  return static_cast<int32_t>(std::clamp(r, -lim - 1, lim));
}

Result<Graph> build_quantized_graph(const Graph& g, const QuantPlan& plan, const DeployParams& dp) {
  Graph q;
  q.name = g.name;
  q.inputs = g.inputs;
  q.outputs = g.outputs;
  q.metadata = g.metadata;
  std::set<std::string> graph_outputs(g.outputs.begin(), g.outputs.end());

  auto params_of = [&](const std::string& v) -> Result<QuantParams> {
    const std::string o = plan.owner(v);
    auto it = dp.act.find(o);
    if (o.empty() || it == dp.act.end()) return internal_error("no quantization parameters for value '{}'", v);
    return it->second;
  };
  // Float-graph value -> deploy value holding it as an integer / as a float.
  std::map<std::string, std::string> int_name, float_name;
  auto add_value = [&](const std::string& name, DType dt, std::optional<QuantParams> qp) {
    ValueInfo& vi = q.value(name);
    vi.dtype = dt;
    vi.quant = std::move(qp);
  };
  std::set<std::string> node_names;
  for (const Node& n : g.nodes) node_names.insert(n.name);
  auto add_convert = [&](OpKind op, const std::string& in, const std::string& out) {
    Node n;
    n.op = op;
    // Named after its output, unless a layer has that name (det_tiny's conv "head"
    // produces the output "head").
    n.name = node_names.count(out) ? out + (op == OpKind::kQuantize ? ".quantize" : ".dequantize") : out;
    n.inputs = {in};
    n.outputs = {out};
    q.nodes.push_back(std::move(n));
  };
  auto as_int = [&](const std::string& v) -> Result<std::string> {
    if (auto it = int_name.find(v); it != int_name.end()) return it->second;
    auto f = float_name.find(v);
    if (f == float_name.end()) return internal_error("value '{}' is not defined", v);
    QEVAL_ASSIGN_OR_RETURN(QuantParams qp, params_of(v));
    const std::string name = v + ".q";
    add_value(name, qp.dtype, qp);
    add_convert(OpKind::kQuantize, f->second, name);
    int_name[v] = name;
    return name;
  };
  auto as_float = [&](const std::string& v) -> Result<std::string> {
    if (auto it = float_name.find(v); it != float_name.end()) return it->second;
    auto i = int_name.find(v);
    if (i == int_name.end()) return internal_error("value '{}' is not defined", v);
    const std::string name = graph_outputs.count(v) ? v : v + ".f";
    add_value(name, DType::kFloat32, std::nullopt);
    add_convert(OpKind::kDequantize, i->second, name);
    float_name[v] = name;
    return name;
  };

  for (const std::string& in : g.inputs) {
    const ValueInfo* vi = g.find_value(in);
    add_value(in, DType::kFloat32, std::nullopt);
    if (vi) q.value(in).shape = vi->shape;
    float_name[in] = in;
    if (!plan.owner(in).empty()) QEVAL_RETURN_IF_ERROR(as_int(in).status());
  }
  std::set<std::string> folded_bns;
  for (const auto& [conv, bn] : plan.folded_bn) folded_bns.insert(bn);
  std::map<std::string, std::string> folded_out;  // conv node -> its BN's output value
  for (const Node& n : g.nodes) {
    if (folded_bns.count(n.name)) {
      for (const auto& [conv, bn] : plan.folded_bn) {
        if (bn == n.name) folded_out[conv] = n.outputs[0];
      }
    }
  }

  // The bias constant of a layer: its own, or "<node>.bias" when BN folding creates one.
  auto bias_name = [](const Node& n) {
    return n.inputs.size() > 2 && !n.inputs[2].empty() ? n.inputs[2] : n.name + ".bias";
  };
  for (const Node& n : g.nodes) {
    const std::string& out = n.outputs[0];
    if (folded_bns.count(n.name)) {  // its conv already produced the folded result
      if (int_name.count(n.inputs[0])) int_name[out] = int_name[n.inputs[0]];
      if (float_name.count(n.inputs[0])) float_name[out] = float_name[n.inputs[0]];
      if (graph_outputs.count(out)) {
        return unsupported("{}: a folded BatchNorm cannot be a graph output here", n.describe());
      }
      continue;
    }
    Node d = n;
    const bool is_float = plan.float_nodes.count(n.name) > 0;
    const bool is_layer_node = is_layer(n.op) && !is_float;
    for (size_t i = 0; i < n.inputs.size(); ++i) {
      const std::string& in = n.inputs[i];
      if (in.empty()) continue;
      if (g.is_constant(in)) {
        if (is_layer_node && i >= 1) continue;  // replaced below
        if (!is_float) {
          return unsupported("{}: constant input '{}' of an integer {} is not supported", n.describe(), in,
                             op_name(n.op));
        }
        q.constants[in] = g.constants.at(in);
        add_value(in, g.constants.at(in).dtype(), std::nullopt);
        continue;
      }
      QEVAL_ASSIGN_OR_RETURN(d.inputs[i], is_float ? as_float(in) : as_int(in));
    }
    if (is_float) {
      // A folded conv in a float group: use the folded float weights, and name the
      // result after its BatchNorm's value as the integer path does (the value
      // holds the normalised result; run_eval's layer comparison pairs names).
      std::string value = out;
      if (is_layer(n.op) && dp.weight_f.count(n.name)) {
        if (auto fb = folded_out.find(n.name); fb != folded_out.end()) value = fb->second;
        const std::string w = n.inputs[1];
        q.constants[w] = dp.weight_f.at(n.name);
        add_value(w, DType::kFloat32, std::nullopt);
        if (dp.bias_f.count(n.name)) {
          const std::string b = bias_name(n);
          d.inputs.resize(3);
          d.inputs[2] = b;
          q.constants[b] = dp.bias_f.at(n.name);
          add_value(b, DType::kFloat32, std::nullopt);
        }
      }
      d.outputs = {value};
      add_value(value, DType::kFloat32, std::nullopt);
      float_name[out] = value;
      q.nodes.push_back(d);
      continue;
    }
    QEVAL_ASSIGN_OR_RETURN(QuantParams yq, params_of(out));
    // A conv with a folded BN produces the BN's value (the name the QAT owner has).
    std::string value = out;
    if (auto fb = folded_out.find(n.name); fb != folded_out.end()) value = fb->second;
    const std::string name = graph_outputs.count(value) ? value + ".q" : value;
    d.outputs = {name};
    add_value(name, yq.dtype, yq);
    if (is_layer_node) {
      auto wq = dp.weight.find(n.name);
      auto wf = dp.weight_f.find(n.name);
      if (wq == dp.weight.end() || wf == dp.weight_f.end()) {
        return internal_error("{}: no weight quantization parameters", n.describe());
      }
      const QuantParams& wp = wq->second;
      const Tensor& w = wf->second;
      const int64_t channels = w.dim(0), inner = w.numel() / std::max<int64_t>(1, channels);
      if (wp.scale.size() != 1 && static_cast<int64_t>(wp.scale.size()) != channels) {
        return internal_error("{}: {} weight scales for {} channels", n.describe(), wp.scale.size(), channels);
      }
      Tensor wi(wp.dtype, w.shape());
      const float* wd = w.data<float>();
      for (int64_t c = 0; c < channels; ++c) {
        const float s = wp.scale.size() > 1 ? wp.scale[c] : wp.scale[0];
        const int32_t z = wp.zero_point.size() > 1 ? wp.zero_point[c] : wp.zero_point[0];
        for (int64_t k = 0; k < inner; ++k) {
          wi.set_int(c * inner + k, quantize_value(wd[c * inner + k], s, z, wp.qmin(), wp.qmax(), dp.rounding));
        }
      }
      const int bits = plan.weight.count(n.name) ? plan.weight.at(n.name).bits : 8;
      if (bits != 8) q.metadata["weight_bits." + n.name] = std::to_string(bits);
      const std::string wname = n.inputs[1];
      q.constants[wname] = std::move(wi);
      add_value(wname, wp.dtype, wp);
      q.value(wname).shape = w.shape();
      if (auto bf = dp.bias_f.find(n.name); bf != dp.bias_f.end()) {
        QEVAL_ASSIGN_OR_RETURN(QuantParams xq, params_of(n.inputs[0]));
        Tensor bi(DType::kInt32, {channels});
        for (int64_t c = 0; c < channels; ++c) {
          const float sw = wp.scale.size() > 1 ? wp.scale[c] : wp.scale[0];
          bi.set_int(c, quantize_bias(bf->second.data<float>()[c], xq.scale[0], sw));
        }
        const std::string bname = bias_name(n);
        d.inputs.resize(3);
        d.inputs[2] = bname;
        q.constants[bname] = std::move(bi);
        add_value(bname, DType::kInt32, std::nullopt);
        q.value(bname).shape = {channels};
      } else if (n.inputs.size() > 2) {
        d.inputs.resize(2);
      }
    }
    int_name[out] = name;
    int_name[value] = name;
    q.nodes.push_back(d);
    if (graph_outputs.count(value)) QEVAL_RETURN_IF_ERROR(as_float(value).status());
  }
  for (const std::string& o : g.outputs) {
    if (!float_name.count(o) || float_name[o] != o) {
      return internal_error("graph output '{}' was not produced as float", o);
    }
  }
  QEVAL_RETURN_IF_ERROR(q.validate());
  QEVAL_RETURN_IF_ERROR(q.infer_shapes());
  return q;
}

}  // namespace qeval
