#include "models/torchscript_import.h"

#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/passes/freeze_module.h>
#include <torch/csrc/jit/passes/inliner.h>
#include <torch/csrc/jit/serialization/import.h>

#include <sstream>

#include "quant/interpreter.h"

namespace qeval {

namespace {

using torch::jit::Node;
using torch::jit::Value;

class Importer {
 public:
  Importer(std::string path) : path_(std::move(path)) {}

  Result<Graph> run(torch::jit::Graph& tg, const Shape& input_shape) {
    g_.name = path_;
    bool first = true;
    for (Value* in : tg.inputs()) {
      if (first && in->type()->kind() == c10::TypeKind::ClassType) {  // self
        first = false;
        continue;
      }
      first = false;
      const std::string name = value_name(in);
      g_.inputs.push_back(name);
      g_.value(name).shape = input_shape;
    }
    if (g_.inputs.size() != 1) return unsupported("{}: {} tensor inputs; one is supported", path_, g_.inputs.size());
    for (Node* n : tg.nodes()) QEVAL_RETURN_IF_ERROR(convert(n));
    for (Value* out : tg.outputs()) {
      if (out->node()->kind() == c10::prim::TupleConstruct) {
        for (Value* v : out->node()->inputs()) g_.outputs.push_back(resolve(v));
      } else {
        g_.outputs.push_back(resolve(out));
      }
    }
    QEVAL_RETURN_IF_ERROR(g_.validate().with_context(path_));
    QEVAL_RETURN_IF_ERROR(g_.infer_shapes().with_context(path_));
    return g_;
  }

 private:
  std::string value_name(Value* v) {
    auto it = names_.find(v);
    if (it != names_.end()) return it->second;
    std::string base = v->debugName();
    for (char& c : base) c = (c == '/' ? '_' : c);
    std::string name = base;
    for (int k = 1; used_.count(name); ++k) name = base + "_" + std::to_string(k);
    used_.insert(name);
    return names_[v] = name;
  }
  // Identity ops (dropout, contiguous) forward their input's name.
  std::string resolve(Value* v) {
    auto it = alias_.find(v);
    return it != alias_.end() ? it->second : value_name(v);
  }

  std::string where(Node* n) const {
    std::ostringstream os;
    os << path_ << ": node '" << n->kind().toQualString() << "'";
    if (auto r = n->sourceRange().file_line_col()) {
      os << " (" << std::get<0>(*r) << ":" << std::get<1>(*r) << ")";
    }
    return os.str();
  }

  Result<c10::IValue> constant(Node* user, Value* v) {
    if (v->node()->kind() == c10::prim::ListConstruct) {
      std::vector<int64_t> ints;
      for (Value* e : v->node()->inputs()) {
        auto iv = torch::jit::toIValue(e);
        if (!iv || !iv->isInt()) return unsupported("{}: list argument is not a constant int list", where(user));
        ints.push_back(iv->toInt());
      }
      return c10::IValue(ints);
    }
    auto iv = torch::jit::toIValue(v);
    if (!iv) return unsupported("{}: argument '{}' must be a constant", where(user), v->debugName());
    return *iv;
  }
  Result<std::vector<int64_t>> ints(Node* n, size_t i) {
    QEVAL_ASSIGN_OR_RETURN(c10::IValue iv, constant(n, n->input(i)));
    if (iv.isInt()) return std::vector<int64_t>{iv.toInt()};
    if (!iv.isIntList()) return invalid_argument("{}: argument {} is not an int list", where(n), i);
    return iv.toIntVector();
  }
  Result<double> number(Node* n, size_t i) {
    QEVAL_ASSIGN_OR_RETURN(c10::IValue iv, constant(n, n->input(i)));
    if (iv.isDouble()) return iv.toDouble();
    if (iv.isInt()) return static_cast<double>(iv.toInt());
    if (iv.isBool()) return iv.toBool() ? 1.0 : 0.0;
    return invalid_argument("{}: argument {} is not a number", where(n), i);
  }
  bool is_none(Node* n, size_t i) {
    auto iv = torch::jit::toIValue(n->input(i));
    return iv && iv->isNone();
  }
  // A tensor operand: a frozen constant becomes a graph constant.
  Result<std::string> tensor(Node* n, size_t i) {
    Value* v = n->input(i);
    if (v->node()->kind() == c10::prim::Constant) {
      auto iv = torch::jit::toIValue(v);
      if (!iv || !iv->isTensor()) return invalid_argument("{}: argument {} is not a tensor", where(n), i);
      const std::string name = value_name(v);
      if (!g_.constants.count(name)) {
        QEVAL_ASSIGN_OR_RETURN(Tensor t, from_torch(iv->toTensor().to(torch::kFloat32)));
        g_.constants[name] = t;
      }
      return name;
    }
    return resolve(v);
  }
  std::string emit(Node* n, OpKind op, std::vector<std::string> ins, std::map<std::string, AttrValue> attrs = {}) {
    qeval::Node q;
    q.op = op;
    q.outputs = {value_name(n->output(0))};
    q.name = q.outputs[0];
    q.inputs = std::move(ins);
    q.attrs = std::move(attrs);
    g_.nodes.push_back(std::move(q));
    return g_.nodes.back().outputs[0];
  }

