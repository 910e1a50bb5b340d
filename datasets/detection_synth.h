// Synthetic detection scenes: Fashion-MNIST objects pasted on a textured gray
// background, with COCO boxes. A scene is a pure function of (source, config,
// index): every random draw comes from SplitMix64 seeded by (cfg.seed, index),
// so scene 17 is the same whether 20 or 20000 scenes are generated, on any
// thread, in any order.
//
// Scene recipe (size S = cfg.size):
//   1. background  bg(y,x) = 60 + 14 sin(2π(fx·x/S + p1)) + 12 sin(2π(fy·y/S + p2))
//                  + 8 sin(2π(fd·(x+y)/S + p3)) + uniform noise in [-6, 6], rounded and
//                  clamped to 0..255; fx, fy, fd in [0.5, 2) cycles per scene, p* phases.
//   2. n objects, n uniform in [min_objects, max_objects]. Each: a random source
//      image, scale s uniform in [min_scale, max_scale], resized to round(28·s)
//      pixels (cv::resize INTER_LINEAR), top-left corner uniform such that the
//      whole resized image lies inside the scene.
//   3. its box is the tight box of the resized pixels > kDetBoxThreshold (the
//      empty margins of the 28x28 image are not part of the object); a placement
//      whose box has IoU > max_iou with an earlier box is redrawn (image, scale
//      and position), up to kDetPlacementTries times, then that object is dropped
//      (so a crowded scene may hold fewer than min_objects).
//   4. paste with alpha a = obj/255: out = a·obj + (1−a)·bg, in integers
//      out = (obj·obj + (255−obj)·bg + 127) / 255.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/random.h"
#include "core/status.h"
#include "datasets/idx.h"

namespace qeval {

inline constexpr int kDetBoxThreshold = 16;
inline constexpr int kDetPlacementTries = 50;

// COCO box [x, y, w, h] in pixels: columns x .. x+w-1, rows y .. y+h-1.
// category_id 1..10 = Fashion-MNIST class + 1.
struct DetObject {
  int category_id = 0;
  float x = 0, y = 0, w = 0, h = 0;
};

struct DetScene {
  int64_t h = 0, w = 0;
  std::vector<uint8_t> pixels;  // gray, h*w row-major
  std::vector<DetObject> objects;
};

struct DetectionSynthConfig {
  int64_t size = 96;
  int min_objects = 1, max_objects = 6;
  double min_scale = 0.75, max_scale = 1.5;
  uint64_t seed = 0;
  double max_iou = 0.2;
};

// Checks the config and the source (gray, labelled, labels 0..9, objects fit).
Status validate_detection_config(const ImageSet& source, const DetectionSynthConfig& cfg);

Result<DetScene> make_detection_scene(const ImageSet& source, const DetectionSynthConfig& cfg,
                                      int64_t index);

// Writes DIR/images/%06d.png (scene index) and DIR/annotations.json in the COCO
// instances format:
//   images      {id = index + 1, file_name = "%06d.png" (relative to DIR/images), width, height}
//   annotations {id = 1.., image_id, category_id, bbox [x,y,w,h], area = w*h, iscrowd = 0}
//   categories  {id = 1..10, name = source.class_names}
// Ids start at 1 because the COCO evaluator treats id 0 as "unmatched".
Status write_detection_set(const ImageSet& source, const DetectionSynthConfig& cfg, int64_t count,
                           const std::string& dir);

// The COCO json of `scenes` (scene i is image id first_index + i + 1).
std::string detection_coco_json(const std::vector<DetScene>& scenes,
                                const std::vector<std::string>& class_names,
                                int64_t first_index = 0);

}  // namespace qeval
