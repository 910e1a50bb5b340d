// Drivers of the optimized Conv2d / Linear / MatMul (opt_kernels.h): the
// eligibility checks and weight packing done once at prepare time, and per run
// the input re-layout, the tiling over output pixels and the TBB tasks. Every
// output element is computed by exactly one task.
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <memory>
#include <mutex>

#include "simulator/kernels/opt_kernels.h"

namespace qeval::kern::opt {

namespace {

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }
// ceil(a / b) for b > 0; 0 when a <= 0.
int64_t ceil_div_pos(int64_t a, int64_t b) { return a <= 0 ? 0 : (a + b - 1) / b; }

int32_t pair(int32_t lo, int32_t hi) {
  return static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint16_t>(lo)) |
                              (static_cast<uint32_t>(static_cast<uint16_t>(hi)) << 16));
}

// Per-thread scratch, grown on demand. A task uses it only between its start
// and end and makes no TBB call in between, so no other task can interleave.
std::vector<int32_t>& scratch() {
  thread_local std::vector<int32_t> s;
  return s;
}
int32_t* grow(std::vector<int32_t>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(n);
  return v.data();
}

// The re-laid-out input of a convolution is a few MB at batch 64; allocated
// afresh for every node, it costs more in page faults than the re-layout. A
// run leases a buffer; the pool keeps the two largest returned.
class BufferPool {
 public:
  struct Buffer {
    std::unique_ptr<int32_t[]> data;
    int64_t size = 0;
  };
  Buffer take(int64_t n) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto it = free_.begin(); it != free_.end(); ++it) {
        if (it->size >= n) {
          Buffer b = std::move(*it);
          free_.erase(it);
          return b;
        }
      }
    }
    return Buffer{std::unique_ptr<int32_t[]>(new int32_t[n]), n};
  }
  void give(Buffer b) {
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(std::move(b));
    std::sort(free_.begin(), free_.end(),
              [](const Buffer& x, const Buffer& y) { return x.size < y.size; });
    if (free_.size() > 2) free_.erase(free_.begin());
  }

 private:
  std::mutex mu_;
  std::vector<Buffer> free_;  // by increasing size
};

class Lease {
 public:
  explicit Lease(int64_t n) : b_(pool().take(n)) {}
  ~Lease() { pool().give(std::move(b_)); }
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  int32_t* get() const { return b_.data.get(); }

 private:
  static BufferPool& pool() {
    static BufferPool p;
    return p;
  }
  BufferPool::Buffer b_;
};

// max |x - z_x| over the input dtype's range, or -1 when it exceeds int16.
int64_t centered_input_max(const QView& x) {
  if (x.dtype != DType::kInt8 && x.dtype != DType::kUInt8 && x.dtype != DType::kInt16) return -1;
  const int64_t lo = int64_t{x.qmin} - x.z(), hi = int64_t{x.qmax} - x.z();
  if (lo < INT16_MIN || hi > INT16_MAX) return -1;
  return std::max(-lo, hi);
}

// Constant weights centred as the reference centres them, one row per output
// channel: v[r * K + k], and max |v| of each row.
struct CenteredWeights {
  int64_t rows = 0, K = 0;
  std::vector<int32_t> v;
  std::vector<int64_t> maxabs;
};

// `at(r, k)` is the flat index of row r, element k in W; the zero point of row r
// is z(r) (per-channel zero points must number `rows`). nullopt when a centred
// weight does not fit int16.
template <typename At>
std::optional<CenteredWeights> center_weights(const Tensor& W, const QView& q, int64_t rows,
                                              int64_t K, At at) {
  if (!is_integer(W.dtype()) || (q.zp.size() > 1 && static_cast<int64_t>(q.zp.size()) != rows)) {
    return std::nullopt;
  }
  CenteredWeights c;
  c.rows = rows;
  c.K = K;
  c.v.resize(rows * K);
  c.maxabs.assign(rows, 0);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t k = 0; k < K; ++k) {
      const int64_t v = W.get_int(at(r, k)) - q.z(r);
      if (v < INT16_MIN || v > INT16_MAX) return std::nullopt;
      c.v[r * K + k] = static_cast<int32_t>(v);
      c.maxabs[r] = std::max(c.maxabs[r], v < 0 ? -v : v);
    }
  }
  return c;
}

// The dtype of the node's output tensor.
DType out_dtype(const KernelArgs& a) {
  const ValueInfo* vi = a.graph.find_value(a.node.outputs[0]);
  return vi ? vi->dtype : DType::kFloat32;
}

// The overflow bound (opt_kernels.h): K * max|w_r| * max|x| < 2^31 for every row.
std::optional<std::vector<int64_t>> sum_bounds(const CenteredWeights& w, int64_t xmax) {
  std::vector<int64_t> b(w.rows);
  for (int64_t r = 0; r < w.rows; ++r) {
    b[r] = w.K * w.maxabs[r] * xmax;
    if (b[r] >= (int64_t{1} << 31)) return std::nullopt;
  }
  return b;
}

// GEMM weights: for conv group g, block mb of kRows rows, pair kk = p * T + t:
// the words (w[row][2p * T + t], w[row][(2p + 1) * T + t]) of the block's rows
// (K = Cg * T, channel-major; a missing channel or row is 0).
std::vector<int32_t> pack_gemm(const CenteredWeights& w, int64_t G, int64_t Mg, int64_t Cg,
                               int64_t T) {
  const int64_t pairs = (Cg + 1) / 2, nkk = pairs * T, MB = (Mg + kRows - 1) / kRows;
  std::vector<int32_t> out(G * MB * nkk * kRows, 0);
  for (int64_t g = 0; g < G; ++g)
    for (int64_t mb = 0; mb < MB; ++mb)
      for (int64_t r = 0; r < kRows && mb * kRows + r < Mg; ++r) {
        const int32_t* wr = w.v.data() + (g * Mg + mb * kRows + r) * w.K;
        int32_t* o = out.data() + (g * MB + mb) * nkk * kRows + r;
        for (int64_t p = 0; p < pairs; ++p)
          for (int64_t t = 0; t < T; ++t) {
            const int32_t hi = 2 * p + 1 < Cg ? wr[(2 * p + 1) * T + t] : 0;
            o[(p * T + t) * kRows] = pair(wr[2 * p * T + t], hi);
          }
      }
  return out;
}

// GEMM weights of a one-group convolution whose odd last channel c = Cg - 1 has
// its horizontal taps paired (ConvParams::hpair): pack_gemm's words for the
// Cg / 2 channel pairs, then per row kh and tap pair q the word
// (w[row][c][kh][2q], w[row][c][kh][2q + 1], 0 past the last column).
std::vector<int32_t> pack_gemm_hpair(const CenteredWeights& w, int64_t M, int64_t Cg, int64_t KH,
                                     int64_t KW) {
  const int64_t T = KH * KW, full = Cg / 2, Q = (KW + 1) / 2, nkk = full * T + KH * Q,
                MB = (M + kRows - 1) / kRows, c = Cg - 1;
  std::vector<int32_t> out(MB * nkk * kRows, 0);
  for (int64_t mb = 0; mb < MB; ++mb)
    for (int64_t r = 0; r < kRows && mb * kRows + r < M; ++r) {
      const int32_t* wr = w.v.data() + (mb * kRows + r) * w.K;
      int32_t* o = out.data() + mb * nkk * kRows + r;
      for (int64_t p = 0; p < full; ++p)
        for (int64_t t = 0; t < T; ++t) o[(p * T + t) * kRows] = pair(wr[2 * p * T + t], wr[(2 * p + 1) * T + t]);
      for (int64_t kh = 0; kh < KH; ++kh)
        for (int64_t q = 0; q < Q; ++q) {
          const int32_t* tap = wr + c * T + kh * KW + 2 * q;
          o[(full * T + kh * Q + q) * kRows] = pair(tap[0], 2 * q + 1 < KW ? tap[1] : 0);
        }
    }
  return out;
}

// One group of kLanes outputs: its input words, first output element, valid lanes.
struct Group {
  const int32_t* x;
  int64_t y;
  int64_t count;
};

// A GEMM over output groups for one run: G conv groups of Mg channels each.
struct GemmRun {
  const IsaKernels* k;
  const int32_t* w;  // pack_gemm
  int64_t nkk, G, Mg, MB;
  const int32_t* offs;
  int64_t x_gstride;  // words between the inputs of consecutive conv groups
  const Epilogue* e;
  // The output: bytes per element, elements between channels and between lanes.
  char* y;
  int64_t esize, chan_stride, lane_stride;
  // Copy each tile's input words into a contiguous panel (per thread) before
  // the weight blocks run over it: for inputs scattered over many planes (a
  // strided convolution's phase planes), which every block re-reads.
  bool pack = false;
};

