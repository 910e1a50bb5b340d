// Fake quant == the simulator's quantize/dequantize (core/numerics), element for
// element, for every rounding mode; STE and LSQ gradients against the formulas
// of quant/fake_quant.h computed by hand in double precision.
#include "quant/fake_quant.h"
#include "quant/interpreter.h"

#include <gtest/gtest.h>

#include <cmath>

namespace qeval {
namespace {

// Values on the rounding edges (k + 0.5)·s and just beside them, plus random ones.
torch::Tensor edge_values(float scale, int64_t n) {
  torch::manual_seed(3);
  std::vector<float> v;
  for (int k = -140; k <= 140; ++k) {
    const float e = (k + 0.5f) * scale;
    v.insert(v.end(), {e, std::nextafter(e, -INFINITY), std::nextafter(e, INFINITY), k * scale});
  }
  torch::Tensor r = torch::randn({n}) * (100 * scale);
  return torch::cat({torch::tensor(v), r});
}

TEST(FakeQuant, EqualsSimulatorQuantizeDequantizeForEveryRounding) {
  const float scale = 0.0371f;
  const torch::Tensor x = edge_values(scale, 4000);
  for (RoundingMode mode : {RoundingMode::kHalfUp, RoundingMode::kHalfAwayFromZero, RoundingMode::kHalfToEven}) {
    for (auto [qmin, qmax, zp] : {std::tuple{-128, 127, 0}, std::tuple{0, 255, 85}}) {
      FakeQuantSpec spec{qmin, qmax, -1, mode};
      const torch::Tensor y = fake_quant_ste(x, torch::tensor(scale), torch::tensor(static_cast<float>(zp)), spec);
      int64_t mismatches = 0;
      for (int64_t i = 0; i < x.numel(); ++i) {
        const float want =
            dequantize_value(quantize_value(x[i].item<float>(), scale, zp, qmin, qmax, mode), scale, zp);
        mismatches += y[i].item<float>() != want;
      }
      EXPECT_EQ(mismatches, 0) << "mode " << static_cast<int>(mode) << " zp " << zp;
    }
  }
}

TEST(FakeQuant, PerChannelUsesEachChannelsScale) {
  torch::manual_seed(1);
  const torch::Tensor w = torch::randn({3, 4, 2, 2});
  const std::vector<float> scales = {0.01f, 0.02f, 0.05f};
  FakeQuantSpec spec{-128, 127, 0, RoundingMode::kHalfUp};
  const torch::Tensor y = fake_quant_ste(w, torch::tensor(scales), torch::zeros({3}), spec);
  for (int64_t c = 0; c < 3; ++c) {
    for (int64_t i = 0; i < 16; ++i) {
      const float x = w[c].flatten()[i].item<float>();
      EXPECT_EQ(y[c].flatten()[i].item<float>(),
                dequantize_value(quantize_value(x, scales[c], 0, -128, 127, RoundingMode::kHalfUp), scales[c], 0));
    }
  }
}

// The fused one-pass kernel (dense float32 inputs) and the composite tensor
// expression (any other input: here a strided view) give bit-identical
// outputs, input gradients and LSQ scale gradients, per tensor and per channel
// (weights in NCHW and channels-last), for every rounding mode.
TEST(FakeQuant, FusedKernelEqualsTheCompositeExpressionBitForBit) {
  torch::manual_seed(11);
  int64_t compared = 0;
  for (RoundingMode mode : {RoundingMode::kHalfUp, RoundingMode::kHalfAwayFromZero, RoundingMode::kHalfToEven}) {
    for (bool per_channel : {false, true}) {
      for (bool channels_last : {false, true}) {
        for (bool lsq : {false, true}) {
          const int64_t C = 8;
          // Twice the width: the view [..., ::2] is not dense, so it takes the composite path.
          // Both inputs share a memory order (NCHW or channels-last), so reductions agree too.
          const auto format = channels_last ? torch::MemoryFormat::ChannelsLast : torch::MemoryFormat::Contiguous;
          const torch::Tensor base = (torch::randn({C, 5, 3, 8}) * 0.4).contiguous(format);
          const torch::Tensor composite_in = base.slice(3, 0, 8, 2);
          const torch::Tensor fused_in = composite_in.contiguous(format);
          ASSERT_FALSE(composite_in.is_non_overlapping_and_dense());
          const torch::Tensor scale = per_channel ? torch::rand({C}) * 0.01 + 0.002 : torch::tensor({0.0037f});
          const torch::Tensor zp = per_channel ? torch::zeros({C}) : torch::tensor({3.0f});
          FakeQuantSpec spec{-128, 127, per_channel ? 0 : -1, mode};
          auto run = [&](const torch::Tensor& in) {
            torch::Tensor x = in.detach().requires_grad_(true);
            torch::Tensor s = scale.clone().set_requires_grad(lsq);
            torch::Tensor y = lsq ? fake_quant_lsq(x, s, zp, spec) : fake_quant_ste(x, s, zp, spec);
            const torch::Tensor g = torch::linspace(-1, 1, y.numel()).reshape(y.sizes());
            y.backward(g);
            return std::tuple{y.detach().contiguous(), x.grad().contiguous(),
                              lsq ? s.grad().contiguous() : torch::zeros({1})};
          };
          auto [y1, gx1, gs1] = run(fused_in);
          auto [y2, gx2, gs2] = run(composite_in);
          ASSERT_TRUE(torch::equal(y1, y2)) << "mode " << int(mode) << " pc " << per_channel << " cl " << channels_last;
          ASSERT_TRUE(torch::equal(gx1, gx2)) << "mode " << int(mode) << " pc " << per_channel;
          ASSERT_TRUE(torch::equal(gs1, gs2)) << "mode " << int(mode) << " pc " << per_channel << " lsq " << lsq;
          compared += y1.numel();
        }
      }
    }
  }
  EXPECT_EQ(compared, 24 * 8 * 5 * 3 * 4);
}

TEST(FakeQuant, SteGradientIsTheInRangeMask) {
  const torch::Tensor x = torch::tensor({-10.f, -1.28f, 0.3f, 1.27f, 1.3f, 10.f}).set_requires_grad(true);
  FakeQuantSpec spec;  // int8, scale 0.01: range [-1.28, 1.27]
  fake_quant_ste(x, torch::tensor(0.01f), torch::tensor(0.f), spec).sum().backward();
  const std::vector<float> want = {0, 1, 1, 1, 0, 0};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(x.grad()[i].item<float>(), want[i]) << i;
}

TEST(FakeQuant, LsqScaleGradientMatchesThePaper) {
  torch::manual_seed(2);
  const torch::Tensor x = torch::randn({257}) * 2;
  const torch::Tensor s = torch::tensor(0.013f).set_requires_grad(true);
  FakeQuantSpec spec{-8, 7, -1, RoundingMode::kHalfToEven};  // 4-bit: clamps often
  fake_quant_lsq(x, s, torch::tensor(0.f), spec).sum().backward();
  // d/ds of Σ x̂ = g · Σ [(q − v) inside, q when clamped], g = 1/√(257·7).
  double want = 0;
  for (int64_t i = 0; i < 257; ++i) {
    const float v = x[i].item<float>() / 0.013f;
    const double r = std::nearbyint(v);
    want += r < -8 ? -8.0 : r > 7 ? 7.0 : r - v;
  }
  want /= std::sqrt(257.0 * 7);
  EXPECT_NEAR(s.grad().item<double>(), want, 1e-4 * std::max(1.0, std::abs(want)));
  EXPECT_NE(want, 0.0);
}

TEST(FakeQuant, LsqPerChannelGradientHasOneEntryPerChannel) {
  const torch::Tensor w = torch::randn({4, 9}).set_requires_grad(true);
  const torch::Tensor s = torch::full({4}, 0.02f).set_requires_grad(true);
  fake_quant_lsq(w, s, torch::zeros({4}), FakeQuantSpec{-128, 127, 0, RoundingMode::kHalfUp}).pow(2).sum().backward();
  ASSERT_TRUE(s.grad().defined());
  EXPECT_EQ(s.grad().sizes(), torch::IntArrayRef({4}));
  EXPECT_EQ(w.grad().sizes(), w.sizes());
}

}  // namespace
// Device placement (docs/cuda.md): names parse; a CUDA device on a LibTorch
// without CUDA is a clear error; moving to the CPU keeps results and training.
TEST(Device, ParseAndPlacement) {
  auto cpu = parse_device("cpu");
  ASSERT_TRUE(cpu.is_ok()) << cpu.status().message();
  EXPECT_TRUE(cpu->is_cpu());
  for (const char* bad : {"tpu", "cuda:x", "", "cpu:0:1"}) {
    EXPECT_FALSE(parse_device(bad).is_ok()) << bad;
  }
  auto cuda = parse_device("cuda");
  if (!torch::cuda::is_available()) {
    ASSERT_FALSE(cuda.is_ok());
    EXPECT_NE(cuda.status().message().find("docs/cuda.md"), std::string::npos) << cuda.status().message();
  } else {
    EXPECT_TRUE(cuda.is_ok());
  }
  // A tiny graph y = x W^T + b on the module's device, trained one step; to_device(cpu)
  // changes nothing, and the parameters stay the tensors the optimizer sees.
  Graph g;
  g.name = "lin";
  g.inputs = {"x"};
  g.outputs = {"y"};
  g.value("x").shape = {2, 3};
  Tensor w(DType::kFloat32, {2, 3}), b(DType::kFloat32, {2});
  for (int i = 0; i < 6; ++i) w.data<float>()[i] = 0.1f * static_cast<float>(i + 1);
  for (int i = 0; i < 2; ++i) b.data<float>()[i] = 0.5f;
  g.constants["w"] = w;
  g.constants["b"] = b;
  Node n;
  n.op = OpKind::kLinear;
  n.name = "fc";
  n.inputs = {"x", "w", "b"};
  n.outputs = {"y"};
  g.nodes = {n};
  auto m = GraphModule::create(g);
  ASSERT_TRUE(m.is_ok()) << m.status().message();
  ASSERT_TRUE((*m)->to_device(*cpu).is_ok());
  EXPECT_TRUE((*m)->device().is_cpu());
  const torch::Tensor x = torch::ones({2, 3});
  (*m)->train(true);
  auto y = (*m)->forward({x});
  ASSERT_TRUE(y.is_ok());
  (*y)[0].sum().backward();
  for (const auto& p : (*m)->parameters()) EXPECT_TRUE(p.grad().defined());
  (*m)->train(false);
  auto y2 = (*m)->forward({x});
  ASSERT_TRUE(y2.is_ok());
  EXPECT_TRUE((*y2)[0].device().is_cpu());
  EXPECT_NEAR((*y2)[0][0][0].item<float>(), 0.1f + 0.2f + 0.3f + 0.5f, 1e-6);
}

}  // namespace qeval
