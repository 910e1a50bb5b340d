// Conv2d, Linear, MatMul.
//
// Integer form (any input/weight dtype, per-channel weight scales/zero points):
//   acc[c] = sat_int32( sum (x - z_x) * (w - z_w[c]) + bias[c] )   (exact: int64 sum)
//   y      = requant(acc[c], s_x * s_w[c] / s_y) + z_y, clamped to the output dtype
// where requant is the profile's (core/numerics: requantize / requantize_float).
// An int32 output without QuantParams receives acc itself (ONNX ConvInteger,
// MatMulInteger). Padding contributes nothing (the pad value is z_x).
#include <tbb/parallel_for.h>

#include "simulator/kernels/common.h"
#include "simulator/kernels/opt_kernels.h"

namespace qeval {

using namespace kern;

namespace {

// Per-channel real multipliers s_x * s_w[c] / s_y: `reals` in double (integer
// schemes derive multipliers from them), `freals` exactly as onnxruntime forms
// the float32 scale: (x_scale * w_scale[c]) / y_scale in float32.
void output_scales(const QView& x, const QView& w, const QView& y, int64_t channels,
                   std::vector<double>* reals, std::vector<float>* freals) {
  for (int64_t c = 0; c < channels; ++c) {
    reals->push_back(static_cast<double>(x.s()) * w.s(c) / y.s());
    freals->push_back((x.s() * w.s(c)) / y.s());
  }
}

Status lower_gemm_like(Node& n, const Graph& g, const ChipProfile& p, int64_t channels) {
  if (!is_integer_node(n, g)) return Status::ok();
  const QView x = qview(g, n.inputs[0]), w = qview(g, n.inputs[1]), y = qview(g, n.outputs[0]);
  if (!x.quantized || !w.quantized) {
    return invalid_argument("{}: integer output but input or weight has no quantization params",
                            n.describe());
  }
  if (w.scale.size() > 1 && static_cast<int64_t>(w.scale.size()) != channels) {
    return invalid_argument("{}: {} weight scales for {} output channels", n.describe(),
                            w.scale.size(), channels);
  }
  if (!y.quantized) return Status::ok();  // raw accumulator output
  std::vector<double> reals;
  std::vector<float> freals;
  output_scales(x, w, y, channels, &reals, &freals);
  return store_requant(n, reals, freals, p);
}

int64_t weight_channels(const Node& n, const Graph& g, int axis_from_end) {
  const ValueInfo* w = g.find_value(n.inputs[1]);
  if (!w || w->shape.empty()) return 1;
  return w->shape[axis_from_end < 0 ? w->shape.size() + axis_from_end : axis_from_end];
}

// x - z_x for every element, as int32 (8/16-bit inputs) - the reference is plain.
std::vector<int32_t> centered(const Tensor& t, const QView& q, int64_t inner, int64_t channels) {
  std::vector<int32_t> v(t.numel());
  for (int64_t i = 0; i < t.numel(); ++i) {
    const int64_t c = q.zp.size() > 1 ? (i / inner) % channels : 0;
    v[i] = load_i(t, i) - q.z(c);
  }
  return v;
}

}  // namespace

Status lower_Conv2d(Node& n, const Graph& g, const ChipProfile& p) {
  return lower_gemm_like(n, g, p, weight_channels(n, g, 0));
}

// Direct convolution over (batch, output channel) in parallel (TBB; every
// output element is computed by one task, so results do not depend on the
// thread count). The loop is shared by the float and the integer form: `acc`
// starts at the bias, `mac(acc, x_index, w_index)` accumulates one product.
template <typename Acc, typename Mac, typename Store>
void conv_loop(const Shape& xs, const Shape& ws, const Shape& ys, const std::vector<int64_t>& strides,
               const std::vector<int64_t>& pads, const std::vector<int64_t>& dil, int64_t group,
               const std::function<Acc(int64_t)>& bias, Mac&& mac, Store&& store) {
  const int64_t N = xs[0], C = xs[1], H = xs[2], W = xs[3];
  const int64_t M = ws[0], Cg = ws[1], KH = ws[2], KW = ws[3];
  const int64_t OH = ys[2], OW = ys[3], Mg = M / group;
  tbb::parallel_for(int64_t{0}, N * M, [&](int64_t nm) {
    const int64_t nb = nm / M, m = nm % M, g0 = (m / Mg) * Cg;
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow) {
        Acc acc = bias(m);
        for (int64_t ic = 0; ic < Cg; ++ic)
          for (int64_t kh = 0; kh < KH; ++kh) {
            const int64_t ih = oh * strides[0] - pads[0] + kh * dil[0];
            if (ih < 0 || ih >= H) continue;
            for (int64_t kw = 0; kw < KW; ++kw) {
              const int64_t iw = ow * strides[1] - pads[1] + kw * dil[1];
              if (iw < 0 || iw >= W) continue;
              mac(acc, ((nb * C + g0 + ic) * H + ih) * W + iw, ((m * Cg + ic) * KH + kh) * KW + kw);
            }
          }
        store(((nb * M + m) * OH + oh) * OW + ow, acc, m);
      }
  });
}

