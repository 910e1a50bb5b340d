// Whole-file reads and crash-safe writes.
#pragma once

#include <string>

#include "core/status.h"

namespace qeval {

// The file's bytes; kNotFound naming the path if it cannot be opened.
Result<std::string> read_file(const std::string& path);
// Writes to PATH.tmp, then renames over PATH: a crash never leaves a half file.
Status write_file_atomic(const std::string& path, const std::string& bytes);

// flock()-based exclusive lock on PATH (created if missing), held until
// destruction or the death of the process: cache entries that parallel jobs
// may build at once are built by one of them.
class FileLock {
 public:
  explicit FileLock(const std::string& path);
  ~FileLock();
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  bool ok() const { return fd_ >= 0; }

 private:
  int fd_;
};

}  // namespace qeval
