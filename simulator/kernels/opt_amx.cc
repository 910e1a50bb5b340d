// Conv2d on Intel AMX-INT8 tiles (opt_kernels.h, docs/simulator-kernels.md).
//
// Numerics. The reference sums (x - z_x)(w - z_w). Here the tiles multiply the
// raw 8-bit inputs x (tdpbsud for uint8, tdpbssd for int8) by the centred
// weights w' = w - z_w (int8, where every one fits), summing groups of four
// products into int32 lanes with wrap-around. Each accumulator starts at
// -z_x * sum(w'_c) and padding positions hold z_x, so the final lane is
//   sum over taps of (x - z_x) * w'   (mod 2^32),
// which is the reference's sum exactly because the caller has proved
// |sum| < 2^31 (K * max|w'_c| * max|x - z_x|, opt_kernels.h): the value mod 2^32
// of an int32-range number is the number. Order, thread count and tile shape
// therefore never change a bit. Bias and requantization are the vector
// epilogue of the other kernels (IsaKernels::finish).
//
// Layout. Per image, for each column phase rw of the stride, a base plane:
// the padded input rows follow each other; within a row the quads q (input
// channels 4q .. 4q+3) follow each other, Ws words apart (a multiple of 16),
// word j holding the four channels' bytes at padded column j * sw + rw. Tap
// column kw reads phase kw * dw % sw from word col = kw * dw / sw on: col 0 is
// the base plane itself, any other col a copy of the base rows shifted by col
// words (Wq = whole tiles of words a row), so that every tile row starts on
// whole 64 bytes. In a plane the B rows (kh, q), kh = 0 .. KH - 1 (undilated
// rows), of output row oh lie one stride apart: rows f = kh * nq + q of a flat
// sequence after row oh * sh * nq. That sequence is cut into chunks of at most
// 16 B rows (a tile's K of at most 64 bytes); the weights of each chunk are an
// A tile of 16 output channels. Dilated rows make a chunk sequence per
// (kw, kh). Fewer than 4 input channels fold the tap columns into the quads
// (AmxConv::fold); pointwise convolutions re-cut a plane into rows of a width
// that fills whole tiles. A C tile is 16 output channels x 16 consecutive
// outputs of one output row.
//
// Work: a task is one image's range of output rows: it lays out the input rows
// they read into per-thread scratch (~64 KB), then computes every tile of
// them, two C tiles of pixels x up to two blocks of 16 channels at a time (the
// eight tile registers: 4 C, 2 A, 2 B), stores them in output order and runs
// the epilogue over groups of rows, writing the NCHW output directly.
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <new>
#include <type_traits>
#include <vector>

#include "simulator/kernels/opt_kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#define QEVAL_AMX_X86 1
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace qeval::kern::opt {

namespace {

// 64-byte aligned storage: tile rows that straddle two cache lines load about
// six times slower (12 rows of 64 bytes: 32 cycles against 5, measured).
template <typename T>
struct Aligned64 {
  using value_type = T;
  Aligned64() = default;
  template <typename U>
  Aligned64(const Aligned64<U>&) {}
  T* allocate(size_t n) {
    return static_cast<T*>(::operator new (n * sizeof(T), std::align_val_t{64}));
  }
  void deallocate(T* p, size_t) { ::operator delete (p, std::align_val_t{64}); }
  bool operator==(const Aligned64&) const { return true; }
};
template <typename T>
using AlignedVec = std::vector<T, Aligned64<T>>;

}  // namespace

struct AmxConv {
  AmxConvSpec s;
  int64_t nq = 0;   // quads of input channels
  int64_t R = 0;    // B rows (quads) per chunk: every chunk's K is 4R bytes
  int64_t MB = 0;   // blocks of 16 output channels
  uint8_t pad = 0;  // the byte of a padding position (z_x)
  // Fewer than 4 input channels: the quads hold (tap column, channel) pairs
  // instead, u = kw * C + c, each byte the input at column j * sw + kw * dw
  // - pl; one plane, as if KW were 1 (an RGB or grey stem: one quad row per
  // kh instead of a quarter-used quad per kh and kw).
  bool fold = false;
  alignas(64) uint8_t fold_index[64] = {};  // fold, C = 1, sw = 1: byte 4p + b = p + b dw
  // Planes. A base plane per column phase rw (rows Ws words apart, a multiple
  // of 16): word j of a row holds padded column j * sw + rw, for j < Wq + the
  // columns the taps reach past it (max_col). Tap column kw reads phase
  // rw = kw dw % sw from word col = kw dw / sw on: col 0 is the base plane
  // itself, any other col a copy of the base rows shifted by col words (rows
  // Wq words apart), so that every B tile row starts on whole 64 bytes.
  std::vector<int64_t> base_rw;                     // planes 0 .. bases - 1
  std::vector<std::pair<int64_t, int64_t>> copies;  // the next planes: (base, col)
  int64_t max_col = 0;
  struct Chunk {
    int64_t plane, row;  // the tap column's plane, first B row (in rows of that plane)
  };
  std::vector<Chunk> chunks;
  AlignedVec<int8_t> a;      // [MB][chunk][16 channels][64 bytes, 4R used]
  AlignedVec<int32_t> init;  // [MB][16 channels][16 lanes]: -z_x * sum(w'_c), wrapped
};

namespace {

std::atomic<int64_t> g_amx_runs{0};

// ceil(a / b) for b > 0 and any a.
int64_t ceil_div(int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -(-a / b); }

}  // namespace

int64_t amx_runs() { return g_amx_runs.load(); }

bool amx_usable() {
#ifdef QEVAL_AMX_X86
  static const bool ok = [] {
    if (!cpu_has(Isa::kAvx512Vnni) || !__builtin_cpu_supports("avx512bw") ||
        !__builtin_cpu_supports("avx512vbmi")) {
      return false;
    }
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    if (!(d & (1u << 24)) || !(d & (1u << 25))) return false;                // AMX-TILE, AMX-INT8
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return false;  // OSXSAVE
    uint32_t lo = 0, hi = 0;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & (3u << 17)) != (3u << 17)) return false;  // XTILECFG, XTILEDATA in XCR0
    // Linux hands out the tile data state only on request (ARCH_REQ_XCOMP_PERM, 5.16+).
    constexpr long kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return ok;
#else
  return false;
#endif
}

