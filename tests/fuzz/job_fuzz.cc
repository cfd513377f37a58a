// libFuzzer target: the job-file parser and validator.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/job/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  (void)pstrain::ParseJobConfig(text, "fuzz.toml", "/nonexistent", {});
  return 0;
}
