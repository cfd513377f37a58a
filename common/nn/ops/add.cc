#include "common/nn/ops/add.h"

#include <algorithm>

namespace pstrain {

void AddForward(const std::vector<const float*>& xs, float* y, size_t n) {
  std::copy(xs[0], xs[0] + n, y);
  for (size_t k = 1; k < xs.size(); ++k) {
    const float* __restrict x = xs[k];
    for (size_t i = 0; i < n; ++i) y[i] += x[i];
  }
}

std::string AddOp::Describe() const { return "add " + shape_.Text(); }

void AddOp::Forward(const OpCall& c) {
  AddForward(c.in, c.out, static_cast<size_t>(c.batch) * shape_.size);
}

void AddOp::Backward(const OpCall& c) {
  const size_t n = static_cast<size_t>(c.batch) * shape_.size;
  for (size_t k = 0; k < c.din.size(); ++k) {
    if (c.din[k] == nullptr) continue;
    StoreGrad(c.din[k], n, c.din_add[k], [&](size_t i) { return c.dout[i]; });
  }
}

StatusOr<std::unique_ptr<Op>> MakeAdd(const OpContext& c) {
  for (size_t k = 1; k < c.inputs.size(); ++k) {
    if (!(c.inputs[k] == c.inputs[0])) {
      return InvalidArgument(c.at + ": an add needs inputs of one shape, but input 0 is " +
                             c.inputs[0].Text() + " and input " + std::to_string(k) + " is " +
                             c.inputs[k].Text());
    }
  }
  return std::unique_ptr<Op>(std::make_unique<AddOp>(c.inputs[0]));
}

}  // namespace pstrain