std::shared_ptr<const AmxConv> amx_prepare_conv(const AmxConvSpec& s, const int32_t* w) {
  if (!amx_usable() || (s.xdtype != DType::kInt8 && s.xdtype != DType::kUInt8) || s.M <= 0 ||
      s.C <= 0 || s.KH <= 0 || s.KW <= 0 || s.sh < 1 || s.sw < 1 || s.dh < 1 || s.dw < 1) {
    return nullptr;
  }
  const int64_t K = s.C * s.KH * s.KW;
  for (int64_t i = 0; i < s.M * K; ++i) {
    if (w[i] < -128 || w[i] > 127) return nullptr;
  }
  auto p = std::make_shared<AmxConv>();
  p->s = s;
  p->fold = s.C < 4 && s.KW > 1;
  const int64_t Cq = p->fold ? s.C * s.KW : s.C, KWp = p->fold ? 1 : s.KW;  // quad bytes, planes
  p->nq = ceil_div(Cq, 4);
  p->MB = ceil_div(s.M, 16);
  for (int64_t q = 0; q < 16 && p->fold; ++q)
    for (int64_t b = 0; b < 4; ++b) {
      p->fold_index[4 * q + b] = static_cast<uint8_t>(b < s.KW ? (q + b * s.dw) & 63 : 0);
    }
  p->pad = static_cast<uint8_t>(s.zx);
  // Rows of one chunk sequence: all (kh, q) when rows are undilated, else the
  // nq quads of one kh.
  const int64_t seq = s.dh == 1 ? s.KH * p->nq : p->nq;
  const int64_t nch = ceil_div(seq, 16);
  p->R = ceil_div(seq, nch);
  // A B row of chunk (kw, kh0, c): r -> (kh, q) of the flat sequence index.
  struct Row {
    int64_t kh, q;
  };
  std::vector<std::vector<Row>> rows;  // per chunk
  std::vector<int64_t> chunk_kw;
  // Each tap column's phase and column offset (folded: one column, 0 and 0);
  // the base planes first, then the copies, numbered after all bases.
  std::vector<int64_t> base_of, col_of, plane_of;
  for (int64_t kw = 0; kw < KWp; ++kw) {
    const int64_t rw = p->fold ? 0 : kw * s.dw % s.sw, col = p->fold ? 0 : kw * s.dw / s.sw;
    auto it = std::find(p->base_rw.begin(), p->base_rw.end(), rw);
    if (it == p->base_rw.end()) it = p->base_rw.insert(p->base_rw.end(), rw);
    base_of.push_back(it - p->base_rw.begin());
    col_of.push_back(col);
    p->max_col = std::max(p->max_col, col);
  }
  for (int64_t kw = 0; kw < KWp; ++kw) {
    if (col_of[kw] == 0) {
      plane_of.push_back(base_of[kw]);
    } else {
      plane_of.push_back(static_cast<int64_t>(p->base_rw.size() + p->copies.size()));
      p->copies.emplace_back(base_of[kw], col_of[kw]);
    }
  }
  for (int64_t kw = 0; kw < KWp; ++kw) {
    for (int64_t kh0 = 0; kh0 < (s.dh == 1 ? 1 : s.KH); ++kh0) {
      for (int64_t c = 0; c < nch; ++c) {
        std::vector<Row> rs(p->R, Row{-1, -1});
        for (int64_t r = 0; r < p->R; ++r) {
          const int64_t f = c * p->R + r;
          if (f >= seq) continue;
          rs[r] = s.dh == 1 ? Row{f / p->nq, f % p->nq} : Row{kh0, f};
        }
        const int64_t row0 = s.dh == 1 ? c * p->R : kh0 * s.dh * p->nq + c * p->R;
        p->chunks.push_back({plane_of[kw], row0});
        rows.push_back(std::move(rs));
        chunk_kw.push_back(kw);
      }
    }
  }
  const int64_t nchunks = static_cast<int64_t>(p->chunks.size()), kb = 64;
  p->a.assign(p->MB * nchunks * 16 * kb, 0);
  for (int64_t mb = 0; mb < p->MB; ++mb)
    for (int64_t j = 0; j < nchunks; ++j) {
      const int64_t kw = chunk_kw[j];
      int8_t* at = p->a.data() + (mb * nchunks + j) * 16 * kb;
      for (int64_t m = 0; m < 16 && mb * 16 + m < s.M; ++m)
        for (int64_t r = 0; r < p->R; ++r) {
          const Row rr = rows[j][r];
          if (rr.kh < 0) continue;
          for (int64_t i = 0; i < 4; ++i) {
            const int64_t u = 4 * rr.q + i;  // quad byte: channel, or (kw, channel) folded
            if (u >= Cq) continue;
            const int64_t ch = p->fold ? u % s.C : u, tw = p->fold ? u / s.C : kw;
            at[m * kb + 4 * r + i] =
                static_cast<int8_t>(w[(mb * 16 + m) * K + (ch * s.KH + rr.kh) * s.KW + tw]);
          }
        }
    }
  p->init.assign(p->MB * 256, 0);
  for (int64_t m = 0; m < s.M; ++m) {
    int64_t sum = 0;
    for (int64_t k = 0; k < K; ++k) sum += w[m * K + k];
    const auto v = static_cast<int32_t>(static_cast<uint32_t>(-int64_t{s.zx} * sum));
    std::fill_n(p->init.data() + m * 16, 16, v);
  }
  return p;
}

