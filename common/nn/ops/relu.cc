#include "common/nn/ops/activations.h"

namespace pstrain {

void ReluForward(const float* x, float* y, size_t n) {
  for (size_t i = 0; i < n; ++i) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void ReluBackward(const float* x, const float* y, const float* dy, float* dx, size_t n, bool add) {
  (void)y;
  StoreGrad(dx, n, add, [&](size_t i) { return x[i] > 0.0f ? dy[i] : 0.0f; });
}

StatusOr<std::unique_ptr<Op>> MakeRelu(const OpContext& c) {
  return std::unique_ptr<Op>(
      std::make_unique<ElementwiseOp>("relu", c.inputs[0], ReluForward, ReluBackward));
}

}  // namespace pstrain
