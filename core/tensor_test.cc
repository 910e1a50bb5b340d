#include "core/tensor.h"

#include <gtest/gtest.h>

#include "core/npy.h"

namespace qeval {
namespace {

TEST(Tensor, BasicsAndReshape) {
  Tensor t = Tensor::from_vector<int16_t>({2, 3}, {1, 2, 3, 4, 5, -6});
  EXPECT_EQ(t.numel(), 6);
  EXPECT_EQ(t.nbytes(), 12u);
  EXPECT_EQ(t.get_int(5), -6);
  auto r = t.reshaped({3, 2});
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(r->dim(-1), 2);
  EXPECT_FALSE(t.reshaped({4}).is_ok());
  EXPECT_THROW(t.data<float>(), std::logic_error);
  EXPECT_EQ(dtype_min(DType::kInt8), -128);
  EXPECT_EQ(dtype_max(DType::kUInt8), 255);
}

TEST(Npy, RoundTripEveryDtype) {
  for (DType dt : {DType::kFloat32, DType::kInt8, DType::kUInt8, DType::kInt16, DType::kInt32,
                   DType::kInt64}) {
    Tensor t(dt, {2, 1, 3});
    for (int i = 0; i < 6; ++i) static_cast<uint8_t*>(t.raw())[i] = static_cast<uint8_t>(i * 37);
    auto back = parse_npy(npy_bytes(t), "mem");
    ASSERT_TRUE(back.is_ok()) << back.status().message();
    EXPECT_TRUE(back->equals(t)) << dtype_name(dt);
  }
  Tensor s = Tensor::from_vector<float>({5}, {1, 2, 3, 4, 5});
  auto b1 = parse_npy(npy_bytes(s), "mem");
  ASSERT_TRUE(b1.is_ok());
  EXPECT_EQ(b1->shape(), Shape{5});
}

TEST(Npy, TruncatedFileIsDataLoss) {
  Tensor t(DType::kFloat32, {4, 4});
  std::string b = npy_bytes(t);
  auto r = parse_npy(b.substr(0, b.size() - 3), "in.npy");
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(r.status().message().find("in.npy"), std::string::npos);
  EXPECT_FALSE(parse_npy("garbage", "g.npy").is_ok());
}

}  // namespace
}  // namespace qeval
