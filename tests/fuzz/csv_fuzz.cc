// libFuzzer target: the CSV reader, with the label first and last.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/data/dataset.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  pstrain::CsvOptions o;
  (void)pstrain::ParseCsvDataset("fuzz.csv", text, o);
  o.label_column = -1;
  o.header = true;
  (void)pstrain::ParseCsvDataset("fuzz.csv", text, o);
  return 0;
}