#ifdef QEVAL_AMX_X86

// GCC 12's _mm512_inserti64x4 starts from an undefined vector that its own
// -Wmaybe-uninitialized then reports at every use.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#define QEVAL_AMX \
  __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512vbmi,amx-tile,amx-int8")))

namespace {

struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// Tiles 0-3: C (16 channels x 16 int32), 4-5: A (16 channels x 4R bytes),
// 6-7: B (R quads x 16 words).
TileConfig tile_config(int64_t R) {
  TileConfig c;
  for (int t = 0; t < 4; ++t) c.rows[t] = 16, c.colsb[t] = 64;
  for (int t = 4; t < 6; ++t) c.rows[t] = 16, c.colsb[t] = static_cast<uint16_t>(4 * R);
  for (int t = 6; t < 8; ++t) c.rows[t] = static_cast<uint8_t>(R), c.colsb[t] = 64;
  return c;
}

QEVAL_AMX void tiles_begin(const TileConfig& c) { _tile_loadconfig(&c); }
QEVAL_AMX void tiles_end() { _tile_release(); }

// Byte permutations of the layout (vpermt2b over two vectors a = [row 0 |
// row 1], b = [row 2 | row 3], 32 bytes of each row): output byte 4p + i is
// row i's byte p * step + off, i.e. word p holds the four rows' bytes.
struct QuadIndex {
  alignas(64) uint8_t lo[64], hi[64], even[64];
  QuadIndex() {
    for (int p = 0; p < 16; ++p)
      for (int i = 0; i < 4; ++i) {
        const int row = (i & 1) * 32 + (i >> 1) * 64;
        lo[4 * p + i] = static_cast<uint8_t>(row + p);
        hi[4 * p + i] = static_cast<uint8_t>(row + 16 + p);
        even[4 * p + i] = static_cast<uint8_t>(row + 2 * p);
      }
  }
};
const QuadIndex kQuadIndex;

QEVAL_AMX inline __m512i rows2(const uint8_t* r0, const uint8_t* r1, __mmask32 m) {
  return _mm512_inserti64x4(_mm512_zextsi256_si512(_mm256_maskz_loadu_epi8(m, r0)),
                            _mm256_maskz_loadu_epi8(m, r1), 1);
}
QEVAL_AMX inline __mmask32 mask32(int64_t bytes) {
  return bytes >= 32 ? ~__mmask32{0} : (__mmask32{1} << bytes) - 1;
}
QEVAL_AMX inline __mmask64 mask64(int64_t bytes) {
  return bytes >= 64 ? ~__mmask64{0} : bytes <= 0 ? 0 : (__mmask64{1} << bytes) - 1;
}

// The shape of a run of `count` words (quad_row): full steps of 32 (sw = 1)
// or 16 (sw = 2) words and the masks of the last, partial one.
struct RowPlan {
  int64_t sw, count, full, step;
  __mmask32 tail_load;      // bytes of each row the partial step reads
  __mmask64 tail_store[2];  // bytes of its one or two 64-byte stores
  int64_t tail_words;
};
QEVAL_AMX inline RowPlan row_plan(int64_t sw, int64_t count) {
  RowPlan r{};
  r.sw = sw, r.count = count, r.step = sw == 1 ? 32 : 16;
  r.full = count / r.step;
  r.tail_words = count - r.full * r.step;
  r.tail_load = mask32(sw == 1 ? r.tail_words : 2 * r.tail_words - 1);
  r.tail_store[0] = mask64(4 * r.tail_words);
  r.tail_store[1] = mask64(4 * (r.tail_words - 16));
  return r;
}

// Interleaves `count` bytes of four channel rows (stride sw, 1 or 2) into
// words: dst[j] = (c0[j sw], c1[j sw], c2[j sw], c3[j sw]). Only those bytes
// are read (the partial step's loads are masked).
__attribute__((always_inline)) QEVAL_AMX inline void quad_row(const uint8_t* c0, const uint8_t* c1,
                                                              const uint8_t* c2, const uint8_t* c3,
                                                              const RowPlan& r, const __m512i* idx,
                                                              uint32_t* dst) {
  const __mmask32 all = ~__mmask32{0};
  if (r.sw == 1) {
    int64_t j = 0;
    for (int64_t k = 0; k < r.full; ++k, j += 32) {
      const __m512i a = rows2(c0 + j, c1 + j, all), b = rows2(c2 + j, c3 + j, all);
      _mm512_storeu_si512(dst + j, _mm512_permutex2var_epi8(a, idx[0], b));
      _mm512_storeu_si512(dst + j + 16, _mm512_permutex2var_epi8(a, idx[1], b));
    }
    if (r.tail_words) {
      const __m512i a = rows2(c0 + j, c1 + j, r.tail_load), b = rows2(c2 + j, c3 + j, r.tail_load);
      _mm512_mask_storeu_epi8(dst + j, r.tail_store[0], _mm512_permutex2var_epi8(a, idx[0], b));
      if (r.tail_words > 16) {
        _mm512_mask_storeu_epi8(dst + j + 16, r.tail_store[1],
                                _mm512_permutex2var_epi8(a, idx[1], b));
      }
    }
  } else if (r.sw == 2) {
    int64_t j = 0;
    // A full step reads bytes up to 2 j + 30, 31 of them: masked as the tail.
    const __mmask32 m31 = mask32(31);
    for (int64_t k = 0; k < r.full; ++k, j += 16) {
      const __m512i a = rows2(c0 + 2 * j, c1 + 2 * j, m31), b = rows2(c2 + 2 * j, c3 + 2 * j, m31);
      _mm512_storeu_si512(dst + j, _mm512_permutex2var_epi8(a, idx[2], b));
    }
    if (r.tail_words) {
      const __m512i a = rows2(c0 + 2 * j, c1 + 2 * j, r.tail_load),
                    b = rows2(c2 + 2 * j, c3 + 2 * j, r.tail_load);
      _mm512_mask_storeu_epi8(dst + j, r.tail_store[0], _mm512_permutex2var_epi8(a, idx[2], b));
    }
  } else {
    for (int64_t j = 0; j < r.count; ++j) {
      const int64_t x = j * r.sw;
      dst[j] =
          uint32_t{c0[x]} | uint32_t{c1[x]} << 8 | uint32_t{c2[x]} << 16 | uint32_t{c3[x]} << 24;
    }
  }
}

// The geometry of one run.
struct AmxGeom {
  // Wq: the words a tile row reads (whole tiles); Ws: the planes' row stride.
  int64_t N, H, W, OH, OW, Wq, Ws, rows_in, tiles_per_row;
  // Where plane k starts in a task's scratch and its row stride (base planes
  // Ws, copies Wq words); per chunk, its first B row's offset and stride.
  std::vector<int64_t> plane_off, plane_stride, chunk_off, chunk_stride;
  int64_t words = 0;  // the scratch of a task
};

// The folded layout (AmxConv::fold): one plane, byte b of word j of quad q
// the input of channel u % C at column j * sw + (u / C) * dw - pl, u = 4q + b
// (z_x outside the image; 0 past the C * KW pairs, whose weights are 0). One
// input channel at stride 1: 16 words from one masked 64-byte load (padding
// lanes z_x) and one vpermb.
QEVAL_AMX void layout_rows_folded(const AmxConv& p, const AmxGeom& g, const uint8_t* x, int64_t n,
                                  int64_t ih0, uint32_t* dst) {
  const AmxConvSpec& s = p.s;
  const uint32_t padq = uint32_t{p.pad} * 0x01010101u;
  const bool fast = s.C == 1 && s.sw == 1 && s.KW <= 4 && 15 + (s.KW - 1) * s.dw < 64;
  const __m512i idx = _mm512_load_si512(p.fold_index),
                padv = _mm512_set1_epi8(static_cast<char>(p.pad));
  for (int64_t il = 0; il < g.rows_in; ++il) {
    const int64_t y = ih0 + il - s.pt;
    uint32_t* row = dst + il * p.nq * g.Ws;
    if (y < 0 || y >= g.H) {
      std::fill_n(row, p.nq * g.Ws, padq);
      continue;
    }
    if (fast) {
      const uint8_t* xr = x + (n * g.H + y) * g.W;
      for (int64_t j0 = 0; j0 < g.Wq; j0 += 16) {
        // Lanes t: column j0 - pl + t, loaded where it is in the image.
        const int64_t x0 = j0 - s.pl, lo = std::max<int64_t>(0, -x0),
                      hi = std::min<int64_t>(64, g.W - x0);
        const __mmask64 m = hi <= lo ? 0 : mask64(hi) & ~mask64(lo);
        const auto* at = reinterpret_cast<const uint8_t*>(reinterpret_cast<uintptr_t>(xr) + x0);
        const __m512i v = _mm512_mask_loadu_epi8(padv, m, at);
        _mm512_store_si512(row + j0, _mm512_permutexvar_epi8(idx, v));
      }
      continue;
    }
    for (int64_t q = 0; q < p.nq; ++q)
      for (int64_t j = 0; j < g.Wq; ++j) {
        uint32_t word = 0;
        for (int64_t b = 0; b < 4; ++b) {
          const int64_t u = 4 * q + b;
          uint32_t v = p.pad;
          if (u < s.C * s.KW) {
            const int64_t c = u % s.C, col = j * s.sw + u / s.C * s.dw - s.pl;
            if (col >= 0 && col < g.W) v = x[((n * s.C + c) * g.H + y) * g.W + col];
          }
          word |= v << (8 * b);
        }
        row[q * g.Ws + j] = word;
      }
  }
}

// Lays out padded input rows ih0 .. ih0 + rows_in - 1 of image n into the
// planes at dst.
QEVAL_AMX void layout_rows(const AmxConv& p, const AmxGeom& g, const uint8_t* x, int64_t n,
                           int64_t ih0, const uint8_t* zeros, uint32_t* dst) {
  const AmxConvSpec& s = p.s;
  const uint32_t padq = uint32_t{p.pad} * 0x01010101u;
  const __m512i idx[3] = {_mm512_load_si512(kQuadIndex.lo), _mm512_load_si512(kQuadIndex.hi),
                          _mm512_load_si512(kQuadIndex.even)};
  const int64_t width = g.Wq + p.max_col, rows = g.rows_in * p.nq;  // of a base plane
  for (size_t ph = 0; ph < p.base_rw.size(); ++ph) {
    const int64_t rw = p.base_rw[ph];
    // Words [j_lo, j_hi) come from the image: input column j * sw + rw - pl in [0, W).
    const int64_t j_lo = std::clamp<int64_t>(ceil_div(s.pl - rw, s.sw), 0, width);
    const int64_t j_hi = std::clamp<int64_t>(ceil_div(g.W + s.pl - rw, s.sw), j_lo, width);
    const int64_t x0 = j_lo * s.sw + rw - s.pl;
    const RowPlan plan = row_plan(s.sw, j_hi - j_lo);
    uint32_t* plane = dst + g.plane_off[ph];
    for (int64_t il = 0; il < g.rows_in; ++il) {
      const int64_t y = ih0 + il - s.pt;
      uint32_t* row = plane + il * p.nq * g.Ws;
      if (y < 0 || y >= g.H) {
        for (int64_t q = 0; q < p.nq; ++q) std::fill_n(row + q * g.Ws, width, padq);
        continue;
      }
      const uint8_t* xr = x + (n * s.C * g.H + y) * g.W + x0;  // channel 0's row
      const int64_t cs = g.H * g.W;
      for (int64_t q = 0; q < p.nq; ++q) {
        uint32_t* o = row + q * g.Ws;
        for (int64_t j = 0; j < j_lo; ++j) o[j] = padq;
        for (int64_t j = j_hi; j < width; ++j) o[j] = padq;
        const int64_t c = 4 * q;
        const uint8_t* c0 = xr + c * cs;
        if (c + 3 < s.C) {
          quad_row(c0, c0 + cs, c0 + 2 * cs, c0 + 3 * cs, plan, idx, o + j_lo);
        } else {
          quad_row(c0, c + 1 < s.C ? c0 + cs : zeros, c + 2 < s.C ? c0 + 2 * cs : zeros, zeros,
                   plan, idx, o + j_lo);
        }
      }
    }
  }
  // The shifted copies: Wq words of each row, from word col of the base row.
  for (size_t k = 0; k < p.copies.size(); ++k) {
    const auto [base, col] = p.copies[k];
    const uint32_t* src = dst + g.plane_off[base] + col;
    uint32_t* out = dst + g.plane_off[p.base_rw.size() + k];
    for (int64_t r = 0; r < rows; ++r, src += g.Ws, out += g.Wq) {
      for (int64_t j = 0; j < g.Wq; j += 16) {
        _mm512_store_si512(out + j, _mm512_loadu_si512(src + j));
      }
    }
  }
}

// C tiles c0, c1 += A tile a times B tiles 6, 7 (int8 or uint8 inputs). The
// tile numbers are immediates of the instructions: literals only.
#define QEVAL_AMX_DP2(kSigned, c0, c1, a) \
  do {                                    \
    if constexpr (kSigned) {              \
      _tile_dpbssd(c0, a, 6);             \
      _tile_dpbssd(c1, a, 7);             \
    } else {                              \
      _tile_dpbsud(c0, a, 6);             \
      _tile_dpbsud(c1, a, 7);             \
    }                                     \
  } while (0)

// The sums of one or two 16-channel blocks (A tiles at a, a2) over two tiles of
// 16 outputs (chunk j's B rows of tile i at b + chunk_off[j] + rb_i *
// chunk_stride[j] + ow_i), stored as 16 rows `ld` words apart: block 0's
// at acc0 (tile 0) and acc1 (tile 1), block 1's 16 rows further on. The
// tiles are stored in that order, so that a tile's columns past the output
// row's end, which land on the next tile's first columns, are overwritten.
template <bool kSigned, bool kTwoBlocks>
QEVAL_AMX void amx_tiles(const AmxConv& p, const int8_t* a, const int8_t* a2, const int32_t* init,
                         const uint32_t* b, const AmxGeom& g, int64_t rb0, int64_t ow0, int64_t rb1,
                         int64_t ow1, int32_t* acc0, int32_t* acc1, int64_t ld) {
  constexpr int64_t kb = 64;
  const int64_t* coff = g.chunk_off.data();
  const int64_t* cstr = g.chunk_stride.data();
  _tile_loadd(0, init, 64);
  _tile_loadd(1, init, 64);
  if constexpr (kTwoBlocks) {
    _tile_loadd(2, init + 256, 64);
    _tile_loadd(3, init + 256, 64);
  }
  const int64_t nchunks = static_cast<int64_t>(p.chunks.size());
  for (int64_t j = 0; j < nchunks; ++j) {
    const int64_t st = cstr[j];
    _tile_loadd(4, a, kb);
    _tile_loadd(6, b + coff[j] + rb0 * st + ow0, st * 4);
    _tile_loadd(7, b + coff[j] + rb1 * st + ow1, st * 4);
    QEVAL_AMX_DP2(kSigned, 0, 1, 4);
    if constexpr (kTwoBlocks) {
      _tile_loadd(5, a2, kb);
      QEVAL_AMX_DP2(kSigned, 2, 3, 5);
      a2 += 16 * kb;
    }
    a += 16 * kb;
  }
  _tile_stored(0, acc0, ld * 4);
  _tile_stored(1, acc1, ld * 4);
  if constexpr (kTwoBlocks) {
    _tile_stored(2, acc0 + 16 * ld, ld * 4);
    _tile_stored(3, acc1 + 16 * ld, ld * 4);
  }
}

// The float scheme's epilogue for 8-bit outputs, 16 lanes at a time: the AVX2
// epilogue's ReqFloat form (opt_isa.cc) in 512-bit vectors, f = float(sum +
// bias) * scale clamped to [qmin - zp, qmax - zp] in float, converted in the
// current rounding mode (vcvtps2dq, as the reference's nearbyint), + zp; the
// clamped values are in the dtype's range, so vpmov[u]sdb narrows them exactly.
// Channels the vector code does not take (Epilogue::vec) go to `other`.
QEVAL_AMX inline __m512i requant_float(__m512i a, __m512i b, __m512 sc, __m512 flo, __m512 fhi,
                                       __m512i zp) {
  const __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(a, b)), sc);
  return _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(f, flo), fhi)), zp);
}

