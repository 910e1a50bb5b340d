#include "datasets/image_folder.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <set>

#include "core/file_io.h"

namespace qeval {
namespace {

namespace fs = std::filesystem;

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

uint32_t le32(const std::string& b, size_t o) {
  return uint32_t{static_cast<uint8_t>(b[o])} | uint32_t{static_cast<uint8_t>(b[o + 1])} << 8 |
         uint32_t{static_cast<uint8_t>(b[o + 2])} << 16 |
         uint32_t{static_cast<uint8_t>(b[o + 3])} << 24;
}

// Checks that BYTES is a whole PNG, JPEG or BMP file. The decoders themselves
// accept truncated JPEGs (grey bottom rows) and print to stderr on the others.
Status check_container(const std::string& path, const std::string& b) {
  static constexpr char kPngSig[] = "\x89PNG\r\n\x1a\n";
  if (b.size() >= 8 && std::memcmp(b.data(), kPngSig, 8) == 0) {
    // The last chunk is IEND: length 0, type "IEND", CRC ae426082. Writers may
    // append a few bytes after it, so look at the tail, not the exact end.
    const size_t from = b.size() > 64 ? b.size() - 64 : 0;
    if (b.find("IEND\xae\x42\x60\x82", from) == std::string::npos) {
      return data_loss("{}: PNG is truncated (no IEND chunk at the end; {} bytes)", path, b.size());
    }
    return Status::ok();
  }
  if (b.size() >= 3 && static_cast<uint8_t>(b[0]) == 0xff && static_cast<uint8_t>(b[1]) == 0xd8 &&
      static_cast<uint8_t>(b[2]) == 0xff) {
    // Entropy-coded data escapes 0xff, so 0xff 0xd9 (EOI) appears only as a marker.
    const size_t from = b.size() > 4096 ? b.size() - 4096 : 2;
    if (b.find("\xff\xd9", from) == std::string::npos) {
      return data_loss("{}: JPEG is truncated (no end-of-image marker; {} bytes)", path, b.size());
    }
    return Status::ok();
  }
  if (b.size() >= 2 && b[0] == 'B' && b[1] == 'M') {
    if (b.size() < 54) return data_loss("{}: BMP header is truncated ({} bytes)", path, b.size());
    const uint32_t stated = le32(b, 2);
    if (stated > b.size()) {
      return data_loss("{}: BMP is truncated: header states {} bytes, file has {}", path, stated,
                       b.size());
    }
    return Status::ok();
  }
  return invalid_argument("{}: not a PNG, JPEG or BMP image (unknown signature)", path);
}

// Class order from ROOT/labels.txt: one sub-folder name per line, every
// sub-folder exactly once.
Result<std::vector<std::string>> read_labels_file(const std::string& path,
                                                  const std::vector<std::string>& folders) {
  auto text = read_file(path);
  if (!text.is_ok()) return text.status();
  std::vector<std::string> order;
  std::set<std::string> seen;
  const std::set<std::string> known(folders.begin(), folders.end());
  size_t line_no = 0, pos = 0;
  const std::string& s = *text;
  while (pos < s.size()) {
    size_t end = s.find('\n', pos);
    if (end == std::string::npos) end = s.size();
    std::string line = s.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (line.empty()) continue;
    if (!known.count(line)) {
      return invalid_argument("{}: line {}: '{}' is not a class sub-folder", path, line_no, line);
    }
    if (!seen.insert(line).second)
      return invalid_argument("{}: line {}: '{}' listed twice", path, line_no, line);
    order.push_back(line);
  }
  for (const std::string& f : folders) {
    if (!seen.count(f)) return invalid_argument("{}: does not list class sub-folder '{}'", path, f);
  }
  return order;
}

}  // namespace

bool is_image_file(const std::string& path) {
  const std::string ext = lower(fs::path(path).extension().string());
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp";
}

Result<ImageFolder> scan_image_folder(const std::string& root) {
  std::error_code ec;
  if (!fs::exists(root, ec)) return not_found("{}: image folder does not exist", root);
  if (!fs::is_directory(root, ec)) return invalid_argument("{}: is not a folder", root);
  std::vector<std::string> folders;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    if (e.is_directory()) folders.push_back(e.path().filename().string());
  }
  if (ec) return io_error("{}: cannot list folder: {}", root, ec.message());
  if (folders.empty()) return invalid_argument("{}: image folder has no class sub-folders", root);
  std::sort(folders.begin(), folders.end());
  ImageFolder f;
  f.root = root;
  const std::string labels_path = (fs::path(root) / "labels.txt").string();
  if (fs::exists(labels_path, ec)) {
    auto order = read_labels_file(labels_path, folders);
    if (!order.is_ok()) return order.status();
    f.class_names = std::move(order).value();
  } else {
    f.class_names = folders;
  }
  for (size_t label = 0; label < f.class_names.size(); ++label) {
    const fs::path dir = fs::path(root) / f.class_names[label];
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      if (e.is_regular_file() && is_image_file(e.path().string()))
        files.push_back(e.path().string());
    }
    if (ec) return io_error("{}: cannot list folder: {}", dir.string(), ec.message());
    if (files.empty()) {
      return invalid_argument("{}: class folder '{}' has no png/jpg/jpeg/bmp images", dir.string(),
                              f.class_names[label]);
    }
    std::sort(files.begin(), files.end());
    for (std::string& p : files) f.samples.push_back({std::move(p), static_cast<int64_t>(label)});
  }
  return f;
}

Result<cv::Mat> read_image(const std::string& path, int flags) {
  auto bytes = read_file(path);
  if (!bytes.is_ok()) return bytes.status();
  const std::string& b = *bytes;
  QEVAL_RETURN_IF_ERROR(check_container(path, b));
  cv::Mat m;
  try {
    const cv::Mat buf(1, static_cast<int>(b.size()), CV_8U, const_cast<char*>(b.data()));
    m = cv::imdecode(buf, flags);
  } catch (const cv::Exception& e) {
    return data_loss("{}: cannot decode image: {}", path, e.what());
  }
  if (m.empty()) return data_loss("{}: cannot decode image (corrupt data)", path);
  return m;
}

Result<ImageSet> load_image_folder(const ImageFolder& folder, bool gray) {
  ImageSet s;
  s.c = gray ? 1 : 3;
  s.class_names = folder.class_names;
  for (const ImageFolderSample& smp : folder.samples) {
    auto img = read_image(smp.path, gray ? cv::IMREAD_GRAYSCALE : cv::IMREAD_COLOR);
    if (!img.is_ok()) return img.status();
    cv::Mat m = *img;
    if (!gray) cv::cvtColor(m, m, cv::COLOR_BGR2RGB);
    if (s.n == 0) {
      s.h = m.rows;
      s.w = m.cols;
    } else if (m.rows != s.h || m.cols != s.w) {
      return invalid_argument("{}: image is {}x{} (HxW) but the first image of {} is {}x{}",
                              smp.path, m.rows, m.cols, folder.root, s.h, s.w);
    }
    const size_t row = static_cast<size_t>(s.w * s.c);
    for (int y = 0; y < m.rows; ++y)
      s.pixels.insert(s.pixels.end(), m.ptr<uint8_t>(y), m.ptr<uint8_t>(y) + row);
    s.labels.push_back(smp.label);
    ++s.n;
  }
  return s;
}

}  // namespace qeval
