#include "common/data/handout.h"

#include <algorithm>
#include <numeric>

#include "common/base/check.h"
#include "common/base/rng.h"
#include "common/data/sampler.h"

namespace pstrain {

HandoutPlan HandoutPlan::Make(HandoutKind kind, uint64_t seed, int epoch, int64_t samples,
                              int batch, int workers, const std::vector<double>& weights) {
  PSTRAIN_CHECK(workers >= 1 && batch >= 1 && samples >= 0);
  HandoutPlan p;
  p.lists_.resize(workers);
  p.bounds_.resize(workers);
  if (kind == HandoutKind::kGlobal) {
    const std::vector<uint32_t> order = EpochOrder(seed, epoch, samples);
    const int64_t global = static_cast<int64_t>(batch) * workers;
    p.steps_ = (samples + global - 1) / global;
    for (auto& l : p.lists_) l.reserve(samples / workers + batch);
    for (int w = 0; w < workers; ++w) p.bounds_[w].push_back(0);
    for (int64_t k = 0; k < p.steps_; ++k) {
      const int64_t start = k * global;
      const int64_t r = std::min(global, samples - start);
      for (int w = 0; w < workers; ++w) {
        const int64_t a = start + r * w / workers, b = start + r * (w + 1) / workers;
        p.lists_[w].insert(p.lists_[w].end(), order.begin() + a, order.begin() + b);
        p.bounds_[w].push_back(static_cast<int64_t>(p.lists_[w].size()));
      }
      p.step_totals_.push_back(r);
    }
    return p;
  }
  // static: contiguous partitions of the unshuffled data, sized by weight.
  std::vector<double> wts = weights.empty() ? std::vector<double>(workers, 1.0) : weights;
  PSTRAIN_CHECK_EQ(static_cast<int>(wts.size()), workers);
  const double total_w = std::accumulate(wts.begin(), wts.end(), 0.0);
  double acc = 0;
  int64_t begin = 0;
  for (int w = 0; w < workers; ++w) {
    acc += wts[w];
    const int64_t end =
        w + 1 == workers ? samples : static_cast<int64_t>(samples * (acc / total_w));
    auto& l = p.lists_[w];
    for (int64_t i = begin; i < end; ++i) l.push_back(static_cast<uint32_t>(i));
    Rng rng(seed, 0x57a7000000ULL + static_cast<uint64_t>(epoch) * 4096 + w);
    rng.Shuffle(std::span<uint32_t>(l));
    begin = end;
    p.steps_ = std::max<int64_t>(p.steps_, (static_cast<int64_t>(l.size()) + batch - 1) / batch);
  }
  p.step_totals_.assign(p.steps_, 0);
  for (int w = 0; w < workers; ++w) {
    const int64_t n = static_cast<int64_t>(p.lists_[w].size());
    for (int64_t k = 0; k <= p.steps_; ++k) p.bounds_[w].push_back(std::min(n, k * batch));
    for (int64_t k = 0; k < p.steps_; ++k) {
      p.step_totals_[k] += p.bounds_[w][k + 1] - p.bounds_[w][k];
    }
  }
  return p;
}

std::span<const uint32_t> HandoutPlan::Samples(int w, int64_t k) const {
  const auto& b = bounds_[w];
  return std::span<const uint32_t>(lists_[w].data() + b[k], static_cast<size_t>(b[k + 1] - b[k]));
}

uint64_t Mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

uint64_t SampleSetHash(int64_t count) {
  uint64_t h = 0;
  for (int64_t i = 0; i < count; ++i) h += Mix64(static_cast<uint64_t>(i));
  return h;
}

}  // namespace pstrain
