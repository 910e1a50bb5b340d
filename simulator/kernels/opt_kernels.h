// Optimized integer kernels, bit-identical to the reference kernels on every
// element: Conv2d, Linear and MatMul with exact int32 arithmetic (opt_gemm.cc),
// the elementwise ops the zoo uses (opt_elementwise.cc), and the instruction-set
// specific parts of both (opt_isa.cc: portable C++, AVX2, AVX-512 VNNI, chosen
// at run time). kernels_opt_test checks them against the reference.
//
// Numerics. The reference sums (x - z_x)(w - z_w) in int64 and saturates to
// int32. Here both centred operands are int16 and pairs of products are summed
// into int32 (x86 vpmaddwd, or vpdpwssd with AVX-512 VNNI). That is the same sum
// whenever no int32 overflow can occur, which prepare_* proves from the data
// before choosing these kernels:
//   K * max|w_c| * max|x_c| < 2^31   for every output channel c,
// K the products per output, max|w_c| from the constant weights, max|x_c| from
// the input dtype and zero point. Every partial sum, in any order, is then
// exact, so results never depend on the order or the thread count. The bias is
// added in int64 and saturated as in the reference (in int32 lanes where
// bound + |bias_c| < 2^31 makes the saturation a no-op).
//
// Layout. The input is centred to int16 and re-laid out as "pair planes": each
// int32 word holds two input channels (c, c+1) of one padded pixel, the padding
// being 0 (= z_x centred, as in the reference). A strided convolution splits the
// padded input into stride phases so that the taps of 8 consecutive outputs are
// always 8 consecutive words; a pointwise one (1x1, stride 1, no padding) is a
// plain GEMM over the H*W pixels of a plane. Output rows are computed on a grid
// whose width is OW rounded up to 8 (the extra lanes are never stored). Weights
// (constants) are packed once, at prepare time, into pair words in the order
// the micro-kernel reads them: it computes 4 output channels x 16 outputs from
// 2 loads and 4 broadcasts per input channel pair and tap. Depthwise
// convolutions (one input channel per group) read the same pair planes, each
// output channel its half of the words (weights (w, 0) or (0, w)), tap by tap.
//
// Threads: TBB tasks over spans of output tiles (and over input channel pairs
// for the re-layout); every output element is computed by exactly one task.
#pragma once

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "simulator/kernels/common.h"

namespace qeval::kern::opt {

// Calls f(begin, end) over [0, n) in chunks, on TBB tasks when n is large.
template <typename F>
void parallel_chunks(int64_t n, F&& f) {
  constexpr int64_t kChunk = int64_t{1} << 14;
  if (n <= kChunk) {
    f(int64_t{0}, n);
    return;
  }
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, n, kChunk),
                    [&](const tbb::blocked_range<int64_t>& r) { f(r.begin(), r.end()); });
}

// The integer dtypes of the 8/16-bit kernels.
inline bool small_int(DType t) { return t == DType::kInt8 || t == DType::kUInt8 || t == DType::kInt16; }

enum class Isa { kScalar, kAvx2, kAvx512Vnni };
bool cpu_has(Isa isa);
// The instruction set an optimized kernel mode runs (kOptimized: the best the CPU has).
Isa isa_of(KernelMode m);
// Whether a mode runs Conv2d on AMX tiles (kAmx; kOptimized where amx_usable()).
bool uses_amx(KernelMode m);

// The GEMM micro-tile: kRows output channels x kGroups groups of kLanes outputs
// (6 x 2: 12 AVX2 accumulators, 2 inputs, a weight and a product fill the 16
// registers; 4 x 3 spills. 6 x 2 against 4 x 2: resnet18 224 batch 8 +5-9%,
// resnet8 and mobilenetv2_tiny batch 64 unchanged within noise; 2026-11-24).
constexpr int kLanes = 8, kRows = 6, kGroups = 2, kTile = kGroups * kLanes;

// The vector form of one channel's requantization (Epilogue::prepare).
struct ChannelRequant {
  bool ok = false;           // the vector code applies to these parameters
  int32_t m = 0, shift = 0;  // integer schemes
  float fscale = 0.0f;       // float scheme
  // Single rounding: the accumulator is clamped to [acc_lo, acc_hi] first, a
  // range outside which the clamped output no longer changes; the rounding
  // term and offset of the shift (opt_isa.cc ReqSingle).
  int32_t acc_lo = INT32_MIN, acc_hi = INT32_MAX;
  int64_t round = 0;
  int32_t off = 0;
  int32_t mask = 0;  // double rounding: the RoundingDivideByPOT mask
};

