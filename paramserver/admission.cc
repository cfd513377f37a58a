#include "paramserver/admission.h"

#include <string>

namespace pstrain {

Status Admission::SetMembership(const std::vector<int>& workers,
                                const std::vector<uint64_t>& incarnations) {
  if (workers.size() != incarnations.size()) {
    return InvalidArgument("membership: " + std::to_string(workers.size()) + " workers and " +
                           std::to_string(incarnations.size()) + " incarnations");
  }
  incarnation_.clear();
  for (size_t i = 0; i < workers.size(); ++i) incarnation_[workers[i]] = incarnations[i];
  return OkStatus();
}

Status Admission::Check(int worker, uint64_t incarnation, uint64_t membership_epoch,
                        uint32_t announced_frames, size_t payload_frames) const {
  auto inc = incarnation_.find(worker);
  if (inc == incarnation_.end()) {
    return Aborted("worker " + std::to_string(worker) +
                   " is not a live member of this job (declared dead, or never joined)");
  }
  if (inc->second != incarnation) {
    return Aborted("worker " + std::to_string(worker) + ": stale incarnation");
  }
  if (membership_epoch < routing_epoch_) {
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
