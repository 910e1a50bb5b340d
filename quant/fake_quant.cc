#include "quant/fake_quant.h"

#include <cmath>

namespace qeval {

namespace {

// Shapes a [C] parameter to broadcast along `axis` of x ([] stays a scalar).
torch::Tensor along(const torch::Tensor& p, const torch::Tensor& x, int axis) {
  if (axis < 0 || p.dim() == 0) return p;
  std::vector<int64_t> shape(x.dim(), 1);
  shape[axis] = p.numel();
  return p.reshape(shape);
}

struct Parts {
  torch::Tensor v, q, inside;
};

Parts quantize_parts(const torch::Tensor& x, const torch::Tensor& s, const torch::Tensor& z,
                     const FakeQuantSpec& spec) {
  Parts p;
  p.v = x / s;
  const torch::Tensor r = round_with_mode(p.v, spec.rounding) + z;
  p.inside = (r >= static_cast<double>(spec.qmin)) & (r <= static_cast<double>(spec.qmax));
  p.q = r.clamp(static_cast<double>(spec.qmin), static_cast<double>(spec.qmax));
  return p;
}

class FakeQuantFn : public torch::autograd::Function<FakeQuantFn> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor x, torch::Tensor scale,
                               torch::Tensor zero_point, int64_t qmin, int64_t qmax, int64_t axis, int64_t rounding,
                               double grad_factor, bool learn_scale) {
    FakeQuantSpec spec{qmin, qmax, static_cast<int>(axis), static_cast<RoundingMode>(rounding)};
    const torch::Tensor s = along(scale, x, spec.axis), z = along(zero_point, x, spec.axis);
    Parts p = quantize_parts(x, s, z, spec);
    ctx->save_for_backward({p.v, p.q, p.inside, z});
    ctx->saved_data["learn"] = learn_scale;
    ctx->saved_data["g"] = grad_factor;
    ctx->saved_data["axis"] = axis;
    ctx->saved_data["scale_shape"] = scale.sizes().vec();
    return (p.q - z) * s;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &v = saved[0], &q = saved[1], &inside = saved[2], &z = saved[3];
    const torch::Tensor& g = grads[0];
    const torch::Tensor mask = inside.to(g.scalar_type());
    torch::Tensor dx = g * mask, ds;
    if (ctx->saved_data["learn"].toBool()) {
      const torch::Tensor local = torch::where(inside, (q - z) - v, q - z);
      torch::Tensor full = g * local * ctx->saved_data["g"].toDouble();
      const int64_t axis = ctx->saved_data["axis"].toInt();
      if (axis < 0) {
        ds = full.sum();
      } else {
        std::vector<int64_t> dims;
        for (int64_t d = 0; d < full.dim(); ++d) {
          if (d != axis) dims.push_back(d);
        }
        ds = full.sum(dims);
      }
      ds = ds.reshape(ctx->saved_data["scale_shape"].toIntVector());  // [] or [1] per tensor
    }
    return {dx, ds, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor(),
            torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor round_with_mode(const torch::Tensor& v, RoundingMode mode) {
  switch (mode) {
    case RoundingMode::kHalfUp: {
      // As core/numerics: decide on the fraction (floor(v + 0.5) misrounds 0.49999997).
      const torch::Tensor fl = torch::floor(v);
      return torch::where(v - fl >= 0.5, fl + 1, fl);
    }
    case RoundingMode::kHalfAwayFromZero: {
      const torch::Tensor a = torch::abs(v), fa = torch::floor(a);
      return torch::copysign(torch::where(a - fa >= 0.5, fa + 1, fa), v);
    }
    case RoundingMode::kHalfToEven:
      return torch::round(v);  // nearbyint: ties to even
  }
  return v;
}

torch::Tensor fake_quant_ste(const torch::Tensor& x, const torch::Tensor& scale, const torch::Tensor& zero_point,
                             const FakeQuantSpec& spec) {
  return FakeQuantFn::apply(x, scale.detach(), zero_point.detach(), spec.qmin, spec.qmax, spec.axis,
                            static_cast<int64_t>(spec.rounding), 0.0, false);
}

torch::Tensor fake_quant_lsq(const torch::Tensor& x, const torch::Tensor& scale, const torch::Tensor& zero_point,
                             const FakeQuantSpec& spec, double grad_factor) {
  if (grad_factor <= 0) {
    const double per = spec.axis < 0 ? static_cast<double>(x.numel())
                                     : static_cast<double>(x.numel()) / static_cast<double>(x.size(spec.axis));
    grad_factor = 1.0 / std::sqrt(per * static_cast<double>(spec.qmax));
  }
  return FakeQuantFn::apply(x, scale, zero_point.detach(), spec.qmin, spec.qmax, spec.axis,
                            static_cast<int64_t>(spec.rounding), grad_factor, true);
}

}  // namespace qeval