Result<EvalFn> prepare_Conv2d(const KernelArgs& a) {
  QEVAL_ASSIGN_OR_RETURN(OutStage st, make_out_stage(a));
  const Node& n = a.node;
  const auto strides = n.attr_ints("strides", {1, 1});
  const auto pads = n.attr_ints("pads", {0, 0, 0, 0});
  const auto dil = n.attr_ints("dilations", {1, 1});
  const int64_t group = n.attr_int("group", 1);
  const QView qx = qview(a.graph, n.inputs[0]), qw = qview(a.graph, n.inputs[1]);
  EvalFn ref([=](const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) -> Status {
    const Tensor& X = *in[0];
    const Tensor& W = *in[1];
    const Tensor* B = in.size() > 2 ? in[2] : nullptr;
    Tensor& Y = *out[0];
    if (st.is_float) {
      conv_loop<double>(
          X.shape(), W.shape(), Y.shape(), strides, pads, dil, group,
          [&](int64_t m) { return B ? static_cast<double>(load_f(*B, m)) : 0.0; },
          [&](double& acc, int64_t xi, int64_t wi) {
            acc += static_cast<double>(load_f(X, xi)) * load_f(W, wi);
          },
          [&](int64_t yi, double acc, int64_t) { store_f(Y, yi, static_cast<float>(acc)); });
      return Status::ok();
    }
    const std::vector<int32_t> xc = centered(X, qx, 1, 1);
    const std::vector<int32_t> wc = centered(W, qw, W.numel() / W.dim(0), W.dim(0));
    conv_loop<int64_t>(
        X.shape(), W.shape(), Y.shape(), strides, pads, dil, group,
        [&](int64_t m) { return B ? B->get_int(m) : int64_t{0}; },
        [&](int64_t& acc, int64_t xi, int64_t wi) {
          acc += static_cast<int64_t>(xc[xi]) * wc[wi];
        },
        [&](int64_t yi, int64_t acc, int64_t m) { st.store(Y, yi, acc, m); });
    return Status::ok();
  });
  return optimized_or(a, ref, [&](const EvalFn& r) {
    return st.is_float ? opt::prepare_conv2d_float(a, r) : opt::prepare_conv2d(a, st, r);
  });
}

Status lower_Linear(Node& n, const Graph& g, const ChipProfile& p) {
  return lower_gemm_like(n, g, p, weight_channels(n, g, 0));
}

