// Add, Mul, the unary activations, BatchNorm, Softmax, LayerNorm.
#include <algorithm>
#include <cmath>

#include "simulator/kernels/common.h"
#include "simulator/kernels/opt_kernels.h"

namespace qeval {

using namespace kern;

namespace {

float sigmoidf(float x) { return 1.0f / (1.0f + std::exp(-x)); }

// The float function of each unary op (used by float kernels and to build LUTs).
std::function<float(float)> unary_fn(const Node& n) {
  switch (n.op) {
    case OpKind::kRelu: return [](float x) { return x > 0.0f ? x : 0.0f; };
    case OpKind::kRelu6: return [](float x) { return std::min(std::max(x, 0.0f), 6.0f); };
    case OpKind::kClip: {
      const float lo = static_cast<float>(n.attr_float("min", -INFINITY));
      const float hi = static_cast<float>(n.attr_float("max", INFINITY));
      return [lo, hi](float x) { return std::min(std::max(x, lo), hi); };
    }
    case OpKind::kSigmoid: return sigmoidf;
    case OpKind::kSiLU: return [](float x) { return x * sigmoidf(x); };
    case OpKind::kGELU:
      return [](float x) { return 0.5f * x * (1.0f + std::erf(x * 0.70710678118654752f)); };
    default: return [](float x) { return x; };
  }
}

// Unary ops on 8/16-bit data run through a table built at lowering:
//   lut[q - qmin] = Q_out(f(DQ_in(q))).
Status lower_unary(Node& n, const Graph& g, const ChipProfile& p) {
  if (!is_integer_node(n, g)) return Status::ok();
  const QView in = qview(g, n.inputs[0]), out = qview(g, n.outputs[0]);
  if (!in.quantized || !out.quantized) {
    return invalid_argument("{}: integer node needs quantized input and output", n.describe());
  }
  QEVAL_RETURN_IF_ERROR(check_lut_input(n, in));
  n.params["lut"] = build_lut(in, out, p.quantize_rounding, unary_fn(n));
  return Status::ok();
}

Result<EvalFn> prepare_unary(const KernelArgs& a) {
  const Node& n = a.node;
  if (!is_integer_node(n, a.graph)) {
    auto f = unary_fn(n);
    return EvalFn([f](const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) -> Status {
      const float* x = in[0]->data<float>();
      float* y = out[0]->data<float>();
      for (int64_t i = 0; i < in[0]->numel(); ++i) y[i] = f(x[i]);
      return Status::ok();
    });
  }
  QEVAL_RETURN_IF_ERROR(need_param(n, "lut"));
  const QView in = qview(a.graph, n.inputs[0]);
  const Tensor lut = param(n, "lut");
  if (lut.numel() != static_cast<int64_t>(in.qmax) - in.qmin + 1) {
    return invalid_argument("{}: table has {} entries for a {} input", n.describe(), lut.numel(),
                            dtype_name(in.dtype));
  }
  EvalFn ref([lut, in](const std::vector<const Tensor*>& x, std::vector<Tensor*>& y) -> Status {
    for (int64_t i = 0; i < x[0]->numel(); ++i) {
      store_i(*y[0], i, load_i(lut, load_i(*x[0], i) - in.qmin));
    }
    return Status::ok();
  });
  return optimized_or(a, ref, [&](const EvalFn& r) { return opt::tabulate_unary(a, r); });
}

// Binary ops: numpy broadcasting over flat indices.
template <typename F>
void binary_loop(const Tensor& A, const Tensor& B, Tensor& Y, F&& f) {
  const Broadcaster ba(Y.shape(), A.shape()), bb(Y.shape(), B.shape());
  const bool same = A.shape() == Y.shape() && B.shape() == Y.shape();
  for (int64_t i = 0; i < Y.numel(); ++i) {
    f(i, same ? i : ba.map(i), same ? i : bb.map(i));
  }
}

Result<EvalFn> prepare_binary_float(OpKind op) {
  return EvalFn([op](const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) -> Status {
    const float* a = in[0]->data<float>();
    const float* b = in[1]->data<float>();
    float* y = out[0]->data<float>();
    binary_loop(*in[0], *in[1], *out[0], [&](int64_t i, int64_t ia, int64_t ib) {
      y[i] = op == OpKind::kAdd ? a[ia] + b[ib] : a[ia] * b[ib];
    });
    return Status::ok();
  });
}

}  // namespace

#define QEVAL_UNARY(Name)                                                       \
  Status lower_##Name(Node& n, const Graph& g, const ChipProfile& p) {          \
    return lower_unary(n, g, p);                                                \
  }                                                                             \
  Result<EvalFn> prepare_##Name(const KernelArgs& a) { return prepare_unary(a); }
