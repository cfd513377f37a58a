// The gradient a dense push carries, checked before a shard sees it: a
// whole number of floats, decoded when it travels coded (fp16, bf16,
// top-k), and free of NaN and Inf, which would poison every weight they
// touch. No sockets: unit-tested on frames made in the test.
#pragma once

#include <memory>
#include <vector>

#include "common/base/buffer_pool.h"
#include "common/base/status.h"
#include "common/net/zmq_socket.h"
#include "common/ps/compress.h"

namespace pstrain {

// The floats of `payload` (empty: a push of nothing) for a range of
// `floats` values coded as `wire`; decoded copies are lent from `pool`.
// Errors: kInvalidArgument for a malformed payload, kDataLoss for a NaN or
// Inf (the message says which and where).
StatusOr<Frame> CheckedGradient(WireType wire, Frame payload, size_t floats,
                                VectorPool<float>& pool, std::vector<float>* scratch);

}  // namespace pstrain