// Bias and requantization of int32 sums, bit-identical to OutStage::finish of
// (sum + bias). Vector code handles the common parameter ranges; any other
// channel takes the scalar path, which is OutStage::finish itself.
struct Epilogue {
  OutStage st;
  DType dtype = DType::kInt8;      // the output's
  std::vector<int64_t> sum_bound;  // per channel: K * max|w_c| * max|x_c|
  std::vector<ChannelRequant> ch;  // per channel, from prepare()
  // Per run (set_bias): each channel's bias (0 without a bias input), and
  // whether the vector code finishes it (bias + sum_bound < 2^31 as well).
  std::vector<int64_t> bias;
  std::vector<uint8_t> vec;
  // Once st, dtype and sum_bound are set.
  void prepare();
  void set_bias(const Tensor* B);
};

// What one instruction set provides. Word arrays hold int16 pairs (low, high).
struct IsaKernels {
  // acc[r * acc_stride + g * kLanes + l] = sum over kk < nkk of the pair
  // product of word x[g][offs[kk] + l] and word w[kk * kRows + r].
  void (*gemm_tile)(const int32_t* w, const int32_t* const* x, const int32_t* offs, int64_t nkk,
                    int32_t* acc, int64_t acc_stride);
  // acc[l] = sum over t < ntaps of the pair product of x[offs[t] + l] and w[t], for l < n
  // (n a multiple of kLanes).
  void (*dw_row)(const int32_t* x, const int32_t* offs, const int32_t* w, int64_t ntaps, int64_t n,
                 int32_t* acc);
  // For rows r < `rows` (channel c0 + r): adds the channel's bias to the n sums
  // at acc + r * acc_stride, requantizes them and stores them (Epilogue::dtype)
  // at element r * chan_stride + l * stride of dst. The sums are read in whole
  // groups of kLanes.
  void (*finish)(const Epilogue& e, int64_t c0, int64_t rows, const int32_t* acc,
                 int64_t acc_stride, int64_t n, void* dst, int64_t chan_stride, int64_t stride);
  // For rows r < `rows`: row r of dst (dst + r * dst_stride) is `lead` zero
  // words, then pair(a[j * step] - z, b ? b[j * step] - z : 0) for j < count,
  // a and b advancing src_stride elements per row, then `trail` zero words.
  // a and b are of an 8/16-bit dtype; the differences fit int16. `end` is the
  // end of the tensor a and b are in (vector loads may read past the elements used).
  void (*pair_rows)(const void* a, const void* b, DType dtype, int32_t z, int64_t step,
                    int64_t src_stride, int32_t* dst, int64_t dst_stride, int64_t rows,
                    int64_t lead, int64_t count, int64_t trail, const void* end);
  // dst[i] = x[i] - z for the n elements of an 8/16-bit array (results fit int16).
  void (*center)(const void* x, DType dtype, int32_t z, int16_t* dst, int64_t n);
  // center over `rows` rows of n elements: row r of x at element r * src_stride
  // of x, of dst at dst + r * dst_stride.
  void (*center_rows)(const void* x, DType dtype, int32_t z, int64_t src_stride, int16_t* dst,
                      int64_t dst_stride, int64_t rows, int64_t n);
  // y[i] = min(max(x[i], lo), hi) for n elements of an 8/16-bit dtype.
  void (*clamp)(const void* x, DType dtype, int32_t lo, int32_t hi, void* y, int64_t n);
  // y[i] = add.apply(a[i], b[i]) for n elements, a, b and y 8-bit; `round` and
  // `off` are the integer schemes' shift terms (prepare_add).
  void (*add8)(const AddRequant& add, int64_t round, int32_t off, const void* a, DType at,
               const void* b, DType bt, void* y, DType yt, int64_t n);
  // Winograd F(2x2, 3x3) transforms (opt_gemm.cc run_conv_winograd), over one
  // row of ntx tiles (a multiple of kLanes), all in exact integer arithmetic.
  // wino_in: the input transform B^T d B of one channel pair (pair words, int16
  // lanes): e and o are the even and odd columns of padded input rows
  // 2ty .. 2ty + 3 (row k at e + k * row_stride), tile tx reading words tx and
  // tx + 1 of both; element xi = 4i + j of tile tx goes to v[xi * xi_stride + tx].
  void (*wino_in)(const int32_t* e, const int32_t* o, int64_t row_stride, int64_t ntx, int32_t* v,
                  int64_t xi_stride);
  // wino_out: the output transform A^T m A / 4 of one output channel: the 16
  // sums of tile tx are m[xi * xi_stride + tx]; its 2x2 outputs go to
  // z[i * z_stride + 2 tx + j].
  void (*wino_out)(const int32_t* m, int64_t xi_stride, int64_t ntx, int32_t* z, int64_t z_stride);
  // wino_gemm: the 16 GEMMs of one block of kRows output channels: for xi < 16,
  // r < kRows, t < ntiles (a multiple of kLanes): m[xi * m_xs + r * ld + t] = sum
  // over p < pairs of the pair product of v[xi * v_xs + p * ld + t] and
  // w[(xi * w_xs) + p * kRows + r].
  void (*wino_gemm)(const int32_t* w, int64_t w_xs, const int32_t* v, int64_t v_xs, int64_t pairs,
                    int64_t ld, int64_t ntiles, int32_t* m, int64_t m_xs);
  // Depthwise convolution of one channel on its centred int16 plane (rows
  // `ps` elements apart, padding 0), horizontal taps taken in pairs: for
  // oh < OH, j < ow (a multiple of 16 for sw = 1, of 8 for sw = 2):
  //   acc[oh * ow + j] = sum over kh < KH, q < P of the pair product of the
  //   int16 pair (p[i], p[i + 1]), i = (oh * sh + kh * dh) * ps + sw * j + 2q,
  //   and the word w[kh * P + q] = (w[kh][2q], w[kh][2q + 1] or 0).
  void (*dw_pairs)(const int16_t* p, int64_t ps, int64_t sh, int64_t dh, int64_t sw, int64_t KH,
                   int64_t P, const int32_t* w, int64_t OH, int64_t ow, int32_t* acc);
  // wino_in2 / wino_out2: the same for rows of 4 tiles (8-wide outputs), two
  // tile rows per vector of 8: tiles 0-3 are tile row ty (planes e, o), tiles
  // 4-7 tile row ty + 1 (rows 2 .. 5 of e, o); their 8 outputs per row go to
  // rows 0, 1 (tiles 0-3) and 2, 3 (tiles 4-7) of z.
  void (*wino_in2)(const int32_t* e, const int32_t* o, int64_t row_stride, int32_t* v,
                   int64_t xi_stride);
  void (*wino_out2)(const int32_t* m, int64_t xi_stride, int32_t* z, int64_t z_stride);
  // y[i] = quantize_value(x[i], scale, zp, qmin, qmax, kHalfToEven) for n
  // floats, y of an 8-bit dtype yt.
  void (*quantize8)(const float* x, float scale, int32_t zp, int32_t qmin, int32_t qmax, void* y,
                    DType yt, int64_t n);
};
const IsaKernels& kernels(Isa isa);

