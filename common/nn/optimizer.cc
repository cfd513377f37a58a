#include "common/nn/optimizer.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "common/base/check.h"

namespace pstrain {
namespace {

class Sgd final : public Optimizer {
 public:
  Sgd(const OptimizerOptions& o, size_t n) : Optimizer(o, n, 0) {}
  using Optimizer::Apply;
  void Apply(std::span<float> w, std::span<const float> g, float lr, size_t off,
             int64_t /*step*/) override {
    PSTRAIN_CHECK_LE(off + w.size(), size_);
    const size_t n = w.size();
    const float wd = options_.weight_decay;
    float* __restrict wp = w.data();
    const float* __restrict gp = g.data();
    for (size_t i = 0; i < n; ++i) wp[i] -= lr * (gp[i] + wd * wp[i]);
  }
};

class Momentum final : public Optimizer {
 public:
  using Optimizer::Apply;
  Momentum(const OptimizerOptions& o, size_t n) : Optimizer(o, n, 1) {}
  void Apply(std::span<float> w, std::span<const float> g, float lr, size_t off,
             int64_t /*step*/) override {
    PSTRAIN_CHECK_LE(off + w.size(), size_);
    const size_t n = w.size();
    const float mu = options_.momentum, wd = options_.weight_decay;
    float* __restrict wp = w.data();
    float* __restrict v = slots_[0].data() + off;
    const float* __restrict gp = g.data();
    if (options_.nesterov) {
      for (size_t i = 0; i < n; ++i) {
        const float gi = gp[i] + wd * wp[i];
        v[i] = mu * v[i] + gi;
        wp[i] -= lr * (gi + mu * v[i]);
      }
    } else {
      for (size_t i = 0; i < n; ++i) {
        v[i] = mu * v[i] + gp[i] + wd * wp[i];
        wp[i] -= lr * v[i];
      }
    }
  }
};

class Adam final : public Optimizer {
 public:
  using Optimizer::Apply;
  Adam(const OptimizerOptions& o, size_t n) : Optimizer(o, n, 2) {}
  void Apply(std::span<float> w, std::span<const float> g, float lr, size_t off,
             int64_t step) override {
    PSTRAIN_CHECK_LE(off + w.size(), size_);
    const size_t n = w.size();
    const float b1 = options_.beta1, b2 = options_.beta2, eps = options_.eps;
    const float wd = options_.weight_decay;
    const double c1 = 1.0 - std::pow(static_cast<double>(b1), static_cast<double>(step));
    const double c2 = 1.0 - std::pow(static_cast<double>(b2), static_cast<double>(step));
    // Folds the bias corrections into the step size, as PyTorch does.
    const float step_size = static_cast<float>(lr / c1);
    const float inv_sqrt_c2 = static_cast<float>(1.0 / std::sqrt(c2));
    float* __restrict wp = w.data();
    float* __restrict m = slots_[0].data() + off;
    float* __restrict v = slots_[1].data() + off;
    const float* __restrict gp = g.data();
    for (size_t i = 0; i < n; ++i) {
      const float gi = gp[i] + wd * wp[i];
      m[i] = b1 * m[i] + (1.0f - b1) * gi;
      v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
      wp[i] -= step_size * m[i] / (std::sqrt(v[i]) * inv_sqrt_c2 + eps);
    }
  }
};

class Adagrad final : public Optimizer {
 public:
  using Optimizer::Apply;
  Adagrad(const OptimizerOptions& o, size_t n) : Optimizer(o, n, 1) {}
  void Apply(std::span<float> w, std::span<const float> g, float lr, size_t off,
             int64_t /*step*/) override {
    PSTRAIN_CHECK_LE(off + w.size(), size_);
    const size_t n = w.size();
    const float eps = options_.eps, wd = options_.weight_decay;
    float* __restrict wp = w.data();
    float* __restrict s = slots_[0].data() + off;
    const float* __restrict gp = g.data();
    for (size_t i = 0; i < n; ++i) {
      const float gi = gp[i] + wd * wp[i];
      s[i] += gi * gi;
      wp[i] -= lr * gi / (std::sqrt(s[i]) + eps);
    }
  }
};

}  // namespace

Optimizer::Optimizer(const OptimizerOptions& options, size_t size, int slots)
    : options_(options), size_(size) {
  for (int i = 0; i < slots; ++i) slots_.emplace_back(size);
}

std::unique_ptr<Optimizer> Optimizer::Create(const OptimizerOptions& options, size_t size) {
  switch (options.kind) {
    case OptimizerKind::kSgd:
      return std::make_unique<Sgd>(options, size);
    case OptimizerKind::kMomentum:
      return std::make_unique<Momentum>(options, size);
    case OptimizerKind::kAdam:
      return std::make_unique<Adam>(options, size);
    case OptimizerKind::kAdagrad:
      return std::make_unique<Adagrad>(options, size);
  }
  PSTRAIN_CHECK(false) << "unknown optimizer kind";
  return nullptr;
}

std::vector<std::span<float>> Optimizer::State() {
  std::vector<std::span<float>> out;
  for (FloatBuffer& b : slots_) out.push_back(b.span());
  return out;
}

std::string_view OptimizerKindName(OptimizerKind kind) {
  switch (kind) {
    case OptimizerKind::kSgd:
      return "sgd";
    case OptimizerKind::kMomentum:
      return "momentum";
    case OptimizerKind::kAdam:
      return "adam";
    case OptimizerKind::kAdagrad:
      return "adagrad";
  }
  return "?";
}

float ScheduledLearningRate(const ScheduleOptions& s, float base_lr, double epoch,
                            int total_epochs) {
  double lr = base_lr;
  switch (s.kind) {
    case ScheduleKind::kConstant:
      break;
    case ScheduleKind::kStep:
      lr *= std::pow(s.gamma, std::floor(epoch / s.step_epochs));
      break;
    case ScheduleKind::kCosine: {
      const double t = total_epochs > 0 ? std::min(1.0, epoch / total_epochs) : 1.0;
      const double floor_lr = base_lr * s.min_lr_factor;
      lr = floor_lr + 0.5 * (base_lr - floor_lr) * (1.0 + std::cos(std::numbers::pi * t));
      break;
    }
  }
  if (s.warmup_epochs > 0 && epoch < s.warmup_epochs) lr *= epoch / s.warmup_epochs;
  return static_cast<float>(lr);
}

}  // namespace pstrain
