// The instruction-set-specific parts of the optimized kernels (opt_kernels.h):
// micro-kernels, the requantization epilogue, the input re-layout and the
// elementwise loops, in portable C++ and for AVX2 (+FMA) and AVX-512 VNNI.
// The build stays generic x86-64: SIMD code lives only in this file's
// functions with a target attribute (its helpers always inlined into them),
// reached through kernels(isa) after a runtime CPU check, so no code that
// generic callers may share carries AVX instructions.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <type_traits>

// GCC 12's AVX-512 intrinsics start from an undefined vector that its own
// -Wmaybe-uninitialized then reports at every use (fixed in later GCC).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "simulator/kernels/opt_kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define QEVAL_X86 1
#define QEVAL_AVX2 __attribute__((target("avx2")))
#define QEVAL_AVX2_INLINE __attribute__((target("avx2"), always_inline)) inline
#define QEVAL_AVX2_FMA_INLINE __attribute__((target("avx2,fma"), always_inline)) inline
#define QEVAL_VNNI __attribute__((target("avx2,fma,avx512f,avx512vl,avx512vnni")))
#endif

namespace qeval::kern::opt {

namespace {

// The int16 halves of a pair word.
inline int32_t lo16(int32_t w) { return static_cast<int16_t>(static_cast<uint16_t>(w)); }
inline int32_t hi16(int32_t w) {
  return static_cast<int16_t>(static_cast<uint16_t>(static_cast<uint32_t>(w) >> 16));
}
inline int32_t pair_product(int32_t x, int32_t w) { return lo16(x) * lo16(w) + hi16(x) * hi16(w); }
inline int32_t make_pair(int32_t lo, int32_t hi) {
  return static_cast<int32_t>(static_cast<uint16_t>(lo) |
                              (static_cast<uint32_t>(static_cast<uint16_t>(hi)) << 16));
}

// OutStage::finish of each sum of channel c, stored as kern::store_i would.
template <typename T>
void store_scalar(const Epilogue& e, int64_t c, const int32_t* acc, int64_t n, T* dst,
                  int64_t stride) {
  const int64_t b = e.bias[c];
  for (int64_t i = 0; i < n; ++i) dst[i * stride] = static_cast<T>(e.st.finish(acc[i] + b, c));
}

void finish_scalar(const Epilogue& e, int64_t c0, int64_t rows, const int32_t* acc,
                   int64_t acc_stride, int64_t n, void* dst, int64_t chan_stride, int64_t stride) {
  dispatch_dtype(e.dtype, [&](auto t) {
    using T = decltype(t);
    for (int64_t r = 0; r < rows; ++r) {
      store_scalar(e, c0 + r, acc + r * acc_stride, n, static_cast<T*>(dst) + r * chan_stride,
                   stride);
    }
  });
}

void gemm_tile_scalar(const int32_t* w, const int32_t* const* x, const int32_t* offs, int64_t nkk,
                      int32_t* acc, int64_t acc_stride) {
  for (int r = 0; r < kRows; ++r) std::fill(acc + r * acc_stride, acc + r * acc_stride + kTile, 0);
  for (int64_t kk = 0; kk < nkk; ++kk, w += kRows) {
    for (int g = 0; g < kGroups; ++g) {
      const int32_t* xp = x[g] + offs[kk];
      for (int r = 0; r < kRows; ++r) {
        int32_t* a = acc + r * acc_stride + g * kLanes;
        for (int l = 0; l < kLanes; ++l) a[l] += pair_product(xp[l], w[r]);
      }
    }
  }
}

void dw_row_scalar(const int32_t* x, const int32_t* offs, const int32_t* w, int64_t ntaps,
                   int64_t n, int32_t* acc) {
  std::memset(acc, 0, sizeof(int32_t) * n);
  for (int64_t t = 0; t < ntaps; ++t) {
    const int32_t* xp = x + offs[t];
    for (int64_t l = 0; l < n; ++l) acc[l] += pair_product(xp[l], w[t]);
  }
}

template <typename T>
void pair_row_typed(const T* a, const T* b, int32_t z, int64_t step, int32_t* dst, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    dst[j] = make_pair(a[j * step] - z, b ? b[j * step] - z : 0);
  }
}

// Calls f(T{}) with T the C++ type of an 8/16-bit dtype.
template <typename F>
void dispatch_small(DType t, F&& f) {
  switch (t) {
    case DType::kInt8:
      f(int8_t{});
      return;
    case DType::kUInt8:
      f(uint8_t{});
      return;
    default:
      f(int16_t{});
      return;
  }
}

void pair_rows_scalar(const void* a, const void* b, DType dtype, int32_t z, int64_t step,
                      int64_t src_stride, int32_t* dst, int64_t dst_stride, int64_t rows,
                      int64_t lead, int64_t count, int64_t trail, const void*) {
  dispatch_small(dtype, [&](auto t) {
    using T = decltype(t);
    const T* pa = static_cast<const T*>(a);
    const T* pb = static_cast<const T*>(b);
    for (int64_t r = 0; r < rows; ++r, dst += dst_stride) {
      std::fill(dst, dst + lead, 0);
      pair_row_typed(pa + r * src_stride, pb ? pb + r * src_stride : nullptr, z, step, dst + lead,
                     count);
      std::fill(dst + lead + count, dst + lead + count + trail, 0);
    }
  });
}

void center_scalar(const void* x, DType dtype, int32_t z, int16_t* dst, int64_t n) {
  dispatch_small(dtype, [&](auto t) {
    using T = decltype(t);
    const T* p = static_cast<const T*>(x);
    for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<int16_t>(p[i] - z);
  });
}

void center_rows_scalar(const void* x, DType dtype, int32_t z, int64_t src_stride, int16_t* dst,
                        int64_t dst_stride, int64_t rows, int64_t n) {
  const int64_t es = static_cast<int64_t>(dtype_size(dtype));
  for (int64_t r = 0; r < rows; ++r) {
    center_scalar(static_cast<const char*>(x) + r * src_stride * es, dtype, z, dst + r * dst_stride,
                  n);
  }
}

void add8_scalar(const AddRequant& add, int64_t, int32_t, const void* a, DType at, const void* b,
                 DType bt, void* y, DType yt, int64_t n) {
  dispatch_small(at, [&](auto ta) {
    dispatch_small(bt, [&](auto tb) {
      dispatch_small(yt, [&](auto ty) {
        const auto* pa = static_cast<const decltype(ta)*>(a);
        const auto* pb = static_cast<const decltype(tb)*>(b);
        auto* py = static_cast<decltype(ty)*>(y);
        for (int64_t i = 0; i < n; ++i) py[i] = static_cast<decltype(ty)>(add.apply(pa[i], pb[i]));
      });
    });
  });
}

void clamp_scalar(const void* x, DType dtype, int32_t lo, int32_t hi, void* y, int64_t n) {
  dispatch_small(dtype, [&](auto t) {
    using T = decltype(t);
    const T* p = static_cast<const T*>(x);
    T* q = static_cast<T*>(y);
    for (int64_t i = 0; i < n; ++i) {
      q[i] = static_cast<T>(std::min<int32_t>(std::max<int32_t>(p[i], lo), hi));
    }
  });
}

// Winograd F(2x2, 3x3): B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],
// A^T = [1 1 1 0; 0 1 -1 -1]. The same formulas as the vector code, per int16
// half of a pair word (the input) or per int32 sum (the output).
void wino_in_scalar(const int32_t* e, const int32_t* o, int64_t rs, int64_t ntx, int32_t* v,
                    int64_t xs) {
  for (int64_t tx = 0; tx < ntx; ++tx) {
    int32_t c[4][4][2];  // [row][column transform][half]
    for (int k = 0; k < 4; ++k) {
      const int32_t w[4] = {e[k * rs + tx], o[k * rs + tx], e[k * rs + tx + 1], o[k * rs + tx + 1]};
      for (int h = 0; h < 2; ++h) {
        auto d = [&](int j) { return h ? hi16(w[j]) : lo16(w[j]); };
        c[k][0][h] = d(0) - d(2);
        c[k][1][h] = d(1) + d(2);
        c[k][2][h] = d(2) - d(1);
        c[k][3][h] = d(1) - d(3);
      }
    }
    for (int j = 0; j < 4; ++j) {
      int32_t r[4][2];
      for (int h = 0; h < 2; ++h) {
        r[0][h] = c[0][j][h] - c[2][j][h];
        r[1][h] = c[1][j][h] + c[2][j][h];
        r[2][h] = c[2][j][h] - c[1][j][h];
        r[3][h] = c[1][j][h] - c[3][j][h];
      }
      for (int i = 0; i < 4; ++i) v[(4 * i + j) * xs + tx] = make_pair(r[i][0], r[i][1]);
    }
  }
}

void wino_out_scalar(const int32_t* m, int64_t xs, int64_t ntx, int32_t* z, int64_t zs) {
  for (int64_t tx = 0; tx < ntx; ++tx) {
    auto M = [&](int i, int j) { return m[(4 * i + j) * xs + tx]; };
    int32_t s[4][2];
    for (int i = 0; i < 4; ++i) {
      s[i][0] = M(i, 0) + M(i, 1) + M(i, 2);
      s[i][1] = M(i, 1) - M(i, 2) - M(i, 3);
    }
    for (int j = 0; j < 2; ++j) {
      // The sums are 4x the convolution's (the weights were transformed by 2G): exact.
      z[2 * tx + j] = (s[0][j] + s[1][j] + s[2][j]) >> 2;
      z[zs + 2 * tx + j] = (s[1][j] - s[2][j] - s[3][j]) >> 2;
    }
  }
}

void wino_in2_scalar(const int32_t* e, const int32_t* o, int64_t rs, int32_t* v, int64_t xs) {
  wino_in_scalar(e, o, rs, 4, v, xs);
  wino_in_scalar(e + 2 * rs, o + 2 * rs, rs, 4, v + 4, xs);
}

void wino_out2_scalar(const int32_t* m, int64_t xs, int32_t* z, int64_t zs) {
  wino_out_scalar(m, xs, 4, z, zs);
  wino_out_scalar(m + 4, xs, 4, z + 2 * zs, zs);
}

void quantize8_scalar(const float* x, float scale, int32_t zp, int32_t qmin, int32_t qmax, void* y,
                      DType yt, int64_t n) {
  dispatch_small(yt, [&](auto t) {
    using T = decltype(t);
    T* q = static_cast<T*>(y);
    for (int64_t i = 0; i < n; ++i) {
      q[i] = static_cast<T>(quantize_value(x[i], scale, zp, qmin, qmax, RoundingMode::kHalfToEven));
    }
  });
}

void wino_gemm_scalar(const int32_t* w, int64_t w_xs, const int32_t* v, int64_t v_xs,
                      int64_t pairs, int64_t ld, int64_t ntiles, int32_t* m, int64_t m_xs) {
  for (int64_t xi = 0; xi < 16; ++xi) {
    for (int r = 0; r < kRows; ++r) {
      int32_t* acc = m + xi * m_xs + r * ld;
      std::fill(acc, acc + ntiles, 0);
      for (int64_t p = 0; p < pairs; ++p) {
        const int32_t wv = w[xi * w_xs + p * kRows + r];
        const int32_t* x = v + xi * v_xs + p * ld;
        for (int64_t t = 0; t < ntiles; ++t) acc[t] += pair_product(x[t], wv);
      }
    }
  }
}

void dw_pairs_scalar(const int16_t* p, int64_t ps, int64_t sh, int64_t dh, int64_t sw,
                     int64_t KH, int64_t P, const int32_t* w, int64_t OH, int64_t ow,
                     int32_t* acc) {
  for (int64_t oh = 0; oh < OH; ++oh, acc += ow) {
    std::fill(acc, acc + ow, 0);
    for (int64_t kh = 0; kh < KH; ++kh) {
      const int16_t* row = p + (oh * sh + kh * dh) * ps;
      for (int64_t q = 0; q < P; ++q) {
        const int32_t wq = w[kh * P + q];
        for (int64_t j = 0; j < ow; ++j) {
          const int16_t* x = row + sw * j + 2 * q;
          acc[j] += x[0] * lo16(wq) + x[1] * hi16(wq);
        }
      }
    }
  }
}

#ifdef QEVAL_X86

// ---- AVX2 ----------------------------------------------------------------

// Narrows 8 int32 lanes (already in T's range) and stores `count` of them
// `stride` elements apart.
template <typename T>
QEVAL_AVX2_INLINE void store8(__m256i q, T* dst, int64_t count, int64_t stride) {
  if (stride == 1 && count == kLanes) {
    const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    if constexpr (std::is_same_v<T, int8_t>) {
      const __m128i p = _mm_packs_epi32(lo, hi);
      _mm_storel_epi64(reinterpret_cast<__m128i*>(dst), _mm_packs_epi16(p, p));
    } else if constexpr (std::is_same_v<T, uint8_t>) {
      const __m128i p = _mm_packs_epi32(lo, hi);
      _mm_storel_epi64(reinterpret_cast<__m128i*>(dst), _mm_packus_epi16(p, p));
    } else if constexpr (std::is_same_v<T, int16_t>) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), _mm_packs_epi32(lo, hi));
    } else {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), q);
    }
    return;
  }
  alignas(32) int32_t t[kLanes];
  _mm256_store_si256(reinterpret_cast<__m256i*>(t), q);
  for (int64_t i = 0; i < count; ++i) dst[i * stride] = static_cast<T>(t[i]);
}