// Tiles are computed kSpan at a time per weight block, so that one finish call
// covers up to kSpan * kTile outputs of a row, while the inputs of those tiles
// (kSpan * nkk * kGroups words of 32 bytes) stay in a 32 KB L1 cache.
constexpr int64_t kSpan = 4;

// The default store of run_gemm: the groups' valid lanes, groups whose outputs
// follow each other in one finish call.
struct StoreGroups {
  void operator()(const GemmRun& p, int64_t c0, int64_t rows, const int32_t* acc,
                  int64_t acc_stride, int64_t /*q0*/, int64_t ng, const Group* gr) const {
    for (int64_t i = 0, j; i < ng; i = j) {
      int64_t n = gr[i].count;
      for (j = i + 1; j < ng && gr[j - 1].count == kLanes &&
                      gr[j].y == gr[j - 1].y + kLanes * p.lane_stride;
           ++j) {
        n += gr[j].count;
      }
      p.k->finish(*p.e, c0, rows, acc + i * kLanes, acc_stride, n,
                  p.y + (gr[i].y + c0 * p.chan_stride) * p.esize, p.chan_stride, p.lane_stride);
    }
  }
};

// Computes every group of kLanes outputs: locate(q) gives group q's input
// words; store(...) hands the sums of groups q0 .. q0 + ng (lane i of the span
// at acc + i, rows acc_stride apart) of channels c0 .. c0 + rows to finish.
template <typename Locate, typename Store = StoreGroups>
void run_gemm(const GemmRun& p, int64_t ngroups, const Locate& locate, const Store& store = {}) {
  const int64_t ntiles = (ngroups + kGroups - 1) / kGroups;
  const int64_t span =
      std::clamp<int64_t>(16384 / std::max<int64_t>(1, p.nkk * kGroups * 32), 1, kSpan);
  const int64_t nspans = (ntiles + span - 1) / span;
  // pack: tile t's words for kk are at panel + t * nkk * kTile + kk * kTile.
  std::vector<int32_t> panel_offs;
  if (p.pack) {
    for (int64_t kk = 0; kk < p.nkk; ++kk) panel_offs.push_back(static_cast<int32_t>(kk * kTile));
  }
  tbb::parallel_for(
      tbb::blocked_range<int64_t>(0, nspans), [&](const tbb::blocked_range<int64_t>& range) {
        alignas(32) int32_t acc[kRows * kSpan * kTile];
        const int64_t acc_stride = span * kTile;
        int32_t* panel = p.pack ? grow(scratch(), span * p.nkk * kTile) : nullptr;
        for (int64_t sp = range.begin(); sp < range.end(); ++sp) {
          const int64_t q0 = sp * span * kGroups, ng = std::min(span * kGroups, ngroups - q0);
          const int64_t tiles = (ng + kGroups - 1) / kGroups;
          Group gr[kSpan * kGroups];
          // A short last tile repeats its last group (computed, not stored).
          for (int64_t i = 0; i < tiles * kGroups; ++i) gr[i] = locate(q0 + std::min(i, ng - 1));
          for (int64_t g = 0; g < p.G; ++g) {
            const int32_t* xs[kSpan * kGroups];
            for (int64_t i = 0; i < tiles * kGroups; ++i) xs[i] = gr[i].x + g * p.x_gstride;
            const int32_t* offs = p.offs;
            if (p.pack) {
              for (int64_t i = 0; i < tiles * kGroups; ++i) {
                int32_t* dst = panel + i / kGroups * p.nkk * kTile + i % kGroups * kLanes;
                for (int64_t kk = 0; kk < p.nkk; ++kk) {
                  std::copy_n(xs[i] + p.offs[kk], kLanes, dst + kk * kTile);
                }
                xs[i] = dst;
              }
              offs = panel_offs.data();
            }
            for (int64_t mb = 0; mb < p.MB; ++mb) {
              const int32_t* w = p.w + (g * p.MB + mb) * p.nkk * kRows;
              for (int64_t t = 0; t < tiles; ++t) {
                p.k->gemm_tile(w, xs + t * kGroups, offs, p.nkk, acc + t * kTile, acc_stride);
              }
              const int64_t c0 = g * p.Mg + mb * kRows,
                            rows = std::min<int64_t>(kRows, p.Mg - mb * kRows);
              store(p, c0, rows, acc, acc_stride, q0, ng, gr);
            }
          }
        }
      });
}

// Depthwise weights: channels are re-laid out in pairs like the GEMM's input,
// so channel m reads the low (m even) or high (m odd) half of its pair's words:
// w[m][t] is the word (w, 0) or (0, w).
std::vector<int32_t> pack_depthwise(const CenteredWeights& w) {
  std::vector<int32_t> out(w.v.size());
  for (int64_t m = 0; m < w.rows; ++m)
    for (int64_t t = 0; t < w.K; ++t) {
      const int32_t v = w.v[m * w.K + t];
      out[m * w.K + t] = m % 2 ? pair(0, v) : pair(v, 0);
    }
  return out;
}

// ---- Conv2d ------------------------------------------------------------------

struct ConvParams {
  Isa isa = Isa::kScalar;
  DType xdtype = DType::kInt8;
  int32_t zx = 0;
  int64_t M = 0, Cg = 0, KH = 0, KW = 0, G = 1, Mg = 0;
  int64_t sh = 1, sw = 1, pt = 0, pl = 0, dh = 1, dw = 1;
  bool depthwise = false;      // one input channel per group: per-tap kernel
  // Depthwise with horizontal taps in pairs (dw_pairs: undilated columns,
  // column stride 1 or 2): per channel KH x dwP words, pack_dw_pairs.
  bool dw_pairs = false;
  int64_t dwP = 0;
  std::vector<int32_t> dw_pack;
  // One group, Cg odd, KW > 1: the last channel, which has no partner, is
  // paired with itself dw columns on (its taps (kh, 2q) and (kh, 2q + 1) in one
  // word) instead of with 0, ceil(KW / 2) words a row instead of KW (an RGB
  // stem: 7x7 takes 77 pair products instead of 98). wpack is then
  // pack_gemm_hpair's.
  bool hpair = false;
  std::vector<int32_t> wpack;  // pack_gemm (pack_gemm_hpair), or pack_depthwise
  Epilogue base;               // bias is filled per run
  // Winograd F(2x2, 3x3) (3x3, stride 1, no dilation, one group), where the
  // bounds allow it (winograd_weights): the 16 transformed weight matrices, each
  // packed by pack_gemm, one after the other.
  bool winograd = false;
  std::vector<int32_t> wino_pack;
  // AMX tiles (opt_amx.cc), where the mode and the CPU have them and the
  // operands fit: every other kernel choice is then skipped.
  std::shared_ptr<const AmxConv> amx;
};

// Geometry of one run: the pair planes of one input channel pair are nph phase
// planes of Hq x Wq words (plane words apart); output rows are computed Wg (OW
// rounded up to kLanes) wide. Flat (the direct GEMM, where it wastes fewer
// lanes): the output rows are computed as one row of OH * Wq outputs, output
// t = oh * Wq + ow reading the words of word t, its Wq - OW last per row
// computed and dropped; the planes then end in zero words that the last
// group's taps read.
struct ConvGeom {
  int64_t N, C, H, W, OH, OW, Wg, Hq, Wq, plane;
  bool flat = false;
  std::vector<std::pair<int64_t, int64_t>> phases;  // (row, column) phase of each used plane
  std::vector<int32_t> tap_off;                     // per tap kh * KW + kw: word offset
  // hpair: the phases of the even taps' planes of the paired last channel, and
  // per row kh and tap pair q the word offset of tap (kh, 2q) in them.
  std::vector<std::pair<int64_t, int64_t>> hp_phases;
  std::vector<int32_t> hp_tap_off;
};

