#include "common/nn/metrics.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace pstrain {

double BinaryAuc(std::span<const float> scores, std::span<const uint8_t> labels) {
  const size_t n = std::min(scores.size(), labels.size());
  std::vector<uint32_t> order(n);
  std::iota(order.begin(), order.end(), 0u);
  std::sort(order.begin(), order.end(),
            [&](uint32_t a, uint32_t b) { return scores[a] < scores[b]; });
  // Sum of the positives' ranks (1-based, ties get their average rank).
  double rank_sum = 0;
  int64_t positives = 0;
  for (size_t i = 0; i < n;) {
    size_t j = i;
    int64_t pos = 0;
    while (j < n && scores[order[j]] == scores[order[i]]) pos += labels[order[j++]] != 0;
    rank_sum += pos * (static_cast<double>(i + 1 + j) / 2.0);
    positives += pos;
    i = j;
  }
  const int64_t negatives = static_cast<int64_t>(n) - positives;
  if (positives == 0 || negatives == 0) return std::nan("");
  const double p = static_cast<double>(positives);
  return (rank_sum - p * (p + 1) / 2.0) / (p * static_cast<double>(negatives));
}

}  // namespace pstrain