QEVAL_UNARY(Relu)
QEVAL_UNARY(Relu6)
QEVAL_UNARY(Clip)
QEVAL_UNARY(Sigmoid)
QEVAL_UNARY(SiLU)
QEVAL_UNARY(GELU)
#undef QEVAL_UNARY

namespace {
// The per-tensor quantization of a binary op's two inputs and output (Add, Mul).
struct BinaryQViews {
  QView a, b, c;
};
Result<BinaryQViews> binary_qviews(const Node& n, const Graph& g) {
  BinaryQViews q{qview(g, n.inputs[0]), qview(g, n.inputs[1]), qview(g, n.outputs[0])};
  if (!q.a.quantized || !q.b.quantized || !q.c.quantized || q.a.scale.size() > 1 || q.b.scale.size() > 1) {
    return invalid_argument("{}: integer {} needs per-tensor quantized inputs and output", n.describe(),
                            op_name(n.op));
  }
  return q;
}
}  // namespace

// Add.
//  float scheme (onnxruntime QLinearAdd, AVX2 kernel; docs/onnx-qdq-semantics.md 5):
//    rA = sA/sC, rB = sB/sC, fixed = zC - fma(rA, zA, rB*zB)
//    t = fma(a, rA, fma(b, rB, fixed)); y = sat(cvtps2dq(t))
//  integer schemes: one shared shift r and multipliers mA, mB of rA, rB:
//    y = clamp(zC + RSR((a - zA)*mA + (b - zB)*mB, r, mode))
Status lower_Add(Node& n, const Graph& g, const ChipProfile& p) {
  if (!is_integer_node(n, g)) return Status::ok();
  QEVAL_ASSIGN_OR_RETURN(const BinaryQViews q, binary_qviews(n, g));
  const QView &qa = q.a, &qb = q.b, &qc = q.c;
  if (p.requant == RequantScheme::kFloat) {
    // int8 data: onnxruntime on x86 first rewrites int8 QDQ to uint8 (q + 128,
    // zp + 128) and adds in that domain; the zero points here follow it.
    const float off = qc.dtype == DType::kInt8 ? 128.0f : 0.0f;
    const float ra = qa.s() / qc.s(), rb = qb.s() / qc.s();
    const float fixed = (static_cast<float>(qc.z()) + off) -
                        std::fma(ra, static_cast<float>(qa.z()) + off,
                                 rb * (static_cast<float>(qb.z()) + off));
    n.params["ratio"] = Tensor::from_vector<float>({2}, {ra, rb});
    n.params["fixed"] = Tensor::from_vector<float>({1}, {fixed});
    return Status::ok();
  }
  const double ra = static_cast<double>(qa.s()) / qc.s(), rb = static_cast<double>(qb.s()) / qc.s();
  auto big = profile_multiplier(std::max(ra, rb), p);
  if (!big.is_ok()) return big.status().with_context(n.describe());
  const int r = big->rshift;
  const double lim = std::ldexp(1.0, p.multiplier_bits - 1) - 1;
  const auto ma = static_cast<int32_t>(std::min(lim, std::round(std::ldexp(ra, r))));
  const auto mb = static_cast<int32_t>(std::min(lim, std::round(std::ldexp(rb, r))));
  n.params["m"] = Tensor::from_vector<int32_t>({2}, {ma, mb});
  n.params["rshift"] = Tensor::from_vector<int32_t>({1}, {r});
  return Status::ok();
}

