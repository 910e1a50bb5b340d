#include "quant/fake_quant.h"

#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>

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

// One pass over x for the common case (float32, dense memory, per-tensor or
// per-channel along the axis that is outermost in memory, as the weights'
// output channels are in either layout): out, the inside-range mask and, for
// LSQ, the scale's local gradient (q − z) − v inside / q − z outside. Every
// value is computed with the float32 operations quantize_parts uses, in the
// same order, so the results are bit-identical to it (tests:
// quant/fake_quant_test.cc); it only avoids a dozen temporaries per call.
bool fusable(const torch::Tensor& x, const torch::Tensor& s, const torch::Tensor& z, int axis) {
  // The fused kernel is host code: CUDA tensors take the composite expression (same formula).
  if (!x.is_cpu() || !s.is_cpu() || !z.is_cpu()) return false;
  if (x.scalar_type() != torch::kFloat || s.scalar_type() != torch::kFloat || z.scalar_type() != torch::kFloat ||
      !x.is_non_overlapping_and_dense() || !s.is_contiguous() || !z.is_contiguous()) {
    return false;
  }
  if (axis < 0 || s.numel() <= 1) return s.numel() == 1 && z.numel() == 1;
  return s.numel() == x.size(axis) && z.numel() == x.size(axis) && x.stride(axis) * x.size(axis) == x.numel();
}

template <RoundingMode M>
inline float round_as(float v) {
  if constexpr (M == RoundingMode::kHalfUp) {
    const float fl = std::floor(v);
    return v - fl >= 0.5f ? fl + 1 : fl;
  } else if constexpr (M == RoundingMode::kHalfAwayFromZero) {
    const float a = std::abs(v), fa = std::floor(a);
    return std::copysign(a - fa >= 0.5f ? fa + 1 : fa, v);
  } else {
    return std::nearbyint(v);
  }
}

// Elements [b, e) of one channel (scale sc, zero point zc). Clamp as
// torch::clamp: NaN stays NaN.
template <RoundingMode M>
inline void fq_scalar(const float* x, float sc, float zc, float qmin, float qmax, int64_t b, int64_t e, float* out,
                      bool* inside, float* local) {
  for (int64_t i = b; i < e; ++i) {
    const float v = x[i] / sc;
    const float r = round_as<M>(v) + zc;
    const bool in = r >= qmin && r <= qmax;
    const float q = r < qmin ? qmin : r > qmax ? qmax : r;
    out[i] = (q - zc) * sc;
    inside[i] = in;
    if (local) local[i] = in ? (q - zc) - v : q - zc;
  }
}

// The 8 bool bytes (0 or 1) of an 8-bit lane mask, as one 8-byte store.
struct MaskBytes {
  uint64_t v[256];
  MaskBytes() {
    for (int m = 0; m < 256; ++m) {
      v[m] = 0;
      for (int k = 0; k < 8; ++k) v[m] |= uint64_t((m >> k) & 1) << (8 * k);
    }
  }
};
const MaskBytes kMaskBytes;

