#include "datasets/cifar10.h"
#include "datasets/temp_dir_test_util.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace qeval {
namespace {

namespace fs = std::filesystem;

// Record i: label i % 10; R plane = (p + i) & 255, G = 100 + i, B = 255 - (p & 255).
std::string cifar_records(int n) {
  std::string b;
  for (int i = 0; i < n; ++i) {
    b.push_back(static_cast<char>(i % 10));
    for (int p = 0; p < 1024; ++p) b.push_back(static_cast<char>((p + i) & 255));
    for (int p = 0; p < 1024; ++p) b.push_back(static_cast<char>(100 + i));
    for (int p = 0; p < 1024; ++p) b.push_back(static_cast<char>(255 - (p & 255)));
  }
  return b;
}

class Cifar10Test : public TempDirTest {};

TEST_F(Cifar10Test, PlanesBecomeInterleavedRgb) {
  auto s = read_cifar10_batch(write("test_batch.bin", cifar_records(3)));
  ASSERT_TRUE(s.is_ok()) << s.status().message();
  EXPECT_EQ(s->n, 3);
  EXPECT_EQ(s->h, 32);
  EXPECT_EQ(s->c, 3);
  EXPECT_EQ(s->labels, (std::vector<int64_t>{0, 1, 2}));
  // Image 2, row 1, column 5: plane offset p = 32 + 5 = 37.
  const uint8_t* px = s->image(2) + (1 * 32 + 5) * 3;
  EXPECT_EQ(px[0], 39);        // R = p + i
  EXPECT_EQ(px[1], 102);       // G = 100 + i
  EXPECT_EQ(px[2], 255 - 37);  // B
  EXPECT_EQ(s->class_names[3], "cat");
}

TEST_F(Cifar10Test, TruncatedRecordNamesFileAndIndex) {
  const std::string full = cifar_records(4);
  auto s = read_cifar10_batch(write("cut.bin", full.substr(0, full.size() - 100)));
  ASSERT_FALSE(s.is_ok());
  EXPECT_EQ(s.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(s.status().message().find("cut.bin: record 3 is truncated (2973 of 3073 bytes)"),
            std::string::npos)
      << s.status().message();
  std::string bad = cifar_records(2);
  bad[3073] = 12;
  auto l = read_cifar10_batch(write("label.bin", bad));
  ASSERT_FALSE(l.is_ok());
  EXPECT_NE(l.status().message().find("record 1: label 12"), std::string::npos)
      << l.status().message();
  EXPECT_FALSE(read_cifar10_batch(write("empty.bin", "")).is_ok());
}

TEST_F(Cifar10Test, TrainSplitConcatenatesFiveBatches) {
  for (int i = 1; i <= 5; ++i) write("data_batch_" + std::to_string(i) + ".bin", cifar_records(i));
  auto s = load_cifar10(dir_.string(), "train");
  ASSERT_TRUE(s.is_ok()) << s.status().message();
  EXPECT_EQ(s->n, 15);
  EXPECT_EQ(s->labels[1], 0);  // first record of batch 2
  EXPECT_EQ(s->pixels.size(), 15u * 32 * 32 * 3);
  auto missing = load_cifar10(dir_.string(), "test");
  ASSERT_FALSE(missing.is_ok());
  EXPECT_NE(missing.status().message().find("test_batch.bin"), std::string::npos);
}

}  // namespace
}  // namespace qeval
