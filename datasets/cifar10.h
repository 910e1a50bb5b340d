// CIFAR-10 binary batches (https://www.cs.toronto.edu/~kriz/cifar.html,
// "binary version"): data_batch_1.bin .. data_batch_5.bin and test_batch.bin,
// 10000 records each. A record is 3073 bytes:
//   byte 0          label 0..9
//   bytes 1..1024   red plane, 32x32 row-major
//   bytes 1025..2048 green plane
//   bytes 2049..3072 blue plane
// The reader transposes the planes into qeval's ImageSet layout: NHWC with
// c = 3 in R, G, B order (convert to BGR before handing a pixel row to OpenCV).
#pragma once

#include <string>
#include <vector>

#include "core/status.h"
#include "datasets/idx.h"

namespace qeval {

inline constexpr int64_t kCifar10RecordBytes = 1 + 3 * 32 * 32;

// The classes of batches.meta.txt, in label order.
const std::vector<std::string>& cifar10_class_names();

// One batch file (plain or gzip'd). Errors name the file and, for a short last
// record or a label outside 0..9, the record index.
Result<ImageSet> read_cifar10_batch(const std::string& path);

// Several batches concatenated in order.
Result<ImageSet> read_cifar10_batches(const std::vector<std::string>& paths);

// ROOT/data_batch_{1..5}.bin for "train", ROOT/test_batch.bin for "test"
// (ROOT is the extracted cifar-10-batches-bin folder).
Result<ImageSet> load_cifar10(const std::string& root, const std::string& split);

}  // namespace qeval
