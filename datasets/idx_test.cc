#include "datasets/idx.h"
#include "datasets/temp_dir_test_util.h"

#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>

namespace qeval {
namespace {

namespace fs = std::filesystem;

class IdxTest : public TempDirTest {};

// IDX header: 0x00 0x00 0x08 ndim, then big-endian uint32 sizes.
std::string idx_bytes(const std::vector<uint32_t>& dims, const std::vector<uint8_t>& data) {
  std::string b = {0, 0, 8, static_cast<char>(dims.size())};
  for (uint32_t d : dims) {
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<char>((d >> s) & 0xff));
  }
  b.append(data.begin(), data.end());
  return b;
}

std::string gzip(const std::string& raw) {
  z_stream zs{};
  EXPECT_EQ(deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY),
            Z_OK);  // +16: gzip wrapper
  std::string out(deflateBound(&zs, raw.size()) + 32, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(raw.data()));
  zs.avail_in = static_cast<uInt>(raw.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

TEST_F(IdxTest, PlainAndGzipReadTheSameBigEndianDims) {
  std::vector<uint8_t> px(2 * 3 * 300);
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>(i * 7);
  const std::string raw = idx_bytes({2, 3, 300}, px);  // 300 = 0x012c needs two bytes
  for (const std::string& p : {write("a.idx", raw), write("a.idx.gz", gzip(raw))}) {
    auto a = read_idx(p);
    ASSERT_TRUE(a.is_ok()) << a.status().message();
    EXPECT_EQ(a->dims, (std::vector<int64_t>{2, 3, 300}));
    EXPECT_EQ(a->data, px);
  }
}

TEST_F(IdxTest, TruncatedDataNamesTheFile) {
  const std::string p = write("short.idx", idx_bytes({4, 2, 2}, std::vector<uint8_t>(15)));
  auto a = read_idx(p);
  ASSERT_FALSE(a.is_ok());
  EXPECT_EQ(a.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(a.status().message().find("short.idx"), std::string::npos);
  EXPECT_NE(a.status().message().find("16 bytes"), std::string::npos) << a.status().message();
}

TEST_F(IdxTest, TruncatedGzipAndBadMagicAreErrors) {
  const std::string gz = gzip(idx_bytes({100}, std::vector<uint8_t>(100, 1)));
  auto a = read_idx(write("cut.gz", gz.substr(0, gz.size() / 2)));
  ASSERT_FALSE(a.is_ok());
  EXPECT_NE(a.status().message().find("cut.gz"), std::string::npos);
  auto b = read_idx(write("magic.idx", std::string("\x01\x02\x08\x01\0\0\0\0", 8)));
  ASSERT_FALSE(b.is_ok());
  EXPECT_NE(b.status().message().find("bad magic"), std::string::npos);
  auto c = read_idx(write("f32.idx", std::string("\0\0\x0d\x01\0\0\0\0", 8)));
  ASSERT_FALSE(c.is_ok());
  EXPECT_EQ(c.status().code(), StatusCode::kUnsupported);
  auto d = read_idx((dir_ / "missing.idx").string());
  EXPECT_EQ(d.status().code(), StatusCode::kNotFound);
}

TEST_F(IdxTest, DatasetChecksLabelCount) {
  const std::string im = write("im", idx_bytes({3, 2, 2}, std::vector<uint8_t>(12, 5)));
  const std::string lb = write("lb", idx_bytes({2}, {1, 2}));
  auto s = read_idx_dataset(im, lb);
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.status().message().find("2 labels for 3 images"), std::string::npos)
      << s.status().message();
  auto ok = read_idx_dataset(im, write("lb3", idx_bytes({3}, {1, 2, 0})));
  ASSERT_TRUE(ok.is_ok());
  EXPECT_EQ(ok->n, 3);
  EXPECT_EQ(ok->h, 2);
  EXPECT_EQ(ok->labels, (std::vector<int64_t>{1, 2, 0}));
}

// Debian's dataset-fashion-mnist. Values from the file itself (numpy):
// labels[:10] = 9 2 1 1 6 1 4 6 5 7, image 0 sums to 33456, pixel (14,14) = 110.
TEST(FashionMnist, TestSplit) {
  if (!fs::exists("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")) {
    GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  }
  auto s = load_fashion_mnist("test", "/usr/share/datasets/fashion-mnist");
  ASSERT_TRUE(s.is_ok()) << s.status().message();
  EXPECT_EQ(s->n, 10000);
  EXPECT_EQ(s->h, 28);
  EXPECT_EQ(s->w, 28);
  EXPECT_EQ(std::vector<int64_t>(s->labels.begin(), s->labels.begin() + 10),
            (std::vector<int64_t>{9, 2, 1, 1, 6, 1, 4, 6, 5, 7}));
  int64_t sum = 0;
  for (int i = 0; i < 28 * 28; ++i) sum += s->image(0)[i];
  EXPECT_EQ(sum, 33456);
  EXPECT_EQ(s->image(0)[14 * 28 + 14], 110);
  EXPECT_EQ(s->class_names[9], "Ankle boot");
  EXPECT_FALSE(load_fashion_mnist("val", "/usr/share/datasets/fashion-mnist").is_ok());
}

}  // namespace
}  // namespace qeval
