#include "paramserver/pull_queue.h"

#include <string>
#include <utility>

namespace pstrain {

Status PullQueue::Park(PendingPull p, size_t pieces) {
  int& waiting = waiting_[p.worker];
  if (waiting >= base_ + 2 * static_cast<int>(pieces)) {
    return ResourceExhausted("worker " + std::to_string(p.worker) + " already has " +
                             std::to_string(waiting) +
                             " pulls waiting here, the most a client may have; refused");
  }
  ++waiting;
  pulls_.push_back(std::move(p));
  return OkStatus();
}

void PullQueue::ServeReady(const std::function<bool(const PendingPull&)>& ready,
                           const std::function<void(PendingPull&)>& serve) {
  for (auto it = pulls_.begin(); it != pulls_.end();) {
    if (!ready(*it)) {
      ++it;
      continue;
    }
    serve(*it);
    --waiting_[it->worker];
    it = pulls_.erase(it);
  }
}

int PullQueue::waiting(int worker) const {
  auto it = waiting_.find(worker);
  return it == waiting_.end() ? 0 : it->second;
}

}  // namespace pstrain
