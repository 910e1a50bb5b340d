// The qmodel container (core/graph_io.cc): header, XXH64, JSON, tensors.
#include <cstdint>
#include <string>

#include "core/graph.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)qeval::graph_from_bytes(std::string(reinterpret_cast<const char*>(data), size), "fuzz.qmodel");
  return 0;
}
