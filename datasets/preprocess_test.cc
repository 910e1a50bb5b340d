#include "datasets/preprocess.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <opencv2/imgcodecs.hpp>

namespace qeval {
namespace {

namespace fs = std::filesystem;

PreprocessConfig parse(const std::map<std::string, std::string>& kv) {
  auto r = parse_preprocess_config(kv, "model.cfg");
  EXPECT_TRUE(r.is_ok()) << r.status().message();
  return r.is_ok() ? *r : PreprocessConfig{};
}

std::string parse_error(const std::map<std::string, std::string>& kv) {
  auto r = parse_preprocess_config(kv, "model.cfg");
  return r.is_ok() ? "(no error)" : r.status().message();
}

// Gray image whose pixel (y, x) is 10*y + x.
cv::Mat ramp(int h, int w) {
  cv::Mat m(h, w, CV_8UC1);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) m.at<uint8_t>(y, x) = static_cast<uint8_t>(10 * y + x);
  }
  return m;
}

TEST(PreprocessConfig, ParsesTpuMlirValues) {
  PreprocessConfig c = parse({{"input_shapes", "[[1,3,224,224],[1,10]]"},
                              {"resize_dims", "256,256"},
                              {"mean", "123.675,116.28,103.53"},
                              {"scale", "0.0171, 0.0175, 0.0174"},
                              {"pixel_format", "rgb"},
                              {"keep_aspect_ratio", "1"},
                              {"model_path", "ignored.onnx"}});
  EXPECT_EQ(c.input_shape, (std::vector<int64_t>{1, 3, 224, 224}));  // the first input
  EXPECT_EQ(c.resize_dims, (std::vector<int64_t>{256, 256}));
  EXPECT_TRUE(c.keep_aspect_ratio);
  EXPECT_EQ(c.mean[1], 116.28f);
  EXPECT_EQ(c.scale[2], 0.0174f);
  EXPECT_EQ(c.channel_format, "nchw");  // tpu-mlir defaults: bgr, nchw
  EXPECT_EQ(parse({}).pixel_format, "bgr");
}

TEST(PreprocessConfig, ErrorsNameFileAndKey) {
  EXPECT_EQ(parse_error({{"pixel_format", "rgba"}}),
            "model.cfg: pixel_format: unknown value 'rgba' (use rgb, bgr or gray)");
  EXPECT_EQ(parse_error({{"channel_format", "chw"}}),
            "model.cfg: channel_format: unknown value 'chw' (use nchw or nhwc)");
  EXPECT_EQ(parse_error({{"mean", "1,2"}}),
            "model.cfg: mean: 2 values for the 3 channels of pixel_format 'bgr'");
  EXPECT_EQ(parse_error({{"scale", "1,x,3"}}), "model.cfg: scale: 'x' is not a number");
  EXPECT_EQ(parse_error({{"keep_aspect_ratio", "maybe"}}),
            "model.cfg: keep_aspect_ratio: 'maybe' is not a boolean (use 1/0, true/false)");
  EXPECT_NE(parse_error({{"input_shapes", "[[1,3,32,32]]"}, {"pixel_format", "gray"}})
                .find("model.cfg: input_shapes"),
            std::string::npos);
  EXPECT_NE(parse_error({{"resize_dims", "256"}}).find("model.cfg: resize_dims"),
            std::string::npos);
}

TEST(Preprocess, RgbSwapsChannelsBeforeMeanAndScale) {
  // One BGR pixel (b, g, r) = (10, 20, 30); mean and scale are given in r, g, b order.
  cv::Mat img(1, 1, CV_8UC3, cv::Scalar(10, 20, 30));
  PreprocessConfig c = parse({{"pixel_format", "rgb"}, {"mean", "1,2,3"}, {"scale", "1,0.5,0.25"}});
  auto t = preprocess_image(img, c);
  ASSERT_TRUE(t.is_ok()) << t.status().message();
  EXPECT_EQ(t->shape(), (Shape{3, 1, 1}));
  EXPECT_EQ(t->data<float>()[0], (30 - 1) * 1.0f);   // R
  EXPECT_EQ(t->data<float>()[1], (20 - 2) * 0.5f);   // G
  EXPECT_EQ(t->data<float>()[2], (10 - 3) * 0.25f);  // B
  c.pixel_format = "bgr";
  auto b = preprocess_image(img, c);
  ASSERT_TRUE(b.is_ok());
  EXPECT_EQ(b->data<float>()[0], (10 - 1) * 1.0f);
}

TEST(Preprocess, CenterCropStartsAtHalfMinusHalf) {
  // tpu-mlir: start = h//2 - crop//2. For 4 -> 3 rows that is 1, not (4-3)//2 = 0;
  // for 6 -> 3 columns 3 - 1 = 2. The resize to 4x6 keeps the 4x6 image as it is.
  PreprocessConfig c =
      parse({{"pixel_format", "gray"}, {"input_shapes", "[[1,1,3,3]]"}, {"resize_dims", "4,6"}});
  auto t = preprocess_image(ramp(4, 6), c);
  ASSERT_TRUE(t.is_ok()) << t.status().message();
  EXPECT_EQ(t->shape(), (Shape{1, 3, 3}));
  EXPECT_EQ(t->data<float>()[0], 12.0f);  // pixel (1, 2)
  EXPECT_EQ(t->data<float>()[8], 34.0f);  // pixel (3, 4)
}

