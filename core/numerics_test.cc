#include "core/numerics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

namespace qeval {
namespace {

// Golden: TensorFlow Lite tensorflow/lite/kernels/internal/quantization_util_test.cc
// (QuantizeMultiplier test cases): QuantizeMultiplier(0.75) -> (1610612736, 0),
// QuantizeMultiplier(0.5) -> (1073741824, 0), QuantizeMultiplier(2.0) -> (1073741824, 2).
TEST(NumericsGolden, TfliteQuantizeMultiplier) {
  int32_t m = 0;
  int shift = 0;
  tflite_quantize_multiplier(0.75, &m, &shift);
  EXPECT_EQ(m, 1610612736);
  EXPECT_EQ(shift, 0);
  tflite_quantize_multiplier(0.5, &m, &shift);
  EXPECT_EQ(m, 1073741824);
  EXPECT_EQ(shift, 0);
  tflite_quantize_multiplier(2.0, &m, &shift);
  EXPECT_EQ(m, 1073741824);
  EXPECT_EQ(shift, 2);
  tflite_quantize_multiplier(0.0, &m, &shift);
  EXPECT_EQ(m, 0);
  EXPECT_EQ(shift, 0);
}

// Golden: the DESIGN.md vector, from TFLite MultiplyByQuantizedMultiplier
// (double rounding, SaturatingRoundingDoublingHighMul + RoundingDivideByPOT):
// x = 7984, M = 1583594044, shift = -9 -> 12; a single rounding of the exact
// product 7984 * 1583594044 / 2^40 = 11.4992... gives 11.
TEST(NumericsGolden, DoubleVersusSingleRounding) {
  EXPECT_EQ(tflite_multiply_by_quantized_multiplier(7984, 1583594044, -9), 12);
  const Multiplier mult{1583594044, 31 + 9};
  EXPECT_EQ(apply_multiplier(7984, mult, RequantScheme::kDoubleRounding, RoundingMode::kHalfUp), 12);
  for (RoundingMode mode :
       {RoundingMode::kHalfUp, RoundingMode::kHalfAwayFromZero, RoundingMode::kHalfToEven}) {
    EXPECT_EQ(apply_multiplier(7984, mult, RequantScheme::kSingleRounding, mode), 11)
        << rounding_mode_name(mode);
  }
}

// Golden: gemmlowp fixedpoint semantics (fixedpoint/fixedpoint.h):
// SRDHM(INT32_MIN, INT32_MIN) saturates to INT32_MAX; RoundingDivideByPOT rounds half away.
TEST(NumericsGolden, GemmlowpPrimitives) {
  const int32_t mn = std::numeric_limits<int32_t>::min();
  EXPECT_EQ(saturating_rounding_doubling_high_mul(mn, mn), std::numeric_limits<int32_t>::max());
  EXPECT_EQ(saturating_rounding_doubling_high_mul(1 << 30, 1 << 30), 1 << 29);
  EXPECT_EQ(rounding_divide_by_pot(5, 1), 3);    // 2.5 -> 3
  EXPECT_EQ(rounding_divide_by_pot(-5, 1), -3);  // -2.5 -> -3
  EXPECT_EQ(rounding_divide_by_pot(-6, 2), -2);  // -1.5 -> -2
  EXPECT_EQ(rounding_divide_by_pot(6, 2), 2);    // 1.5 -> 2
  EXPECT_EQ(rounding_divide_by_pot(5, 2), 1);    // 1.25 -> 1
}

// Golden: ONNX QuantizeLinear spec ("rounding to nearest ties to even") and its
// backend test test_quantizelinear: x = [0, 2, 3, 1000, -254, -1000], scale 2,
// zp 128 -> [128, 129, 130, 255, 1, 0] (3/2 = 1.5 -> 2, -254/2 = -127).
TEST(NumericsGolden, OnnxQuantizeLinearHalfToEven) {
  const float x[] = {0.f, 2.f, 3.f, 1000.f, -254.f, -1000.f};
  const int32_t want[] = {128, 129, 130, 255, 1, 0};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(quantize_value(x[i], 2.0f, 128, 0, 255), want[i]) << i;
  EXPECT_EQ(quantize_value(2.5f, 1.0f, 0, -128, 127), 2);
  EXPECT_EQ(quantize_value(3.5f, 1.0f, 0, -128, 127), 4);
  EXPECT_EQ(quantize_value(-2.5f, 1.0f, 0, -128, 127), -2);
  EXPECT_EQ(quantize_value(-2.5f, 1.0f, 0, -128, 127, RoundingMode::kHalfUp), -2);
  EXPECT_EQ(quantize_value(-2.5f, 1.0f, 0, -128, 127, RoundingMode::kHalfAwayFromZero), -3);
  EXPECT_EQ(quantize_value(2.5f, 1.0f, 0, -128, 127, RoundingMode::kHalfUp), 3);
}

TEST(Numerics, RoundingShiftRightModes) {
  EXPECT_EQ(rounding_shift_right(5, 1, RoundingMode::kHalfUp), 3);
  EXPECT_EQ(rounding_shift_right(-5, 1, RoundingMode::kHalfUp), -2);
  EXPECT_EQ(rounding_shift_right(-5, 1, RoundingMode::kHalfAwayFromZero), -3);
  EXPECT_EQ(rounding_shift_right(5, 1, RoundingMode::kHalfAwayFromZero), 3);
  EXPECT_EQ(rounding_shift_right(5, 1, RoundingMode::kHalfToEven), 2);
  EXPECT_EQ(rounding_shift_right(7, 1, RoundingMode::kHalfToEven), 4);
  EXPECT_EQ(rounding_shift_right(-7, 1, RoundingMode::kHalfToEven), -4);
  EXPECT_EQ(rounding_shift_right(-6, 2, RoundingMode::kHalfUp), -1);  // -1.5 -> -1
  EXPECT_EQ(rounding_shift_right(3, -2, RoundingMode::kHalfUp), 12);
  EXPECT_EQ(rounding_shift_right(INT64_MAX / 2, -4, RoundingMode::kHalfUp), INT64_MAX);
  EXPECT_EQ(rounding_shift_right(123456, 63, RoundingMode::kHalfUp), 0);
}

// Property: each mode agrees with an exact rational rounding on random values.
TEST(Numerics, RoundingShiftRightMatchesLongDouble) {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 20000; ++i) {
    const int64_t v = static_cast<int64_t>(rng() >> 12) - (int64_t{1} << 51);
    const int n = 1 + static_cast<int>(rng() % 40);
    const long double q = static_cast<long double>(v) / std::ldexp(1.0L, n);
    const long double fl = std::floor(q);
    const long double frac = q - fl;
    int64_t half_up = static_cast<int64_t>(fl) + (frac >= 0.5L ? 1 : 0);
    EXPECT_EQ(rounding_shift_right(v, n, RoundingMode::kHalfUp), half_up) << v << " " << n;
    int64_t away = frac == 0.5L ? (q > 0 ? static_cast<int64_t>(fl) + 1 : static_cast<int64_t>(fl))
                                : static_cast<int64_t>(std::llround(q));
    EXPECT_EQ(rounding_shift_right(v, n, RoundingMode::kHalfAwayFromZero), away);
    int64_t even = frac == 0.5L ? ((static_cast<int64_t>(fl) % 2 == 0) ? static_cast<int64_t>(fl)
                                                                       : static_cast<int64_t>(fl) + 1)
                                : static_cast<int64_t>(std::llround(q));
    EXPECT_EQ(rounding_shift_right(v, n, RoundingMode::kHalfToEven), even);
  }
}

// Property: a 32-bit multiplier represents the real scale to a relative error < 2^-30.
TEST(Numerics, DeriveMultiplierRelativeError) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<double> expo(-20.0, 6.0);
  for (int i = 0; i < 20000; ++i) {
    const double real = std::pow(2.0, expo(rng));
    auto m = derive_multiplier(real, 32);
    ASSERT_TRUE(m.is_ok());
    EXPECT_GE(m->m, 1 << 30);
    EXPECT_LT(static_cast<int64_t>(m->m), int64_t{1} << 31);
    EXPECT_LT(std::fabs(m->value() - real) / real, std::ldexp(1.0, -30)) << real;
  }
  auto neg = derive_multiplier(-0.3, 32);
  ASSERT_TRUE(neg.is_ok());
  EXPECT_LT(neg->m, 0);
  EXPECT_NEAR(neg->value(), -0.3, 1e-9);
  // A smaller multiplier keeps fewer bits but the same bound 2^-(bits-1).
  auto m16 = derive_multiplier(0.123456, 16);
  ASSERT_TRUE(m16.is_ok());
  EXPECT_LT(m16->m, 1 << 15);
  EXPECT_LT(std::fabs(m16->value() - 0.123456) / 0.123456, std::ldexp(1.0, -15));
  EXPECT_FALSE(derive_multiplier(std::nan(""), 32).is_ok());
  EXPECT_FALSE(derive_multiplier(1e12, 32, 0, 62).is_ok());  // would need a left shift
}

