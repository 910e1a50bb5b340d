#include "datasets/detection_synth.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/file_io.h"

namespace qeval {
namespace {

namespace fs = std::filesystem;

// 20 images of 28x28: a bright block at rows 5..20, columns 8..19 (16 x 12), label i % 10.
ImageSet blocks() {
  ImageSet s;
  s.n = 20;
  s.h = s.w = 28;
  s.pixels.assign(20 * 28 * 28, 0);
  for (int64_t i = 0; i < s.n; ++i) {
    s.labels.push_back(i % 10);
    for (int y = 5; y <= 20; ++y) {
      for (int x = 8; x <= 19; ++x)
        s.pixels[i * 784 + y * 28 + x] = static_cast<uint8_t>(150 + 5 * i);
    }
  }
  for (int k = 0; k < 10; ++k) s.class_names.push_back("c" + std::to_string(k));
  return s;
}

TEST(DetectionSynth, SameSeedSameSceneOtherSeedOther) {
  const ImageSet src = blocks();
  DetectionSynthConfig cfg;
  cfg.seed = 11;
  auto a = make_detection_scene(src, cfg, 5);
  auto b = make_detection_scene(src, cfg, 5);
  ASSERT_TRUE(a.is_ok()) << a.status().message();
  ASSERT_TRUE(b.is_ok());
  EXPECT_EQ(a->pixels, b->pixels);
  ASSERT_EQ(a->objects.size(), b->objects.size());
  for (size_t i = 0; i < a->objects.size(); ++i) EXPECT_EQ(a->objects[i].x, b->objects[i].x);
  cfg.seed = 12;
  auto c = make_detection_scene(src, cfg, 5);
  ASSERT_TRUE(c.is_ok());
  EXPECT_NE(a->pixels, c->pixels);
  cfg.seed = 11;
  auto d = make_detection_scene(src, cfg, 6);  // another index, another scene
  ASSERT_TRUE(d.is_ok());
  EXPECT_NE(a->pixels, d->pixels);
}

TEST(DetectionSynth, BoxesAreTightInsideAndValid) {
  const ImageSet src = blocks();
  DetectionSynthConfig cfg;
  cfg.min_scale = cfg.max_scale = 1.0;  // objects keep 28x28, so the box is the 16x12 block
  cfg.min_objects = 2;
  cfg.max_objects = 4;
  cfg.seed = 3;
  double bg_sum = 0;
  for (int64_t i = 0; i < 40; ++i) {
    auto s = make_detection_scene(src, cfg, i);
    ASSERT_TRUE(s.is_ok()) << s.status().message();
    EXPECT_EQ(s->pixels.size(), 96u * 96u);
    EXPECT_GE(static_cast<int>(s->objects.size()), cfg.min_objects);
    EXPECT_LE(static_cast<int>(s->objects.size()), cfg.max_objects);
    for (const DetObject& o : s->objects) {
      EXPECT_GE(o.category_id, 1);
      EXPECT_LE(o.category_id, 10);
      EXPECT_EQ(o.w, 12.0f);
      EXPECT_EQ(o.h, 16.0f);
      EXPECT_GE(o.x, 8.0f);  // the block starts 8 columns into the 28x28 image
      EXPECT_GE(o.y, 5.0f);
      EXPECT_LE(o.x + o.w, 96.0f - 8.0f);
      EXPECT_LE(o.y + o.h, 96.0f - 7.0f);
      // Pasted with alpha = v/255: out >= v*v/255 whatever the background.
      const int v = s->pixels[static_cast<size_t>((o.y + 2) * 96 + o.x + 2)];
      EXPECT_GE(v, 150 * 150 / 255);
    }
    bg_sum += s->pixels[0];
  }
  EXPECT_GT(bg_sum / 40, 25.0);  // textured gray, not black
  EXPECT_LT(bg_sum / 40, 100.0);
}

TEST(DetectionSynth, OpaquePixelsCoverTheBoxExactly) {
  // alpha = 255/255 = 1: inside every box the scene is 255, and the box is the
  // block itself, so no box has a 255 column left of it (background stays < 255).
  ImageSet src = blocks();
  for (uint8_t& p : src.pixels) p = p ? 255 : 0;
  DetectionSynthConfig cfg;
  cfg.min_scale = cfg.max_scale = 1.0;
  cfg.max_iou = 0;
  cfg.seed = 8;
  for (int64_t i = 0; i < 10; ++i) {
    auto s = make_detection_scene(src, cfg, i);
    ASSERT_TRUE(s.is_ok());
    for (const DetObject& o : s->objects) {
      const int x = static_cast<int>(o.x), y = static_cast<int>(o.y);
      for (int yy = y; yy < y + 16; ++yy) {
        for (int xx = x; xx < x + 12; ++xx) ASSERT_EQ(s->pixels[yy * 96 + xx], 255);
      }
      int outside_255 = 0;
      for (int yy = y; yy < y + 16; ++yy) outside_255 += s->pixels[yy * 96 + x - 1] == 255;
      EXPECT_LT(outside_255, 16);
    }
  }
}

TEST(DetectionSynth, ScaledObjectsStayInsideAndRespectIou) {
  const ImageSet src = blocks();
  DetectionSynthConfig cfg;
  cfg.seed = 99;
  cfg.size = 64;
  for (int64_t i = 0; i < 40; ++i) {
    auto s = make_detection_scene(src, cfg, i);
    ASSERT_TRUE(s.is_ok());
    for (size_t a = 0; a < s->objects.size(); ++a) {
      const DetObject& o = s->objects[a];
      EXPECT_GE(o.x, 0);
      EXPECT_GE(o.y, 0);
      EXPECT_LE(o.x + o.w, 64);
      EXPECT_LE(o.y + o.h, 64);
      for (size_t b = 0; b < a; ++b) {
        const DetObject& p = s->objects[b];
        const float iw = std::max(0.0f, std::min(o.x + o.w, p.x + p.w) - std::max(o.x, p.x));
        const float ih = std::max(0.0f, std::min(o.y + o.h, p.y + p.h) - std::max(o.y, p.y));
        const float inter = iw * ih;
        EXPECT_LE(inter / (o.w * o.h + p.w * p.h - inter), 0.2f + 1e-6f);
      }
    }
  }
}

TEST(DetectionSynth, ConfigErrors) {
  const ImageSet src = blocks();
  DetectionSynthConfig cfg;
  cfg.size = 30;  // a 28 px object at scale 1.5 is 42 px
  auto r = make_detection_scene(src, cfg, 0);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("size 30"), std::string::npos) << r.status().message();
  cfg = {};
  cfg.min_objects = 5;
  cfg.max_objects = 2;
  EXPECT_FALSE(make_detection_scene(src, cfg, 0).is_ok());
  ImageSet unlabelled = src;
  unlabelled.labels.clear();
  EXPECT_FALSE(make_detection_scene(unlabelled, DetectionSynthConfig{}, 0).is_ok());
}

TEST(DetectionSynth, WritesIdenticalCocoSets) {
  const ImageSet src = blocks();
  DetectionSynthConfig cfg;
  cfg.seed = 4;
  const fs::path dir =
      fs::temp_directory_path() / ("qeval_detection_test_" + std::to_string(getpid()));
  fs::remove_all(dir);
  ASSERT_TRUE(write_detection_set(src, cfg, 6, (dir / "a").string()).is_ok());
  ASSERT_TRUE(write_detection_set(src, cfg, 6, (dir / "b").string()).is_ok());
  for (const char* f : {"annotations.json", "images/000000.png", "images/000005.png"}) {
    auto a = read_file((dir / "a" / f).string());
    auto b = read_file((dir / "b" / f).string());
    ASSERT_TRUE(a.is_ok() && b.is_ok()) << f;
    EXPECT_EQ(*a, *b) << f;
  }
  auto text = read_file((dir / "a/annotations.json").string());
  ASSERT_TRUE(text.is_ok());
  const auto j = nlohmann::json::parse(*text);
  ASSERT_EQ(j["images"].size(), 6u);
  EXPECT_EQ(j["images"][0]["id"], 1);
  EXPECT_EQ(j["images"][0]["file_name"], "000000.png");
  EXPECT_EQ(j["categories"].size(), 10u);
  EXPECT_EQ(j["categories"][0]["id"], 1);
  EXPECT_EQ(j["categories"][0]["name"], "c0");
  int64_t prev_id = 0;
  for (const auto& a : j["annotations"]) {
    EXPECT_EQ(a["id"].get<int64_t>(), prev_id + 1);
    prev_id = a["id"];
    const auto& bb = a["bbox"];
    EXPECT_DOUBLE_EQ(a["area"].get<double>(), bb[2].get<double>() * bb[3].get<double>());
    EXPECT_EQ(a["iscrowd"], 0);
  }
  EXPECT_GT(prev_id, 0);
  // The scene in the file is the scene of make_detection_scene(index).
  auto s3 = make_detection_scene(src, cfg, 3);
  ASSERT_TRUE(s3.is_ok());
  size_t in_image_4 = 0;
  for (const auto& a : j["annotations"]) in_image_4 += a["image_id"] == 4;
  EXPECT_EQ(in_image_4, s3->objects.size());
  fs::remove_all(dir);
}

}  // namespace
}  // namespace qeval
