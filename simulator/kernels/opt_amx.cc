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
// Layout. Per image, for each column phase rw of the stride, the padded input
// rows follow each other; within a row the quads q (input channels 4q .. 4q+3)
// follow each other, each a run of Wq words: word j holds the four channels at
// padded column j * sw + rw as bytes. The word of (row ih, quad q, column j) of
// a phase is at (ih * nq + q) * Wq + j, so for one tap column kw the B rows
// (kh, q), kh = 0 .. KH - 1 (undilated rows), lie at one constant stride of Wq
// words: rows f = kh * nq + q of the flat sequence, f * Wq words after row
// oh * sh of output row oh. That sequence is cut into chunks of at most 16 B
// rows (a tile's K of at most 64 bytes); the weights of each chunk are an A
// tile of 16 output channels. Dilated rows make a chunk sequence per (kw, kh).
// A C tile is 16 output channels x 16 consecutive outputs of one output row.
//
// Work: a task is one image's range of output rows: it lays out the input rows
// they read into per-thread scratch (L1/L2-sized), then computes every tile of
// them, two C tiles of pixels x up to two blocks of 16 channels at a time (the
// eight tile registers: 4 C, 2 A, 2 B), and hands each tile's sums to the
// epilogue, which writes the NCHW output directly.
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <atomic>
#include <cstring>

