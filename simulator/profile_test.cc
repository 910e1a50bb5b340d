#include "simulator/profile.h"

#include <gtest/gtest.h>

namespace qeval {
namespace {

TEST(Profile, BuiltinsLoad) {
  for (const char* name : {"bm1690", "onnx-qdq", "uint8-asym", "int16"}) {
    auto p = load_profile(name);
    ASSERT_TRUE(p.is_ok()) << name << ": " << p.status().message();
    EXPECT_EQ(p->name, name);
  }
  auto bm = load_profile("bm1690");
  EXPECT_EQ(bm->rounding, RoundingMode::kHalfUp);
  EXPECT_EQ(bm->requant, RequantScheme::kSingleRounding);
  auto ort = load_profile("onnx-qdq");
  EXPECT_EQ(ort->requant, RequantScheme::kFloat);
  EXPECT_EQ(ort->activation_dtype, DType::kUInt8);
  EXPECT_EQ(load_profile("uint8-asym")->weight_qmin(), -127);
}

TEST(Profile, ErrorsNameFileLineAndKey) {
  auto p = parse_profile("name: x\nrequant:\n  scheme: float\n  roundng: half_up\n", "my.yaml");
  ASSERT_FALSE(p.is_ok());
  EXPECT_NE(p.status().message().find("my.yaml:4"), std::string::npos) << p.status().message();
  EXPECT_NE(p.status().message().find("requant.roundng"), std::string::npos);
  auto q = parse_profile("name: x\nrequant: {rounding: half_down}\n", "b.yaml");
  ASSERT_FALSE(q.is_ok());
  EXPECT_NE(q.status().message().find("half_down"), std::string::npos);
  auto w = parse_profile("name: x\nweights: {bits: [3]}\n", "c.yaml");
  ASSERT_FALSE(w.is_ok());
  EXPECT_NE(w.status().message().find("allowed: 4, 7, 8, 16"), std::string::npos);
  auto u = load_profile("nosuchchip");
  ASSERT_FALSE(u.is_ok());
  EXPECT_NE(u.status().message().find("bm1690"), std::string::npos);
}

}  // namespace
}  // namespace qeval