ConvGeom conv_geom(const ConvParams& cp, const Shape& xs, const Shape& ys, bool allow_flat = false) {
  ConvGeom g;
  g.N = xs[0], g.C = xs[1], g.H = xs[2], g.W = xs[3], g.OH = ys[2], g.OW = ys[3];
  if (cp.KH == 1 && cp.KW == 1 && cp.sh == 1 && cp.sw == 1 && cp.pt == 0 && cp.pl == 0 &&
      g.OH == g.H && g.OW == g.W) {
    // A pointwise convolution maps pixel i of a plane to pixel i: one row of
    // H * W pixels, so groups of kLanes never straddle image rows.
    g.W = g.OW = g.H * g.W;
    g.H = g.OH = 1;
  }
  g.Wg = round_up(g.OW, kLanes);
  const int64_t wx = (cp.KW - 1) * cp.dw / cp.sw;  // words past an output row its taps read
  g.flat = allow_flat && g.OH > 1 && round_up(g.OH * (g.OW + wx), kLanes) < g.OH * g.Wg;
  g.Hq = g.OH + (cp.KH - 1) * cp.dh / cp.sh;
  g.Wq = (g.flat ? g.OW : g.Wg) + wx;
  g.plane = g.Hq * g.Wq + (g.flat ? kLanes + wx : 0);
  // The taps (kh, kw) for kw = 0, kw_step, ...: their phase planes, in first-use
  // order, and the word offset of each tap in them.
  const auto taps = [&](int64_t kw_step, std::vector<std::pair<int64_t, int64_t>>& phases,
                        std::vector<int32_t>& offs) {
    std::vector<int64_t> index(cp.sh * cp.sw, -1);
    for (int64_t kh = 0; kh < cp.KH; ++kh)
      for (int64_t kw = 0; kw < cp.KW; kw += kw_step) {
        const int64_t rh = kh * cp.dh % cp.sh, rw = kw * cp.dw % cp.sw;
        int64_t& idx = index[rh * cp.sw + rw];
        if (idx < 0) {
          idx = static_cast<int64_t>(phases.size());
          phases.emplace_back(rh, rw);
        }
        offs.push_back(
            static_cast<int32_t>(idx * g.plane + kh * cp.dh / cp.sh * g.Wq + kw * cp.dw / cp.sw));
      }
  };
  taps(1, g.phases, g.tap_off);
  if (cp.hpair) taps(2, g.hp_phases, g.hp_tap_off);  // the even taps: (kh, 2q)
  return g;
}

// The indices i < n (of a phase plane's rows or columns) whose input
// coordinate i * s + r - pad lies in [0, extent): [lo, hi), hi >= lo.
std::pair<int64_t, int64_t> in_image(int64_t pad, int64_t extent, int64_t r, int64_t s, int64_t n) {
  const int64_t lo = std::min(n, ceil_div_pos(pad - r, s));
  return {lo, std::max(lo, std::min(n, ceil_div_pos(extent + pad - r, s)))};
}

// Writes the phase planes of input channel planes a and b (b null: 0), centred,
// into dst: word (i, j) of phase (rh, rw) holds the padded input at
// (i*sh + rh, j*sw + rw).
void build_planes(const IsaKernels& k, const ConvParams& cp, const ConvGeom& g, const Tensor& X,
                  const char* a, const char* b, int32_t* dst) {
  const DType dtype = X.dtype();
  const void* end = static_cast<const char*>(X.raw()) + X.nbytes();
  const int64_t es = static_cast<int64_t>(dtype_size(dtype));
  for (size_t ph = 0; ph < g.phases.size(); ++ph) {
    const auto [rh, rw] = g.phases[ph];
    // Rows [i_lo, i_hi) and columns [j_lo, j_hi) come from the image, the rest is padding.
    const auto [i_lo, i_hi] = in_image(cp.pt, g.H, rh, cp.sh, g.Hq);
    const auto [j_lo, j_hi] = in_image(cp.pl, g.W, rw, cp.sw, g.Wq);
    const int64_t x0 = j_lo * cp.sw + rw - cp.pl;
    int32_t* plane = dst + ph * g.plane;
    std::fill(plane, plane + i_lo * g.Wq, 0);
    std::fill(plane + i_hi * g.Wq, plane + g.plane, 0);
    const int64_t off = ((i_lo * cp.sh + rh - cp.pt) * g.W + x0) * es;
    if (cp.sh == 1 && cp.sw == 1 && j_lo == 0 && j_hi == g.Wq && g.Wq == g.W) {
      // Whole rows, consecutive in the input as in the plane: one run.
      k.pair_rows(a + off, b ? b + off : nullptr, dtype, cp.zx, 1, 0, plane + i_lo * g.Wq, 0, 1, 0,
                  (i_hi - i_lo) * g.Wq, 0, end);
    } else {
      k.pair_rows(a + off, b ? b + off : nullptr, dtype, cp.zx, cp.sw, cp.sh * g.W,
                  plane + i_lo * g.Wq, g.Wq, i_hi - i_lo, j_lo, j_hi - j_lo, g.Wq - j_hi, end);
    }
  }
}

// Writes the hpair planes of input channel plane a into dst: word (i, j) of
// phase (rh, rw) holds the padded input at (i*sh + rh, j*sw + rw) and, in its
// high half, at (i*sh + rh, j*sw + rw + dw), each centred (padding 0).
void build_hp_planes(const IsaKernels& k, const ConvParams& cp, const ConvGeom& g, const Tensor& X,
                     const char* a, int32_t* dst) {
  const DType dtype = X.dtype();
  const void* end = static_cast<const char*>(X.raw()) + X.nbytes();
  const int64_t es = static_cast<int64_t>(dtype_size(dtype));
  for (size_t ph = 0; ph < g.hp_phases.size(); ++ph) {
    const auto [rh, rw] = g.hp_phases[ph];
    const auto [i_lo, i_hi] = in_image(cp.pt, g.H, rh, cp.sh, g.Hq);
    // Words [ja_lo, ja_hi) have their low half in the image, [jb_lo, jb_hi)
    // their high half (dw columns on); [j_lo, j_hi) both.
    const auto [ja_lo, ja_hi] = in_image(cp.pl, g.W, rw, cp.sw, g.Wq);
    const auto [jb_lo, jb_hi] = in_image(cp.pl - cp.dw, g.W, rw, cp.sw, g.Wq);
    const int64_t j_lo = std::max(ja_lo, jb_lo), j_hi = std::max(j_lo, std::min(ja_hi, jb_hi));
    int32_t* plane = dst + ph * g.plane;
    std::fill(plane, plane + i_lo * g.Wq, 0);
    std::fill(plane + i_hi * g.Wq, plane + g.plane, 0);
    if (i_hi == i_lo) continue;
    if (j_hi > j_lo) {
      const int64_t off = ((i_lo * cp.sh + rh - cp.pt) * g.W + j_lo * cp.sw + rw - cp.pl) * es;
      k.pair_rows(a + off, a + off + cp.dw * es, dtype, cp.zx, cp.sw, cp.sh * g.W,
                  plane + i_lo * g.Wq, g.Wq, i_hi - i_lo, j_lo, j_hi - j_lo, g.Wq - j_hi, end);
    } else {
      std::fill(plane + i_lo * g.Wq, plane + i_hi * g.Wq, 0);
    }
    // The words with one half in the image (X's element a0 + i: the plane's i-th, centred).
    const int64_t u_lo = std::min(ja_lo, jb_lo), u_hi = std::max(ja_hi, jb_hi);
    const int64_t a0 = (a - static_cast<const char*>(X.raw())) / es;
    const auto centred = [&](int64_t i) { return load_i(X, a0 + i) - cp.zx; };
    for (int64_t i = i_lo; i < i_hi; ++i) {
      const int64_t row = (i * cp.sh + rh - cp.pt) * g.W;
      const auto word = [&](int64_t j) {
        const int64_t x = j * cp.sw + rw - cp.pl;
        const int32_t lo = j >= ja_lo && j < ja_hi ? centred(row + x) : 0;
        const int32_t hi = j >= jb_lo && j < jb_hi ? centred(row + x + cp.dw) : 0;
        plane[i * g.Wq + j] = pair(lo, hi);
      };
      for (int64_t j = u_lo; j < j_lo; ++j) word(j);
      for (int64_t j = j_hi; j < u_hi; ++j) word(j);
    }
  }
}

// A pointwise convolution (1x1, stride 1, no padding, one group): each task
// takes one image's span of up to S pixels, makes their pair words into
// per-thread scratch (pairs rows of S words, L1-sized), then every output
// channel block and the epilogue, so the re-laid-out input never goes through
// a buffer of the whole batch.
std::atomic<int64_t> g_pointwise_runs{0};