// Raw int32 output: the sum itself.
struct ReqRaw {
  QEVAL_AVX2_INLINE __m256i operator()(__m256i a) const { return a; }
};

// requantize_float: f = float(acc) * scale, clamped to [qmin - zp, qmax - zp],
// rounded half to even, + zp. The clamp bounds are integers and rounding is
// monotone, so clamping before or after the rounding is the same. vcvtps2dq
// rounds as the reference's nearbyint does (the MXCSR mode, half to even by
// default): no separate round instruction. f is never NaN (finite scale,
// Epilogue::prepare).
struct ReqFloat {
  __m256 s, lo, hi;
  __m256i zp;
  // pack16 (8-bit and 16-bit outputs whose lo, hi and zp fit int16): the clamp
  // to hi in float (above it vcvtps2dq would overflow to INT32_MIN), then
  // vpackssdw, which sends that INT32_MIN (f below -2^31) to -32768, and the
  // clamp to lo and + zp in int16 lanes, 16 at a time.
  __m256i lo16, zp16;
  QEVAL_AVX2_INLINE __m256i operator()(__m256i a) const {
    __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(a), s);
    f = _mm256_min_ps(_mm256_max_ps(f, lo), hi);
    return _mm256_add_epi32(_mm256_cvtps_epi32(f), zp);
  }
  QEVAL_AVX2_INLINE __m256i pack16(__m256i a0, __m256i a1) const {
    const __m256i q0 = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(a0), s), hi));
    const __m256i q1 = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(a1), s), hi));
    return _mm256_add_epi16(_mm256_max_epi16(_mm256_packs_epi32(q0, q1), lo16), zp16);
  }
};

// The low 32 bits of floor((v + bias + t) / 2^n) in each 64-bit lane, which is
// RSR(v, n, M) (rounding_shift_right's rule on the remainder) when bias holds
// 2^(n-1) (half up, half away from zero: t = -[v < 0]) or 2^(n-1) - 1 (half to
// even: t = bit n of v). AVX2 has no 64-bit arithmetic shift: callers add 2^62
// to bias too, making the sum non-negative for a logical shift, and take the
// quotient's excess 2^(62-n) off afterwards.
template <RoundingMode M>
QEVAL_AVX2_INLINE __m256i rsr_low32(__m256i v, __m256i bias, __m128i n) {
  __m256i t = _mm256_add_epi64(v, bias);
  if constexpr (M == RoundingMode::kHalfAwayFromZero) {
    t = _mm256_add_epi64(t, _mm256_cmpgt_epi64(_mm256_setzero_si256(), v));
  } else if constexpr (M == RoundingMode::kHalfToEven) {
    t = _mm256_add_epi64(t, _mm256_and_si256(_mm256_srl_epi64(v, n), _mm256_set1_epi64x(1)));
  }
  return _mm256_srl_epi64(t, n);
}

// 8 int32 lanes from the low 32 bits of two vectors of 4 int64: even and odd lanes.
QEVAL_AVX2_INLINE __m256i interleave_low32(__m256i even, __m256i odd) {
  return _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
}

// Single rounding: RSR(acc * m, n, mode) on the exact 64-bit product
// (|acc * m| <= 2^62). For 8/16-bit outputs, saturating to int32, adding zp and
// clamping to [qmin, qmax] is clamping to [lo, hi] = [qmin - zp, qmax - zp] and
// adding zp. The accumulator is first clamped to [acc_lo, acc_hi]
// (ChannelRequant), which changes no output and bounds the quotient to int32,
// so that its low 32 bits are all of it; off is 2^(62-n) mod 2^32.
template <RoundingMode M>
struct ReqSingle {
  __m256i m, bias, acc_lo, acc_hi, off, lo, hi, zp;
  __m128i n;
  QEVAL_AVX2_INLINE __m256i operator()(__m256i a) const {
    a = _mm256_min_epi32(_mm256_max_epi32(a, acc_lo), acc_hi);
    const __m256i even = rsr_low32<M>(_mm256_mul_epi32(a, m), bias, n);
    const __m256i odd = rsr_low32<M>(_mm256_mul_epi32(_mm256_srli_epi64(a, 32), m), bias, n);
    const __m256i q = _mm256_sub_epi32(interleave_low32(even, odd), off);
    return _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(q, lo), hi), zp);
  }
};

// Double rounding (TFLite) with rshift in [31, 62], m != INT32_MIN: no left
// shift, so y = RoundingDivideByPOT(SRDHM(acc, m), rshift - 31). SRDHM is
// floor((acc * m + 2^30) / 2^31) (gemmlowp's nudge and truncating division
// round ties up), which fits int32: its low 32 bits are bits 31..62 of the sum.
// RoundingDivideByPOT is gemmlowp's mask/threshold formula, lane by lane.
struct ReqDouble {
  __m256i m, nudge, mask, threshold, lo, hi, zp;
  __m128i e;
  QEVAL_AVX2_INLINE __m256i operator()(__m256i a) const {
    const __m256i even = _mm256_srli_epi64(_mm256_add_epi64(_mm256_mul_epi32(a, m), nudge), 31);
    const __m256i odd = _mm256_srli_epi64(
        _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(a, 32), m), nudge), 31);
    __m256i y = interleave_low32(even, odd);
    const __m256i rem = _mm256_and_si256(y, mask);
    const __m256i thr = _mm256_sub_epi32(threshold, _mm256_cmpgt_epi32(_mm256_setzero_si256(), y));
    y = _mm256_sub_epi32(_mm256_sra_epi32(y, e), _mm256_cmpgt_epi32(rem, thr));
    y = _mm256_min_epi32(_mm256_max_epi32(y, lo), hi);
    return _mm256_add_epi32(y, zp);
  }
};