Result<EvalFn> prepare_Linear(const KernelArgs& a) {
  QEVAL_ASSIGN_OR_RETURN(OutStage st, make_out_stage(a));
  const QView qx = qview(a.graph, a.node.inputs[0]), qw = qview(a.graph, a.node.inputs[1]);
  EvalFn ref([=](const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) -> Status {
    const Tensor& X = *in[0];
    const Tensor& W = *in[1];
    const Tensor* B = in.size() > 2 ? in[2] : nullptr;
    Tensor& Y = *out[0];
    const int64_t N = X.dim(0), K = X.dim(1), M = W.dim(0);
    if (st.is_float) {
      for (int64_t i = 0; i < N; ++i)
        for (int64_t m = 0; m < M; ++m) {
          double acc = B ? load_f(*B, m) : 0.0;
          for (int64_t k = 0; k < K; ++k)
            acc += static_cast<double>(load_f(X, i * K + k)) * load_f(W, m * K + k);
          store_f(Y, i * M + m, static_cast<float>(acc));
        }
      return Status::ok();
    }
    const std::vector<int32_t> xc = centered(X, qx, 1, 1);
    const std::vector<int32_t> wc = centered(W, qw, K, M);
    for (int64_t i = 0; i < N; ++i)
      for (int64_t m = 0; m < M; ++m) {
        int64_t acc = B ? B->get_int(m) : 0;
        for (int64_t k = 0; k < K; ++k)
          acc += static_cast<int64_t>(xc[i * K + k]) * wc[m * K + k];
        st.store(Y, i * M + m, acc, m);
      }
    return Status::ok();
  });
  return optimized_or(a, ref, [&](const EvalFn& r) { return opt::prepare_linear(a, st, r); });
}

Status lower_MatMul(Node& n, const Graph& g, const ChipProfile& p) {
  return lower_gemm_like(n, g, p, weight_channels(n, g, -1));
}

Result<EvalFn> prepare_MatMul(const KernelArgs& a) {
  QEVAL_ASSIGN_OR_RETURN(OutStage st, make_out_stage(a));
  const QView qa = qview(a.graph, a.node.inputs[0]), qb = qview(a.graph, a.node.inputs[1]);
  EvalFn ref([=](const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) -> Status {
    const Tensor& A = *in[0];
    const Tensor& B = *in[1];
    Tensor& Y = *out[0];
    if (A.rank() < 2 || B.rank() < 2) {
      return unsupported("MatMul with a 1-D operand is not supported by the simulator");
    }
    const int64_t M = A.dim(-2), K = A.dim(-1), N = B.dim(-1);
    // Batch broadcasting over the leading dims: map output batch index to A and B.
    Shape yb(Y.shape().begin(), Y.shape().end() - 2);
    Shape ab(A.shape().begin(), A.shape().end() - 2), bb(B.shape().begin(), B.shape().end() - 2);
    const Broadcaster ba(yb, ab), bbm(yb, bb);
    const int64_t batches = shape_numel(yb);
    std::vector<int32_t> ac, bc;
    if (!st.is_float) {
      ac = centered(A, qa, 1, 1);
      bc = centered(B, qb, 1, N);  // per-column zero points: channel = last index
    }
    for (int64_t bi = 0; bi < batches; ++bi) {
      const int64_t ao = ba.map(bi) * M * K, bo = bbm.map(bi) * K * N, yo = bi * M * N;
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) {
          if (st.is_float) {
            double acc = 0;
            for (int64_t k = 0; k < K; ++k)
              acc += static_cast<double>(load_f(A, ao + i * K + k)) * load_f(B, bo + k * N + j);
            store_f(Y, yo + i * N + j, static_cast<float>(acc));
          } else {
            int64_t acc = 0;
            for (int64_t k = 0; k < K; ++k)
              acc += static_cast<int64_t>(ac[ao + i * K + k]) * bc[bo + k * N + j];
            st.store(Y, yo + i * N + j, acc, j);
          }
        }
    }
    return Status::ok();
  });
  return optimized_or(a, ref, [&](const EvalFn& r) { return opt::prepare_matmul(a, st, r); });
}

}  // namespace qeval