Status run_conv_pointwise(const ConvParams& cp, const ConvGeom& g, const Tensor& X, Tensor& Y,
                          const Epilogue& e) {
  g_pointwise_runs.fetch_add(1, std::memory_order_relaxed);
  const IsaKernels& k = kernels(cp.isa);
  const int64_t pairs = (cp.Cg + 1) / 2, full = cp.Cg / 2, HW = g.W, MB = (cp.M + kRows - 1) / kRows;
  const int64_t span = std::clamp<int64_t>(16384 / std::max<int64_t>(1, pairs * kGroups * 32), 1,
                                           kSpan);
  const int64_t S = span * kTile, chunks = (HW + S - 1) / S;
  const char* xb = static_cast<const char*>(X.raw());
  char* yb = static_cast<char*>(Y.raw());
  const DType xd = X.dtype();
  const int64_t xsize = static_cast<int64_t>(dtype_size(xd)),
                ysize = static_cast<int64_t>(dtype_size(Y.dtype()));
  const void* end = xb + X.nbytes();
  std::vector<int32_t> offs(pairs);
  for (int64_t p = 0; p < pairs; ++p) offs[p] = static_cast<int32_t>(p * S);
  tbb::parallel_for(
      tbb::blocked_range<int64_t>(0, g.N * chunks), [&](const tbb::blocked_range<int64_t>& range) {
        int32_t* xs = grow(scratch(), pairs * S);
        alignas(32) int32_t acc[kRows * kSpan * kTile];
        for (int64_t task = range.begin(); task < range.end(); ++task) {
          const int64_t n = task / chunks, px0 = task % chunks * S,
                        cnt = std::min(S, HW - px0);
          const int64_t tiles = (cnt + kTile - 1) / kTile;
          const char* a = xb + (n * g.C * HW + px0) * xsize;
          if (full > 0) {
            k.pair_rows(a, a + HW * xsize, xd, cp.zx, 1, 2 * HW, xs, S, full, 0, cnt, S - cnt,
                        end);
          }
          if (pairs > full) {
            k.pair_rows(a + 2 * full * HW * xsize, nullptr, xd, cp.zx, 1, 0, xs + full * S, S, 1,
                        0, cnt, S - cnt, end);
          }
          for (int64_t mb = 0; mb < MB; ++mb) {
            const int32_t* w = cp.wpack.data() + mb * pairs * kRows;
            for (int64_t t = 0; t < tiles; ++t) {
              const int32_t* x[kGroups];
              for (int64_t gi = 0; gi < kGroups; ++gi) x[gi] = xs + t * kTile + gi * kLanes;
              k.gemm_tile(w, x, offs.data(), pairs, acc + t * kTile, span * kTile);
            }
            const int64_t c0 = mb * kRows, rows = std::min<int64_t>(kRows, cp.M - c0);
            k.finish(e, c0, rows, acc, span * kTile, cnt, yb + ((n * cp.M + c0) * HW + px0) * ysize,
                     HW, 1);
          }
        }
      });
  return Status::ok();
}

std::atomic<int64_t> g_flat_runs{0}, g_hpair_runs{0}, g_packed_runs{0};

Status run_conv_gemm(const ConvParams& cp, const ConvGeom& g, const Tensor& X, Tensor& Y,
                     const Epilogue& e) {
  if (g.flat) g_flat_runs.fetch_add(1, std::memory_order_relaxed);
  if (cp.hpair) g_hpair_runs.fetch_add(1, std::memory_order_relaxed);
  const IsaKernels& k = kernels(cp.isa);
  const int64_t pairs = (cp.Cg + 1) / 2, T = cp.KH * cp.KW;
  // hpair: Cg / 2 channel pairs, then the last channel's planes.
  const int64_t full = cp.hpair ? cp.Cg / 2 : pairs;
  const int64_t pstride = static_cast<int64_t>(g.phases.size()) * g.plane,
                gstride = full * pstride + static_cast<int64_t>(g.hp_phases.size()) * g.plane,
                istride = cp.G * gstride, HW = g.H * g.W;
  // Every word is written by the re-layout, so the buffer starts uninitialised.
  const Lease x2(g.N * istride);
  const char* xb = static_cast<const char*>(X.raw());
  const int64_t xsize = static_cast<int64_t>(dtype_size(X.dtype()));
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, g.N * cp.G * pairs),
                    [&](const tbb::blocked_range<int64_t>& r) {
                      for (int64_t u = r.begin(); u < r.end(); ++u) {
                        const int64_t n = u / (cp.G * pairs), grp = u / pairs % cp.G, p = u % pairs;
                        const char* a = xb + (n * g.C + grp * cp.Cg + 2 * p) * HW * xsize;
                        int32_t* dst = x2.get() + n * istride + grp * gstride + p * pstride;
                        if (p == full) {
                          build_hp_planes(k, cp, g, X, a, dst);
                          continue;
                        }
                        const char* b = 2 * p + 1 < cp.Cg ? a + HW * xsize : nullptr;
                        build_planes(k, cp, g, X, a, b, dst);
                      }
                    });
  std::vector<int32_t> offs;
  for (int64_t p = 0; p < full; ++p)
    for (int64_t t = 0; t < T; ++t) offs.push_back(static_cast<int32_t>(p * pstride + g.tap_off[t]));
  for (const int32_t off : g.hp_tap_off) offs.push_back(static_cast<int32_t>(full * pstride + off));
  const int64_t P = g.OH * g.OW;
  const GemmRun run{.k = &k,
                    .w = cp.wpack.data(),
                    .nkk = static_cast<int64_t>(offs.size()),
                    .G = cp.G,
                    .Mg = cp.Mg,
                    .MB = (cp.Mg + kRows - 1) / kRows,
                    .offs = offs.data(),
                    .x_gstride = gstride,
                    .e = &e,
                    .y = static_cast<char*>(Y.raw()),
                    .esize = static_cast<int64_t>(dtype_size(Y.dtype())),
                    .chan_stride = P,
                    .lane_stride = 1,
                    // Where an image's planes exceed the L1 cache and a tile's words
                    // lie in many of them (>= 16 channel pairs), which every block
                    // re-reads: resnet18's strided 3x3 and 1x1 layers 8-33% faster.
                    // Not for few pairs (a tile's taps then lie in few plane rows,
                    // read in order already: the RGB stem 6-15% slower packed, resnet8's
                    // 8-pair layer2.conv1 25%) nor for planes within L1 (resnet8's
                    // other strided layers 9-27% slower). Measured 2026-11-24.
                    .pack = (cp.Mg + kRows - 1) / kRows >= 3 && pairs >= 16 &&
                            gstride * 4 > (int64_t{32} << 10)};
  if (run.pack) g_packed_runs.fetch_add(1, std::memory_order_relaxed);
  if (g.flat) {
    // Group q: lanes t0 .. t0 + kLanes of image n's flat output row.
    const int64_t per_image = ceil_div_pos(g.OH * g.Wq, kLanes), lanes = per_image * kLanes;
    const auto store = [&](const GemmRun& p, int64_t c0, int64_t rows, const int32_t* acc,
                           int64_t acc_stride, int64_t q0, int64_t ng, const Group*) {
      // Runs of lanes that are one output row's, each clipped to the span.
      for (int64_t i = 0; i < ng * kLanes;) {
        const int64_t q = q0 + i / kLanes, n = q / per_image,
                      t = q % per_image * kLanes + i % kLanes, oh = t / g.Wq, ow = t % g.Wq;
        if (oh >= g.OH) {
          i += lanes - t;  // past the image's last row: the next image
        } else if (ow >= g.OW) {
          i += g.Wq - ow;  // the dropped outputs past a row's end
        } else {
          const int64_t cnt = std::min(g.OW - ow, ng * kLanes - i);
          p.k->finish(*p.e, c0, rows, acc + i, acc_stride, cnt,
                      p.y + (n * cp.M * P + oh * g.OW + ow + c0 * p.chan_stride) * p.esize,
                      p.chan_stride, p.lane_stride);
          i += cnt;
        }
      }
    };
    run_gemm(
        run, g.N * per_image,
        [&](int64_t q) {
          return Group{x2.get() + q / per_image * istride + q % per_image * kLanes, 0, kLanes};
        },
        store);
    return Status::ok();
  }
  const int64_t gpr = g.Wg / kLanes, per_image = g.OH * gpr;
  run_gemm(run, g.N * per_image, [&](int64_t q) {
    const int64_t n = q / per_image, oh = q % per_image / gpr, ow = q % gpr * kLanes;
    return Group{x2.get() + n * istride + oh * g.Wq + ow, n * cp.M * P + oh * g.OW + ow,
                 std::min<int64_t>(kLanes, g.OW - ow)};
  });
  return Status::ok();
}

