#include "models/detect.h"

#include <algorithm>
#include <cmath>

namespace qeval {

namespace {
constexpr int64_t G = kDetGrid;
inline int64_t at(int64_t c, int64_t i, int64_t j) { return (c * G + i) * G + j; }
float sigmoid(float x) { return 1.f / (1.f + std::exp(-x)); }
}  // namespace

float box_iou(const DetBox& a, const DetBox& b) {
  const float ix = std::max(0.f, std::min(a.x + a.w, b.x + b.w) - std::max(a.x, b.x));
  const float iy = std::max(0.f, std::min(a.y + a.h, b.y + b.h) - std::max(a.y, b.y));
  const float inter = ix * iy;
  const float uni = a.w * a.h + b.w * b.h - inter;
  return uni > 0 ? inter / uni : 0.f;
}

DetTargets encode_det_targets(const std::vector<DetBox>& boxes) {
  DetTargets t;
  t.heat.assign(kDetClasses * G * G, 0.f);
  t.reg.assign(4 * G * G, 0.f);
  t.reg_mask.assign(G * G, 0.f);
  for (const DetBox& b : boxes) {
    const float cx = (b.x + b.w / 2) / kDetStride, cy = (b.y + b.h / 2) / kDetStride;
    const int64_t j = std::clamp<int64_t>(static_cast<int64_t>(cx), 0, G - 1);
    const int64_t i = std::clamp<int64_t>(static_cast<int64_t>(cy), 0, G - 1);
    // Gaussian peak with sigma growing with the object (CenterNet uses a radius
    // from the box size; a quarter of the smaller side, in cells, is close).
    const float r = std::max(0.f, std::floor(0.25f * std::min(b.w, b.h) / kDetStride));
    const float sigma = (2 * r + 1) / 6.f;
    const int64_t ri = static_cast<int64_t>(r);
    for (int64_t di = -ri; di <= ri; ++di) {
      for (int64_t dj = -ri; dj <= ri; ++dj) {
        const int64_t ii = i + di, jj = j + dj;
        if (ii < 0 || jj < 0 || ii >= G || jj >= G) continue;
        const float v = std::exp(-(di * di + dj * dj) / (2 * sigma * sigma));
        float& h = t.heat[at(b.category, ii, jj)];
        h = std::max(h, v);
      }
    }
    t.heat[at(b.category, i, j)] = 1.f;
    t.reg[at(0, i, j)] = cx - j - 0.5f;
    t.reg[at(1, i, j)] = cy - i - 0.5f;
    t.reg[at(2, i, j)] = std::log(std::max(b.w, 1.f) / kDetStride);
    t.reg[at(3, i, j)] = std::log(std::max(b.h, 1.f) / kDetStride);
    t.reg_mask[i * G + j] = 1.f;
  }
  return t;
}

std::vector<DetBox> decode_det_head(const float* head, const DetDecodeOptions& opt) {
  std::vector<DetBox> cand;
  for (int64_t c = 0; c < kDetClasses; ++c) {
    for (int64_t i = 0; i < G; ++i) {
      for (int64_t j = 0; j < G; ++j) {
        const float logit = head[at(c, i, j)];
        // A peak is a cell not below any of its 3×3 neighbours (of its class).
        bool peak = true;
        for (int64_t di = -1; di <= 1 && peak; ++di) {
          for (int64_t dj = -1; dj <= 1; ++dj) {
            const int64_t ii = i + di, jj = j + dj;
            if ((di || dj) && ii >= 0 && jj >= 0 && ii < G && jj < G && head[at(c, ii, jj)] > logit) {
              peak = false;
              break;
            }
          }
        }
        const float s = sigmoid(logit);
        if (!peak || s < opt.score_threshold) continue;
        const float cx = (j + 0.5f + head[at(kDetClasses, i, j)]) * kDetStride;
        const float cy = (i + 0.5f + head[at(kDetClasses + 1, i, j)]) * kDetStride;
        const float w = std::exp(std::clamp(head[at(kDetClasses + 2, i, j)], -4.f, 4.f)) * kDetStride;
        const float h = std::exp(std::clamp(head[at(kDetClasses + 3, i, j)], -4.f, 4.f)) * kDetStride;
        cand.push_back({c, cx - w / 2, cy - h / 2, w, h, s});
      }
    }
  }
  std::stable_sort(cand.begin(), cand.end(), [](const DetBox& a, const DetBox& b) { return a.score > b.score; });
  std::vector<DetBox> keep;
  for (const DetBox& b : cand) {
    bool suppressed = false;
    for (const DetBox& k : keep) {
      if (k.category == b.category && box_iou(k, b) > opt.nms_iou) {
        suppressed = true;
        break;
      }
    }
    if (!suppressed) keep.push_back(b);
    if (static_cast<int>(keep.size()) >= opt.max_dets) break;
  }
  return keep;
}

}  // namespace qeval
