#include "datasets/idx.h"

#include <zlib.h>

#include <cstdlib>
#include <filesystem>

#include "core/file_io.h"

namespace qeval {

Result<std::string> read_maybe_gzip(const std::string& path) {
  auto file = read_file(path);
  if (!file.is_ok()) return file.status();
  std::string& raw = *file;
  if (!raw.starts_with("\x1f\x8b")) return raw;  // gzip magic
  z_stream zs{};
  if (inflateInit2(&zs, 15 + 32) != Z_OK) return internal_error("{}: zlib init failed", path);
  zs.next_in = reinterpret_cast<Bytef*>(raw.data());
  zs.avail_in = static_cast<uInt>(raw.size());
  std::string out;
  char buf[1 << 16];
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof(buf);
    rc = inflate(&zs, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) {
      inflateEnd(&zs);
      return data_loss("{}: gzip data is corrupt or truncated ({} bytes inflated)", path, out.size());
    }
    out.append(buf, sizeof(buf) - zs.avail_out);
    if (rc == Z_OK && zs.avail_in == 0 && zs.avail_out != 0) {
      inflateEnd(&zs);
      return data_loss("{}: gzip stream is truncated ({} bytes inflated)", path, out.size());
    }
  }
  inflateEnd(&zs);
  return out;
}

Result<IdxArray> read_idx(const std::string& path) {
  QEVAL_ASSIGN_OR_RETURN(std::string bytes, read_maybe_gzip(path));
  auto u8 = [&](size_t i) { return static_cast<uint8_t>(bytes[i]); };
  if (bytes.size() < 4 || u8(0) != 0 || u8(1) != 0) {
    return data_loss("{}: not an IDX file (bad magic)", path);
  }
  if (u8(2) != 0x08) return unsupported("{}: IDX element type 0x{:02x}; only uint8 (0x08) is supported", path, u8(2));
  const int ndim = u8(3);
  if (ndim < 1 || ndim > 4) return data_loss("{}: IDX header has {} dimensions", path, ndim);
  if (bytes.size() < 4 + 4 * static_cast<size_t>(ndim)) return data_loss("{}: IDX header is truncated", path);
  IdxArray a;
  size_t count = 1;
  for (int d = 0; d < ndim; ++d) {
    const size_t o = 4 + 4 * d;
    const uint32_t v = (uint32_t{u8(o)} << 24) | (uint32_t{u8(o + 1)} << 16) | (uint32_t{u8(o + 2)} << 8) | u8(o + 3);
    a.dims.push_back(v);
    count *= v;
  }
  const size_t off = 4 + 4 * ndim;
  if (bytes.size() - off < count) {
    return data_loss("{}: IDX data is truncated: header promises {} bytes, file has {}", path, count,
                     bytes.size() - off);
  }
  a.data.assign(bytes.begin() + off, bytes.begin() + off + count);
  return a;
}

Result<ImageSet> read_idx_dataset(const std::string& images_path, const std::string& labels_path) {
  QEVAL_ASSIGN_OR_RETURN(IdxArray im, read_idx(images_path));
  QEVAL_ASSIGN_OR_RETURN(IdxArray lb, read_idx(labels_path));
  if (im.dims.size() != 3) return data_loss("{}: expected N×H×W images, got {} dims", images_path, im.dims.size());
  if (lb.dims.size() != 1) return data_loss("{}: expected N labels, got {} dims", labels_path, lb.dims.size());
  if (lb.dims[0] != im.dims[0]) {
    return data_loss("{}: {} labels for {} images in {}", labels_path, lb.dims[0], im.dims[0], images_path);
  }
  ImageSet s;
  s.n = im.dims[0];
  s.h = im.dims[1];
  s.w = im.dims[2];
  s.c = 1;
  s.pixels = std::move(im.data);
  s.labels.assign(lb.data.begin(), lb.data.end());
  return s;
}

const std::vector<std::string>& fashion_mnist_class_names() {
  static const std::vector<std::string> names = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                 "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  return names;
}

std::string fashion_mnist_root(const std::string& root) {
  if (!root.empty()) return root;
  const char* env = std::getenv("QEVAL_FASHION_MNIST");
  return env && *env ? env : "/usr/share/datasets/fashion-mnist";
}

std::string fashion_mnist_file(const std::string& root, const std::string& stem) {
  const std::string p = (std::filesystem::path(fashion_mnist_root(root)) / stem).string();
  return std::filesystem::exists(p + ".gz") ? p + ".gz" : p;
}

Result<ImageSet> load_fashion_mnist(const std::string& split, const std::string& root_in) {
  const std::string root = fashion_mnist_root(root_in);
  std::string prefix;
  if (split == "train") prefix = "train";
  else if (split == "test") prefix = "t10k";
  else return invalid_argument("fashion-mnist: unknown split '{}' (use train or test)", split);
  namespace fs = std::filesystem;
  if (!fs::is_directory(root)) {
    return not_found("{}: Fashion-MNIST folder does not exist (apt-get install dataset-fashion-mnist)", root);
  }
  auto pick = [&](const std::string& stem) { return fashion_mnist_file(root, stem); };
  QEVAL_ASSIGN_OR_RETURN(ImageSet s, read_idx_dataset(pick(prefix + "-images-idx3-ubyte"),
                                                      pick(prefix + "-labels-idx1-ubyte")));
  for (int64_t l : s.labels) {
    if (l < 0 || l > 9) return data_loss("{}: label {} outside 0..9", pick(prefix + "-labels-idx1-ubyte"), l);
  }
  s.class_names = fashion_mnist_class_names();
  return s;
}

}  // namespace qeval
