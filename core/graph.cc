#include "core/graph.h"

#include <algorithm>
#include <set>

namespace qeval {

namespace {

struct OpInfo {
  const char* name;
  int min_inputs;
  int max_inputs;
  int num_outputs;
};

constexpr OpInfo kOpInfo[] = {
#define QEVAL_OP(Name, min_in, max_in, n_out) {#Name, min_in, max_in, n_out},
#include "core/ops.inc"
#undef QEVAL_OP
};

}  // namespace

const char* op_name(OpKind op) { return kOpInfo[static_cast<int>(op)].name; }
int op_count() { return static_cast<int>(std::size(kOpInfo)); }

Result<OpKind> op_from_name(const std::string& name) {
  for (int i = 0; i < op_count(); ++i) {
    if (name == kOpInfo[i].name) return static_cast<OpKind>(i);
  }
  return unsupported("unknown op '{}'", name);
}

int64_t Node::attr_int(const std::string& k, int64_t def) const {
  auto it = attrs.find(k);
  if (it == attrs.end()) return def;
  if (auto* v = std::get_if<int64_t>(&it->second)) return *v;
  if (auto* d = std::get_if<double>(&it->second)) return static_cast<int64_t>(*d);
  return def;
}

double Node::attr_float(const std::string& k, double def) const {
  auto it = attrs.find(k);
  if (it == attrs.end()) return def;
  if (auto* d = std::get_if<double>(&it->second)) return *d;
  if (auto* v = std::get_if<int64_t>(&it->second)) return static_cast<double>(*v);
  return def;
}

std::string Node::attr_str(const std::string& k, const std::string& def) const {
  auto it = attrs.find(k);
  if (it == attrs.end()) return def;
  if (auto* s = std::get_if<std::string>(&it->second)) return *s;
  return def;
}

std::vector<int64_t> Node::attr_ints(const std::string& k, std::vector<int64_t> def) const {
  auto it = attrs.find(k);
  if (it == attrs.end()) return def;
  if (auto* v = std::get_if<std::vector<int64_t>>(&it->second)) return *v;
  return def;
}

std::vector<double> Node::attr_floats(const std::string& k, std::vector<double> def) const {
  auto it = attrs.find(k);
  if (it == attrs.end()) return def;
  if (auto* v = std::get_if<std::vector<double>>(&it->second)) return *v;
  return def;
}

std::string Node::describe() const { return fmt::format("node '{}' ({})", name, op_name(op)); }

ValueInfo& Graph::value(const std::string& n) {
  auto& v = values[n];
  v.name = n;
  return v;
}

const ValueInfo* Graph::find_value(const std::string& n) const {
  auto it = values.find(n);
  return it == values.end() ? nullptr : &it->second;
}

const Tensor* Graph::find_constant(const std::string& n) const {
  auto it = constants.find(n);
  return it == constants.end() ? nullptr : &it->second;
}

Status check_node_arity(const Node& n) {
  const OpInfo& info = kOpInfo[static_cast<int>(n.op)];
  const int nin = static_cast<int>(n.inputs.size());
  if (nin < info.min_inputs || nin > info.max_inputs) {
    return invalid_argument("{}: has {} inputs, {} takes {} to {}", n.describe(), nin, info.name, info.min_inputs,
                            info.max_inputs);
  }
  for (int i = 0; i < info.min_inputs; ++i) {
    if (n.inputs[i].empty()) return invalid_argument("{}: required input {} is missing", n.describe(), i);
  }
  if (n.outputs.empty() || n.outputs[0].empty()) return invalid_argument("{}: has no output", n.describe());
  return Status::ok();
}

Status Graph::validate() const {
  std::set<std::string> defined(inputs.begin(), inputs.end());
  for (const auto& [name, t] : constants) defined.insert(name);
  std::set<std::string> node_names;
  for (const Node& n : nodes) {
    const OpInfo& info = kOpInfo[static_cast<int>(n.op)];
    if (!node_names.insert(n.name).second) {
      return invalid_argument("graph '{}': two nodes are named '{}'", name, n.name);
    }
    QEVAL_RETURN_IF_ERROR(check_node_arity(n));
    for (size_t i = 0; i < n.inputs.size(); ++i) {
      const std::string& in = n.inputs[i];
      if (in.empty()) continue;
      if (!defined.count(in)) {
        return invalid_argument("{}: input '{}' is not produced by an earlier node, a graph "
                                "input or a constant", n.describe(), in);
      }
    }
    if (static_cast<int>(n.outputs.size()) != info.num_outputs) {
      return invalid_argument("{}: has {} outputs, expected {}", n.describe(), n.outputs.size(),
                              info.num_outputs);
    }
    for (const std::string& out : n.outputs) {
      if (!defined.insert(out).second) {
        return invalid_argument("{}: output '{}' is already defined elsewhere", n.describe(), out);
      }
    }
  }
  for (const std::string& out : outputs) {
    if (!defined.count(out)) {
      return invalid_argument("graph '{}': output '{}' is never produced", name, out);
    }
  }
  return Status::ok();
}

int64_t conv_out_size(int64_t in, int64_t k, int64_t stride, int64_t pad_begin, int64_t pad_end,
                      int64_t dilation, bool ceil_mode) {
  const int64_t span = in + pad_begin + pad_end - dilation * (k - 1) - 1;
  if (span < 0) return 0;
  int64_t out = (ceil_mode ? (span + stride - 1) / stride : span / stride) + 1;
  // ONNX/PyTorch: with ceil_mode the last window must start inside the input or left padding.
  if (ceil_mode && (out - 1) * stride >= in + pad_begin) --out;
  return out;
}

// ---------------------------------------------------------------------------
// Shape inference, one function per op; dispatch generated from ops.inc.

namespace {

using Shapes = std::vector<Shape>;
using ShapeResult = Result<Shapes>;

Status need_rank(const Node& n, const Shape& s, size_t rank, const char* what) {
  if (s.size() != rank) {
    return invalid_argument("{}: {} has shape {}, expected rank {}", n.describe(), what,
                            shape_str(s), rank);
  }
  return Status::ok();
}

Result<Shape> broadcast(const Node& n, const Shape& a, const Shape& b) {
  const size_t r = std::max(a.size(), b.size());
  Shape out(r);
  for (size_t i = 0; i < r; ++i) {
    const int64_t da = i < r - a.size() ? 1 : a[i - (r - a.size())];
    const int64_t db = i < r - b.size() ? 1 : b[i - (r - b.size())];
    if (da != db && da != 1 && db != 1) {
      return invalid_argument("{}: shapes {} and {} do not broadcast", n.describe(), shape_str(a),
                              shape_str(b));
    }
    out[i] = da == 1 ? db : da;
  }
  return out;
}

std::vector<int64_t> pads4(const Node& n) { return n.attr_ints("pads", {0, 0, 0, 0}); }

ShapeResult infer_Conv2d(const Node& n, const Shapes& in) {
  QEVAL_RETURN_IF_ERROR(need_rank(n, in[0], 4, "input X"));
  QEVAL_RETURN_IF_ERROR(need_rank(n, in[1], 4, "weight W"));
  const int64_t group = n.attr_int("group", 1);
  auto st = n.attr_ints("strides", {1, 1});
  auto dil = n.attr_ints("dilations", {1, 1});
  auto p = pads4(n);
  if (group <= 0 || in[0][1] != in[1][1] * group || in[1][0] % group != 0) {
    return invalid_argument("{}: input has {} channels, weight {} with group {}", n.describe(),
                            in[0][1], shape_str(in[1]), group);
  }
  if (in.size() > 2 && !in[2].empty() && shape_numel(in[2]) != in[1][0]) {
    return invalid_argument("{}: bias has {} elements, expected {}", n.describe(),
                            shape_numel(in[2]), in[1][0]);
  }
  const int64_t oh = conv_out_size(in[0][2], in[1][2], st[0], p[0], p[2], dil[0]);
  const int64_t ow = conv_out_size(in[0][3], in[1][3], st[1], p[1], p[3], dil[1]);
  if (oh <= 0 || ow <= 0) {
    return invalid_argument("{}: kernel larger than padded input {}", n.describe(),
                            shape_str(in[0]));
  }
  return Shapes{{in[0][0], in[1][0], oh, ow}};
}

ShapeResult infer_Linear(const Node& n, const Shapes& in) {
  QEVAL_RETURN_IF_ERROR(need_rank(n, in[0], 2, "input X"));
  QEVAL_RETURN_IF_ERROR(need_rank(n, in[1], 2, "weight W"));
  if (in[0][1] != in[1][1]) {
    return invalid_argument("{}: X {} and W {} disagree on K", n.describe(), shape_str(in[0]),
                            shape_str(in[1]));
  }
  return Shapes{{in[0][0], in[1][0]}};
}

ShapeResult infer_MatMul(const Node& n, const Shapes& in) {
  Shape a = in[0], b = in[1];
  if (a.empty() || b.empty()) return invalid_argument("{}: scalar operand", n.describe());
  const bool a1 = a.size() == 1, b1 = b.size() == 1;
  if (a1) a.insert(a.begin(), 1);
  if (b1) b.push_back(1);
  if (a.back() != b[b.size() - 2]) {
    return invalid_argument("{}: {} x {}: inner dimensions differ", n.describe(),
                            shape_str(in[0]), shape_str(in[1]));
  }
  Shape ba(a.begin(), a.end() - 2), bb(b.begin(), b.end() - 2);
  QEVAL_ASSIGN_OR_RETURN(Shape out, broadcast(n, ba, bb));
  if (!a1) out.push_back(a[a.size() - 2]);
  if (!b1) out.push_back(b.back());
  return Shapes{out};
}

ShapeResult same_shape(const Node&, const Shapes& in) { return Shapes{in[0]}; }
ShapeResult infer_BatchNorm(const Node& n, const Shapes& in) { return same_shape(n, in); }
ShapeResult infer_Relu(const Node& n, const Shapes& in) { return same_shape(n, in); }
ShapeResult infer_Relu6(const Node& n, const Shapes& in) { return same_shape(n, in); }
ShapeResult infer_Clip(const Node& n, const Shapes& in) { return same_shape(n, in); }
ShapeResult infer_Sigmoid(const Node& n, const Shapes& in) { return same_shape(n, in); }
ShapeResult infer_SiLU(const Node& n, const Shapes& in) { return same_shape(n, in); }
ShapeResult infer_GELU(const Node& n, const Shapes& in) { return same_shape(n, in); }
ShapeResult infer_Softmax(const Node& n, const Shapes& in) { return same_shape(n, in); }
ShapeResult infer_LayerNorm(const Node& n, const Shapes& in) { return same_shape(n, in); }
ShapeResult infer_Quantize(const Node& n, const Shapes& in) { return same_shape(n, in); }
ShapeResult infer_Dequantize(const Node& n, const Shapes& in) { return same_shape(n, in); }
ShapeResult infer_DynamicQuantize(const Node&, const Shapes& in) {
  return Shapes{in[0], Shape{}, Shape{}};
}

ShapeResult infer_Add(const Node& n, const Shapes& in) {
  QEVAL_ASSIGN_OR_RETURN(Shape s, broadcast(n, in[0], in[1]));
  return Shapes{s};
}
ShapeResult infer_Mul(const Node& n, const Shapes& in) { return infer_Add(n, in); }

ShapeResult infer_Concat(const Node& n, const Shapes& in) {
  const int64_t r = static_cast<int64_t>(in[0].size());
  int64_t axis = n.attr_int("axis", 1);
  if (axis < 0) axis += r;
  if (axis < 0 || axis >= r) return invalid_argument("{}: axis out of range", n.describe());
  Shape out = in[0];
  for (size_t i = 1; i < in.size(); ++i) {
    if (static_cast<int64_t>(in[i].size()) != r) {
      return invalid_argument("{}: inputs differ in rank", n.describe());
    }
    for (int64_t d = 0; d < r; ++d) {
      if (d != axis && in[i][d] != out[d]) {
        return invalid_argument("{}: input {} has shape {}, input 0 has {}", n.describe(), i,
                                shape_str(in[i]), shape_str(in[0]));
      }
    }
    out[axis] += in[i][axis];
  }
  return Shapes{out};
}

ShapeResult pool_shape(const Node& n, const Shapes& in) {
  QEVAL_RETURN_IF_ERROR(need_rank(n, in[0], 4, "input X"));
  auto k = n.attr_ints("kernel", {});
  if (k.size() != 2) return invalid_argument("{}: attribute 'kernel' must have 2 values",
                                             n.describe());
  auto st = n.attr_ints("strides", {1, 1});
  auto dil = n.attr_ints("dilations", {1, 1});
  auto p = pads4(n);
  const bool ceil_mode = n.attr_int("ceil_mode", 0) != 0;
  const int64_t oh = conv_out_size(in[0][2], k[0], st[0], p[0], p[2], dil[0], ceil_mode);
  const int64_t ow = conv_out_size(in[0][3], k[1], st[1], p[1], p[3], dil[1], ceil_mode);
  if (oh <= 0 || ow <= 0) return invalid_argument("{}: window larger than input", n.describe());
  return Shapes{{in[0][0], in[0][1], oh, ow}};
}
ShapeResult infer_MaxPool(const Node& n, const Shapes& in) { return pool_shape(n, in); }
ShapeResult infer_AvgPool(const Node& n, const Shapes& in) { return pool_shape(n, in); }

ShapeResult infer_GlobalAvgPool(const Node& n, const Shapes& in) {
  if (in[0].size() < 3) return invalid_argument("{}: input rank < 3", n.describe());
  Shape s = in[0];
  for (size_t i = 2; i < s.size(); ++i) s[i] = 1;
  return Shapes{s};
}

ShapeResult infer_Flatten(const Node& n, const Shapes& in) {
  const int64_t r = static_cast<int64_t>(in[0].size());
  int64_t axis = n.attr_int("axis", 1);
  if (axis < 0) axis += r;
  if (axis < 0 || axis > r) return invalid_argument("{}: axis out of range", n.describe());
  int64_t a = 1, b = 1;
  for (int64_t i = 0; i < r; ++i) (i < axis ? a : b) *= in[0][i];
  return Shapes{{a, b}};
}

ShapeResult infer_Reshape(const Node& n, const Shapes& in) {
  auto target = n.attr_ints("shape", {});
  Shape out(target.size());
  int64_t known = 1, infer_at = -1;
  for (size_t i = 0; i < target.size(); ++i) {
    int64_t d = target[i];
    if (d == 0) {
      if (i >= in[0].size()) return invalid_argument("{}: shape[{}] = 0 copies a missing dim",
                                                     n.describe(), i);
      d = in[0][i];
    }
    if (d == -1) {
      if (infer_at >= 0) return invalid_argument("{}: two -1 in shape", n.describe());
      infer_at = static_cast<int64_t>(i);
      out[i] = -1;
      continue;
    }
    if (d < 0) return invalid_argument("{}: negative dimension {}", n.describe(), d);
    out[i] = d;
    known *= d;
  }
  const int64_t total = shape_numel(in[0]);
  if (infer_at >= 0) {
    if (known == 0 || total % known) {
      return invalid_argument("{}: cannot reshape {} to {}", n.describe(), shape_str(in[0]),
                              shape_str(target));
    }
    out[infer_at] = total / known;
  } else if (known != total) {
    return invalid_argument("{}: cannot reshape {} to {}", n.describe(), shape_str(in[0]),
                            shape_str(target));
  }
  return Shapes{out};
}

ShapeResult infer_Upsample(const Node& n, const Shapes& in) {
  QEVAL_RETURN_IF_ERROR(need_rank(n, in[0], 4, "input X"));
  auto s = n.attr_ints("scales", {2, 2});
  if (s.size() != 2 || s[0] < 1 || s[1] < 1) {
    return invalid_argument("{}: 'scales' must be two positive integers", n.describe());
  }
  return Shapes{{in[0][0], in[0][1], in[0][2] * s[0], in[0][3] * s[1]}};
}

using InferFn = ShapeResult (*)(const Node&, const Shapes&);
constexpr InferFn kInfer[] = {
#define QEVAL_OP(Name, min_in, max_in, n_out) &infer_##Name,
#include "core/ops.inc"
#undef QEVAL_OP
};

}  // namespace

Result<std::vector<Shape>> infer_node_shapes(const Node& node, const std::vector<Shape>& inputs) {
  return kInfer[static_cast<int>(node.op)](node, inputs);
}

Status Graph::infer_shapes() {
  for (const auto& [n, t] : constants) value(n).shape = t.shape();
  for (const std::string& in : inputs) {
    const ValueInfo* v = find_value(in);
    if (!v) return invalid_argument("graph '{}': input '{}' has no value info", name, in);
    for (int64_t d : v->shape) {
      if (d < 0) {
        return invalid_argument("graph '{}': input '{}' has shape {} with an unknown dimension; "
                                "give the input so its shape is known", name, in, shape_str(v->shape));
      }
    }
  }
  for (const Node& n : nodes) {
    std::vector<Shape> in_shapes;
    for (const std::string& i : n.inputs) {
      in_shapes.push_back(i.empty() ? Shape{} : value(i).shape);
    }
    auto r = infer_node_shapes(n, in_shapes);
    if (!r.is_ok()) return r.status();
    for (size_t o = 0; o < n.outputs.size(); ++o) value(n.outputs[o]).shape = (*r)[o];
  }
  return Status::ok();
}

}  // namespace qeval
