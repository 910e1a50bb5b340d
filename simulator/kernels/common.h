// Helpers shared by the reference kernels.
#pragma once

#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "core/numerics.h"
#include "simulator/kernels/kernel.h"

namespace qeval::kern {

// Quantization of a value as seen by a kernel: per-tensor or per-channel.
struct QView {
  bool quantized = false;
  DType dtype = DType::kFloat32;
  std::vector<float> scale{1.0f};
  std::vector<int32_t> zp{0};
  int axis = -1;
  int32_t qmin = 0, qmax = 0;
  float s(int64_t c = 0) const { return scale.size() > 1 ? scale[c] : scale[0]; }
  int32_t z(int64_t c = 0) const { return zp.size() > 1 ? zp[c] : zp[0]; }
};

QView qview(const Graph& g, const std::string& value);
bool same_quant(const QView& a, const QView& b);
// True when the node's output is an integer value (quantized, or raw int32 accumulators).
bool is_integer_node(const Node& n, const Graph& g);

// Reads element i of any tensor as int32 / float.
inline int32_t load_i(const Tensor& t, int64_t i) { return static_cast<int32_t>(t.get_int(i)); }
float load_f(const Tensor& t, int64_t i);
// Writes an int32 (already in range) or a float into element i of any tensor.
void store_i(Tensor& t, int64_t i, int32_t v);
void store_f(Tensor& t, int64_t i, float v);

// The integer multiplier for a real scale under the profile.
Result<Multiplier> profile_multiplier(double real, const ChipProfile& p);
// Requantizes an accumulator with per-channel params stored by lowering:
// "<prefix>fscale" (float scheme) or "<prefix>m" + "<prefix>rshift".
struct Requant {
  RequantScheme scheme = RequantScheme::kSingleRounding;
  RoundingMode mode = RoundingMode::kHalfUp;
  std::vector<float> fscale;
  std::vector<Multiplier> mult;
  int32_t apply(int32_t acc, int64_t c, int32_t zp, int32_t qmin, int32_t qmax) const {
    if (scheme == RequantScheme::kFloat) {
      return requantize_float(acc, fscale.size() > 1 ? fscale[c] : fscale[0], zp, qmin, qmax);
    }
    return requantize(acc, mult.size() > 1 ? mult[c] : mult[0], zp, qmin, qmax, scheme, mode);
  }
};

// Output stage of Conv2d / Linear / MatMul (reference and optimized kernels):
// acc[c] (exact, int64) -> sat_int32 -> the int32 itself (raw: ONNX ConvInteger,
// MatMulInteger) or requantized into the output's dtype.
struct OutStage {
  bool raw = false;   // int32 accumulator output
  bool is_float = false;
  Requant rq;
  QView y;
  int32_t finish(int64_t acc, int64_t c) const {
    const int32_t a = saturate_int32(acc);
    return raw ? a : rq.apply(a, c, y.z(), y.qmin, y.qmax);
  }
  void store(Tensor& out, int64_t i, int64_t acc, int64_t c) const {
    store_i(out, i, finish(acc, c));
  }
};
Result<OutStage> make_out_stage(const KernelArgs& a);

// Add of two integer operands with the parameters lower_Add stores:
//  float scheme (onnxruntime QLinearAdd): t = fma(a + off, ra, fma(b + off, rb, fixed)),
//    y = clamp(cvtps2dq(t), qmin + off, qmax + off) - off
//  integer schemes: y = add_requantize(a - za, b - zb, ma, mb, r, zc, qmin, qmax, mode)
struct AddRequant {
  bool float_scheme = false;
  float ra = 0, rb = 0, fixed = 0;
  int32_t off = 0;
  int32_t za = 0, zb = 0, zc = 0, ma = 0, mb = 0;
  int r = 0;
  RoundingMode mode = RoundingMode::kHalfUp;
  int32_t qmin = 0, qmax = 0;
  int32_t apply(int32_t a, int32_t b) const {
    if (float_scheme) {
      const float t = std::fma(static_cast<float>(a + off), ra,
                               std::fma(static_cast<float>(b + off), rb, fixed));
      return static_cast<int32_t>(clamp_i64(float_to_int32_rne(t), qmin + off, qmax + off) - off);
    }
    return add_requantize(a - za, b - zb, ma, mb, r, zc, qmin, qmax, mode);
  }
};

// What prepare_* returns: the optimized kernel `opt(reference)` makes for the
// node (opt_kernels.h) unless the mode is reference or it makes none.
template <typename Opt>
EvalFn optimized_or(const KernelArgs& a, const EvalFn& reference, Opt&& opt) {
  if (a.mode == KernelMode::kReference) return reference;
  std::optional<EvalFn> fn = opt(reference);
  return fn ? *fn : reference;
}

// Lowering side: derive per-channel params for real scales `reals` into node.params.
Status store_requant(Node& node, const std::vector<double>& reals, const std::vector<float>& freals,
                     const ChipProfile& p, const std::string& prefix = "");
Result<Requant> load_requant(const Node& node, const ChipProfile& p, const std::string& prefix = "");

// 8/16-bit lookup table: lut[q - qmin_in] = Q_out(f(DQ_in(q))), DQ/Q in float32
// with the profile's quantize rounding (ONNX: x / scale, half to even).
template <typename F>
Tensor build_lut(const QView& in, const QView& out, RoundingMode mode, F&& f) {
  const int64_t n = static_cast<int64_t>(in.qmax) - in.qmin + 1;
  Tensor t(out.dtype, {n});
  for (int64_t i = 0; i < n; ++i) {
    const int32_t q = static_cast<int32_t>(in.qmin + i);
    const float x = dequantize_value(q, in.s(), in.z());
    store_i(t, i, quantize_value(f(x), out.s(), out.z(), out.qmin, out.qmax, mode));
  }
  return t;
}

// Table mapping an integer value from quantization `in` to quantization `out`
// (a requantization by s_in / s_out): float scheme = DQ then Q in float32 (as
// onnxruntime's QLinearConcat), integer schemes = requantize(q - z_in) + z_out.
Result<Tensor> rescale_lut(const Node& n, const QView& in, const QView& out, const ChipProfile& p);

Status need_param(const Node& n, const char* key);
const Tensor& param(const Node& n, const char* key);
Status check_lut_input(const Node& n, const QView& in);

// numpy broadcasting: index into an input of shape `in` for flat output index i of shape `out`.
struct Broadcaster {
  Broadcaster(const Shape& out, const Shape& in);
  int64_t map(int64_t i) const;
  std::vector<int64_t> out_strides, in_strides;
};

}  // namespace qeval::kern
