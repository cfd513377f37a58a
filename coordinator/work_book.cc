#include "coordinator/work_book.h"

#include <algorithm>

namespace pstrain {

std::vector<int> WorkBook::SlotsOf(int worker) const {
  std::vector<int> slots;
  for (size_t s = 0; s < owners_.size(); ++s) {
    if (owners_[s] == worker) slots.push_back(static_cast<int>(s));
  }
  return slots;
}

void WorkBook::SpreadSlots(const std::vector<int>& live) {
  if (live.empty()) return;
  for (size_t s = 0; s < owners_.size(); ++s) owners_[s] = live[s % live.size()];
}

bool WorkBook::SetOwners(const std::vector<int>& owners) {
  if (owners.size() != owners_.size()) return false;
  owners_ = owners;
  return true;
}

void WorkBook::StartEpoch(int epoch, const std::vector<int>& workers) {
  epoch_ = epoch;
  training_.clear();
  for (int w : workers) training_[w] = false;
  evaluating_ = false;
  evals_.clear();
}

bool WorkBook::Trained(int worker) {
  auto it = training_.find(worker);
  if (it == training_.end() || it->second) return false;
  it->second = true;
  return true;
}

bool WorkBook::AllTrained() const {
  return std::all_of(training_.begin(), training_.end(), [](const auto& p) { return p.second; });
}

const std::vector<WorkBook::EvalRange>& WorkBook::StartEvaluation(int64_t rows,
                                                                  const std::vector<int>& workers) {
  evaluating_ = true;
  evals_.clear();
  const int64_t n = static_cast<int64_t>(workers.size());
  for (int64_t i = 0; i < n; ++i) {
    evals_.push_back({workers[static_cast<size_t>(i)], rows * i / n, rows * (i + 1) / n});
  }
  return evals_;
}

bool WorkBook::Evaluated(int worker, int64_t begin, int64_t count) {
  auto r = std::find_if(evals_.begin(), evals_.end(), [&](const EvalRange& x) {
    return x.worker == worker && x.begin == begin && x.end - x.begin == count;
  });
  if (r == evals_.end()) return false;
  evals_.erase(r);
  return true;
}

std::map<int, int> WorkBook::WorkerJoined(int worker) {
  std::map<int, int> moved;
  if (epoch_ < 0 || evaluating_ || training_.count(worker) != 0) return moved;
  std::vector<int> training;
  for (const auto& [w, done] : training_) {
    if (!done) training.push_back(w);
  }
  if (training.empty()) return moved;
  const auto share = static_cast<int64_t>(owners_.size() / (training.size() + 1));
  auto load = [&](int w) { return std::count(owners_.begin(), owners_.end(), w); };
  while (load(worker) < share) {
    int giver = training[0];
    for (int w : training) {
      if (load(w) >= load(giver)) giver = w;
    }
    if (load(giver) < load(worker) + 2) break;
    for (size_t s = owners_.size(); s-- > 0;) {
      if (owners_[s] != giver) continue;
      owners_[s] = worker;
      moved[static_cast<int>(s)] = giver;
      break;
    }
  }
  if (!moved.empty()) training_[worker] = false;
  return moved;
}

WorkBook::Death WorkBook::WorkerDied(int worker, const std::vector<int>& survivors) {
  Death d;
  if (survivors.empty()) return d;
  auto load = [&](int w) { return std::count(owners_.begin(), owners_.end(), w); };
  for (size_t s = 0; s < owners_.size(); ++s) {
    if (owners_[s] != worker) continue;
    int best = survivors[0];
    for (int w : survivors) {
      if (load(w) < load(best)) best = w;
    }
    owners_[s] = best;
    d.taken.push_back(static_cast<int>(s));
  }
  if (epoch_ >= 0 && !evaluating_) {
    training_.erase(worker);
    for (int s : d.taken) {
      auto it = training_.find(owners_[static_cast<size_t>(s)]);
      if (it != training_.end() && it->second) d.redo[it->first].push_back(s);
    }
    for (const auto& [w, slots] : d.redo) training_[w] = false;
  }
  auto held = [&](int w) {
    return std::count_if(evals_.begin(), evals_.end(),
                         [&](const EvalRange& e) { return e.worker == w; });
  };
  for (EvalRange& r : evals_) {
    if (r.worker != worker) continue;
    r.worker = *std::min_element(survivors.begin(), survivors.end(),
                                 [&](int a, int b) { return held(a) < held(b); });
    d.moved.push_back(r);
  }
  return d;
}

}  // namespace pstrain
