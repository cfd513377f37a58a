#include "common/nn/optimizer.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <vector>

namespace pstrain {
namespace {

// Runs `steps` updates with fixed gradients and returns the weights.
std::vector<float> Run(const OptimizerOptions& o, std::vector<float> w, const std::vector<float>& g,
                       int steps, float lr) {
  auto opt = Optimizer::Create(o, w.size());
  for (int i = 0; i < steps; ++i) opt->Apply(w, g, lr);
  CHECK(opt->steps() == steps);
  return w;
}

TEST_CASE("SGD, momentum, Adam and AdaGrad follow their textbook updates", "[common]") {
  const std::vector<float> w0 = {1.0f, -2.0f, 0.5f};
  const std::vector<float> g = {0.1f, -0.3f, 0.0f};
  OptimizerOptions o;

  SECTION("sgd with weight decay") {
    o.kind = OptimizerKind::kSgd;
    o.weight_decay = 0.01f;
    std::vector<float> w = Run(o, w0, g, 1, 0.5f);
    for (int i = 0; i < 3; ++i) CHECK(w[i] == Approx(w0[i] - 0.5 * (g[i] + 0.01 * w0[i])));
  }
  SECTION("momentum accumulates velocity") {
    o.kind = OptimizerKind::kMomentum;
    o.momentum = 0.9f;
    std::vector<float> w = Run(o, w0, g, 3, 0.1f);
    // v1 = g, v2 = 1.9 g, v3 = 2.71 g; w = w0 - lr (v1 + v2 + v3)
    for (int i = 0; i < 3; ++i) CHECK(w[i] == Approx(w0[i] - 0.1 * 5.61 * g[i]).margin(1e-6));
  }
  SECTION("adam's first step moves each weight by lr against the gradient's sign") {
    o.kind = OptimizerKind::kAdam;
    std::vector<float> w = Run(o, w0, g, 1, 0.01f);
    CHECK(w[0] == Approx(w0[0] - 0.01));
    CHECK(w[1] == Approx(w0[1] + 0.01));
    CHECK(w[2] == Approx(w0[2]));
  }
  SECTION("adam matches a double-precision reference over many steps") {
    o.kind = OptimizerKind::kAdam;
    o.beta1 = 0.8f;
    o.beta2 = 0.99f;
    std::vector<float> w = Run(o, w0, g, 10, 0.05f);
    for (int i = 0; i < 3; ++i) {
      double wr = w0[i], m = 0, v = 0;
      for (int t = 1; t <= 10; ++t) {
        m = 0.8 * m + 0.2 * g[i];
        v = 0.99 * v + 0.01 * g[i] * g[i];
        const double mh = m / (1 - std::pow(0.8, t)), vh = v / (1 - std::pow(0.99, t));
        wr -= 0.05 * mh / (std::sqrt(vh) + 1e-8);
      }
      CHECK(w[i] == Approx(wr).epsilon(1e-5));
    }
  }
  SECTION("adagrad divides by the root of the summed squares") {
    o.kind = OptimizerKind::kAdagrad;
    std::vector<float> w = Run(o, w0, g, 2, 0.1f);
    // step1: g/|g|, step2: g/(sqrt(2)|g|)
    CHECK(w[0] == Approx(1.0 - 0.1 * (1 + 1 / std::sqrt(2.0))));
    CHECK(w[1] == Approx(-2.0 + 0.1 * (1 + 1 / std::sqrt(2.0))));
    CHECK(w[2] == Approx(0.5));
  }
}

TEST_CASE("Optimizer state is exposed for checkpoints", "[common]") {
  OptimizerOptions o;
  o.kind = OptimizerKind::kAdam;
  auto opt = Optimizer::Create(o, 5);
  CHECK(opt->State().size() == 2);
  CHECK(opt->State()[0].size() == 5);
  o.kind = OptimizerKind::kSgd;
  CHECK(Optimizer::Create(o, 5)->State().empty());
}

TEST_CASE("Learning-rate schedules", "[common]") {
  ScheduleOptions s;
  CHECK(ScheduledLearningRate(s, 0.1f, 7.5, 10) == Approx(0.1));
  s.kind = ScheduleKind::kStep;
  s.step_epochs = 3;
  s.gamma = 0.5;
  CHECK(ScheduledLearningRate(s, 0.1f, 2.9, 10) == Approx(0.1));
  CHECK(ScheduledLearningRate(s, 0.1f, 3.0, 10) == Approx(0.05));
  CHECK(ScheduledLearningRate(s, 0.1f, 6.5, 10) == Approx(0.025));
  s.kind = ScheduleKind::kCosine;
  s.min_lr_factor = 0.1;
  CHECK(ScheduledLearningRate(s, 0.1f, 0, 10) == Approx(0.1));
  CHECK(ScheduledLearningRate(s, 0.1f, 5, 10) == Approx(0.055));
  CHECK(ScheduledLearningRate(s, 0.1f, 10, 10) == Approx(0.01));
  s.warmup_epochs = 2;
  CHECK(ScheduledLearningRate(s, 0.1f, 1, 10) ==
        Approx(0.5 * ScheduledLearningRate({ScheduleKind::kCosine, 10, 0.1, 0.1, 0}, 0.1f, 1, 10)));
}

}  // namespace
}  // namespace pstrain
