// Concat, Flatten, Reshape, Upsample (nearest): data movement. Integer inputs
// whose quantization differs from the output's pass through a rescale table.
#include "simulator/kernels/common.h"
#include "simulator/kernels/opt_kernels.h"

namespace qeval {

using namespace kern;

namespace {

// Copies element i of X to element o of Y, through the table if any.
struct Mover {
  bool integer = false;
  bool has_lut = false;
  Tensor lut;
  int32_t qmin = 0;
  void move(const Tensor& X, int64_t i, Tensor& Y, int64_t o) const {
    if (!integer) {
      store_f(Y, o, load_f(X, i));
    } else if (has_lut) {
      store_i(Y, o, load_i(lut, load_i(X, i) - qmin));
    } else {
      store_i(Y, o, load_i(X, i));
    }
  }
};

Status lower_move(Node& n, const Graph& g, const ChipProfile& p, size_t input, const std::string& key) {
  if (!is_integer_node(n, g)) return Status::ok();
  const QView in = qview(g, n.inputs[input]), out = qview(g, n.outputs[0]);
  if (in.quantized != out.quantized) {
    return invalid_argument("{}: input '{}' and output disagree on being quantized", n.describe(),
                            n.inputs[input]);
  }
  if (in.quantized && !same_quant(in, out)) {
    QEVAL_ASSIGN_OR_RETURN(n.params[key], rescale_lut(n, in, out, p));
  }
  return Status::ok();
}

Mover make_mover(const KernelArgs& a, size_t input, const std::string& key) {
  Mover m;
  m.integer = is_integer_node(a.node, a.graph);
  auto it = a.node.params.find(key);
  if (it != a.node.params.end()) {
    m.has_lut = true;
    m.lut = it->second;
  }
  m.qmin = qview(a.graph, a.node.inputs[input]).qmin;
  return m;
}

Result<EvalFn> prepare_copy(const KernelArgs& a) {
  const Mover m = make_mover(a, 0, "lut");
  EvalFn ref([m](const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) -> Status {
    for (int64_t i = 0; i < in[0]->numel(); ++i) m.move(*in[0], i, *out[0], i);
    return Status::ok();
  });
  return optimized_or(a, ref, [&](const EvalFn& r) { return opt::tabulate_unary(a, r); });
}

}  // namespace

Status lower_Concat(Node& n, const Graph& g, const ChipProfile& p) {
  for (size_t i = 0; i < n.inputs.size(); ++i) {
    QEVAL_RETURN_IF_ERROR(lower_move(n, g, p, i, "lut" + std::to_string(i)));
  }
  return Status::ok();
}

Result<EvalFn> prepare_Concat(const KernelArgs& a) {
  std::vector<Mover> movers;
  for (size_t i = 0; i < a.node.inputs.size(); ++i) {
    movers.push_back(make_mover(a, i, "lut" + std::to_string(i)));
  }
  const int64_t axis_attr = a.node.attr_int("axis", 1);
  return EvalFn([=](const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) -> Status {
    Tensor& Y = *out[0];
    const int64_t axis = axis_attr < 0 ? axis_attr + Y.rank() : axis_attr;
    int64_t outer = 1, inner = 1;
    for (int64_t d = 0; d < axis; ++d) outer *= Y.dim(static_cast<int>(d));
    for (int64_t d = axis + 1; d < Y.rank(); ++d) inner *= Y.dim(static_cast<int>(d));
    const int64_t ylen = Y.dim(static_cast<int>(axis)) * inner;
    int64_t offset = 0;
    for (size_t k = 0; k < in.size(); ++k) {
      const int64_t len = in[k]->dim(static_cast<int>(axis)) * inner;
      for (int64_t o = 0; o < outer; ++o)
        for (int64_t j = 0; j < len; ++j) movers[k].move(*in[k], o * len + j, Y, o * ylen + offset + j);
      offset += len;
    }
    return Status::ok();
  });
}

Status lower_Flatten(Node& n, const Graph& g, const ChipProfile& p) { return lower_move(n, g, p, 0, "lut"); }
Result<EvalFn> prepare_Flatten(const KernelArgs& a) { return prepare_copy(a); }
Status lower_Reshape(Node& n, const Graph& g, const ChipProfile& p) { return lower_move(n, g, p, 0, "lut"); }
Result<EvalFn> prepare_Reshape(const KernelArgs& a) { return prepare_copy(a); }

Status lower_Upsample(Node& n, const Graph& g, const ChipProfile& p) { return lower_move(n, g, p, 0, "lut"); }
Result<EvalFn> prepare_Upsample(const KernelArgs& a) {
  const Mover m = make_mover(a, 0, "lut");
  return EvalFn([m](const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) -> Status {
    const Tensor& X = *in[0];
    Tensor& Y = *out[0];
    const int64_t NC = X.dim(0) * X.dim(1), H = X.dim(2), W = X.dim(3), OH = Y.dim(2), OW = Y.dim(3);
    const int64_t sh = OH / H, sw = OW / W;
    for (int64_t p = 0; p < NC; ++p)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow)
          m.move(X, (p * H + oh / sh) * W + ow / sw, Y, (p * OH + oh) * OW + ow);
    return Status::ok();
  });
}

}  // namespace qeval
