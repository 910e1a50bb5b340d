#include "datasets/image_folder.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <opencv2/imgcodecs.hpp>

#include "datasets/export.h"
#include "datasets/temp_dir_test_util.h"

namespace qeval {
namespace {

namespace fs = std::filesystem;

class ImageFolderTest : public TempDirTest {
 protected:
  // A 3-row, 4-column BGR image whose pixel (y, x) is (b, g, r) = (10y+x, 100, 200).
  static cv::Mat pattern() {
    cv::Mat m(3, 4, CV_8UC3);
    for (int y = 0; y < 3; ++y) {
      for (int x = 0; x < 4; ++x) m.at<cv::Vec3b>(y, x) = cv::Vec3b(10 * y + x, 100, 200);
    }
    return m;
  }
  std::string put(const std::string& rel, const cv::Mat& m) {
    const fs::path p = dir_ / rel;
    fs::create_directories(p.parent_path());
    std::vector<uint8_t> buf;
    EXPECT_TRUE(cv::imencode(p.extension().string(), m, buf));
    std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(buf.data()), buf.size());
    return p.string();
  }
};

TEST_F(ImageFolderTest, SortedClassesAndFiles) {
  put("root/zebra/b.png", pattern());
  put("root/zebra/a.JPG", pattern());
  put("root/ant/x.bmp", pattern());
  put("root/ant/y.jpeg", pattern());
  std::ofstream(dir_ / "root/ant/notes.txt") << "not an image";
  auto f = scan_image_folder((dir_ / "root").string());
  ASSERT_TRUE(f.is_ok()) << f.status().message();
  EXPECT_EQ(f->class_names, (std::vector<std::string>{"ant", "zebra"}));
  ASSERT_EQ(f->samples.size(), 4u);
  EXPECT_EQ(fs::path(f->samples[0].path).filename(), "x.bmp");
  EXPECT_EQ(f->samples[0].label, 0);
  EXPECT_EQ(fs::path(f->samples[2].path).filename(), "a.JPG");  // 'a' < 'b'
  EXPECT_EQ(f->samples[3].label, 1);
}

TEST_F(ImageFolderTest, LabelsFileOrderWins) {
  put("root/zebra/b.png", pattern());
  put("root/ant/x.png", pattern());
  std::ofstream(dir_ / "root/labels.txt") << "zebra\nant\n";
  auto f = scan_image_folder((dir_ / "root").string());
  ASSERT_TRUE(f.is_ok()) << f.status().message();
  EXPECT_EQ(f->class_names, (std::vector<std::string>{"zebra", "ant"}));
  EXPECT_EQ(f->samples[0].label, 0);
  EXPECT_EQ(fs::path(f->samples[0].path).filename(), "b.png");
  std::ofstream(dir_ / "root/labels.txt") << "zebra\ncat\n";
  auto bad = scan_image_folder((dir_ / "root").string());
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("labels.txt: line 2: 'cat'"), std::string::npos)
      << bad.status().message();
}

TEST_F(ImageFolderTest, MissingAndEmptyFoldersAreErrors) {
  auto missing = scan_image_folder((dir_ / "nope").string());
  ASSERT_FALSE(missing.is_ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("nope"), std::string::npos);
  fs::create_directories(dir_ / "empty");
  auto empty = scan_image_folder((dir_ / "empty").string());
  ASSERT_FALSE(empty.is_ok());
  EXPECT_NE(empty.status().message().find("no class sub-folders"), std::string::npos);
  put("r2/cat/a.png", pattern());
  fs::create_directories(dir_ / "r2/dog");
  auto no_images = scan_image_folder((dir_ / "r2").string());
  ASSERT_FALSE(no_images.is_ok());
  EXPECT_NE(no_images.status().message().find("'dog' has no"), std::string::npos)
      << no_images.status().message();
}

TEST_F(ImageFolderTest, ReadImageColorGrayAndTruncation) {
  const std::string png = put("a.png", pattern());
  auto color = read_image(png, cv::IMREAD_COLOR);
  ASSERT_TRUE(color.is_ok());
  EXPECT_EQ(color->at<cv::Vec3b>(2, 3), cv::Vec3b(23, 100, 200));
  auto gray = read_image(png, cv::IMREAD_GRAYSCALE);
  ASSERT_TRUE(gray.is_ok());
  EXPECT_EQ(gray->channels(), 1);
  for (const char* name : {"a.png", "b.jpg", "c.bmp"}) {
    const std::string p = put(std::string("full_") + name, pattern());
    std::string bytes(fs::file_size(p), '\0');
    std::ifstream(p, std::ios::binary).read(bytes.data(), bytes.size());
    const std::string cut = (dir_ / (std::string("cut_") + name)).string();
    std::ofstream(cut, std::ios::binary) << bytes.substr(0, bytes.size() - 10);
    auto r = read_image(cut, cv::IMREAD_COLOR);
    ASSERT_FALSE(r.is_ok()) << name;
    EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << r.status().message();
    EXPECT_NE(r.status().message().find(cut), std::string::npos);
    EXPECT_NE(r.status().message().find("truncated"), std::string::npos) << r.status().message();
  }
  std::ofstream(dir_ / "text.png") << "hello";
  auto text = read_image((dir_ / "text.png").string(), cv::IMREAD_COLOR);
  ASSERT_FALSE(text.is_ok());
  EXPECT_NE(text.status().message().find("not a PNG"), std::string::npos);
}

TEST_F(ImageFolderTest, ExportRoundTripKeepsLabelsAndPixels) {
  ImageSet s;
  s.n = 12;
  s.h = 2;
  s.w = 3;
  s.c = 1;
  s.class_names = {"T-shirt/top", "Bag", "Ankle boot"};
  for (int64_t i = 0; i < s.n; ++i) {
    s.labels.push_back(i % 3);
    for (int p = 0; p < 6; ++p) s.pixels.push_back(static_cast<uint8_t>(i * 20 + p));
  }
  const std::string out = (dir_ / "export").string();
  auto stats = export_image_folder(s, out, 11);
  ASSERT_TRUE(stats.is_ok()) << stats.status().message();
  EXPECT_EQ(stats->images, 11);
  EXPECT_TRUE(fs::exists(dir_ / "export/T-shirt_top/09.png"));  // zero-padded index
  auto f = scan_image_folder(out);
  ASSERT_TRUE(f.is_ok()) << f.status().message();
  // labels.txt keeps the set's order although "Ankle_boot" sorts first.
  EXPECT_EQ(f->class_names, (std::vector<std::string>{"T-shirt_top", "Bag", "Ankle_boot"}));
  auto back = load_image_folder(*f, /*gray=*/true);
  ASSERT_TRUE(back.is_ok()) << back.status().message();
  ASSERT_EQ(back->n, 11);
  // Class by class: T-shirt_top holds 0, 3, 6, 9.
  EXPECT_EQ(back->labels[3], 0);
  EXPECT_EQ(back->image(3)[5], 9 * 20 + 5);
  EXPECT_EQ(back->labels[4], 1);
  EXPECT_EQ(back->image(4)[0], 1 * 20);
}

TEST(FileSafeName, ReplacesSeparators) {
  EXPECT_EQ(file_safe_name("T-shirt/top"), "T-shirt_top");
  EXPECT_EQ(file_safe_name("Ankle boot"), "Ankle_boot");
  EXPECT_EQ(file_safe_name(".."), "_");
  EXPECT_EQ(file_safe_name("a:b\\c"), "a_b_c");
}

}  // namespace
}  // namespace qeval