// 16 outputs of two vectors of sums as int16 lanes in vpackssdw order (per
// 128-bit half: 4 of a0, then 4 of a1): the requantization's own pack16 where
// it has one, else its int32 results (already in the output's range) packed.
template <typename R>
QEVAL_AVX2_INLINE __m256i pack16(const R& req, __m256i a0, __m256i a1) {
  if constexpr (requires { req.pack16(a0, a1); }) {
    return req.pack16(a0, a1);
  } else {
    return _mm256_packs_epi32(req(a0), req(a1));
  }
}

QEVAL_AVX2_INLINE __m256i load_biased(const int32_t* acc, __m256i b) {
  return _mm256_add_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc)), b);
}

// fast16: the outputs are 8/16-bit with lo, hi and zp in int16 (pack16 applies).
template <typename T, typename R>
QEVAL_AVX2_INLINE void finish_run(const R& req, int32_t bias, const int32_t* acc, int64_t n, T* dst,
                                  int64_t stride, bool fast16) {
  const __m256i b = _mm256_set1_epi32(bias);
  int64_t i = 0;
  if constexpr (sizeof(T) <= 2) {
    if (stride == 1 && fast16) {
      if constexpr (sizeof(T) == 1) {
        // 32 outputs: two vpackssdw, one vpack[u]swb, then the dwords back in order.
        const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        for (; i + 4 * kLanes <= n; i += 4 * kLanes) {
          const __m256i p0 = pack16(req, load_biased(acc + i, b), load_biased(acc + i + kLanes, b));
          const __m256i p1 = pack16(req, load_biased(acc + i + 2 * kLanes, b), load_biased(acc + i + 3 * kLanes, b));
          const __m256i q = std::is_same_v<T, int8_t> ? _mm256_packs_epi16(p0, p1)
                                                      : _mm256_packus_epi16(p0, p1);
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i),
                              _mm256_permutevar8x32_epi32(q, order));
        }
      } else {
        for (; i + 2 * kLanes <= n; i += 2 * kLanes) {
          const __m256i p = pack16(req, load_biased(acc + i, b), load_biased(acc + i + kLanes, b));
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i),
                              _mm256_permute4x64_epi64(p, 0xD8));
        }
      }
    }
  }
  for (dst += i * stride; i < n; i += kLanes, dst += kLanes * stride) {
    store8(req(load_biased(acc + i, b)), dst, n - i < kLanes ? n - i : kLanes, stride);
  }
}

// The requantization form of an epilogue, a template argument of the row loop.
enum class Form { kRaw, kFloat, kHalfUp, kHalfAway, kHalfEven, kDouble };

template <Form F, typename T>
QEVAL_AVX2_INLINE void finish_rows(const Epilogue& e, int64_t c0, int64_t rows, const int32_t* acc,
                                   int64_t acc_stride, int64_t n, T* dst, int64_t chan_stride,
                                   int64_t stride) {
  const int32_t zp = e.st.y.z(), lo = e.st.y.qmin - zp, hi = e.st.y.qmax - zp;
  const __m256i vzp = _mm256_set1_epi32(zp), vlo = _mm256_set1_epi32(lo),
                vhi = _mm256_set1_epi32(hi);
  auto in16 = [](int64_t v) { return v >= INT16_MIN && v <= INT16_MAX; };
  const bool fast16 = sizeof(T) <= 2 && in16(lo) && in16(hi) && in16(zp);
  for (int64_t r = 0; r < rows; ++r, acc += acc_stride, dst += chan_stride) {
    const int64_t c = c0 + r;
    if (!e.vec[c]) {
      store_scalar(e, c, acc, n, dst, stride);
      continue;
    }
    const ChannelRequant& cr = e.ch[c];
    const int32_t bias = static_cast<int32_t>(e.bias[c]);
    if constexpr (F == Form::kRaw) {
      finish_run(ReqRaw{}, bias, acc, n, dst, stride, fast16);
    } else if constexpr (F == Form::kFloat) {
      const ReqFloat req{_mm256_set1_ps(cr.fscale), _mm256_set1_ps(static_cast<float>(lo)),
                         _mm256_set1_ps(static_cast<float>(hi)), vzp,
                         _mm256_set1_epi16(static_cast<int16_t>(fast16 ? lo : 0)),
                         _mm256_set1_epi16(static_cast<int16_t>(fast16 ? zp : 0))};
      finish_run(req, bias, acc, n, dst, stride, fast16);
    } else if constexpr (F == Form::kDouble) {
      const ReqDouble req{_mm256_set1_epi64x(cr.m),
                          _mm256_set1_epi64x(int64_t{1} << 30),
                          _mm256_set1_epi32(cr.mask),
                          _mm256_set1_epi32(cr.mask >> 1),
                          vlo,
                          vhi,
                          vzp,
                          _mm_cvtsi32_si128(cr.shift - 31)};
      finish_run(req, bias, acc, n, dst, stride, fast16);
    } else {
      constexpr RoundingMode M = F == Form::kHalfUp     ? RoundingMode::kHalfUp
                                 : F == Form::kHalfAway ? RoundingMode::kHalfAwayFromZero
                                                        : RoundingMode::kHalfToEven;
      const ReqSingle<M> req{_mm256_set1_epi64x(cr.m),
                             _mm256_set1_epi64x(cr.round),
                             _mm256_set1_epi32(cr.acc_lo),
                             _mm256_set1_epi32(cr.acc_hi),
                             _mm256_set1_epi32(cr.off),
                             vlo,
                             vhi,
                             vzp,
                             _mm_cvtsi32_si128(cr.shift)};
      finish_run(req, bias, acc, n, dst, stride, fast16);
    }
  }
}

template <typename T>
QEVAL_AVX2_INLINE void finish_form(const Epilogue& e, int64_t c0, int64_t rows, const int32_t* acc,
                                   int64_t acc_stride, int64_t n, T* dst, int64_t chan_stride,
                                   int64_t stride) {
  if (e.st.raw) {
    finish_rows<Form::kRaw>(e, c0, rows, acc, acc_stride, n, dst, chan_stride, stride);
    return;
  }
  switch (e.st.rq.scheme) {
    case RequantScheme::kFloat:
      finish_rows<Form::kFloat>(e, c0, rows, acc, acc_stride, n, dst, chan_stride, stride);
      return;
    case RequantScheme::kDoubleRounding:
      finish_rows<Form::kDouble>(e, c0, rows, acc, acc_stride, n, dst, chan_stride, stride);
      return;
    case RequantScheme::kSingleRounding:
      switch (e.st.rq.mode) {
        case RoundingMode::kHalfUp:
          finish_rows<Form::kHalfUp>(e, c0, rows, acc, acc_stride, n, dst, chan_stride, stride);
          return;
        case RoundingMode::kHalfAwayFromZero:
          finish_rows<Form::kHalfAway>(e, c0, rows, acc, acc_stride, n, dst, chan_stride, stride);
          return;
        case RoundingMode::kHalfToEven:
          finish_rows<Form::kHalfEven>(e, c0, rows, acc, acc_stride, n, dst, chan_stride, stride);
          return;
      }
  }
}

QEVAL_AVX2 void finish_avx2(const Epilogue& e, int64_t c0, int64_t rows, const int32_t* acc,
                            int64_t acc_stride, int64_t n, void* dst, int64_t chan_stride,
                            int64_t stride) {
  switch (e.dtype) {
    case DType::kInt8:
      finish_form(e, c0, rows, acc, acc_stride, n, static_cast<int8_t*>(dst), chan_stride, stride);
      return;
    case DType::kUInt8:
      finish_form(e, c0, rows, acc, acc_stride, n, static_cast<uint8_t*>(dst), chan_stride, stride);
      return;
    case DType::kInt16:
      finish_form(e, c0, rows, acc, acc_stride, n, static_cast<int16_t*>(dst), chan_stride, stride);
      return;
    case DType::kInt32:
      finish_form(e, c0, rows, acc, acc_stride, n, static_cast<int32_t*>(dst), chan_stride, stride);
      return;
    default:  // Epilogue::prepare leaves vector code to 8/16/32-bit integer outputs
      finish_scalar(e, c0, rows, acc, acc_stride, n, dst, chan_stride, stride);
      return;
  }
}

