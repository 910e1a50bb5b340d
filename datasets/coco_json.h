// COCO "instances" ground truth and COCO results (detections) as JSON files.
//
// Ground truth (https://cocodataset.org/#format-data, object detection):
//   {"images": [{"id", "file_name", "width", "height"}...],
//    "annotations": [{"id", "image_id", "category_id", "bbox": [x,y,w,h], "area", "iscrowd"}...],
//    "categories": [{"id", "name"}...]}
// Results (https://cocodataset.org/#format-results):
//   [{"image_id", "category_id", "bbox": [x,y,w,h], "score"}...]
// Only the fields the bbox evaluator needs are kept (segmentations, info and
// licenses are skipped). Errors name the file and the field, e.g.
//   "gt.json: annotations[12].bbox: expected 4 numbers".
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace qeval {

struct CocoImage {
  int64_t id = 0;
  std::string file_name;
  int64_t width = 0, height = 0;
};

struct CocoAnnotation {
  int64_t id = 0;
  int64_t image_id = 0;
  int64_t category_id = 0;
  std::array<double, 4> bbox{};  // x, y, w, h (pixels, top-left origin)
  double area = 0;               // the annotation's "area" field (segment area), not w*h
  bool iscrowd = false;
};

struct CocoCategory {
  int64_t id = 0;
  std::string name;
};

struct CocoDataset {
  std::vector<CocoImage> images;
  std::vector<CocoAnnotation> annotations;
  std::vector<CocoCategory> categories;
};

struct CocoDetection {
  int64_t image_id = 0;
  int64_t category_id = 0;
  std::array<double, 4> bbox{};  // x, y, w, h
  double score = 0;
};

// Reads a ground-truth file. "images", "annotations" and "categories" must be
// arrays; every annotation needs id, image_id, category_id, bbox (4 numbers) and
// area (the reference evaluator reads `area` for its area ranges and has no
// fallback for ground truth); iscrowd defaults to 0, file_name/width/height/name
// to empty. Ids are integers (an integral float such as 42.0 is accepted, as
// Python compares 42.0 == 42). Two annotations with the same id are an error:
// pycocotools indexes annotations by id and would silently evaluate one of them
// twice.
Result<CocoDataset> read_coco_instances(const std::string& path);

// Reads a results file: a JSON array of objects with image_id, category_id,
// bbox (4 numbers) and score. Extra fields (segmentation, id, area) are
// ignored; the evaluator derives id and area as pycocotools' loadRes does.
// Whether each image_id belongs to the ground truth is checked by
// check_coco_results() / evaluate_coco_bbox().
Result<std::vector<CocoDetection>> read_coco_results(const std::string& path);

// Every detection must name an image of the ground truth (pycocotools' loadRes:
// "Results do not correspond to current coco set"). The error names the first
// offending detection: "[12].image_id: 999 is not an image of the ground truth".
Status check_coco_results(const CocoDataset& gt, const std::vector<CocoDetection>& dets);

// Writers (atomic: write to PATH.tmp, rename). Doubles are written with the
// shortest representation that reads back to the same bits.
Status write_coco_instances(const CocoDataset& d, const std::string& path);
Status write_coco_results(const std::vector<CocoDetection>& dets, const std::string& path);

}  // namespace qeval
