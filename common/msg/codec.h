// Cap'n Proto encoding of the header frames (msg/pstrain.capnp).
//
// Decoding copies the frame into an 8-byte aligned buffer (ZeroMQ frames
// are not aligned), bounds the traversal, and traverses the whole message
// once so that a malformed one is rejected before any handler reads it.
// Cap'n Proto's exceptions are caught here and become kInvalidArgument.
#pragma once

#include <capnp/message.h>
#include <capnp/serialize.h>

#include <functional>
#include <string>

#include "common/base/status.h"
#include "common/ckpt/checkpoint.h"
#include "common/msg/pstrain.capnp.h"
#include "common/net/zmq_socket.h"

namespace pstrain {

// Largest header frame accepted.
inline constexpr size_t kMaxHeaderBytes = 1 << 20;
// The largest payload one request carries: clients cut bigger pushes and
// pulls into pieces of at most this many bytes.
inline constexpr size_t kMaxPayloadBytes = 4 << 20;
// The largest frame a data socket accepts (ZMQ_MAXMSGSIZE): a payload, or
// one replicated update of a whole key range. A peer announcing more is
// disconnected before anything is allocated.
inline constexpr size_t kMaxDataFrameBytes = 16 << 20;

// The message as one frame (flat array of words).
Frame EncodeFrame(capnp::MessageBuilder& builder);

// A checkpoint file as checkpointDone lists it, and as the manifest does.
void BuildCheckpointFile(const ManifestFile& from, msg::CheckpointFile::Builder to);
ManifestFile ReadCheckpointFile(msg::CheckpointFile::Reader from);

namespace internal {
Status DecodeAndRun(const Frame& frame, const std::function<void(capnp::MessageReader&)>& fn);
}

// Decodes `frame` as T and calls fn(T::Reader) -> Status. Any Cap'n Proto
// error while decoding or while fn reads the message is a kInvalidArgument.
template <typename T, typename Fn>
Status WithDecoded(const Frame& frame, Fn&& fn) {
  Status result;
  Status decode = internal::DecodeAndRun(frame, [&](capnp::MessageReader& reader) {
    typename T::Reader root = reader.getRoot<T>();
    root.totalSize();  // traverses everything: bounds-checks every pointer
    result = fn(root);
  });
  if (!decode.ok()) return decode;
  return result;
}

}  // namespace pstrain
