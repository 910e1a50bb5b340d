// Whole-file reads and crash-safe writes.
#pragma once

#include <string>

#include "core/status.h"

namespace qeval {

// The file's bytes; kNotFound naming the path if it cannot be opened.
Result<std::string> read_file(const std::string& path);
// Writes to PATH.tmp, then renames over PATH: a crash never leaves a half file.
Status write_file_atomic(const std::string& path, const std::string& bytes);

}  // namespace qeval
