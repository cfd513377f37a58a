// `pstrain train JOB --standalone`: load the data, build the model, train in
// this process, report to the terminal and the metrics file.
#pragma once

#include <atomic>

#include "common/base/status.h"
#include "common/job/config.h"

namespace pstrain {

Status RunStandalone(const JobConfig& config, const std::atomic<bool>* stop);

}  // namespace pstrain
