#include "harness/metrics/coco_eval.h"

#include <algorithm>
#include <cmath>
#include <tuple>
#include <unordered_map>

namespace qeval {
namespace {

// np.spacing(1): the precision denominator is tp + fp + eps, so that 0/0 = 0.
constexpr double kEps = 2.220446049250313e-16;
// The reference caps the matching threshold: iou = min(t, 1 - 1e-10).
constexpr double kMaxIouThr = 1 - 1e-10;
// numpy's ufunc buffer size: a reduction is summed in chunks of this many elements.
constexpr size_t kNumpyBufSize = 8192;

// Stable order of descending score, as np.argsort(-score, kind='mergesort'):
// ties keep their input order; NaN (numpy sorts it last) goes last.
bool score_before(double a, double b) {
  const double ka = -a, kb = -b;
  if (std::isnan(ka)) return false;
  if (std::isnan(kb)) return true;
  return ka < kb;
}

// numpy's pairwise_sum (numpy/core/src/umath/loops_utils.h.src).
double pairwise_sum(const double* a, size_t n) {
  if (n < 8) {
    double res = 0.;
    for (size_t i = 0; i < n; ++i) res += a[i];
    return res;
  }
  if (n <= 128) {
    double r[8];
    for (int j = 0; j < 8; ++j) r[j] = a[j];
    size_t i = 8;
    for (; i < n - (n % 8); i += 8) {
      for (int j = 0; j < 8; ++j) r[j] += a[i + j];
    }
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  size_t n2 = n / 2;
  n2 -= n2 % 8;
  return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

// Mean of the entries > -1 (the reference's np.mean(s[s > -1])), -1 when none.
double mean_valid(const std::vector<double>& buf) { return buf.empty() ? -1.0 : numpy_mean(buf); }

// np.linspace(start, stop, n) for n >= 2 (numpy/core/function_base.py):
// step = (stop - start) / (n - 1); y = arange(n) * step; y += start; y[-1] = stop.
std::vector<double> linspace(double start, double stop, int n) {
  std::vector<double> y(n);
  const double step = (stop - start) / (n - 1);
  for (int i = 0; i < n; ++i) {
    const double scaled = static_cast<double>(i) * step;  // two roundings, no fma
    y[i] = scaled + start;
  }
  y[n - 1] = stop;
  return y;
}

// One summary line: AP or AR, an IoU threshold (none = all), an area range
// index (labels all/small/medium/large) and a maxDets value. stats[0] asks for
// maxDets=100 literally (the reference's default argument), the others for
// maxDets[0..2].
struct StatSpec {
  bool ap;
  double iou_thr;  // < 0: all thresholds
  int area;
  int max_dets_index;  // -1: the literal 100
};
constexpr StatSpec kStats[12] = {
    {true, -1, 0, -1}, {true, .5, 0, 2},  {true, .75, 0, 2}, {true, -1, 1, 2},
    {true, -1, 2, 2},  {true, -1, 3, 2},  {false, -1, 0, 0}, {false, -1, 0, 1},
    {false, -1, 0, 2}, {false, -1, 1, 2}, {false, -1, 2, 2}, {false, -1, 3, 2},
};
constexpr const char* kAreaLabels[4] = {"all", "small", "medium", "large"};

int stat_max_dets(const StatSpec& s, const CocoEvalParams& p) {
  return s.max_dets_index < 0 ? 100 : p.max_dets[s.max_dets_index];
}

// A (category slot, image) pair with ground truth or detections: the unit of
// the reference's evaluateImg.
struct Group {
  int slot = 0;             // category index (0 when !use_cats)
  int img = 0;              // image index (sorted ids)
  std::vector<int> gt;      // gt.annotations indices, reference order
  std::vector<int> dt;      // dets indices, by score (stable), at most maxDets[-1]
  size_t flags_offset = 0;  // into Evaluated::flags: A × T × D bytes
};

// Per detection and IoU threshold, what accumulate needs from evaluateImg.
constexpr uint8_t kMatched = 1;  // dtMatches != 0 (the matched gt's id is not 0)
constexpr uint8_t kIgnored = 2;  // dtIgnore

struct Evaluated {
  std::vector<Group> groups;
  std::vector<uint8_t> flags;
  std::vector<int> npig;  // groups × A: non-ignored gts
};

Status validate(const CocoEvalParams& p) {
  if (p.iou_thrs.empty()) return invalid_argument("COCO eval: iou_thrs is empty");
  if (p.rec_thrs.empty()) return invalid_argument("COCO eval: rec_thrs is empty");
  if (p.area_rngs.size() != 4) {
    return invalid_argument(
        "COCO eval: {} area ranges; the summary needs 4 (all, small, medium, "
        "large)",
        p.area_rngs.size());
  }
  if (p.max_dets.size() != 3) {
    return invalid_argument("COCO eval: {} max_dets values; the summary needs 3",
                            p.max_dets.size());
  }
  for (size_t i = 0; i < p.max_dets.size(); ++i) {
    if (p.max_dets[i] <= 0) return invalid_argument("COCO eval: max_dets must be positive");
    if (i > 0 && p.max_dets[i] == p.max_dets[i - 1]) {
      return invalid_argument("COCO eval: max_dets values must be distinct");
    }
  }
  return Status::ok();
}

// bbIou of cocoapi common/maskApi.c: IoU of dt (rows) × gt (columns); a crowd
// gt divides the intersection by the detection's area alone.
void box_iou(const std::vector<CocoDetection>& dets, const std::vector<int>& dt,
             const std::vector<CocoAnnotation>& anns, const std::vector<int>& gt,
             std::vector<double>* out) {
  const size_t D = dt.size(), G = gt.size();
  out->assign(D * G, 0.0);
  for (size_t g = 0; g < G; ++g) {
    const auto& G4 = anns[gt[g]].bbox;
    const double ga = G4[2] * G4[3];
    const bool crowd = anns[gt[g]].iscrowd;
    for (size_t d = 0; d < D; ++d) {
      const auto& D4 = dets[dt[d]].bbox;
      const double da = D4[2] * D4[3];
      const double w = std::fmin(D4[2] + D4[0], G4[2] + G4[0]) - std::fmax(D4[0], G4[0]);
      if (w <= 0) continue;
      const double h = std::fmin(D4[3] + D4[1], G4[3] + G4[1]) - std::fmax(D4[1], G4[1]);
      if (h <= 0) continue;
      const double i = w * h;
      const double u = crowd ? da : da + ga - i;
      (*out)[d * G + g] = i / u;
    }
  }
}

// The reference's evaluateImg for one group and every area range.
void evaluate_group(const CocoDataset& gt, const std::vector<CocoDetection>& dets,
                    const CocoEvalParams& p, size_t gi, Evaluated& ev) {
  Group& grp = ev.groups[gi];
  const size_t T = p.iou_thrs.size(), A = p.area_rngs.size();
  const size_t D = grp.dt.size(), G = grp.gt.size();
  std::vector<double> iou;
  box_iou(dets, grp.dt, gt.annotations, grp.gt, &iou);

  std::vector<double> det_area(D);
  for (size_t d = 0; d < D; ++d) {
    const auto& b = dets[grp.dt[d]].bbox;
    det_area[d] = b[2] * b[3];  // loadRes: ann['area'] = bb[2] * bb[3]
  }

  grp.flags_offset = ev.flags.size();
  ev.flags.resize(ev.flags.size() + A * T * D, 0);
  std::vector<int> order(G);   // gts, non-ignored first (stable)
  std::vector<uint8_t> ig(G);  // _ignore in `order`
  std::vector<uint8_t> crowd(G);
  std::vector<uint8_t> gt_taken(G);
  for (size_t a = 0; a < A; ++a) {
    const double lo = p.area_rngs[a][0], hi = p.area_rngs[a][1];
    size_t n = 0;
    int npig = 0;
    for (int pass = 0; pass < 2; ++pass) {
      for (size_t g = 0; g < G; ++g) {
        const CocoAnnotation& ann = gt.annotations[grp.gt[g]];
        const bool ignore = ann.iscrowd || ann.area < lo || ann.area > hi;
        if (ignore != (pass == 1)) continue;
        order[n] = static_cast<int>(g);
        ig[n] = ignore;
        crowd[n] = ann.iscrowd;
        ++n;
        npig += !ignore;
      }
    }
    ev.npig[gi * A + a] = npig;

    uint8_t* flags = ev.flags.data() + grp.flags_offset + a * T * D;
    for (size_t t = 0; t < T; ++t) {
      std::fill(gt_taken.begin(), gt_taken.end(), 0);
      uint8_t* f = flags + t * D;
      for (size_t d = 0; d < D; ++d) {
        double best = std::min(p.iou_thrs[t], kMaxIouThr);
        int m = -1;
        const double* row = iou.data() + d * G;
        for (size_t j = 0; j < G; ++j) {
          // A matched gt takes no second detection unless it is a crowd.
          if (gt_taken[j] && !crowd[j]) continue;
          // Once matched to a regular gt, ignored gts (sorted last) cannot win.
          if (m > -1 && !ig[m] && ig[j]) break;
          const double v = row[order[j]];
          if (v < best) continue;
          best = v;
          m = static_cast<int>(j);
        }
        if (m == -1) continue;
        gt_taken[m] = 1;
        f[d] = static_cast<uint8_t>((ig[m] ? kIgnored : 0) |
                                    (gt.annotations[grp.gt[order[m]]].id != 0 ? kMatched : 0));
      }
      // An unmatched detection outside the area range is ignored.
      for (size_t d = 0; d < D; ++d) {
        if (!(f[d] & kMatched) && (det_area[d] < lo || det_area[d] > hi)) f[d] |= kIgnored;
      }
    }
  }
}

// Builds the groups in the reference's evalImgs order: category-major, images
// ascending. Within a group gts and dets keep file order (by category first
// when !use_cats), then dets are sorted by score and cut at maxDets[-1].
Evaluated build_groups(const CocoDataset& gt, const std::vector<CocoDetection>& dets,
                       const CocoEvalParams& p, const std::vector<int64_t>& img_ids,
                       const std::vector<int64_t>& cat_ids) {
  std::unordered_map<int64_t, int> img_index, cat_index;
  img_index.reserve(img_ids.size());
  for (size_t i = 0; i < img_ids.size(); ++i) img_index[img_ids[i]] = static_cast<int>(i);
  for (size_t i = 0; i < cat_ids.size(); ++i) cat_index[cat_ids[i]] = static_cast<int>(i);

  // (slot, image, category, file index) keys; the file index keeps the sort stable.
  struct Key {
    int slot, img, cat, idx;
    bool operator<(const Key& o) const {
      return std::tie(slot, img, cat, idx) < std::tie(o.slot, o.img, o.cat, o.idx);
    }
  };
  auto keys = [&](auto&& items) {
    std::vector<Key> out;
    out.reserve(items.size());
    for (size_t i = 0; i < items.size(); ++i) {
      auto im = img_index.find(items[i].image_id);
      auto ca = cat_index.find(items[i].category_id);
      if (im == img_index.end() || ca == cat_index.end()) continue;
      out.push_back({p.use_cats ? ca->second : 0, im->second, p.use_cats ? 0 : ca->second,
                     static_cast<int>(i)});
    }
    std::sort(out.begin(), out.end());
    return out;
  };
  const std::vector<Key> gk = keys(gt.annotations), dk = keys(dets);

  Evaluated ev;
  size_t i = 0, j = 0;
  while (i < gk.size() || j < dk.size()) {
    Group g;
    const bool take_gt = j == dk.size() || (i < gk.size() && std::tie(gk[i].slot, gk[i].img) <=
                                                                 std::tie(dk[j].slot, dk[j].img));
    g.slot = take_gt ? gk[i].slot : dk[j].slot;
    g.img = take_gt ? gk[i].img : dk[j].img;
    for (; i < gk.size() && gk[i].slot == g.slot && gk[i].img == g.img; ++i)
      g.gt.push_back(gk[i].idx);
    for (; j < dk.size() && dk[j].slot == g.slot && dk[j].img == g.img; ++j)
      g.dt.push_back(dk[j].idx);
    std::stable_sort(g.dt.begin(), g.dt.end(),
                     [&](int a, int b) { return score_before(dets[a].score, dets[b].score); });
    if (g.dt.size() > static_cast<size_t>(p.max_dets.back())) g.dt.resize(p.max_dets.back());
    ev.groups.push_back(std::move(g));
  }
  return ev;
}

}  // namespace

double numpy_mean(const std::vector<double>& v) {
  double sum = 0.;
  for (size_t s = 0; s < v.size(); s += kNumpyBufSize) {
    sum += pairwise_sum(v.data() + s, std::min(kNumpyBufSize, v.size() - s));
  }
  return sum / static_cast<double>(v.size());
}

std::vector<double> coco_default_iou_thrs() { return linspace(.5, 0.95, 10); }
std::vector<double> coco_default_rec_thrs() { return linspace(.0, 1.00, 101); }

const std::array<const char*, 12>& coco_stat_names() {
  static const std::array<const char*, 12> kNames = {"AP",  "AP50", "AP75",  "APs", "APm", "APl",
                                                     "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"};
  return kNames;
}

double CocoEvalResult::precision_at(size_t t, size_t r, size_t k, size_t a, size_t m) const {
  const size_t R = params.rec_thrs.size(), K = cat_ids.size(), A = params.area_rngs.size(),
               M = params.max_dets.size();
  return precision[(((t * R + r) * K + k) * A + a) * M + m];
}

double CocoEvalResult::recall_at(size_t t, size_t k, size_t a, size_t m) const {
  const size_t K = cat_ids.size(), A = params.area_rngs.size(), M = params.max_dets.size();
  return recall[((t * K + k) * A + a) * M + m];
}

Result<CocoEvalResult> evaluate_coco_bbox(const CocoDataset& gt,
                                          const std::vector<CocoDetection>& dets,
                                          const CocoEvalParams& params) {
  CocoEvalResult res;
  res.params = params;
  CocoEvalParams& p = res.params;
  std::sort(p.max_dets.begin(), p.max_dets.end());
  QEVAL_RETURN_IF_ERROR(validate(p));
  QEVAL_RETURN_IF_ERROR(check_coco_results(gt, dets));

  std::vector<int64_t> img_ids, cat_ids;
  for (const CocoImage& im : gt.images) img_ids.push_back(im.id);
  for (const CocoCategory& c : gt.categories) cat_ids.push_back(c.id);
  for (auto* ids : {&img_ids, &cat_ids}) {
    std::sort(ids->begin(), ids->end());
    ids->erase(std::unique(ids->begin(), ids->end()), ids->end());
  }
  res.cat_ids = p.use_cats ? cat_ids : std::vector<int64_t>{-1};

  // evaluate
  Evaluated ev = build_groups(gt, dets, p, img_ids, cat_ids);
  ev.npig.assign(ev.groups.size() * p.area_rngs.size(), 0);
  for (size_t g = 0; g < ev.groups.size(); ++g) evaluate_group(gt, dets, p, g, ev);

  // accumulate
  const size_t T = p.iou_thrs.size(), R = p.rec_thrs.size(), K = res.cat_ids.size(),
               A = p.area_rngs.size(), M = p.max_dets.size();
  res.precision.assign(T * R * K * A * M, -1.0);
  res.recall.assign(T * K * A * M, -1.0);
  struct Det {
    double score;
    int group;
    int pos;
  };
  std::vector<Det> pool;
  std::vector<double> rc, pr;
  size_t gb = 0;
  while (gb < ev.groups.size()) {
    const int k = ev.groups[gb].slot;
    size_t ge = gb;
    while (ge < ev.groups.size() && ev.groups[ge].slot == k) ++ge;
    for (size_t m = 0; m < M; ++m) {
      // Every image's first maxDet detections, concatenated in image order and
      // sorted by score (stable), as np.argsort(-dtScores, kind='mergesort').
      const size_t max_det = static_cast<size_t>(p.max_dets[m]);
      pool.clear();
      for (size_t g = gb; g < ge; ++g) {
        const Group& grp = ev.groups[g];
        const size_t n = std::min(grp.dt.size(), max_det);
        for (size_t d = 0; d < n; ++d) {
          pool.push_back({dets[grp.dt[d]].score, static_cast<int>(g), static_cast<int>(d)});
        }
      }
      std::stable_sort(pool.begin(), pool.end(),
                       [](const Det& a, const Det& b) { return score_before(a.score, b.score); });
      const size_t nd = pool.size();
      for (size_t a = 0; a < A; ++a) {
        int64_t npig = 0;
        for (size_t g = gb; g < ge; ++g) npig += ev.npig[g * A + a];
        if (npig == 0) continue;
        for (size_t t = 0; t < T; ++t) {
          rc.resize(nd);
          pr.resize(nd);
          int64_t tp = 0, fp = 0;
          for (size_t i = 0; i < nd; ++i) {
            const Group& grp = ev.groups[pool[i].group];
            const uint8_t f =
                ev.flags[grp.flags_offset + (a * T + t) * grp.dt.size() + pool[i].pos];
            if (!(f & kIgnored)) ((f & kMatched) ? tp : fp) += 1;
            const double tpd = static_cast<double>(tp), fpd = static_cast<double>(fp);
            rc[i] = tpd / static_cast<double>(npig);
            pr[i] = tpd / ((fpd + tpd) + kEps);
          }
          res.recall[((t * K + k) * A + a) * M + m] = nd ? rc[nd - 1] : 0.0;
          // Precision envelope: make it non-increasing from the right.
          for (size_t i = nd; i-- > 1;) {
            if (pr[i] > pr[i - 1]) pr[i - 1] = pr[i];
          }
          // q[r] = pr[searchsorted(rc, recThr[r], side='left')]; the reference
          // stops at the first index past the end (the rest stay 0).
          for (size_t r = 0; r < R; ++r) {
            const size_t pi = std::lower_bound(rc.begin(), rc.end(), p.rec_thrs[r]) - rc.begin();
            if (pi >= nd) {
              for (; r < R; ++r) res.precision[(((t * R + r) * K + k) * A + a) * M + m] = 0.0;
              break;
            }
            res.precision[(((t * R + r) * K + k) * A + a) * M + m] = pr[pi];
          }
        }
      }
    }
    gb = ge;
  }

  // summarize
  std::vector<double> buf;
  for (size_t s = 0; s < 12; ++s) {
    const StatSpec& spec = kStats[s];
    const int md = stat_max_dets(spec, p);
    const auto mit = std::find(p.max_dets.begin(), p.max_dets.end(), md);
    buf.clear();
    if (mit != p.max_dets.end()) {
      const size_t m = mit - p.max_dets.begin(), a = spec.area;
      for (size_t t = 0; t < T; ++t) {
        if (spec.iou_thr >= 0 && !(p.iou_thrs[t] == spec.iou_thr)) continue;
        if (spec.ap) {
          for (size_t r = 0; r < R; ++r) {
            for (size_t k = 0; k < K; ++k) {
              const double v = res.precision_at(t, r, k, a, m);
              if (v > -1) buf.push_back(v);
            }
          }
        } else {
          for (size_t k = 0; k < K; ++k) {
            const double v = res.recall_at(t, k, a, m);
            if (v > -1) buf.push_back(v);
          }
        }
      }
    }
    res.stats[s] = mean_valid(buf);
  }
  res.per_category_ap.resize(K);
  for (size_t k = 0; k < K; ++k) {
    buf.clear();
    for (size_t t = 0; t < T; ++t) {
      for (size_t r = 0; r < R; ++r) {
        const double v = res.precision_at(t, r, k, 0, M - 1);
        if (v > -1) buf.push_back(v);
      }
    }
    res.per_category_ap[k] = mean_valid(buf);
  }
  return res;
}

std::string format_coco_summary(const CocoEvalResult& r) {
  const CocoEvalParams& p = r.params;
  std::string out;
  for (size_t s = 0; s < 12; ++s) {
    const StatSpec& spec = kStats[s];
    const std::string iou =
        spec.iou_thr < 0 ? fmt::format("{:0.2f}:{:0.2f}", p.iou_thrs.front(), p.iou_thrs.back())
                         : fmt::format("{:0.2f}", spec.iou_thr);
    out += fmt::format(" {:<18} {} @[ IoU={:<9} | area={:>6s} | maxDets={:>3d} ] = {:0.3f}\n",
                       spec.ap ? "Average Precision" : "Average Recall", spec.ap ? "(AP)" : "(AR)",
                       iou, kAreaLabels[spec.area], stat_max_dets(spec, p), r.stats[s]);
  }
  return out;
}

}  // namespace qeval
