// The ONNX importer (protobuf parse, QDQ fusion, shape checks).
#include <cstdint>
#include <string>

#include "simulator/onnx_import.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)qeval::import_onnx_bytes(std::string(reinterpret_cast<const char*>(data), size), "fuzz.onnx");
  return 0;
}
