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
                                int64_t first_step, const std::vector<int64_t>& from) {
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
  if (!from.empty() && static_cast<int>(from.size()) != slots_) {
    return InvalidArgument("StartEpoch: first steps for " + std::to_string(from.size()) +
                           " slots of " + std::to_string(slots_));
  }
  for (int64_t f : from) {
    if (f < first_step || f > steps) {
      return InvalidArgument("StartEpoch: a slot starting at step " + std::to_string(f) +
                             " of an epoch of steps " + std::to_string(first_step) + ".." +
                             std::to_string(steps));
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
  t.from = from.empty() ? std::vector<int64_t>(static_cast<size_t>(slots_), first_step) : from;
  tasks_.push_back(std::move(t));
  return OkStatus();
}

std::optional<int64_t> WorkerDuties::ReleaseStep(int slot) const {
  const auto s = static_cast<size_t>(slot);
  for (auto t = tasks_.rbegin(); t != tasks_.rend(); ++t) {
    // An epoch not started yet: nothing of it is computed.
    if (t->kind == WorkerTask::kEpoch) return std::max(t->first_step, t->from[s]);
  }
  if (!had_run_) return std::nullopt;
  const bool trained = restricted_ ? std::find(only_.begin(), only_.end(), slot) != only_.end()
                                   : true;       // an owned slot: the run computes it
  if (!running_ || !trained) return run_steps_;  // done already
  return std::min(std::max(from_[s], step_ + 1), run_steps_);
}

StatusOr<WorkerDuties::Change> WorkerDuties::NewMembership(const std::vector<int>& owners) {
  const std::vector<int> before = my_slots_;
  RETURN_IF_ERROR(SetOwners(owners, "Membership"));
  Change c;
  for (int s : before) {
    if (std::find(my_slots_.begin(), my_slots_.end(), s) != my_slots_.end()) continue;
    const std::optional<int64_t> at = ReleaseStep(s);
    if (!at) continue;
    c.released.push_back({s, *at});
    takeover_.erase(std::remove(takeover_.begin(), takeover_.end(), s), takeover_.end());
    if (!running_) continue;
    // Its steps before `at` are still this run's to compute.
    if (*at > from_[static_cast<size_t>(s)]) until_[s] = *at;
    only_.erase(std::remove(only_.begin(), only_.end(), s), only_.end());
  }
  for (int s : evaluating_ ? std::vector<int>{} : my_slots_) {
    if (std::find(before.begin(), before.end(), s) != before.end()) continue;
    if (running_) {
      // Back from a worker that left: computed from the current step on.
      until_.erase(s);
      from_[static_cast<size_t>(s)] = run_first_step_;
    }
    if (std::find(takeover_.begin(), takeover_.end(), s) == takeover_.end()) takeover_.push_back(s);
    interrupt_ = true;
    ++c.gained;
  }
  return c;
}

std::vector<int> WorkerDuties::StepSlots(int64_t k) const {
  std::vector<int> out;
  for (int s : restricted_ ? only_ : my_slots_) {
    if (from_[static_cast<size_t>(s)] <= k) out.push_back(s);
  }
  for (const auto& [s, until] : until_) {
    if (k < until && from_[static_cast<size_t>(s)] <= k &&
        std::find(out.begin(), out.end(), s) == out.end()) {
      out.push_back(s);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

int64_t WorkerDuties::FirstStep() const {
  int64_t first = run_steps_;
  for (int s : restricted_ ? only_ : my_slots_)
    first = std::min(first, from_[static_cast<size_t>(s)]);
  return std::max(first, run_first_step_);
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
  if (t.kind == WorkerTask::kEpoch) {
    running_ = had_run_ = true;
    restricted_ = !t.only.empty();
    only_ = t.only;
    from_ = t.from;
    until_.clear();
    run_first_step_ = t.first_step;
    run_steps_ = t.steps;
    step_ = FirstStep() - 1;
  }
  return t;
}

bool WorkerDuties::TakeInterrupt() { return std::exchange(interrupt_, false); }

std::vector<int> WorkerDuties::TakeTakeover() {
  std::vector<int> taken = std::exchange(takeover_, {});
  if (restricted_) {
    for (int s : taken) {
      if (std::find(only_.begin(), only_.end(), s) == only_.end()) only_.push_back(s);
    }
  }
  return taken;
}

bool WorkerDuties::TakeRerun() { return std::exchange(rerun_, false); }

}  // namespace pstrain
