// The order in which training samples are visited. Each epoch draws one
// permutation of all samples from the job's seed and the epoch number, so
// every process that knows (seed, epoch, count) computes the same order
// without talking to the others. Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <vector>

namespace pstrain {

// A permutation of [0, count) for `epoch` (0-based).
std::vector<uint32_t> EpochOrder(uint64_t seed, int epoch, int64_t count);

// Same, written into `order` (resized to count) to reuse its storage.
void FillEpochOrder(uint64_t seed, int epoch, int64_t count, std::vector<uint32_t>* order);

}  // namespace pstrain
