#include "harness/metrics/coco_eval.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "datasets/coco_json.h"

namespace qeval {
namespace {

namespace fs = std::filesystem;

// np.spacing(1): a lone true positive has precision 1 / (1 + eps), not 1.
constexpr double kEps = 2.220446049250313e-16;
const double kOne = 1.0 / (1.0 + kEps);  // 0.9999999999999998

enum Stat { kAP, kAP50, kAP75, kAPs, kAPm, kAPl, kAR1, kAR10, kAR100, kARs, kARm, kARl };

// --- golden ------------------------------------------------------------------

// The 12 numbers of pycocotools COCOeval(iouType='bbox') for the cocoapi test
// pair instances_val2014_100.json / instances_val2014_fakebbox100_results.json
// (cocodataset/cocoapi `results/`, via faster_coco_eval's test suite; listed in
// ../shared/testdata/coco/README.md).
TEST(CocoGolden, Val2014Fakebbox100) {
  const std::string dir = std::string(QEVAL_SHARED_DIR) + "/testdata/coco/";
  const std::string gt_path = dir + "instances_val2014_100.json";
  const std::string dt_path = dir + "instances_val2014_fakebbox100_results.json";
  ASSERT_TRUE(fs::exists(gt_path) && fs::exists(dt_path))
      << "golden COCO data missing: expected " << gt_path << " and " << dt_path
      << " (the shared/ directory must sit beside the source tree)";
  auto gt = read_coco_instances(gt_path);
  ASSERT_TRUE(gt.is_ok()) << gt.status().message();
  auto dets = read_coco_results(dt_path);
  ASSERT_TRUE(dets.is_ok()) << dets.status().message();
  EXPECT_EQ(gt->images.size(), 100u);
  EXPECT_EQ(gt->annotations.size(), 839u);
  EXPECT_EQ(gt->categories.size(), 80u);
  EXPECT_EQ(dets->size(), 734u);

  auto r = evaluate_coco_bbox(*gt, *dets);
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  const std::array<double, 12> expected = {
      0.5045806987249628, 0.6969727247299577, 0.5729816669904824,  0.5856257209410443,
      0.5193996948036719, 0.5013978986347466, 0.38681277964578054, 0.5936795762842003,
      0.595352982877607,  0.6398109626113442, 0.5664205978994309,  0.5642905982905982};
  for (size_t i = 0; i < 12; ++i) {
    EXPECT_NEAR(r->stats[i], expected[i], 1e-9) << coco_stat_names()[i];
  }
  const std::string summary = format_coco_summary(*r);
  EXPECT_NE(
      summary.find(
          " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.505\n"),
      std::string::npos)
      << summary;
  EXPECT_NE(
      summary.find(
          " Average Recall     (AR) @[ IoU=0.50:0.95 | area= large | maxDets=100 ] = 0.564\n"),
      std::string::npos)
      << summary;
}

// --- hand-built cases ----------------------------------------------------------

struct Case {
  CocoDataset gt;
  std::vector<CocoDetection> dets;

