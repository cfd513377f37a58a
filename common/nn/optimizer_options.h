// What the job file says about the update rule and the learning-rate
// schedule: value types, read by the job-file parser and by every role
// without pulling in the optimizers themselves (optimizer.h).
#pragma once

namespace pstrain {

enum class OptimizerKind { kSgd, kMomentum, kAdam, kAdagrad };

struct OptimizerOptions {
  OptimizerKind kind = OptimizerKind::kSgd;
  float lr = 0.01f;           // base learning rate (the schedule scales it)
  float momentum = 0.9f;      // momentum: velocity decay
  bool nesterov = false;      // momentum: Nesterov's variant
  float beta1 = 0.9f;         // adam
  float beta2 = 0.999f;       // adam
  float eps = 1e-8f;          // adam, adagrad: denominator guard
  float weight_decay = 0.0f;  // L2 penalty added to the gradient: g + wd * w
};

enum class ScheduleKind { kConstant, kStep, kCosine };

struct ScheduleOptions {
  ScheduleKind kind = ScheduleKind::kConstant;
  double step_epochs = 10;   // step: multiply by gamma every step_epochs epochs
  double gamma = 0.1;        // step: the factor
  double min_lr_factor = 0;  // cosine: the final lr as a fraction of the base lr
  double warmup_epochs = 0;  // linear warm-up from 0 over this many epochs
};

}  // namespace pstrain