// The micro-kernel: 4 rows x 2 groups of 8 lanes in 8 accumulators; per pair
// of input channels 2 loads of 8 pair words and 4 broadcast weight pairs.
// MAC(c, a, b) adds the pair products of a and b to c.
#define QEVAL_GEMM_TILE_BODY(MAC)                                                                  \
  __m256i c[kRows][kGroups];                                                                       \
  _Pragma("GCC unroll 8") for (int r = 0; r < kRows; ++r)                                          \
      _Pragma("GCC unroll 8") for (int g = 0; g < kGroups; ++g) c[r][g] = _mm256_setzero_si256();  \
  _Pragma("GCC unroll 2") for (int64_t kk = 0; kk < nkk; ++kk, w += kRows) {                       \
    const int64_t o = offs[kk];                                                                    \
    __m256i a[kGroups];                                                                            \
    _Pragma("GCC unroll 8") for (int g = 0; g < kGroups; ++g) {                                    \
      a[g] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[g] + o));                       \
    }                                                                                              \
    _Pragma("GCC unroll 8") for (int r = 0; r < kRows; ++r) {                                      \
      const __m256i b = _mm256_set1_epi32(w[r]);                                                   \
      _Pragma("GCC unroll 8") for (int g = 0; g < kGroups; ++g) c[r][g] = MAC(c[r][g], a[g], b);   \
    }                                                                                              \
  }                                                                                                \
  _Pragma("GCC unroll 8") for (int r = 0; r < kRows; ++r)                                          \
      _Pragma("GCC unroll 8") for (int g = 0; g < kGroups; ++g) {                                  \
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + r * acc_stride + g * kLanes), c[r][g]);   \
  }

#define QEVAL_MADD_AVX2(c, a, b) _mm256_add_epi32(c, _mm256_madd_epi16(a, b))
QEVAL_AVX2 void gemm_tile_avx2(const int32_t* w, const int32_t* const* x, const int32_t* offs,
                               int64_t nkk, int32_t* acc, int64_t acc_stride) {
  QEVAL_GEMM_TILE_BODY(QEVAL_MADD_AVX2);
}

QEVAL_AVX2 void dw_row_avx2(const int32_t* x, const int32_t* offs, const int32_t* w, int64_t ntaps,
                            int64_t n, int32_t* acc) {
  int64_t l = 0;
  for (; l + 2 * kLanes <= n; l += 2 * kLanes) {
    __m256i c0 = _mm256_setzero_si256(), c1 = c0;
    for (int64_t t = 0; t < ntaps; ++t) {
      const int32_t* xp = x + offs[t] + l;
      const __m256i b = _mm256_set1_epi32(w[t]);
      c0 = QEVAL_MADD_AVX2(c0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xp)), b);
      c1 =
          QEVAL_MADD_AVX2(c1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xp + kLanes)), b);
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + l), c0);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + l + kLanes), c1);
  }
  for (; l < n; l += kLanes) {
    __m256i c0 = _mm256_setzero_si256();
    for (int64_t t = 0; t < ntaps; ++t) {
      c0 =
          QEVAL_MADD_AVX2(c0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + offs[t] + l)),
                          _mm256_set1_epi32(w[t]));
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + l), c0);
  }
}

// dw_pairs: 8 int16 pairs at p are 16 consecutive elements, one 256-bit load.
// Stride 2: output j's tap pair q is the pair at 2j + 2q, so one load and one
// vpmaddwd give 8 consecutive outputs. Stride 1: the pairs at j + 2q feed the
// even outputs j0, j0 + 2, ... and those at j + 1 + 2q the odd ones; the two
// vectors are interleaved into 16 consecutive outputs.
template <bool fixed>
QEVAL_AVX2_INLINE __m256i dw_weight(const __m256i* wv, const int32_t* w, int64_t t) {
  if constexpr (fixed) {
    return wv[t];
  } else {
    return _mm256_set1_epi32(w[t]);
  }
}

template <int KHc, int Pc>
QEVAL_AVX2_INLINE void dw_pairs_t(const int16_t* p, int64_t ps, int64_t sh, int64_t dh, int64_t sw,
                                  int64_t KH, int64_t P, const int32_t* w, int64_t OH, int64_t ow,
                                  int32_t* acc) {
  constexpr bool fixed = KHc > 0;
  if constexpr (fixed) KH = KHc, P = Pc;
  __m256i wv[fixed ? KHc * Pc : 1];
  if constexpr (fixed) {
    for (int t = 0; t < KHc * Pc; ++t) wv[t] = _mm256_set1_epi32(w[t]);
  }
  for (int64_t oh = 0; oh < OH; ++oh, acc += ow) {
    const int16_t* r0 = p + oh * sh * ps;
    if (sw == 2) {
      for (int64_t j = 0; j < ow; j += kLanes) {
        __m256i c = _mm256_setzero_si256();
        for (int64_t kh = 0; kh < KH; ++kh) {
          const int16_t* x = r0 + kh * dh * ps + 2 * j;
          for (int64_t q = 0; q < P; ++q) {
            c = _mm256_add_epi32(
                c, _mm256_madd_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 2 * q)),
                                     dw_weight<fixed>(wv, w, kh * P + q)));
          }
        }
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + j), c);
      }
    } else {
      for (int64_t j = 0; j < ow; j += 2 * kLanes) {
        __m256i e = _mm256_setzero_si256(), o = e;
        for (int64_t kh = 0; kh < KH; ++kh) {
          const int16_t* x = r0 + kh * dh * ps + j;
          for (int64_t q = 0; q < P; ++q) {
            const __m256i b = dw_weight<fixed>(wv, w, kh * P + q);
            e = _mm256_add_epi32(
                e, _mm256_madd_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 2 * q)), b));
            o = _mm256_add_epi32(
                o, _mm256_madd_epi16(
                       _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 2 * q + 1)), b));
          }
        }
        const __m256i lo = _mm256_unpacklo_epi32(e, o), hi = _mm256_unpackhi_epi32(e, o);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + j),
                            _mm256_permute2x128_si256(lo, hi, 0x20));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + j + kLanes),
                            _mm256_permute2x128_si256(lo, hi, 0x31));
      }
    }
  }
}

QEVAL_AVX2 void dw_pairs_avx2(const int16_t* p, int64_t ps, int64_t sh, int64_t dh, int64_t sw,
                              int64_t KH, int64_t P, const int32_t* w, int64_t OH, int64_t ow,
                              int32_t* acc) {
  if (KH == 3 && P == 2) {
    dw_pairs_t<3, 2>(p, ps, sh, dh, sw, KH, P, w, OH, ow, acc);
  } else {
    dw_pairs_t<0, 0>(p, ps, sh, dh, sw, KH, P, w, OH, ow, acc);
  }
}

// W (16 or 8) elements p[0], p[step], ... as int16 lanes: step 1, or 2 for
// 8-bit T (reading p[0 .. 2W - 1]).
template <typename T>
QEVAL_AVX2_INLINE __m256i load16(const T* p, int64_t step) {
  if constexpr (std::is_same_v<T, int16_t>) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  } else {
    __m128i v;
    if (step == 1) {
      v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    } else {
      // Even bytes of each 128-bit half to its low 8 bytes, then the two low quarters together.
      const __m256i even =
          _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, -1, -1, -1, -1, -1, -1, -1, -1, 0, 2, 4, 6, 8,
                           10, 12, 14, -1, -1, -1, -1, -1, -1, -1, -1);
      const __m256i b =
          _mm256_shuffle_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)), even);
      v = _mm256_castsi256_si128(_mm256_permute4x64_epi64(b, 0x08));
    }
    if constexpr (std::is_same_v<T, int8_t>) return _mm256_cvtepi8_epi16(v);
    return _mm256_cvtepu8_epi16(v);
  }
}
template <typename T>
QEVAL_AVX2_INLINE __m128i load8(const T* p, int64_t step) {
  if constexpr (std::is_same_v<T, int16_t>) {
    return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  } else {
    __m128i v;
    if (step == 1) {
      v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
    } else {
      const __m128i even = _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, -1, -1, -1, -1, -1, -1, -1, -1);
      v = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)), even);
    }
    if constexpr (std::is_same_v<T, int8_t>) return _mm_cvtepi8_epi16(v);
    return _mm_cvtepu8_epi16(v);
  }
}

// 4 elements p[0], p[step], ... as int16 lanes (the low 64 bits): step 1, or
// 2 for 8-bit T (reading p[0 .. 7]).
template <typename T>
QEVAL_AVX2_INLINE __m128i load4(const T* p, int64_t step) {
  if constexpr (std::is_same_v<T, int16_t>) {
    return _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  } else {
    __m128i v;
    if (step == 1) {
      int32_t w;
      std::memcpy(&w, p, 4);
      v = _mm_cvtsi32_si128(w);
    } else {
      const __m128i even = _mm_setr_epi8(0, 2, 4, 6, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
      v = _mm_shuffle_epi8(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)), even);
    }
    if constexpr (std::is_same_v<T, int8_t>) return _mm_cvtepi8_epi16(v);
    return _mm_cvtepu8_epi16(v);
  }
}
template <typename T>
QEVAL_AVX2_INLINE void pair4(const T* a, const T* b, __m128i zv, int64_t step, int32_t* dst) {
  const __m128i va = _mm_sub_epi16(load4(a, step), zv);
  const __m128i vb = b ? _mm_sub_epi16(load4(b, step), zv) : _mm_setzero_si128();
  _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), _mm_unpacklo_epi16(va, vb));
}

