#include "common/data/sampler.h"

#include <numeric>
#include <span>

#include "common/base/rng.h"

namespace pstrain {

void FillEpochOrder(uint64_t seed, int epoch, int64_t count, std::vector<uint32_t>* order) {
  order->resize(static_cast<size_t>(count));
  std::iota(order->begin(), order->end(), 0u);
  Rng rng(seed, 0x5eed0000ULL + static_cast<uint64_t>(epoch));
  rng.Shuffle(std::span<uint32_t>(*order));
}

std::vector<uint32_t> EpochOrder(uint64_t seed, int epoch, int64_t count) {
  std::vector<uint32_t> order;
  FillEpochOrder(seed, epoch, count, &order);
  return order;
}

}  // namespace pstrain
