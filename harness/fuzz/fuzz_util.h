// Shared by the fuzz targets: readers that take a path get the input through a
// per-process scratch file. Every target must return 0 for any input: a reader
// that crashes, hangs or trips ASan/UBSan on bytes is the bug being hunted;
// an error Status is the correct answer.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

namespace qeval::fuzz {

inline std::string scratch_file(const char* suffix, const uint8_t* data, size_t size) {
  const std::string path = "/tmp/qeval_fuzz_" + std::to_string(::getpid()) + suffix;
  if (FILE* f = std::fopen(path.c_str(), "wb")) {
    if (size) std::fwrite(data, 1, size, f);
    std::fclose(f);
  }
  return path;
}

}  // namespace qeval::fuzz
