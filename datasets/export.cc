#include "datasets/export.h"

#include <filesystem>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <set>

#include "core/file_io.h"

namespace qeval {

namespace fs = std::filesystem;

std::string file_safe_name(const std::string& name) {
  if (name.empty() || name == "." || name == "..") return std::string(1, '_');
  std::string out;
  out.reserve(name.size());
  for (char c : name) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    out.push_back(ok ? c : '_');
  }
  return out;
}

Result<std::string> encode_png(const ImageSet& set, int64_t index) {
  if (index < 0 || index >= set.n)
    return invalid_argument("image index {} outside 0..{}", index, set.n - 1);
  int type = 0;
  switch (set.c) {
    case 1:
      type = CV_8UC1;
      break;
    case 3:
      type = CV_8UC3;
      break;
    case 4:
      type = CV_8UC4;
      break;
    default:
      return unsupported("images with {} channels cannot be written as PNG (use 1, 3 or 4)", set.c);
  }
  try {
    cv::Mat m(static_cast<int>(set.h), static_cast<int>(set.w), type,
              const_cast<uint8_t*>(set.image(index)));
    cv::Mat bgr = m;
    if (set.c == 3) cv::cvtColor(m, bgr, cv::COLOR_RGB2BGR);
    if (set.c == 4) cv::cvtColor(m, bgr, cv::COLOR_RGBA2BGRA);
    std::vector<uint8_t> buf;
    if (!cv::imencode(".png", bgr, buf))
      return internal_error("PNG encoding of image {} failed", index);
    return std::string(buf.begin(), buf.end());
  } catch (const cv::Exception& e) {
    return internal_error("PNG encoding of image {} failed: {}", index, e.what());
  }
}

Result<ExportStats> export_image_folder(const ImageSet& set, const std::string& dir,
                                        int64_t limit) {
  if (set.labels.size() != static_cast<size_t>(set.n)) {
    return invalid_argument("{}: cannot export an unlabelled image set as an ImageFolder", dir);
  }
  if (set.pixels.size() != static_cast<size_t>(set.n * set.h * set.w * set.c)) {
    return internal_error("{}: image set holds {} bytes, expected {}", dir, set.pixels.size(),
                          set.n * set.h * set.w * set.c);
  }
  const int64_t n = limit < 0 ? set.n : std::min(limit, set.n);
  int64_t num_classes = static_cast<int64_t>(set.class_names.size());
  for (int64_t l : set.labels) {
    if (l < 0) return invalid_argument("{}: negative label {}", dir, l);
    num_classes = std::max(num_classes, l + 1);
  }
  std::vector<std::string> folders;
  std::set<std::string> used;
  for (int64_t k = 0; k < num_classes; ++k) {
    std::string name = k < static_cast<int64_t>(set.class_names.size())
                           ? file_safe_name(set.class_names[k])
                           : fmt::format("class_{}", k);
    // Two names may map to the same safe name ("a/b", "a:b"): keep folders distinct.
    if (used.count(name)) name = fmt::format("{}_{}", name, k);
    used.insert(name);
    folders.push_back(name);
  }
  std::error_code ec;
  for (const std::string& f : folders) {
    fs::create_directories(fs::path(dir) / f, ec);
    if (ec)
      return io_error("{}: cannot create folder: {}", (fs::path(dir) / f).string(), ec.message());
  }
  std::string labels;
  for (const std::string& f : folders) labels += f + "\n";
  QEVAL_RETURN_IF_ERROR(write_file_atomic((fs::path(dir) / "labels.txt").string(), labels));
  const int width = static_cast<int>(std::to_string(std::max<int64_t>(n - 1, 0)).size());
  for (int64_t i = 0; i < n; ++i) {
    auto png = encode_png(set, i);
    if (!png.is_ok()) return png.status().with_context(dir);
    const fs::path p = fs::path(dir) / folders[set.labels[i]] / fmt::format("{:0{}}.png", i, width);
    QEVAL_RETURN_IF_ERROR(write_file_atomic(p.string(), *png));
  }
  return ExportStats{n, num_classes};
}

}  // namespace qeval
