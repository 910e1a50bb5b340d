#include "simulator/onnx_import.h"

#include <onnx/onnx_pb.h>

#include "core/file_io.h"

#include <algorithm>
#include <cmath>
#include <set>

namespace qeval {

namespace {

Result<DType> dtype_from_onnx(int t) {
  switch (t) {
    case onnx::TensorProto::FLOAT: return DType::kFloat32;
    case onnx::TensorProto::INT8: return DType::kInt8;
    case onnx::TensorProto::UINT8: return DType::kUInt8;
    case onnx::TensorProto::INT16: return DType::kInt16;
    case onnx::TensorProto::INT32: return DType::kInt32;
    case onnx::TensorProto::INT64: return DType::kInt64;
    default: return unsupported("ONNX element type {} is not supported", t);
  }
}

Result<Tensor> tensor_from_proto(const onnx::TensorProto& p) {
  QEVAL_ASSIGN_OR_RETURN(DType dt, dtype_from_onnx(p.data_type()));
  Shape shape(p.dims().begin(), p.dims().end());
  for (int64_t d : shape) {
    if (d < 0) return data_loss("tensor '{}' has a negative dimension", p.name());
  }
  if (p.data_location() == onnx::TensorProto::EXTERNAL) {
    return unsupported("tensor '{}' stores its data externally", p.name());
  }
  // The elements the file holds bound the shape before anything is allocated: a
  // corrupted dim must not become a 2^63-byte allocation (found by fuzz_onnx).
  const int64_t want = shape_numel(shape);
  const int64_t held = p.has_raw_data()
                           ? static_cast<int64_t>(p.raw_data().size() / dtype_size(dt))
                           : std::max<int64_t>({p.float_data_size(), p.int32_data_size(), p.int64_data_size(),
                                                p.double_data_size(), p.uint64_data_size()});
  if (want > held) {
    return data_loss("tensor '{}' has shape {} ({} elements) but holds {}", p.name(), shape_str(shape), want, held);
  }
  Tensor t(dt, shape);
  const int64_t n = t.numel();
  if (p.has_raw_data()) {
    if (p.raw_data().size() != t.nbytes()) {
      return data_loss("tensor '{}' has {} raw bytes, shape {} needs {}", p.name(),
                       p.raw_data().size(), shape_str(shape), t.nbytes());
    }
    if (t.nbytes()) std::memcpy(t.raw(), p.raw_data().data(), t.nbytes());
    return t;
  }
  auto check = [&](int64_t have) -> Status {
    if (have != n) {
      return data_loss("tensor '{}' has {} values, shape {} needs {}", p.name(), have,
                       shape_str(shape), n);
    }
    return Status::ok();
  };
  switch (dt) {
    case DType::kFloat32:
      QEVAL_RETURN_IF_ERROR(check(p.float_data_size()));
      for (int64_t i = 0; i < n; ++i) t.data<float>()[i] = p.float_data(static_cast<int>(i));
      break;
    case DType::kInt64:
      QEVAL_RETURN_IF_ERROR(check(p.int64_data_size()));
      for (int64_t i = 0; i < n; ++i) t.data<int64_t>()[i] = p.int64_data(static_cast<int>(i));
      break;
    default:  // int8/uint8/int16/int32 live in int32_data
      QEVAL_RETURN_IF_ERROR(check(p.int32_data_size()));
      for (int64_t i = 0; i < n; ++i) {
        const int32_t v = p.int32_data(static_cast<int>(i));
        switch (dt) {
          case DType::kInt8: t.data<int8_t>()[i] = static_cast<int8_t>(v); break;
          case DType::kUInt8: t.data<uint8_t>()[i] = static_cast<uint8_t>(v); break;
          case DType::kInt16: t.data<int16_t>()[i] = static_cast<int16_t>(v); break;
          default: t.data<int32_t>()[i] = v; break;
        }
      }
  }
  return t;
}

// Builds the qeval graph from the ONNX graph.
class Importer {
 public:
  Importer(const onnx::ModelProto& m, const OnnxImportOptions& opts) : model_(m), opts_(opts) {}