  Case() {
    gt.images = {{1, "a.jpg", 640, 480}, {2, "b.jpg", 640, 480}};
    gt.categories = {{1, "cat"}, {2, "dog"}};
  }
  void add_gt(int64_t img, int64_t cat, std::array<double, 4> box, bool crowd = false) {
    CocoAnnotation a;
    a.id = static_cast<int64_t>(gt.annotations.size()) + 1;
    a.image_id = img;
    a.category_id = cat;
    a.bbox = box;
    a.area = box[2] * box[3];
    a.iscrowd = crowd;
    gt.annotations.push_back(a);
  }
  void add_det(int64_t img, int64_t cat, std::array<double, 4> box, double score) {
    dets.push_back({img, cat, box, score});
  }
  CocoEvalResult eval(const CocoEvalParams& p = {}) {
    auto r = evaluate_coco_bbox(gt, dets, p);
    EXPECT_TRUE(r.is_ok()) << r.status().message();
    return r.is_ok() ? *r : CocoEvalResult{};
  }
};

TEST(CocoEval, DefaultThresholdsAreNumpyLinspace) {
  const auto iou = coco_default_iou_thrs();
  ASSERT_EQ(iou.size(), 10u);
  EXPECT_EQ(iou[0], 0.5);
  EXPECT_EQ(iou[5], 0.75);  // the AP75 line selects it with ==
  EXPECT_EQ(iou[2], 0.6);
  EXPECT_EQ(iou[8], 0.8999999999999999);  // np.linspace(.5, .95, 10)[8], not 0.9
  EXPECT_EQ(iou[9], 0.95);
  const auto rec = coco_default_rec_thrs();
  ASSERT_EQ(rec.size(), 101u);
  EXPECT_EQ(rec[50], 0.5);
  EXPECT_EQ(rec[100], 1.0);
}

TEST(CocoEval, NumpyMeanSumsPairwise) {
  // np.mean([1.0] + [1e-16] * 9999) == 0.00010000000000009983 (numpy 1.24): the
  // tiny terms are summed together before meeting 1.0; a running sum loses them.
  std::vector<double> v(10000, 1e-16);
  v[0] = 1.0;
  EXPECT_EQ(numpy_mean(v), 0.00010000000000009983);
}

TEST(CocoEval, PerfectDetection) {
  Case c;
  c.add_gt(1, 1, {10, 10, 20, 20});  // area 400: small
  c.add_det(1, 1, {10, 10, 20, 20}, 0.9);
  const CocoEvalResult r = c.eval();
  // Every precision entry is 1/(1+eps); their mean is within a few ulps of it.
  EXPECT_EQ(r.precision_at(0, 0, 0, 0, 2), kOne);
  EXPECT_EQ(r.precision_at(9, 100, 0, 0, 2), kOne);
  EXPECT_DOUBLE_EQ(r.stats[kAP], kOne);
  EXPECT_DOUBLE_EQ(r.stats[kAP50], kOne);
  EXPECT_DOUBLE_EQ(r.stats[kAP75], kOne);
  EXPECT_DOUBLE_EQ(r.stats[kAPs], kOne);
  EXPECT_EQ(r.stats[kAR1], 1.0);
  EXPECT_EQ(r.stats[kAR100], 1.0);
  EXPECT_EQ(r.stats[kARs], 1.0);
  // No gt is medium or large: -1, as the reference.
  EXPECT_EQ(r.stats[kAPm], -1.0);
  EXPECT_EQ(r.stats[kAPl], -1.0);
  EXPECT_EQ(r.stats[kARm], -1.0);
  EXPECT_EQ(r.stats[kARl], -1.0);
  ASSERT_EQ(r.per_category_ap.size(), 2u);
  EXPECT_DOUBLE_EQ(r.per_category_ap[0], kOne);
  EXPECT_EQ(r.per_category_ap[1], -1.0);  // "dog": no gt
  const std::string s = format_coco_summary(r);
  EXPECT_NE(
      s.find(" Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets=100 ] = 1.000"),
      std::string::npos)
      << s;
  EXPECT_NE(
      s.find(" Average Recall     (AR) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ] = -1.000"),
      std::string::npos)
      << s;
}

TEST(CocoEval, DuplicateDetectionIsFalsePositive) {
  Case c;
  c.add_gt(1, 1, {0, 0, 50, 50});
  c.add_gt(1, 1, {100, 100, 50, 50});
  c.add_det(1, 1, {0, 0, 50, 50}, 0.9);
  c.add_det(1, 1, {0, 0, 50, 50}, 0.8);  // duplicate of the first: its gt is taken
  c.add_det(1, 1, {100, 100, 50, 50}, 0.7);
  const CocoEvalResult r = c.eval();
  // TP, FP, TP: recall .5, .5, 1; precision 1, 1/2, 2/3 -> envelope 1, 2/3, 2/3.
  // Recall points 0..0.50 (51) read precision 1, 0.51..1 (50) read 2/3.
  const double ap = (51 * kOne + 50 * (2.0 / (3.0 + kEps))) / 101;
  EXPECT_NEAR(r.stats[kAP], ap, 1e-15);
  EXPECT_NEAR(r.stats[kAP], 0.8349834983498348, 1e-15);
  EXPECT_EQ(r.precision_at(0, 50, 0, 0, 2), kOne);
  EXPECT_EQ(r.precision_at(0, 51, 0, 0, 2), 2.0 / (3.0 + kEps));
  EXPECT_EQ(r.stats[kAR100], 1.0);
  EXPECT_EQ(r.stats[kAR1], 0.5);  // maxDets=1 keeps only the 0.9 detection
}

TEST(CocoEval, CrowdAbsorbsDetections) {
  Case c;
  c.add_gt(1, 1, {0, 0, 50, 50});
  c.add_gt(1, 1, {200, 200, 200, 200}, /*crowd=*/true);
  c.add_det(1, 1, {210, 210, 30, 30}, 0.95);  // inside the crowd: IoU = inter / det area = 1
  c.add_det(1, 1, {300, 300, 40, 40}, 0.92);  // the crowd matches any number of dets
  c.add_det(1, 1, {0, 0, 50, 50}, 0.9);
  const CocoEvalResult r = c.eval();
  EXPECT_DOUBLE_EQ(r.stats[kAP], kOne);  // both crowd dets are ignored, not false positives
  EXPECT_EQ(r.stats[kAR100], 1.0);

  // The same boxes with a regular gt instead: the two are false positives
  // ranked first (IoU 0.0225 and 0.04 with the 200×200 box), the big gt is
  // missed: precision 1/3 at recall points 0..0.50, 0 above.
  c.gt.annotations[1].iscrowd = false;
  const CocoEvalResult r2 = c.eval();
  EXPECT_NEAR(r2.stats[kAP], 51.0 / 101.0 / (3.0 + kEps), 1e-15) << r2.stats[kAP];
  EXPECT_EQ(r2.stats[kAR100], 0.5);
}

TEST(CocoEval, AreaRangeWithoutGroundTruthIsMinusOne) {
  Case c;
  c.add_gt(1, 1, {0, 0, 200, 200});  // large only
  c.add_det(1, 1, {0, 0, 200, 200}, 0.5);
  c.add_det(1, 1, {300, 300, 10, 10}, 0.6);  // small, unmatched: a false positive in "all"
  const CocoEvalResult r = c.eval();
  EXPECT_EQ(r.stats[kAPs], -1.0);
  EXPECT_EQ(r.stats[kAPm], -1.0);
  EXPECT_EQ(r.stats[kARs], -1.0);
  EXPECT_EQ(r.stats[kARm], -1.0);
  // "large": the small unmatched det lies outside the range and is ignored.
  EXPECT_DOUBLE_EQ(r.stats[kAPl], kOne);
  // "all": FP then TP -> precision 1/2 everywhere.
  EXPECT_DOUBLE_EQ(r.stats[kAP], 1.0 / (2.0 + kEps));
}

TEST(CocoEval, MaxDetsTruncates) {
  Case c;
  c.add_gt(1, 1, {0, 0, 40, 40});
  c.add_gt(1, 1, {100, 0, 40, 40});
  c.add_gt(1, 1, {200, 0, 40, 40});
  c.add_det(1, 1, {0, 0, 40, 40}, 0.9);
  c.add_det(1, 1, {100, 0, 40, 40}, 0.8);
  c.add_det(1, 1, {200, 0, 40, 40}, 0.7);
  CocoEvalResult r = c.eval();
  EXPECT_DOUBLE_EQ(r.stats[kAR1], 1.0 / 3.0);
  EXPECT_EQ(r.stats[kAR10], 1.0);
  EXPECT_EQ(r.stats[kAR100], 1.0);

  // 100 higher-scoring misses push the true positive past maxDets[-1] = 100:
  // it is cut before matching, per (image, category).
  Case c2;
  c2.add_gt(1, 1, {0, 0, 40, 40});
  for (int i = 0; i < 100; ++i) c2.add_det(1, 1, {300, 300, 5, 5}, 0.9);
  c2.add_det(1, 1, {0, 0, 40, 40}, 0.5);
  r = c2.eval();
  EXPECT_EQ(r.stats[kAP], 0.0);
  EXPECT_EQ(r.stats[kAR100], 0.0);
  // With maxDets 1/10/101 the 101st detection counts (recall 1, precision 1/101).
  CocoEvalParams p;
  p.max_dets = {1, 10, 101};
  r = c2.eval(p);
  EXPECT_EQ(r.stats[kAR100], 1.0);
  EXPECT_EQ(r.stats[kAP], -1.0);  // the reference's first line asks for maxDets=100 literally
  EXPECT_DOUBLE_EQ(r.stats[kAP50], 1.0 / (101.0 + kEps));
}

TEST(CocoEval, TiesKeepImageOrder) {
  // Equal scores: the stable sort keeps image 1's FP before image 2's TP.
  Case c;
  c.add_gt(2, 1, {0, 0, 40, 40});
  c.add_det(2, 1, {0, 0, 40, 40}, 0.5);
  c.add_det(1, 1, {0, 0, 40, 40}, 0.5);
  EXPECT_DOUBLE_EQ(c.eval().stats[kAP], 1.0 / (2.0 + kEps));
}

TEST(CocoEval, DetectionInCategoryWithoutGroundTruth) {
  Case c;
  c.add_gt(1, 1, {10, 10, 50, 50});
  c.add_det(1, 1, {10, 10, 50, 50}, 0.9);
  c.add_det(1, 2, {10, 10, 50, 50}, 0.99);   // "dog": no gt -> -1, left out of the mean
  c.add_det(2, 77, {10, 10, 50, 50}, 0.99);  // category not in the gt: dropped
  const CocoEvalResult r = c.eval();
  EXPECT_DOUBLE_EQ(r.stats[kAP], kOne);
  EXPECT_EQ(r.per_category_ap[1], -1.0);
  EXPECT_EQ(r.precision_at(0, 0, 1, 0, 2), -1.0);

  // useCats = 0: categories are ignored, so the "dog" det is ranked first,
  // takes the gt and the "cat" det becomes a duplicate.
  CocoEvalParams p;
  p.use_cats = false;
  const CocoEvalResult r2 = c.eval(p);
  ASSERT_EQ(r2.cat_ids, std::vector<int64_t>{-1});
  EXPECT_DOUBLE_EQ(r2.stats[kAP], kOne);
  EXPECT_EQ(r2.stats[kAR100], 1.0);
}

TEST(CocoEval, NoDetections) {
  Case c;
  c.add_gt(1, 1, {10, 10, 50, 50});
  const CocoEvalResult r = c.eval();
  EXPECT_EQ(r.stats[kAP], 0.0);
  EXPECT_EQ(r.stats[kAR100], 0.0);
}

TEST(CocoEval, AnnotationIdZeroQuirk) {
  // The reference stores the matched gt's id as the match flag, so a match to
  // an annotation with id 0 reads as "unmatched": a false positive.
  Case c;
  c.add_gt(1, 1, {10, 10, 50, 50});
  c.gt.annotations[0].id = 0;
  c.add_det(1, 1, {10, 10, 50, 50}, 0.9);
  const CocoEvalResult r = c.eval();
  EXPECT_EQ(r.stats[kAP], 0.0);
  EXPECT_EQ(r.stats[kAR100], 0.0);
}

TEST(CocoEval, RejectsDetectionOnUnknownImage) {
  Case c;
  c.add_gt(1, 1, {10, 10, 50, 50});
  c.add_det(1, 1, {10, 10, 50, 50}, 0.9);
  c.add_det(999, 1, {10, 10, 50, 50}, 0.9);
  auto r = evaluate_coco_bbox(c.gt, c.dets);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("[1].image_id: 999"), std::string::npos)
      << r.status().message();
}

TEST(CocoEval, RejectsBadParams) {
  Case c;
  CocoEvalParams p;
  p.max_dets = {1, 100};
  EXPECT_FALSE(evaluate_coco_bbox(c.gt, c.dets, p).is_ok());
  p = {};
  p.area_rngs.pop_back();
  EXPECT_FALSE(evaluate_coco_bbox(c.gt, c.dets, p).is_ok());
  p = {};
  p.iou_thrs.clear();
  EXPECT_FALSE(evaluate_coco_bbox(c.gt, c.dets, p).is_ok());
}

// --- JSON readers ------------------------------------------------------------

class CocoJson : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("coco_json_" +
            std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& text) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path) << text;
    return path;
  }
  fs::path dir_;
};