TEST(Preprocess, ResizeDimsSmallerThanInputAreRaised) {
  // resize_dims = max(resize_dims, net dims): 2x2 -> 4x4, no crop.
  PreprocessConfig c =
      parse({{"pixel_format", "gray"}, {"input_shapes", "[[1,1,4,4]]"}, {"resize_dims", "2,2"}});
  cv::Mat img(4, 4, CV_8UC1, cv::Scalar(77));
  auto t = preprocess_image(img, c);
  ASSERT_TRUE(t.is_ok()) << t.status().message();
  EXPECT_EQ(t->shape(), (Shape{1, 4, 4}));
  for (float v : t->span<float>()) EXPECT_EQ(v, 77.0f);
}

TEST(Preprocess, LetterboxPadsCentredWithZero) {
  // A 2x4 image into 4x4: s = min(4/4, 4/2) = 1, pasted at row (4-2)/2 = 1.
  cv::Mat img(2, 4, CV_8UC1, cv::Scalar(100));
  PreprocessConfig c = parse(
      {{"pixel_format", "gray"}, {"input_shapes", "[[1,1,4,4]]"}, {"keep_aspect_ratio", "true"}});
  auto t = preprocess_image(img, c);
  ASSERT_TRUE(t.is_ok()) << t.status().message();
  const float* v = t->data<float>();
  EXPECT_EQ(v[0 * 4 + 1], 0.0f);
  EXPECT_EQ(v[1 * 4 + 1], 100.0f);
  EXPECT_EQ(v[2 * 4 + 1], 100.0f);
  EXPECT_EQ(v[3 * 4 + 1], 0.0f);
  c.pad_type = "normal";  // tpu-mlir's other pad_type: top-left
  auto n = preprocess_image(img, c);
  ASSERT_TRUE(n.is_ok());
  EXPECT_EQ(n->data<float>()[0], 100.0f);
  EXPECT_EQ(n->data<float>()[3 * 4], 0.0f);
}

TEST(Preprocess, NhwcLayoutAndGrayToColor) {
  // A gray pixel row becomes B = G = R; nhwc puts channels last.
  PreprocessConfig c = parse({{"pixel_format", "rgb"},
                              {"channel_format", "nhwc"},
                              {"input_shapes", "[[1,2,3,3]]"},
                              {"mean", "0,10,20"}});
  auto t = preprocess_image(ramp(2, 3), c);
  ASSERT_TRUE(t.is_ok()) << t.status().message();
  EXPECT_EQ(t->shape(), (Shape{2, 3, 3}));
  const float* v = t->data<float>();
  // pixel (1, 2) = 12: channels 12, 2, -8
  EXPECT_EQ(v[(1 * 3 + 2) * 3 + 0], 12.0f);
  EXPECT_EQ(v[(1 * 3 + 2) * 3 + 1], 2.0f);
  EXPECT_EQ(v[(1 * 3 + 2) * 3 + 2], -8.0f);
}

TEST(Preprocess, NoShapeKeepsImageSize) {
  PreprocessConfig c = parse({{"pixel_format", "gray"}});
  auto t = preprocess_image(ramp(5, 7), c);
  ASSERT_TRUE(t.is_ok());
  EXPECT_EQ(t->shape(), (Shape{1, 5, 7}));
  EXPECT_EQ(t->data<float>()[7 + 3], 13.0f);
}

TEST(Preprocess, LoadBatchAndErrorsNameTheFile) {
  const fs::path dir =
      fs::temp_directory_path() / ("qeval_preprocess_test_" + std::to_string(getpid()));
  fs::create_directories(dir);
  ASSERT_TRUE(cv::imwrite((dir / "a.png").string(), ramp(4, 6)));
  ASSERT_TRUE(cv::imwrite((dir / "b.png").string(), ramp(3, 3)));
  PreprocessConfig c =
      parse({{"pixel_format", "gray"}, {"input_shapes", "[[1,1,3,3]]"}, {"resize_dims", "4,6"}});
  auto t = load_and_preprocess({(dir / "a.png").string(), (dir / "b.png").string()}, c);
  ASSERT_TRUE(t.is_ok()) << t.status().message();
  EXPECT_EQ(t->shape(), (Shape{2, 1, 3, 3}));
  EXPECT_EQ(t->data<float>()[0], 12.0f);
  const std::string missing = (dir / "missing.png").string();
  auto m = load_and_preprocess({(dir / "a.png").string(), missing}, c);
  ASSERT_FALSE(m.is_ok());
  EXPECT_NE(m.status().message().find(missing), std::string::npos);
  // Without a net size every image keeps its own, so a batch of two sizes fails.
  auto sizes = load_and_preprocess({(dir / "a.png").string(), (dir / "b.png").string()},
                                   parse({{"pixel_format", "gray"}}));
  ASSERT_FALSE(sizes.is_ok());
  EXPECT_NE(sizes.status().message().find("b.png"), std::string::npos);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace qeval
