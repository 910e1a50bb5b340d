// Observers and range → (scale, zero point): values worked out by hand from the
// formulas in quant/observer.h.
#include "quant/observer.h"

#include <gtest/gtest.h>

#include <cmath>

namespace qeval {
namespace {

ObserverOptions opt(const std::string& kind) {
  ObserverOptions o;
  o.kind = kind;
  return o;
}

TEST(ChooseQParams, SymmetricInt8) {
  auto r = choose_qparams({-1.f, 2.f}, QuantSpec{});
  ASSERT_TRUE(r.is_ok());
  EXPECT_FLOAT_EQ(r->first, 2.f / 127);
  EXPECT_EQ(r->second, 0);
}

TEST(ChooseQParams, AsymmetricUint8) {
  QuantSpec s;
  s.is_signed = false;
  s.symmetric = false;
  auto r = choose_qparams({-1.f, 2.f}, s);
  ASSERT_TRUE(r.is_ok());
  EXPECT_FLOAT_EQ(r->first, 3.f / 255);
  EXPECT_EQ(r->second, 85);  // 0 − round(−1 / (3/255)) = 85
  // A range that misses 0 is widened to contain it: [1, 2] → [0, 2].
  auto w = choose_qparams({1.f, 2.f}, s);
  EXPECT_FLOAT_EQ(w->first, 2.f / 255);
  EXPECT_EQ(w->second, 0);
}

TEST(ChooseQParams, BitsNarrowAndPowerOfTwo) {
  QuantSpec s4;
  s4.bits = 4;
  EXPECT_EQ(s4.qmin(), -8);
  EXPECT_EQ(s4.qmax(), 7);
  EXPECT_FLOAT_EQ(choose_qparams({-7.f, 3.5f}, s4)->first, 1.f);
  QuantSpec narrow;
  narrow.narrow_range = true;
  EXPECT_EQ(narrow.qmin(), -127);
  QuantSpec p2;
  p2.power_of_two = true;
  // 2/127 = 0.01575 → rounded up to 2^−5 = 0.03125 (never shrinks the range).
  EXPECT_FLOAT_EQ(choose_qparams({-1.f, 2.f}, p2)->first, 0.03125f);
  QuantSpec s16;
  s16.bits = 16;
  EXPECT_EQ(*s16.dtype(), DType::kInt16);
  QuantSpec bad;
  bad.bits = 17;
  EXPECT_FALSE(choose_qparams({-1.f, 1.f}, bad).is_ok());
  EXPECT_FLOAT_EQ(choose_qparams({0.f, 0.f}, QuantSpec{})->first, 1.f);  // all-zero tensor
}

TEST(ChooseQParams, PerChannelParams) {
  const std::vector<float> w = {1, -2, 0.5f, /*ch1*/ 4, 0, -1};
  auto ranges = per_channel_ranges(w, {2, 3}, 0);
  ASSERT_EQ(ranges.size(), 2u);
  EXPECT_FLOAT_EQ(ranges[0].lo, -2);
  EXPECT_FLOAT_EQ(ranges[1].hi, 4);
  auto q = make_quant_params(ranges, QuantSpec{}, 0);
  ASSERT_TRUE(q.is_ok());
  EXPECT_EQ(q->axis, 0);
  EXPECT_FLOAT_EQ(q->scale[0], 2.f / 127);
  EXPECT_FLOAT_EQ(q->scale[1], 4.f / 127);
}

TEST(Observer, MinMaxAndEma) {
  auto mm = make_observer(opt("minmax"));
  auto ema = make_observer(opt("ema_minmax"));  // momentum 0.9 (default)
  for (auto* o : {mm->get(), ema->get()}) {
    ASSERT_TRUE(o->observe(std::vector<float>{0.f, 1.f}).is_ok());
    ASSERT_TRUE(o->observe(std::vector<float>{-1.f, 3.f}).is_ok());
  }
  EXPECT_FLOAT_EQ((*mm)->range({})->lo, -1.f);
  EXPECT_FLOAT_EQ((*mm)->range({})->hi, 3.f);
  // 0.9·0 + 0.1·(−1) and 0.9·1 + 0.1·3.
  EXPECT_NEAR((*ema)->range({})->lo, -0.1f, 1e-6);
  EXPECT_NEAR((*ema)->range({})->hi, 1.2f, 1e-6);
}

TEST(Observer, PercentileInterpolatesLikeNumpy) {
  ObserverOptions po = opt("percentile");
  po.percentile = 99.5;
  auto o = make_observer(po);
  std::vector<float> v(101);
  for (int i = 0; i <= 100; ++i) v[i] = static_cast<float>(100 - i);  // order must not matter
  ASSERT_TRUE((*o)->observe(v).is_ok());
  // np.percentile(range(101), [0.5, 99.5]) = [0.5, 99.5]
  EXPECT_FLOAT_EQ((*o)->range({})->lo, 0.5f);
  EXPECT_FLOAT_EQ((*o)->range({})->hi, 99.5f);
}

TEST(Observer, MseClipsAnOutlier) {
  std::vector<float> v;
  for (int i = 0; i < 200000; ++i) v.push_back(std::sin(i * 0.37f));
  v.push_back(100.f);
  auto mse = make_observer(opt("mse"));
  ASSERT_TRUE((*mse)->observe(v).is_ok());
  auto r = (*mse)->range(QuantSpec{});
  ASSERT_TRUE(r.is_ok());
  // The full range leaves ~3 levels for the bulk in [−1, 1] (error ~0.07 per
  // value); clipping the outlier costs (100 − hi)² ≤ 6241 once but saves more
  // than that over 200,000 values.
  EXPECT_LT(r->hi, 100.f);
  EXPECT_GE(r->hi, 21.f);  // the search stops at 21% of the full range
}

TEST(Observer, SampleIsBounded) {
  ObserverOptions po = opt("percentile");
  po.percentile = 100;
  po.sample_limit = 8;
  auto o = make_observer(po);
  std::vector<float> v(1000);
  for (int i = 0; i < 1000; ++i) v[i] = static_cast<float>(i);
  ASSERT_TRUE((*o)->observe(v).is_ok());
  EXPECT_EQ((*o)->count(), 1000);
  // The sample fills at 8 and halves each time: after 1000 values it holds the
  // multiples of 256 (0, 256, 512, 768), so the 100th percentile is 768.
  EXPECT_FLOAT_EQ((*o)->range({})->hi, 768.f);
}

TEST(Observer, ErrorsNameLayerAndAllowedValues) {
  auto bad = make_observer(opt("kl"));
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("minmax, ema_minmax, percentile, mse"), std::string::npos);
  ObserverOptions lo = opt("minmax");
  lo.layer = "layer1.conv1";
  auto o = make_observer(lo);
  Status s = (*o)->observe(std::vector<float>{1.f, NAN});
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("layer1.conv1"), std::string::npos);
  EXPECT_NE(s.message().find("learning rate"), std::string::npos);
  auto empty = make_observer(opt("mse"));
  EXPECT_FALSE((*empty)->range({}).is_ok());
}

}  // namespace
}  // namespace qeval
