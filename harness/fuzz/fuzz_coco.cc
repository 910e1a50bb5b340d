// The COCO JSON readers (ground truth and results).
#include "datasets/coco_json.h"
#include "harness/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = qeval::fuzz::scratch_file(".json", data, size);
  (void)qeval::read_coco_instances(path);
  (void)qeval::read_coco_results(path);
  return 0;
}
