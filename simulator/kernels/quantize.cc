// Quantize, Dequantize, DynamicQuantize: float <-> integer at graph borders.
//   Quantize:   q = clamp(round(x / s[c]) + z[c]) (core/numerics quantize_value,
//               the profile's quantize rounding; ONNX: half to even)
//   Dequantize: x = float(q - z[c]) * s[c]
#include <algorithm>
#include <cmath>

#include "simulator/kernels/common.h"
#include "simulator/kernels/opt_kernels.h"

namespace qeval {

using namespace kern;

namespace {

// Calls f(i, c) for every element i of X, c its channel along the per-axis
// params' axis: (i / inner) % channels (0 for per-tensor params).
template <typename F>
void for_each_with_channel(const Tensor& X, const QView& q, F&& f) {
  const int64_t C = static_cast<int64_t>(q.scale.size());
  int64_t inner = 1;
  if (C > 1) {
    const int axis = q.axis < 0 ? q.axis + X.rank() : q.axis;
    for (int d = axis + 1; d < X.rank(); ++d) inner *= X.dim(d);
  }
  for (int64_t i = 0; i < X.numel(); ++i) f(i, C > 1 ? (i / inner) % C : 0);
}

Status check_axis(const Node& n, const QView& q, const Graph& g, const std::string& value) {
  if (q.scale.size() <= 1) return Status::ok();
  const ValueInfo* vi = g.find_value(value);
  if (!vi || vi->shape.empty()) return Status::ok();
  const int r = static_cast<int>(vi->shape.size());
  const int axis = q.axis < 0 ? q.axis + r : q.axis;
  if (axis < 0 || axis >= r || vi->shape[axis] != static_cast<int64_t>(q.scale.size())) {
    return invalid_argument("{}: {} per-axis scales along axis {} of shape {}", n.describe(),
                            q.scale.size(), q.axis, shape_str(vi->shape));
  }
  return Status::ok();
}

// The border value (Quantize's output, Dequantize's input) must carry valid params.
Status check_quantized(const Node& n, const Graph& g, const std::string& value, const char* what) {
  const QView q = qview(g, value);
  if (!q.quantized) return invalid_argument("{}: {} has no quantization params", n.describe(), what);
  return check_axis(n, q, g, value);
}

}  // namespace

Status lower_Quantize(Node& n, const Graph& g, const ChipProfile&) {
  return check_quantized(n, g, n.outputs[0], "output");
}

Result<EvalFn> prepare_Quantize(const KernelArgs& a) {
  QEVAL_RETURN_IF_ERROR(check_quantized(a.node, a.graph, a.node.outputs[0], "output"));
  const QView q = qview(a.graph, a.node.outputs[0]);
  const RoundingMode mode = a.profile.quantize_rounding;
  EvalFn ref([q, mode](const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) -> Status {
    for_each_with_channel(*in[0], q, [&](int64_t i, int64_t c) {
      store_i(*out[0], i, quantize_value(load_f(*in[0], i), q.s(c), q.z(c), q.qmin, q.qmax, mode));
    });
    return Status::ok();
  });
  return optimized_or(a, ref, [&](const EvalFn& r) { return opt::prepare_quantize(a, r); });
}

Status lower_Dequantize(Node& n, const Graph& g, const ChipProfile&) {
  return check_quantized(n, g, n.inputs[0], "input");
}

Result<EvalFn> prepare_Dequantize(const KernelArgs& a) {
  QEVAL_RETURN_IF_ERROR(check_quantized(a.node, a.graph, a.node.inputs[0], "input"));
  const QView q = qview(a.graph, a.node.inputs[0]);
  return EvalFn([q](const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) -> Status {
    for_each_with_channel(*in[0], q, [&](int64_t i, int64_t c) {
      store_f(*out[0], i, dequantize_value(load_i(*in[0], i), q.s(c), q.z(c)));
    });
    return Status::ok();
  });
}

// DynamicQuantizeLinear (ONNX; onnxruntime's order of operations):
//   lo = min(min(x), 0), hi = max(max(x), 0)
//   scale = (hi == lo) ? 1 : (hi - lo) / 255          (float32)
//   zp = round_half_even(clamp(0 - lo / scale, 0, 255))
//   y = clamp(round_half_even(x / scale) + zp, 0, 255)
Status lower_DynamicQuantize(Node&, const Graph&, const ChipProfile&) { return Status::ok(); }

Result<EvalFn> prepare_DynamicQuantize(const KernelArgs&) {
  return EvalFn([](const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) -> Status {
    const Tensor& X = *in[0];
    float lo = 0.0f, hi = 0.0f;
    for (int64_t i = 0; i < X.numel(); ++i) {
      const float v = load_f(X, i);
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
    const float scale = hi == lo ? 1.0f : (hi - lo) / 255.0f;
    const float z0 = std::max(0.0f, std::min(255.0f, 0.0f - lo / scale));
    const int32_t zp = static_cast<int32_t>(std::nearbyint(z0));
    for (int64_t i = 0; i < X.numel(); ++i) {
      store_i(*out[0], i, quantize_value(load_f(X, i), scale, zp, 0, 255));
    }
    store_f(*out[1], 0, scale);
    store_i(*out[2], 0, zp);
    return Status::ok();
  });
}

}  // namespace qeval
