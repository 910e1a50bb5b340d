#include "datasets/detection_synth.h"

#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <numbers>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "core/file_io.h"

namespace qeval {
namespace {

namespace fs = std::filesystem;

struct Box {
  int64_t x = 0, y = 0, w = 0, h = 0;
};

double iou(const Box& a, const Box& b) {
  const int64_t ix = std::max<int64_t>(0, std::min(a.x + a.w, b.x + b.w) - std::max(a.x, b.x));
  const int64_t iy = std::max<int64_t>(0, std::min(a.y + a.h, b.y + b.h) - std::max(a.y, b.y));
  const double inter = static_cast<double>(ix * iy);
  const double uni = static_cast<double>(a.w * a.h + b.w * b.h) - inter;
  return uni > 0 ? inter / uni : 0.0;
}

void draw_background(SplitMix64& rng, int64_t size, std::vector<uint8_t>& px) {
  constexpr double kTwoPi = 2 * std::numbers::pi;
  const double fx = 0.5 + 1.5 * rng.uniform(), fy = 0.5 + 1.5 * rng.uniform(),
               fd = 0.5 + 1.5 * rng.uniform();
  const double p1 = rng.uniform(), p2 = rng.uniform(), p3 = rng.uniform();
  const double s = static_cast<double>(size);
  px.resize(static_cast<size_t>(size * size));
  for (int64_t y = 0; y < size; ++y) {
    for (int64_t x = 0; x < size; ++x) {
      double v = 60 + 14 * std::sin(kTwoPi * (fx * x / s + p1)) +
                 12 * std::sin(kTwoPi * (fy * y / s + p2)) +
                 8 * std::sin(kTwoPi * (fd * (x + y) / s + p3)) + (12 * rng.uniform() - 6);
      v = std::clamp(std::floor(v + 0.5), 0.0, 255.0);
      px[y * size + x] = static_cast<uint8_t>(v);
    }
  }
}

}  // namespace

Status validate_detection_config(const ImageSet& source, const DetectionSynthConfig& cfg) {
  if (source.n <= 0) return invalid_argument("detection scenes: the source image set is empty");
  if (source.c != 1)
    return invalid_argument("detection scenes: source images have {} channels; need gray (1)",
                            source.c);
  if (source.labels.size() != static_cast<size_t>(source.n)) {
    return invalid_argument("detection scenes: the source image set is unlabelled");
  }
  for (int64_t l : source.labels) {
    if (l < 0 ||
        (!source.class_names.empty() && l >= static_cast<int64_t>(source.class_names.size()))) {
      return invalid_argument("detection scenes: source label {} outside 0..{}", l,
                              source.class_names.size() - 1);
    }
  }
  if (cfg.min_objects < 0 || cfg.max_objects < std::max(1, cfg.min_objects)) {
    return invalid_argument(
        "detection scenes: objects per scene [{}, {}] is not a valid range (need 0 <= min <= max, "
        "max >= 1)",
        cfg.min_objects, cfg.max_objects);
  }
  if (!(cfg.min_scale > 0) || !(cfg.max_scale >= cfg.min_scale)) {
    return invalid_argument(
        "detection scenes: scale range [{}, {}] is not valid (need 0 < min <= max)", cfg.min_scale,
        cfg.max_scale);
  }
  if (!(cfg.max_iou >= 0 && cfg.max_iou <= 1))
    return invalid_argument("detection scenes: max_iou {} outside [0, 1]", cfg.max_iou);
  const int64_t biggest =
      std::llround(static_cast<double>(std::max(source.h, source.w)) * cfg.max_scale);
  if (cfg.size < biggest || cfg.size > 16384) {
    return invalid_argument(
        "detection scenes: size {} must be in [{}, 16384] (a {}x{} object at scale {} is {} px)",
        cfg.size, biggest, source.h, source.w, cfg.max_scale, biggest);
  }
  return Status::ok();
}

namespace {

// make_detection_scene after validate_detection_config (write_detection_set
// validates once, not once per scene).
Result<DetScene> make_scene(const ImageSet& source, const DetectionSynthConfig& cfg,
                            int64_t index) {
  SplitMix64 rng(splitmix64_mix(cfg.seed ^ splitmix64_mix(static_cast<uint64_t>(index) + 0x632be59bd9b4e019ULL)));
  DetScene scene;
  scene.h = scene.w = cfg.size;
  draw_background(rng, cfg.size, scene.pixels);
  const int count =
      cfg.min_objects + static_cast<int>(rng.below(cfg.max_objects - cfg.min_objects + 1));
  std::vector<Box> boxes;
  try {
    for (int k = 0; k < count; ++k) {
      for (int attempt = 0; attempt < kDetPlacementTries; ++attempt) {
        const int64_t src = static_cast<int64_t>(rng.below(static_cast<uint64_t>(source.n)));
        const double s = cfg.min_scale + (cfg.max_scale - cfg.min_scale) * rng.uniform();
        const int oh =
            std::max(1, static_cast<int>(std::llround(static_cast<double>(source.h) * s)));
        const int ow =
            std::max(1, static_cast<int>(std::llround(static_cast<double>(source.w) * s)));
        const int64_t y0 =
            static_cast<int64_t>(rng.below(static_cast<uint64_t>(cfg.size - oh + 1)));
        const int64_t x0 =
            static_cast<int64_t>(rng.below(static_cast<uint64_t>(cfg.size - ow + 1)));
        const cv::Mat in(static_cast<int>(source.h), static_cast<int>(source.w), CV_8UC1,
                         const_cast<uint8_t*>(source.image(src)));
        cv::Mat obj;
        cv::resize(in, obj, cv::Size(ow, oh), 0, 0, cv::INTER_LINEAR);
        int bx0 = ow, by0 = oh, bx1 = -1, by1 = -1;
        for (int y = 0; y < oh; ++y) {
          const uint8_t* row = obj.ptr<uint8_t>(y);
          for (int x = 0; x < ow; ++x) {
            if (row[x] > kDetBoxThreshold) {
              bx0 = std::min(bx0, x), bx1 = std::max(bx1, x);
              by0 = std::min(by0, y), by1 = std::max(by1, y);
            }
          }
        }
        if (bx1 < 0) continue;  // a blank source image has no object
        const Box box{x0 + bx0, y0 + by0, bx1 - bx0 + 1, by1 - by0 + 1};
        const bool overlaps = std::any_of(boxes.begin(), boxes.end(),
                                          [&](const Box& b) { return iou(box, b) > cfg.max_iou; });
        if (overlaps) continue;
        boxes.push_back(box);
        for (int y = 0; y < oh; ++y) {
          const uint8_t* row = obj.ptr<uint8_t>(y);
          uint8_t* out = scene.pixels.data() + (y0 + y) * cfg.size + x0;
          for (int x = 0; x < ow; ++x) {
            const uint32_t o = row[x];
            out[x] = static_cast<uint8_t>((o * o + (255 - o) * out[x] + 127) / 255);
          }
        }
        scene.objects.push_back({static_cast<int>(source.labels[src]) + 1,
                                 static_cast<float>(box.x), static_cast<float>(box.y),
                                 static_cast<float>(box.w), static_cast<float>(box.h)});
        break;
      }
    }
  } catch (const cv::Exception& e) {
    return internal_error("detection scene {}: OpenCV: {}", index, e.what());
  }
  return scene;
}

}  // namespace

Result<DetScene> make_detection_scene(const ImageSet& source, const DetectionSynthConfig& cfg,
                                      int64_t index) {
  QEVAL_RETURN_IF_ERROR(validate_detection_config(source, cfg));
  if (index < 0) return invalid_argument("detection scenes: negative scene index {}", index);
  return make_scene(source, cfg, index);
}

std::string detection_coco_json(const std::vector<DetScene>& scenes,
                                const std::vector<std::string>& class_names, int64_t first_index) {
  using Json = nlohmann::ordered_json;
  Json images = Json::array(), anns = Json::array(), cats = Json::array();
  int64_t ann_id = 1;
  for (size_t i = 0; i < scenes.size(); ++i) {
    const int64_t index = first_index + static_cast<int64_t>(i);
    const DetScene& sc = scenes[i];
    images.push_back({{"id", index + 1},
                      {"file_name", fmt::format("{:06d}.png", index)},
                      {"width", sc.w},
                      {"height", sc.h}});
    for (const DetObject& o : sc.objects) {
      anns.push_back({{"id", ann_id++},
                      {"image_id", index + 1},
                      {"category_id", o.category_id},
                      {"bbox", {o.x, o.y, o.w, o.h}},
                      {"area", static_cast<double>(o.w) * o.h},
                      {"iscrowd", 0}});
    }
  }
  for (size_t k = 0; k < class_names.size(); ++k) {
    cats.push_back({{"id", k + 1}, {"name", class_names[k]}});
  }
  Json root = {
      {"info", {{"description", "qeval synthetic detection scenes (Fashion-MNIST objects)"}}},
      {"images", images},
      {"annotations", anns},
      {"categories", cats}};
  return root.dump() + "\n";
}

Status write_detection_set(const ImageSet& source, const DetectionSynthConfig& cfg, int64_t count,
                           const std::string& dir) {
  QEVAL_RETURN_IF_ERROR(validate_detection_config(source, cfg));
  if (count < 0) return invalid_argument("{}: negative scene count {}", dir, count);
  const fs::path images_dir = fs::path(dir) / "images";
  std::error_code ec;
  fs::create_directories(images_dir, ec);
  if (ec) return io_error("{}: cannot create folder: {}", images_dir.string(), ec.message());
  std::vector<DetScene> scenes(static_cast<size_t>(count));
  std::vector<Status> errors(static_cast<size_t>(count));
  tbb::parallel_for(int64_t{0}, count, [&](int64_t i) {
    auto scene = make_scene(source, cfg, i);
    if (!scene.is_ok()) {
      errors[i] = scene.status();
      return;
    }
    std::vector<uint8_t> png;
    try {
      const cv::Mat m(static_cast<int>(scene->h), static_cast<int>(scene->w), CV_8UC1,
                      scene->pixels.data());
      if (!cv::imencode(".png", m, png)) {
        errors[i] = internal_error("scene {}: PNG encoding failed", i);
        return;
      }
    } catch (const cv::Exception& e) {
      errors[i] = internal_error("scene {}: PNG encoding failed: {}", i, e.what());
      return;
    }
    errors[i] = write_file_atomic((images_dir / fmt::format("{:06d}.png", i)).string(),
                                  std::string(png.begin(), png.end()));
    scene->pixels = {};  // keep only the boxes in memory
    scenes[i] = std::move(scene).value();
  });
  for (const Status& s : errors) QEVAL_RETURN_IF_ERROR(s);
  std::vector<std::string> names = source.class_names;
  if (names.empty()) {
    int64_t top = 0;
    for (int64_t l : source.labels) top = std::max(top, l);
    for (int64_t k = 0; k <= top; ++k) names.push_back(fmt::format("class_{}", k));
  }
  return write_file_atomic((fs::path(dir) / "annotations.json").string(),
                           detection_coco_json(scenes, names));
}

}  // namespace qeval