constexpr const char* kGood = R"({
  "images": [{"id": 1, "file_name": "a.jpg", "width": 640, "height": 480}],
  "annotations": [{"id": 5, "image_id": 1, "category_id": 3, "bbox": [1, 2.5, 3, 4],
                   "area": 11.5, "iscrowd": 0, "segmentation": [[1, 2, 3, 4]]}],
  "categories": [{"id": 3, "name": "car", "supercategory": "vehicle"}]
})";

TEST_F(CocoJson, ReadsInstances) {
  auto d = read_coco_instances(write("gt.json", kGood));
  ASSERT_TRUE(d.is_ok()) << d.status().message();
  ASSERT_EQ(d->annotations.size(), 1u);
  const CocoAnnotation& a = d->annotations[0];
  EXPECT_EQ(a.id, 5);
  EXPECT_EQ(a.category_id, 3);
  EXPECT_EQ(a.bbox[1], 2.5);
  EXPECT_EQ(a.area, 11.5);
  EXPECT_FALSE(a.iscrowd);
  EXPECT_EQ(d->images[0].file_name, "a.jpg");
  EXPECT_EQ(d->categories[0].name, "car");
}

TEST_F(CocoJson, RoundTrips) {
  CocoDataset d;
  d.images = {{7, "x.png", 10, 20}};
  d.annotations = {{1, 7, 2, {0.1, 0.2, 0.30000000000000004, 1e-300}, 0.7, true}};
  d.categories = {{2, "thing"}};
  const std::string gt = (dir_ / "gt.json").string();
  ASSERT_TRUE(write_coco_instances(d, gt).is_ok());
  auto back = read_coco_instances(gt);
  ASSERT_TRUE(back.is_ok()) << back.status().message();
  EXPECT_EQ(back->annotations[0].bbox, d.annotations[0].bbox);
  EXPECT_TRUE(back->annotations[0].iscrowd);
  EXPECT_EQ(back->images[0].height, 20);

  std::vector<CocoDetection> dets = {{7, 2, {1, 2, 3, 4}, 0.123456789012345678}};
  const std::string dt = (dir_ / "dt.json").string();
  ASSERT_TRUE(write_coco_results(dets, dt).is_ok());
  auto dets_back = read_coco_results(dt);
  ASSERT_TRUE(dets_back.is_ok()) << dets_back.status().message();
  EXPECT_EQ((*dets_back)[0].score, dets[0].score);
  EXPECT_EQ((*dets_back)[0].bbox, dets[0].bbox);
}

