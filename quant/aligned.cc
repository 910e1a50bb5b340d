#include "quant/aligned.h"

#include <ATen/Parallel.h>

#include "quant/interpreter.h"
#include "simulator/kernels/common.h"

namespace qeval {

using kern::QView;

namespace {

// One value during execution: int32 (integer values) or float32.
using Env = std::map<std::string, torch::Tensor>;

// Element-wise map of an int64/int32/float tensor into a new int32 tensor.
template <typename In, typename F>
torch::Tensor map_to_int(const torch::Tensor& x, F&& f) {
  torch::Tensor src = x.contiguous();
  torch::Tensor out = torch::empty(src.sizes(), torch::kInt32);
  const In* s = src.data_ptr<In>();
  int32_t* d = out.data_ptr<int32_t>();
  at::parallel_for(0, src.numel(), 4096, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) d[i] = f(i, s[i]);
  });
  return out;
}

torch::Tensor lut_apply(const torch::Tensor& q, const Tensor& lut, int32_t qmin) {
  torch::Tensor t = to_torch(lut).to(torch::kInt32);
  return t.index_select(0, (q.to(torch::kInt64) - qmin).flatten()).reshape(q.sizes());
}

torch::Tensor centred(const torch::Tensor& q, const QView& v, int64_t channel_dim) {
  torch::Tensor x = q.to(torch::kFloat64);
  if (v.zp.size() > 1) {
    std::vector<int64_t> shape(q.dim(), 1);
    shape[channel_dim] = -1;
    return x - torch::tensor(std::vector<double>(v.zp.begin(), v.zp.end()), torch::kFloat64).reshape(shape);
  }
  return v.z() == 0 ? x : x - v.z();
}

// acc (float64, exact integers) -> requantized int32 per output channel (dim 1).
Result<torch::Tensor> requant(const torch::Tensor& acc, const Node& n, const ChipProfile& p, const QView& y) {
  QEVAL_ASSIGN_OR_RETURN(kern::Requant rq, kern::load_requant(n, p));
  const int64_t channels = acc.size(1), inner = acc.numel() / (acc.size(0) * channels);
  torch::Tensor a = acc.contiguous();
  return map_to_int<double>(a, [&](int64_t i, double v) {
    const int64_t c = (i / inner) % channels;
    return rq.apply(saturate_int32(static_cast<int64_t>(v)), c, y.z(), y.qmin, y.qmax);
  });
}

std::vector<int64_t> ints(const Node& n, const char* k, std::vector<int64_t> def) { return n.attr_ints(k, def); }

// Moves data (Flatten, Reshape, Upsample, MaxPool, Concat input): the rescale table when lowering made one.
torch::Tensor maybe_lut(const Node& n, const std::string& key, const torch::Tensor& q, const QView& in) {
  auto it = n.params.find(key);
  return it == n.params.end() ? q : lut_apply(q, it->second, in.qmin);
}