  Result<Graph> run() {
    const onnx::GraphProto& gp = model_.graph();
    g_.name = gp.name();
    for (const auto& op : model_.opset_import()) {
      if (op.domain().empty() || op.domain() == "ai.onnx") opset_ = op.version();
    }
    for (const auto& init : gp.initializer()) {
      auto t = tensor_from_proto(init);
      if (!t.is_ok()) return t.status().with_context("initializer '" + init.name() + "'");
      add_constant(init.name(), std::move(t).value());
    }
    for (const auto& in : gp.input()) {
      if (g_.is_constant(in.name())) continue;  // old-style initializer listed as input
      ValueInfo& v = g_.value(in.name());
      const auto& tt = in.type().tensor_type();
      auto dt = dtype_from_onnx(tt.elem_type());
      if (!dt.is_ok()) return dt.status().with_context("graph input '" + in.name() + "'");
      v.dtype = *dt;
      for (const auto& d : tt.shape().dim()) v.shape.push_back(d.has_dim_value() ? d.dim_value() : -1);
      g_.inputs.push_back(in.name());
    }
    for (const auto& node : gp.node()) {
      Status s = import_node(node);
      if (!s.is_ok()) {
        return s.with_context(fmt::format("node '{}' ({})", node_name(node), node.op_type()));
      }
    }
    for (const auto& out : gp.output()) g_.outputs.push_back(out.name());
    // The rewrites below index node inputs; a node without its required ones is
    // an error here, not a crash there (found by fuzz_onnx).
    for (const Node& n : g_.nodes) QEVAL_RETURN_IF_ERROR(check_node_arity(n));
    fuse_silu();
    if (opts_.fold_qdq) {
      drop_redundant_relu_clip();
      fold_qdq_groups();
    }
    remove_dead_nodes();
    QEVAL_RETURN_IF_ERROR(g_.validate());
    return std::move(g_);
  }

 private:
  std::string node_name(const onnx::NodeProto& n) {
    return n.name().empty() ? (n.output_size() ? n.output(0) : n.op_type()) : n.name();
  }

  void add_constant(const std::string& name, Tensor t) {
    ValueInfo& v = g_.value(name);
    v.dtype = t.dtype();
    v.shape = t.shape();
    g_.constants[name] = std::move(t);
  }

  Result<const Tensor*> constant(const onnx::NodeProto& n, int i, const char* what) {
    if (i >= n.input_size() || n.input(i).empty()) {
      return invalid_argument("input {} ({}) is missing", i, what);
    }
    const Tensor* t = g_.find_constant(n.input(i));
    auto b = opts_.bindings.find(n.input(i));
    auto gi = std::find(g_.inputs.begin(), g_.inputs.end(), n.input(i));
    if (!t && b != opts_.bindings.end() && gi != g_.inputs.end()) {
      // A graph input needed as a constant (a scale, a zero point) and given: fold it.
      g_.inputs.erase(gi);
      add_constant(n.input(i), b->second);
      t = g_.find_constant(n.input(i));
    }
    if (!t) {
      return unsupported("input '{}' ({}) must be a constant (an initializer), or be given with "
                         "--input so it can be folded", n.input(i), what);
    }
    return t;
  }

  // QuantParams from constant scale / zero-point inputs. A missing zero point
  // is 0 of `default_dtype` (ONNX: uint8).
  Result<QuantParams> quant_from(const onnx::NodeProto& n, int scale_idx, int zp_idx, int axis,
                                 DType default_dtype) {
    QEVAL_ASSIGN_OR_RETURN(const Tensor* s, constant(n, scale_idx, "scale"));
    if (s->dtype() != DType::kFloat32) return invalid_argument("scale must be float32");
    QuantParams q;
    q.dtype = default_dtype;
    for (int64_t i = 0; i < s->numel(); ++i) {
      const float v = s->data<float>()[i];
      if (!(v > 0.0f) || !std::isfinite(v)) {
        return invalid_argument("scale '{}' has a non-positive or non-finite value {}",
                                n.input(scale_idx), v);
      }
      q.scale.push_back(v);
    }
    if (zp_idx >= 0 && zp_idx < n.input_size() && !n.input(zp_idx).empty()) {
      QEVAL_ASSIGN_OR_RETURN(const Tensor* z, constant(n, zp_idx, "zero point"));
      q.dtype = z->dtype();
      for (int64_t i = 0; i < z->numel(); ++i) q.zero_point.push_back(static_cast<int32_t>(z->get_int(i)));
      if (q.zero_point.size() != q.scale.size()) {
        if (q.zero_point.size() == 1) q.zero_point.assign(q.scale.size(), q.zero_point[0]);
        else return invalid_argument("{} scales but {} zero points", q.scale.size(), q.zero_point.size());
      }
    } else {
      q.zero_point.assign(q.scale.size(), 0);
    }
    if (q.scale.empty()) return invalid_argument("empty scale tensor '{}'", n.input(scale_idx));
    q.axis = q.scale.size() > 1 ? axis : -1;
    return q;
  }

  Status set_quant(const std::string& value, const QuantParams& q) {
    ValueInfo& v = g_.value(value);
    if (v.quant && !(*v.quant == q)) {
      return unsupported("value '{}' is used with two different quantizations", value);
    }
    v.quant = q;
    if (!g_.is_constant(value)) v.dtype = q.dtype;
    return Status::ok();
  }

