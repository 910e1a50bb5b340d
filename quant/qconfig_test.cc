// QuantConfig parsing and its check against the shipped chip profiles.
#include "quant/qconfig.h"

#include <gtest/gtest.h>

namespace qeval {
namespace {

ChipProfile profile(const std::string& name) {
  auto p = load_profile(name);
  EXPECT_TRUE(p.is_ok()) << p.status().message();
  return p.is_ok() ? *p : ChipProfile{};
}

std::string error_of(const std::string& yaml, const std::string& prof) {
  auto c = parse_quant_config_text(yaml, "m.yaml");
  if (!c.is_ok()) return c.status().message();
  Status s = check_quant_config(*c, profile(prof));
  return s.is_ok() ? "" : s.message();
}

TEST(QuantConfig, ParsesTheBlock) {
  auto c = parse_quant_config_text(
      "observer: percentile\npercentile: 99.9\nweight_bits: 4\nfloat_layers: [fc]\n"
      "int16_layers: [stem.0]\nlayer_bits: {layer3.conv2: 8}\n",
      "m.yaml");
  ASSERT_TRUE(c.is_ok()) << c.status().message();
  EXPECT_EQ(c->observer.kind, "percentile");
  EXPECT_DOUBLE_EQ(c->observer.percentile, 99.9);
  EXPECT_EQ(c->float_layers, std::vector<std::string>{"fc"});
  EXPECT_TRUE(check_quant_config(*c, profile("bm1690")).is_ok());
  const ChipProfile bm = profile("bm1690");
  EXPECT_EQ(weight_spec(*c, bm, "layer1.conv1").bits, 4);
  EXPECT_EQ(weight_spec(*c, bm, "layer3.conv2").bits, 8);
  EXPECT_EQ(activation_spec(*c, bm, "stem.0").bits, 16);
  EXPECT_TRUE(activation_spec(*c, bm, "fc").symmetric);
}

TEST(QuantConfig, ProfileDecidesSignAndSymmetry) {
  auto c = parse_quant_config_text("observer: minmax\n", "m.yaml");
  ASSERT_TRUE(c.is_ok());
  const QuantSpec a = activation_spec(*c, profile("onnx-qdq"), "x");
  EXPECT_FALSE(a.is_signed);  // uint8 activations
  EXPECT_FALSE(a.symmetric);
  EXPECT_TRUE(weight_spec(*c, profile("uint8-asym"), "x").narrow_range);
}

TEST(QuantConfig, ErrorsNameKeyAndAllowedValues) {
  EXPECT_EQ(error_of("weight_bits: 3\n", "bm1690"), "m.yaml:1: quant.weight_bits: 3 (bm1690 allows 4, 8)");
  EXPECT_EQ(error_of("weight_bits: 4\n", "onnx-qdq"), "m.yaml:1: quant.weight_bits: 4 (onnx-qdq allows 7, 8)");
  EXPECT_NE(error_of("observer: kl\n", "bm1690").find("m.yaml:1: quant: observer = 'kl': allowed minmax, "
                                                     "ema_minmax, percentile, mse"),
            std::string::npos)
      << error_of("observer: kl\n", "bm1690");
  EXPECT_NE(error_of("weight_bits: 8\nbitz: 4\n", "bm1690").find("m.yaml:2: unknown key 'quant.bitz'"),
            std::string::npos);
  EXPECT_NE(error_of("int16_layers: [a]\n", "uint8-asym").find("quant.int16_layers"), std::string::npos);
  EXPECT_NE(error_of("layer_bits: {fc: 2}\n", "bm1690").find("quant.layer_bits.fc: 2 (bm1690 allows 4, 8)"),
            std::string::npos);
  EXPECT_NE(error_of("weight_bits: eight\n", "bm1690").find("wrong type"), std::string::npos);
}

}  // namespace
}  // namespace qeval
