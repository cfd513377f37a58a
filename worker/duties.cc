#include "worker/duties.h"

#include <algorithm>
#include <string>
#include <utility>

namespace pstrain {

Status WorkerDuties::SetOwners(const std::vector<int>& owners, const char* what) {
  if (static_cast<int>(owners.size()) != slots_) {
    return InvalidArgument(std::string(what) + ": " + std::to_string(owners.size()) +
                           " slot owners for " + std::to_string(slots_) + " slots");
  }
  my_slots_.clear();
  owners_ = owners;
  for (size_t s = 0; s < owners.size(); ++s) {
    if (owners[s] == node_id_) my_slots_.push_back(static_cast<int>(s));
  }
  return OkStatus();
}

Status WorkerDuties::StartEpoch(int epoch, int64_t first_clock, int64_t steps,
                                const std::vector<int>& owners, const std::vector<int>& only,
                                int64_t first_step) {
  if (steps < 0 || epoch < 0 || first_clock < 0 || first_step < 0 || first_step > steps) {
    return InvalidArgument("StartEpoch: epoch " + std::to_string(epoch) + ", first clock " +
                           std::to_string(first_clock) + ", " + std::to_string(steps) +
                           " steps from step " + std::to_string(first_step));
  }
  for (int s : only) {
    if (s < 0 || s >= slots_) {
      return InvalidArgument("StartEpoch: slot " + std::to_string(s) + " of " +
                             std::to_string(slots_));
    }
  }
  RETURN_IF_ERROR(SetOwners(owners, "StartEpoch"));
  // A new epoch: slots handed over before it are in its slot owners.
  takeover_.clear();
  interrupt_ = false;
  WorkerTask t;
  t.kind = WorkerTask::kEpoch;
  t.epoch = epoch;
  t.first_clock = first_clock;
  t.steps = steps;
  t.first_step = first_step;
  t.only = only;
  tasks_.push_back(std::move(t));
  return OkStatus();
}

StatusOr<int> WorkerDuties::NewMembership(const std::vector<int>& owners) {
  const std::vector<int> before = my_slots_;
  RETURN_IF_ERROR(SetOwners(owners, "Membership"));
  int gained = 0;
  for (int s : evaluating_ ? std::vector<int>{} : my_slots_) {
    if (std::find(before.begin(), before.end(), s) != before.end()) continue;
    if (std::find(takeover_.begin(), takeover_.end(), s) == takeover_.end()) takeover_.push_back(s);
    interrupt_ = true;
    ++gained;
  }
  return gained;
}

void WorkerDuties::NewRouting() {
  rerun_ = true;
  interrupt_ = true;
}

Status WorkerDuties::Evaluate(int epoch, int64_t begin, int64_t end, int64_t test_rows) {
  if (begin < 0 || end > test_rows || begin > end) {
    return InvalidArgument("Evaluate: rows [" + std::to_string(begin) + ", " + std::to_string(end) +
                           ") outside the test set of " + std::to_string(test_rows));
  }
  WorkerTask t;
  t.kind = WorkerTask::kEval;
  t.epoch = epoch;
  t.begin = begin;
  t.end = end;
  tasks_.push_back(std::move(t));
  return OkStatus();
}

std::optional<WorkerTask> WorkerDuties::NextTask() {
  if (tasks_.empty()) return std::nullopt;
  WorkerTask t = std::move(tasks_.front());
  tasks_.pop_front();
  return t;
}

bool WorkerDuties::TakeInterrupt() { return std::exchange(interrupt_, false); }

std::vector<int> WorkerDuties::TakeTakeover() { return std::exchange(takeover_, {}); }

bool WorkerDuties::TakeRerun() { return std::exchange(rerun_, false); }

}  // namespace pstrain
