#include "paramserver/dense_shard.h"

#include <algorithm>
#include <cstring>

namespace pstrain {

DenseShard::DenseShard(KeyRange keys, FlatRange flat, std::span<const float> initial,
                       const ShardOptions& options, std::vector<int> workers)
    : keys_(keys),
      flat_(flat),
      options_(options),
      workers_(std::move(workers)),
      params_(flat.size()),
      optimizer_(Optimizer::Create(options.optimizer, flat.size())),
      accum_(flat.size()) {
  std::sort(workers_.begin(), workers_.end());
  std::copy(initial.begin(), initial.end(), params_.data());
  for (int w : workers_) completed_[w] = 0;
}

void DenseShard::SetWorkers(std::vector<int> workers) {
  std::sort(workers.begin(), workers.end());
  workers_ = std::move(workers);
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (!std::binary_search(workers_.begin(), workers_.end(), it->first)) {
      received_.erase(it->first);
      it = pending_.erase(it);
    } else {
      ++it;
    }
  }
  for (int w : workers_) completed_.try_emplace(w, version_);
  for (auto it = completed_.begin(); it != completed_.end();) {
    it = std::binary_search(workers_.begin(), workers_.end(), it->first) ? std::next(it)
                                                                         : completed_.erase(it);
  }
  if (options_.consistency == Consistency::kBsp) MaybeCompleteBsp();
}

StatusOr<DenseShard::PushOutcome> DenseShard::Push(int worker, int64_t clock, size_t begin,
                                                   size_t n, Frame payload, int64_t samples,
                                                   float lr) {
  if (!std::binary_search(workers_.begin(), workers_.end(), worker)) {
    return Aborted("worker " + std::to_string(worker) + " is not a live member");
  }
  if (begin + n > flat_.size() || n == 0) {
    return InvalidArgument("push outside the shard: floats [" + std::to_string(begin) + ", " +
                           std::to_string(begin + n) + ") of " + std::to_string(flat_.size()));
  }
  const bool empty = payload.size() == 0;
  if (empty && samples != 0) return InvalidArgument("a push without payload must have 0 samples");
  if (!empty && payload.size() != n * sizeof(float)) {
    return InvalidArgument("payload of " + std::to_string(payload.size()) + " bytes for " +
                           std::to_string(n) + " floats");
  }
  if (options_.consistency == Consistency::kBsp) {
    if (clock < version_) return PushOutcome::kDuplicate;  // already applied
    if (clock > version_) {
      return Aborted("push for clock " + std::to_string(clock) + " while the shard is at clock " +
                     std::to_string(version_) + " (BSP allows no running ahead)");
    }
    std::vector<Part>& parts = pending_[worker];
    for (const Part& p : parts) {
      if (begin < p.begin + p.n && p.begin < begin + n) return PushOutcome::kDuplicate;
    }
    parts.push_back({begin, n, std::move(payload)});
    received_[worker] += n;
    pending_lr_ = lr;
    MaybeCompleteBsp();
    return clock < version_ ? PushOutcome::kApplied : PushOutcome::kBuffered;
  }
  // ASP / SSP: apply now.
  if (!empty) ApplyAsync(begin, n, FramedFloats(payload, &scratch_), lr);
  size_t& got = async_received_[{worker, clock}];
  got += n;
  if (got >= flat_.size()) {
    async_received_.erase({worker, clock});
    int64_t& done = completed_[worker];
    done = std::max(done, clock + 1);
  }
  return PushOutcome::kApplied;
}

void DenseShard::ApplyAsync(size_t begin, size_t n, const float* g, float lr) {
  const int64_t step = ++async_steps_[begin];
  optimizer_->Apply(std::span<float>(params_.data() + begin, n), std::span<const float>(g, n), lr,
                    begin, step);
  ++version_;
  ++updates_;
}

void DenseShard::MaybeCompleteBsp() {
  if (workers_.empty()) return;
  for (int w : workers_) {
    auto it = received_.find(w);
    if (it == received_.end() || it->second < flat_.size()) return;
  }
  // Sum in worker-id order so the result does not depend on arrival order.
  std::fill(accum_.data(), accum_.data() + accum_.size(), 0.0f);
  for (int w : workers_) {
    for (const Part& p : pending_[w]) {
      if (p.payload.size() == 0) continue;
      const float* g = FramedFloats(p.payload, &scratch_);
      float* __restrict a = accum_.data() + p.begin;
      for (size_t i = 0; i < p.n; ++i) a[i] += g[i];
    }
  }
  optimizer_->Apply(params_.span(), accum_.span(), pending_lr_, 0, version_ + 1);
  pending_.clear();
  received_.clear();
  ++version_;
  ++updates_;
}

bool DenseShard::PullReady(int64_t clock) const {
  switch (options_.consistency) {
    case Consistency::kBsp:
      return version_ >= clock;
    case Consistency::kAsp:
      return true;
    case Consistency::kSsp: {
      for (int w : workers_) {
        auto it = completed_.find(w);
        const int64_t done = it == completed_.end() ? 0 : it->second;
        if (done < clock - options_.staleness) return false;
      }
      return true;
    }
  }
  return true;
}

std::shared_ptr<const FloatBuffer> DenseShard::Snapshot() {
  if (current_snapshot_ && snapshot_version_ == version_) return current_snapshot_;
  std::shared_ptr<FloatBuffer> buf;
  for (auto& s : snapshots_) {
    if (s.use_count() == 1) {  // only the pool holds it: no reply in flight
      buf = s;
      break;
    }
  }
  if (!buf) {
    buf = std::make_shared<FloatBuffer>(flat_.size());
    snapshots_.push_back(buf);
  }
  std::memcpy(buf->data(), params_.data(), flat_.size() * sizeof(float));
  current_snapshot_ = buf;
  snapshot_version_ = version_;
  return buf;
}

std::string DenseShard::Waiting() const {
  std::string missing;
  for (int w : workers_) {
    auto it = received_.find(w);
    if (it == received_.end() || it->second < flat_.size()) {
      missing += (missing.empty() ? "" : ", ") + std::to_string(w);
    }
  }
  return "keys " + ToString(keys_) + " at clock " + std::to_string(version_) +
         (missing.empty() ? "" : ": waiting for workers " + missing);
}

}  // namespace pstrain