  // QLinearConv / QLinearMatMul share the operand layout
  //   (a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp[, bias]):
  // quantizes a, b (per channel along b_axis when its scale is a vector) and y.
  Status qlinear_operands(const onnx::NodeProto& n, const std::string& a, const std::string& b, int b_axis) {
    QEVAL_ASSIGN_OR_RETURN(QuantParams qa, quant_from(n, 1, 2, -1, DType::kUInt8));
    QEVAL_ASSIGN_OR_RETURN(QuantParams qb, quant_from(n, 4, 5, b_axis, DType::kUInt8));
    QEVAL_ASSIGN_OR_RETURN(QuantParams qy, quant_from(n, 6, 7, -1, DType::kUInt8));
    QEVAL_RETURN_IF_ERROR(set_quant(a, qa));
    QEVAL_RETURN_IF_ERROR(set_quant(b, qb));
    return set_quant(n.output(0), qy);
  }

  std::map<std::string, const onnx::AttributeProto*> attrs(const onnx::NodeProto& n) {
    std::map<std::string, const onnx::AttributeProto*> m;
    for (const auto& a : n.attribute()) m[a.name()] = &a;
    return m;
  }

  Status check_attrs(const onnx::NodeProto& n, std::set<std::string> allowed) {
    for (const auto& a : n.attribute()) {
      if (!allowed.count(a.name())) return unsupported("attribute '{}' is not supported", a.name());
    }
    return Status::ok();
  }

  // Conv-like attributes -> qeval Conv2d/pool attributes.
  Status conv_attrs(const onnx::NodeProto& n, Node& out, const Shape& x_shape, const Shape& kernel) {
    auto a = attrs(n);
    std::vector<int64_t> strides{1, 1}, dil{1, 1}, pads{0, 0, 0, 0};
    if (a.count("strides")) strides.assign(a["strides"]->ints().begin(), a["strides"]->ints().end());
    if (a.count("dilations")) dil.assign(a["dilations"]->ints().begin(), a["dilations"]->ints().end());
    if (a.count("pads")) pads.assign(a["pads"]->ints().begin(), a["pads"]->ints().end());
    if (strides.size() != 2 || dil.size() != 2 || pads.size() != 4) {
      return unsupported("only 2-D convolution/pooling is supported");
    }
    const std::string auto_pad = a.count("auto_pad") ? a["auto_pad"]->s() : "NOTSET";
    if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      if (x_shape.size() != 4 || x_shape[2] < 0 || x_shape[3] < 0) {
        return unsupported("auto_pad {} needs a known input shape", auto_pad);
      }
      for (int d = 0; d < 2; ++d) {
        const int64_t in = x_shape[2 + d], out = (in + strides[d] - 1) / strides[d];
        const int64_t total =
            std::max<int64_t>(0, (out - 1) * strides[d] + dil[d] * (kernel[d] - 1) + 1 - in);
        const int64_t small = total / 2, big = total - small;
        pads[d] = auto_pad == "SAME_UPPER" ? small : big;
        pads[d + 2] = auto_pad == "SAME_UPPER" ? big : small;
      }
    } else if (auto_pad == "VALID") {
      pads = {0, 0, 0, 0};
    } else if (auto_pad != "NOTSET") {
      return unsupported("auto_pad '{}'", auto_pad);
    }
    out.attrs["strides"] = strides;
    out.attrs["dilations"] = dil;
    out.attrs["pads"] = pads;
    return Status::ok();
  }

  Node& add_node(OpKind op, const onnx::NodeProto& n, std::vector<std::string> inputs,
                 std::vector<std::string> outputs) {
    Node node;
    node.op = op;
    node.name = node_name(n);
    if (g_.nodes.end() != std::find_if(g_.nodes.begin(), g_.nodes.end(),
                                       [&](const Node& x) { return x.name == node.name; })) {
      node.name += "_" + std::to_string(g_.nodes.size());
    }
    node.inputs = std::move(inputs);
    node.outputs = std::move(outputs);
    for (const auto& o : node.outputs) g_.value(o);
    g_.nodes.push_back(std::move(node));
    return g_.nodes.back();
  }

  std::string in(const onnx::NodeProto& n, int i) {
    return i < n.input_size() ? n.input(i) : std::string();
  }

  void set_float(const std::string& v) { g_.value(v).dtype = DType::kFloat32; }