// 16 / 8 pair words from a[j * step] and b[j * step], j < 16 / 8.
template <typename T>
QEVAL_AVX2_INLINE void pair16(const T* a, const T* b, __m256i zv, int64_t step, int32_t* dst) {
  const __m256i va = _mm256_sub_epi16(load16(a, step), zv);
  const __m256i vb = b ? _mm256_sub_epi16(load16(b, step), zv) : _mm256_setzero_si256();
  // unpack works within 128-bit halves: lo = pairs 0-3 | 8-11, hi = 4-7 | 12-15.
  const __m256i lo = _mm256_unpacklo_epi16(va, vb), hi = _mm256_unpackhi_epi16(va, vb);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), _mm256_permute2x128_si256(lo, hi, 0x20));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 8), _mm256_permute2x128_si256(lo, hi, 0x31));
}
template <typename T>
QEVAL_AVX2_INLINE void pair8(const T* a, const T* b, __m128i zv, int64_t step, int32_t* dst) {
  const __m128i va = _mm_sub_epi16(load8(a, step), zv);
  const __m128i vb = b ? _mm_sub_epi16(load8(b, step), zv) : _mm_setzero_si128();
  _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), _mm_unpacklo_epi16(va, vb));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 4), _mm_unpackhi_epi16(va, vb));
}

// pair_row of one row in vectors of 16, 8 or 4 words, the last one shifted back
// to end with the row (rewriting some words with the same values); scalar below 4
// words. A vector of W words at step 2 reads 2W source elements, one past the
// last it uses: it runs only where that stays below `end`, the end of the
// source tensor.
template <typename T>
QEVAL_AVX2_INLINE void pair_row_t(const T* a, const T* b, int32_t z, int64_t step, int32_t* dst,
                                  int64_t n, const T* end) {
  const T* far = b ? b : a;  // the source further on
  const int64_t w = n >= 16 ? 16 : 8;
  if ((step != 1 && (step != 2 || std::is_same_v<T, int16_t>)) || n < 4 || far + n * step > end) {
    pair_row_typed(a, b, z, step, dst, n);
    return;
  }
  const __m256i zv = _mm256_set1_epi16(static_cast<int16_t>(z));
  if (n < 8) {  // 4 to 7 words: two vectors of 4, the second ending with the row
    pair4(a, b, _mm256_castsi256_si128(zv), step, dst);
    pair4(a + (n - 4) * step, b ? b + (n - 4) * step : nullptr, _mm256_castsi256_si128(zv), step,
          dst + n - 4);
    return;
  }
  for (int64_t j = 0; j < n; j += w) {
    const int64_t k = std::min(j, n - w);
    if (w == 16) {
      pair16(a + k * step, b ? b + k * step : nullptr, zv, step, dst + k);
    } else {
      pair8(a + k * step, b ? b + k * step : nullptr, _mm256_castsi256_si128(zv), step, dst + k);
    }
  }
}

// Zeroes words [0, lead) and [width - trail, width) of a row before its data
// is written, in whole vectors that may cover data words too (width >= 8;
// masked stores are slow on AMD cores).
QEVAL_AVX2_INLINE void zero_edges(int32_t* row, int64_t width, int64_t lead, int64_t trail) {
  const __m256i zero = _mm256_setzero_si256();
  for (int64_t i = 0; i < lead; i += kLanes) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(row + std::min(i, width - kLanes)), zero);
  }
  for (int64_t i = width - trail; i < width; i += kLanes) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(row + std::min(i, width - kLanes)), zero);
  }
}

template <typename T>
QEVAL_AVX2_INLINE void pair_rows_t(const T* a, const T* b, int32_t z, int64_t step,
                                   int64_t src_stride, int32_t* dst, int64_t dst_stride,
                                   int64_t rows, int64_t lead, int64_t count, int64_t trail,
                                   const void* end) {
  const int64_t width = lead + count + trail;
  for (int64_t r = 0; r < rows; ++r, a += src_stride, dst += dst_stride) {
    if (width >= kLanes) {
      zero_edges(dst, width, lead, trail);
    } else {
      std::fill(dst, dst + lead, 0);
      std::fill(dst + lead + count, dst + width, 0);
    }
    pair_row_t(a, b ? b + r * src_stride : nullptr, z, step, dst + lead, count,
               static_cast<const T*>(end));
  }
}

QEVAL_AVX2 void pair_rows_avx2(const void* a, const void* b, DType dtype, int32_t z, int64_t step,
                               int64_t src_stride, int32_t* dst, int64_t dst_stride, int64_t rows,
                               int64_t lead, int64_t count, int64_t trail, const void* end) {
  switch (dtype) {
    case DType::kInt8:
      pair_rows_t(static_cast<const int8_t*>(a), static_cast<const int8_t*>(b), z, step, src_stride,
                  dst, dst_stride, rows, lead, count, trail, end);
      return;
    case DType::kUInt8:
      pair_rows_t(static_cast<const uint8_t*>(a), static_cast<const uint8_t*>(b), z, step,
                  src_stride, dst, dst_stride, rows, lead, count, trail, end);
      return;
    default:
      pair_rows_t(static_cast<const int16_t*>(a), static_cast<const int16_t*>(b), z, step,
                  src_stride, dst, dst_stride, rows, lead, count, trail, end);
      return;
  }
}

QEVAL_AVX2 void center_avx2(const void* x, DType dtype, int32_t z, int16_t* dst, int64_t n) {
  const __m256i zv = _mm256_set1_epi16(static_cast<int16_t>(z));
  int64_t i = 0;
  switch (dtype) {
    case DType::kInt8:
      for (; i + 16 <= n; i += 16) {
        const __m256i v = load16(static_cast<const int8_t*>(x) + i, 1);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), _mm256_sub_epi16(v, zv));
      }
      break;
    case DType::kUInt8:
      for (; i + 16 <= n; i += 16) {
        const __m256i v = load16(static_cast<const uint8_t*>(x) + i, 1);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), _mm256_sub_epi16(v, zv));
      }
      break;
    default:
      for (; i + 16 <= n; i += 16) {
        const __m256i v = load16(static_cast<const int16_t*>(x) + i, 1);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), _mm256_sub_epi16(v, zv));
      }
      break;
  }
  center_scalar(static_cast<const char*>(x) + i * static_cast<int64_t>(dtype_size(dtype)), dtype, z,
                dst + i, n - i);
}

// Rows of at least 4 elements in vectors of 16, 8 or 4, the last one shifted
// back to end with the row (rewriting some elements with the same values);
// shorter rows scalar.
template <typename T>
QEVAL_AVX2_INLINE void center_rows_t(const T* x, int32_t z, int64_t src_stride, int16_t* dst,
                                     int64_t dst_stride, int64_t rows, int64_t n) {
  const __m256i zv = _mm256_set1_epi16(static_cast<int16_t>(z));
  for (int64_t r = 0; r < rows; ++r, x += src_stride, dst += dst_stride) {
    if (n >= 16) {
      for (int64_t i = 0;; i += 16) {
        const int64_t at = std::min(i, n - 16);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + at),
                            _mm256_sub_epi16(load16(x + at, 1), zv));
        if (at == n - 16) break;
      }
    } else if (n >= 8) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst),
                       _mm_sub_epi16(load8(x, 1), _mm256_castsi256_si128(zv)));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + n - 8),
                       _mm_sub_epi16(load8(x + n - 8, 1), _mm256_castsi256_si128(zv)));
    } else if (n >= 4) {
      const __m128i z4 = _mm256_castsi256_si128(zv);
      _mm_storel_epi64(reinterpret_cast<__m128i*>(dst), _mm_sub_epi16(load4(x, 1), z4));
      _mm_storel_epi64(reinterpret_cast<__m128i*>(dst + n - 4), _mm_sub_epi16(load4(x + n - 4, 1), z4));
    } else {
      for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<int16_t>(x[i] - z);
    }
  }
}

QEVAL_AVX2 void center_rows_avx2(const void* x, DType dtype, int32_t z, int64_t src_stride,
                                 int16_t* dst, int64_t dst_stride, int64_t rows, int64_t n) {
  switch (dtype) {
    case DType::kInt8:
      center_rows_t(static_cast<const int8_t*>(x), z, src_stride, dst, dst_stride, rows, n);
      return;
    case DType::kUInt8:
      center_rows_t(static_cast<const uint8_t*>(x), z, src_stride, dst, dst_stride, rows, n);
      return;
    default:
      center_rows_t(static_cast<const int16_t*>(x), z, src_stride, dst, dst_stride, rows, n);
      return;
  }
}

QEVAL_AVX2 void clamp_avx2(const void* x, DType dtype, int32_t lo, int32_t hi, void* y, int64_t n) {
  const char* p = static_cast<const char*>(x);
  char* q = static_cast<char*>(y);
  const int64_t size = static_cast<int64_t>(dtype_size(dtype)), per = 32 / size;
  int64_t i = 0;
  for (; i + per <= n; i += per) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i * size));
    __m256i r;
    switch (dtype) {
      case DType::kInt8:
        r = _mm256_min_epi8(_mm256_max_epi8(v, _mm256_set1_epi8(static_cast<char>(lo))),
                            _mm256_set1_epi8(static_cast<char>(hi)));
        break;
      case DType::kUInt8:
        r = _mm256_min_epu8(_mm256_max_epu8(v, _mm256_set1_epi8(static_cast<char>(lo))),
                            _mm256_set1_epi8(static_cast<char>(hi)));
        break;
      default:
        r = _mm256_min_epi16(_mm256_max_epi16(v, _mm256_set1_epi16(static_cast<int16_t>(lo))),
                             _mm256_set1_epi16(static_cast<int16_t>(hi)));
        break;
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i * size), r);
  }
  clamp_scalar(p + i * size, dtype, lo, hi, q + i * size, n - i);
}

