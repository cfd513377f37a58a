// Dense pulls waiting for their clock: a pull for the weights after step c
// is answered once every push of step c has been applied (BSP), or once
// the slowest slot is near enough (SSP). The queue holds them in arrival
// order, bounded per worker so a flooding client cannot make the server
// hold an unbounded queue, and serves each once its shard says it is
// ready. Owned by the server's thread; tested without sockets.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>

#include "common/base/status.h"
#include "common/net/zmq_socket.h"
#include "common/ps/compress.h"
#include "common/ps/keys.h"

namespace pstrain {

class RangeShard;

struct PendingPull {
  Frame peer;  // the requester's routing id
  int worker = -1;
  WireType wire = WireType::kFloat32;  // how the reply is coded
  uint64_t request_id = 0;
  RangeShard* shard = nullptr;  // the shard that serves the keys
  KeyRange keys;
  int64_t clock = 0;
  std::chrono::steady_clock::time_point since;
};

class PullQueue {
 public:
  // A worker may have `base` pulls waiting, plus two per piece the server
  // keeps (a worker asks for every piece of the next clock ahead of time,
  // and again after a retry).
  explicit PullQueue(int base) : base_(base) {}

  // Queues `p`; kResourceExhausted when its worker already has the most it
  // may have waiting (`pieces`: the pieces this server serves now).
  Status Park(PendingPull p, size_t pieces);
  // Serves, in arrival order, every waiting pull for which `ready` holds,
  // and forgets it.
  void ServeReady(const std::function<bool(const PendingPull&)>& ready,
                  const std::function<void(PendingPull&)>& serve);

  bool empty() const { return pulls_.empty(); }
  size_t size() const { return pulls_.size(); }
  const PendingPull& oldest() const { return pulls_.front(); }
  int waiting(int worker) const;

 private:
  int base_;
  std::deque<PendingPull> pulls_;
  std::map<int, int> waiting_;  // by worker id
};

}  // namespace pstrain
