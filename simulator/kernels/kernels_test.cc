// Reference kernels: hand-computed cases and agreement with a float model of
// the same quantized computation (within 1 LSB; exactness against external
// references is the job of the golden and referee tests).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "simulator/program.h"

namespace qeval {
namespace {

QuantParams qp(DType t, float s, int32_t z) { return QuantParams{t, {s}, {z}, -1}; }

struct ConvCase {
  Graph g;
  Tensor x, w, b;
};

// x (int) -> Conv2d(w per-channel, b int32) -> y (int)
ConvCase conv_case(std::mt19937& rng, DType act, int64_t group, int64_t stride, int64_t dil) {
  ConvCase c;
  const int64_t C = 4, M = 4, H = 9, W = 7, K = 3;
  std::uniform_int_distribution<int> xv(static_cast<int>(dtype_min(act)),
                                        static_cast<int>(dtype_max(act)));
  std::uniform_int_distribution<int> wv(-127, 127), bv(-3000, 3000);
  c.x = Tensor(act, {2, C, H, W});
  for (int64_t i = 0; i < c.x.numel(); ++i) {
    if (act == DType::kUInt8) c.x.data<uint8_t>()[i] = static_cast<uint8_t>(xv(rng));
    else c.x.data<int8_t>()[i] = static_cast<int8_t>(xv(rng));
  }
  c.w = Tensor(DType::kInt8, {M, C / group, K, K});
  for (int64_t i = 0; i < c.w.numel(); ++i) c.w.data<int8_t>()[i] = static_cast<int8_t>(wv(rng));
  c.b = Tensor(DType::kInt32, {M});
  for (int64_t i = 0; i < M; ++i) c.b.data<int32_t>()[i] = bv(rng);
  Graph& g = c.g;
  g.inputs = {"x"};
  g.outputs = {"y"};
  g.value("x").dtype = act;
  g.value("x").shape = c.x.shape();
  g.value("x").quant = qp(act, 0.02f, act == DType::kUInt8 ? 120 : -3);
  g.constants["w"] = c.w;
  g.value("w").dtype = DType::kInt8;
  g.value("w").quant = QuantParams{DType::kInt8, {0.011f, 0.007f, 0.013f, 0.005f}, {0, 0, 0, 0}, 0};
  g.constants["b"] = c.b;
  g.value("b").dtype = DType::kInt32;
  g.value("y").dtype = act;
  g.value("y").quant = qp(act, 0.9f, act == DType::kUInt8 ? 100 : 4);
  Node n;
  n.op = OpKind::kConv2d;
  n.name = "conv";
  n.inputs = {"x", "w", "b"};
  n.outputs = {"y"};
  n.attrs["strides"] = std::vector<int64_t>{stride, stride};
  n.attrs["pads"] = std::vector<int64_t>{1, 2, 1, 0};
  n.attrs["dilations"] = std::vector<int64_t>{dil, dil};
  n.attrs["group"] = group;
  g.nodes = {n};
  return c;
}

Tensor run1(const Graph& g, const ChipProfile& p, const Tensor& x) {
  auto lowered = lower_graph(g, p);
  EXPECT_TRUE(lowered.is_ok()) << lowered.status().message();
  auto ex = Executor::create(*lowered, p);
  EXPECT_TRUE(ex.is_ok()) << ex.status().message();
  auto out = ex->run({{"x", x}});
  EXPECT_TRUE(out.is_ok()) << out.status().message();
  return out->at("y");
}

// Float model: y = clamp(round(sum DQ(x) DQ(w) / s_y + b*s_x*s_w/s_y) + z_y).
TEST(ConvKernel, WithinOneLsbOfFloatModelOnEveryProfile) {
  std::mt19937 rng(11);
  for (const char* prof : {"bm1690", "onnx-qdq", "uint8-asym", "int16"}) {
    auto p = load_profile(prof);
    ASSERT_TRUE(p.is_ok());
    for (int64_t group : {1, 2, 4}) {
      for (DType act : {DType::kInt8, DType::kUInt8}) {
        ConvCase c = conv_case(rng, act, group, 2, group == 2 ? 2 : 1);
        Tensor y = run1(c.g, *p, c.x);
        const auto& qx = *c.g.value("x").quant;
        const auto& qw = *c.g.value("w").quant;
        const auto& qy = *c.g.value("y").quant;
        const int64_t C = 4, H = 9, W = 7, M = 4, Cg = C / group, OH = y.dim(2), OW = y.dim(3);
        const int64_t dil = group == 2 ? 2 : 1;
        int64_t max_diff = 0, exact = 0;
        for (int64_t nb = 0; nb < 2; ++nb)
          for (int64_t m = 0; m < M; ++m)
            for (int64_t oh = 0; oh < OH; ++oh)
              for (int64_t ow = 0; ow < OW; ++ow) {
                double acc = c.b.data<int32_t>()[m] * double(qx.scale[0]) * qw.scale[m];
                for (int64_t ic = 0; ic < Cg; ++ic)
                  for (int64_t kh = 0; kh < 3; ++kh)
                    for (int64_t kw = 0; kw < 3; ++kw) {
                      const int64_t ih = oh * 2 - 1 + kh * dil, iw = ow * 2 - 2 + kw * dil;
                      if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                      const int64_t xi = ((nb * C + (m / (M / group)) * Cg + ic) * H + ih) * W + iw;
                      acc += (c.x.get_int(xi) - qx.zero_point[0]) * double(qx.scale[0]) *
                             c.w.get_int(((m * Cg + ic) * 3 + kh) * 3 + kw) * qw.scale[m];
                    }
                const double want = std::clamp<double>(std::round(acc / qy.scale[0]) + qy.zero_point[0],
                                                       double(qy.qmin()), double(qy.qmax()));
                const int64_t got = y.get_int(((nb * M + m) * OH + oh) * OW + ow);
                max_diff = std::max<int64_t>(max_diff, std::llabs(got - int64_t(want)));
                exact += got == int64_t(want);
              }
        EXPECT_LE(max_diff, 1) << prof << " group " << group;
        EXPECT_GT(exact, y.numel() * 9 / 10) << prof;  // ties and rounding are rare
      }
    }
  }
}

// Hand-computed: x = [[1,2],[3,4]] (zp 0, s 1), w = 1x1x2x2 all 1 (s 1),
// y scale 4 -> acc = 10, 10/4 = 2.5: half_up -> 3, half_to_even -> 2.
TEST(ConvKernel, HandComputedRoundingPerProfile) {
  Graph g;
  g.inputs = {"x"};
  g.outputs = {"y"};
  g.value("x") = ValueInfo{"x", DType::kInt8, {1, 1, 2, 2}, qp(DType::kInt8, 1.0f, 0)};
  g.constants["w"] = Tensor::from_vector<int8_t>({1, 1, 2, 2}, {1, 1, 1, 1});
  g.value("w") = ValueInfo{"w", DType::kInt8, {1, 1, 2, 2}, qp(DType::kInt8, 1.0f, 0)};
  g.value("y") = ValueInfo{"y", DType::kInt8, {}, qp(DType::kInt8, 4.0f, 0)};
  Node n;
  n.op = OpKind::kConv2d;
  n.name = "c";
  n.inputs = {"x", "w"};
  n.outputs = {"y"};
  g.nodes = {n};
  const Tensor x = Tensor::from_vector<int8_t>({1, 1, 2, 2}, {1, 2, 3, 4});
  EXPECT_EQ(run1(g, *load_profile("bm1690"), x).get_int(0), 3);
  EXPECT_EQ(run1(g, *load_profile("onnx-qdq"), x).get_int(0), 2);
  EXPECT_EQ(run1(g, *load_profile("uint8-asym"), x).get_int(0), 2);
}

TEST(AddKernel, WithinOneLsbOfFloatModel) {
  std::mt19937 rng(5);
  for (const char* prof : {"bm1690", "onnx-qdq", "uint8-asym"}) {
    auto p = load_profile(prof);
    Graph g;
    g.inputs = {"x"};
    g.outputs = {"y"};
    g.value("x") = ValueInfo{"x", DType::kUInt8, {256}, qp(DType::kUInt8, 0.05f, 128)};
    Tensor bconst(DType::kUInt8, {256});
    for (int i = 0; i < 256; ++i) bconst.data<uint8_t>()[i] = static_cast<uint8_t>(rng());
    g.constants["b"] = bconst;
    g.value("b") = ValueInfo{"b", DType::kUInt8, {256}, qp(DType::kUInt8, 0.03f, 77)};
    g.value("y") = ValueInfo{"y", DType::kUInt8, {}, qp(DType::kUInt8, 0.07f, 90)};
    Node n;
    n.op = OpKind::kAdd;
    n.name = "add";
    n.inputs = {"x", "b"};
    n.outputs = {"y"};
    g.nodes = {n};
    Tensor x(DType::kUInt8, {256});
    for (int i = 0; i < 256; ++i) x.data<uint8_t>()[i] = static_cast<uint8_t>(i);
    Tensor y = run1(g, *p, x);
    for (int i = 0; i < 256; ++i) {
      const double real = (i - 128) * 0.05 + (bconst.data<uint8_t>()[i] - 77) * 0.03;
      const double want = std::clamp(std::round(real / 0.07) + 90, 0.0, 255.0);
      EXPECT_LE(std::fabs(y.get_int(i) - want), 1) << prof << " " << i;
    }
  }
}

TEST(Qmodel, SaveLoadRunsIdentically) {
  std::mt19937 rng(3);
  ConvCase c = conv_case(rng, DType::kInt8, 1, 1, 1);
  auto p = load_profile("bm1690");
  auto lowered = lower_graph(c.g, *p);
  ASSERT_TRUE(lowered.is_ok());
  const std::string path = ::testing::TempDir() + "/conv.qmodel";
  ASSERT_TRUE(save_graph(*lowered, path).is_ok());
  auto back = load_graph(path);
  ASSERT_TRUE(back.is_ok()) << back.status().message();
  EXPECT_EQ(back->metadata.at("profile"), "bm1690");
  EXPECT_TRUE(back->nodes[0].params.count("m"));
  auto ex = Executor::create(*back, *p);
  ASSERT_TRUE(ex.is_ok());
  auto out = ex->run({{"x", c.x}});
  ASSERT_TRUE(out.is_ok());
  EXPECT_TRUE(out->at("y").equals(run1(c.g, *p, c.x)));
  // A program lowered for bm1690 refuses to run under another profile.
  EXPECT_FALSE(Executor::create(*back, *load_profile("onnx-qdq")).is_ok());
}

TEST(Executor, InputErrorsAreClear) {
  std::mt19937 rng(3);
  ConvCase c = conv_case(rng, DType::kInt8, 1, 1, 1);
  auto p = load_profile("bm1690");
  auto ex = Executor::create(*lower_graph(c.g, *p), *p);
  ASSERT_TRUE(ex.is_ok());
  auto missing = ex->run({});
  ASSERT_FALSE(missing.is_ok());
  EXPECT_NE(missing.status().message().find("missing input 'x'"), std::string::npos);
  auto wrong_dtype = ex->run({{"x", Tensor(DType::kFloat32, c.x.shape())}});
  ASSERT_FALSE(wrong_dtype.is_ok());
  EXPECT_NE(wrong_dtype.status().message().find("float32"), std::string::npos);
  auto wrong_shape = ex->run({{"x", Tensor(DType::kInt8, {1, 4, 9, 7})}});
  ASSERT_FALSE(wrong_shape.is_ok());
  EXPECT_NE(wrong_shape.status().message().find("expects"), std::string::npos);
}

TEST(UnaryKernel, SigmoidLutMatchesFloat) {
  Graph g;
  g.inputs = {"x"};
  g.outputs = {"y"};
  g.value("x") = ValueInfo{"x", DType::kInt8, {256}, qp(DType::kInt8, 0.05f, 0)};
  g.value("y") = ValueInfo{"y", DType::kInt8, {}, qp(DType::kInt8, 1.0f / 256, -128)};
  Node n;
  n.op = OpKind::kSigmoid;
  n.name = "sig";
  n.inputs = {"x"};
  n.outputs = {"y"};
  g.nodes = {n};
  Tensor x(DType::kInt8, {256});
  for (int i = 0; i < 256; ++i) x.data<int8_t>()[i] = static_cast<int8_t>(i - 128);
  Tensor y = run1(g, *load_profile("bm1690"), x);
  for (int i = 0; i < 256; ++i) {
    const double s = 1.0 / (1.0 + std::exp(-(i - 128) * 0.05));
    const double want = std::clamp(std::round(s * 256) - 128, -128.0, 127.0);
    EXPECT_LE(std::fabs(y.get_int(i) - want), 1) << i;
  }
}

}  // namespace
}  // namespace qeval