// 8 elements of an 8-bit array as int32 lanes.
template <typename T>
QEVAL_AVX2_INLINE __m256i load8_epi32(const T* p) {
  const __m128i v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  if constexpr (std::is_same_v<T, int8_t>) return _mm256_cvtepi8_epi32(v);
  return _mm256_cvtepu8_epi32(v);
}

// The integer schemes: (a - za) ma + (b - zb) mb in 64 bits (|.| < 2^41 for
// 8-bit operands), shifted as ReqSingle does (round holds 2^62, off takes the
// excess 2^(62 - r) off), clamped to [qmin - zc, qmax - zc], + zc.
template <RoundingMode M, typename TA, typename TB, typename TY>
QEVAL_AVX2_FMA_INLINE void add8_int(const AddRequant& p, int64_t round, int32_t off, const TA* a,
                                    const TB* b, TY* y, int64_t n) {
  const __m256i za = _mm256_set1_epi32(p.za), zb = _mm256_set1_epi32(p.zb),
                ma = _mm256_set1_epi64x(p.ma), mb = _mm256_set1_epi64x(p.mb),
                bias = _mm256_set1_epi64x(round), vo = _mm256_set1_epi32(off),
                lo = _mm256_set1_epi32(p.qmin - p.zc), hi = _mm256_set1_epi32(p.qmax - p.zc),
                zc = _mm256_set1_epi32(p.zc);
  const __m128i r = _mm_cvtsi32_si128(p.r);
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const __m256i va = _mm256_sub_epi32(load8_epi32(a + i), za),
                  vb = _mm256_sub_epi32(load8_epi32(b + i), zb);
    const __m256i even = _mm256_add_epi64(_mm256_mul_epi32(va, ma), _mm256_mul_epi32(vb, mb));
    const __m256i odd = _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(va, 32), ma),
                                         _mm256_mul_epi32(_mm256_srli_epi64(vb, 32), mb));
    __m256i q = _mm256_sub_epi32(
        interleave_low32(rsr_low32<M>(even, bias, r), rsr_low32<M>(odd, bias, r)), vo);
    q = _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(q, lo), hi), zc);
    store8(q, y + i, kLanes, 1);
  }
  for (; i < n; ++i) y[i] = static_cast<TY>(p.apply(a[i], b[i]));
}

// The float scheme: fma as the reference's std::fma, cvtps2dq as
// float_to_int32_rne (nearest even; out of range and NaN give INT32_MIN).
template <typename TA, typename TB, typename TY>
QEVAL_AVX2_FMA_INLINE void add8_float(const AddRequant& p, const TA* a, const TB* b, TY* y,
                                      int64_t n) {
  const __m256 ra = _mm256_set1_ps(p.ra), rb = _mm256_set1_ps(p.rb),
               fixed = _mm256_set1_ps(p.fixed);
  const __m256i off = _mm256_set1_epi32(p.off), lo = _mm256_set1_epi32(p.qmin + p.off),
                hi = _mm256_set1_epi32(p.qmax + p.off);
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const __m256 fa = _mm256_cvtepi32_ps(_mm256_add_epi32(load8_epi32(a + i), off));
    const __m256 fb = _mm256_cvtepi32_ps(_mm256_add_epi32(load8_epi32(b + i), off));
    const __m256i t = _mm256_cvtps_epi32(_mm256_fmadd_ps(fa, ra, _mm256_fmadd_ps(fb, rb, fixed)));
    store8(_mm256_sub_epi32(_mm256_min_epi32(_mm256_max_epi32(t, lo), hi), off), y + i, kLanes, 1);
  }
  for (; i < n; ++i) y[i] = static_cast<TY>(p.apply(a[i], b[i]));
}

template <typename TA, typename TB, typename TY>
QEVAL_AVX2_FMA_INLINE void add8_t(const AddRequant& p, int64_t round, int32_t off, const TA* a,
                                  const TB* b, TY* y, int64_t n) {
  if (p.float_scheme) {
    add8_float(p, a, b, y, n);
    return;
  }
  switch (p.mode) {
    case RoundingMode::kHalfUp:
      add8_int<RoundingMode::kHalfUp>(p, round, off, a, b, y, n);
      return;
    case RoundingMode::kHalfAwayFromZero:
      add8_int<RoundingMode::kHalfAwayFromZero>(p, round, off, a, b, y, n);
      return;
    case RoundingMode::kHalfToEven:
      add8_int<RoundingMode::kHalfToEven>(p, round, off, a, b, y, n);
      return;
  }
}

template <typename TA, typename TB>
QEVAL_AVX2_FMA_INLINE void add8_y(const AddRequant& p, int64_t round, int32_t off, const TA* a,
                                  const TB* b, void* y, DType yt, int64_t n) {
  if (yt == DType::kInt8) {
    add8_t(p, round, off, a, b, static_cast<int8_t*>(y), n);
  } else {
    add8_t(p, round, off, a, b, static_cast<uint8_t*>(y), n);
  }
}

template <typename TA>
QEVAL_AVX2_FMA_INLINE void add8_b(const AddRequant& p, int64_t round, int32_t off, const TA* a,
                                  const void* b, DType bt, void* y, DType yt, int64_t n) {
  if (bt == DType::kInt8) {
    add8_y(p, round, off, a, static_cast<const int8_t*>(b), y, yt, n);
  } else {
    add8_y(p, round, off, a, static_cast<const uint8_t*>(b), y, yt, n);
  }
}

__attribute__((target("avx2,fma"))) void add8_avx2(const AddRequant& p, int64_t round, int32_t off,
                                                   const void* a, DType at, const void* b, DType bt,
                                                   void* y, DType yt, int64_t n) {
  if (at == DType::kInt8) {
    add8_b(p, round, off, static_cast<const int8_t*>(a), b, bt, y, yt, n);
  } else {
    add8_b(p, round, off, static_cast<const uint8_t*>(a), b, bt, y, yt, n);
  }
}

// AVX-512 (the vnni table): the float scheme 16 lanes at a time, the same
// operations as add8_float (vcvtps2dq gives INT32_MIN out of range as in
// 256 bits; the clamped results fit the output dtype, so vpmovdb keeps them);
// the integer schemes and the tail as add8_avx2.
#define QEVAL_AVX512_INLINE __attribute__((target("avx2,fma,avx512f"), always_inline)) inline
template <typename T>
QEVAL_AVX512_INLINE __m512i widen16(__m128i v) {
  if constexpr (std::is_same_v<T, int8_t>) return _mm512_cvtepi8_epi32(v);
  return _mm512_cvtepu8_epi32(v);
}

template <typename TA, typename TB, typename TY>
QEVAL_AVX512_INLINE int64_t add8_float16(const AddRequant& p, const TA* a, const TB* b, TY* y, int64_t n) {
  const __m512 ra = _mm512_set1_ps(p.ra), rb = _mm512_set1_ps(p.rb), fixed = _mm512_set1_ps(p.fixed);
  const __m512i off = _mm512_set1_epi32(p.off), lo = _mm512_set1_epi32(p.qmin + p.off),
                hi = _mm512_set1_epi32(p.qmax + p.off);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m128i va = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a + i));
    const __m128i vb = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + i));
    const __m512 fa = _mm512_cvtepi32_ps(_mm512_add_epi32(widen16<TA>(va), off));
    const __m512 fb = _mm512_cvtepi32_ps(_mm512_add_epi32(widen16<TB>(vb), off));
    const __m512i t = _mm512_cvtps_epi32(_mm512_fmadd_ps(fa, ra, _mm512_fmadd_ps(fb, rb, fixed)));
    const __m512i q = _mm512_sub_epi32(_mm512_min_epi32(_mm512_max_epi32(t, lo), hi), off);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), _mm512_cvtepi32_epi8(q));
  }
  return i;
}

template <typename TA, typename TB>
__attribute__((target("avx2,fma,avx512f"))) int64_t add8_float16_y(
    const AddRequant& p, const TA* a, const TB* b, void* y, DType yt, int64_t n) {
  return yt == DType::kInt8 ? add8_float16(p, a, b, static_cast<int8_t*>(y), n)
                            : add8_float16(p, a, b, static_cast<uint8_t*>(y), n);
}

void add8_avx512(const AddRequant& p, int64_t round, int32_t off, const void* a, DType at,
                 const void* b, DType bt, void* y, DType yt, int64_t n) {
  int64_t done = 0;
  if (p.float_scheme) {
    const bool sa = at == DType::kInt8, sb = bt == DType::kInt8;
    const auto* a8 = static_cast<const int8_t*>(a);
    const auto* b8 = static_cast<const int8_t*>(b);
    const auto* au = static_cast<const uint8_t*>(a);
    const auto* bu = static_cast<const uint8_t*>(b);
    done = sa ? (sb ? add8_float16_y(p, a8, b8, y, yt, n) : add8_float16_y(p, a8, bu, y, yt, n))
              : (sb ? add8_float16_y(p, au, b8, y, yt, n) : add8_float16_y(p, au, bu, y, yt, n));
  }
  add8_avx2(p, round, off, static_cast<const char*>(a) + done, at,
            static_cast<const char*>(b) + done, bt, static_cast<char*>(y) + done, yt, n - done);
}

// ---- Winograd transforms (see wino_in_scalar) ----------------------------

