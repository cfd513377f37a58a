// libFuzzer target: the Cap'n Proto header decoder, as every port uses it.
#include <cstddef>
#include <cstdint>

#include "common/msg/codec.h"
#include "common/net/node.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const pstrain::Frame frame = pstrain::Frame::Copy(data, size);
  (void)pstrain::WithDecoded<pstrain::msg::DataHeader>(frame, [](auto h) {
    (void)h.getError().size();
    for (uint64_t row : h.getRows()) (void)row;
    (void)h.getKeyRange().getEnd();
    return pstrain::OkStatus();
  });
  (void)pstrain::WithDecoded<pstrain::msg::Control>(frame, [](auto c) {
    if (c.which() == pstrain::msg::Control::ASSIGNMENT) {
      (void)pstrain::ReadAssignment(c.getAssignment());
    }
    return pstrain::OkStatus();
  });
  return 0;
}
