// Who may send a server data requests, and which of their pushes are new:
// the live workers of the current membership (by incarnation, so a dead
// worker's late packets are refused even when its id is reused), the
// membership epoch the server routes by, and each worker's window of
// applied push sequence numbers. Plain data, owned by the server's thread;
// tested without sockets (tests/paramserver/server_parts_test.cc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <vector>

#include "common/base/status.h"
#include "paramserver/seq_window.h"

namespace pstrain {

class Admission {
 public:
  // The live workers (ids and incarnations, in the same order) of
  // membership `epoch`. A worker new to the server (or a new incarnation of
  // an id) joined in `epoch`: its requests can carry no older one.
  Status SetMembership(const std::vector<int>& workers, const std::vector<uint64_t>& incarnations,
                       uint64_t epoch);
  // Requests routed by an older membership are refused from now on.
  void set_routing_epoch(uint64_t e) { routing_epoch_ = e; }
  uint64_t routing_epoch() const { return routing_epoch_; }
  size_t live_workers() const { return members_.size(); }

  // kAborted unless `worker` is live with this incarnation, routes by the
  // current server routing (or a newer one) and names a membership epoch no
  // older than the one it joined in; kInvalidArgument when the header
  // announced another number of payload frames than came.
  // `routed`: false for row requests, which name their bucket: they are
  // good under any server table while the bucket is served here.
  Status Check(int worker, uint64_t incarnation, uint64_t membership_epoch,
               uint32_t announced_frames, size_t payload_frames, bool routed = true) const;
  // True the first time worker's push `seq` arrives (a retransmission or a
  // duplicate is acknowledged and not applied). A new incarnation of a
  // worker id starts a new window.
  bool FirstTime(int worker, uint64_t seq) { return seqs_[worker].FirstTime(seq); }

 private:
  struct Member {
    uint64_t incarnation = 0;
    uint64_t joined = 0;  // the membership epoch it joined in
  };
  std::map<int, Member> members_;  // the live workers
  uint64_t routing_epoch_ = 0;
  std::map<int, SeqWindow> seqs_;
};

}  // namespace pstrain