  Status import_node(const onnx::NodeProto& n) {
    const std::string& op = n.op_type();
    if (!n.domain().empty() && n.domain() != "ai.onnx") {
      return unsupported("op domain '{}' is not supported", n.domain());
    }
    // Every op read here writes output 0 (DynamicQuantizeLinear outputs 0..2): a node
    // without them is malformed, not a reason to index past the list (found by fuzz_onnx).
    const int needed = op == "DynamicQuantizeLinear" ? 3 : 1;
    if (n.output_size() < needed || n.output(0).empty()) {
      return invalid_argument("{} node '{}' has {} output(s), needs {}", op, n.name(), n.output_size(), needed);
    }
    auto a = attrs(n);
    auto int_attr = [&](const char* k, int64_t def) { return a.count(k) ? a[k]->i() : def; };
    auto float_attr = [&](const char* k, float def) { return a.count(k) ? a[k]->f() : def; };

    if (op == "Constant") {
      if (!a.count("value")) return unsupported("Constant without a 'value' tensor");
      QEVAL_ASSIGN_OR_RETURN(Tensor t, tensor_from_proto(a["value"]->t()));
      add_constant(n.output(0), std::move(t));
      return Status::ok();
    }
    if (op == "QuantizeLinear" || op == "DequantizeLinear") {
      QEVAL_RETURN_IF_ERROR(check_attrs(n, {"axis", "saturate"}));
      const bool q = op == "QuantizeLinear";
      QEVAL_ASSIGN_OR_RETURN(QuantParams qp,
                             quant_from(n, 1, 2, static_cast<int>(int_attr("axis", 1)), DType::kUInt8));
      // Q/DQ keep the shape (known for constants and inputs; conv import needs weight shapes).
      const Shape shape = g_.value(in(n, 0)).shape;
      if (q) {
        add_node(OpKind::kQuantize, n, {in(n, 0)}, {n.output(0)});
        QEVAL_RETURN_IF_ERROR(set_quant(n.output(0), qp));
        g_.value(n.output(0)).shape = shape;
        return Status::ok();
      }
      const Tensor* xc = g_.find_constant(in(n, 0));
      if (xc) qp.dtype = xc->dtype();  // an int32 bias DQ has no zero point input
      QEVAL_RETURN_IF_ERROR(set_quant(in(n, 0), qp));
      add_node(OpKind::kDequantize, n, {in(n, 0)}, {n.output(0)});
      set_float(n.output(0));
      g_.value(n.output(0)).shape = shape;
      return Status::ok();
    }
    if (op == "DynamicQuantizeLinear") {
      add_node(OpKind::kDynamicQuantize, n, {in(n, 0)}, {n.output(0), n.output(1), n.output(2)});
      g_.value(n.output(0)).dtype = DType::kUInt8;
      g_.value(n.output(1)).dtype = DType::kFloat32;
      g_.value(n.output(2)).dtype = DType::kUInt8;
      return Status::ok();
    }
    if (op == "QLinearConv" || op == "ConvInteger" || op == "Conv") {
      QEVAL_RETURN_IF_ERROR(check_attrs(n, {"auto_pad", "dilations", "group", "kernel_shape",
                                            "pads", "strides"}));
      std::string x = in(n, 0), w, b;
      if (op == "QLinearConv") {
        w = in(n, 3);
        b = in(n, 8);
        QEVAL_RETURN_IF_ERROR(qlinear_operands(n, x, w, /*b_axis=*/0));
      } else if (op == "ConvInteger") {
        w = in(n, 1);
        QEVAL_RETURN_IF_ERROR(integer_operand(n, x, 2, -1));
        QEVAL_RETURN_IF_ERROR(integer_operand(n, w, 3, 0));
        g_.value(n.output(0)).dtype = DType::kInt32;
      } else {
        w = in(n, 1);
        b = in(n, 2);
        set_float(n.output(0));
      }
      const ValueInfo* wv = g_.find_value(w);
      if (!wv || wv->shape.size() != 4) return unsupported("only 2-D convolution is supported");
      Node& node = add_node(OpKind::kConv2d, n, b.empty() ? std::vector<std::string>{x, w}
                                                          : std::vector<std::string>{x, w, b},
                            {n.output(0)});
      node.attrs["group"] = int_attr("group", 1);
      const ValueInfo* xv = g_.find_value(x);
      return conv_attrs(n, node, xv ? xv->shape : Shape{}, {wv->shape[2], wv->shape[3]});
    }
    if (op == "QLinearMatMul" || op == "MatMulInteger" || op == "MatMul") {
      QEVAL_RETURN_IF_ERROR(check_attrs(n, {}));
      std::string A = in(n, 0), B;
      if (op == "QLinearMatMul") {
        B = in(n, 3);
        QEVAL_RETURN_IF_ERROR(qlinear_operands(n, A, B, /*b_axis=*/-1));
      } else if (op == "MatMulInteger") {
        B = in(n, 1);
        QEVAL_RETURN_IF_ERROR(integer_operand(n, A, 2, -1));
        QEVAL_RETURN_IF_ERROR(integer_operand(n, B, 3, -1));
        g_.value(n.output(0)).dtype = DType::kInt32;
      } else {
        B = in(n, 1);
        set_float(n.output(0));
      }
      add_node(OpKind::kMatMul, n, {A, B}, {n.output(0)});
      return Status::ok();
    }
    if (op == "Gemm") {
      QEVAL_RETURN_IF_ERROR(check_attrs(n, {"alpha", "beta", "transA", "transB"}));
      if (float_attr("alpha", 1.0f) != 1.0f || float_attr("beta", 1.0f) != 1.0f ||
          int_attr("transA", 0) != 0) {
        return unsupported("Gemm with alpha/beta != 1 or transA = 1");
      }
      std::string w = in(n, 1);
      if (int_attr("transB", 0) == 0) {
        QEVAL_ASSIGN_OR_RETURN(w, transposed_weight(n, w));
      }
      std::vector<std::string> ins{in(n, 0), w};
      if (!in(n, 2).empty()) ins.push_back(in(n, 2));
      add_node(OpKind::kLinear, n, ins, {n.output(0)});
      set_float(n.output(0));
      return Status::ok();
    }
    static const std::map<std::string, OpKind> kSimple = {
        {"Relu", OpKind::kRelu}, {"Sigmoid", OpKind::kSigmoid}, {"Add", OpKind::kAdd},
        {"Mul", OpKind::kMul}, {"GlobalAveragePool", OpKind::kGlobalAvgPool},
        {"Softmax", OpKind::kSoftmax}, {"Gelu", OpKind::kGELU}};
    if (auto it = kSimple.find(op); it != kSimple.end()) {
      QEVAL_RETURN_IF_ERROR(check_attrs(n, {"axis"}));
      std::vector<std::string> ins(n.input().begin(), n.input().end());
      Node& node = add_node(it->second, n, ins, {n.output(0)});
      if (op == "Softmax") node.attrs["axis"] = int_attr("axis", opset_ >= 13 ? -1 : 1);
      set_float(n.output(0));
      return Status::ok();
    }
    if (op == "Clip") {
      QEVAL_RETURN_IF_ERROR(check_attrs(n, {"min", "max"}));
      float lo = float_attr("min", -INFINITY), hi = float_attr("max", INFINITY);
      if (!in(n, 1).empty()) {
        QEVAL_ASSIGN_OR_RETURN(const Tensor* t, constant(n, 1, "min"));
        lo = static_cast<float>(t->get_double(0));
      }
      if (!in(n, 2).empty()) {
        QEVAL_ASSIGN_OR_RETURN(const Tensor* t, constant(n, 2, "max"));
        hi = static_cast<float>(t->get_double(0));
      }
      Node& node = add_node(OpKind::kClip, n, {in(n, 0)}, {n.output(0)});
      node.attrs["min"] = static_cast<double>(lo);
      node.attrs["max"] = static_cast<double>(hi);
      set_float(n.output(0));
      return Status::ok();
    }
    if (op == "MaxPool" || op == "AveragePool") {
      QEVAL_RETURN_IF_ERROR(check_attrs(n, {"auto_pad", "ceil_mode", "count_include_pad",
                                            "dilations", "kernel_shape", "pads", "strides",
                                            "storage_order"}));
      if (int_attr("storage_order", 0) != 0) return unsupported("storage_order = 1");
      if (n.output_size() > 1) return unsupported("MaxPool with an Indices output");
      if (!a.count("kernel_shape") || a["kernel_shape"]->ints_size() != 2) {
        return unsupported("only 2-D pooling is supported");
      }
      Shape k(a["kernel_shape"]->ints().begin(), a["kernel_shape"]->ints().end());
      Node& node = add_node(op == "MaxPool" ? OpKind::kMaxPool : OpKind::kAvgPool, n, {in(n, 0)},
                            {n.output(0)});
      node.attrs["kernel"] = std::vector<int64_t>(k.begin(), k.end());
      node.attrs["ceil_mode"] = int_attr("ceil_mode", 0);
      if (op == "AveragePool") node.attrs["count_include_pad"] = int_attr("count_include_pad", 0);
      set_float(n.output(0));
      const ValueInfo* xv = g_.find_value(in(n, 0));
      return conv_attrs(n, node, xv ? xv->shape : Shape{}, k);
    }
    if (op == "Flatten") {
      QEVAL_RETURN_IF_ERROR(check_attrs(n, {"axis"}));
      Node& node = add_node(OpKind::kFlatten, n, {in(n, 0)}, {n.output(0)});
      node.attrs["axis"] = int_attr("axis", 1);
      set_float(n.output(0));
      return Status::ok();
    }
    if (op == "Reshape") {
      QEVAL_RETURN_IF_ERROR(check_attrs(n, {"allowzero"}));
      QEVAL_ASSIGN_OR_RETURN(const Tensor* s, constant(n, 1, "shape"));
      std::vector<int64_t> shape;
      for (int64_t i = 0; i < s->numel(); ++i) shape.push_back(s->get_int(i));
      Node& node = add_node(OpKind::kReshape, n, {in(n, 0)}, {n.output(0)});
      node.attrs["shape"] = shape;
      set_float(n.output(0));
      return Status::ok();
    }
    if (op == "Concat") {
      QEVAL_RETURN_IF_ERROR(check_attrs(n, {"axis"}));
      Node& node = add_node(OpKind::kConcat, n, {n.input().begin(), n.input().end()}, {n.output(0)});
      node.attrs["axis"] = int_attr("axis", 1);
      set_float(n.output(0));
      return Status::ok();
    }
    if (op == "Resize" || op == "Upsample") {
      return import_resize(n);
    }
    if (op == "BatchNormalization") {
      QEVAL_RETURN_IF_ERROR(check_attrs(n, {"epsilon", "momentum", "training_mode"}));
      if (int_attr("training_mode", 0) != 0) return unsupported("training_mode = 1");
      Node& node = add_node(OpKind::kBatchNorm, n, {n.input().begin(), n.input().end()},
                            {n.output(0)});
      node.attrs["epsilon"] = static_cast<double>(float_attr("epsilon", 1e-5f));
      set_float(n.output(0));
      return Status::ok();
    }
    return unsupported("op '{}' is not supported by the qeval ONNX importer", op);
  }