// The optimized kernel of an integer node, or nullopt where the reference must
// run: weights not constant, centred operands beyond int16, a sum that could
// overflow int32. `reference` runs the inputs the optimized kernel does not
// take at run time (a shape or dtype other than the graph said).
std::optional<EvalFn> prepare_conv2d(const KernelArgs& a, const OutStage& st,
                                     const EvalFn& reference);
std::optional<EvalFn> prepare_linear(const KernelArgs& a, const OutStage& st,
                                     const EvalFn& reference);
std::optional<EvalFn> prepare_matmul(const KernelArgs& a, const OutStage& st,
                                     const EvalFn& reference);

// Conv2d whose output a clamp (unary_as_clamp) consumes, fused (the executor's
// choice, program.cc): the conv's kernel with the output range narrowed to
// [max(qmin, lo), min(qmax, hi)], which is the clamp of its requantized output
// for every scheme (each clamps last, or clamps before a monotone rounding to
// integers). `reference` computes conv then clamp for the inputs it does not
// take. nullopt where it does not apply (raw int32 or float output, disjoint
// ranges, a non-finite float scale, or no optimized conv kernel).
// How many convolutions have run through the Winograd kernel in this process
// (tests check that their cases reach it).
int64_t winograd_runs();
// The same for the depthwise kernel with paired taps (undilated columns, column
// stride 1 or 2; other depthwise convolutions take the per-tap kernel).
int64_t depthwise_pairs_runs();
// The same for the pointwise kernel (1x1, stride 1, no padding, one group: the
// input re-laid out per task, span by span).
int64_t pointwise_runs();
// The same for the direct GEMM with flat output rows (ConvGeom::flat), and
// with the odd last input channel's taps paired (ConvParams::hpair).
int64_t flat_runs();
int64_t hpair_runs();
// The same for the direct GEMM that copies tiles' inputs into panels first.
int64_t packed_runs();

