#include "simulator/onnx_export.h"

#include <onnx/onnx_pb.h>

#include <set>

#include "core/file_io.h"

namespace qeval {

namespace {

int onnx_type(DType d) {
  switch (d) {
    case DType::kFloat32: return onnx::TensorProto::FLOAT;
    case DType::kInt8: return onnx::TensorProto::INT8;
    case DType::kUInt8: return onnx::TensorProto::UINT8;
    case DType::kInt16: return onnx::TensorProto::INT16;
    case DType::kInt32: return onnx::TensorProto::INT32;
    case DType::kInt64: return onnx::TensorProto::INT64;
  }
  return onnx::TensorProto::FLOAT;
}

class Exporter {
 public:
  explicit Exporter(const Graph& g) : g_(g) {}

  Result<std::string> run() {
    onnx::ModelProto model;
    model.set_ir_version(7);
    model.set_producer_name("qeval");
    auto* opset = model.add_opset_import();
    opset->set_domain("");
    opset->set_version(13);
    gp_ = model.mutable_graph();
    gp_->set_name(g_.name.empty() ? "qeval" : g_.name);
    for (const std::string& in : g_.inputs) {
      const ValueInfo* vi = g_.find_value(in);
      if (!vi || vi->dtype != DType::kFloat32) return unsupported("graph input '{}' must be float32", in);
      add_io(gp_->add_input(), in, vi->shape);
    }
    for (const Node& n : g_.nodes) QEVAL_RETURN_IF_ERROR(node(n).with_context(n.describe()));
    for (const std::string& out : g_.outputs) {
      const ValueInfo* vi = g_.find_value(out);
      if (!vi || vi->quant) return unsupported("graph output '{}' must be float (dequantized)", out);
      add_io(gp_->add_output(), out, vi->shape);
    }
    std::string bytes;
    if (!model.SerializeToString(&bytes)) return internal_error("cannot serialise the ONNX model");
    return bytes;
  }

 private:
  void add_io(onnx::ValueInfoProto* v, const std::string& name, const Shape& shape) {
    v->set_name(name);
    auto* tt = v->mutable_type()->mutable_tensor_type();
    tt->set_elem_type(onnx::TensorProto::FLOAT);
    auto* sh = tt->mutable_shape();
    for (size_t d = 0; d < shape.size(); ++d) {
      auto* dim = sh->add_dim();
      if (d == 0) dim->set_dim_param("N");
      else dim->set_dim_value(shape[d]);
    }
  }

  std::string initializer(const std::string& name, const Tensor& t, std::vector<int64_t> dims) {
    if (!inits_.insert(name).second) return name;
    auto* p = gp_->add_initializer();
    p->set_name(name);
    p->set_data_type(onnx_type(t.dtype()));
    for (int64_t d : dims) p->add_dims(d);
    p->set_raw_data(std::string(static_cast<const char*>(t.raw()), t.nbytes()));
    return name;
  }

  onnx::NodeProto* op(const std::string& type, const std::string& name, std::vector<std::string> ins,
                      const std::string& out) {
    auto* n = gp_->add_node();
    n->set_op_type(type);
    n->set_name(name);
    for (auto& i : ins) n->add_input(i);
    n->add_output(out);
    return n;
  }

  static void attr_ints(onnx::NodeProto* n, const char* k, const std::vector<int64_t>& v) {
    auto* a = n->add_attribute();
    a->set_name(k);
    a->set_type(onnx::AttributeProto::INTS);
    for (int64_t x : v) a->add_ints(x);
  }
  static void attr_int(onnx::NodeProto* n, const char* k, int64_t v) {
    auto* a = n->add_attribute();
    a->set_name(k);
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(v);
  }

  // Scale and zero-point initializers of a QuantParams (scalars or [C]).
  std::pair<std::string, std::string> qparams(const std::string& base, const QuantParams& q) {
    const bool pc = q.scale.size() > 1;
    const std::vector<int64_t> dims = pc ? std::vector<int64_t>{static_cast<int64_t>(q.scale.size())}
                                         : std::vector<int64_t>{};
    Tensor s(DType::kFloat32, pc ? Shape{static_cast<int64_t>(q.scale.size())} : Shape{});
    Tensor z(q.dtype, s.shape());
    for (size_t i = 0; i < q.scale.size(); ++i) {
      s.data<float>()[i] = q.scale[i];
      z.set_int(static_cast<int64_t>(i), q.zero_point[i]);
    }
    return {initializer(base + "_scale", s, dims), initializer(base + "_zero_point", z, dims)};
  }

