// Optimized kernels == reference kernels, on every output element (DESIGN.md
// "Bit-exactness" (1)): random Conv2d / Linear / MatMul nodes over shapes,
// strides, padding, dilation, groups, dtypes, zero points and every chip
// profile; the requantization epilogue on extreme accumulators; whole zoo
// models with every intermediate. Each optimized instruction set the CPU has
// runs with 1 and 2 threads. The counts of cases and elements compared are
// printed and recorded as test properties.
#include <gtest/gtest.h>
#include <tbb/global_control.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <limits>
#include <optional>
#include <random>

#include "models/zoo.h"
#include "quant/observer.h"
#include "quant/plan.h"
#include "simulator/kernels/opt_kernels.h"
#include "simulator/program.h"

namespace qeval {
namespace {

using kern::opt::Isa;

const char* const kProfiles[] = {"bm1690", "int16", "onnx-qdq", "uint8-asym"};

// The optimized modes this CPU runs (the VNNI one only where the CPU has it).
std::vector<KernelMode> optimized_modes() {
  std::vector<KernelMode> m{KernelMode::kScalar};
  if (kernel_mode_supported(KernelMode::kAvx2)) m.push_back(KernelMode::kAvx2);
  if (kernel_mode_supported(KernelMode::kAvx512Vnni)) m.push_back(KernelMode::kAvx512Vnni);
  if (kernel_mode_supported(KernelMode::kAmx)) m.push_back(KernelMode::kAmx);
  return m;
}

// The vector instruction sets this CPU runs.
std::vector<Isa> vector_isas() {
  std::vector<Isa> v;
  for (Isa isa : {Isa::kAvx2, Isa::kAvx512Vnni}) {
    if (kern::opt::cpu_has(isa)) v.push_back(isa);
  }
  return v;
}

ChipProfile profile(const std::string& name) {
  auto p = load_profile(name);
  EXPECT_TRUE(p.is_ok()) << p.status().message();
  return *p;
}

int64_t rand_int(std::mt19937& rng, int64_t lo, int64_t hi) {
  return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
}

Tensor random_tensor(std::mt19937& rng, DType t, const Shape& s, int64_t lo, int64_t hi) {
  Tensor x(t, s);
  for (int64_t i = 0; i < x.numel(); ++i) x.set_int(i, rand_int(rng, lo, hi));
  return x;
}

// Tallies of one comparison suite: cases (inputs run), output elements compared
// (over every optimized mode and thread count), and where counted the cases
// whose node took an optimized kernel.
struct Tally {
  int64_t cases = 0, elements = 0;
  std::optional<int64_t> optimized;
  void report(const char* what) const {
    std::cout << what << ": " << cases << " cases";
    if (optimized) std::cout << " (" << *optimized << " on the optimized path)";
    std::cout << ", " << elements << " output elements compared\n";
    ::testing::Test::RecordProperty("cases", static_cast<int>(cases));
    ::testing::Test::RecordProperty("elements", std::to_string(elements));
  }
};

using Feeds = std::map<std::string, Tensor>;

// Runs a lowered graph with the reference kernels and with every optimized
// mode on 1 and 2 threads; every output must be byte-identical. The runs of
// one executor follow each other with different inputs, so that an output
// reusing a dead intermediate's storage would show any element a kernel left
// unwritten.
void expect_same(const Graph& lowered, const ChipProfile& p, const std::vector<Feeds>& runs,
                 const std::string& what, Tally& tally, const RunOptions& opts = {}) {
  auto ref_ex = Executor::create(lowered, p, KernelMode::kReference);
  ASSERT_TRUE(ref_ex.is_ok()) << what << ": " << ref_ex.status().message();
  std::vector<std::map<std::string, Tensor>> refs;
  for (const Feeds& feeds : runs) {
    auto ref = ref_ex->run(feeds, opts);
    ASSERT_TRUE(ref.is_ok()) << what << ": " << ref.status().message();
    refs.push_back(std::move(*ref));
  }
  for (KernelMode mode : optimized_modes()) {
    auto ex = Executor::create(lowered, p, mode);
    ASSERT_TRUE(ex.is_ok()) << what << ": " << ex.status().message();
    for (int threads : {1, 2}) {
      for (size_t k = 0; k < runs.size(); ++k) {
        tbb::global_control tc(tbb::global_control::max_allowed_parallelism, threads);
        auto got = ex->run(runs[k], opts);
        const auto* ref = &refs[k];
        ASSERT_TRUE(got.is_ok()) << what << ": " << got.status().message();
        ASSERT_EQ(got->size(), ref->size()) << what;
        for (const auto& [name, want] : *ref) {
          const Tensor& t = got->at(name);
          ASSERT_EQ(t.dtype(), want.dtype()) << what << " " << name;
          ASSERT_EQ(t.shape(), want.shape()) << what << " " << name;
          if (!t.equals(want)) {
            int64_t first = 0;
            const size_t es = dtype_size(t.dtype());
            while (std::memcmp(static_cast<const char*>(t.raw()) + first * es,
                               static_cast<const char*>(want.raw()) + first * es, es) == 0) {
              ++first;
            }
            ADD_FAILURE() << what << ": " << name << " differs (mode " << kernel_mode_name(mode)
                          << ", " << threads << " threads) first at element " << first << ": "
                          << t.get_double(first) << " != " << want.get_double(first);
            return;
          }
          tally.elements += t.numel();
        }
      }
    }
  }
  tally.cases += static_cast<int64_t>(runs.size());
}

// ---- single nodes --------------------------------------------------------

struct NodeCase {
  Graph g;
  std::map<std::string, Tensor> feeds;
  std::string desc;
};

// The activation dtypes a profile's layers use.
std::vector<DType> activation_dtypes(const ChipProfile& p) {
  if (p.name == "int16") return {DType::kInt8, DType::kInt16};
  return {DType::kInt8, DType::kUInt8};
}

QuantParams act_quant(std::mt19937& rng, DType t, float scale, bool asym) {
  QuantParams q{t, {scale}, {0}, -1};
  if (asym) q.zero_point = {static_cast<int32_t>(rand_int(rng, dtype_min(t), dtype_max(t)))};
  return q;
}

// Weights [rows, ...] quantized on axis `axis`: per-channel scales (and zero
// points when asymmetric) or per-tensor.
QuantParams weight_quant(std::mt19937& rng, int64_t channels, int axis, bool per_channel,
                         bool asym) {
  QuantParams q{DType::kInt8, {}, {}, per_channel ? axis : -1};
  const int64_t n = per_channel ? channels : 1;
  for (int64_t c = 0; c < n; ++c) {
    q.scale.push_back(std::ldexp(1.0f + 0.5f * static_cast<float>(rand_int(rng, 0, 99)) / 100, -7));
    q.zero_point.push_back(asym ? static_cast<int32_t>(rand_int(rng, -20, 20)) : 0);
  }
  return q;
}

// An output scale putting the accumulators of typical magnitude at about
// 2^spread LSB: spread < 0 saturates often, spread > 0 exercises fine rounding.
float out_scale(const QuantParams& x, const QuantParams& w, int64_t K, DType xd, int spread) {
  const double typical = std::sqrt(static_cast<double>(K)) * (xd == DType::kInt16 ? 3000 : 60) * 60;
  return static_cast<float>(x.scale[0] * w.scale[0] * typical / std::ldexp(1.0, 6 + spread));
}

struct ConvSpec {
  int64_t N, C, H, W, M, KH, KW, group;
  std::vector<int64_t> strides, pads, dil;
};

NodeCase conv_case(std::mt19937& rng, const ChipProfile& p, const ConvSpec& s, DType xd) {
  NodeCase c;
  Graph& g = c.g;
  const int64_t Cg = s.C / s.group, K = Cg * s.KH * s.KW;
  const bool asym_x = xd != DType::kInt16 && rand_int(rng, 0, 1);
  const QuantParams qx = act_quant(rng, xd, 0.02f, asym_x);
  const QuantParams qw =
      weight_quant(rng, s.M, 0, rand_int(rng, 0, 3) > 0, rand_int(rng, 0, 3) == 0);
  const bool raw = rand_int(rng, 0, 7) == 0;
  const DType yd = activation_dtypes(p)[rand_int(rng, 0, 1)];
  const int spread = static_cast<int>(rand_int(rng, -2, 4));
  g.inputs = {"x"};
  g.outputs = {"y"};
  g.value("x") = ValueInfo{"x", xd, {s.N, s.C, s.H, s.W}, qx};
  const int64_t wlo = rand_int(rng, 0, 3) ? -128 : -64, whi = wlo == -128 ? 127 : 63;
  g.constants["w"] = random_tensor(rng, DType::kInt8, {s.M, Cg, s.KH, s.KW}, wlo, whi);
  g.value("w") = ValueInfo{"w", DType::kInt8, {s.M, Cg, s.KH, s.KW}, qw};
  Node n;
  n.op = OpKind::kConv2d;
  n.name = "conv";
  n.inputs = {"x", "w"};
  n.outputs = {"y"};
  n.attrs["strides"] = s.strides;
  n.attrs["pads"] = s.pads;
  n.attrs["dilations"] = s.dil;
  n.attrs["group"] = s.group;
  const int64_t bias_kind = rand_int(rng, 0, 5);  // 0: none, 5: beyond the int32 headroom
  if (bias_kind) {
    const int64_t lim = bias_kind == 5 ? (int64_t{1} << 31) - 1 : 20000;
    g.constants["b"] = random_tensor(rng, DType::kInt32, {s.M}, -lim, lim);
    g.value("b") = ValueInfo{"b", DType::kInt32, {s.M}, std::nullopt};
    n.inputs.push_back("b");
  }
  if (raw) {
    g.value("y") = ValueInfo{"y", DType::kInt32, {}, std::nullopt};
  } else {
    QuantParams qy = act_quant(rng, yd, out_scale(qx, qw, K, xd, spread), yd == DType::kUInt8);
    g.value("y") = ValueInfo{"y", yd, {}, qy};
  }
  g.nodes = {n};
  c.feeds["x"] = random_tensor(rng, xd, g.value("x").shape, dtype_min(xd), dtype_max(xd));
  c.desc = fmt::format(
      "{} conv N{} C{} {}x{} M{} k{}x{} s{},{} p{},{},{},{} d{},{} g{} x:{} y:{} bias:{}", p.name,
      s.N, s.C, s.H, s.W, s.M, s.KH, s.KW, s.strides[0], s.strides[1], s.pads[0], s.pads[1],
      s.pads[2], s.pads[3], s.dil[0], s.dil[1], s.group, dtype_name(xd),
      raw ? "int32" : dtype_name(yd), bias_kind);
  return c;
}

// Whether prepare chose the optimized kernel for the graph's only node.
bool takes_optimized(const Graph& lowered, const ChipProfile& p) {
  const Node& n = lowered.nodes[0];
  const KernelArgs a{n, lowered, p, KernelMode::kOptimized};
  auto st = kern::make_out_stage(a);
  if (!st.is_ok()) return false;
  const EvalFn none;
  switch (n.op) {
    case OpKind::kConv2d:
      return kern::opt::prepare_conv2d(a, *st, none).has_value();
    case OpKind::kLinear:
      return kern::opt::prepare_linear(a, *st, none).has_value();
    case OpKind::kMatMul:
      return kern::opt::prepare_matmul(a, *st, none).has_value();
    default:
      return false;
  }
}

// Lowers the case for `p` and compares the optimized kernels with the reference.
void expect_case(const NodeCase& c, const ChipProfile& p, Tally& tally) {
  auto lowered = lower_graph(c.g, p);
  ASSERT_TRUE(lowered.is_ok()) << c.desc << ": " << lowered.status().message();
  expect_same(*lowered, p, {c.feeds}, c.desc, tally);
}

void run_case(const NodeCase& c, const ChipProfile& p, Tally& tally) {
  auto lowered = lower_graph(c.g, p);
  ASSERT_TRUE(lowered.is_ok()) << c.desc << ": " << lowered.status().message();
  tally.optimized = tally.optimized.value_or(0) + takes_optimized(*lowered, p);
  expect_same(*lowered, p, {c.feeds}, c.desc, tally);
}

// One node x -> y of `op` with `attrs`, x of dtype xd and `shape` quantized by
// qx, y by qy, and a random x over the dtype's whole range.
NodeCase single_input_case(std::mt19937& rng, OpKind op, DType xd, const Shape& shape, const QuantParams& qx,
                           const QuantParams& qy, std::map<std::string, AttrValue> attrs, std::string desc) {
  NodeCase c;
  c.desc = std::move(desc);
  c.g.inputs = {"x"};
  c.g.outputs = {"y"};
  c.g.value("x") = ValueInfo{"x", xd, shape, qx};
  c.g.value("y") = ValueInfo{"y", xd, {}, qy};
  Node n;
  n.op = op;
  n.name = "op";
  n.inputs = {"x"};
  n.outputs = {"y"};
  n.attrs = std::move(attrs);
  c.g.nodes = {n};
  c.feeds["x"] = random_tensor(rng, xd, shape, dtype_min(xd), dtype_max(xd));
  return c;
}

ConvSpec random_conv(std::mt19937& rng) {
  ConvSpec s;
  s.N = rand_int(rng, 1, 3);
  s.KH = rand_int(rng, 1, 5);
  s.KW = rand_int(rng, 0, 2) ? s.KH : rand_int(rng, 1, 5);
  s.strides = {rand_int(rng, 1, 3), rand_int(rng, 1, 3)};
  s.dil = rand_int(rng, 0, 3) ? std::vector<int64_t>{1, 1}
                              : std::vector<int64_t>{rand_int(rng, 1, 3), rand_int(rng, 1, 3)};
  s.pads = {rand_int(rng, 0, 3), rand_int(rng, 0, 3), rand_int(rng, 0, 3), rand_int(rng, 0, 3)};
  switch (rand_int(rng, 0, 4)) {
    case 0:
      s.group = 1, s.C = rand_int(rng, 1, 9), s.M = rand_int(rng, 1, 13);
      break;  // plain, odd sizes
    case 1:
      s.group = 1, s.C = rand_int(rng, 8, 40), s.M = rand_int(rng, 4, 36);
      break;  // wider
    case 2:
      s.C = s.group = rand_int(rng, 1, 20), s.M = s.C;
      break;  // depthwise
    case 3:
      s.group = rand_int(rng, 2, 4), s.C = s.group * rand_int(rng, 1, 5),  // grouped
          s.M = s.group * rand_int(rng, 1, 6);
      break;
    default:
      s.C = s.group = rand_int(rng, 1, 6), s.M = s.C * rand_int(rng, 2, 4);
      break;  // channel multiplier
  }
  const int64_t eh = (s.KH - 1) * s.dil[0] + 1, ew = (s.KW - 1) * s.dil[1] + 1;
  s.H = std::max<int64_t>(eh - s.pads[0] - s.pads[2], 1) + rand_int(rng, 0, 18);
  s.W = std::max<int64_t>(ew - s.pads[1] - s.pads[3], 1) + rand_int(rng, 0, 18);
  return s;
}

// `count` convolutions per chip profile, spec(i) drawing the i-th one's shape,
// each run for every activation dtype of the profile.
template <typename Spec>
void run_conv_cases(std::mt19937& rng, int count, const Spec& spec, Tally& tally) {
  for (const char* name : kProfiles) {
    const ChipProfile p = profile(name);
    for (int i = 0; i < count; ++i) {
      const ConvSpec s = spec(i);
      for (DType xd : activation_dtypes(p)) run_case(conv_case(rng, p, s, xd), p, tally);
    }
  }
}

TEST(OptimizedKernels, Conv2dRandomCasesEqualReference) {
  std::mt19937 rng(2024);
  Tally tally;
  const int64_t flat0 = kern::opt::flat_runs(), hpair0 = kern::opt::hpair_runs();
  run_conv_cases(
      rng, 60, [&](int) { return random_conv(rng); }, tally);
  tally.report("Conv2d");
  EXPECT_GT(tally.optimized.value_or(0), tally.cases * 3 / 4);
  // The direct GEMM's variants are reached: flat output rows, and the odd last
  // channel's taps paired (with every stride, dilation and padding drawn).
  const int64_t flat = kern::opt::flat_runs() - flat0, hpair = kern::opt::hpair_runs() - hpair0;
  std::cout << "flat-row runs: " << flat << ", paired-tap last channel runs: " << hpair << "\n";
  EXPECT_GT(flat, tally.cases / 10);
  EXPECT_GT(hpair, tally.cases / 10);
}

// AMX tiles (opt_amx.cc): where the CPU has them, every suite above runs the
// amx mode too; this one draws the shapes that exercise its layout and tiling
// (several 16-row chunks, dilated chunks, channel counts not a multiple of 4
// or 16, odd numbers of 16-channel blocks and of 16-output tiles, stride-2 rows
// with vector and scalar tails, outputs narrower than a tile, pointwise planes
// re-cut into rows, stems with folded tap columns) and large sums (6400
// products of extreme inputs and weights), and checks that AMX ran them.
TEST(OptimizedKernels, Conv2dAmxEqualsReference) {
  if (!kernel_mode_supported(KernelMode::kAmx)) {
    GTEST_SKIP() << "this CPU (or kernel) lacks AMX-INT8 tiles: the amx kernels were not executed";
  }
  std::mt19937 rng(77);
  Tally tally;
  const int64_t before = kern::opt::amx_runs();
  run_conv_cases(
      rng, 24,
      [&](int i) {
        ConvSpec s = random_conv(rng);
        s.group = 1;
        s.C = i % 3 == 0 ? rand_int(rng, 1, 8) : rand_int(rng, 9, 80);
        s.M = i % 4 == 0 ? rand_int(rng, 1, 16) : rand_int(rng, 17, 70);
        s.W = std::max<int64_t>(s.W, 1) + rand_int(rng, 0, 50);
        if (i % 5 == 1) {  // pointwise: planes laid out as rows of a width dividing H * W
          s.KH = s.KW = 1;
          s.strides = {1, 1};
          s.dil = {1, 1};
          s.pads = {0, 0, 0, 0};
          s.H = rand_int(rng, 1, 12);
          s.W = i % 2 ? 16 * rand_int(rng, 1, 8) : rand_int(rng, 1, 40);
        }
        return s;
      },
      tally);
  // Sums of K = 6400 products of extreme inputs and weights (|sum| up to 2^28).
  const ChipProfile p = profile("onnx-qdq");
  for (int i = 0; i < 4; ++i) {
    const ConvSpec s{1, 256, 7, 9, 20, 5, 5, 1, {1, 1}, {2, 2, 2, 2}, {1, 1}};
    NodeCase c = conv_case(rng, p, s, i % 2 ? DType::kInt8 : DType::kUInt8);
    Tensor& w = c.g.constants.at("w");
    for (int64_t k = 0; k < w.numel(); ++k) w.set_int(k, (k / 7) % 3 ? 127 : -128);
    Tensor& x = c.feeds.at("x");
    const int64_t hi = x.dtype() == DType::kInt8 ? 127 : 255, lo = hi - 255;
    for (int64_t k = 0; k < x.numel(); ++k) x.set_int(k, (k / 5) % 4 ? hi : lo);
    run_case(c, p, tally);
  }
  tally.report("Conv2d on AMX");
  const int64_t runs = kern::opt::amx_runs() - before;
  std::cout << "AMX runs: " << runs << "\n";
  EXPECT_GT(runs, tally.cases / 2);  // int16 inputs and asymmetric weights stay off AMX
}

// Float Conv2d (hybrid programs' float layers): the fast loop must add the same
// double products in the same order as the reference, padded taps skipped (an
// added 0.0 would turn a -0.0 sum into +0.0), so every output bit matches.
TEST(OptimizedKernels, FloatConv2dEqualsReference) {
  std::mt19937 rng(77);
  std::normal_distribution<float> normal(0.f, 1.f);
  auto floats = [&](const Shape& sh) {
    Tensor t(DType::kFloat32, sh);
    for (int64_t i = 0; i < t.numel(); ++i) {
      const int64_t k = rand_int(rng, 0, 9);
      t.data<float>()[i] = k == 0 ? 0.f : k == 1 ? -0.f : normal(rng) * static_cast<float>(std::pow(10.0, rand_int(rng, -3, 3)));
    }
    return t;
  };
  const ChipProfile p = profile("bm1690");
  Tally tally;
  int64_t fast = 0;
  for (int i = 0; i < 150; ++i) {
    const ConvSpec s = random_conv(rng);
    Graph g;
    g.inputs = {"x"};
    g.outputs = {"y"};
    g.value("x") = ValueInfo{"x", DType::kFloat32, {s.N, s.C, s.H, s.W}, std::nullopt};
    g.constants["w"] = floats({s.M, s.C / s.group, s.KH, s.KW});
    g.value("w") = ValueInfo{"w", DType::kFloat32, g.constants["w"].shape(), std::nullopt};
    Node n;
    n.op = OpKind::kConv2d;
    n.name = "conv";
    n.inputs = {"x", "w"};
    n.outputs = {"y"};
    n.attrs["strides"] = s.strides;
    n.attrs["pads"] = s.pads;
    n.attrs["dilations"] = s.dil;
    n.attrs["group"] = s.group;
    if (rand_int(rng, 0, 2)) {
      g.constants["b"] = floats({s.M});
      g.value("b") = ValueInfo{"b", DType::kFloat32, {s.M}, std::nullopt};
      n.inputs.push_back("b");
    }
    g.value("y") = ValueInfo{"y", DType::kFloat32, {}, std::nullopt};
    g.nodes = {n};
    auto lowered = lower_graph(g, p);
    ASSERT_TRUE(lowered.is_ok()) << lowered.status().message();
    const KernelArgs a{lowered->nodes[0], *lowered, p, KernelMode::kOptimized};
    fast += kern::opt::prepare_conv2d_float(a, EvalFn()).has_value();
    expect_same(*lowered, p, {{{"x", floats({s.N, s.C, s.H, s.W})}}, {{"x", floats({s.N, s.C, s.H, s.W})}}},
                fmt::format("float conv {} case {}", s.group, i), tally);
  }
  tally.report("float Conv2d");
  EXPECT_EQ(fast, 150);
}

// The shapes of the zoo's convolutions (3x3 pad 1, stride 1 and 2, 1x1,
// depthwise) at sizes where the kernels' row grid, tiles and spans all come
// into play, plus a K large enough for int16 inputs to overflow the bound.
TEST(OptimizedKernels, Conv2dZooShapesEqualReference) {
  std::mt19937 rng(7);
  Tally tally;
  const std::vector<ConvSpec> specs = {
      {2, 1, 32, 32, 16, 3, 3, 1, {1, 1}, {1, 1, 1, 1}, {1, 1}},
      {2, 16, 16, 16, 32, 3, 3, 1, {2, 2}, {1, 1, 1, 1}, {1, 1}},
      {2, 16, 16, 16, 32, 1, 1, 1, {2, 2}, {0, 0, 0, 0}, {1, 1}},
      {2, 32, 8, 8, 64, 3, 3, 1, {1, 1}, {1, 1, 1, 1}, {1, 1}},
      {2, 24, 8, 8, 96, 1, 1, 1, {1, 1}, {0, 0, 0, 0}, {1, 1}},
      {2, 96, 16, 16, 96, 3, 3, 96, {2, 2}, {1, 1, 1, 1}, {1, 1}},
      {2, 64, 4, 4, 64, 3, 3, 64, {1, 1}, {1, 1, 1, 1}, {1, 1}},
      {1, 128, 4, 4, 256, 1, 1, 1, {1, 1}, {0, 0, 0, 0}, {1, 1}},
      {1, 64, 9, 9, 64, 3, 3, 1, {1, 1}, {1, 1, 1, 1}, {1, 1}},
  };
  for (const char* name : kProfiles) {
    const ChipProfile p = profile(name);
    for (const ConvSpec& s : specs) {
      for (DType xd : activation_dtypes(p)) run_case(conv_case(rng, p, s, xd), p, tally);
    }
  }
  tally.report("Conv2d (zoo shapes)");
  EXPECT_GT(tally.optimized.value_or(0), tally.cases / 2);
}

// 3x3 stride-1 convolutions of one group, the Winograd kernel's: odd and even
// sizes, asymmetric padding, output widths whose tile rows fill whole vectors
// or leave some lanes over, and 7/8-wide ones (two rows of 4 tiles per vector).
ConvSpec winograd_conv(std::mt19937& rng) {
  ConvSpec s;
  s.N = rand_int(rng, 1, 2);
  s.KH = s.KW = 3;
  s.group = 1;
  s.strides = {1, 1};
  s.dil = {1, 1};
  s.pads = {rand_int(rng, 0, 2), rand_int(rng, 0, 2), rand_int(rng, 0, 2), rand_int(rng, 0, 2)};
  // One case in four is wide (65-150 channel pairs): fewer tiles per task
  // (run_conv_winograd keeps the transformed input near 256 KB), so images
  // split into several tasks.
  const bool wide = rand_int(rng, 0, 3) == 0;
  s.C = wide ? rand_int(rng, 130, 300) : rand_int(rng, 8, 40);
  // Wide cases have 24-100 output channels: with one image, a task is split
  // over up to 4 ranges of channel blocks (run_conv_winograd).
  s.M = wide ? rand_int(rng, 24, 100) : rand_int(rng, 1, 40);
  s.H = wide ? rand_int(rng, 12, 24) : rand_int(rng, 3, 20);
  // 7 and 8: rows of 4 tiles, two tile rows per vector.
  const int64_t ow[] = {7, 8, 8, 13, 14, 15, 16, 25, 29, 32, 33};
  s.W = ow[rand_int(rng, 0, 10)] + 2 - s.pads[1] - s.pads[3];
  return s;
}

TEST(OptimizedKernels, Conv2dWinogradEqualsReference) {
  std::mt19937 rng(31);
  Tally tally;
  const int64_t before = kern::opt::winograd_runs();
  run_conv_cases(
      rng, 16, [&](int) { return winograd_conv(rng); }, tally);
  tally.report("Conv2d (Winograd shapes)");
  const int64_t runs = kern::opt::winograd_runs() - before;
  std::cout << "Winograd kernel runs: " << runs << "\n";
  // 8-bit inputs take it (int16 ones exceed its int16 transforms): most cases,
  // in every optimized mode and thread count.
  EXPECT_GT(runs, tally.cases);
}

// Convolutions with one input channel per group (depthwise, with channel
// multipliers, and stems over one channel): the paired-tap kernel (column stride 1 or 2,
// undilated columns; any row stride and dilation, odd and even kernel widths,
// asymmetric pads, output widths around its 8- and 16-lane rows) and, with
// column stride 3 or dilation, the per-tap kernel.
TEST(OptimizedKernels, Conv2dDepthwiseEqualsReference) {
  std::mt19937 rng(41);
  Tally tally;
  const int64_t before = kern::opt::depthwise_pairs_runs();
  run_conv_cases(
      rng, 30,
      [&](int i) {
        ConvSpec s;
        s.N = rand_int(rng, 1, 3);
        s.C = s.M = s.group = rand_int(rng, 1, 12);
        if (i % 3 == 0) s.M = s.C * rand_int(rng, 2, 4);                 // a channel multiplier
        if (i % 10 == 1) s.C = s.group = 1, s.M = rand_int(rng, 4, 20);  // a stem
        s.KH = rand_int(rng, 1, 5);
        s.KW = rand_int(rng, 0, 2) ? 3 : rand_int(rng, 1, 5);
        s.strides = {rand_int(rng, 1, 3), i % 7 == 6 ? 3 : rand_int(rng, 1, 2)};
        s.dil = {rand_int(rng, 0, 2) ? 1 : 2, i % 9 == 8 ? 2 : 1};
        s.pads = {rand_int(rng, 0, 2), rand_int(rng, 0, 3), rand_int(rng, 0, 2),
                  rand_int(rng, 0, 3)};
        const int64_t eh = (s.KH - 1) * s.dil[0] + 1, ew = (s.KW - 1) * s.dil[1] + 1;
        s.H = std::max<int64_t>(eh - s.pads[0] - s.pads[2], 1) + rand_int(rng, 0, 12);
        s.W = std::max<int64_t>(ew - s.pads[1] - s.pads[3], 1) + rand_int(rng, 0, 40);
        return s;
      },
      tally);
  tally.report("Conv2d (depthwise)");
  const int64_t runs = kern::opt::depthwise_pairs_runs() - before;
  std::cout << "depthwise paired-tap kernel runs: " << runs << "\n";
  EXPECT_GT(runs, tally.cases);
}

// Strided and 1x1 stride-2 convolutions of many channels on images whose
// planes exceed the L1 cache: the direct GEMM copies each tile's input words
// into a contiguous panel first (run_gemm pack); odd sizes, pads, flat and
// rounded output rows, partial tiles.
TEST(OptimizedKernels, Conv2dPackedPanelsEqualReference) {
  std::mt19937 rng(47);
  Tally tally;
  const int64_t before = kern::opt::packed_runs();
  run_conv_cases(
      rng, 6,
      [&](int i) {
        ConvSpec s;
        s.N = rand_int(rng, 1, 2);
        s.C = rand_int(rng, 32, 80);
        s.M = rand_int(rng, 18, 40);
        s.group = 1;
        s.KH = s.KW = i % 3 == 2 ? 1 : 3;
        s.strides = {2, 2};
        s.dil = {1, 1};
        s.pads = s.KH == 1 ? std::vector<int64_t>{0, 0, 0, 0}
                           : std::vector<int64_t>{rand_int(rng, 0, 1), rand_int(rng, 0, 1), 1, 1};
        s.H = rand_int(rng, 24, 40);
        s.W = rand_int(rng, 24, 40);
        return s;
      },
      tally);
  tally.report("Conv2d (packed panels)");
  const int64_t runs = kern::opt::packed_runs() - before;
  std::cout << "packed-panel runs: " << runs << "\n";
  EXPECT_GT(runs, tally.cases / 2);
}

// Pointwise convolutions (1x1, stride 1, no padding, one group), the kernel
// that re-lays out its input span by span: odd and even channel counts (up to
// 150, whose spans are shorter), pixel counts that leave partial tiles and
// spans, images of several spans.
TEST(OptimizedKernels, Conv2dPointwiseEqualsReference) {
  std::mt19937 rng(43);
  Tally tally;
  const int64_t before = kern::opt::pointwise_runs();
  run_conv_cases(
      rng, 16,
      [&](int i) {
        ConvSpec s;
        s.N = rand_int(rng, 1, 3);
        s.C = i % 4 == 3 ? rand_int(rng, 60, 150) : rand_int(rng, 1, 48);  // wide: shorter spans
        s.M = rand_int(rng, 1, 40);
        s.group = 1;
        s.KH = s.KW = 1;
        s.strides = {1, 1};
        s.dil = {1, 1};
        s.pads = {0, 0, 0, 0};
        s.H = rand_int(rng, 1, 24);
        s.W = rand_int(rng, 1, 40);
        return s;
      },
      tally);
  tally.report("Conv2d (pointwise)");
  const int64_t runs = kern::opt::pointwise_runs() - before;
  std::cout << "pointwise kernel runs: " << runs << "\n";
  EXPECT_GT(runs, tally.cases);
}

// A Conv2d followed by Relu or Relu6 in the conv's quantization: the executor
// fuses the clamp into the conv's requantization (program.cc) in runs that do
// not keep intermediates; the Relu's output must equal the reference's.
TEST(OptimizedKernels, Conv2dReluFusionEqualsReference) {
  std::mt19937 rng(57);
  Tally tally;
  int64_t fused = 0;
  for (const char* name : kProfiles) {
    const ChipProfile p = profile(name);
    for (int i = 0; i < 40; ++i) {
      const ConvSpec s = i % 2 ? winograd_conv(rng) : random_conv(rng);
      for (DType xd : activation_dtypes(p)) {
        NodeCase c = conv_case(rng, p, s, xd);
        Graph& g = c.g;
        if (!g.value("y").quant) continue;  // raw int32 output: no activation
        g.value("c") = g.value("y");
        g.value("c").name = "c";
        g.nodes[0].outputs = {"c"};
        Node act;
        act.op = rand_int(rng, 0, 1) ? OpKind::kRelu : OpKind::kRelu6;
        act.name = "act";
        act.inputs = {"c"};
        act.outputs = {"y"};
        g.nodes.push_back(act);
        c.desc += act.op == OpKind::kRelu ? " + Relu" : " + Relu6";
        auto lowered = lower_graph(g, p);
        if (!lowered.is_ok()) continue;  // e.g. Relu6 of a range without 6 in it
        for (KernelMode mode : optimized_modes()) {
          const KernelArgs a{lowered->nodes[1], *lowered, p, mode};
          auto ref = prepare_node(KernelArgs{lowered->nodes[1], *lowered, p, KernelMode::kReference});
          ASSERT_TRUE(ref.is_ok());
          const auto lo_hi = kern::opt::unary_as_clamp(a, *ref);
          if (!lo_hi) continue;
          const EvalFn none;
          fused += kern::opt::prepare_conv2d_clamped(KernelArgs{lowered->nodes[0], *lowered, p, mode},
                                                     lo_hi->first, lo_hi->second, none)
                       .has_value();
        }
        Feeds again = c.feeds;
        again["x"] = random_tensor(rng, xd, g.value("x").shape, dtype_min(xd), dtype_max(xd));
        expect_same(*lowered, p, {c.feeds, again}, c.desc, tally);
      }
    }
  }
  tally.report("Conv2d + Relu/Relu6 (fused)");
  std::cout << "fused conv kernels prepared: " << fused << "\n";
  EXPECT_GT(fused, tally.cases / 4);
}

NodeCase gemm_case(std::mt19937& rng, const ChipProfile& p, bool matmul, DType xd) {
  NodeCase c;
  Graph& g = c.g;
  const int64_t rows = rand_int(rng, 1, 40), K = rand_int(rng, 1, 200), M = rand_int(rng, 1, 40);
  const bool asym_x = xd != DType::kInt16 && rand_int(rng, 0, 1);
  const QuantParams qx = act_quant(rng, xd, 0.03f, asym_x);
  const QuantParams qw =
      weight_quant(rng, M, matmul ? 1 : 0, rand_int(rng, 0, 3) > 0, rand_int(rng, 0, 3) == 0);
  const bool raw = rand_int(rng, 0, 5) == 0;
  const DType yd = activation_dtypes(p)[rand_int(rng, 0, 1)];
  g.inputs = {"x"};
  g.outputs = {"y"};
  Shape xs = {rows, K};
  if (matmul && rand_int(rng, 0, 1)) xs = {rand_int(rng, 1, 3), rows, K};  // batched A
  g.value("x") = ValueInfo{"x", xd, xs, qx};
  const Shape ws = matmul ? Shape{K, M} : Shape{M, K};
  g.constants["w"] = random_tensor(rng, DType::kInt8, ws, -128, 127);
  g.value("w") = ValueInfo{"w", DType::kInt8, ws, qw};
  Node n;
  n.op = matmul ? OpKind::kMatMul : OpKind::kLinear;
  n.name = "gemm";
  n.inputs = {"x", "w"};
  n.outputs = {"y"};
  if (!matmul && rand_int(rng, 0, 1)) {
    g.constants["b"] = random_tensor(rng, DType::kInt32, {M}, -30000, 30000);
    g.value("b") = ValueInfo{"b", DType::kInt32, {M}, std::nullopt};
    n.inputs.push_back("b");
  }
  if (raw) {
    g.value("y") = ValueInfo{"y", DType::kInt32, {}, std::nullopt};
  } else {
    QuantParams qy =
        act_quant(rng, yd, out_scale(qx, qw, K, xd, static_cast<int>(rand_int(rng, -2, 4))),
                  yd == DType::kUInt8);
    g.value("y") = ValueInfo{"y", yd, {}, qy};
  }
  g.nodes = {n};
  c.feeds["x"] = random_tensor(rng, xd, xs, dtype_min(xd), dtype_max(xd));
  c.desc = fmt::format("{} {} x{} K{} M{} x:{} y:{}", p.name, matmul ? "MatMul" : "Linear",
                       shape_str(xs), K, M, dtype_name(xd), raw ? "int32" : dtype_name(yd));
  return c;
}

TEST(OptimizedKernels, LinearAndMatMulEqualReference) {
  std::mt19937 rng(99);
  Tally tally;
  for (const char* name : kProfiles) {
    const ChipProfile p = profile(name);
    for (int i = 0; i < 25; ++i) {
      for (bool matmul : {false, true}) {
        for (DType xd : activation_dtypes(p)) run_case(gemm_case(rng, p, matmul, xd), p, tally);
      }
    }
  }
  tally.report("Linear/MatMul");
  EXPECT_GT(tally.optimized.value_or(0), tally.cases * 3 / 4);
}

// Unary activations (tables, clamps), Flatten with and without a rescale,
// Add/Mul (8-bit tables; broadcasting and 16-bit inputs stay with the
// reference), GlobalAvgPool and Quantize, on every profile.
TEST(OptimizedKernels, ElementwiseOpsEqualReference) {
  std::mt19937 rng(31);
  Tally tally;
  const Shape shape = {2, 3, 5, 7};
  for (const char* name : kProfiles) {
    const ChipProfile p = profile(name);
    for (DType xd : activation_dtypes(p)) {
      for (int i = 0; i < 12; ++i) {
        const bool asym = xd == DType::kUInt8;
        const QuantParams qx = act_quant(rng, xd, 0.05f, asym);
        const bool same = i % 3 == 0;  // Relu & co. into the input's scale: a clamp
        const QuantParams qy =
            same ? qx : act_quant(rng, xd, 0.02f + 0.01f * static_cast<float>(i), asym);
        for (OpKind op : {OpKind::kRelu, OpKind::kRelu6, OpKind::kClip, OpKind::kSigmoid,
                          OpKind::kSiLU, OpKind::kGELU, OpKind::kFlatten, OpKind::kGlobalAvgPool}) {
          const QuantParams qo = op == OpKind::kGlobalAvgPool ? act_quant(rng, xd, 0.01f, asym) : qy;
          std::map<std::string, AttrValue> attrs;
          if (op == OpKind::kClip) attrs = {{"min", -0.5}, {"max", 1.5}};
          expect_case(single_input_case(rng, op, xd, shape, qx, qo, std::move(attrs),
                                        fmt::format("{} {} {}", name, op_name(op), dtype_name(xd))),
                      p, tally);
        }
        for (OpKind op : {OpKind::kAdd, OpKind::kMul}) {
          for (const Shape& bs : {shape, Shape{1, 3, 1, 1}}) {
            NodeCase c;
            c.g.inputs = {"x", "z"};
            c.g.outputs = {"y"};
            c.g.value("x") = ValueInfo{"x", xd, shape, qx};
            c.g.value("z") = ValueInfo{"z", xd, bs, act_quant(rng, xd, 0.03f, asym)};
            c.g.value("y") =
                ValueInfo{"y", xd, {}, act_quant(rng, xd, op == OpKind::kAdd ? 0.07f : 0.2f, asym)};
            Node n;
            n.op = op;
            n.name = "op";
            n.inputs = {"x", "z"};
            n.outputs = {"y"};
            c.g.nodes = {n};
            c.feeds["x"] = random_tensor(rng, xd, shape, dtype_min(xd), dtype_max(xd));
            c.feeds["z"] = random_tensor(rng, xd, bs, dtype_min(xd), dtype_max(xd));
            auto lowered = lower_graph(c.g, p);
            ASSERT_TRUE(lowered.is_ok()) << op_name(op) << ": " << lowered.status().message();
            expect_same(
                *lowered, p, {c.feeds},
                fmt::format("{} {} {} b{}", name, op_name(op), dtype_name(xd), shape_str(bs)),
                tally);
          }
        }
      }
    }
    NodeCase c;
    c.g.inputs = {"x"};
    c.g.outputs = {"y"};
    c.g.value("x") = ValueInfo{"x", DType::kFloat32, shape, std::nullopt};
    c.g.value("y") = ValueInfo{
        "y", activation_dtypes(p)[1], {}, act_quant(rng, activation_dtypes(p)[1], 0.01f, false)};
    Node n;
    n.op = OpKind::kQuantize;
    n.name = "q";
    n.inputs = {"x"};
    n.outputs = {"y"};
    c.g.nodes = {n};
    Tensor x(DType::kFloat32, shape);
    std::normal_distribution<float> d(0.0f, 1.0f);
    for (float& v : x.span<float>()) v = d(rng);
    x.data<float>()[0] = 0.005f;  // a tie at scale 0.01
    // Ties at every k + 1/2 of the scale, values far beyond the range, NaN and
    // infinities (the vector Quantize's clamp and NaN rule).
    const float sc = c.g.value("y").quant->scale[0];
    const float specials[] = {std::numeric_limits<float>::quiet_NaN(),
                              std::numeric_limits<float>::infinity(),
                              -std::numeric_limits<float>::infinity(), 1e30f, -1e30f, 0.0f, -0.0f};
    for (int64_t i = 1; i < x.numel(); ++i) {
      if (i % 3 == 0) x.data<float>()[i] = (static_cast<float>(rand_int(rng, -300, 300)) + 0.5f) * sc;
      if (i % 37 == 0) x.data<float>()[i] = specials[(i / 37) % 7];
    }
    c.feeds["x"] = x;
    auto lowered = lower_graph(c.g, p);
    ASSERT_TRUE(lowered.is_ok()) << lowered.status().message();
    expect_same(*lowered, p, {c.feeds}, fmt::format("{} Quantize", name), tally);
  }
  tally.report("elementwise");
}

// MaxPool: random windows (kernel 1-5, stride 1-3, padding, dilation 1-2),
// same quantization in and out (a plain maximum) and rescaled (a table after it).
TEST(OptimizedKernels, MaxPoolEqualsReference) {
  std::mt19937 rng(47);
  Tally tally;
  for (const char* name : kProfiles) {
    const ChipProfile p = profile(name);
    for (DType xd : activation_dtypes(p)) {
      for (int i = 0; i < 16; ++i) {
        const bool asym = xd == DType::kUInt8;
        const int64_t k = rand_int(rng, 1, 5), st = rand_int(rng, 1, 3), dil = rand_int(rng, 1, 2);
        const int64_t pad = rand_int(rng, 0, k / 2);
        const Shape shape = {rand_int(rng, 1, 3), rand_int(rng, 1, 5), rand_int(rng, k * dil, 17),
                             rand_int(rng, k * dil, 19)};
        const QuantParams qx = act_quant(rng, xd, 0.05f, asym);
        const QuantParams qy = i % 2 ? qx : act_quant(rng, xd, 0.03f, asym);
        const std::map<std::string, AttrValue> attrs = {
            {"kernel", std::vector<int64_t>{k, k}},
            {"strides", std::vector<int64_t>{st, st}},
            {"pads", std::vector<int64_t>{pad, pad, pad, pad}},
            {"dilations", std::vector<int64_t>{dil, dil}}};
        expect_case(single_input_case(rng, OpKind::kMaxPool, xd, shape, qx, qy, attrs,
                                      fmt::format("{} MaxPool k{} s{} p{} d{} {} {}", name, k, st, pad, dil,
                                                  dtype_name(xd), shape_str(shape))),
                    p, tally);
      }
    }
  }
  tally.report("maxpool");
}

// Concat (2-3 inputs, axis 1 or 2, each input in the output's quantization or
// rescaled through its table) and nearest Upsample (integer scales, with and
// without a table): the optimized block moves against the reference.
TEST(OptimizedKernels, ConcatAndUpsampleEqualReference) {
  std::mt19937 rng(53);
  Tally tally;
  for (const char* name : kProfiles) {
    const ChipProfile p = profile(name);
    for (DType xd : activation_dtypes(p)) {
      const bool asym = xd == DType::kUInt8;
      for (int i = 0; i < 8; ++i) {
        const int64_t N = rand_int(rng, 1, 2), H = rand_int(rng, 1, 9), W = rand_int(rng, 1, 11);
        const QuantParams qy = act_quant(rng, xd, 0.04f, asym);
        NodeCase c;
        c.g.outputs = {"y"};
        Node n;
        n.op = OpKind::kConcat;
        n.name = "cat";
        const int64_t axis = rand_int(rng, 1, 2);
        n.attrs["axis"] = axis;
        const int64_t k = rand_int(rng, 2, 3);
        for (int64_t j = 0; j < k; ++j) {
          const std::string v = "x" + std::to_string(j);
          Shape s = {N, rand_int(rng, 1, 5), H, W};
          if (axis == 2) s = {N, 3, rand_int(rng, 1, 6), W};
          c.g.inputs.push_back(v);
          c.g.value(v) = ValueInfo{v, xd, s, (i + j) % 2 ? qy : act_quant(rng, xd, 0.03f, asym)};
          n.inputs.push_back(v);
          c.feeds[v] = random_tensor(rng, xd, s, dtype_min(xd), dtype_max(xd));
        }
        n.outputs = {"y"};
        c.g.value("y") = ValueInfo{"y", xd, {}, qy};
        c.g.nodes = {n};
        c.desc = fmt::format("{} Concat {} axis {}", name, dtype_name(xd), axis);
        expect_case(c, p, tally);

        const Shape s = {N, rand_int(rng, 1, 4), H, W};
        const QuantParams qx = act_quant(rng, xd, 0.05f, asym);
        const QuantParams qu = i % 2 ? qx : act_quant(rng, xd, 0.02f, asym);
        const std::map<std::string, AttrValue> scales = {
            {"scales", std::vector<int64_t>{rand_int(rng, 1, 3), rand_int(rng, 1, 3)}}};
        expect_case(single_input_case(rng, OpKind::kUpsample, xd, s, qx, qu, scales,
                                      fmt::format("{} Upsample {}", name, dtype_name(xd))),
                    p, tally);
      }
    }
  }
  tally.report("concat + upsample");
}

// ---- the requantization epilogue on extreme and tie accumulators -----------

// Sums a channel can carry: the bound, both signs, around the accumulator
// clamp range of single rounding, and multiples of 2^(n-1) (ties).
std::vector<int32_t> edge_sums(std::mt19937& rng, const kern::opt::ChannelRequant& cr,
                               int64_t bound) {
  std::vector<int64_t> v = {0, 1, -1, bound, -bound, bound - 1, 1 - bound};
  for (int64_t a : {int64_t{cr.acc_lo}, int64_t{cr.acc_hi}}) {
    for (int64_t d = -2; d <= 2; ++d) v.push_back(a + d);
  }
  for (int i = 0; i < 40; ++i) v.push_back(rand_int(rng, -bound, bound));
  for (int i = 0; i < 24; ++i) {
    // acc * m = k * 2^(n-1) exactly where m divides it: a tie for odd k.
    const int64_t k = rand_int(rng, -300, 300) * 2 + 1;
    if (cr.m != 0 && cr.shift >= 1 && cr.shift <= 40) {
      const int64_t t = k * (int64_t{1} << (cr.shift - 1));
      if (t % cr.m == 0) v.push_back(t / cr.m);
    }
    v.push_back(rand_int(rng, -4096, 4096));
  }
  std::vector<int32_t> out;
  for (int64_t x : v) out.push_back(static_cast<int32_t>(std::clamp(x, -bound, bound)));
  while (out.size() % kern::opt::kLanes) out.push_back(0);
  return out;
}

TEST(OptimizedKernels, EpilogueEqualsOutStageOnExtremeSums) {
  std::mt19937 rng(5);
  int64_t channels = 0, vector_channels = 0, elements = 0;
  const std::vector<Isa> isas = vector_isas();
  for (const char* name : kProfiles) {
    const ChipProfile p = profile(name);
    for (DType yd : {DType::kInt8, DType::kUInt8, DType::kInt16, DType::kInt32}) {
      for (int trial = 0; trial < 60; ++trial) {
        kern::opt::Epilogue e;
        e.dtype = yd;
        e.st.raw = yd == DType::kInt32 && trial % 2 == 0;
        e.st.y.quantized = !e.st.raw;
        e.st.y.dtype = yd;
        e.st.y.qmin = static_cast<int32_t>(std::max<int64_t>(dtype_min(yd), INT32_MIN));
        e.st.y.qmax = static_cast<int32_t>(std::min<int64_t>(dtype_max(yd), INT32_MAX));
        e.st.y.zp = {static_cast<int32_t>(rand_int(rng, std::max<int64_t>(e.st.y.qmin, -300),
                                                   std::min<int64_t>(e.st.y.qmax, 300)))};
        e.st.rq.scheme = p.requant;
        e.st.rq.mode = p.rounding;
        // Multipliers of reals across 2^-40 .. 2^4 (small shifts: many ties).
        const double real = std::ldexp(1.0 + static_cast<double>(rand_int(rng, 0, 999)) / 1000,
                                       static_cast<int>(rand_int(rng, -40, 4)));
        auto mult = derive_multiplier(real, p.multiplier_bits, p.min_rshift, p.max_rshift);
        if (!mult.is_ok()) continue;
        if (trial % 5 == 0) {
          mult->m = static_cast<int32_t>(rand_int(rng, 1, 9));
          mult->rshift = static_cast<int>(rand_int(rng, 1, 4));
        }
        e.st.rq.mult = {*mult};
        e.st.rq.fscale = {static_cast<float>(real)};
        const int64_t bound = trial % 3 == 0 ? (int64_t{1} << 30) : rand_int(rng, 1, 1 << 24);
        e.sum_bound = {bound};
        e.prepare();
        Tensor b = Tensor::from_vector<int32_t>(
            {1}, {static_cast<int32_t>(rand_int(rng, -(1 << 20), 1 << 20))});
        e.set_bias(trial % 4 ? &b : nullptr);
        const std::vector<int32_t> sums = edge_sums(rng, e.ch[0], bound - std::abs(e.bias[0]));
        const int64_t n = static_cast<int64_t>(sums.size()) - 1;  // a partial last group too
        const size_t es = dtype_size(yd);
        for (int64_t stride : {1, 3}) {
          std::vector<char> want(n * es * stride), got(n * es * stride);
          kern::opt::kernels(Isa::kScalar)
              .finish(e, 0, 1, sums.data(), 0, n, want.data(), 0, stride);
          // The scalar finish is OutStage::finish itself.
          for (int64_t i = 0; i < n; ++i) {
            Tensor one(yd, {1});
            kern::store_i(one, 0, e.st.finish(int64_t{sums[i]} + e.bias[0], 0));
            ASSERT_EQ(std::memcmp(one.raw(), want.data() + i * stride * es, es), 0);
          }
          for (Isa isa : isas) {
            std::fill(got.begin(), got.end(), 0);
            kern::opt::kernels(isa).finish(e, 0, 1, sums.data(), 0, n, got.data(), 0, stride);
            ASSERT_EQ(got, want) << name << " " << dtype_name(yd) << " m " << e.st.rq.mult[0].m
                                 << " rshift " << e.st.rq.mult[0].rshift << " scale " << real;
            elements += n;
          }
        }
        ++channels;
        vector_channels += e.vec[0];
      }
    }
  }
  std::cout << "Epilogue: " << channels << " channels (" << vector_channels
            << " through vector code), " << elements << " sums compared\n";
  RecordProperty("elements", std::to_string(elements));
  EXPECT_GT(vector_channels, channels / 2);
}

// The float scheme (onnx-qdq) on its own edges: power-of-two and other scales
// that make exact ties (x.5), products beyond int32 (vcvtps2dq overflows),
// output ranges narrowed as a fused Relu/Relu6 narrows them, and runs long
// enough for the 32-output (8-bit) and 16-output (int16) vector loops and
// their tails.
TEST(OptimizedKernels, FloatEpilogueEqualsOutStageOnTiesAndOverflow) {
  std::mt19937 rng(23);
  const std::vector<Isa> isas = vector_isas();
  int64_t elements = 0;
  const float scales[] = {0.5f, 0.25f, 0.125f, 1.0f / 256, 0.375f, 1.5f, 16.0f, 3.0e-5f,
                          0.0123f, 1.0e9f, 7.0e-10f};
  for (DType yd : {DType::kInt8, DType::kUInt8, DType::kInt16}) {
    for (float scale : scales) {
      for (int range = 0; range < 4; ++range) {
        kern::opt::Epilogue e;
        e.dtype = yd;
        e.st.y.quantized = true;
        e.st.y.dtype = yd;
        const int64_t dmin = dtype_min(yd), dmax = dtype_max(yd);
        const int32_t zp = static_cast<int32_t>(
            range == 3 ? dmin : rand_int(rng, std::max<int64_t>(dmin, -300), std::min<int64_t>(dmax, 300)));
        e.st.y.zp = {zp};
        e.st.y.qmin = static_cast<int32_t>(dmin);
        e.st.y.qmax = static_cast<int32_t>(dmax);
        if (range == 1) e.st.y.qmin = std::max<int32_t>(zp, e.st.y.qmin);  // Relu
        if (range == 2) {  // Relu6 at a scale of 6 / 100
          e.st.y.qmin = std::max<int32_t>(zp, e.st.y.qmin);
          e.st.y.qmax = static_cast<int32_t>(std::min<int64_t>(zp + 100, dmax));
        }
        e.st.rq.scheme = RequantScheme::kFloat;
        e.st.rq.mode = RoundingMode::kHalfToEven;
        e.st.rq.fscale = {scale};
        e.st.rq.mult = {Multiplier{}};
        const int64_t bound = int64_t{1} << 30;
        e.sum_bound = {bound};
        e.prepare();
        Tensor b = Tensor::from_vector<int32_t>({1}, {static_cast<int32_t>(rand_int(rng, -9, 9))});
        e.set_bias(range % 2 ? &b : nullptr);
        ASSERT_TRUE(e.vec[0]);
        std::vector<int32_t> sums;
        for (int64_t a = -700; a <= 700; ++a) sums.push_back(static_cast<int32_t>(a));
        for (int i = 0; i < 300; ++i) {
          sums.push_back(static_cast<int32_t>(rand_int(rng, -bound + 10, bound - 10)));
          // acc * scale = k + 1/2 where that is an integer accumulator.
          const double t = (static_cast<double>(rand_int(rng, -40000, 40000)) + 0.5) / scale;
          if (std::abs(t) < 1e9 && t == std::floor(t)) sums.push_back(static_cast<int32_t>(t));
        }
        for (int64_t a : {bound - 10, -bound + 10, int64_t{0}}) sums.push_back(static_cast<int32_t>(a));
        while (sums.size() % kern::opt::kLanes) sums.push_back(0);
        const size_t es = dtype_size(yd);
        for (int64_t n : {static_cast<int64_t>(sums.size()), static_cast<int64_t>(sums.size()) - 5,
                          int64_t{37}, int64_t{16}}) {
          for (int64_t stride : {1, 3}) {
            std::vector<char> want(n * es * stride), got(n * es * stride);
            for (int64_t i = 0; i < n; ++i) {
              Tensor one(yd, {1});
              kern::store_i(one, 0, e.st.finish(int64_t{sums[i]} + e.bias[0], 0));
              std::memcpy(want.data() + i * stride * es, one.raw(), es);
            }
            for (Isa isa : isas) {
              std::fill(got.begin(), got.end(), 0);
              kern::opt::kernels(isa).finish(e, 0, 1, sums.data(), 0, n, got.data(), 0, stride);
              ASSERT_EQ(got, want) << dtype_name(yd) << " scale " << scale << " zp " << zp
                                   << " range " << range << " n " << n << " stride " << stride;
              elements += n;
            }
            if (stride == 1 && kernel_mode_supported(KernelMode::kAmx)) {  // the AMX epilogue
              std::fill(got.begin(), got.end(), 0);
              kern::opt::amx_finish(e, 0, 1, sums.data(), 0, n, got.data(), 0);
              ASSERT_EQ(got, want) << "amx " << dtype_name(yd) << " scale " << scale << " zp "
                                   << zp << " range " << range << " n " << n;
              elements += n;
            }
          }
        }
      }
    }
  }
  std::cout << "float epilogue: " << elements << " sums compared\n";
  RecordProperty("elements", std::to_string(elements));
}

// ---- whole zoo models ----------------------------------------------------

// A zoo graph quantized torch-free (quant/plan, min/max observers): BatchNorm
// statistics randomised so that folding yields real biases, ranges from a float
// run on `calib`.
Result<Graph> ptq_zoo(const std::string& model, const ChipProfile& p, const QuantConfig& cfg,
                      const Tensor& calib) {
  QEVAL_ASSIGN_OR_RETURN(Graph g, build_zoo_graph(model, 3));
  std::mt19937 rng(17);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (const Node& n : g.nodes) {
    if (n.op != OpKind::kBatchNorm) continue;
    for (size_t i = 1; i < 5; ++i) {
      for (float& v : g.constants.at(n.inputs[i]).span<float>()) {
        v = (i == 1 || i == 4) ? 1.0f + 0.5f * u(rng) : 0.2f * u(rng);  // gamma, var; beta, mean
      }
    }
  }
  QEVAL_ASSIGN_OR_RETURN(QuantPlan plan, plan_quantization(g, cfg, p));
  QEVAL_ASSIGN_OR_RETURN(Graph lowered, lower_graph(g, p));
  lowered.value(g.inputs[0]).shape[0] = -1;
  QEVAL_ASSIGN_OR_RETURN(Executor fex,
                         Executor::create(std::move(lowered), p, KernelMode::kReference));
  RunOptions keep;
  keep.keep_intermediates = true;
  QEVAL_ASSIGN_OR_RETURN(auto vals, fex.run({{g.inputs[0], calib}}, keep));
  DeployParams dp;
  dp.rounding = p.quantize_rounding;
  for (const std::string& v : plan.act_order) {
    Range r;
    for (float x : vals.at(v).span<float>()) r.lo = std::min(r.lo, x), r.hi = std::max(r.hi, x);
    QEVAL_ASSIGN_OR_RETURN(dp.act[v], make_quant_params({r}, plan.act.at(v)));
  }
  for (const Node& n : g.nodes) {
    if (!plan.weight.count(n.name)) continue;
    Tensor w = g.constants.at(n.inputs[1]).clone();
    const int64_t M = w.dim(0), inner = w.numel() / M;
    const bool has_bias = n.inputs.size() > 2 && !n.inputs[2].empty();
    std::vector<float> b(M, 0.0f);
    if (has_bias) {
      auto bs = g.constants.at(n.inputs[2]).span<float>();
      b.assign(bs.begin(), bs.end());
    }
    if (auto it = plan.folded_bn.find(n.name); it != plan.folded_bn.end()) {
      const Node& bn = *std::find_if(g.nodes.begin(), g.nodes.end(),
                                     [&](const Node& m) { return m.name == it->second; });
      const float eps = static_cast<float>(bn.attr_float("epsilon", 1e-5));
      auto c = [&](int i) { return g.constants.at(bn.inputs[i]).span<float>(); };
      for (int64_t ch = 0; ch < M; ++ch) {
        const float s = c(1)[ch] / std::sqrt(c(4)[ch] + eps);
        for (int64_t k = 0; k < inner; ++k) w.data<float>()[ch * inner + k] *= s;
        b[ch] = c(2)[ch] + (b[ch] - c(3)[ch]) * s;
      }
    } else if (!has_bias) {
      b.clear();
    }
    const bool pc = plan.weight_per_channel.at(n.name);
    std::vector<Range> ranges = per_channel_ranges(w.span<float>(), w.shape(), 0);
    if (!pc) {
      Range all;
      for (const Range& r : ranges)
        all.lo = std::min(all.lo, r.lo), all.hi = std::max(all.hi, r.hi);
      ranges = {all};
    }
    QEVAL_ASSIGN_OR_RETURN(dp.weight[n.name],
                           make_quant_params(ranges, plan.weight.at(n.name), pc ? 0 : -1));
    dp.weight_f[n.name] = w;
    if (!b.empty()) dp.bias_f[n.name] = Tensor::from_vector<float>({M}, b);
  }
  return build_quantized_graph(g, plan, dp);
}

Tensor images(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  Tensor t(DType::kFloat32, {n, 1, 32, 32});
  for (float& v : t.span<float>()) v = d(rng);
  return t;
}

// Every intermediate value of resnet8 and mobilenetv2_tiny, quantized for each
// profile (int8 activations, and int16 ones on the int16 profile), then the
// outputs of repeated runs that recycle intermediate storage.
TEST(OptimizedKernels, ZooModelsEqualReferenceOnEveryValue) {
  Tally tally;
  int64_t layers = 0, optimized_layers = 0;
  for (const char* model : {"resnet8", "mobilenetv2_tiny"}) {
    for (const char* name : kProfiles) {
      const ChipProfile p = profile(name);
      for (int bits : {8, 16}) {
        if (bits == 16 && p.name != "int16") continue;
        QuantConfig cfg;
        cfg.activation_bits = bits;
        auto q = ptq_zoo(model, p, cfg, images(2, 1));
        ASSERT_TRUE(q.is_ok()) << model << " " << name << ": " << q.status().message();
        auto lowered = lower_graph(*q, p);
        ASSERT_TRUE(lowered.is_ok()) << lowered.status().message();
        lowered->value(q->inputs[0]).shape[0] = -1;
        const std::string what = fmt::format("{} {} a{}", model, name, bits);
        for (const Node& n : lowered->nodes) {
          if (n.op != OpKind::kConv2d && n.op != OpKind::kLinear) continue;
          Graph one = *lowered;
          one.nodes = {n};
          layers += 1;
          optimized_layers += takes_optimized(one, p);
        }
        RunOptions keep;
        keep.keep_intermediates = true;
        const std::string in = q->inputs[0];
        expect_same(*lowered, p, {{{in, images(2, 2)}}}, what, tally, keep);
        expect_same(*lowered, p,
                    {{{in, images(2, 10)}}, {{in, images(2, 11)}}, {{in, images(1, 12)}}},
                    what + " outputs", tally);
        // Runs without keep_intermediates fuse Conv2d + Relu/Relu6: every value
        // that still exists there (all but the convs' outputs feeding a Relu)
        // made a graph output, so that each is compared.
        Graph all = *lowered;
        std::map<std::string, int> uses;
        for (const Node& n : all.nodes)
          for (const auto& v : n.inputs) uses[v] += 1;
        for (size_t i = 0; i < all.nodes.size(); ++i) {
          const Node& n = all.nodes[i];
          for (const auto& v : n.outputs) {
            bool feeds_act = false;
            for (const Node& m : all.nodes) {
              feeds_act |= (m.op == OpKind::kRelu || m.op == OpKind::kRelu6) && m.inputs[0] == v;
            }
            if (n.op == OpKind::kConv2d && feeds_act && uses[v] == 1) continue;
            if (std::find(all.outputs.begin(), all.outputs.end(), v) == all.outputs.end()) {
              all.outputs.push_back(v);
            }
          }
        }
        expect_same(all, p, {{{in, images(2, 13)}}, {{in, images(3, 14)}}},
                    what + " fused values", tally);
      }
    }
  }
  tally.report("zoo models");
  std::cout << "zoo models: " << optimized_layers << " of " << layers
            << " Conv2d/Linear layers on the optimized path (int16 activations beyond the bound: "
               "reference)\n";
  EXPECT_GT(optimized_layers, layers * 3 / 4);
}

// ---- modes ---------------------------------------------------------------

TEST(OptimizedKernels, KernelModeNamesAndSupport) {
  for (KernelMode m : {KernelMode::kReference, KernelMode::kOptimized, KernelMode::kScalar,
                       KernelMode::kAvx2, KernelMode::kAvx512Vnni, KernelMode::kAmx}) {
    auto back = kernel_mode_from_name(kernel_mode_name(m));
    ASSERT_TRUE(back.is_ok());
    EXPECT_EQ(*back, m);
  }
  auto bad = kernel_mode_from_name("fast");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("allowed: reference, optimized"), std::string::npos);
  EXPECT_TRUE(kernel_mode_supported(KernelMode::kReference));
  EXPECT_TRUE(kernel_mode_supported(KernelMode::kScalar));
  // $QEVAL_SIM_KERNELS chooses the mode of Executor::create(graph, profile).
  ASSERT_EQ(setenv("QEVAL_SIM_KERNELS", "fastest", 1), 0);
  auto env_bad = Executor::create(Graph{}, profile("bm1690"));
  ASSERT_FALSE(env_bad.is_ok());
  EXPECT_NE(env_bad.status().message().find("$QEVAL_SIM_KERNELS"), std::string::npos);
  ASSERT_EQ(setenv("QEVAL_SIM_KERNELS", "reference", 1), 0);
  EXPECT_EQ(*kernel_mode_from_env(), KernelMode::kReference);
  ASSERT_EQ(unsetenv("QEVAL_SIM_KERNELS"), 0);
  EXPECT_EQ(*kernel_mode_from_env(), KernelMode::kOptimized);
  if (!kernel_mode_supported(KernelMode::kAvx512Vnni)) {
    Graph g;
    auto ex = Executor::create(g, profile("bm1690"), KernelMode::kAvx512Vnni);
    ASSERT_FALSE(ex.is_ok());
    EXPECT_NE(ex.status().message().find("lacks"), std::string::npos);
  }
}

// The VNNI micro-kernel runs in the suites above where the CPU has it; this
// test says plainly when it could not.
TEST(OptimizedKernels, Avx512VnniAvailability) {
  if (!kernel_mode_supported(KernelMode::kAvx512Vnni)) {
    GTEST_SKIP() << "this CPU lacks AVX-512 VNNI (avx512f, avx512vl, avx512vnni): the avx512vnni "
                    "kernels were "
                    "not executed";
  }
  std::mt19937 rng(1);
  Tally tally;
  const ChipProfile p = profile("bm1690");
  for (int i = 0; i < 20; ++i)
    run_case(conv_case(rng, p, random_conv(rng), DType::kInt8), p, tally);
  tally.report("Conv2d on AVX-512 VNNI");
}

}  // namespace
}  // namespace qeval
