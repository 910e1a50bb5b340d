#include "core/random.h"

#include <gtest/gtest.h>

namespace qeval {
namespace {

// Golden: SplitMix64 from state 0 (the reference implementation at
// https://prng.di.unimi.it/splitmix64.c) gives e220a8397b1dcdaf, 6e789e6aa1b965f4.
TEST(SplitMix64, ReferenceOutputs) {
  SplitMix64 r(0);
  EXPECT_EQ(r.next(), 0xe220a8397b1dcdafULL);
  EXPECT_EQ(r.next(), 0x6e789e6aa1b965f4ULL);
  SplitMix64 u(7);
  for (int i = 0; i < 1000; ++i) {
    const double v = u.uniform();
    ASSERT_TRUE(v >= 0 && v < 1);
    ASSERT_LT(u.below(3), 3u);
  }
}

}  // namespace
}  // namespace qeval