  Status convert(Node* n) {
    const std::string kind = n->kind().toQualString();
    if (kind == "prim::Constant" || kind == "prim::ListConstruct" || kind == "prim::TupleConstruct" ||
        kind == "prim::GetAttr") {
      return Status::ok();
    }
    auto in0 = [&]() { return resolve(n->input(0)); };
    if (kind == "aten::dropout" || kind == "aten::dropout_" || kind == "aten::contiguous" ||
        kind == "aten::detach") {
      alias_[n->output(0)] = in0();
      return Status::ok();
    }
    if (kind == "aten::_convolution" || kind == "aten::conv2d") {
      QEVAL_ASSIGN_OR_RETURN(auto w, tensor(n, 1));
      std::vector<std::string> ins = {in0(), w};
      if (!is_none(n, 2)) {
        QEVAL_ASSIGN_OR_RETURN(auto b, tensor(n, 2));
        ins.push_back(b);
      }
      QEVAL_ASSIGN_OR_RETURN(auto stride, ints(n, 3));
      QEVAL_ASSIGN_OR_RETURN(auto pad, ints(n, 4));
      QEVAL_ASSIGN_OR_RETURN(auto dil, ints(n, 5));
      int64_t groups = 1;
      if (kind == "aten::_convolution") {
        QEVAL_ASSIGN_OR_RETURN(double transposed, number(n, 6));
        if (transposed != 0) return unsupported("{}: transposed convolution", where(n));
        QEVAL_ASSIGN_OR_RETURN(double gr, number(n, 8));
        groups = static_cast<int64_t>(gr);
      } else {
        QEVAL_ASSIGN_OR_RETURN(double gr, number(n, 6));
        groups = static_cast<int64_t>(gr);
      }
      if (stride.size() == 1) stride.push_back(stride[0]);
      if (pad.size() == 1) pad.push_back(pad[0]);
      if (dil.size() == 1) dil.push_back(dil[0]);
      emit(n, OpKind::kConv2d, ins,
           {{"strides", stride}, {"pads", std::vector<int64_t>{pad[0], pad[1], pad[0], pad[1]}},
            {"dilations", dil}, {"group", groups}});
      return Status::ok();
    }
    if (kind == "aten::batch_norm") {
      std::vector<std::string> ins = {in0()};
      for (size_t i = 1; i <= 4; ++i) {
        QEVAL_ASSIGN_OR_RETURN(auto t, tensor(n, i));
        ins.push_back(t);
      }
      QEVAL_ASSIGN_OR_RETURN(double eps, number(n, 7));
      emit(n, OpKind::kBatchNorm, ins, {{"epsilon", eps}});
      return Status::ok();
    }
    if (kind == "aten::linear") {
      QEVAL_ASSIGN_OR_RETURN(auto w, tensor(n, 1));
      std::vector<std::string> ins = {in0(), w};
      if (!is_none(n, 2)) {
        QEVAL_ASSIGN_OR_RETURN(auto b, tensor(n, 2));
        ins.push_back(b);
      }
      emit(n, OpKind::kLinear, ins);
      return Status::ok();
    }
    if (kind == "aten::relu" || kind == "aten::relu_") {
      emit(n, OpKind::kRelu, {in0()});
      return Status::ok();
    }
    if (kind == "aten::hardtanh" || kind == "aten::hardtanh_" || kind == "aten::clamp" || kind == "aten::clamp_") {
      double lo = -INFINITY, hi = INFINITY;
      if (!is_none(n, 1)) {
        QEVAL_ASSIGN_OR_RETURN(lo, number(n, 1));
      }
      if (!is_none(n, 2)) {
        QEVAL_ASSIGN_OR_RETURN(hi, number(n, 2));
      }
      if (lo == 0 && hi == 6) emit(n, OpKind::kRelu6, {in0()});
      else emit(n, OpKind::kClip, {in0()}, {{"min", lo}, {"max", hi}});
      return Status::ok();
    }
    if (kind == "aten::silu" || kind == "aten::silu_") return emit(n, OpKind::kSiLU, {in0()}), Status::ok();
    if (kind == "aten::sigmoid" || kind == "aten::sigmoid_") return emit(n, OpKind::kSigmoid, {in0()}), Status::ok();
    if (kind == "aten::gelu") return emit(n, OpKind::kGELU, {in0()}), Status::ok();
    if (kind == "aten::add" || kind == "aten::add_" || kind == "aten::mul" || kind == "aten::mul_") {
      const bool add = kind.starts_with("aten::add");
      if (add && n->inputs().size() > 2) {
        QEVAL_ASSIGN_OR_RETURN(double alpha, number(n, 2));
        if (alpha != 1) return unsupported("{}: alpha = {} (only 1)", where(n), alpha);
      }
      QEVAL_ASSIGN_OR_RETURN(auto b, tensor(n, 1));
      emit(n, add ? OpKind::kAdd : OpKind::kMul, {in0(), b});
      return Status::ok();
    }
    if (kind == "aten::cat") {
      Node* list = n->input(0)->node();
      if (list->kind() != c10::prim::ListConstruct) return unsupported("{}: tensor list is not a ListConstruct", where(n));
      std::vector<std::string> ins;
      for (Value* v : list->inputs()) ins.push_back(resolve(v));
      QEVAL_ASSIGN_OR_RETURN(double dim, number(n, 1));
      emit(n, OpKind::kConcat, ins, {{"axis", static_cast<int64_t>(dim)}});
      return Status::ok();
    }
    if (kind == "aten::max_pool2d" || kind == "aten::avg_pool2d") {
      QEVAL_ASSIGN_OR_RETURN(auto k, ints(n, 1));
      QEVAL_ASSIGN_OR_RETURN(auto s, ints(n, 2));
      QEVAL_ASSIGN_OR_RETURN(auto p, ints(n, 3));
      if (k.size() == 1) k.push_back(k[0]);
      if (s.empty()) s = k;
      if (s.size() == 1) s.push_back(s[0]);
      if (p.size() == 1) p.push_back(p[0]);
      std::map<std::string, AttrValue> attrs = {
          {"kernel", k}, {"strides", s}, {"pads", std::vector<int64_t>{p[0], p[1], p[0], p[1]}}};
      if (kind == "aten::max_pool2d") {
        QEVAL_ASSIGN_OR_RETURN(auto d, ints(n, 4));
        if (d.size() == 1) d.push_back(d[0]);
        QEVAL_ASSIGN_OR_RETURN(double ceil, number(n, 5));
        attrs["dilations"] = d;
        attrs["ceil_mode"] = static_cast<int64_t>(ceil);
        emit(n, OpKind::kMaxPool, {in0()}, attrs);
      } else {
        QEVAL_ASSIGN_OR_RETURN(double ceil, number(n, 4));
        QEVAL_ASSIGN_OR_RETURN(double cip, number(n, 5));
        if (!is_none(n, 6)) return unsupported("{}: divisor_override", where(n));
        attrs["ceil_mode"] = static_cast<int64_t>(ceil);
        attrs["count_include_pad"] = static_cast<int64_t>(cip);
        emit(n, OpKind::kAvgPool, {in0()}, attrs);
      }
      return Status::ok();
    }
    if (kind == "aten::adaptive_avg_pool2d") {
      QEVAL_ASSIGN_OR_RETURN(auto sz, ints(n, 1));
      for (int64_t v : sz) {
        if (v != 1) return unsupported("{}: output size {} (only 1×1)", where(n), v);
      }
      emit(n, OpKind::kGlobalAvgPool, {in0()});
      return Status::ok();
    }
    if (kind == "aten::mean") {
      QEVAL_ASSIGN_OR_RETURN(auto dims, ints(n, 1));
      QEVAL_ASSIGN_OR_RETURN(double keep, number(n, 2));
      if (dims != std::vector<int64_t>{2, 3} && dims != std::vector<int64_t>{-2, -1}) {
        return unsupported("{}: mean over dims other than the spatial ones", where(n));
      }
      const std::string gap = emit(n, OpKind::kGlobalAvgPool, {in0()});
      if (!keep) {
        // [N, C, 1, 1] -> [N, C]
        g_.nodes.back().outputs[0] = g_.nodes.back().name = gap + ".keepdim";
        qeval::Node f;
        f.op = OpKind::kFlatten;
        f.name = gap;
        f.inputs = {gap + ".keepdim"};
        f.outputs = {gap};
        f.attrs["axis"] = int64_t{1};
        g_.nodes.push_back(std::move(f));
      }
      return Status::ok();
    }
    if (kind == "aten::flatten") {
      QEVAL_ASSIGN_OR_RETURN(double start, number(n, 1));
      QEVAL_ASSIGN_OR_RETURN(double end, number(n, 2));
      if (end != -1) return unsupported("{}: flatten with end_dim {} (only -1)", where(n), end);
      emit(n, OpKind::kFlatten, {in0()}, {{"axis", static_cast<int64_t>(start)}});
      return Status::ok();
    }
    if (kind == "aten::view" || kind == "aten::reshape") {
      QEVAL_ASSIGN_OR_RETURN(auto shape, ints(n, 1));
      emit(n, OpKind::kReshape, {in0()}, {{"shape", shape}});
      return Status::ok();
    }
    if (kind == "aten::upsample_nearest2d") {
      std::vector<int64_t> scales;
      if (!is_none(n, 2)) {
        QEVAL_ASSIGN_OR_RETURN(c10::IValue iv, constant(n, n->input(2)));
        if (iv.isDoubleList()) {
          for (double d : iv.toDoubleVector()) scales.push_back(static_cast<int64_t>(d));
        }
      }
      if (scales.size() != 2) return unsupported("{}: nearest upsampling needs constant integer scale factors", where(n));
      emit(n, OpKind::kUpsample, {in0()}, {{"scales", scales}});
      return Status::ok();
    }
    if (kind == "aten::softmax") {
      QEVAL_ASSIGN_OR_RETURN(double dim, number(n, 1));
      emit(n, OpKind::kSoftmax, {in0()}, {{"axis", static_cast<int64_t>(dim)}});
      return Status::ok();
    }
    return unsupported("{} is not supported by the TorchScript import", where(n));
  }

  std::string path_;
  Graph g_;
  std::map<Value*, std::string> names_, alias_;
  std::set<std::string> used_;
};

}  // namespace

Result<Graph> import_torchscript_file(const std::string& path, const Shape& input_shape) {
  torch::jit::Module m;
  try {
    m = torch::jit::load(path);
    m.eval();
    m = torch::jit::freeze_module(m);
  } catch (const std::exception& e) {
    return invalid_argument("{}: cannot load TorchScript module: {}", path, first_line(e.what()));
  }
  auto graph = m.get_method("forward").graph()->copy();
  torch::jit::Inline(*graph);
  return Importer(path).run(*graph, input_shape);
}

}  // namespace qeval