TEST_F(CocoJson, MalformedJsonNamesFileAndByte) {
  const std::string path = write("gt.json", R"({"images": [ )");
  auto d = read_coco_instances(path);
  ASSERT_FALSE(d.is_ok());
  const std::string& msg = d.status().message();
  EXPECT_EQ(msg.rfind(path + ": JSON parse error at byte ", 0), 0u) << msg;
  auto r = read_coco_results(write("dt.json", "[{\"image_id\": 1,}]"));
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("dt.json: JSON parse error at byte 17"), std::string::npos)
      << r.status().message();
}

TEST_F(CocoJson, BboxWithThreeNumbers) {
  std::string text = kGood;
  text.replace(text.find("[1, 2.5, 3, 4]"), 14, "[1, 2.5, 3]");
  auto d = read_coco_instances(write("gt.json", text));
  ASSERT_FALSE(d.is_ok());
  EXPECT_NE(d.status().message().find("gt.json: annotations[0].bbox: expected 4 numbers"),
            std::string::npos)
      << d.status().message();

  auto r = read_coco_results(write(
      "dt.json", R"([{"image_id": 1, "category_id": 1, "bbox": [1, 2, "3", 4], "score": 1}])"));
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("dt.json: [0].bbox[2]: expected a number"), std::string::npos)
      << r.status().message();
}