Result<EvalFn> prepare_Add(const KernelArgs& a) {
  const Node& n = a.node;
  if (!is_integer_node(n, a.graph)) return prepare_binary_float(OpKind::kAdd);
  const QView qa = qview(a.graph, n.inputs[0]), qb = qview(a.graph, n.inputs[1]),
              qc = qview(a.graph, n.outputs[0]);
  if (a.profile.requant == RequantScheme::kFloat) {
    QEVAL_RETURN_IF_ERROR(need_param(n, "ratio"));
    QEVAL_RETURN_IF_ERROR(need_param(n, "fixed"));
    AddRequant ar;
    ar.float_scheme = true;
    ar.ra = param(n, "ratio").data<float>()[0];
    ar.rb = param(n, "ratio").data<float>()[1];
    ar.fixed = param(n, "fixed").data<float>()[0];
    ar.off = qc.dtype == DType::kInt8 ? 128 : 0;
    ar.qmin = qc.qmin;
    ar.qmax = qc.qmax;
    const float ra = ar.ra, rb = ar.rb, fixed = ar.fixed;
    const int32_t off = ar.off;
    EvalFn ref([=](const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) -> Status {
      const Tensor &A = *in[0], &B = *in[1];
      Tensor& Y = *out[0];
      const bool a_scalar = A.numel() == 1 && B.numel() > 1;
      const bool b_scalar = B.numel() == 1 && A.numel() > 1;
      // onnxruntime folds a scalar operand into the constant term first.
      const float fixed_a = fixed + static_cast<float>(load_i(A, 0) + off) * ra;
      const float fixed_b = fixed + static_cast<float>(load_i(B, 0) + off) * rb;
      binary_loop(A, B, Y, [&](int64_t i, int64_t ia, int64_t ib) {
        if (!a_scalar && !b_scalar) {
          store_i(Y, i, ar.apply(load_i(A, ia), load_i(B, ib)));
          return;
        }
        const float t = b_scalar ? std::fma(static_cast<float>(load_i(A, ia) + off), ra, fixed_b)
                                 : std::fma(static_cast<float>(load_i(B, ib) + off), rb, fixed_a);
        const int64_t y = clamp_i64(float_to_int32_rne(t), qc.qmin + off, qc.qmax + off) - off;
        store_i(Y, i, static_cast<int32_t>(y));
      });
      return Status::ok();
    });
    return optimized_or(a, ref, [&](const EvalFn& r) { return opt::prepare_add(a, ar, r); });
  }
  QEVAL_RETURN_IF_ERROR(need_param(n, "m"));
  QEVAL_RETURN_IF_ERROR(need_param(n, "rshift"));
  AddRequant ar;
  ar.ma = param(n, "m").data<int32_t>()[0];
  ar.mb = param(n, "m").data<int32_t>()[1];
  ar.r = param(n, "rshift").data<int32_t>()[0];
  ar.mode = a.profile.rounding;
  ar.za = qa.z();
  ar.zb = qb.z();
  ar.zc = qc.z();
  ar.qmin = qc.qmin;
  ar.qmax = qc.qmax;
  EvalFn ref([=](const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) -> Status {
    const Tensor &A = *in[0], &B = *in[1];
    Tensor& Y = *out[0];
    binary_loop(A, B, Y, [&](int64_t i, int64_t ia, int64_t ib) {
      store_i(Y, i, ar.apply(load_i(A, ia), load_i(B, ib)));
    });
    return Status::ok();
  });
  return optimized_or(a, ref, [&](const EvalFn& r) { return opt::prepare_add(a, ar, r); });
}

// Mul.
//  float scheme (onnxruntime QLinearMul): M = (sA*sB)/sC,
//    t = float((a - zA)*(b - zB)) * M + float(zC); y = sat(cvtps2dq(t))
//  integer schemes: y = requantize((a - zA)*(b - zB), sA*sB/sC) + zC.
Status lower_Mul(Node& n, const Graph& g, const ChipProfile& p) {
  if (!is_integer_node(n, g)) return Status::ok();
  QEVAL_ASSIGN_OR_RETURN(const BinaryQViews q, binary_qviews(n, g));
  const QView &qa = q.a, &qb = q.b, &qc = q.c;
  return store_requant(n, {static_cast<double>(qa.s()) * qb.s() / qc.s()},
                       {(qa.s() * qb.s()) / qc.s()}, p);
}

