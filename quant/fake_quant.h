// Fake quantization on LibTorch, with the simulator's arithmetic (core/numerics:
// quantize_value / dequantize_value), so a fake-quantized tensor equals
// dequantize(quantize(x)) of the deployed model element for element:
//   v = x / s (float32 true division), q = clamp(round_mode(v) + z, qmin, qmax),
//   x̂ = (q − z) · s.
// Gradients:
//   STE (straight-through): dx̂/dx = 1 where round(v) + z lies in [qmin, qmax], else 0.
//   LSQ (Esser et al., "Learned Step Size Quantization", ICLR 2020): the same
//   for x, and for the scale dx̂/ds = (q − z) − v inside the range, (q − z)
//   where clamped, times the gradient scale g = 1/√(n · qmax), n = elements per
//   scale (the whole tensor, or one channel).
// Per-channel: `scale` and `zero_point` have one entry per channel along `axis`.
// Includes LibTorch: include from quant/ and models/ sources only.
#pragma once

#include <torch/torch.h>

#include "core/numerics.h"

namespace qeval {

struct FakeQuantSpec {
  int64_t qmin = -128, qmax = 127;
  int axis = -1;  // -1: per tensor
  RoundingMode rounding = RoundingMode::kHalfToEven;
};

// round_with_mode_f on a tensor (float32), exactly as core/numerics computes it.
torch::Tensor round_with_mode(const torch::Tensor& v, RoundingMode mode);

// STE fake quant; `scale`/`zero_point` are float tensors ([] or [C]) and get no gradient.
torch::Tensor fake_quant_ste(const torch::Tensor& x, const torch::Tensor& scale, const torch::Tensor& zero_point,
                             const FakeQuantSpec& spec);
// LSQ fake quant: `scale` (requires_grad) learns; `grad_factor` <= 0 uses 1/√(numel·qmax).
torch::Tensor fake_quant_lsq(const torch::Tensor& x, const torch::Tensor& scale, const torch::Tensor& zero_point,
                             const FakeQuantSpec& spec, double grad_factor = 0);

}  // namespace qeval
