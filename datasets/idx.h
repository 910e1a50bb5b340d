// IDX files (the MNIST / Fashion-MNIST format), plain or gzip'd.
// Format (http://yann.lecun.com/exdb/mnist/): big-endian magic 0x0000TTDD where
// TT = element type (0x08 = uint8) and DD = number of dims, then DD big-endian
// uint32 sizes, then the data in row-major order.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace qeval {

// A set of uint8 images in NHWC order with one label per image.
struct ImageSet {
  int64_t n = 0, h = 0, w = 0, c = 1;
  std::vector<uint8_t> pixels;  // n*h*w*c
  std::vector<int64_t> labels;  // n (empty when unlabelled)
  std::vector<std::string> class_names;
  const uint8_t* image(int64_t i) const { return pixels.data() + i * h * w * c; }
};

// Reads a whole file, inflating it when it starts with the gzip magic.
Result<std::string> read_maybe_gzip(const std::string& path);

struct IdxArray {
  std::vector<int64_t> dims;
  std::vector<uint8_t> data;
};
// Reads an IDX file of uint8 elements. Errors name the file and what is wrong
// (bad magic, unsupported type, truncated data).
Result<IdxArray> read_idx(const std::string& path);

// Images (N×H×W) and labels (N) from two IDX files.
Result<ImageSet> read_idx_dataset(const std::string& images_path, const std::string& labels_path);

// Debian's dataset-fashion-mnist: `split` is "train" (60k) or "test" (10k).
// `root` defaults to $QEVAL_FASHION_MNIST or /usr/share/datasets/fashion-mnist.
Result<ImageSet> load_fashion_mnist(const std::string& split, const std::string& root = "");
// The folder `root` stands for ("" = $QEVAL_FASHION_MNIST or the Debian path), and
// the file of `stem` ("t10k-images-idx3-ubyte") in it: STEM.gz when present, else STEM.
std::string fashion_mnist_root(const std::string& root);
std::string fashion_mnist_file(const std::string& root, const std::string& stem);
const std::vector<std::string>& fashion_mnist_class_names();

}  // namespace qeval
