// The model-cfg readers: tpu-mlir .cfg (INI converted to YAML) and YAML.
#include <cstdint>
#include <string>

#include "harness/cfg.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  (void)qeval::parse_model_cfg(text, "/fuzz/model.cfg");
  (void)qeval::parse_model_cfg(text, "/fuzz/model.yaml");
  return 0;
}
