// Training in one process: the worker's compute loop applied to the whole
// model with a local optimizer (`pstrain train JOB --standalone`). Every
// epoch visits every training sample once, in the epoch's seeded order, in
// batches of train.batch_size (the last one may be smaller); then the model
// is evaluated on the test set.
//
// Runs on the calling thread; the observer is called on that thread.
#pragma once

#include <atomic>
#include <functional>
#include <vector>

#include "common/base/status.h"
#include "common/data/dataset.h"
#include "common/job/config.h"
#include "common/job/training_stats.h"
#include "common/nn/model.h"

namespace pstrain {

class TrainingObserver {
 public:
  virtual ~TrainingObserver() = default;
  virtual void OnProgress(const ProgressStats& p) { (void)p; }
  // A non-OK status stops training and is returned by the trainer.
  virtual Status OnEpoch(const EpochStats& e) = 0;
};

// Test-set loss and accuracy of `model` over rows [begin, end) of `data`;
// binary models also give each row's score, P(label 1).
struct EvalResult {
  double loss_sum = 0;
  int64_t correct = 0;
  int64_t count = 0;
  std::vector<float> scores;    // binary models: per row
  std::vector<uint8_t> labels;  // the rows' labels, with scores
};
// Sparse models: fills the model's tables() values for its rows() (from
// the servers, or a local table).
using RowFetch = std::function<Status(Model&)>;

// Makes samples ids[0, n) of `data` a batch: their labels into `labels`
// and, for dense data, their features into `input` (null for sparse data,
// whose batch is Model::GatherSparse's).
void FillBatch(const Dataset& data, const uint32_t* ids, int n, float* input, int32_t* labels);

// kInvalidArgument when a step's loss is not finite, naming the epoch
// (0-based here, 1-based in the message), the step and, when >= 0, the slot.
Status CheckLossFinite(double loss_sum, int epoch, int64_t step, int slot);
// `between`, when given, runs after each batch (a worker answers its
// control channel there); an error from it ends the evaluation.
StatusOr<EvalResult> EvaluateRange(Model& model, const Dataset& data, int64_t begin, int64_t end,
                                   const RowFetch& fetch = nullptr,
                                   const std::function<Status()>& between = nullptr);

// Trains `model` (already initialised) for config.epochs epochs. Returns
// kCancelled if *stop becomes true (checked every step).
StatusOr<FinalStats> TrainStandalone(const JobConfig& config, const Dataset& train,
                                     const Dataset& test, Model& model, TrainingObserver& observer,
                                     const std::atomic<bool>* stop);

}  // namespace pstrain