Status run_conv_depthwise(const ConvParams& cp, const ConvGeom& g, const Tensor& X, Tensor& Y,
                          const Epilogue& e) {
  const IsaKernels& k = kernels(cp.isa);
  const int64_t T = cp.KH * cp.KW, HW = g.H * g.W,
                planes = static_cast<int64_t>(g.phases.size()) * g.plane;
  const char* xb = static_cast<const char*>(X.raw());
  char* yb = static_cast<char*>(Y.raw());
  const int64_t xsize = static_cast<int64_t>(dtype_size(X.dtype())),
                ysize = static_cast<int64_t>(dtype_size(Y.dtype()));
  const int64_t pairs = (cp.M + 1) / 2;
  tbb::parallel_for(
      tbb::blocked_range<int64_t>(0, g.N * pairs), [&](const tbb::blocked_range<int64_t>& r) {
        int32_t* pl = grow(scratch(), planes + g.OH * g.Wg);
        int32_t* acc = pl + planes;
        for (int64_t np = r.begin(); np < r.end(); ++np) {
          const int64_t n = np / pairs, m0 = np % pairs * 2;
          const char* a = xb + (n * g.C + m0) * HW * xsize;
          build_planes(k, cp, g, X, a, m0 + 1 < cp.M ? a + HW * xsize : nullptr, pl);
          for (int64_t m = m0; m < std::min(m0 + 2, cp.M); ++m) {
            char* y = yb + (n * cp.M + m) * g.OH * g.OW * ysize;
            for (int64_t oh = 0; oh < g.OH; ++oh) {
              k.dw_row(pl + oh * g.Wq, g.tap_off.data(), cp.wpack.data() + m * T, T, g.Wg,
                       acc + oh * g.Wg);
            }
            if (g.Wg == g.OW) {  // the output rows follow each other: one call
              k.finish(e, m, 1, acc, 0, g.OH * g.OW, y, 0, 1);
            } else {
              for (int64_t oh = 0; oh < g.OH; ++oh) {
                k.finish(e, m, 1, acc + oh * g.Wg, 0, g.OW, y + oh * g.OW * ysize, 0, 1);
              }
            }
          }
        }
      });
  return Status::ok();
}

// Depthwise weights for dw_pairs: per channel m, row kh, pair q the word
// (w[m][kh][2q], w[m][kh][2q + 1], 0 past the last column).
std::vector<int32_t> pack_dw_pairs(const CenteredWeights& w, int64_t KH, int64_t KW) {
  const int64_t P = (KW + 1) / 2;
  std::vector<int32_t> out(w.rows * KH * P);
  for (int64_t m = 0; m < w.rows; ++m)
    for (int64_t kh = 0; kh < KH; ++kh)
      for (int64_t q = 0; q < P; ++q) {
        const int32_t* r = w.v.data() + m * w.K + kh * KW;
        out[(m * KH + kh) * P + q] = pair(r[2 * q], 2 * q + 1 < KW ? r[2 * q + 1] : 0);
      }
  return out;
}

// Depthwise, one task per image and channel: the channel's centred int16 plane
// (padding 0), dw_pairs, then the epilogue; a task per input channel makes
// all the outputs that channel feeds. One dw_pairs row per output row, or, for
// small images with equal row and column strides, the output rows as one long
// row of the plane's width ps: output t = oh * ps + j reads plane element
// s * t + kh * dh * ps + kw, so that few lanes are wasted; the ps - OW outputs
// past each row's end are computed and dropped.
std::atomic<int64_t> g_dw_pairs_runs{0};

Status run_conv_dw_pairs(const ConvParams& cp, const Tensor& X, Tensor& Y, const Epilogue& e) {
  g_dw_pairs_runs.fetch_add(1, std::memory_order_relaxed);
  const IsaKernels& k = kernels(cp.isa);
  const int64_t N = X.dim(0), C = X.dim(1), H = X.dim(2), W = X.dim(3), OH = Y.dim(2),
                OW = Y.dim(3);
  if (OH <= 0 || OW <= 0 || N == 0) return Status::ok();
  const int64_t lanes = cp.sw == 1 ? 2 * kLanes : kLanes;
  const int64_t rows = (OH - 1) * cp.sh + (cp.KH - 1) * cp.dh + 1;  // plane rows used
  // A row holds the padded image row and, flat, the taps of its outputs. Flat
  // where it computes fewer outputs per row than rounding OW up to the lanes.
  const int64_t flat_ps = std::max(cp.pl + W, cp.sw * (OW - 1) + 2 * cp.dwP);
  const bool flat = cp.sh == cp.sw && flat_ps < round_up(OW, lanes);
  int64_t ps = 0, ow = 0, orows = 0;
  if (flat) {
    ps = flat_ps;
    ow = round_up(OH * ps, lanes);
    orows = 1;
  } else {
    ow = round_up(OW, lanes);
    ps = round_up(std::max(cp.sw * ow + 2 * cp.dwP + 16, cp.pl + W), 16);
    orows = OH;
  }
  // dw_pairs reads up to element sw * (ow - 1) + 2P + 15 past a row's start.
  const int64_t last_row = flat ? (cp.KH - 1) * cp.dh : rows - 1;
  const int64_t elems = std::max(rows * ps, last_row * ps + cp.sw * ow + 2 * cp.dwP + 16);
  const int64_t plane_words = (elems + 1) / 2;
  const char* xb = static_cast<const char*>(X.raw());
  char* yb = static_cast<char*>(Y.raw());
  const DType xd = X.dtype();
  const int64_t xsize = static_cast<int64_t>(dtype_size(xd)),
                ysize = static_cast<int64_t>(dtype_size(Y.dtype()));
  const int64_t wcount = cp.KH * cp.dwP;
  const int64_t M = cp.M, mult = cp.Mg;  // input channel c feeds outputs c * mult ..
  tbb::parallel_for(
      tbb::blocked_range<int64_t>(0, N * C), [&](const tbb::blocked_range<int64_t>& r) {
        int32_t* buf = grow(scratch(), plane_words + orows * ow);
        int16_t* pl = reinterpret_cast<int16_t*>(buf);
        int32_t* acc = buf + plane_words;
        // The padding is never written below: zeroed once for all channels of the range.
        std::fill(buf, buf + plane_words, 0);
        const int64_t i_lo = std::min(rows, cp.pt), i_hi = std::max(i_lo, std::min(rows, cp.pt + H));
        for (int64_t nc = r.begin(); nc < r.end(); ++nc) {
          const int64_t n = nc / C, c = nc % C;
          const char* src = xb + (nc * H + i_lo - cp.pt) * W * xsize;
          k.center_rows(src, xd, cp.zx, W, pl + i_lo * ps + cp.pl, ps, i_hi - i_lo, W);
          for (int64_t m = c * mult; m < (c + 1) * mult; ++m) {
            k.dw_pairs(pl, ps, cp.sh, cp.dh, cp.sw, cp.KH, cp.dwP, cp.dw_pack.data() + m * wcount,
                       orows, ow, acc);
            char* y = yb + (n * M + m) * OH * OW * ysize;
            const int64_t astride = flat ? ps : ow;  // between output rows in acc
            if (astride != OW) {
              // The rows' outputs made consecutive (forward: row oh moves down, astride > OW).
              for (int64_t oh = 1; oh < OH; ++oh) {
                const int32_t* from = acc + oh * astride;
                int32_t* to = acc + oh * OW;
                for (int64_t j = 0; j < OW; ++j) to[j] = from[j];
              }
            }
            k.finish(e, m, 1, acc, 0, OH * OW, y, 0, 1);
          }
        }
      });
  return Status::ok();
}

// ---- Winograd F(2x2, 3x3) ----------------------------------------------------
//
// Y = A^T [(G g G^T) . (B^T d B)] A computes a 2x2 block of a 3x3 stride-1
// convolution from a 4x4 input patch d with 16 products per channel instead
// of 36 (Lavin & Gray). With G' = 2G, whose entries are integers, every step is
// integer arithmetic and the result is 4Y exactly, Y being the convolution's
// sum itself; the kernels shift it right by 2. Exactness: the transformed
// input B^T d B is a sum of at most 4 centred inputs (|v| <= 4 max|x|), the
// transformed weights G' g G'^T of at most 9 weights times 4 (|u| <= 36
// max|w|); both must fit int16, and for every output channel m
//   sum over xi of (sum over c of |u_xi[m][c]|) * 4 max|x| < 2^31
// bounds every partial sum of the GEMMs and of the output transform, so no
// int32 sum wraps and 4Y / 4 is the reference's exact sum. Bias and
// requantization are the same Epilogue as the direct kernel's.