  // ConvInteger / MatMulInteger operand: quantization with scale 1 and the given zero point.
  Status integer_operand(const onnx::NodeProto& n, const std::string& v, int zp_idx, int axis) {
    QuantParams q;
    const ValueInfo* vi = g_.find_value(v);
    q.dtype = vi ? vi->dtype : DType::kUInt8;
    if (zp_idx < n.input_size() && !n.input(zp_idx).empty()) {
      QEVAL_ASSIGN_OR_RETURN(const Tensor* z, constant(n, zp_idx, "zero point"));
      for (int64_t i = 0; i < z->numel(); ++i) q.zero_point.push_back(static_cast<int32_t>(z->get_int(i)));
    }
    if (q.zero_point.empty()) q.zero_point = {0};
    q.scale.assign(q.zero_point.size(), 1.0f);
    q.axis = q.zero_point.size() > 1 ? axis : -1;
    return set_quant(v, q);
  }

  // Gemm with transB = 0: W[K, N] -> [N, K]. Follows a DequantizeLinear if present.
  Result<std::string> transposed_weight(const onnx::NodeProto& n, const std::string& w) {
    std::string src = w;
    Node* dq = nullptr;
    for (Node& node : g_.nodes) {
      if (node.op == OpKind::kDequantize && node.outputs[0] == w) dq = &node;
    }
    if (dq) src = dq->inputs[0];
    const Tensor* t = g_.find_constant(src);
    if (!t || t->rank() != 2) return unsupported("Gemm with transB = 0 needs a constant 2-D weight");
    const int64_t K = t->dim(0), N = t->dim(1);
    Tensor tt(t->dtype(), {N, K});
    const size_t es = dtype_size(t->dtype());
    for (int64_t k = 0; k < K; ++k)
      for (int64_t j = 0; j < N; ++j)
        std::memcpy(static_cast<char*>(tt.raw()) + (j * K + k) * es,
                    static_cast<const char*>(t->raw()) + (k * N + j) * es, es);
    const std::string name = src + "_T";
    add_constant(name, tt);
    if (!dq) return name;
    QuantParams q = *g_.value(src).quant;
    if (q.per_channel()) q.axis = 0;
    g_.value(name).quant = q;
    Node copy = *dq;
    copy.name = dq->name + "_T";
    copy.inputs = {name};
    copy.outputs = {w + "_T"};
    g_.value(w + "_T").dtype = DType::kFloat32;
    g_.nodes.push_back(copy);
    return w + "_T";
  }

