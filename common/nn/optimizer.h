// Optimizers that update a contiguous range of parameters in place from a
// gradient of the same range: SGD, momentum (optionally Nesterov), Adam and
// AdaGrad. An Optimizer owns the state for exactly the range it was created
// for, so a parameter server creates one per key range it owns, and a
// standalone run one for the whole model. Learning-rate schedules are pure
// functions of the (fractional) epoch.
//
// Not thread-safe; owned by the thread that applies updates.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/nn/optimizer_options.h"
#include "common/nn/tensor.h"

namespace pstrain {

class Optimizer {
 public:
  static std::unique_ptr<Optimizer> Create(const OptimizerOptions& options, size_t size);
  virtual ~Optimizer() = default;

  // w -= update(g) with learning rate lr, for the values at
  // [state_offset, state_offset + w.size()) of the range this optimizer was
  // made for. `step` (1-based) is the update's number for these values
  // (Adam's bias correction uses it).
  virtual void Apply(std::span<float> w, std::span<const float> g, float lr, size_t state_offset,
                     int64_t step) = 0;
  // The whole range, numbering steps itself.
  void Apply(std::span<float> w, std::span<const float> g, float lr) {
    Apply(w, g, lr, 0, ++steps_);
  }

  size_t size() const { return size_; }
  // Whole-range updates so far (the two-argument Apply).
  int64_t steps() const { return steps_; }
  // State tensors (velocity, Adam moments, AdaGrad sums), each of size(),
  // and the step count: what a checkpoint must keep.
  std::vector<std::span<float>> State();
  void set_steps(int64_t steps) { steps_ = steps; }

 protected:
  Optimizer(const OptimizerOptions& options, size_t size, int slots);
  OptimizerOptions options_;
  size_t size_;
  int64_t steps_ = 0;
  std::vector<FloatBuffer> slots_;
};

std::string_view OptimizerKindName(OptimizerKind kind);

// Learning rate at fractional epoch `epoch` (0 at the start of training) of a
// run of `total_epochs`.
float ScheduledLearningRate(const ScheduleOptions& s, float base_lr, double epoch,
                            int total_epochs);

}  // namespace pstrain
