#include "common/msg/codec.h"

#include <kj/exception.h>

#include <cstring>
#include <vector>

namespace pstrain {

Frame EncodeFrame(capnp::MessageBuilder& builder) {
  kj::Array<capnp::word> words = capnp::messageToFlatArray(builder);
  kj::ArrayPtr<const kj::byte> bytes = words.asBytes();
  return Frame::Copy(bytes.begin(), bytes.size());
}

namespace internal {

Status DecodeAndRun(const Frame& frame, const std::function<void(capnp::MessageReader&)>& fn) {
  const size_t size = frame.size();
  if (size == 0 || size % sizeof(capnp::word) != 0) {
    return InvalidArgument("malformed header: " + std::to_string(size) +
                           " bytes is not a whole number of 8-byte words");
  }
  if (size > kMaxHeaderBytes) {
    return InvalidArgument("malformed header: " + std::to_string(size) + " bytes exceeds the " +
                           std::to_string(kMaxHeaderBytes) + "-byte limit");
  }
  // ZeroMQ gives no alignment guarantee: copy into words.
  std::vector<capnp::word> words(size / sizeof(capnp::word));
  std::memcpy(words.data(), frame.data(), size);
  try {
    capnp::ReaderOptions options;
    options.traversalLimitInWords = size / sizeof(capnp::word) * 2 + 64;
    options.nestingLimit = 16;
    capnp::FlatArrayMessageReader reader(
        kj::ArrayPtr<const capnp::word>(words.data(), words.size()), options);
    fn(reader);
  } catch (const kj::Exception& e) {
    return InvalidArgument("malformed header: " + std::string(e.getDescription().cStr()));
  }
  return OkStatus();
}

}  // namespace internal
void BuildCheckpointFile(const ManifestFile& from, msg::CheckpointFile::Builder to) {
  to.setName(from.name);
  to.setBytes(from.bytes);
  to.setCrc32(from.crc32);
  to.setKeyBegin(from.key_begin);
  to.setKeyEnd(from.key_end);
  to.setClock(from.clock);
}

ManifestFile ReadCheckpointFile(msg::CheckpointFile::Reader from) {
  ManifestFile f;
  f.name = from.getName();
  f.bytes = from.getBytes();
  f.crc32 = from.getCrc32();
  f.key_begin = from.getKeyBegin();
  f.key_end = from.getKeyEnd();
  f.clock = from.getClock();
  return f;
}

}  // namespace pstrain
