// Which training samples each worker processes in each step of an epoch
// (docs/architecture.md, "Data"). Every process computes the same plan from the job's
// seed, the epoch and the list of live workers, without talking.
//
// global: one seeded order of all samples per epoch; global step k covers
//   the next W*b samples of that order, split among the W workers in a fixed
//   order (the last step's smaller remainder split as evenly as possible).
//   With BSP this equals a standalone run with batch W*b.
// static: each worker owns a fixed partition (sized by weights, default
//   equal) and visits it in its own seeded order, b samples a step; every
//   worker takes the same number of steps, so one with a smaller partition
//   has empty steps at the end instead of leaving the others waiting.
//
// Immutable once built; thread-safe.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/job/choices.h"

namespace pstrain {

class HandoutPlan {
 public:
  // `weights` (static only) has one positive entry per worker; empty: equal.
  static HandoutPlan Make(HandoutKind kind, uint64_t seed, int epoch, int64_t samples, int batch,
                          int workers, const std::vector<double>& weights = {});

  int workers() const { return static_cast<int>(lists_.size()); }
  int64_t steps() const { return steps_; }
  // Indices of the samples worker w processes in step k (possibly none).
  std::span<const uint32_t> Samples(int w, int64_t k) const;
  // Samples of all workers in step k.
  int64_t StepTotal(int64_t k) const { return step_totals_[k]; }
  // Samples worker w processes in the epoch.
  int64_t WorkerTotal(int w) const { return static_cast<int64_t>(lists_[w].size()); }

 private:
  int64_t steps_ = 0;
  std::vector<std::vector<uint32_t>> lists_;  // per worker, in processing order
  std::vector<std::vector<int64_t>> bounds_;  // per worker, steps_ + 1 offsets
  std::vector<int64_t> step_totals_;
};

// A hash of a set of sample indices that does not depend on order: the sum
// of Mix64(i). Lets the coordinator check that an epoch saw every sample
// exactly once.
uint64_t Mix64(uint64_t x);
uint64_t SampleSetHash(int64_t count);  // of {0, ..., count-1}

}  // namespace pstrain
