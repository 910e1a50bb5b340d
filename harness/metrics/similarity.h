// fp32 vs int8 similarity of one tensor, with tpu-mlir's definitions (its
// npz_tool compare / model_deploy --tolerance "cos,euclid"), so thresholds users
// carry over from tpu-mlir cfgs (int8_sym_tolerance = 0.97,0.80) mean the same:
//   cos     = Σ a·b / (‖a‖ ‖b‖)                    (1 when both are all zero)
//   euclid  = 1 − ‖a − b‖ / (‖(a + b) / 2‖ + 1e-7)
//   sqnr    = 10 log10(Σ (a − ā)² / Σ (n − n̄)²), n = a − b, in dB (+inf when a == b)
// Accumulated in double. Torch-free.
#pragma once

#include <cstddef>

namespace qeval {

struct Similarity {
  double cos = 0, euclid = 0, sqnr = 0;
};

// a: reference (fp32), b: the quantized model's value (dequantized), n elements.
Similarity similarity(const float* a, const float* b, size_t n);

// tpu-mlir's default model_deploy.py --tolerance (python/tools/model_deploy.py).
inline constexpr double kDefaultCosTolerance = 0.8, kDefaultEuclidTolerance = 0.5;

}  // namespace qeval