  Status import_resize(const onnx::NodeProto& n) {
    QEVAL_RETURN_IF_ERROR(check_attrs(n, {"mode", "coordinate_transformation_mode", "nearest_mode",
                                          "cubic_coeff_a", "exclude_outside", "extrapolation_value",
                                          "scales"}));
    auto a = attrs(n);
    const std::string mode = a.count("mode") ? a["mode"]->s() : "nearest";
    if (mode != "nearest") return unsupported("Resize mode '{}' (only nearest)", mode);
    std::vector<float> scales;
    if (a.count("scales")) {
      scales.assign(a["scales"]->floats().begin(), a["scales"]->floats().end());
    } else {
      const int idx = n.op_type() == "Upsample" ? 1 : 2;
      QEVAL_ASSIGN_OR_RETURN(const Tensor* s, constant(n, idx, "scales"));
      for (int64_t i = 0; i < s->numel(); ++i) scales.push_back(static_cast<float>(s->get_double(i)));
    }
    if (scales.size() != 4 || scales[0] != 1 || scales[1] != 1 || scales[2] != std::floor(scales[2]) ||
        scales[3] != std::floor(scales[3]) || scales[2] < 1 || scales[3] < 1) {
      return unsupported("Resize needs integer scales on H and W only");
    }
    Node& node = add_node(OpKind::kUpsample, n, {in(n, 0)}, {n.output(0)});
    node.attrs["scales"] =
        std::vector<int64_t>{static_cast<int64_t>(scales[2]), static_cast<int64_t>(scales[3])};
    set_float(n.output(0));
    return Status::ok();
  }

