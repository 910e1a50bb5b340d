#include "datasets/cifar10.h"

#include <filesystem>

namespace qeval {

const std::vector<std::string>& cifar10_class_names() {
  static const std::vector<std::string> names = {
      "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"};
  return names;
}

Result<ImageSet> read_cifar10_batch(const std::string& path) {
  auto file = read_maybe_gzip(path);
  if (!file.is_ok()) return file.status();
  const std::string& b = *file;
  if (b.empty()) return data_loss("{}: CIFAR-10 batch is empty", path);
  const int64_t whole = static_cast<int64_t>(b.size()) / kCifar10RecordBytes;
  const int64_t rest = static_cast<int64_t>(b.size()) % kCifar10RecordBytes;
  if (rest != 0) {
    return data_loss("{}: record {} is truncated ({} of {} bytes)", path, whole, rest,
                     kCifar10RecordBytes);
  }
  constexpr int64_t kPlane = 32 * 32;
  ImageSet s;
  s.n = whole;
  s.h = 32;
  s.w = 32;
  s.c = 3;
  s.class_names = cifar10_class_names();
  s.pixels.resize(static_cast<size_t>(whole * kPlane * 3));
  s.labels.resize(static_cast<size_t>(whole));
  for (int64_t i = 0; i < whole; ++i) {
    const auto* rec = reinterpret_cast<const uint8_t*>(b.data()) + i * kCifar10RecordBytes;
    if (rec[0] > 9) return data_loss("{}: record {}: label {} outside 0..9", path, i, rec[0]);
    s.labels[i] = rec[0];
    uint8_t* out = s.pixels.data() + i * kPlane * 3;
    for (int64_t p = 0; p < kPlane; ++p) {
      out[3 * p + 0] = rec[1 + p];
      out[3 * p + 1] = rec[1 + kPlane + p];
      out[3 * p + 2] = rec[1 + 2 * kPlane + p];
    }
  }
  return s;
}

Result<ImageSet> read_cifar10_batches(const std::vector<std::string>& paths) {
  if (paths.empty()) return invalid_argument("CIFAR-10: no batch files given");
  ImageSet all;
  for (const std::string& p : paths) {
    auto one = read_cifar10_batch(p);
    if (!one.is_ok()) return one.status();
    if (all.n == 0) {
      all = std::move(one).value();
      continue;
    }
    all.pixels.insert(all.pixels.end(), one->pixels.begin(), one->pixels.end());
    all.labels.insert(all.labels.end(), one->labels.begin(), one->labels.end());
    all.n += one->n;
  }
  return all;
}

Result<ImageSet> load_cifar10(const std::string& root, const std::string& split) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(root)) return not_found("{}: CIFAR-10 folder does not exist", root);
  std::vector<std::string> paths;
  if (split == "train") {
    for (int i = 1; i <= 5; ++i)
      paths.push_back((fs::path(root) / fmt::format("data_batch_{}.bin", i)).string());
  } else if (split == "test") {
    paths.push_back((fs::path(root) / "test_batch.bin").string());
  } else {
    return invalid_argument("CIFAR-10: unknown split '{}' (use train or test)", split);
  }
  return read_cifar10_batches(paths);
}

}  // namespace qeval