// The 16 transformed weight matrices u_xi[m][c] of centred 3x3 weights w
// (rows M, K = C * 9), each packed by pack_gemm; nullopt where the bound fails.
std::optional<std::vector<int32_t>> winograd_weights(const CenteredWeights& w, int64_t C,
                                                     int64_t xmax) {
  static constexpr int kG[4][3] = {{2, 0, 0}, {1, 1, 1}, {1, -1, 1}, {0, 0, 2}};
  const int64_t M = w.rows, vmax = 4 * xmax;
  if (vmax > INT16_MAX) return std::nullopt;
  std::vector<CenteredWeights> u(16);
  for (CenteredWeights& t : u) {
    t.rows = M;
    t.K = C;
    t.v.assign(M * C, 0);
    t.maxabs.assign(M, 0);
  }
  for (int64_t m = 0; m < M; ++m) {
    int64_t bound = 0;
    for (int64_t c = 0; c < C; ++c) {
      const int32_t* g = w.v.data() + m * w.K + c * 9;
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) {
          int64_t v = 0;
          for (int a = 0; a < 3; ++a)
            for (int b = 0; b < 3; ++b) v += int64_t{kG[i][a]} * kG[j][b] * g[a * 3 + b];
          if (v < INT16_MIN || v > INT16_MAX) return std::nullopt;
          u[4 * i + j].v[m * C + c] = static_cast<int32_t>(v);
          bound += (v < 0 ? -v : v) * vmax;
        }
    }
    if (bound >= (int64_t{1} << 31)) return std::nullopt;
  }
  std::vector<int32_t> out;
  for (const CenteredWeights& t : u) {
    const std::vector<int32_t> p = pack_gemm(t, 1, M, C, 1);
    out.insert(out.end(), p.begin(), p.end());
  }
  return out;
}

// Fewer input channels leave the 16 GEMMs too short to pay for the transforms.
constexpr int64_t kWinogradMinChannels = 8;

// Tiles per row of an output width, and that count rounded up to whole vectors.
struct WinoTiles {
  int64_t th, tw, twr;
};
WinoTiles wino_tiles(int64_t OH, int64_t OW) {
  const int64_t tw = (OW + 1) / 2;
  return {(OH + 1) / 2, tw, round_up(tw, kLanes)};
}
// Winograd pays where the rows of tiles waste few vector lanes; rows of 4
// tiles (7- or 8-wide outputs) fill a vector two at a time.
bool wino_worth(int64_t OW) {
  const WinoTiles t = wino_tiles(1, OW);
  return 4 * t.twr <= 5 * t.tw || t.tw == 4;  // rows of 4 tiles: two per vector
}

// Tile rows per task: near `tiles` tiles, the count among R0/2 .. 2 R0 rows
// (R0 = tiles / tw) whose tasks compute the fewest words of V (each task's
// tiles rounded up to a vector), the closest to R0 on a tie. Rows of 4 tiles
// (twr = 4, two per vector) keep R0.
int64_t wino_rows(const WinoTiles& wt, int64_t twr, int64_t tiles) {
  const int64_t r0 = std::clamp<int64_t>(tiles / twr, 1, wt.th);
  if (twr != wt.twr) return r0;
  int64_t best = r0, best_cost = -1;
  for (int64_t r = std::max<int64_t>(1, r0 / 2); r <= std::min(wt.th, 2 * r0); ++r) {
    const int64_t full = wt.th / r, rest = wt.th % r;
    const int64_t cost = full * round_up(r * wt.tw, kLanes) + round_up(rest * wt.tw, kLanes);
    const auto dist = [&](int64_t x) { return x > r0 ? x - r0 : r0 - x; };
    if (best_cost < 0 || cost < best_cost || (cost == best_cost && dist(r) < dist(best))) {
      best = r;
      best_cost = cost;
    }
  }
  return best;
}

std::atomic<int64_t> g_winograd_runs{0};

Status run_conv_winograd(const ConvParams& cp, const ConvGeom& g, const Tensor& X, Tensor& Y,
                         const Epilogue& e) {
  g_winograd_runs.fetch_add(1, std::memory_order_relaxed);
  const IsaKernels& k = kernels(cp.isa);
  const WinoTiles wt = wino_tiles(g.OH, g.OW);
  // Rows of 4 tiles (8-wide outputs): two tile rows per vector (wino_in2 / wino_out2).
  const bool two = wt.tw == 4;
  const int64_t twr = two ? 4 : wt.twr;
  const int64_t pairs = (cp.Cg + 1) / 2, MB = (cp.M + kRows - 1) / kRows;
  const int64_t HW = g.H * g.W, Wq = twr + 1;
  // A task: image n, tile rows [ty0, ty0 + R): tiles enough that the task's
  // transformed input V (16 matrices of pairs x tiles words) stays near 256 KB,
  // within L2 while every block of kRows channels reads it again: 128 tiles up to
  // 32 channel pairs, fewer for wider layers, at least 32
  // (resnet8 best at 128, resnet18's 128-512 channel layers at 32-64; measured).
  const int64_t tiles = std::clamp<int64_t>((int64_t{256} << 10) / (16 * 4 * pairs), int64_t{32}, int64_t{128});
  const int64_t R = wino_rows(wt, twr, tiles), chunks = (wt.th + R - 1) / R;
  // Rows of V and M hold the tiles densely, tile (ty, tx) at word ty * tw + tx:
  // the transforms work on whole vectors (twr tiles a row), the lanes past a
  // row's tw tiles spilling into the next row, which is written after it (or,
  // after the last row, into the padding that follows).
  const int64_t TB = round_up(R * wt.tw, kLanes);  // tiles (words) per row of V and M
  const int64_t nr = 2 * R + 4, plane = nr * Wq;  // padded input rows of a chunk
  const int64_t zw = 2 * twr;                    // int32 sums per output row in Z
  // Strides between the 16 matrices of V and M, padded off multiples of 4 KB
  // (loads and stores 4 KB apart collide in the L1 cache).
  const int64_t vxs = pairs * TB + 16, mxs = kRows * TB + 16;
  const int64_t s_planes = pairs * 2 * plane, s_v = 16 * vxs, s_m = 16 * mxs, s_z = 2 * (R + 1) * zw;
  const char* xb = static_cast<const char*>(X.raw());
  char* yb = static_cast<char*>(Y.raw());
  const DType xd = X.dtype();
  const int64_t xsize = static_cast<int64_t>(dtype_size(xd)),
                ysize = static_cast<int64_t>(dtype_size(Y.dtype()));
  const void* end = xb + X.nbytes();
  const int64_t wblock = pairs * kRows;  // words of one packed block of kRows rows
  // Too few (image, tile rows) tasks to keep every thread busy (batch 1, small
  // late layers: resnet18's layer4 is one task): each is split over S ranges of
  // channel blocks, every split transforming the same input. Each output
  // element is still computed by one task in the same order, so the results do
  // not depend on S or the thread count.
  const int64_t want = 2 * static_cast<int64_t>(tbb::this_task_arena::max_concurrency());
  // (at least 4 blocks per split: on resnet8's 16-64 channel layers the repeated
  // input transform costs more than the idle thread; measured)
  const int64_t S = std::clamp<int64_t>((want + g.N * chunks - 1) / (g.N * chunks), 1, std::max<int64_t>(1, MB / 4));
  tbb::parallel_for(
      tbb::blocked_range<int64_t>(0, g.N * chunks * S), [&](const tbb::blocked_range<int64_t>& range) {
        int32_t* pl = grow(scratch(), s_planes + s_v + s_m + s_z);
        int32_t* v = pl + s_planes;
        int32_t* mb = v + s_v;
        int32_t* z = mb + s_m;
        for (int64_t task_s = range.begin(); task_s < range.end(); ++task_s) {
          const int64_t task = task_s / S, split = task_s % S;
          const int64_t b_lo = MB * split / S, b_hi = MB * (split + 1) / S;  // channel blocks
          const int64_t n = task / chunks, ty0 = task % chunks * R,
                        rows = std::min(R, wt.th - ty0);  // tile rows of this task
          const int64_t r0 = 2 * ty0;                      // first padded input row
          // Even / odd column planes of padded rows r0 .. r0 + 2 rows + 1.
          for (int64_t p = 0; p < pairs; ++p) {
            const char* a = xb + (n * g.C + 2 * p) * HW * xsize;
            const char* b = 2 * p + 1 < cp.Cg ? a + HW * xsize : nullptr;
            for (int64_t rw = 0; rw < 2; ++rw) {
              int32_t* dst = pl + (p * 2 + rw) * plane;
              // (two: an odd last tile row is paired with one more, computed and dropped)
              const int64_t used = 2 * (two ? round_up(rows, 2) : rows) + 2;
              const auto [i_lo, i_hi] = in_image(cp.pt, g.H, r0, 1, used);
              const auto [j_lo, j_hi] = in_image(cp.pl, g.W, rw, 2, Wq);
              std::fill(dst, dst + i_lo * Wq, 0);
              std::fill(dst + i_hi * Wq, dst + used * Wq, 0);
              if (i_hi > i_lo) {
                const int64_t off = ((r0 + i_lo - cp.pt) * g.W + 2 * j_lo + rw - cp.pl) * xsize;
                k.pair_rows(a + off, b ? b + off : nullptr, xd, cp.zx, 2, g.W, dst + i_lo * Wq, Wq,
                            i_hi - i_lo, j_lo, j_hi - j_lo, Wq - j_hi, end);
              }
            }
          }
          // Input transform: V[xi][p][t], t = tile row * tw + tile column.
          const int64_t ntiles = rows * wt.tw;
          for (int64_t p = 0; p < pairs; ++p) {
            const int32_t* e0 = pl + p * 2 * plane;
            if (two) {
              for (int64_t ty = 0; ty < rows; ty += 2) {
                k.wino_in2(e0 + 2 * ty * Wq, e0 + plane + 2 * ty * Wq, Wq, v + p * TB + ty * wt.tw,
                           vxs);
              }
            } else {
              for (int64_t ty = 0; ty < rows; ++ty) {
                k.wino_in(e0 + 2 * ty * Wq, e0 + plane + 2 * ty * Wq, Wq, twr,
                          v + p * TB + ty * wt.tw, vxs);
              }
            }
            // The words of V past the tiles are read by the last micro-tile: zero.
            if (ntiles < TB) {
              for (int64_t xi = 0; xi < 16; ++xi) {
                int32_t* row = v + xi * vxs + p * TB;
                std::fill(row + ntiles, row + TB, 0);
              }
            }
          }
          const int64_t oh0 = 2 * ty0, ohs = std::min(2 * rows, g.OH - oh0);
          for (int64_t b = b_lo; b < b_hi; ++b) {
            // 16 GEMMs for kRows channels: M[xi][r][t] = sum over c of u_xi[m][c] v_xi[c][t].
            k.wino_gemm(cp.wino_pack.data() + b * wblock, MB * wblock, v, vxs, pairs, TB,
                        round_up(ntiles, kLanes), mb, mxs);
            // Output transform and the epilogue of those channels.
            for (int64_t r = 0; r < kRows && b * kRows + r < cp.M; ++r) {
              const int64_t m = b * kRows + r;
              if (two) {
                for (int64_t ty = 0; ty < rows; ty += 2) {
                  k.wino_out2(mb + r * TB + ty * wt.tw, mxs, z + 2 * ty * zw, zw);
                }
              } else {
                for (int64_t ty = 0; ty < rows; ++ty) {
                  k.wino_out(mb + r * TB + ty * wt.tw, mxs, twr, z + 2 * ty * zw, zw);
                }
              }
              char* y = yb + ((n * cp.M + m) * g.OH + oh0) * g.OW * ysize;
              if (zw == g.OW) {
                k.finish(e, m, 1, z, 0, ohs * g.OW, y, 0, 1);
              } else {
                for (int64_t i = 0; i < ohs; ++i) {
                  k.finish(e, m, 1, z + i * zw, 0, g.OW, y + i * g.OW * ysize, 0, 1);
                }
              }
            }
          }
        }
      });
  return Status::ok();
}