TEST_F(CocoJson, FieldErrors) {
  std::string text = kGood;
  text.replace(text.find("\"area\": 11.5,"), 13, "");
  auto d = read_coco_instances(write("gt.json", text));
  ASSERT_FALSE(d.is_ok());
  EXPECT_NE(d.status().message().find("annotations[0].area: missing"), std::string::npos)
      << d.status().message();

  auto r = read_coco_results(write("dt.json", R"({"image_id": 1})"));
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("expected a JSON array"), std::string::npos);

  r = read_coco_results(write(
      "dt2.json", R"([{"image_id": 1.5, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 1}])"));
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("[0].image_id: expected an integer"), std::string::npos)
      << r.status().message();

  const std::string dup = R"({"images": [], "categories": [], "annotations": [
      {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "area": 1},
      {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "area": 1}]})";
  d = read_coco_instances(write("dup.json", dup));
  ASSERT_FALSE(d.is_ok());
  EXPECT_NE(d.status().message().find("annotations[1].id: 1 is also the id of annotations[0]"),
            std::string::npos)
      << d.status().message();

  auto missing = read_coco_instances((dir_ / "nope.json").string());
  ASSERT_FALSE(missing.is_ok());
  EXPECT_NE(missing.status().message().find("nope.json"), std::string::npos);
}

TEST_F(CocoJson, DetectionOnUnknownImage) {
  auto gt = read_coco_instances(write("gt.json", kGood));
  ASSERT_TRUE(gt.is_ok());
  auto dets = read_coco_results(
      write("dt.json", R"([{"image_id": 1, "category_id": 3, "bbox": [1, 2, 3, 4], "score": 0.5},
                     {"image_id": 2, "category_id": 3, "bbox": [1, 2, 3, 4], "score": 0.5}])"));
  ASSERT_TRUE(dets.is_ok()) << dets.status().message();
  Status s = check_coco_results(*gt, *dets);
  ASSERT_FALSE(s.is_ok());
  EXPECT_EQ(s.message(), "[1].image_id: 2 is not an image of the ground truth");
}

}  // namespace
}  // namespace qeval
