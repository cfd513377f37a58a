// Loads the training and test sets a job's [data] section names, and checks
// that they agree in shape. Errors name the file and what is wrong.
#pragma once

#include "common/config.h"
#include "common/dataset.h"

namespace pstrain {

struct JobData {
  Dataset train;
  Dataset test;
};

StatusOr<JobData> LoadJobData(const DataConfig& data);

}  // namespace pstrain
