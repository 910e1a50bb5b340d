#include "core/numerics.h"

#include <cfenv>
#include <cmath>
#include <limits>

namespace qeval {

const char* rounding_mode_name(RoundingMode m) {
  switch (m) {
    case RoundingMode::kHalfUp: return "half_up";
    case RoundingMode::kHalfAwayFromZero: return "half_away_from_zero";
    case RoundingMode::kHalfToEven: return "half_to_even";
  }
  return "?";
}

Result<RoundingMode> rounding_mode_from_name(const std::string& s) {
  for (RoundingMode m :
       {RoundingMode::kHalfUp, RoundingMode::kHalfAwayFromZero, RoundingMode::kHalfToEven}) {
    if (s == rounding_mode_name(m)) return m;
  }
  return invalid_argument("unknown rounding mode '{}' (allowed: half_up, half_away_from_zero, "
                          "half_to_even)", s);
}

const char* requant_scheme_name(RequantScheme s) {
  switch (s) {
    case RequantScheme::kSingleRounding: return "single_rounding";
    case RequantScheme::kDoubleRounding: return "double_rounding";
    case RequantScheme::kFloat: return "float";
  }
  return "?";
}

Result<RequantScheme> requant_scheme_from_name(const std::string& s) {
  for (RequantScheme r : {RequantScheme::kSingleRounding, RequantScheme::kDoubleRounding,
                          RequantScheme::kFloat}) {
    if (s == requant_scheme_name(r)) return r;
  }
  return invalid_argument(
      "unknown requant scheme '{}' (allowed: single_rounding, double_rounding, float)", s);
}

double round_with_mode(double x, RoundingMode mode) {
  switch (mode) {
    case RoundingMode::kHalfUp: return std::floor(x + 0.5);
    case RoundingMode::kHalfAwayFromZero: return std::round(x);
    case RoundingMode::kHalfToEven: {
      // nearbyint honours the current FP rounding mode; qeval never changes it
      // from FE_TONEAREST, which is half-to-even.
      return std::nearbyint(x);
    }
  }
  return x;
}

float round_with_mode_f(float x, RoundingMode mode) {
  switch (mode) {
    case RoundingMode::kHalfUp: {
      // floor(x + 0.5f) is wrong for 0.49999997f (the sum rounds up to 1.0f);
      // decide on the fraction instead.
      float fl = std::floor(x);
      return (x - fl >= 0.5f) ? fl + 1.0f : fl;
    }
    case RoundingMode::kHalfAwayFromZero: return std::round(x);
    case RoundingMode::kHalfToEven: return std::nearbyint(x);
  }
  return x;
}

int32_t saturate_int32(int64_t v) {
  if (v > std::numeric_limits<int32_t>::max()) return std::numeric_limits<int32_t>::max();
  if (v < std::numeric_limits<int32_t>::min()) return std::numeric_limits<int32_t>::min();
  return static_cast<int32_t>(v);
}

int64_t clamp_i64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

int64_t rounding_shift_right(int64_t v, int n, RoundingMode mode) {
  if (n <= 0) {
    // Left shift, saturating.
    int s = -n;
    if (s >= 63) return v == 0 ? 0 : (v > 0 ? INT64_MAX : INT64_MIN);
    int64_t lim = INT64_MAX >> s;
    if (v > lim) return INT64_MAX;
    if (v < -lim) return INT64_MIN;
    return v * (int64_t{1} << s);
  }
  if (n >= 63) {
    // |v| / 2^63 < 1/2 except v = INT64_MIN (exactly -1/2 at n = 63).
    if (n == 63 && v == INT64_MIN) {
      return mode == RoundingMode::kHalfAwayFromZero ? -1 : 0;
    }
    return 0;
  }
  const int64_t half = int64_t{1} << (n - 1);
  const int64_t floor_q = v >> n;                    // arithmetic shift = floor division
  const int64_t rem = v - floor_q * (int64_t{1} << n);  // in [0, 2^n)
  switch (mode) {
    case RoundingMode::kHalfUp:
      return floor_q + (rem >= half ? 1 : 0);
    case RoundingMode::kHalfAwayFromZero:
      if (rem > half) return floor_q + 1;
      if (rem < half) return floor_q;
      return v >= 0 ? floor_q + 1 : floor_q;  // tie: away from zero
    case RoundingMode::kHalfToEven:
      if (rem > half) return floor_q + 1;
      if (rem < half) return floor_q;
      return (floor_q & 1) ? floor_q + 1 : floor_q;
  }
  return floor_q;
}

double Multiplier::value() const { return std::ldexp(static_cast<double>(m), -rshift); }

Result<Multiplier> derive_multiplier(double real, int bits, int min_rshift, int max_rshift) {
  if (!std::isfinite(real)) return invalid_argument("multiplier of a non-finite scale {}", real);
  if (bits < 2 || bits > 32) return invalid_argument("multiplier bits {} outside [2, 32]", bits);
  if (real == 0.0) return Multiplier{0, 0};
  int e = 0;
  const double q = std::frexp(real, &e);  // real = q * 2^e, |q| in [0.5, 1)
  const int frac_bits = bits - 1;
  int64_t m = static_cast<int64_t>(std::round(std::ldexp(q, frac_bits)));
  int rshift = frac_bits - e;
  if (std::llabs(m) == (int64_t{1} << frac_bits)) {  // q rounded up to 1.0
    m /= 2;
    rshift -= 1;
  }
  if (rshift > max_rshift) {
    // The scale is too small for the shifter: drop low bits of m (rounded).
    const int drop = rshift - max_rshift;
    m = rounding_shift_right(m, drop, RoundingMode::kHalfAwayFromZero);
    rshift = max_rshift;
  }
  if (rshift < min_rshift) {
    return invalid_argument("scale {} needs a left shift of {} bits; the profile allows {}", real,
                            -rshift, -min_rshift);
  }
  return Multiplier{static_cast<int32_t>(m), rshift};
}

void tflite_quantize_multiplier(double real, int32_t* quantized_multiplier, int* shift) {
  auto r = derive_multiplier(real, 32, -31, 62);
  if (!r.is_ok() || r->m == 0) {
    *quantized_multiplier = 0;
    *shift = 0;
    return;
  }
  *quantized_multiplier = r->m;
  *shift = 31 - r->rshift;
}

int32_t saturating_rounding_doubling_high_mul(int32_t a, int32_t b) {
  if (a == b && a == std::numeric_limits<int32_t>::min()) {
    return std::numeric_limits<int32_t>::max();
  }
  const int64_t ab = static_cast<int64_t>(a) * static_cast<int64_t>(b);
  const int64_t nudge = ab >= 0 ? (int64_t{1} << 30) : (1 - (int64_t{1} << 30));
  // gemmlowp divides (truncating toward zero) by 2^31 after the nudge.
  return static_cast<int32_t>((ab + nudge) / (int64_t{1} << 31));
}

int32_t rounding_divide_by_pot(int32_t x, int e) {
  if (e <= 0) return x;
  const int32_t mask = static_cast<int32_t>((int64_t{1} << e) - 1);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + ((x < 0) ? 1 : 0);
  return (x >> e) + ((remainder > threshold) ? 1 : 0);
}

int32_t tflite_multiply_by_quantized_multiplier(int32_t x, int32_t m, int shift) {
  const int left_shift = shift > 0 ? shift : 0;
  const int right_shift = shift > 0 ? 0 : -shift;
  const int64_t shifted = static_cast<int64_t>(x) * (int64_t{1} << left_shift);
  if (shifted != static_cast<int32_t>(shifted)) {
    // TFLite leaves x * 2^shift overflowing int32 undefined; qeval finishes the
    // doubling high-mul in 64 bits (round half away from zero) and saturates.
    const __int128 p = static_cast<__int128>(shifted) * m;
    const __int128 half = static_cast<__int128>(1) << 30;
    const __int128 q = (p >= 0 ? p + half : p - half) / (static_cast<__int128>(1) << 31);
    if (q > INT32_MAX) return INT32_MAX;
    if (q < INT32_MIN) return INT32_MIN;
    return static_cast<int32_t>(q);
  }
  return rounding_divide_by_pot(
      saturating_rounding_doubling_high_mul(static_cast<int32_t>(shifted), m), right_shift);
}

int32_t apply_multiplier(int32_t acc, Multiplier mult, RequantScheme scheme, RoundingMode mode) {
  switch (scheme) {
    case RequantScheme::kSingleRounding:
      return saturate_int32(
          rounding_shift_right(static_cast<int64_t>(acc) * mult.m, mult.rshift, mode));
    case RequantScheme::kDoubleRounding: {
      // TFLite's shift convention: real = m * 2^(shift - 31).
      const int shift = 31 - mult.rshift;
      if (shift < -31) {
        // RoundingDivideByPOT takes exponents up to 31; beyond that the result is 0.
        return 0;
      }
      return tflite_multiply_by_quantized_multiplier(acc, mult.m, shift);
    }
    case RequantScheme::kFloat:
      return saturate_int32(static_cast<int64_t>(
          std::nearbyint(static_cast<float>(acc) * static_cast<float>(mult.value()))));
  }
  return 0;
}

int32_t requantize(int32_t acc, Multiplier mult, int32_t zp, int32_t qmin, int32_t qmax,
                   RequantScheme scheme, RoundingMode mode) {
  const int64_t y = static_cast<int64_t>(apply_multiplier(acc, mult, scheme, mode)) + zp;
  return static_cast<int32_t>(clamp_i64(y, qmin, qmax));
}

int32_t requantize_float(int32_t acc, float scale, int32_t zp, int32_t qmin, int32_t qmax) {
  float f = static_cast<float>(acc) * scale;
  const float lo = static_cast<float>(qmin - zp);
  const float hi = static_cast<float>(qmax - zp);
  f = f < lo ? lo : f;
  f = f > hi ? hi : f;
  return static_cast<int32_t>(std::nearbyint(f)) + zp;
}

int32_t quantize_value(float x, float scale, int32_t zp, int32_t qmin, int32_t qmax,
                       RoundingMode mode) {
  float v = x / scale;
  if (std::isnan(v)) return qmin;  // MLAS: MAXPS(NaN, bound) returns the bound
  v = round_with_mode_f(v, mode);
  const double y = static_cast<double>(v) + zp;
  if (y <= qmin) return qmin;
  if (y >= qmax) return qmax;
  return static_cast<int32_t>(y);
}

int32_t float_to_int32_rne(float f) {
  if (!(f >= -2147483648.0f && f < 2147483648.0f)) return INT32_MIN;
  return static_cast<int32_t>(std::nearbyint(f));
}

float dequantize_value(int32_t q, float scale, int32_t zp) {
  return static_cast<float>(static_cast<int64_t>(q) - zp) * scale;
}

}  // namespace qeval

namespace qeval {

int32_t add_requantize(int64_t a, int64_t b, int32_t ma, int32_t mb, int r, int32_t zc, int32_t qmin,
                       int32_t qmax, RoundingMode mode) {
  const int64_t y = zc + rounding_shift_right(a * ma + b * mb, r, mode);
  return static_cast<int32_t>(clamp_i64(y, qmin, qmax));
}

}  // namespace qeval
