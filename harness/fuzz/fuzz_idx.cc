// The IDX reader (plain and gzip).
#include "datasets/idx.h"
#include "harness/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)qeval::read_idx(qeval::fuzz::scratch_file(".idx", data, size));
  return 0;
}