#include "simulator/kernels/opt_kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#define QEVAL_AMX_X86 1
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace qeval::kern::opt {

struct AmxConv {
  AmxConvSpec s;
  int64_t nq = 0;                 // quads of input channels
  int64_t R = 0;                  // B rows (quads) per chunk: every chunk's K is 4R bytes
  int64_t MB = 0;                 // blocks of 16 output channels
  uint8_t pad = 0;                // the byte of a padding position (z_x)
  std::vector<int64_t> phase_rw;  // the column phase of each plane
  struct Chunk {
    int64_t phase, col, row;  // plane, word offset of its column, first B row (of Wq words)
  };
  std::vector<Chunk> chunks;
  std::vector<int8_t> a;      // [MB][chunk][16 channels][4R bytes]
  std::vector<int32_t> init;  // [MB][16 channels][16 lanes]: -z_x * sum(w'_c), wrapped
};

namespace {

std::atomic<int64_t> g_amx_runs{0};

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

int64_t amx_runs() { return g_amx_runs.load(); }

bool amx_usable() {
#ifdef QEVAL_AMX_X86
  static const bool ok = [] {
    if (!cpu_has(Isa::kAvx512Vnni)) return false;
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
  p->nq = ceil_div(s.C, 4);
  p->MB = ceil_div(s.M, 16);
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
  for (int64_t kw = 0; kw < s.KW; ++kw) {
    const int64_t rw = kw * s.dw % s.sw;
    auto it = std::find(p->phase_rw.begin(), p->phase_rw.end(), rw);
    const int64_t phase = it - p->phase_rw.begin();
    if (it == p->phase_rw.end()) p->phase_rw.push_back(rw);
    const int64_t col = kw * s.dw / s.sw;
    for (int64_t kh0 = 0; kh0 < (s.dh == 1 ? 1 : s.KH); ++kh0) {
      for (int64_t c = 0; c < nch; ++c) {
        std::vector<Row> rs(p->R, Row{-1, -1});
        for (int64_t r = 0; r < p->R; ++r) {
          const int64_t f = c * p->R + r;
          if (f >= seq) continue;
          rs[r] = s.dh == 1 ? Row{f / p->nq, f % p->nq} : Row{kh0, f};
        }
        const int64_t row0 = s.dh == 1 ? c * p->R : kh0 * s.dh * p->nq + c * p->R;
        p->chunks.push_back({phase, col, row0});
        rows.push_back(std::move(rs));
        chunk_kw.push_back(kw);
      }
    }
  }
  const int64_t nchunks = static_cast<int64_t>(p->chunks.size()), kb = 4 * p->R;
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
            const int64_t ch = 4 * rr.q + i;
            if (ch >= s.C) continue;
            at[m * kb + 4 * r + i] =
                static_cast<int8_t>(w[(mb * 16 + m) * K + (ch * s.KH + rr.kh) * s.KW + kw]);
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

#define QEVAL_AMX __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,amx-tile,amx-int8")))

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

// 16 bytes of each of four rows interleaved into 16 words at dst.
QEVAL_AMX inline void interleave16(__m128i a, __m128i b, __m128i c, __m128i d, uint32_t* dst) {
  const __m128i ab0 = _mm_unpacklo_epi8(a, b), ab1 = _mm_unpackhi_epi8(a, b);
  const __m128i cd0 = _mm_unpacklo_epi8(c, d), cd1 = _mm_unpackhi_epi8(c, d);
  __m128i* o = reinterpret_cast<__m128i*>(dst);
  _mm_storeu_si128(o, _mm_unpacklo_epi16(ab0, cd0));
  _mm_storeu_si128(o + 1, _mm_unpackhi_epi16(ab0, cd0));
  _mm_storeu_si128(o + 2, _mm_unpacklo_epi16(ab1, cd1));
  _mm_storeu_si128(o + 3, _mm_unpackhi_epi16(ab1, cd1));
}
// The low 8 bytes of each of four rows interleaved into 8 words at dst.
QEVAL_AMX inline void interleave8(__m128i a, __m128i b, __m128i c, __m128i d, uint32_t* dst) {
  const __m128i ab = _mm_unpacklo_epi8(a, b), cd = _mm_unpacklo_epi8(c, d);
  __m128i* o = reinterpret_cast<__m128i*>(dst);
  _mm_storeu_si128(o, _mm_unpacklo_epi16(ab, cd));
  _mm_storeu_si128(o + 1, _mm_unpackhi_epi16(ab, cd));
}
QEVAL_AMX inline __m128i load16(const uint8_t* p) {
  return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
}
QEVAL_AMX inline __m128i load8(const uint8_t* p) {
  return _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
}
// The even bytes of the 32 at p (16 bytes), of the 16 at p (low 8 bytes).
QEVAL_AMX inline __m128i even16(const uint8_t* p) {
  const __m128i lo = _mm_set1_epi16(0x00ff);
  return _mm_packus_epi16(_mm_and_si128(load16(p), lo), _mm_and_si128(load16(p + 16), lo));
}
QEVAL_AMX inline __m128i even8(const uint8_t* p) {
  const __m128i v = _mm_and_si128(load16(p), _mm_set1_epi16(0x00ff));
  return _mm_packus_epi16(v, v);
}

// Interleaves count bytes of four channel rows (stride sw) into words:
// dst[j] = (c0[j sw], c1[j sw], c2[j sw], c3[j sw]). Vector loads read no
// more than `avail` bytes from each row pointer.
QEVAL_AMX void quad_row(const uint8_t* c0, const uint8_t* c1, const uint8_t* c2, const uint8_t* c3,
                        int64_t sw, int64_t count, int64_t avail, uint32_t* dst) {
  int64_t j = 0;
  if (sw == 1) {
    for (; j + 16 <= count; j += 16) {
      interleave16(load16(c0 + j), load16(c1 + j), load16(c2 + j), load16(c3 + j), dst + j);
    }
    if (j + 8 <= count) {
      interleave8(load8(c0 + j), load8(c1 + j), load8(c2 + j), load8(c3 + j), dst + j);
      j += 8;
    }
  } else if (sw == 2) {
    for (; j + 16 <= count && 2 * j + 32 <= avail; j += 16) {
      interleave16(even16(c0 + 2 * j), even16(c1 + 2 * j), even16(c2 + 2 * j), even16(c3 + 2 * j),
                   dst + j);
    }
    if (j + 8 <= count && 2 * j + 16 <= avail) {
      interleave8(even8(c0 + 2 * j), even8(c1 + 2 * j), even8(c2 + 2 * j), even8(c3 + 2 * j),
                  dst + j);
      j += 8;
    }
  }
  for (; j < count; ++j) {
    const int64_t x = j * sw;
    dst[j] = uint32_t{c0[x]} | uint32_t{c1[x]} << 8 | uint32_t{c2[x]} << 16 | uint32_t{c3[x]} << 24;
  }
}

// The geometry of one run.
struct AmxGeom {
  int64_t N, H, W, OH, OW, Wq, rows_per_task, rows_in, plane_words, tiles_per_row;
};

// Lays out padded input rows ih0 .. ih0 + rows_in - 1 of image n into dst.
QEVAL_AMX void layout_rows(const AmxConv& p, const AmxGeom& g, const uint8_t* x,
                           const uint8_t* xend, int64_t n, int64_t ih0, const uint8_t* zeros,
                           const uint8_t* zend, uint32_t* dst) {
  const AmxConvSpec& s = p.s;
  const uint32_t padq = uint32_t{p.pad} * 0x01010101u;
  for (size_t ph = 0; ph < p.phase_rw.size(); ++ph) {
    const int64_t rw = p.phase_rw[ph];
    // Words [j_lo, j_hi) come from the image: padded column j * sw + rw - pl in [0, W).
    const int64_t j_lo = std::min(g.Wq, std::max<int64_t>(0, ceil_div(s.pl - rw, s.sw)));
    const int64_t j_hi =
        std::max(j_lo, std::min(g.Wq, std::max<int64_t>(0, ceil_div(g.W + s.pl - rw, s.sw))));
    const int64_t x0 = j_lo * s.sw + rw - s.pl;
    uint32_t* plane = dst + ph * g.plane_words;
    for (int64_t il = 0; il < g.rows_in; ++il) {
      const int64_t y = ih0 + il - s.pt;
      uint32_t* row = plane + il * p.nq * g.Wq;
      if (y < 0 || y >= g.H) {
        std::fill(row, row + p.nq * g.Wq, padq);
        continue;
      }
      for (int64_t q = 0; q < p.nq; ++q) {
        uint32_t* o = row + q * g.Wq;
        std::fill(o, o + j_lo, padq);
        std::fill(o + j_hi, o + g.Wq, padq);
        const uint8_t* c[4];
        int64_t avail = INT64_MAX;  // bytes readable from every row pointer
        for (int64_t i = 0; i < 4; ++i) {
          const int64_t ch = 4 * q + i;
          c[i] = ch < s.C ? x + ((n * s.C + ch) * g.H + y) * g.W + x0 : zeros;
          avail = std::min(avail, ch < s.C ? xend - c[i] : zend - c[i]);
        }
        quad_row(c[0], c[1], c[2], c[3], s.sw, j_hi - j_lo, avail, o + j_lo);
      }
    }
  }
}

// The sums of one or two 16-channel blocks (A tiles at a, a2) over two tiles of
// 16 outputs (B rows at b0, b1), stored as 16 rows `ld` words apart: block 0's
// at acc0 (tile b0) and acc1 (tile b1), block 1's 16 rows further on. The
// tiles are stored in that order, so that a tile's columns past the output
// row's end, which land on the next tile's first columns, are overwritten.
template <bool kSigned, bool kTwoBlocks>
QEVAL_AMX void amx_tiles(const AmxConv& p, const int8_t* a, const int8_t* a2, const int32_t* init,
                         const uint32_t* b0, const uint32_t* b1, int64_t plane_words, int64_t Wq,
                         int32_t* acc0, int32_t* acc1, int64_t ld) {
  const int64_t kb = 4 * p.R, bstride = Wq * 4;
  _tile_loadd(0, init, 64);
  _tile_loadd(1, init, 64);
  if constexpr (kTwoBlocks) {
    _tile_loadd(2, init + 256, 64);
    _tile_loadd(3, init + 256, 64);
  }
  for (const AmxConv::Chunk& ch : p.chunks) {
    const int64_t off = ch.phase * plane_words + ch.row * Wq + ch.col;
    _tile_loadd(4, a, kb);
    _tile_loadd(6, b0 + off, bstride);
    _tile_loadd(7, b1 + off, bstride);
    if constexpr (kSigned) {
      _tile_dpbssd(0, 4, 6);
      _tile_dpbssd(1, 4, 7);
    } else {
      _tile_dpbsud(0, 4, 6);
      _tile_dpbsud(1, 4, 7);
    }
    if constexpr (kTwoBlocks) {
      _tile_loadd(5, a2, kb);
      if constexpr (kSigned) {
        _tile_dpbssd(2, 5, 6);
        _tile_dpbssd(3, 5, 7);
      } else {
        _tile_dpbsud(2, 5, 6);
        _tile_dpbsud(3, 5, 7);
      }
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

// Output rows per epilogue call: their sums of 32 channels within ~32 KB.
constexpr int64_t kAccOutputs = 256;

template <bool kSigned>
QEVAL_AMX void amx_task(const AmxConv& p, const AmxGeom& g, const Tensor& X, Tensor& Y,
                        const Epilogue& e, int64_t n, int64_t oh0, int64_t oh1, uint32_t* buf,
                        int32_t* acc, const uint8_t* zeros) {
  const AmxConvSpec& s = p.s;
  const auto* x = static_cast<const uint8_t*>(X.raw());
  layout_rows(p, g, x, x + X.nbytes(), n, oh0 * s.sh, zeros, zeros + g.W + 64, buf);
  const IsaKernels& k = kernels(Isa::kAvx512Vnni);
  const int64_t nchunks = static_cast<int64_t>(p.chunks.size()), ablock = nchunks * 16 * 4 * p.R;
  const int64_t esize = static_cast<int64_t>(dtype_size(Y.dtype())), P = g.OH * g.OW;
  char* y = static_cast<char*>(Y.raw());
  // Rows of a group: their sums, OW per row, one after the other as in the
  // output, so that one epilogue call per channel block finishes them.
  const int64_t group = std::max<int64_t>(1, kAccOutputs / g.OW), ld = group * g.OW + 16;
  for (int64_t r0 = oh0; r0 < oh1; r0 += group) {
    const int64_t rows = std::min(group, oh1 - r0), ntiles = rows * g.tiles_per_row;
    // Tile t: output row r0 + t / tiles_per_row, columns 16 (t % tiles_per_row) on.
    const auto tile_b = [&](int64_t t) {
      const int64_t r = r0 - oh0 + t / g.tiles_per_row, ow = t % g.tiles_per_row * 16;
      return buf + r * s.sh * p.nq * g.Wq + ow;
    };
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
          amx_tiles<kSigned, true>(p, a, a + ablock, init, tile_b(t), tile_b(t1), g.plane_words,
                                   g.Wq, tile_acc(t), tile_acc(t1), ld);
        } else {
          amx_tiles<kSigned, false>(p, a, nullptr, init, tile_b(t), tile_b(t1), g.plane_words, g.Wq,
                                    tile_acc(t), tile_acc(t1), ld);
        }
      }
      const int64_t c0 = mb * 16, nrows = std::min<int64_t>(two ? 32 : 16, s.M - c0);
      k.finish(e, c0, nrows, acc, ld, rows * g.OW, y + ((n * s.M + c0) * P + r0 * g.OW) * esize, P,
               1);
    }
  }
}

}  // namespace

Status amx_run_conv(const AmxConv& p, const Tensor& X, Tensor& Y, const Epilogue& e) {
  const AmxConvSpec& s = p.s;
  AmxGeom g{};
  g.N = X.dim(0), g.H = X.dim(2), g.W = X.dim(3), g.OH = Y.dim(2), g.OW = Y.dim(3);
  if (g.N == 0 || g.OH == 0 || g.OW == 0) return Status::ok();
  g_amx_runs.fetch_add(1, std::memory_order_relaxed);
  g.tiles_per_row = ceil_div(g.OW, 16);
  g.Wq = g.tiles_per_row * 16 + (s.KW - 1) * s.dw / s.sw;
  // Output rows per task: the laid-out rows within ~64 KB, and enough tasks
  // for the threads (at least 8 where the output has the rows).
  const int64_t row_bytes = static_cast<int64_t>(p.phase_rw.size()) * p.nq * g.Wq * 4;
  const int64_t span = (s.KH - 1) * s.dh + 1;
  int64_t r = std::max<int64_t>(1, ((int64_t{64} << 10) / row_bytes - span) / s.sh + 1);
  r = std::min(r, g.OH);
  while (r > 1 && g.N * ceil_div(g.OH, r) < 8) r = ceil_div(r, 2);
  g.rows_per_task = r;
  g.rows_in = (r - 1) * s.sh + span;
  g.plane_words = (g.rows_in * p.nq + 16) * g.Wq;  // + slack rows the last chunk reads
  const int64_t per_image = ceil_div(g.OH, r);
  const int64_t words = static_cast<int64_t>(p.phase_rw.size()) * g.plane_words;
  const TileConfig cfg = tile_config(p.R);
  // The epilogue's sums: 32 channels of a row group (amx_task), and the slack
  // of its last tile's columns.
  const int64_t acc_words = 32 * (std::max<int64_t>(1, kAccOutputs / g.OW) * g.OW + 16);
  const bool is_signed = s.xdtype == DType::kInt8;
  tbb::parallel_for(
      tbb::blocked_range<int64_t>(0, g.N * per_image),
      [&](const tbb::blocked_range<int64_t>& range) {
        // Per-thread scratch; its slack rows keep whatever was there (zeros at
        // first), which only zero weights multiply.
        thread_local std::vector<uint32_t> buf;
        thread_local std::vector<uint8_t> zeros;
        thread_local std::vector<int32_t> acc;
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

#endif

}  // namespace qeval::kern::opt