Result<EvalFn> prepare_Mul(const KernelArgs& a) {
  const Node& n = a.node;
  if (!is_integer_node(n, a.graph)) return prepare_binary_float(OpKind::kMul);
  const QView qa = qview(a.graph, n.inputs[0]), qb = qview(a.graph, n.inputs[1]),
              qc = qview(a.graph, n.outputs[0]);
  QEVAL_ASSIGN_OR_RETURN(Requant rq, load_requant(n, a.profile));
  EvalFn ref([=](const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) -> Status {
    const Tensor &A = *in[0], &B = *in[1];
    Tensor& Y = *out[0];
    binary_loop(A, B, Y, [&](int64_t i, int64_t ia, int64_t ib) {
      const int64_t prod = static_cast<int64_t>(load_i(A, ia) - qa.z()) * (load_i(B, ib) - qb.z());
      int64_t y;
      if (rq.scheme == RequantScheme::kFloat) {
        const float t = static_cast<float>(prod) * rq.fscale[0] + static_cast<float>(qc.z());
        y = float_to_int32_rne(t);
      } else {
        y = rq.apply(saturate_int32(prod), 0, qc.z(), qc.qmin, qc.qmax);
      }
      store_i(Y, i, static_cast<int32_t>(clamp_i64(y, qc.qmin, qc.qmax)));
    });
    return Status::ok();
  });
  return optimized_or(a, ref, [&](const EvalFn& r) { return opt::tabulate_binary(a, r); });
}

// BatchNorm: float only (qeval folds BN into the preceding conv before quantizing).
static Status check_float_batchnorm(const Node& n, const Graph& g) {
  if (is_integer_node(n, g)) {
    return unsupported("{}: BatchNorm on integer data; fold it into the preceding Conv2d before "
                       "quantization", n.describe());
  }
  return Status::ok();
}

Status lower_BatchNorm(Node& n, const Graph& g, const ChipProfile&) {
  return check_float_batchnorm(n, g);
}

Result<EvalFn> prepare_BatchNorm(const KernelArgs& a) {
  QEVAL_RETURN_IF_ERROR(check_float_batchnorm(a.node, a.graph));
  const float eps = static_cast<float>(a.node.attr_float("epsilon", 1e-5));
  return EvalFn([eps](const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) -> Status {
    const Tensor& X = *in[0];
    const int64_t N = X.dim(0), C = X.dim(1), inner = X.numel() / (N * C);
    const float *x = X.data<float>(), *gam = in[1]->data<float>(), *bet = in[2]->data<float>(),
                *mean = in[3]->data<float>(), *var = in[4]->data<float>();
    float* y = out[0]->data<float>();
    for (int64_t nb = 0; nb < N; ++nb)
      for (int64_t c = 0; c < C; ++c) {
        const float sc = gam[c] / std::sqrt(var[c] + eps);
        for (int64_t i = 0; i < inner; ++i) {
          const int64_t k = (nb * C + c) * inner + i;
          y[k] = (x[k] - mean[c]) * sc + bet[c];
        }
      }
    return Status::ok();
  });
}

namespace {

// Softmax / LayerNorm over `axis`, in float; integer data is dequantized in,
// quantized out ("float inside", the profile's softmax: float mode).
void softmax_rows(std::vector<float>& v, int64_t outer, int64_t len, int64_t inner) {
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t in = 0; in < inner; ++in) {
      float mx = -INFINITY;
      for (int64_t k = 0; k < len; ++k) mx = std::max(mx, v[(o * len + k) * inner + in]);
      double sum = 0;
      for (int64_t k = 0; k < len; ++k) {
        float& e = v[(o * len + k) * inner + in];
        e = std::exp(e - mx);
        sum += e;
      }
      for (int64_t k = 0; k < len; ++k) {
        v[(o * len + k) * inner + in] = static_cast<float>(v[(o * len + k) * inner + in] / sum);
      }
    }
}

