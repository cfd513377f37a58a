#include <cmath>

#include "common/nn/ops/activations.h"

namespace pstrain {

void TanhForward(const float* x, float* y, size_t n) {
  for (size_t i = 0; i < n; ++i) y[i] = std::tanh(x[i]);
}

void TanhBackward(const float* x, const float* y, const float* dy, float* dx, size_t n, bool add) {
  (void)x;
  StoreGrad(dx, n, add, [&](size_t i) { return dy[i] * (1.0f - y[i] * y[i]); });
}

StatusOr<std::unique_ptr<Op>> MakeTanh(const OpContext& c) {
  return std::unique_ptr<Op>(
      std::make_unique<ElementwiseOp>("tanh", c.inputs[0], TanhForward, TanhBackward));
}

}  // namespace pstrain