// ---- Linear / MatMul: Y[row][c] = sum_k x[row][k] * w[c][k] -------------------

struct RowsParams {
  Isa isa = Isa::kScalar;
  DType xdtype = DType::kInt8;
  int32_t zx = 0;
  int64_t K = 0, channels = 0;
  std::vector<int32_t> wpack;
  Epilogue base;
};

Status run_rows(const RowsParams& rp, const Tensor& X, const Tensor* B, Tensor& Y) {
  const IsaKernels& k = kernels(rp.isa);
  const int64_t rows = X.numel() / rp.K, Rp = round_up(rows, kLanes), pairs = (rp.K + 1) / 2;
  Epilogue e = rp.base;
  e.set_bias(B);
  std::vector<int16_t> xc(X.numel());
  k.center(X.raw(), X.dtype(), rp.zx, xc.data(), X.numel());
  // Words [pair][row]: kLanes consecutive rows of one channel pair are adjacent.
  std::vector<int32_t> x2(pairs * Rp, 0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t p = 0; p < pairs; ++p) {
      x2[p * Rp + r] = pair(xc[r * rp.K + 2 * p], 2 * p + 1 < rp.K ? xc[r * rp.K + 2 * p + 1] : 0);
    }
  std::vector<int32_t> offs(pairs);
  for (int64_t p = 0; p < pairs; ++p) offs[p] = static_cast<int32_t>(p * Rp);
  const GemmRun run{.k = &k,
                    .w = rp.wpack.data(),
                    .nkk = pairs,
                    .G = 1,
                    .Mg = rp.channels,
                    .MB = (rp.channels + kRows - 1) / kRows,
                    .offs = offs.data(),
                    .x_gstride = 0,
                    .e = &e,
                    .y = static_cast<char*>(Y.raw()),
                    .esize = static_cast<int64_t>(dtype_size(Y.dtype())),
                    .chan_stride = 1,
                    .lane_stride = rp.channels};
  run_gemm(run, Rp / kLanes, [&](int64_t q) {
    return Group{x2.data() + q * kLanes, q * kLanes * rp.channels,
                 std::min<int64_t>(kLanes, rows - q * kLanes)};
  });
  return Status::ok();
}

// Shared by Linear and MatMul once the weights are centred as rows; null when
// the reference must run.
std::shared_ptr<const RowsParams> rows_params(const KernelArgs& a, const OutStage& st,
                                              const std::optional<CenteredWeights>& w) {
  const QView qx = qview(a.graph, a.node.inputs[0]);
  const int64_t xmax = centered_input_max(qx);
  if (!w || xmax < 0) return nullptr;
  auto bounds = sum_bounds(*w, xmax);
  if (!bounds) return nullptr;
  auto rp = std::make_shared<RowsParams>();
  rp->isa = isa_of(a.mode);
  rp->xdtype = qx.dtype;
  rp->zx = qx.z();
  rp->K = w->K;
  rp->channels = w->rows;
  rp->wpack = pack_gemm(*w, 1, w->rows, w->K, 1);
  rp->base.st = st;
  rp->base.dtype = out_dtype(a);
  rp->base.sum_bound = std::move(*bounds);
  rp->base.prepare();
  return rp;
}

}  // namespace

