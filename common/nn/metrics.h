// Metrics of binary classifiers over a whole evaluation set.
#pragma once

#include <cstdint>
#include <span>

namespace pstrain {

// The area under the ROC curve of `scores` (higher: more likely positive)
// for labels 0/1: the probability that a random positive scores above a
// random negative, ties counting one half (the Mann-Whitney statistic).
// NaN when either class is absent.
double BinaryAuc(std::span<const float> scores, std::span<const uint8_t> labels);

}  // namespace pstrain