  // The float (dequantized) name of integer value v; constants are dequantized once.
  Result<std::string> dq(const std::string& v, const std::string& as = "") {
    if (auto it = dq_.find(v); it != dq_.end() && as.empty()) return it->second;
    const std::string name = as.empty() ? v + "_dq" : as;
    const ValueInfo* vi = g_.find_value(v);
    if (!vi || !vi->quant) return v;  // float already
    std::string src = v;
    if (const Tensor* c = g_.find_constant(v)) {
      src = initializer(v, *c, std::vector<int64_t>(c->shape().begin(), c->shape().end()));
    }
    auto [s, z] = qparams(v, *vi->quant);
    auto* n = op("DequantizeLinear", name + "_DequantizeLinear", {src, s, z}, name);
    if (vi->quant->scale.size() > 1) attr_int(n, "axis", vi->quant->axis < 0 ? 0 : vi->quant->axis);
    if (as.empty()) dq_[v] = name;
    return name;
  }

  // The float op writes `tmp`; Q to the integer value `out`.
  void q_out(const std::string& tmp, const std::string& out) {
    const ValueInfo* vi = g_.find_value(out);
    auto [s, z] = qparams(out, *vi->quant);
    op("QuantizeLinear", out + "_QuantizeLinear", {tmp, s, z}, out);
  }