template <typename T>
QEVAL_AMX void finish_float8(const Epilogue& e, const IsaKernels& other, int64_t c0, int64_t rows,
                             const int32_t* acc, int64_t ld, int64_t n, T* dst, int64_t P) {
  const int32_t zp = e.st.y.z(), lo = e.st.y.qmin - zp, hi = e.st.y.qmax - zp;
  const __m512 flo = _mm512_set1_ps(static_cast<float>(lo)),
               fhi = _mm512_set1_ps(static_cast<float>(hi));
  const __m512i vzp = _mm512_set1_epi32(zp);
  const __mmask16 tail = static_cast<__mmask16>((1u << (n % 16)) - 1);
  for (int64_t r = 0; r < rows; ++r, acc += ld, dst += P) {
    const int64_t c = c0 + r;
    if (!e.vec[c]) {
      other.finish(e, c, 1, acc, ld, n, dst, P, 1);
      continue;
    }
    const __m512 sc = _mm512_set1_ps(e.ch[c].fscale);
    const __m512i b = _mm512_set1_epi32(static_cast<int32_t>(e.bias[c]));
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
      const __m512i v = requant_float(_mm512_loadu_si512(acc + i), b, sc, flo, fhi, vzp);
      if constexpr (std::is_same_v<T, uint8_t>) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm512_cvtusepi32_epi8(v));
      } else {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm512_cvtsepi32_epi8(v));
      }
    }
    if (i < n) {
      const __m512i v =
          requant_float(_mm512_maskz_loadu_epi32(tail, acc + i), b, sc, flo, fhi, vzp);
      if constexpr (std::is_same_v<T, uint8_t>) {
        _mm512_mask_cvtusepi32_storeu_epi8(dst + i, tail, v);
      } else {
        _mm512_mask_cvtsepi32_storeu_epi8(dst + i, tail, v);
      }
    }
  }
}