  // --- QDQ folding -------------------------------------------------------

  std::map<std::string, std::vector<size_t>> consumers() const {
    std::map<std::string, std::vector<size_t>> c;
    for (size_t i = 0; i < g_.nodes.size(); ++i) {
      for (const auto& in : g_.nodes[i].inputs) {
        if (!in.empty()) c[in].push_back(i);
      }
    }
    return c;
  }

  bool is_graph_output(const std::string& v) const {
    return std::find(g_.outputs.begin(), g_.outputs.end(), v) != g_.outputs.end();
  }

  // onnxruntime drops a Relu whose only consumer is a Q with zero point qmin,
  // and a Clip whose range covers the Q's representable range.
  void drop_redundant_relu_clip() {
    auto cons = consumers();
    std::set<size_t> dead;
    for (size_t i = 0; i < g_.nodes.size(); ++i) {
      Node& n = g_.nodes[i];
      if (n.op != OpKind::kRelu && n.op != OpKind::kClip) continue;
      const auto& c = cons[n.outputs[0]];
      if (c.size() != 1 || is_graph_output(n.outputs[0])) continue;
      Node& q = g_.nodes[c[0]];
      if (q.op != OpKind::kQuantize) continue;
      const QuantParams& qp = *g_.value(q.outputs[0]).quant;
      if (qp.per_channel()) continue;
      const int64_t qmin = qp.qmin(), qmax = qp.qmax();
      bool redundant;
      if (n.op == OpKind::kRelu) {
        redundant = qp.zero_point[0] == qmin;
      } else {
        const float s = qp.scale[0];
        const float lo = static_cast<float>(n.attr_float("min", -INFINITY));
        const float hi = static_cast<float>(n.attr_float("max", INFINITY));
        redundant = static_cast<int64_t>(std::rint(lo / s)) + qp.zero_point[0] <= qmin &&
                    static_cast<int64_t>(std::rint(hi / s)) + qp.zero_point[0] >= qmax;
      }
      if (!redundant) continue;
      q.inputs[0] = n.inputs[0];
      dead.insert(i);
    }
    erase_nodes(dead);
  }

  // DQ -> op -> Q  ==>  integer op.
  void fold_qdq_groups() {
    std::map<std::string, std::string> dq_source;  // float value -> integer value
    for (const Node& n : g_.nodes) {
      if (n.op == OpKind::kDequantize) dq_source[n.outputs[0]] = n.inputs[0];
    }
    auto cons = consumers();
    std::set<size_t> dead;
    for (size_t i = 0; i < g_.nodes.size(); ++i) {
      Node& n = g_.nodes[i];
      if (n.op == OpKind::kQuantize || n.op == OpKind::kDequantize ||
          n.op == OpKind::kDynamicQuantize || n.op == OpKind::kBatchNorm) {
        continue;
      }
      if (g_.value(n.outputs[0]).dtype != DType::kFloat32) continue;  // already integer
      bool all_dq = true;
      for (const auto& in : n.inputs) {
        if (!in.empty() && !dq_source.count(in)) all_dq = false;
      }
      if (!all_dq) continue;
      const auto& c = cons[n.outputs[0]];
      if (c.size() != 1 || is_graph_output(n.outputs[0])) continue;
      const Node& q = g_.nodes[c[0]];
      if (q.op != OpKind::kQuantize || g_.value(q.outputs[0]).quant->per_channel()) continue;
      for (auto& in : n.inputs) {
        if (!in.empty()) in = dq_source[in];
      }
      n.outputs[0] = q.outputs[0];
      dead.insert(c[0]);
    }
    erase_nodes(dead);
  }

  void erase_nodes(const std::set<size_t>& dead) {
    std::vector<Node> kept;
    for (size_t i = 0; i < g_.nodes.size(); ++i) {
      if (!dead.count(i)) kept.push_back(std::move(g_.nodes[i]));
    }
    g_.nodes = std::move(kept);
  }