  Status node(const Node& n) {
    const std::string& out = n.outputs[0];
    const ValueInfo* ovi = g_.find_value(out);
    const bool integer_out = ovi && ovi->quant.has_value();
    if (n.op == OpKind::kQuantize) {
      q_out(n.inputs[0], out);
      return Status::ok();
    }
    if (n.op == OpKind::kDequantize) {  // the DequantizeLinear writes the graph's float value
      QEVAL_ASSIGN_OR_RETURN(std::string f, dq(n.inputs[0], out));
      (void)f;
      return Status::ok();
    }
    std::vector<std::string> ins;
    for (size_t i = 0; i < n.inputs.size(); ++i) {
      const std::string& in = n.inputs[i];
      if (in.empty()) continue;
      const ValueInfo* vi = g_.find_value(in);
      const Tensor* c = g_.find_constant(in);
      if (c && (n.op == OpKind::kConv2d || n.op == OpKind::kLinear) && i == 2 && c->dtype() == DType::kInt32) {
        // int32 bias: scale s_x · s_w[c], zero point 0.
        const ValueInfo* xv = g_.find_value(n.inputs[0]);
        const ValueInfo* wv = g_.find_value(n.inputs[1]);
        if (!xv || !xv->quant || !wv || !wv->quant) return invalid_argument("integer bias without scales");
        QuantParams bq;
        bq.dtype = DType::kInt32;
        bq.axis = 0;
        const int64_t channels = c->numel();
        for (int64_t k = 0; k < channels; ++k) {
          const float sw = wv->quant->scale.size() > 1 ? wv->quant->scale[k] : wv->quant->scale[0];
          bq.scale.push_back(xv->quant->scale[0] * sw);
          bq.zero_point.push_back(0);
        }
        if (channels == 1) bq.axis = -1;
        const std::string b = initializer(in, *c, {channels});
        auto [s, z] = qparams(in, bq);
        auto* d = op("DequantizeLinear", in + "_DequantizeLinear", {b, s, z}, in + "_dq");
        if (channels > 1) attr_int(d, "axis", 0);
        ins.push_back(in + "_dq");
        continue;
      }
      if (c && !(vi && vi->quant)) {
        ins.push_back(initializer(in, *c, std::vector<int64_t>(c->shape().begin(), c->shape().end())));
        continue;
      }
      QEVAL_ASSIGN_OR_RETURN(std::string f, dq(in));
      ins.push_back(f);
    }
    const std::string tmp = integer_out ? out + "_f" : out;
    onnx::NodeProto* o = nullptr;
    switch (n.op) {
      case OpKind::kConv2d: {
        o = op("Conv", n.name, ins, tmp);
        const Tensor* w = g_.find_constant(n.inputs[1]);
        if (w) attr_ints(o, "kernel_shape", {w->dim(2), w->dim(3)});
        attr_ints(o, "strides", n.attr_ints("strides", {1, 1}));
        const auto p = n.attr_ints("pads", {0, 0, 0, 0});
        attr_ints(o, "pads", {p[0], p[1], p[2], p[3]});  // qeval and ONNX: top, left, bottom, right
        attr_ints(o, "dilations", n.attr_ints("dilations", {1, 1}));
        attr_int(o, "group", n.attr_int("group", 1));
        break;
      }
      case OpKind::kLinear:
        o = op("Gemm", n.name, ins, tmp);
        attr_int(o, "transB", 1);
        break;
      case OpKind::kRelu: o = op("Relu", n.name, ins, tmp); break;
      case OpKind::kSigmoid: o = op("Sigmoid", n.name, ins, tmp); break;
      case OpKind::kSiLU: {  // x * Sigmoid(x), as torch.onnx writes nn.SiLU (the importer fuses it back)
        op("Sigmoid", n.name + "_sigmoid", ins, tmp + "_sigmoid");
        o = op("Mul", n.name, {ins[0], tmp + "_sigmoid"}, tmp);
        break;
      }
      case OpKind::kUpsample: {  // nearest, integer scales: Resize (opset 13) with a scales input
        const auto sc = n.attr_ints("scales", {1, 1});
        Tensor t(DType::kFloat32, {4});
        const float v[4] = {1.0f, 1.0f, static_cast<float>(sc.at(0)), static_cast<float>(sc.at(1))};
        for (int i = 0; i < 4; ++i) t.data<float>()[i] = v[i];
        ins.push_back("");  // roi
        ins.push_back(initializer(n.name + "_scales", t, {4}));
        o = op("Resize", n.name, ins, tmp);
        auto* m = o->add_attribute();
        m->set_name("mode");
        m->set_type(onnx::AttributeProto::STRING);
        m->set_s("nearest");
        auto* c = o->add_attribute();
        c->set_name("coordinate_transformation_mode");
        c->set_type(onnx::AttributeProto::STRING);
        c->set_s("asymmetric");
        auto* f = o->add_attribute();
        f->set_name("nearest_mode");
        f->set_type(onnx::AttributeProto::STRING);
        f->set_s("floor");
        break;
      }
      case OpKind::kRelu6:
      case OpKind::kClip: {
        const float lo = n.op == OpKind::kRelu6 ? 0.0f : static_cast<float>(n.attr_float("min", -3.4e38));
        const float hi = n.op == OpKind::kRelu6 ? 6.0f : static_cast<float>(n.attr_float("max", 3.4e38));
        ins.push_back(initializer(n.name + "_min", Tensor::scalar<float>(lo), {}));
        ins.push_back(initializer(n.name + "_max", Tensor::scalar<float>(hi), {}));
        o = op("Clip", n.name, ins, tmp);
        break;
      }
      case OpKind::kAdd: o = op("Add", n.name, ins, tmp); break;
      case OpKind::kMul: o = op("Mul", n.name, ins, tmp); break;
      case OpKind::kGlobalAvgPool: o = op("GlobalAveragePool", n.name, ins, tmp); break;
      case OpKind::kFlatten:
        o = op("Flatten", n.name, ins, tmp);
        attr_int(o, "axis", n.attr_int("axis", 1));
        break;
      case OpKind::kConcat:
        o = op("Concat", n.name, ins, tmp);
        attr_int(o, "axis", n.attr_int("axis", 1));
        break;
      case OpKind::kMaxPool:
      case OpKind::kAvgPool: {
        o = op(n.op == OpKind::kMaxPool ? "MaxPool" : "AveragePool", n.name, ins, tmp);
        const auto k = n.attr_ints("kernel", {});
        attr_ints(o, "kernel_shape", k);
        attr_ints(o, "strides", n.attr_ints("strides", k));
        attr_ints(o, "pads", n.attr_ints("pads", {0, 0, 0, 0}));
        attr_int(o, "ceil_mode", n.attr_int("ceil_mode", 0));
        if (n.op == OpKind::kAvgPool) attr_int(o, "count_include_pad", n.attr_int("count_include_pad", 0));
        break;
      }
      case OpKind::kReshape: {
        const auto s = n.attr_ints("shape", {});
        ins.push_back(initializer(n.name + "_shape",
                                  Tensor::from_vector<int64_t>({static_cast<int64_t>(s.size())}, s),
                                  {static_cast<int64_t>(s.size())}));
        o = op("Reshape", n.name, ins, tmp);
        break;
      }
      default:
        return unsupported("op {} has no ONNX QDQ export", op_name(n.op));
    }
    if (integer_out) q_out(tmp, out);
    return Status::ok();
  }

  const Graph& g_;
  onnx::GraphProto* gp_ = nullptr;
  std::set<std::string> inits_;
  std::map<std::string, std::string> dq_;
};

}  // namespace

Result<std::string> export_onnx_qdq(const Graph& quantized) { return Exporter(quantized).run(); }

Status save_onnx_qdq(const Graph& quantized, const std::string& path) {
  QEVAL_ASSIGN_OR_RETURN(std::string bytes, export_onnx_qdq(quantized));
  return write_file_atomic(path, bytes).with_context(path);
}

}  // namespace qeval