Result<EvalFn> prepare_float_inside(const KernelArgs& a,
                                    std::function<void(std::vector<float>&, const Shape&,
                                                       const std::vector<const Tensor*>&)> body) {
  const QView qi = qview(a.graph, a.node.inputs[0]), qo = qview(a.graph, a.node.outputs[0]);
  const bool integer = is_integer_node(a.node, a.graph);
  const RoundingMode mode = a.profile.quantize_rounding;
  if (integer && (!qi.quantized || !qo.quantized)) {
    return invalid_argument("{}: integer node needs quantized input and output",
                            a.node.describe());
  }
  return EvalFn([=](const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) -> Status {
    const Tensor& X = *in[0];
    std::vector<float> v(X.numel());
    for (int64_t i = 0; i < X.numel(); ++i) {
      v[i] = integer ? dequantize_value(load_i(X, i), qi.s(), qi.z()) : load_f(X, i);
    }
    body(v, X.shape(), in);
    for (int64_t i = 0; i < X.numel(); ++i) {
      if (integer) {
        store_i(*out[0], i, quantize_value(v[i], qo.s(), qo.z(), qo.qmin, qo.qmax, mode));
      } else {
        store_f(*out[0], i, v[i]);
      }
    }
    return Status::ok();
  });
}

int64_t norm_axis(int64_t axis, int64_t rank) { return axis < 0 ? axis + rank : axis; }

}  // namespace

Status lower_Softmax(Node&, const Graph&, const ChipProfile&) { return Status::ok(); }
Result<EvalFn> prepare_Softmax(const KernelArgs& a) {
  const int64_t axis_attr = a.node.attr_int("axis", -1);
  return prepare_float_inside(a, [axis_attr](std::vector<float>& v, const Shape& s,
                                             const std::vector<const Tensor*>&) {
    const int64_t axis = norm_axis(axis_attr, static_cast<int64_t>(s.size()));
    int64_t outer = 1, inner = 1;
    for (int64_t d = 0; d < axis; ++d) outer *= s[d];
    for (size_t d = axis + 1; d < s.size(); ++d) inner *= s[d];
    softmax_rows(v, outer, s[axis], inner);
  });
}

Status lower_LayerNorm(Node&, const Graph&, const ChipProfile&) { return Status::ok(); }
Result<EvalFn> prepare_LayerNorm(const KernelArgs& a) {
  const int64_t axis_attr = a.node.attr_int("axis", -1);
  const double eps = a.node.attr_float("epsilon", 1e-5);
  return prepare_float_inside(a, [=](std::vector<float>& v, const Shape& s,
                                     const std::vector<const Tensor*>& in) {
    // Normalises over dims [axis, rank): y = (x - mean) / sqrt(var + eps) * gamma + beta.
    const int64_t axis = norm_axis(axis_attr, static_cast<int64_t>(s.size()));
    int64_t outer = 1, len = 1;
    for (int64_t d = 0; d < static_cast<int64_t>(s.size()); ++d) (d < axis ? outer : len) *= s[d];
    for (int64_t o = 0; o < outer; ++o) {
      double mean = 0, var = 0;
      for (int64_t k = 0; k < len; ++k) mean += v[o * len + k];
      mean /= static_cast<double>(len);
      for (int64_t k = 0; k < len; ++k) var += (v[o * len + k] - mean) * (v[o * len + k] - mean);
      var /= static_cast<double>(len);
      const double inv = 1.0 / std::sqrt(var + eps);
      for (int64_t k = 0; k < len; ++k) {
        double y = (v[o * len + k] - mean) * inv;
        if (in.size() > 1 && in[1]) y *= load_f(*in[1], k);
        if (in.size() > 2 && in[2]) y += load_f(*in[2], k);
        v[o * len + k] = static_cast<float>(y);
      }
    }
  });
}

}  // namespace qeval
