// ImageFolder datasets (torchvision's layout): ROOT/<class>/<image>, one
// sub-folder per class, and images decoded by OpenCV.
//
//   ROOT/cat/001.png        class names = sub-folder names; label = index of the
//   ROOT/cat/002.jpg        class in sorted (byte-wise) order, unless ROOT/labels.txt
//   ROOT/dog/a.bmp          lists the sub-folders one per line: then that order
//   ROOT/labels.txt         (what `qeval dataset export` writes, so labels survive).
//
// Images are the files whose extension is png, jpg, jpeg or bmp (any case),
// sorted by name within a class; other files and nested folders are ignored.
#pragma once

#include <cstdint>
#include <opencv2/core.hpp>
#include <string>
#include <vector>

#include "core/status.h"
#include "datasets/idx.h"

namespace qeval {

struct ImageFolderSample {
  std::string path;
  int64_t label = 0;
};

struct ImageFolder {
  std::string root;
  std::vector<std::string> class_names;    // label i = class_names[i]
  std::vector<ImageFolderSample> samples;  // class by class, files sorted by name
};

// Lists ROOT. Errors: ROOT missing or not a folder, no class sub-folders, a
// class folder without images, a labels.txt that does not name the sub-folders.
Result<ImageFolder> scan_image_folder(const std::string& root);

// True for the extensions ImageFolder accepts (.png .jpg .jpeg .bmp, any case).
bool is_image_file(const std::string& path);

// Decodes PATH with cv::imdecode `flags` (cv::IMREAD_COLOR gives 8-bit BGR,
// cv::IMREAD_GRAYSCALE 8-bit gray, cv::IMREAD_UNCHANGED what the file holds).
// The container is checked first (PNG ends with IEND, JPEG with EOI, BMP holds
// the size its header states), so a truncated file is an error naming the file
// instead of a half-decoded image and a libpng/libjpeg warning on stderr.
Result<cv::Mat> read_image(const std::string& path, int flags);

// Decodes every sample with IMREAD_COLOR (c=3, stored RGB) or IMREAD_GRAYSCALE
// (c=1) into one ImageSet; all images must have the same size.
Result<ImageSet> load_image_folder(const ImageFolder& folder, bool gray);

}  // namespace qeval
