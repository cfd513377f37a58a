// Which sequence numbers of one worker a server has applied, so a
// retransmitted or duplicated push is applied at most once. Memory is
// bounded by how far pushes are reordered. A value type, owned by the
// server's thread.
#pragma once

#include <cstdint>
#include <set>

namespace pstrain {

class SeqWindow {
 public:
  bool FirstTime(uint64_t seq) {
    if (seq < low_ || seen_.count(seq) != 0) return false;
    seen_.insert(seq);
    while (seen_.count(low_) != 0) seen_.erase(low_++);
    return true;
  }

 private:
  uint64_t low_ = 0;
  std::set<uint64_t> seen_;
};

}  // namespace pstrain
