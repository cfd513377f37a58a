// libFuzzer target: the IDX parser.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/data/dataset.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)pstrain::ParseIdx("fuzz.idx", std::vector<uint8_t>(data, data + size));
  return 0;
}
