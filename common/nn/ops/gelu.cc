#include <cmath>

#include "common/nn/ops/activations.h"

namespace pstrain {

namespace {
constexpr double kInvSqrt2 = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;
}  // namespace

void GeluForward(const float* x, float* y, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    const double v = x[i];
    y[i] = static_cast<float>(0.5 * v * (1.0 + std::erf(v * kInvSqrt2)));
  }
}

void GeluBackward(const float* x, const float* y, const float* dy, float* dx, size_t n, bool add) {
  (void)y;
  StoreGrad(dx, n, add, [&](size_t i) {
    const double v = x[i];
    // Phi(x) + x phi(x)
    const double d =
        0.5 * (1.0 + std::erf(v * kInvSqrt2)) + v * kInvSqrt2Pi * std::exp(-0.5 * v * v);
    return static_cast<float>(d * dy[i]);
  });
}

StatusOr<std::unique_ptr<Op>> MakeGelu(const OpContext& c) {
  return std::unique_ptr<Op>(
      std::make_unique<ElementwiseOp>("gelu", c.inputs[0], GeluForward, GeluBackward));
}

}  // namespace pstrain
