// COCO bbox evaluation: the 12 summary numbers of pycocotools' COCOeval
// (iouType='bbox'), reproduced to the last bit (cocodataset/cocoapi,
// PythonAPI/pycocotools/cocoeval.py and coco.py's loadRes; docs/metrics.md).
//
//   evaluate   per (image, category): IoU of every det × gt, greedy matching at
//              each IoU threshold, per area range
//   accumulate per (category, area range, maxDets): detections of all images
//              sorted by score, cumulative TP/FP, interpolated precision at 101
//              recall points, final recall
//   summarize  means over (IoU threshold, recall point, category) of the
//              entries that are not -1 (-1: no ground truth in that setting)
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "datasets/coco_json.h"

namespace qeval {

// np.linspace(.5, .95, 10) and np.linspace(0, 1, 101), bit for bit:
// x_i = i * ((stop - start) / (n - 1)) + start, the last one = stop.
std::vector<double> coco_default_iou_thrs();
std::vector<double> coco_default_rec_thrs();

struct CocoEvalParams {
  std::vector<double> iou_thrs = coco_default_iou_thrs();  // .50:.05:.95
  std::vector<double> rec_thrs = coco_default_rec_thrs();  // 0:.01:1
  std::vector<int> max_dets{1, 10, 100};  // sorted ascending before use, as the reference does
  // all, small, medium, large; an area a is inside [lo, hi] when lo <= a <= hi.
  std::vector<std::array<double, 2>> area_rngs{
      {0.0, 1e10}, {0.0, 32.0 * 32.0}, {32.0 * 32.0, 96.0 * 96.0}, {96.0 * 96.0, 1e10}};
  bool use_cats = true;  // false: categories are ignored (proposal recall)
};

// Names of the 12 stats in order, as detectron2 and most logs spell them:
// AP AP50 AP75 APs APm APl AR1 AR10 AR100 ARs ARm ARl.
const std::array<const char*, 12>& coco_stat_names();

struct CocoEvalResult {
  // [0] AP@[.50:.95] all 100, [1] AP@.50, [2] AP@.75, [3..5] AP small/medium/large,
  // [6..8] AR all maxDets 1/10/100, [9..11] AR small/medium/large (maxDets[2]).
  // -1 where no setting has ground truth.
  std::array<double, 12> stats{};
  CocoEvalParams params;         // as used (max_dets sorted)
  std::vector<int64_t> cat_ids;  // K sorted category ids ({-1} when !use_cats)
  // precision[t][r][k][a][m] (T×R×K×A×M, row-major like the reference's
  // eval['precision']); recall[t][k][a][m]. -1 where the setting has no gt.
  std::vector<double> precision;
  std::vector<double> recall;
  // AP@[.50:.95] of each category (area all = index 0, the largest maxDets),
  // as detectron2 reports it; -1 for a category without ground truth.
  std::vector<double> per_category_ap;

  double precision_at(size_t t, size_t r, size_t k, size_t a, size_t m) const;
  double recall_at(size_t t, size_t k, size_t a, size_t m) const;
};

// Evaluates `dets` against `gt`. Images are gt.images (sorted, unique ids),
// categories gt.categories; annotations or detections of other categories are
// left out, as the reference does. Errors: a detection naming an image that is
// not in gt.images ("[12].image_id: ..."; prefix the results file name), or
// params the summary cannot use (empty thresholds, not exactly 3 distinct
// positive max_dets or 4 area ranges).
//
// Deliberate differences from pycocotools: an empty results list evaluates to
// AP 0 (the reference crashes on anns[0]); a gt annotation without iscrowd is
// not a crowd (the reference raises KeyError); duplicate annotation ids are
// refused by read_coco_instances. Kept quirks: an annotation whose id is 0
// counts as unmatched once matched (the reference stores gt ids as match
// flags), so the detection matched to it is a false positive.
Result<CocoEvalResult> evaluate_coco_bbox(const CocoDataset& gt,
                                          const std::vector<CocoDetection>& dets,
                                          const CocoEvalParams& p = {});

// The reference's 12 printed lines, e.g.
// " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.505"
std::string format_coco_summary(const CocoEvalResult& r);

// np.mean of a 1-D float64 array, bit for bit: numpy sums in chunks of 8192
// (the ufunc buffer size), each chunk by pairwise summation with 8 accumulators
// below 128 elements; the mean is sum / n. Exposed for tests.
double numpy_mean(const std::vector<double>& v);

}  // namespace qeval
