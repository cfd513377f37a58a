#include "paramserver/admission.h"

#include <string>

namespace pstrain {

Status Admission::SetMembership(const std::vector<int>& workers,
                                const std::vector<uint64_t>& incarnations, uint64_t epoch) {
  if (workers.size() != incarnations.size()) {
    return InvalidArgument("membership: " + std::to_string(workers.size()) + " workers and " +
                           std::to_string(incarnations.size()) + " incarnations");
  }
  std::map<int, Member> now;
  for (size_t i = 0; i < workers.size(); ++i) {
    auto before = members_.find(workers[i]);
    const bool known = before != members_.end() && before->second.incarnation == incarnations[i];
    now[workers[i]] = {incarnations[i], known ? before->second.joined : epoch};
    // A new process under a dead worker's id numbers its pushes from 0
    // again: the old window would take them for duplicates.
    if (!known) seqs_.erase(workers[i]);
  }
  for (auto it = seqs_.begin(); it != seqs_.end();) {
    it = now.count(it->first) == 0 ? seqs_.erase(it) : std::next(it);
  }
  members_ = std::move(now);
  return OkStatus();
}

Status Admission::Check(int worker, uint64_t incarnation, uint64_t membership_epoch,
                        uint32_t announced_frames, size_t payload_frames, bool routed) const {
  auto m = members_.find(worker);
  if (m == members_.end()) {
    return Aborted("worker " + std::to_string(worker) +
                   " is not a live member of this job (declared dead, or never joined)");
  }
  if (m->second.incarnation != incarnation) {
    return Aborted("worker " + std::to_string(worker) + ": stale incarnation");
  }
  if (membership_epoch < m->second.joined) {
    return Aborted("membership epoch " + std::to_string(membership_epoch) + " is older than " +
                   std::to_string(m->second.joined) + ", in which worker " +
                   std::to_string(worker) + " joined");
  }
  if (routed && membership_epoch < routing_epoch_) {
    return Aborted("membership epoch " + std::to_string(membership_epoch) +
                   " is older than the servers' routing, epoch " + std::to_string(routing_epoch_));
  }
  if (announced_frames != payload_frames) {
    return InvalidArgument("header announces " + std::to_string(announced_frames) +
                           " payload frames, " + std::to_string(payload_frames) + " came");
  }
  return OkStatus();
}

}  // namespace pstrain