// The same with AVX2, 8 lanes: the same IEEE operations (division, rounding
// to an integer, additions, comparisons), so the same bits; no FMA.
template <RoundingMode M>
__attribute__((target("avx2"))) void fq_avx2(const float* x, float sc, float zc, float qmin, float qmax, int64_t b,
                                             int64_t e, float* out, bool* inside, float* local) {
  const __m256 s = _mm256_set1_ps(sc), z = _mm256_set1_ps(zc), lo = _mm256_set1_ps(qmin), hi = _mm256_set1_ps(qmax);
  const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  int64_t i = b;
  for (; i + 8 <= e; i += 8) {
    const __m256 v = _mm256_div_ps(_mm256_loadu_ps(x + i), s);
    __m256 rounded;
    if constexpr (M == RoundingMode::kHalfUp) {
      const __m256 fl = _mm256_round_ps(v, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
      const __m256 up = _mm256_cmp_ps(_mm256_sub_ps(v, fl), half, _CMP_GE_OQ);
      rounded = _mm256_blendv_ps(fl, _mm256_add_ps(fl, one), up);
    } else if constexpr (M == RoundingMode::kHalfAwayFromZero) {
      const __m256 a = _mm256_andnot_ps(sign, v);
      const __m256 fa = _mm256_round_ps(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
      const __m256 up = _mm256_cmp_ps(_mm256_sub_ps(a, fa), half, _CMP_GE_OQ);
      const __m256 m = _mm256_blendv_ps(fa, _mm256_add_ps(fa, one), up);
      rounded = _mm256_or_ps(_mm256_andnot_ps(sign, m), _mm256_and_ps(sign, v));  // copysign
    } else {
      rounded = _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    }
    const __m256 r = _mm256_add_ps(rounded, z);
    const __m256 below = _mm256_cmp_ps(r, lo, _CMP_LT_OQ), above = _mm256_cmp_ps(r, hi, _CMP_GT_OQ);
    const __m256 in = _mm256_and_ps(_mm256_cmp_ps(r, lo, _CMP_GE_OQ), _mm256_cmp_ps(r, hi, _CMP_LE_OQ));
    const __m256 q = _mm256_blendv_ps(_mm256_blendv_ps(r, hi, above), lo, below);
    const __m256 qz = _mm256_sub_ps(q, z);
    _mm256_storeu_ps(out + i, _mm256_mul_ps(qz, s));
    const uint64_t bytes = kMaskBytes.v[_mm256_movemask_ps(in)];
    std::memcpy(inside + i, &bytes, 8);
    if (local) _mm256_storeu_ps(local + i, _mm256_blendv_ps(qz, _mm256_sub_ps(qz, v), in));
  }
  fq_scalar<M>(x, sc, zc, qmin, qmax, i, e, out, inside, local);
}

template <RoundingMode M>
void fused_loop(const float* x, const float* s, const float* z, int64_t n, int64_t per_channel, float qmin,
                float qmax, float* out, bool* inside, float* local) {
  static const bool avx2 = __builtin_cpu_supports("avx2");
  const int64_t block = per_channel > 0 ? per_channel : n;  // elements sharing one scale
  at::parallel_for(0, n, 16384, [&](int64_t b, int64_t e) {
    while (b < e) {
      const int64_t c = b / block, end = std::min(e, (c + 1) * block);
      if (avx2) {
        fq_avx2<M>(x, s[c], z[c], qmin, qmax, b, end, out, inside, local);
      } else {
        fq_scalar<M>(x, s[c], z[c], qmin, qmax, b, end, out, inside, local);
      }
      b = end;
    }
  });
}

// Returns {out, inside, local (undefined unless want_local)}.
std::array<torch::Tensor, 3> fused_fake_quant(const torch::Tensor& x, const torch::Tensor& s, const torch::Tensor& z,
                                              const FakeQuantSpec& spec, bool want_local) {
  torch::Tensor out = torch::empty_like(x);
  torch::Tensor inside = torch::empty_like(x, x.options().dtype(torch::kBool));
  torch::Tensor local = want_local ? torch::empty_like(x) : torch::Tensor();
  const int64_t per_channel = spec.axis >= 0 && s.numel() > 1 ? x.numel() / s.numel() : 0;
  // Dense tensors of the same layout share one memory order: element i of the
  // storage in x, out, inside and local is the same logical element.
  auto run = [&](auto loop) {
    loop(x.data_ptr<float>(), s.data_ptr<float>(), z.data_ptr<float>(), x.numel(), per_channel,
         static_cast<float>(spec.qmin), static_cast<float>(spec.qmax), out.data_ptr<float>(), inside.data_ptr<bool>(),
         want_local ? local.data_ptr<float>() : nullptr);
  };
  switch (spec.rounding) {
    case RoundingMode::kHalfUp: run(fused_loop<RoundingMode::kHalfUp>); break;
    case RoundingMode::kHalfAwayFromZero: run(fused_loop<RoundingMode::kHalfAwayFromZero>); break;
    case RoundingMode::kHalfToEven: run(fused_loop<RoundingMode::kHalfToEven>); break;
  }
  return {out, inside, local};
}

// out[i] = g[i] * float(inside[i]) 8 at a time from b; returns where it stopped.
__attribute__((target("avx2"))) int64_t masked_grad_avx2(const float* g, const bool* in, float* out, int64_t b,
                                                         int64_t e) {
  for (; b + 8 <= e; b += 8) {
    const __m128i m = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(in + b));
    const __m256 f = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(m));
    _mm256_storeu_ps(out + b, _mm256_mul_ps(_mm256_loadu_ps(g + b), f));
  }
  return b;
}

// g · inside (the STE gradient): one pass when both are dense in the same
// memory order, else the tensor expression; the same float multiply either way.
torch::Tensor masked_grad(const torch::Tensor& g, const torch::Tensor& inside) {
  if (g.scalar_type() != torch::kFloat || !g.is_non_overlapping_and_dense() || g.strides() != inside.strides() ||
      g.sizes() != inside.sizes()) {
    return g * inside.to(g.scalar_type());
  }
  torch::Tensor dx = torch::empty_like(g);
  const float* gp = g.data_ptr<float>();
  const bool* in = inside.data_ptr<bool>();
  float* out = dx.data_ptr<float>();
  static const bool avx2 = __builtin_cpu_supports("avx2");
  at::parallel_for(0, g.numel(), 16384, [&](int64_t b, int64_t e) {
    if (avx2) b = masked_grad_avx2(gp, in, out, b, e);
    for (int64_t i = b; i < e; ++i) out[i] = gp[i] * static_cast<float>(in[i]);
  });
  return dx;
}

class FakeQuantFn : public torch::autograd::Function<FakeQuantFn> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor x, torch::Tensor scale,
                               torch::Tensor zero_point, int64_t qmin, int64_t qmax, int64_t axis, int64_t rounding,
                               double grad_factor, bool learn_scale) {
    FakeQuantSpec spec{qmin, qmax, static_cast<int>(axis), static_cast<RoundingMode>(rounding)};
    ctx->saved_data["learn"] = learn_scale;
    ctx->saved_data["g"] = grad_factor;
    ctx->saved_data["axis"] = axis;
    ctx->saved_data["scale_shape"] = scale.sizes().vec();
    if (fusable(x, scale, zero_point, spec.axis)) {
      auto [out, inside, local] = fused_fake_quant(x, scale.contiguous(), zero_point.contiguous(), spec, learn_scale);
      ctx->save_for_backward({inside, learn_scale ? local : inside});
      return out;
    }
    const torch::Tensor s = along(scale, x, spec.axis), z = along(zero_point, x, spec.axis);
    Parts p = quantize_parts(x, s, z, spec);
    ctx->save_for_backward(
        {p.inside, learn_scale ? torch::where(p.inside, (p.q - z) - p.v, p.q - z) : p.inside});
    return (p.q - z) * s;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &inside = saved[0], &local = saved[1];
    const torch::Tensor& g = grads[0];
    torch::Tensor dx = masked_grad(g, inside), ds;
    if (ctx->saved_data["learn"].toBool()) {
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
