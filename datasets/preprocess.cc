#include "datasets/preprocess.h"

#include <tbb/parallel_for.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstring>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "datasets/image_folder.h"

namespace qeval {
namespace {

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// "1,2,3", "[1, 2, 3]" or "1 2 3" -> the items, brackets and spaces removed.
std::vector<std::string> split_list(const std::string& raw) {
  std::string s;
  for (char c : raw) s += (c == '[' || c == ']' || c == ' ' || c == '\t') ? ',' : c;
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t end = s.find(',', pos);
    if (end == std::string::npos) end = s.size();
    if (end > pos) out.push_back(s.substr(pos, end - pos));
    pos = end + 1;
  }
  return out;
}

Result<std::vector<int64_t>> parse_ints(const std::string& raw, const std::string& where) {
  std::vector<int64_t> out;
  for (const std::string& item : split_list(raw)) {
    int64_t v = 0;
    const auto [p, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
    if (ec != std::errc() || p != item.data() + item.size()) {
      return invalid_argument("{}: '{}' is not an integer", where, item);
    }
    out.push_back(v);
  }
  return out;
}

Result<std::vector<float>> parse_floats(const std::string& raw, const std::string& where) {
  std::vector<float> out;
  for (const std::string& item : split_list(raw)) {
    // tpu-mlir: np.array([float(s) ...], dtype=np.float32), i.e. parse as double,
    // then round to float32. from_chars is locale-independent.
    double v = 0;
    const char* first = item.data() + (item[0] == '+' ? 1 : 0);
    const auto [p, ec] = std::from_chars(first, item.data() + item.size(), v);
    if (ec != std::errc() || p != item.data() + item.size() || !std::isfinite(v)) {
      return invalid_argument("{}: '{}' is not a number", where, item);
    }
    out.push_back(static_cast<float>(v));
  }
  return out;
}

// Net input (C, H, W) of the config, or H = W = 0 when there is no input_shape.
struct NetDims {
  int64_t c = 0, h = 0, w = 0;
};

Result<NetDims> net_dims(const PreprocessConfig& cfg) {
  if (cfg.pixel_format != "rgb" && cfg.pixel_format != "bgr" && cfg.pixel_format != "gray") {
    return invalid_argument("pixel_format: unknown value '{}' (use rgb, bgr or gray)",
                            cfg.pixel_format);
  }
  if (cfg.channel_format != "nchw" && cfg.channel_format != "nhwc") {
    return invalid_argument("channel_format: unknown value '{}' (use nchw or nhwc)",
                            cfg.channel_format);
  }
  if (cfg.pad_type != "center" && cfg.pad_type != "normal") {
    return invalid_argument("pad_type: unknown value '{}' (use center or normal)", cfg.pad_type);
  }
  if (cfg.pad_value < 0 || cfg.pad_value > 255)
    return invalid_argument("pad_value: {} outside 0..255", cfg.pad_value);
  NetDims d;
  d.c = cfg.channels();
  const auto& s = cfg.input_shape;
  if (!s.empty()) {
    if (s.size() != 3 && s.size() != 4) {
      return invalid_argument("input_shapes: {} has {} dims; need [N,C,H,W] or [N,H,W,C]",
                              shape_str(s), s.size());
    }
    for (int64_t v : s) {
      if (v <= 0) return invalid_argument("input_shapes: {} has a dimension <= 0", shape_str(s));
    }
    const size_t r = s.size();
    const bool nchw = cfg.channel_format == "nchw";
    const int64_t c = nchw ? s[r - 3] : s[r - 1];
    d.h = nchw ? s[r - 2] : s[r - 3];
    d.w = nchw ? s[r - 1] : s[r - 2];
    if (c != d.c) {
      return invalid_argument(
          "input_shapes: {} has {} channels ({}) but pixel_format '{}' gives {}", shape_str(s), c,
          cfg.channel_format, cfg.pixel_format, d.c);
    }
  }
  if (!cfg.resize_dims.empty()) {
    if (cfg.resize_dims.size() != 2 || cfg.resize_dims[0] <= 0 || cfg.resize_dims[1] <= 0) {
      return invalid_argument("resize_dims: {} is not two positive numbers h,w",
                              shape_str(cfg.resize_dims));
    }
    if (s.empty()) d.h = cfg.resize_dims[0], d.w = cfg.resize_dims[1];
  }
  return d;
}

Result<std::vector<float>> per_channel(const std::vector<float>& v, float fallback, int c,
                                       const char* key, const std::string& pixel_format) {
  if (v.empty()) return std::vector<float>(c, fallback);
  if (v.size() == 1) return std::vector<float>(c, v[0]);
  // tpu-mlir's default mean '0,0,0' with gray uses the first value.
  if (static_cast<int>(v.size()) == c || (c == 1 && !v.empty()))
    return std::vector<float>(v.begin(), v.begin() + c);
  return invalid_argument("{}: {} values for the {} channels of pixel_format '{}'", key, v.size(),
                          c, pixel_format);
}

Result<bool> parse_bool(const std::string& raw, const std::string& where) {
  const std::string v = lower(raw);
  if (v == "1" || v == "true" || v == "yes" || v == "on") return true;
  if (v == "0" || v == "false" || v == "no" || v == "off") return false;
  return invalid_argument("{}: '{}' is not a boolean (use 1/0, true/false)", where, raw);
}

}  // namespace

const std::vector<std::string>& preprocess_config_keys() {
  static const std::vector<std::string> keys = {
      "input_shapes", "resize_dims",    "keep_aspect_ratio", "mean",    "scale",
      "pixel_format", "channel_format", "pad_value",         "pad_type"};
  return keys;
}

Result<PreprocessConfig> parse_preprocess_config(const std::map<std::string, std::string>& kv,
                                                 const std::string& source) {
  PreprocessConfig cfg;
  auto get = [&](const std::string& key) -> const std::string* {
    auto it = kv.find(key);
    return it == kv.end() ? nullptr : &it->second;
  };
  auto where = [&](const char* key) { return fmt::format("{}: {}", source, key); };
  if (const std::string* v = get("pixel_format")) {
    cfg.pixel_format = lower(trim(*v));
    if (cfg.pixel_format != "rgb" && cfg.pixel_format != "bgr" && cfg.pixel_format != "gray") {
      return invalid_argument("{}: unknown value '{}' (use rgb, bgr or gray)",
                              where("pixel_format"), trim(*v));
    }
  }
  if (const std::string* v = get("channel_format")) {
    cfg.channel_format = lower(trim(*v));
    if (cfg.channel_format != "nchw" && cfg.channel_format != "nhwc") {
      return invalid_argument("{}: unknown value '{}' (use nchw or nhwc)", where("channel_format"),
                              trim(*v));
    }
  }
  if (const std::string* v = get("pad_type")) {
    cfg.pad_type = lower(trim(*v));
    if (cfg.pad_type != "center" && cfg.pad_type != "normal") {
      return invalid_argument("{}: unknown value '{}' (use center or normal)", where("pad_type"),
                              trim(*v));
    }
  }
  if (const std::string* v = get("pad_value")) {
    auto r = parse_ints(*v, where("pad_value"));
    if (!r.is_ok()) return r.status();
    if (r->size() != 1 || (*r)[0] < 0 || (*r)[0] > 255) {
      return invalid_argument("{}: '{}' is not one integer in 0..255", where("pad_value"),
                              trim(*v));
    }
    cfg.pad_value = static_cast<int>((*r)[0]);
  }
  if (const std::string* v = get("keep_aspect_ratio")) {
    auto r = parse_bool(trim(*v), where("keep_aspect_ratio"));
    if (!r.is_ok()) return r.status();
    cfg.keep_aspect_ratio = *r;
  }
  if (const std::string* v = get("input_shapes")) {
    // "[[1,3,224,224]]" or "[[1,3,224,224],[1,10]]": the first shape is the image input.
    const std::string s = trim(*v);
    std::string first = s;
    const size_t open = s.find('[', s.find('[') + 1);
    if (open != std::string::npos) first = s.substr(open, s.find(']', open) - open + 1);
    auto r = parse_ints(first, where("input_shapes"));
    if (!r.is_ok()) return r.status();
    if (r->empty()) return invalid_argument("{}: '{}' holds no shape", where("input_shapes"), s);
    cfg.input_shape = std::move(r).value();
  }
  if (const std::string* v = get("resize_dims")) {
    auto r = parse_ints(*v, where("resize_dims"));
    if (!r.is_ok()) return r.status();
    cfg.resize_dims = std::move(r).value();
  }
  for (const char* key : {"mean", "scale"}) {
    if (const std::string* v = get(key)) {
      auto r = parse_floats(*v, where(key));
      if (!r.is_ok()) return r.status();
      if (r->empty()) return invalid_argument("{}: no values", where(key));
      (std::string(key) == "mean" ? cfg.mean : cfg.scale) = std::move(r).value();
    }
  }
  // Cross-key checks (shape vs pixel_format, list lengths) with the file name.
  auto dims = net_dims(cfg);
  if (!dims.is_ok()) return dims.status().with_context(source);
  for (const char* key : {"mean", "scale"}) {
    auto r = per_channel(std::string(key) == "mean" ? cfg.mean : cfg.scale, 0, cfg.channels(), key,
                         cfg.pixel_format);
    if (!r.is_ok()) return r.status().with_context(source);
  }
  return cfg;
}

Result<Tensor> preprocess_image(const cv::Mat& image, const PreprocessConfig& cfg) {
  auto dims_or = net_dims(cfg);
  if (!dims_or.is_ok()) return dims_or.status();
  const NetDims d = *dims_or;
  auto mean = per_channel(cfg.mean, 0.0f, static_cast<int>(d.c), "mean", cfg.pixel_format);
  if (!mean.is_ok()) return mean.status();
  auto scale = per_channel(cfg.scale, 1.0f, static_cast<int>(d.c), "scale", cfg.pixel_format);
  if (!scale.is_ok()) return scale.status();
  if (image.empty()) return invalid_argument("empty image");
  if (image.depth() != CV_8U)
    return unsupported("image depth is not 8-bit (OpenCV depth {})", image.depth());
  const int ch = image.channels();
  if (ch != 1 && ch != 3 && ch != 4)
    return unsupported("image has {} channels (use 1, 3 or 4)", ch);

  cv::Mat img;
  try {
    // 1. The channels cv::imread would have given (gray or BGR).
    if (d.c == 1) {
      if (ch == 1)
        img = image;
      else
        cv::cvtColor(image, img, ch == 3 ? cv::COLOR_BGR2GRAY : cv::COLOR_BGRA2GRAY);
    } else {
      if (ch == 3)
        img = image;
      else
        cv::cvtColor(image, img, ch == 1 ? cv::COLOR_GRAY2BGR : cv::COLOR_BGRA2BGR);
    }
    // 2. Resize to R = max(resize_dims, net dims); 3. centre crop to the net dims.
    if (d.h > 0) {
      int64_t rh = d.h, rw = d.w;
      if (!cfg.resize_dims.empty())
        rh = std::max(cfg.resize_dims[0], d.h), rw = std::max(cfg.resize_dims[1], d.w);
      cv::Mat resized;
      if (cfg.keep_aspect_ratio) {
        // ImageResizeTool.letterbox_resize: python floats are doubles; int() truncates.
        const double s =
            std::min(static_cast<double>(rw) / img.cols, static_cast<double>(rh) / img.rows);
        const int nw = static_cast<int>(img.cols * s), nh = static_cast<int>(img.rows * s);
        if (nw < 1 || nh < 1) {
          return invalid_argument("keep_aspect_ratio: a {}x{} image scales to {}x{} inside {}x{}",
                                  img.rows, img.cols, nh, nw, rh, rw);
        }
        cv::Mat small;
        cv::resize(img, small, cv::Size(nw, nh), 0, 0, cv::INTER_LINEAR);
        resized = cv::Mat(static_cast<int>(rh), static_cast<int>(rw), img.type(),
                          cv::Scalar::all(cfg.pad_value));
        const int top = cfg.pad_type == "center" ? static_cast<int>((rh - nh) / 2) : 0;
        const int left = cfg.pad_type == "center" ? static_cast<int>((rw - nw) / 2) : 0;
        small.copyTo(resized(cv::Rect(left, top, nw, nh)));
      } else {
        cv::resize(img, resized, cv::Size(static_cast<int>(rw), static_cast<int>(rh)), 0, 0,
                   cv::INTER_LINEAR);
      }
      if (rh != d.h || rw != d.w) {
        const int top = static_cast<int>(rh / 2 - d.h / 2),
                  left = static_cast<int>(rw / 2 - d.w / 2);
        resized = resized(cv::Rect(left, top, static_cast<int>(d.w), static_cast<int>(d.h)));
      }
      img = resized;
    }
  } catch (const cv::Exception& e) {
    return internal_error("OpenCV: {}", e.what());
  }

  // 4. float32, B<->R for rgb, (x - mean) * scale; 5. layout.
  const int64_t c = d.c, h = img.rows, w = img.cols;
  const bool nchw = cfg.channel_format == "nchw";
  Tensor out(DType::kFloat32, nchw ? Shape{c, h, w} : Shape{h, w, c});
  float* o = out.data<float>();
  const bool swap = cfg.pixel_format == "rgb";
  for (int64_t y = 0; y < h; ++y) {
    const uint8_t* row = img.ptr<uint8_t>(static_cast<int>(y));
    for (int64_t x = 0; x < w; ++x) {
      for (int64_t k = 0; k < c; ++k) {
        const int64_t src = swap ? c - 1 - k : k;  // output channel k of rgb is BGR channel 2-k
        const float v = (static_cast<float>(row[x * c + src]) - (*mean)[k]) * (*scale)[k];
        o[nchw ? (k * h + y) * w + x : (y * w + x) * c + k] = v;
      }
    }
  }
  return out;
}

Result<Tensor> load_and_preprocess(const std::vector<std::string>& paths,
                                   const PreprocessConfig& cfg) {
  if (paths.empty()) return invalid_argument("preprocess: no images given");
  auto dims = net_dims(cfg);
  if (!dims.is_ok()) return dims.status();
  const int flags = cfg.channels() == 1 ? cv::IMREAD_GRAYSCALE : cv::IMREAD_COLOR;
  std::vector<Result<Tensor>> results(paths.size(),
                                      Result<Tensor>(internal_error("not processed")));
  tbb::parallel_for(size_t{0}, paths.size(), [&](size_t i) {
    auto img = read_image(paths[i], flags);
    if (!img.is_ok()) {
      results[i] = img.status();
      return;
    }
    auto t = preprocess_image(*img, cfg);
    results[i] = t.is_ok() ? std::move(t) : Result<Tensor>(t.status().with_context(paths[i]));
  });
  for (const auto& r : results) {
    if (!r.is_ok()) return r.status();
  }
  const Shape one = results[0]->shape();
  Shape batch = {static_cast<int64_t>(paths.size())};
  batch.insert(batch.end(), one.begin(), one.end());
  Tensor out(DType::kFloat32, batch);
  const size_t bytes = results[0]->nbytes();
  for (size_t i = 0; i < paths.size(); ++i) {
    if (results[i]->shape() != one) {
      return invalid_argument(
          "{}: preprocessed to {} but {} gave {} (set input_shapes or resize_dims so that all "
          "images get one size)",
          paths[i], shape_str(results[i]->shape()), paths[0], shape_str(one));
    }
    std::memcpy(static_cast<uint8_t*>(out.raw()) + i * bytes, results[i]->raw(), bytes);
  }
  return out;
}

}  // namespace qeval
