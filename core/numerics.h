// core/numerics: the one definition of every integer formula in qeval.
//
// The simulator's kernels, the QAT core's deploy-aligned fake quant and the
// exporters all call these functions; nothing else may re-derive them.
// Conventions: a "multiplier" (m, rshift) represents the real number
// m * 2^-rshift with m a signed integer of `bits` bits; rshift may be negative
// (a left shift) when the real scale is >= 1.
#pragma once

#include <cstdint>
#include <string>

#include "core/status.h"

namespace qeval {

// How the last bit is decided when a value lies exactly half-way.
enum class RoundingMode {
  kHalfUp,             // floor(x + 1/2): -2.5 -> -2, 2.5 -> 3 (tpu-mlir ROUNDING_HALF_UP)
  kHalfAwayFromZero,   // sign(x) * floor(|x| + 1/2): -2.5 -> -3, 2.5 -> 3 (std::round)
  kHalfToEven,         // banker's rounding: 2.5 -> 2, 3.5 -> 4 (ONNX, IEEE nearbyint)
};

// How a requantization multiplies an int32 accumulator by a real scale.
enum class RequantScheme {
  // y = RSR(acc * m, rshift, mode): one rounding of the exact 64-bit product.
  kSingleRounding,
  // gemmlowp/TFLite: RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(acc, m), s):
  // rounds twice (once to the high 32 bits, once in the shift).
  kDoubleRounding,
  // onnxruntime/MLAS: float32(acc) * float32 scale, rounded half to even.
  kFloat,
};

const char* rounding_mode_name(RoundingMode m);
Result<RoundingMode> rounding_mode_from_name(const std::string& s);
const char* requant_scheme_name(RequantScheme s);
Result<RequantScheme> requant_scheme_from_name(const std::string& s);

// Rounds a double to an integer-valued double with the given mode.
double round_with_mode(double x, RoundingMode mode);
// The same for float32, computed in float32 (ONNX QuantizeLinear semantics).
float round_with_mode_f(float x, RoundingMode mode);

// Saturating casts: clamp(v, min(T), max(T)).
int32_t saturate_int32(int64_t v);
int64_t clamp_i64(int64_t v, int64_t lo, int64_t hi);

// Rounding shift right by n bits of a 64-bit value:
//   RSR(v, n, mode) = round(v / 2^n) with ties decided by mode; n <= 0 shifts
//   left by -n (saturating to int64). Exact: no intermediate overflow for
//   |v| < 2^62 and 0 <= n <= 62.
// Example: RSR(5, 1, HALF_UP) = 3, RSR(-5, 1, HALF_UP) = -2,
//          RSR(-5, 1, HALF_AWAY) = -3, RSR(5, 1, HALF_EVEN) = 2.
int64_t rounding_shift_right(int64_t v, int n, RoundingMode mode);

struct Multiplier {
  int32_t m = 0;    // signed fixed-point multiplier, |m| < 2^(bits-1)
  int rshift = 0;   // value = m * 2^-rshift
  double value() const;
};

// derive_multiplier: real = m * 2^-rshift with m in [2^(bits-2), 2^(bits-1)),
// found as  real = q * 2^e (frexp, q in [0.5, 1)),  m = round(q * 2^(bits-1)),
// rshift = (bits - 1) - e; if rounding gives m = 2^(bits-1), halve it.
// Relative error: |m - q*2^(bits-1)| <= 1/2 and q >= 1/2, so
// |m*2^-rshift - real| / real <= 2^-(bits-1) (2^-31 for 32 bits).
// rshift is then brought into [min_rshift, max_rshift]: a too-large shift
// drops low bits of m (real tiny: m may become 0), a too-small one is an error.
// real = 0 gives {0, 0}. Negative real gives a negative m.
Result<Multiplier> derive_multiplier(double real, int bits = 32, int min_rshift = -31,
                                     int max_rshift = 62);

// TFLite QuantizeMultiplier(real) -> (quantized_multiplier, shift) with
// real = quantized_multiplier * 2^(shift - 31): the same derivation as
// derive_multiplier(real, 32), expressed with TFLite's sign convention.
void tflite_quantize_multiplier(double real, int32_t* quantized_multiplier, int* shift);

// gemmlowp SaturatingRoundingDoublingHighMul(a, b) = round_half_away((a*b) / 2^31),
// saturating the single overflow case a = b = INT32_MIN to INT32_MAX.
int32_t saturating_rounding_doubling_high_mul(int32_t a, int32_t b);
// gemmlowp RoundingDivideByPOT(x, e) = x / 2^e rounded half away from zero.
int32_t rounding_divide_by_pot(int32_t x, int e);
// TFLite MultiplyByQuantizedMultiplier(x, m, shift) (shift > 0 = left):
//   RoundingDivideByPOT(SRDHM(x * 2^max(shift,0), m), max(-shift, 0)).
// Golden: x = 7984, m = 1583594044, shift = -9 -> 12.
int32_t tflite_multiply_by_quantized_multiplier(int32_t x, int32_t m, int shift);

// Multiply an accumulator by a multiplier with the given scheme, no zero
// point, no clamp to the output dtype (the result saturates to int32 only):
//   kSingleRounding: RSR(acc * m, rshift, mode)
//   kDoubleRounding: tflite_multiply_by_quantized_multiplier(acc, m, 31 - rshift)
// Golden: acc = 7984, m = 1583594044, rshift = 40:
//   single (any mode) -> 11 (7984 * 1583594044 / 2^40 = 11.4991...),
//   double -> 12 (the high-mul rounds 5887.55 to 5888, then 5888 / 2^9 = 11.5 -> 12).
int32_t apply_multiplier(int32_t acc, Multiplier mult, RequantScheme scheme, RoundingMode mode);

// Full requantization of an int32 accumulator into an output integer:
//   y = clamp(zp + apply_multiplier(acc, mult), qmin, qmax).
int32_t requantize(int32_t acc, Multiplier mult, int32_t zp, int32_t qmin, int32_t qmax,
                   RequantScheme scheme, RoundingMode mode);

// Integer Add of two centred operands (tpu-mlir style, one shared shift r):
//   y = clamp(zc + RSR(a·ma + b·mb, r, mode), qmin, qmax).
int32_t add_requantize(int64_t a, int64_t b, int32_t ma, int32_t mb, int r, int32_t zc, int32_t qmin,
                       int32_t qmax, RoundingMode mode);

// Float requantization as MLAS's MlasRequantizeOutput does it:
//   f = float(acc) * scale (float32 product);
//   f = clamp(f, float(qmin - zp), float(qmax - zp));
//   y = int(nearbyintf(f)) + zp        (round half to even)
int32_t requantize_float(int32_t acc, float scale, int32_t zp, int32_t qmin, int32_t qmax);

// float -> int32 as x86 CVTPS2DQ does with the default MXCSR: round half to
// even; NaN and values outside [-2^31, 2^31) give INT32_MIN (the "integer
// indefinite" value). onnxruntime's QLinearAdd/Mul rely on it.
int32_t float_to_int32_rne(float f);

// Quantize a real value (ONNX QuantizeLinear with mode = HALF_TO_EVEN):
//   q = clamp(round(x / scale) + zp, qmin, qmax), computed in float32 with a
//   true division (as MLAS; not x * (1/scale)). NaN gives qmin (as MLAS).
int32_t quantize_value(float x, float scale, int32_t zp, int32_t qmin, int32_t qmax,
                       RoundingMode mode = RoundingMode::kHalfToEven);
// Dequantize: x = (q - zp) * scale, in float32.
float dequantize_value(int32_t q, float scale, int32_t zp);

}  // namespace qeval