QEVAL_AVX2 void wino_in_avx2(const int32_t* e, const int32_t* o, int64_t rs, int64_t ntx,
                             int32_t* v, int64_t xs) {
  for (int64_t tx = 0; tx < ntx; tx += kLanes) {
    __m256i c[4][4];
    for (int k = 0; k < 4; ++k) {
      const int32_t* ek = e + k * rs + tx;
      const int32_t* ok = o + k * rs + tx;
      const __m256i d0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ek));
      const __m256i d1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ok));
      const __m256i d2 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ek + 1));
      const __m256i d3 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ok + 1));
      c[k][0] = _mm256_sub_epi16(d0, d2);
      c[k][1] = _mm256_add_epi16(d1, d2);
      c[k][2] = _mm256_sub_epi16(d2, d1);
      c[k][3] = _mm256_sub_epi16(d1, d3);
    }
    for (int j = 0; j < 4; ++j) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(v + j * xs + tx),
                          _mm256_sub_epi16(c[0][j], c[2][j]));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(v + (4 + j) * xs + tx),
                          _mm256_add_epi16(c[1][j], c[2][j]));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(v + (8 + j) * xs + tx),
                          _mm256_sub_epi16(c[2][j], c[1][j]));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(v + (12 + j) * xs + tx),
                          _mm256_sub_epi16(c[1][j], c[3][j]));
    }
  }
}

QEVAL_AVX2 void wino_out_avx2(const int32_t* m, int64_t xs, int64_t ntx, int32_t* z, int64_t zs) {
  for (int64_t tx = 0; tx < ntx; tx += kLanes) {
    __m256i s[4][2];
    _Pragma("GCC unroll 4") for (int i = 0; i < 4; ++i) {
      const int32_t* mi = m + 4 * i * xs + tx;
      const __m256i m0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(mi));
      const __m256i m1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(mi + xs));
      const __m256i m2 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(mi + 2 * xs));
      const __m256i m3 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(mi + 3 * xs));
      s[i][0] = _mm256_add_epi32(_mm256_add_epi32(m0, m1), m2);
      s[i][1] = _mm256_sub_epi32(_mm256_sub_epi32(m1, m2), m3);
    }
    _Pragma("GCC unroll 2") for (int i = 0; i < 2; ++i) {
      __m256i y[2];
      _Pragma("GCC unroll 2") for (int j = 0; j < 2; ++j) {
        y[j] = i == 0 ? _mm256_add_epi32(_mm256_add_epi32(s[0][j], s[1][j]), s[2][j])
                      : _mm256_sub_epi32(_mm256_sub_epi32(s[1][j], s[2][j]), s[3][j]);
        y[j] = _mm256_srai_epi32(y[j], 2);
      }
      // Columns 2tx (y[0]) and 2tx + 1 (y[1]) interleaved.
      const __m256i lo = _mm256_unpacklo_epi32(y[0], y[1]), hi = _mm256_unpackhi_epi32(y[0], y[1]);
      int32_t* zi = z + i * zs + 2 * tx;
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(zi), _mm256_permute2x128_si256(lo, hi, 0x20));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(zi + kLanes),
                          _mm256_permute2x128_si256(lo, hi, 0x31));
    }
  }
}

// Two 128-bit loads (4 words of tile row ty, 4 of tile row ty + 1) as one vector.
QEVAL_AVX2_INLINE __m256i load_4x2(const int32_t* a, const int32_t* b) {
  return _mm256_inserti128_si256(
      _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a))),
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(b)), 1);
}

QEVAL_AVX2 void wino_in2_avx2(const int32_t* e, const int32_t* o, int64_t rs, int32_t* v,
                              int64_t xs) {
  __m256i c[4][4];
  for (int k = 0; k < 4; ++k) {
    const int32_t* ek = e + k * rs;
    const int32_t* ok = o + k * rs;
    const __m256i d0 = load_4x2(ek, ek + 2 * rs);
    const __m256i d1 = load_4x2(ok, ok + 2 * rs);
    const __m256i d2 = load_4x2(ek + 1, ek + 2 * rs + 1);
    const __m256i d3 = load_4x2(ok + 1, ok + 2 * rs + 1);
    c[k][0] = _mm256_sub_epi16(d0, d2);
    c[k][1] = _mm256_add_epi16(d1, d2);
    c[k][2] = _mm256_sub_epi16(d2, d1);
    c[k][3] = _mm256_sub_epi16(d1, d3);
  }
  for (int j = 0; j < 4; ++j) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(v + j * xs), _mm256_sub_epi16(c[0][j], c[2][j]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(v + (4 + j) * xs),
                        _mm256_add_epi16(c[1][j], c[2][j]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(v + (8 + j) * xs),
                        _mm256_sub_epi16(c[2][j], c[1][j]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(v + (12 + j) * xs),
                        _mm256_sub_epi16(c[1][j], c[3][j]));
  }
}

QEVAL_AVX2 void wino_out2_avx2(const int32_t* m, int64_t xs, int32_t* z, int64_t zs) {
  __m256i s[4][2];
  _Pragma("GCC unroll 4") for (int i = 0; i < 4; ++i) {
    const int32_t* mi = m + 4 * i * xs;
    const __m256i m0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(mi));
    const __m256i m1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(mi + xs));
    const __m256i m2 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(mi + 2 * xs));
    const __m256i m3 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(mi + 3 * xs));
    s[i][0] = _mm256_add_epi32(_mm256_add_epi32(m0, m1), m2);
    s[i][1] = _mm256_sub_epi32(_mm256_sub_epi32(m1, m2), m3);
  }
  _Pragma("GCC unroll 2") for (int i = 0; i < 2; ++i) {
    __m256i y[2];
    _Pragma("GCC unroll 2") for (int j = 0; j < 2; ++j) {
      y[j] = i == 0 ? _mm256_add_epi32(_mm256_add_epi32(s[0][j], s[1][j]), s[2][j])
                    : _mm256_sub_epi32(_mm256_sub_epi32(s[1][j], s[2][j]), s[3][j]);
      y[j] = _mm256_srai_epi32(y[j], 2);
    }
    // Per 128-bit half (tile row): columns 2tx (y[0]) and 2tx + 1 (y[1]) interleaved.
    const __m256i lo = _mm256_unpacklo_epi32(y[0], y[1]), hi = _mm256_unpackhi_epi32(y[0], y[1]);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(z + i * zs),
                        _mm256_permute2x128_si256(lo, hi, 0x20));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(z + (i + 2) * zs),
                        _mm256_permute2x128_si256(lo, hi, 0x31));
  }
}

// quantize_value with half-to-even rounding, 8 at a time: the same IEEE
// division; vroundps in the current mode (nearbyint's); the clamp in float,
// which is the reference's clamp of double(v) + zp as v is integer-valued (or
// infinite) and qmin - zp, qmax - zp are exact; vmaxps returns its second
// operand for a NaN first one, so NaN gives qmin, as in the reference.
template <typename T>
QEVAL_AVX2_INLINE void quantize8_t(const float* x, float scale, int32_t zp, int32_t qmin,
                                   int32_t qmax, T* y, int64_t n) {
  const __m256 s = _mm256_set1_ps(scale), lo = _mm256_set1_ps(static_cast<float>(qmin - zp)),
               hi = _mm256_set1_ps(static_cast<float>(qmax - zp));
  const __m256i z = _mm256_set1_epi32(zp);
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    __m256 v = _mm256_div_ps(_mm256_loadu_ps(x + i), s);
    v = _mm256_round_ps(v, _MM_FROUND_CUR_DIRECTION | _MM_FROUND_NO_EXC);
    v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
    store8(_mm256_add_epi32(_mm256_cvtps_epi32(v), z), y + i, kLanes, 1);
  }
  for (; i < n; ++i) {
    y[i] = static_cast<T>(quantize_value(x[i], scale, zp, qmin, qmax, RoundingMode::kHalfToEven));
  }
}

QEVAL_AVX2 void quantize8_avx2(const float* x, float scale, int32_t zp, int32_t qmin, int32_t qmax,
                               void* y, DType yt, int64_t n) {
  if (yt == DType::kInt8) {
    quantize8_t(x, scale, zp, qmin, qmax, static_cast<int8_t*>(y), n);
  } else {
    quantize8_t(x, scale, zp, qmin, qmax, static_cast<uint8_t*>(y), n);
  }
}

// wino_gemm: per xi, micro-tiles of kRows x kTile as gemm_tile, then one of
// kRows x kLanes where ntiles is an odd multiple of kLanes; the loop kept in
// one function (the GEMMs are short: K = the channel pairs).
#define QEVAL_WINO_TILE(MAC, NG)                                                                  \
  {                                                                                               \
    const int32_t* x = v + xi * v_xs + t;                                                         \
    __m256i c[kRows][NG];                                                                         \
    _Pragma("GCC unroll 8") for (int r = 0; r < kRows; ++r)                                       \
        _Pragma("GCC unroll 8") for (int g = 0; g < NG; ++g) c[r][g] = _mm256_setzero_si256();    \
    const int32_t* wp = wx;                                                                       \
    for (int64_t p = 0; p < pairs; ++p, x += ld, wp += kRows) {                                   \
      __m256i a[NG];                                                                              \
      _Pragma("GCC unroll 8") for (int g = 0; g < NG; ++g) {                                      \
        a[g] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + g * kLanes));              \
      }                                                                                           \
      _Pragma("GCC unroll 8") for (int r = 0; r < kRows; ++r) {                                   \
        const __m256i b = _mm256_set1_epi32(wp[r]);                                               \
        _Pragma("GCC unroll 8") for (int g = 0; g < NG; ++g) c[r][g] = MAC(c[r][g], a[g], b);     \
      }                                                                                           \
    }                                                                                             \
    int32_t* acc = m + xi * m_xs + t;                                                             \
    _Pragma("GCC unroll 8") for (int r = 0; r < kRows; ++r)                                       \
        _Pragma("GCC unroll 8") for (int g = 0; g < NG; ++g) {                                    \
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + r * ld + g * kLanes), c[r][g]);        \
    }                                                                                             \
  }
