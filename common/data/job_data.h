// Loads the training and test sets a job's [data] section names, and checks
// that they agree in shape. Errors name the file and what is wrong.
#pragma once

#include "common/data/dataset.h"
#include "common/data/handout.h"
#include "common/job/config.h"
#include "common/nn/model.h"

namespace pstrain {

struct JobData {
  Dataset train;
  Dataset test;
};

StatusOr<JobData> LoadJobData(const DataConfig& data);

// The hand-out of `epoch` over `samples` training samples as the job
// configures it (kind, seed, batch, the configured workers' slots, static
// shard weights): every process computes the same plan.
HandoutPlan EpochPlan(const JobConfig& config, int epoch, int64_t samples);

// How the job's model takes its input: sparse for LibSVM data, with
// max_active from `data` when given (1 otherwise: enough to lay the
// parameters out, not to train).
SparseOptions SparseOptionsOf(const JobConfig& config, const JobData* data);

}  // namespace pstrain