std::optional<EvalFn> prepare_conv2d(const KernelArgs& a, const OutStage& st,
                                     const EvalFn& reference) {
  const Node& n = a.node;
  const Tensor* W = a.graph.find_constant(n.inputs[1]);
  if (st.is_float || !W || W->rank() != 4) return std::nullopt;
  const QView qx = qview(a.graph, n.inputs[0]), qw = qview(a.graph, n.inputs[1]);
  const int64_t xmax = centered_input_max(qx);
  const auto strides = n.attr_ints("strides", {1, 1});
  const auto pads = n.attr_ints("pads", {0, 0, 0, 0});
  const auto dil = n.attr_ints("dilations", {1, 1});
  const int64_t group = n.attr_int("group", 1);
  const int64_t M = W->dim(0), Cg = W->dim(1), KH = W->dim(2), KW = W->dim(3);
  if (xmax < 0 || strides.size() != 2 || pads.size() != 4 || dil.size() != 2 || group < 1 ||
      M % group != 0 || strides[0] < 1 || strides[1] < 1 || dil[0] < 1 || dil[1] < 1 ||
      pads[0] < 0 || pads[1] < 0 || M == 0 || Cg == 0 || KH == 0 || KW == 0) {
    return std::nullopt;
  }
  const int64_t K = Cg * KH * KW;
  auto w = center_weights(*W, qw, M, K, [K](int64_t r, int64_t k) { return r * K + k; });
  if (!w) return std::nullopt;
  auto bounds = sum_bounds(*w, xmax);
  if (!bounds) return std::nullopt;
  auto cp = std::make_shared<ConvParams>();
  cp->isa = isa_of(a.mode);
  cp->xdtype = qx.dtype;
  cp->zx = qx.z();
  cp->M = M;
  cp->Cg = Cg;
  cp->KH = KH;
  cp->KW = KW;
  cp->G = group;
  cp->Mg = M / group;
  cp->sh = strides[0];
  cp->sw = strides[1];
  cp->pt = pads[0];
  cp->pl = pads[1];
  cp->dh = dil[0];
  cp->dw = dil[1];
  if (group == 1 && uses_amx(a.mode)) {
    const AmxConvSpec spec{.M = M, .C = Cg, .KH = KH, .KW = KW, .sh = cp->sh, .sw = cp->sw,
                           .pt = cp->pt, .pl = cp->pl, .dh = cp->dh, .dw = cp->dw,
                           .xdtype = qx.dtype, .zx = cp->zx};
    cp->amx = amx_prepare_conv(spec, w->v.data());
  }
  // One input channel per output channel: a per-tap kernel; one input channel
  // feeding several outputs (a stem) is a GEMM over channel pairs (0 paired).
  cp->depthwise = Cg == 1 && cp->Mg == 1;
  cp->hpair = group == 1 && Cg % 2 == 1 && KW > 1 && !cp->depthwise;
  // The other kernels' weights only where AMX does not take the convolution.
  if (!cp->amx) {
    cp->wpack = cp->depthwise ? pack_depthwise(*w)
                : cp->hpair   ? pack_gemm_hpair(*w, M, Cg, KH, KW)
                              : pack_gemm(*w, group, cp->Mg, Cg, KH * KW);
  }
  // One input channel per group (depthwise, or a stem over one channel, each
  // input channel feeding Mg outputs): the paired-tap kernel where it applies.
  if (Cg == 1 && cp->dw == 1 && (cp->sw == 1 || cp->sw == 2) && !cp->amx) {
    cp->dw_pairs = true;
    cp->dwP = (KW + 1) / 2;
    cp->dw_pack = pack_dw_pairs(*w, KH, KW);
  }
  cp->base.st = st;
  cp->base.dtype = out_dtype(a);
  cp->base.sum_bound = std::move(*bounds);
  cp->base.prepare();
  if (group == 1 && KH == 3 && KW == 3 && cp->sh == 1 && cp->sw == 1 && cp->dh == 1 &&
      cp->dw == 1 && Cg >= kWinogradMinChannels && !cp->depthwise && !cp->amx) {
    if (auto u = winograd_weights(*w, Cg, xmax)) {
      cp->winograd = true;
      cp->wino_pack = std::move(*u);
    }
  }
  return EvalFn(
      [cp, reference](const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) -> Status {
        const Tensor& X = *in[0];
        const Tensor* B = in.size() > 2 ? in[2] : nullptr;
        Tensor& Y = *out[0];
        if (X.rank() != 4 || Y.rank() != 4 || X.dtype() != cp->xdtype ||
            Y.dtype() != cp->base.dtype || X.dim(1) != cp->G * cp->Cg || Y.dim(0) != X.dim(0) ||
            Y.dim(1) != cp->M || (B && B->numel() < cp->M)) {
          return reference(in, out);  // what the specification does with it
        }
        Epilogue e = cp->base;
        e.set_bias(B);
        if (cp->amx) return amx_run_conv(*cp->amx, X, Y, e);
        // (flat rows are the direct GEMM's; the per-tap depthwise kernel reads rows Wg wide)
        const ConvGeom g = conv_geom(*cp, X.shape(), Y.shape(), /*allow_flat=*/!cp->depthwise);
        if (cp->dw_pairs) return run_conv_dw_pairs(*cp, X, Y, e);
        if (cp->depthwise) return run_conv_depthwise(*cp, g, X, Y, e);
        if (cp->winograd && g.OH > 0 && g.OW > 0 && wino_worth(g.OW)) {
          return run_conv_winograd(*cp, g, X, Y, e);
        }
        if (cp->G == 1 && cp->KH == 1 && cp->KW == 1 && cp->sh == 1 && cp->sw == 1 &&
            cp->pt == 0 && cp->pl == 0 && g.H == 1 && g.phases.size() == 1 &&
            g.OW == g.W && g.W == X.dim(2) * X.dim(3)) {
          return run_conv_pointwise(*cp, g, X, Y, e);
        }
        return run_conv_gemm(*cp, g, X, Y, e);
      });
}

int64_t winograd_runs() { return g_winograd_runs.load(std::memory_order_relaxed); }
int64_t pointwise_runs() { return g_pointwise_runs.load(std::memory_order_relaxed); }
int64_t flat_runs() { return g_flat_runs.load(std::memory_order_relaxed); }
int64_t hpair_runs() { return g_hpair_runs.load(std::memory_order_relaxed); }
int64_t packed_runs() { return g_packed_runs.load(std::memory_order_relaxed); }
int64_t depthwise_pairs_runs() { return g_dw_pairs_runs.load(std::memory_order_relaxed); }

std::optional<EvalFn> prepare_conv2d_clamped(const KernelArgs& a, int32_t lo, int32_t hi,
                                             const EvalFn& reference) {
  if (a.mode == KernelMode::kReference) return std::nullopt;
  auto st = make_out_stage(a);
  if (!st.is_ok() || st->raw || st->is_float) return std::nullopt;
  if (st->rq.scheme == RequantScheme::kFloat) {
    for (float f : st->rq.fscale) {
      if (!std::isfinite(f)) return std::nullopt;
    }
  }
  const int32_t nlo = std::max(st->y.qmin, lo), nhi = std::min(st->y.qmax, hi);
  if (nlo > nhi) return std::nullopt;
  st->y.qmin = nlo;
  st->y.qmax = nhi;
  return prepare_conv2d(a, *st, reference);
}

std::optional<EvalFn> prepare_linear(const KernelArgs& a, const OutStage& st,
                                     const EvalFn& reference) {
  const Tensor* W = a.graph.find_constant(a.node.inputs[1]);
  if (st.is_float || !W || W->rank() != 2) return std::nullopt;
  const int64_t M = W->dim(0), K = W->dim(1);
  if (M == 0 || K == 0) return std::nullopt;
  auto rp = rows_params(a, st,
                        center_weights(*W, qview(a.graph, a.node.inputs[1]), M, K,
                                       [K](int64_t r, int64_t k) { return r * K + k; }));
  if (!rp) return std::nullopt;
  return EvalFn(
      [rp, reference](const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) -> Status {
        const Tensor& X = *in[0];
        const Tensor* B = in.size() > 2 ? in[2] : nullptr;
        Tensor& Y = *out[0];
        if (X.rank() != 2 || X.dim(1) != rp->K || X.dtype() != rp->xdtype ||
            Y.dtype() != rp->base.dtype || Y.numel() != X.dim(0) * rp->channels ||
            (B && B->numel() < rp->channels)) {
          return reference(in, out);
        }
        return run_rows(*rp, X, B, Y);
      });
}

std::optional<EvalFn> prepare_matmul(const KernelArgs& a, const OutStage& st,
                                     const EvalFn& reference) {
  const Tensor* Bw = a.graph.find_constant(a.node.inputs[1]);
  if (st.is_float || !Bw || Bw->rank() != 2) return std::nullopt;
  const int64_t K = Bw->dim(0), N = Bw->dim(1);
  if (K == 0 || N == 0) return std::nullopt;
  // Rows of the packed weights are B's columns: per-column zero points and scales.
  auto rp = rows_params(a, st,
                        center_weights(*Bw, qview(a.graph, a.node.inputs[1]), N, K,
                                       [N](int64_t r, int64_t k) { return k * N + r; }));
  if (!rp) return std::nullopt;
  return EvalFn(
      [rp, reference](const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) -> Status {
        const Tensor& A = *in[0];
        Tensor& Y = *out[0];
        if (A.rank() < 2 || A.dim(-1) != rp->K || A.dtype() != rp->xdtype ||
            Y.dtype() != rp->base.dtype || Y.numel() != A.numel() / rp->K * rp->channels) {
          return reference(in, out);
        }
        return run_rows(*rp, A, nullptr, Y);
      });
}

}  // namespace qeval::kern::opt