// Property: saturation at the int32 limits, never wrap-around.
TEST(Numerics, SaturationAtInt32Limits) {
  const int32_t mx = std::numeric_limits<int32_t>::max();
  const int32_t mn = std::numeric_limits<int32_t>::min();
  EXPECT_EQ(saturate_int32(int64_t{mx} + 1), mx);
  EXPECT_EQ(saturate_int32(int64_t{mn} - 1), mn);
  auto big = derive_multiplier(4.0, 32);
  ASSERT_TRUE(big.is_ok());
  EXPECT_EQ(apply_multiplier(mx, *big, RequantScheme::kSingleRounding, RoundingMode::kHalfUp), mx);
  EXPECT_EQ(apply_multiplier(mn, *big, RequantScheme::kSingleRounding, RoundingMode::kHalfUp), mn);
  EXPECT_EQ(apply_multiplier(mx, *big, RequantScheme::kDoubleRounding, RoundingMode::kHalfUp), mx);
  EXPECT_EQ(requantize(mx, *big, 0, -128, 127, RequantScheme::kSingleRounding,
                       RoundingMode::kHalfUp), 127);
  EXPECT_EQ(requantize(mn, *big, 0, -128, 127, RequantScheme::kSingleRounding,
                       RoundingMode::kHalfUp), -128);
  EXPECT_EQ(requantize_float(mx, 1.0f, 3, 0, 255), 255);
  EXPECT_EQ(requantize_float(mn, 1.0f, 3, 0, 255), 0);
}

