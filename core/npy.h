// NumPy .npy files (format versions 1.0-3.0, C order, little-endian).
#pragma once

#include <string>

#include "core/tensor.h"

namespace qeval {

Result<Tensor> read_npy(const std::string& path);
Result<Tensor> parse_npy(const std::string& bytes, const std::string& source);
Status write_npy(const std::string& path, const Tensor& t);
std::string npy_bytes(const Tensor& t);

}  // namespace qeval