Result<torch::Tensor> run_integer(const Node& n, const Graph& g, const ChipProfile& p,
                                  const std::vector<torch::Tensor>& in) {
  const QView y = kern::qview(g, n.outputs[0]);
  const QView x = kern::qview(g, n.inputs[0]);
  switch (n.op) {
    case OpKind::kQuantize: {
      const RoundingMode mode = p.quantize_rounding;
      return map_to_int<float>(in[0].to(torch::kFloat32), [&](int64_t, float v) {
        return quantize_value(v, y.s(), y.z(), y.qmin, y.qmax, mode);
      });
    }
    case OpKind::kConv2d:
    case OpKind::kLinear: {
      const QView w = kern::qview(g, n.inputs[1]);
      torch::Tensor xc = centred(in[0], x, 1), wc = centred(in[1], w, 0);
      torch::Tensor acc;
      if (n.op == OpKind::kConv2d) {
        const auto pads = ints(n, "pads", {0, 0, 0, 0});
        // Padding adds centred zeros (the pad value is z_x).
        torch::Tensor xp = torch::constant_pad_nd(xc, {pads[1], pads[3], pads[0], pads[2]}, 0.0);
        acc = torch::conv2d(xp, wc, torch::Tensor(), ints(n, "strides", {1, 1}), std::vector<int64_t>{0, 0}, ints(n, "dilations", {1, 1}),
                            n.attr_int("group", 1));
      } else {
        acc = torch::matmul(xc, wc.t());
      }
      if (in.size() > 2 && in[2].defined()) {
        std::vector<int64_t> shape(acc.dim(), 1);
        shape[1] = -1;
        acc = acc + in[2].to(torch::kFloat64).reshape(shape);
      }
      return requant(acc, n, p, y);
    }
    case OpKind::kRelu:
    case OpKind::kRelu6:
    case OpKind::kClip:
    case OpKind::kSigmoid:
    case OpKind::kSiLU:
    case OpKind::kGELU: {
      QEVAL_RETURN_IF_ERROR(kern::need_param(n, "lut"));
      return lut_apply(in[0], kern::param(n, "lut"), x.qmin);
    }
    case OpKind::kAdd: {
      if (p.requant == RequantScheme::kFloat) break;
      QEVAL_RETURN_IF_ERROR(kern::need_param(n, "m"));
      QEVAL_RETURN_IF_ERROR(kern::need_param(n, "rshift"));
      const QView b = kern::qview(g, n.inputs[1]);
      const int32_t ma = kern::param(n, "m").data<int32_t>()[0], mb = kern::param(n, "m").data<int32_t>()[1];
      const int r = kern::param(n, "rshift").data<int32_t>()[0];
      auto sizes = at::infer_size(in[0].sizes(), in[1].sizes());
      torch::Tensor a = in[0].expand(sizes).contiguous(), bb = in[1].expand(sizes).contiguous();
      const int32_t* bp = bb.data_ptr<int32_t>();
      return map_to_int<int32_t>(a, [&](int64_t i, int32_t av) {
        return add_requantize(av - x.z(), bp[i] - b.z(), ma, mb, r, y.z(), y.qmin, y.qmax, p.rounding);
      });
    }
    case OpKind::kGlobalAvgPool: {
      torch::Tensor s = centred(in[0], x, 1).sum({2, 3}, /*keepdim=*/true);
      return requant(s, n, p, y);
    }
    case OpKind::kMaxPool: {
      const auto pads = ints(n, "pads", {0, 0, 0, 0});
      const auto k = ints(n, "kernel", {});
      torch::Tensor xf = torch::constant_pad_nd(in[0].to(torch::kFloat64), {pads[1], pads[3], pads[0], pads[2]},
                                                -INFINITY);
      torch::Tensor m = torch::max_pool2d(xf, k, ints(n, "strides", k), std::vector<int64_t>{0, 0}, ints(n, "dilations", {1, 1}),
                                          n.attr_int("ceil_mode", 0) != 0)
                            .to(torch::kInt32);
      return maybe_lut(n, "lut", m, x);
    }
    case OpKind::kFlatten: {
      const int64_t axis = n.attr_int("axis", 1);
      int64_t outer = 1;
      for (int64_t i = 0; i < axis; ++i) outer *= in[0].size(i);
      return maybe_lut(n, "lut", in[0].reshape({outer, -1}), x);
    }
    case OpKind::kReshape: {
      std::vector<int64_t> shape = ints(n, "shape", {});
      for (size_t i = 0; i < shape.size(); ++i) {
        if (shape[i] == 0) shape[i] = in[0].size(static_cast<int64_t>(i));
      }
      return maybe_lut(n, "lut", in[0].reshape(shape), x);
    }
    case OpKind::kUpsample: {
      const auto s = ints(n, "scales", {2, 2});
      return maybe_lut(n, "lut", in[0].repeat_interleave(s[0], 2).repeat_interleave(s[1], 3), x);
    }
    case OpKind::kConcat: {
      std::vector<torch::Tensor> parts;
      for (size_t i = 0; i < in.size(); ++i) {
        parts.push_back(maybe_lut(n, "lut" + std::to_string(i), in[i], kern::qview(g, n.inputs[i])));
      }
      return torch::cat(parts, n.attr_int("axis", 1));
    }
    default:
      break;
  }
  return unsupported("{}: not supported in deploy-aligned mode (profile {})", n.describe(), p.name);
}

}  // namespace

Result<std::map<std::string, torch::Tensor>> run_deploy_aligned(const Graph& program, const ChipProfile& profile,
                                                                const std::map<std::string, torch::Tensor>& inputs,
                                                                bool keep_all) {
  torch::NoGradGuard ng;
  Env env = inputs;
  for (const Node& n : program.nodes) {
    std::vector<torch::Tensor> in;
    for (const std::string& name : n.inputs) {
      if (name.empty()) {
        in.emplace_back();
      } else if (auto it = env.find(name); it != env.end()) {
        in.push_back(it->second);
      } else if (const Tensor* c = program.find_constant(name)) {
        torch::Tensor t = to_torch(*c);
        in.push_back(t.scalar_type() == torch::kFloat32 ? t : t.to(torch::kInt32));
      } else {
        return invalid_argument("{}: value '{}' is not defined", n.describe(), name);
      }
    }
    torch::Tensor out;
    if (n.op == OpKind::kDequantize) {
      const QView q = kern::qview(program, n.inputs[0]);
      out = (in[0].to(torch::kFloat32) - static_cast<float>(q.z())) * q.s();
      // The simulator computes (q - z) * s in float32; so does this (one rounding).
    } else if (n.op == OpKind::kQuantize || kern::is_integer_node(n, program)) {
      auto r = run_integer(n, program, profile, in);
      if (!r.is_ok()) return r.status();
      out = *r;
    } else {
      // A float node (hybrid layer): the float interpreter's op, in float32.
      struct Runner : GraphModule {
        explicit Runner(Graph g) : GraphModule(std::move(g)) {}
        torch::Tensor run(const Node& node, const std::vector<torch::Tensor>& x) { return run_node(node, x); }
      };
      Runner r{Graph{}};
      try {
        out = r.run(n, in);
      } catch (const std::exception& e) {
        return invalid_argument("{}: {}", n.describe(), first_line(e.what()));
      }
    }
    env[n.outputs[0]] = out;
  }
  if (keep_all) return env;
  std::map<std::string, torch::Tensor> res;
  for (const std::string& o : program.outputs) res[o] = env.at(o);
  return res;
}

}  // namespace qeval