#define QEVAL_WINO_GEMM_BODY(MAC)                                                                 \
  for (int64_t xi = 0; xi < 16; ++xi) {                                                           \
    const int32_t* wx = w + xi * w_xs;                                                            \
    int64_t t = 0;                                                                                \
    for (; t + kTile <= ntiles; t += kTile) QEVAL_WINO_TILE(MAC, kGroups)                         \
    if (t < ntiles) QEVAL_WINO_TILE(MAC, 1)                                                       \
  }

QEVAL_AVX2 void wino_gemm_avx2(const int32_t* w, int64_t w_xs, const int32_t* v, int64_t v_xs,
                               int64_t pairs, int64_t ld, int64_t ntiles, int32_t* m,
                               int64_t m_xs) {
  QEVAL_WINO_GEMM_BODY(QEVAL_MADD_AVX2);
}

// ---- AVX-512 VNNI: the AVX2 code with vpdpwssd (pair products added in one
// instruction, no saturation) in the micro-kernel ------------------------------

#define QEVAL_MADD_VNNI(c, a, b) _mm256_dpwssd_epi32(c, a, b)
QEVAL_VNNI void gemm_tile_vnni(const int32_t* w, const int32_t* const* x, const int32_t* offs,
                               int64_t nkk, int32_t* acc, int64_t acc_stride) {
  QEVAL_GEMM_TILE_BODY(QEVAL_MADD_VNNI);
}
QEVAL_VNNI void wino_gemm_vnni(const int32_t* w, int64_t w_xs, const int32_t* v, int64_t v_xs,
                               int64_t pairs, int64_t ld, int64_t ntiles, int32_t* m,
                               int64_t m_xs) {
  QEVAL_WINO_GEMM_BODY(QEVAL_MADD_VNNI);
}

#endif  // QEVAL_X86

// Single rounding without the int32 saturation: q(acc) = RSR(acc * m, n, mode).
int64_t single_q(int64_t acc, int32_t m, int n, RoundingMode mode) {
  return rounding_shift_right(acc * m, n, mode);
}

// The accumulator range of ReqSingle for m > 0 (q non-decreasing in acc):
// acc_lo = the largest acc with q(acc) <= lo (INT32_MIN if none), acc_hi = the
// smallest with q(acc) >= hi (INT32_MAX if none). Outside it the clamped output
// is lo or hi, inside it q lies in [q(acc_lo), q(acc_hi)], which must fit int32.
bool single_range(ChannelRequant& cr, int32_t lo, int32_t hi, RoundingMode mode) {
  auto q = [&](int64_t a) { return single_q(a, cr.m, cr.shift, mode); };
  // Binary search of the last a in [a0, a1] with q(a) <= v, given q(a0) <= v < q(a1).
  auto last_at_most = [&](int64_t a0, int64_t a1, int64_t v) {
    while (a1 - a0 > 1) {
      const int64_t mid = a0 + (a1 - a0) / 2;
      (q(mid) <= v ? a0 : a1) = mid;
    }
    return a0;
  };
  const int64_t amin = INT32_MIN, amax = INT32_MAX;
  int64_t a_lo = amin, a_hi = amax;
  if (q(amin) <= lo) a_lo = q(amax) <= lo ? amax : last_at_most(amin, amax, lo);
  if (q(amax) >= hi) a_hi = q(amin) >= hi ? amin : last_at_most(amin, amax, hi - 1) + 1;
  const int64_t q_lo = q(a_lo), q_hi = q(a_hi);
  if (q_lo < INT32_MIN || q_hi > INT32_MAX) return false;
  cr.acc_lo = static_cast<int32_t>(a_lo);
  cr.acc_hi = static_cast<int32_t>(a_hi);
  return true;
}

}  // namespace

void Epilogue::prepare() {
  const size_t channels = sum_bound.size();
  ch.assign(channels, ChannelRequant{});
  const int32_t zp = st.y.z();
  if (st.raw) {
    for (ChannelRequant& cr : ch) cr.ok = dtype == DType::kInt32;
    return;
  }
  // Vector code stores 8/16-bit outputs whose qmin - zp, qmax - zp fit easily.
  if (dtype != st.y.dtype ||
      (dtype != DType::kInt8 && dtype != DType::kUInt8 && dtype != DType::kInt16) ||
      std::abs(zp) >= (1 << 30)) {
    return;
  }
  const Requant& rq = st.rq;
  const int32_t lo = st.y.qmin - zp, hi = st.y.qmax - zp;
  for (size_t c = 0; c < channels; ++c) {
    ChannelRequant& cr = ch[c];
    if (rq.scheme == RequantScheme::kFloat) {
      cr.fscale = rq.fscale.size() > 1 ? rq.fscale[c] : rq.fscale[0];
      cr.ok = std::isfinite(cr.fscale);
      continue;
    }
    const Multiplier mu = rq.mult.size() > 1 ? rq.mult[c] : rq.mult[0];
    cr.m = mu.m;
    cr.shift = mu.rshift;
    if (rq.scheme == RequantScheme::kSingleRounding) {
      cr.ok = mu.m > 0 && mu.rshift >= 1 && mu.rshift <= 62 && single_range(cr, lo, hi, rq.mode);
      if (cr.ok) {
        const int64_t half = int64_t{1} << (mu.rshift - 1);
        cr.round = (rq.mode == RoundingMode::kHalfToEven ? half - 1 : half) + (int64_t{1} << 62);
        cr.off = static_cast<int32_t>(static_cast<uint32_t>(uint64_t{1} << (62 - mu.rshift)));
      }
    } else {
      cr.ok = mu.rshift >= 31 && mu.rshift <= 62 && mu.m != INT32_MIN;
      cr.mask = cr.ok ? static_cast<int32_t>((int64_t{1} << (mu.rshift - 31)) - 1) : 0;
    }
  }
}

void Epilogue::set_bias(const Tensor* B) {
  const size_t channels = sum_bound.size();
  bias.assign(channels, 0);
  vec.assign(channels, 0);
  for (size_t c = 0; c < channels; ++c) {
    if (B) bias[c] = B->get_int(static_cast<int64_t>(c));
    const int64_t room = (int64_t{1} << 31) - sum_bound[c];  // sum + bias must not saturate
    vec[c] = ch[c].ok && bias[c] < room && bias[c] > -room;
  }
}

bool cpu_has(Isa isa) {
#ifdef QEVAL_X86
  switch (isa) {
    case Isa::kScalar:
      return true;
    case Isa::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::kAvx512Vnni:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
             __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512vnni");
  }
  return false;
#else
  return isa == Isa::kScalar;
#endif
}

Isa isa_of(KernelMode m) {
  switch (m) {
    case KernelMode::kScalar:
      return Isa::kScalar;
    case KernelMode::kAvx2:
      return Isa::kAvx2;
    case KernelMode::kAvx512Vnni:
    case KernelMode::kAmx:
      return Isa::kAvx512Vnni;
    case KernelMode::kReference:
    case KernelMode::kOptimized:
      break;
  }
  static const Isa best = cpu_has(Isa::kAvx512Vnni) ? Isa::kAvx512Vnni
                          : cpu_has(Isa::kAvx2)     ? Isa::kAvx2
                                                    : Isa::kScalar;
  return best;
}

bool uses_amx(KernelMode m) {
  return m == KernelMode::kAmx || (m == KernelMode::kOptimized && amx_usable());
}

const IsaKernels& kernels(Isa isa) {
  static const IsaKernels scalar{gemm_tile_scalar, dw_row_scalar,  finish_scalar,
                                 pair_rows_scalar, center_scalar,  center_rows_scalar, clamp_scalar,
                                 add8_scalar,      wino_in_scalar, wino_out_scalar,
                                 wino_gemm_scalar, dw_pairs_scalar, wino_in2_scalar, wino_out2_scalar, quantize8_scalar};
#ifdef QEVAL_X86
  static const IsaKernels avx2{gemm_tile_avx2, dw_row_avx2,  finish_avx2,  pair_rows_avx2, center_avx2, center_rows_avx2,
                               clamp_avx2,     add8_avx2,    wino_in_avx2, wino_out_avx2,
                               wino_gemm_avx2, dw_pairs_avx2, wino_in2_avx2, wino_out2_avx2, quantize8_avx2};
  static const IsaKernels vnni{gemm_tile_vnni, dw_row_avx2,  finish_avx2,  pair_rows_avx2, center_avx2, center_rows_avx2,
                               clamp_avx2,     add8_avx512,  wino_in_avx2, wino_out_avx2,
                               wino_gemm_vnni, dw_pairs_avx2, wino_in2_avx2, wino_out2_avx2, quantize8_avx2};
  if (isa == Isa::kAvx2) return avx2;
  if (isa == Isa::kAvx512Vnni) return vnni;
#endif
  return scalar;
}

}  // namespace qeval::kern::opt