// Output rows per epilogue call: their sums of 32 channels within ~32 KB.
constexpr int64_t kAccOutputs = 256;

template <bool kSigned>
QEVAL_AMX void amx_task(const AmxConv& p, const AmxGeom& g, const Tensor& X, Tensor& Y,
                        const Epilogue& e, int64_t n, int64_t oh0, int64_t oh1, uint32_t* buf,
                        int32_t* acc, const uint8_t* zeros) {
  const AmxConvSpec& s = p.s;
  if (p.fold) {
    layout_rows_folded(p, g, static_cast<const uint8_t*>(X.raw()), n, oh0 * s.sh, buf);
  } else {
    layout_rows(p, g, static_cast<const uint8_t*>(X.raw()), n, oh0 * s.sh, zeros, buf);
  }
  const int64_t nchunks = static_cast<int64_t>(p.chunks.size()), ablock = nchunks * 16 * 64;
  const int64_t esize = static_cast<int64_t>(dtype_size(Y.dtype())), P = g.OH * g.OW;
  char* y = static_cast<char*>(Y.raw());
  // Rows of a group: their sums, OW per row, one after the other as in the
  // output, so that one epilogue call per channel block finishes them.
  const int64_t group = std::max<int64_t>(1, kAccOutputs / g.OW);
  const int64_t ld = (group * g.OW + 31) / 16 * 16;  // + a tile's slack, whole 64 bytes
  for (int64_t r0 = oh0; r0 < oh1; r0 += group) {
    const int64_t rows = std::min(group, oh1 - r0), ntiles = rows * g.tiles_per_row;
    // Tile t: output row r0 + t / tiles_per_row, columns 16 (t % tiles_per_row) on.
    // Its B rows: after row (r0 - oh0 + t / tiles_per_row) * sh * nq of a plane.
    const auto tile_rb = [&](int64_t t) { return (r0 - oh0 + t / g.tiles_per_row) * s.sh * p.nq; };
    const auto tile_ow = [&](int64_t t) { return t % g.tiles_per_row * 16; };
    const auto tile_acc = [&](int64_t t) {
      return acc + t / g.tiles_per_row * g.OW + t % g.tiles_per_row * 16;
    };
    for (int64_t mb = 0; mb < p.MB; mb += 2) {
      const int8_t* a = p.a.data() + mb * ablock;
      const int32_t* init = p.init.data() + mb * 256;
      const bool two = mb + 1 < p.MB;
      for (int64_t t = 0; t < ntiles; t += 2) {
        const int64_t t1 = std::min(t + 1, ntiles - 1);  // an odd last tile: computed twice
        if (two) {
          amx_tiles<kSigned, true>(p, a, a + ablock, init, buf, g, tile_rb(t), tile_ow(t),
                                   tile_rb(t1), tile_ow(t1), tile_acc(t), tile_acc(t1), ld);
        } else {
          amx_tiles<kSigned, false>(p, a, nullptr, init, buf, g, tile_rb(t), tile_ow(t),
                                    tile_rb(t1), tile_ow(t1), tile_acc(t), tile_acc(t1), ld);
        }
      }
      const int64_t c0 = mb * 16, nrows = std::min<int64_t>(two ? 32 : 16, s.M - c0);
      amx_finish(e, c0, nrows, acc, ld, rows * g.OW, y + ((n * s.M + c0) * P + r0 * g.OW) * esize,
                 P);
    }
  }
}

}  // namespace