// Property: requantization is monotone non-decreasing in the accumulator for a
// positive multiplier, under every scheme and mode.
TEST(Numerics, RequantizeMonotone) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> sc(1e-5, 0.9);
  for (int trial = 0; trial < 50; ++trial) {
    auto m = derive_multiplier(sc(rng), 32);
    ASSERT_TRUE(m.is_ok());
    for (RequantScheme s : {RequantScheme::kSingleRounding, RequantScheme::kDoubleRounding,
                            RequantScheme::kFloat}) {
      for (RoundingMode mode : {RoundingMode::kHalfUp, RoundingMode::kHalfAwayFromZero,
                                RoundingMode::kHalfToEven}) {
        int32_t prev = std::numeric_limits<int32_t>::min();
        for (int32_t acc = -300000; acc <= 300000; acc += 997) {
          const int32_t y = requantize(acc, *m, 5, -128, 127, s, mode);
          EXPECT_GE(y, prev);
          prev = y;
        }
      }
    }
  }
}

// Single rounding equals round(acc * real) for exactly representable scales.
TEST(Numerics, SingleRoundingIsExactRounding) {
  const Multiplier quarter{1 << 30, 32};  // 0.25
  EXPECT_EQ(apply_multiplier(10, quarter, RequantScheme::kSingleRounding, RoundingMode::kHalfUp), 3);
  EXPECT_EQ(apply_multiplier(-10, quarter, RequantScheme::kSingleRounding, RoundingMode::kHalfUp), -2);
  EXPECT_EQ(apply_multiplier(-10, quarter, RequantScheme::kSingleRounding,
                             RoundingMode::kHalfAwayFromZero), -3);
  EXPECT_EQ(apply_multiplier(10, quarter, RequantScheme::kSingleRounding,
                             RoundingMode::kHalfToEven), 2);
  EXPECT_EQ(apply_multiplier(14, quarter, RequantScheme::kSingleRounding,
                             RoundingMode::kHalfToEven), 4);
}

TEST(Numerics, DequantizeIsInverseOnGrid) {
  for (int q = -128; q <= 127; ++q) {
    const float x = dequantize_value(q, 0.0371f, -7);
    EXPECT_EQ(quantize_value(x, 0.0371f, -7, -128, 127), q);
  }
}

TEST(Numerics, NamesRoundTrip) {
  for (auto m : {RoundingMode::kHalfUp, RoundingMode::kHalfAwayFromZero, RoundingMode::kHalfToEven}) {
    EXPECT_EQ(*rounding_mode_from_name(rounding_mode_name(m)), m);
  }
  EXPECT_FALSE(rounding_mode_from_name("half_down").is_ok());
  EXPECT_FALSE(requant_scheme_from_name("triple").is_ok());
}

}  // namespace
}  // namespace qeval
