#include <cmath>

#include "common/nn/ops/activations.h"

namespace pstrain {

void SigmoidForward(const float* x, float* y, size_t n) {
  for (size_t i = 0; i < n; ++i) y[i] = 1.0f / (1.0f + std::exp(-x[i]));
}

void SigmoidBackward(const float* x, const float* y, const float* dy, float* dx, size_t n,
                     bool add) {
  (void)x;
  StoreGrad(dx, n, add, [&](size_t i) { return dy[i] * y[i] * (1.0f - y[i]); });
}

StatusOr<std::unique_ptr<Op>> MakeSigmoid(const OpContext& c) {
  return std::unique_ptr<Op>(
      std::make_unique<ElementwiseOp>("sigmoid", c.inputs[0], SigmoidForward, SigmoidBackward));
}

}  // namespace pstrain
