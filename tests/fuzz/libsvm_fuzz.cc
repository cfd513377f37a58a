// libFuzzer target: the LibSVM reader, with and without a feature space.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/data/dataset.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  (void)pstrain::ParseLibsvmDataset("fuzz.libsvm", text, {});
  (void)pstrain::ParseLibsvmDataset("fuzz.libsvm", text, {1000});
  return 0;
}
