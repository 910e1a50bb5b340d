// Image preprocessing driven by tpu-mlir cfg keys, with tpu-mlir's meaning
// (python/utils/preprocess.py: class `preprocess`, `ImageResizeTool`). For an
// image as cv::imread gives it (8-bit BGR or gray) and a net input of C x H x W:
//
//   1. read        gray: IMREAD_GRAYSCALE, rgb/bgr: IMREAD_COLOR (BGR).
//   2. resize      to R = (rh, rw) = elementwise max(resize_dims, (H, W)); R = (H, W)
//                  when resize_dims is absent, and (H, W) = resize_dims when
//                  input_shapes is absent. cv::resize INTER_LINEAR, or with
//                  keep_aspect_ratio a letterbox: s = min(rw/iw, rh/ih) in double,
//                  resize to (int(iw*s), int(ih*s)) (truncation), paste centred at
//                  ((rh - nh) / 2, (rw - nw) / 2) (integer division) on a canvas of
//                  pad_value (default 0; pad_type "normal" pastes at the top-left).
//   3. crop        if R != (H, W): centre crop, top = rh/2 - H/2, left = rw/2 - W/2.
//   4. to float32, swap B and R for pixel_format rgb, then per channel
//                  x' = (x - mean[c]) * scale[c] in float32, with mean and scale in
//                  the channel order of pixel_format (r,g,b for rgb).
//   5. layout      [C, H, W] for channel_format nchw, [H, W, C] for nhwc.
//
// Without input_shapes and resize_dims the image keeps its own size (step 2 and
// 3 are skipped). tpu-mlir's batch dimension is not used: a batch is as many
// images as given. Where tpu-mlir crops an nhwc batch along the wrong axes
// (its __center_crop slices shape[2:] whatever the layout), qeval crops H and W.
#pragma once

#include <map>
#include <opencv2/core.hpp>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace qeval {

struct PreprocessConfig {
  std::vector<int64_t>
      input_shape;  // NCHW or NHWC per channel_format (or CHW / HWC); empty: image size
  std::vector<int64_t> resize_dims;  // {h, w}; empty: the net input size
  bool keep_aspect_ratio = false;
  std::vector<float> mean, scale;  // one per channel (or one for all); empty: 0 and 1
  std::string pixel_format = "bgr", channel_format = "nchw";
  int pad_value = 0;                // letterbox fill (tpu-mlir --pad_value)
  std::string pad_type = "center";  // "center" or "normal" (top-left), tpu-mlir --pad_type

  int channels() const { return pixel_format == "gray" ? 1 : 3; }
};

// The cfg keys parse_preprocess_config reads; other keys of a cfg are ignored.
const std::vector<std::string>& preprocess_config_keys();

// kv: raw cfg strings, e.g. {"resize_dims","256,256"}, {"mean","123.675,116.28,103.53"},
// {"input_shapes","[[1,3,224,224]]"} (the first input's shape is used);
// `source` names the cfg file in errors:
//   "model.cfg: pixel_format: unknown value 'rgba' (use rgb, bgr or gray)".
Result<PreprocessConfig> parse_preprocess_config(const std::map<std::string, std::string>& kv,
                                                 const std::string& source);

// One image (8-bit, 1, 3 (BGR) or 4 (BGRA) channels; converted to what
// pixel_format needs with cv::cvtColor) to float32 [C,H,W] or [H,W,C].
Result<Tensor> preprocess_image(const cv::Mat& image, const PreprocessConfig& cfg);

// Reads and preprocesses PATHS in parallel (TBB) into [N,C,H,W] or [N,H,W,C].
// Errors name the failing file (the first in PATHS order when several fail).
Result<Tensor> load_and_preprocess(const std::vector<std::string>& paths,
                                   const PreprocessConfig& cfg);

}  // namespace qeval