// AMX-INT8 (opt_amx.cc): Conv2d of one group with 8-bit activations and
// centred weights within int8, on tile registers (tdpbsud / tdpbssd) over the
// raw activations, the accumulators starting at -z_x * sum(w'), exact under the
// same overflow bound as the other kernels.
// The CPU has AMX-TILE and AMX-INT8 (and AVX-512 VNNI), the OS enables their
// state, and Linux granted this process the tile data (arch_prctl).
bool amx_usable();
struct AmxConvSpec {
  int64_t M = 0, C = 0, KH = 0, KW = 0, sh = 1, sw = 1, pt = 0, pl = 0, dh = 1, dw = 1;
  DType xdtype = DType::kUInt8;
  int32_t zx = 0;
};
struct AmxConv;
// Packs the centred weights w[m * K + (c * KH + kh) * KW + kw] (K = C KH KW);
// nullptr where AMX does not apply (no AMX, activations not 8-bit, a centred
// weight beyond int8). The caller has checked the overflow bound.
std::shared_ptr<const AmxConv> amx_prepare_conv(const AmxConvSpec& s, const int32_t* w);
// Y = the convolution of X (N x C x H x W) finished by e; Y's shape gives OH, OW.
Status amx_run_conv(const AmxConv& c, const Tensor& X, Tensor& Y, const Epilogue& e);
// Convolutions run on AMX in this process (tests check their cases reach it).
int64_t amx_runs();
// The AMX kernel's epilogue (where amx_usable()): IsaKernels::finish with
// stride 1, the float scheme's 8-bit outputs 16 lanes at a time.
void amx_finish(const Epilogue& e, int64_t c0, int64_t rows, const int32_t* acc, int64_t ld,
                int64_t n, void* dst, int64_t P);

std::optional<EvalFn> prepare_conv2d_clamped(const KernelArgs& conv, int32_t lo, int32_t hi,
                                             const EvalFn& reference);

// Elementwise (opt_elementwise.cc). A pointwise integer op on 8/16-bit values
// (unary activations, Flatten/Reshape; Add/Mul of two 8-bit inputs) becomes a
// table made by running `reference` on every input value (pair). The typed
// kernels of Add, GlobalAvgPool and per-tensor Quantize compute the reference's
// formulas (AddRequant, core/numerics). nullopt where the reference must run;
// `reference` also takes the inputs they do not (broadcasting, other dtypes).
std::optional<EvalFn> tabulate_unary(const KernelArgs& a, const EvalFn& reference);
// [lo, hi] when the integer unary node computes clamp(x, lo, hi) into the same
// dtype on every input value (Relu / Relu6 / Clip into their input's
// quantization), as the reference kernel `reference` says; else nullopt.
std::optional<std::pair<int32_t, int32_t>> unary_as_clamp(const KernelArgs& a,
                                                          const EvalFn& reference);
std::optional<EvalFn> tabulate_binary(const KernelArgs& a, const EvalFn& reference);
// Add: with a vector instruction set and 8-bit operands, the formula in
// vectors (it leaves a 64k table far behind); else tabulate_binary.
std::optional<EvalFn> prepare_add(const KernelArgs& a, const AddRequant& add,
                                  const EvalFn& reference);
std::optional<EvalFn> prepare_global_avg_pool(const KernelArgs& a, const Requant& rq,
                                              const EvalFn& reference);
std::optional<EvalFn> prepare_quantize(const KernelArgs& a, const EvalFn& reference);
// Float Conv2d (hybrid programs' float layers) in the reference's summation
// order, vectorisable across output columns (opt_float.cc); nullopt for
// non-float weights or attributes the reference would reject.
std::optional<EvalFn> prepare_conv2d_float(const KernelArgs& a, const EvalFn& reference);

}  // namespace qeval::kern::opt
