#include "harness/metrics/similarity.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace qeval {
namespace {

// a = (1, 2, 3), b = (1, 2, 4), by hand from the definitions in similarity.h:
//   cos    = 17 / sqrt(14 * 21)
//   euclid = 1 - 1 / sqrt(1 + 4 + 12.25)
//   sqnr   = 10 log10(2 / (2/3)) = 10 log10(3)
TEST(Similarity, HandComputed) {
  const std::vector<float> a = {1, 2, 3}, b = {1, 2, 4};
  const Similarity s = similarity(a.data(), b.data(), a.size());
  EXPECT_NEAR(s.cos, 17.0 / std::sqrt(14.0 * 21.0), 1e-12);
  EXPECT_NEAR(s.euclid, 1.0 - 1.0 / (std::sqrt(17.25) + 1e-7), 1e-12);
  EXPECT_NEAR(s.sqnr, 10.0 * std::log10(3.0), 1e-9);
}

TEST(Similarity, IdenticalAndOpposite) {
  const std::vector<float> a = {0.5f, -1.f, 2.f}, neg = {-0.5f, 1.f, -2.f}, zero = {0, 0, 0};
  const Similarity same = similarity(a.data(), a.data(), a.size());
  EXPECT_DOUBLE_EQ(same.cos, 1.0);
  EXPECT_DOUBLE_EQ(same.euclid, 1.0);
  EXPECT_TRUE(std::isinf(same.sqnr));
  const Similarity opp = similarity(a.data(), neg.data(), a.size());
  EXPECT_NEAR(opp.cos, -1.0, 1e-12);
  EXPECT_LT(opp.euclid, -1e6);  // (a + b) / 2 = 0: the distance dwarfs it
  EXPECT_DOUBLE_EQ(similarity(zero.data(), zero.data(), 3).cos, 1.0);
  EXPECT_DOUBLE_EQ(similarity(a.data(), zero.data(), 3).cos, 0.0);
}

}  // namespace
}  // namespace qeval