  // Mul(x, Sigmoid(x)) -> SiLU(x): how exporters write nn.SiLU (torch.onnx up to
  // opset 13 has no SiLU op); one op is one quantizer and one table on the NPU, as
  // tpu-mlir and the QAT graph treat it. The Sigmoid must have no other reader.
  void fuse_silu() {
    auto cons = consumers();
    std::map<std::string, size_t> producer;
    for (size_t i = 0; i < g_.nodes.size(); ++i) {
      for (const auto& o : g_.nodes[i].outputs) producer[o] = i;
    }
    std::set<size_t> dead;
    for (Node& mul : g_.nodes) {
      if (mul.op != OpKind::kMul || mul.inputs.size() != 2) continue;
      for (int side = 0; side < 2; ++side) {
        auto p = producer.find(mul.inputs[side]);
        if (p == producer.end()) continue;
        const Node& sig = g_.nodes[p->second];
        if (sig.op != OpKind::kSigmoid || sig.inputs.at(0) != mul.inputs[1 - side]) continue;
        if (cons[sig.outputs[0]].size() != 1 || is_graph_output(sig.outputs[0])) continue;
        mul.op = OpKind::kSiLU;
        mul.inputs = {sig.inputs[0]};
        dead.insert(p->second);
        break;
      }
    }
    if (!dead.empty()) erase_nodes(dead);
  }

  void remove_dead_nodes() {
    for (bool changed = true; changed;) {
      changed = false;
      auto cons = consumers();
      std::set<size_t> dead;
      for (size_t i = 0; i < g_.nodes.size(); ++i) {
        bool used = false;
        for (const auto& o : g_.nodes[i].outputs) used |= cons.count(o) || is_graph_output(o);
        if (!used) dead.insert(i);
      }
      if (!dead.empty()) {
        erase_nodes(dead);
        changed = true;
      }
    }
    // Drop ValueInfo of values no longer referenced.
    std::set<std::string> live(g_.inputs.begin(), g_.inputs.end());
    for (const auto& [name, t] : g_.constants) live.insert(name);
    for (const Node& n : g_.nodes) {
      live.insert(n.inputs.begin(), n.inputs.end());
      live.insert(n.outputs.begin(), n.outputs.end());
    }
    for (auto it = g_.constants.begin(); it != g_.constants.end();) {
      bool used = is_graph_output(it->first);
      for (const Node& n : g_.nodes) {
        used |= std::find(n.inputs.begin(), n.inputs.end(), it->first) != n.inputs.end();
      }
      it = used ? std::next(it) : g_.constants.erase(it);
    }
    for (auto it = g_.values.begin(); it != g_.values.end();) {
      it = live.count(it->first) ? std::next(it) : g_.values.erase(it);
    }
  }

  const onnx::ModelProto& model_;
  const OnnxImportOptions& opts_;
  Graph g_;
  int64_t opset_ = 13;
};

}  // namespace

Result<Graph> import_onnx_bytes(const std::string& bytes, const std::string& source,
                                const OnnxImportOptions& opts) {
  onnx::ModelProto model;
  if (!model.ParseFromString(bytes)) {
    return data_loss("{}: not a valid ONNX model (protobuf parse failed; truncated?)", source);
  }
  if (!model.has_graph()) return data_loss("{}: ONNX model has no graph", source);
  Importer imp(model, opts);
  auto g = imp.run();
  if (!g.is_ok()) return g.status().with_context(source);
  return g;
}

Result<Graph> import_onnx_file(const std::string& path, const OnnxImportOptions& opts) {
  QEVAL_ASSIGN_OR_RETURN(std::string bytes, read_file(path));
  return import_onnx_bytes(bytes, path, opts);
}

Result<Tensor> read_tensor_pb(const std::string& path) {
  QEVAL_ASSIGN_OR_RETURN(std::string bytes, read_file(path));
  onnx::TensorProto p;
  if (!p.ParseFromString(bytes)) return data_loss("{}: not a valid ONNX TensorProto", path);
  auto t = tensor_from_proto(p);
  if (!t.is_ok()) return t.status().with_context(path);
  return t;
}

Result<std::vector<std::string>> onnx_input_names(const std::string& path) {
  QEVAL_ASSIGN_OR_RETURN(std::string bytes, read_file(path));
  onnx::ModelProto model;
  if (!model.ParseFromString(bytes)) return data_loss("{}: not a valid ONNX model", path);
  std::set<std::string> inits;
  for (const auto& i : model.graph().initializer()) inits.insert(i.name());
  std::vector<std::string> names;
  for (const auto& i : model.graph().input()) {
    if (!inits.count(i.name())) names.push_back(i.name());
  }
  return names;
}

}  // namespace qeval
