// Fake quant == the simulator's quantize/dequantize (core/numerics), element for
// element, for every rounding mode; STE and LSQ gradients against the formulas
// of quant/fake_quant.h computed by hand in double precision.
#include "quant/fake_quant.h"

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
}  // namespace qeval
