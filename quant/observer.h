// Observers: collect statistics of a tensor over calibration batches and turn
// them into quantization parameters. Torch-free (they read float spans), so PTQ
// calibration, the QAT core and tests share them. Issue 5 builds on these.
//
// Range → parameters (choose_qparams), for a range [lo, hi] widened to contain 0:
//   symmetric:  scale = max(|lo|, |hi|) / qmax_pos, zero_point = 0, where
//               qmax_pos = 2^(bits−1) − 1 (127 for int8; the range [−128, 127]
//               keeps −128 reachable, narrow_range clamps to [−127, 127])
//   asymmetric: scale = (hi − lo) / (qmax − qmin),
//               zero_point = clamp(qmin − round_half_even(lo / scale), qmin, qmax)
//   power_of_two: scale rounded up to the next 2^k (range never shrinks)
// A zero range (an all-zero tensor) gives scale = 1, zero point as above.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/graph.h"

namespace qeval {

struct QuantSpec {
  int bits = 8;
  bool is_signed = true;
  bool symmetric = true;
  bool narrow_range = false;
  bool power_of_two = false;
  int64_t qmin() const;
  int64_t qmax() const;
  // The integer dtype that holds `bits` (int8/uint8 up to 8 bits, int16/uint16 up to 16).
  Result<DType> dtype() const;
};

struct Range {
  float lo = 0, hi = 0;
};

// Scale and zero point of one range (formula above). Errors: bits outside 2..16,
// unsigned symmetric, non-finite range.
Result<std::pair<float, int32_t>> choose_qparams(Range r, const QuantSpec& spec);
// Per-tensor or per-channel (one range each along `axis`) QuantParams.
Result<QuantParams> make_quant_params(const std::vector<Range>& ranges, const QuantSpec& spec, int axis = -1);

// Min and max of each channel of a tensor of `shape` along `axis` (weights: axis 0).
std::vector<Range> per_channel_ranges(std::span<const float> data, const Shape& shape, int axis);

class Observer {
 public:
  virtual ~Observer() = default;
  // Adds one batch of values (NaN/Inf are an error naming the observer's layer).
  virtual Status observe(std::span<const float> values) = 0;
  // The range to quantize, for `spec` (the MSE observer needs the grid).
  virtual Result<Range> range(const QuantSpec& spec) const = 0;
  virtual std::string kind() const = 0;
  int64_t count() const { return count_; }

 protected:
  int64_t count_ = 0;
};

struct ObserverOptions {
  std::string kind = "minmax";     // minmax | ema_minmax | percentile | mse
  double ema_momentum = 0.9;       // ema: r ← m·r + (1 − m)·batch
  double percentile = 99.99;       // percentile: lo/hi at (100 − p)% and p%
  int64_t sample_limit = 1 << 20;  // percentile, mse: values kept (strided sample)
  std::string layer;               // for error messages
};

// Names the allowed kinds when `kind` is unknown.
Result<std::unique_ptr<Observer>> make_observer(const ObserverOptions& opts);
const std::vector<std::string>& observer_kinds();

}  // namespace qeval
