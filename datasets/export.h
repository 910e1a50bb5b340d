// Writes an ImageSet as an ImageFolder tree that scan_image_folder reads back
// with the same labels:
//   DIR/labels.txt                  class folder names, one per line, in label order
//   DIR/<class>/<index>.png         index = position in the set, zero-padded to the
//                                   width of the largest index (sorts = set order)
// <class> is the class name made file-safe (see file_safe_name); without class
// names the folders are "class_<label>".
#pragma once

#include <cstdint>
#include <string>

#include "core/status.h"
#include "datasets/idx.h"

namespace qeval {

// Replaces every character outside [A-Za-z0-9._-] by '_' ("T-shirt/top" ->
// "T-shirt_top"); "." and ".." and "" become "_".
std::string file_safe_name(const std::string& name);

// Encodes one image of the set (c = 1 gray, c = 3 RGB, c = 4 RGBA) as PNG bytes.
Result<std::string> encode_png(const ImageSet& set, int64_t index);

struct ExportStats {
  int64_t images = 0;
  int64_t classes = 0;
};

// Exports the first `limit` images (all when limit < 0). The set must be
// labelled. Existing files of the same names are replaced.
Result<ExportStats> export_image_folder(const ImageSet& set, const std::string& dir,
                                        int64_t limit = -1);

}  // namespace qeval
