// det_tiny's head: what its output channels mean, how training targets are
// encoded from boxes, and how outputs are decoded into scored boxes (peak
// extraction + per-class NMS). Torch-free: the harness decodes the output of
// the simulator with the same code the trainer uses.
//
// Head tensor [N, kDetHeadChannels, G, G], G = input/stride = 12, one cell per
// 8×8 pixels (CenterNet-style, anchor-free):
//   channels 0..9   class heatmap logits (sigmoid → score that an object of
//                   that class is centred in the cell)
//   channels 10,11  centre offset (cx/8 − j − 0.5, cy/8 − i − 0.5)
//   channels 12,13  log size (log(w/8), log(h/8))
#pragma once

#include <array>
#include <cstdint>
#include <vector>

namespace qeval {

inline constexpr int64_t kDetInputSize = 96;
inline constexpr int64_t kDetStride = 8;
inline constexpr int64_t kDetGrid = kDetInputSize / kDetStride;
inline constexpr int64_t kDetClasses = 10;
inline constexpr int64_t kDetHeadChannels = kDetClasses + 4;

struct DetBox {
  int64_t category = 0;  // 0-based class
  float x = 0, y = 0, w = 0, h = 0;  // pixels, top-left + size (COCO order)
  float score = 1;
};

// Training targets of one image: heat [classes, G, G] (Gaussian peaks, 1 at each
// centre), reg [4, G, G] and reg_mask [G, G] (1 where a centre falls).
struct DetTargets {
  std::vector<float> heat, reg, reg_mask;
};
DetTargets encode_det_targets(const std::vector<DetBox>& boxes);

struct DetDecodeOptions {
  float score_threshold = 0.01f;
  float nms_iou = 0.6f;
  int max_dets = 100;
};
// Decodes one image's head output (channels-first, [kDetHeadChannels, G, G]).
std::vector<DetBox> decode_det_head(const float* head, const DetDecodeOptions& opt = {});

float box_iou(const DetBox& a, const DetBox& b);

}  // namespace qeval