// The epilogue of rows c0 .. c0 + rows of a row group (n outputs each, their
// sums ld words apart) into dst (element (r, i) at r * P + i).
QEVAL_AMX void amx_finish(const Epilogue& e, int64_t c0, int64_t rows, const int32_t* acc,
                          int64_t ld, int64_t n, void* dst, int64_t P) {
  const IsaKernels& k = kernels(Isa::kAvx512Vnni);
  if (!e.st.raw && e.st.rq.scheme == RequantScheme::kFloat && e.dtype == e.st.y.dtype) {
    if (e.dtype == DType::kUInt8) {
      finish_float8(e, k, c0, rows, acc, ld, n, static_cast<uint8_t*>(dst), P);
      return;
    }
    if (e.dtype == DType::kInt8) {
      finish_float8(e, k, c0, rows, acc, ld, n, static_cast<int8_t*>(dst), P);
      return;
    }
  }
  k.finish(e, c0, rows, acc, ld, n, dst, P, 1);
}

Status amx_run_conv(const AmxConv& p, const Tensor& X, Tensor& Y, const Epilogue& e) {
  const AmxConvSpec& s = p.s;
  AmxGeom g{};
  g.N = X.dim(0), g.H = X.dim(2), g.W = X.dim(3), g.OH = Y.dim(2), g.OW = Y.dim(3);
  if (g.N == 0 || g.OH == 0 || g.OW == 0) return Status::ok();
  g_amx_runs.fetch_add(1, std::memory_order_relaxed);
  if (s.KH == 1 && s.KW == 1 && s.sh == 1 && s.sw == 1 && s.pt == 0 && s.pl == 0 && g.OH == g.H &&
      g.OW == g.W) {
    // Pointwise: pixel i of a plane maps to output i, so the plane is laid out
    // as rows of any width dividing it: the largest multiple of 16 up to 128
    // (whole tiles), else one row (an 8x8 image: one row of 64, not 8 half
    // tiles).
    const int64_t hw = g.H * g.W;
    int64_t w = hw;
    for (int64_t c = 128; c >= 16; c -= 16) {
      if (hw % c == 0) {
        w = c;
        break;
      }
    }
    g.W = g.OW = w;
    g.H = g.OH = hw / w;
  }
  g.tiles_per_row = ceil_div(g.OW, 16);
  g.Wq = g.tiles_per_row * 16;
  g.Ws = (g.Wq + p.max_col + 15) / 16 * 16;
  const int64_t nplanes = static_cast<int64_t>(p.base_rw.size() + p.copies.size());
  // Output rows per task: the laid-out rows within ~64 KB, and enough tasks
  // for the threads: one per 1M multiply-accumulates up to 8 (a task has a
  // fixed cost, the tile configuration and scheduling, that a small
  // convolution at batch 1 would pay many times over).
  const int64_t nbases = static_cast<int64_t>(p.base_rw.size());
  const int64_t row_bytes = (nbases * g.Ws + (nplanes - nbases) * g.Wq) * p.nq * 4;
  const int64_t span = (s.KH - 1) * s.dh + 1;
  int64_t r = std::max<int64_t>(1, ((int64_t{64} << 10) / row_bytes - span) / s.sh + 1);
  r = std::min(r, g.OH);
  const int64_t macs = g.N * g.OH * g.OW * s.M * s.C * s.KH * s.KW;
  const int64_t want = std::clamp<int64_t>(macs >> 20, 1, 8);
  while (r > 1 && g.N * ceil_div(g.OH, r) < want) r = ceil_div(r, 2);
  g.rows_in = (r - 1) * s.sh + span;
  for (int64_t k = 0; k < nplanes; ++k) {
    const int64_t st = k < nbases ? g.Ws : g.Wq;
    g.plane_off.push_back(g.words);
    g.plane_stride.push_back(st);
    g.words += (g.rows_in * p.nq + 16) * st;  // + slack rows the last chunk reads
  }
  for (const AmxConv::Chunk& ch : p.chunks) {
    g.chunk_off.push_back(g.plane_off[ch.plane] + ch.row * g.plane_stride[ch.plane]);
    g.chunk_stride.push_back(g.plane_stride[ch.plane]);
  }
  const int64_t per_image = ceil_div(g.OH, r);
  const int64_t words = g.words;
  const TileConfig cfg = tile_config(p.R);
  // The epilogue's sums: 32 channels of a row group (amx_task), and the slack
  // of its last tile's columns.
  const int64_t acc_words = 32 * ((std::max<int64_t>(1, kAccOutputs / g.OW) * g.OW + 31) / 16 * 16);
  const bool is_signed = s.xdtype == DType::kInt8;
  tbb::parallel_for(
      tbb::blocked_range<int64_t>(0, g.N * per_image),
      [&](const tbb::blocked_range<int64_t>& range) {
        // Per-thread scratch; its slack rows keep whatever was there (zeros at
        // first), which only zero weights multiply.
        thread_local AlignedVec<uint32_t> buf;
        thread_local std::vector<uint8_t> zeros;
        thread_local AlignedVec<int32_t> acc;
        if (static_cast<int64_t>(buf.size()) < words) buf.resize(words, 0);
        if (static_cast<int64_t>(acc.size()) < acc_words) acc.resize(acc_words);
        if (static_cast<int64_t>(zeros.size()) < g.W + 64) zeros.resize(g.W + 64, 0);
        tiles_begin(cfg);
        for (int64_t u = range.begin(); u < range.end(); ++u) {
          const int64_t n = u / per_image, oh0 = u % per_image * r, oh1 = std::min(g.OH, oh0 + r);
          if (is_signed) {
            amx_task<true>(p, g, X, Y, e, n, oh0, oh1, buf.data(), acc.data(), zeros.data());
          } else {
            amx_task<false>(p, g, X, Y, e, n, oh0, oh1, buf.data(), acc.data(), zeros.data());
          }
        }
        tiles_end();
      });
  return Status::ok();
}

#else

Status amx_run_conv(const AmxConv&, const Tensor&, Tensor&, const Epilogue&) {
  return internal_error("AMX kernels are x86-only");
}
void amx_finish(const Epilogue& e, int64_t c0, int64_t rows, const int32_t* acc, int64_t ld,
                int64_t n, void* dst, int64_t P) {
  kernels(Isa::kScalar).finish(e, c0, rows, acc, ld, n, dst, P, 1);
}

#endif

}  // namespace qeval::kern::opt
