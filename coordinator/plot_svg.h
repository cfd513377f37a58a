// A run's curves as one self-contained SVG document: train loss and test
// loss (left axis) and test accuracy (right axis) per epoch, with axes,
// ticks, a legend and a title. Pure.
//
// Each curve is a <polyline> with the id train-loss, test-loss or
// test-accuracy and one point per epoch, each point also drawn as a
// <circle> of the same class.
#pragma once

#include <string>
#include <vector>

#include "common/job/training_stats.h"

namespace pstrain {

std::string PlotSvg(const std::string& title, const std::vector<EpochStats>& epochs);

}  // namespace pstrain
