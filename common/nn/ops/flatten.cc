#include "common/nn/ops/flatten.h"

#include <algorithm>

namespace pstrain {

std::string FlattenOp::Describe() const {
  return "flatten " + in_.Text() + "->" + std::to_string(in_.size());
}

void FlattenOp::Forward(const OpCall& c) {
  std::copy(c.in[0], c.in[0] + static_cast<size_t>(c.batch) * in_.size(), c.out);
}

void FlattenOp::Backward(const OpCall& c) {
  if (c.din[0] == nullptr) return;
  const size_t n = static_cast<size_t>(c.batch) * in_.size();
  StoreGrad(c.din[0], n, c.din_add[0], [&](size_t i) { return c.dout[i]; });
}

StatusOr<std::unique_ptr<Op>> MakeFlatten(const OpContext& c) {
  return std::unique_ptr<Op>(std::make_unique<FlattenOp>(c.inputs[0].image));
}

}  // namespace pstrain
