// add: the sum of two or more values of one shape (a residual connection:
// {type = "add", inputs = ["block1", "conv3"]}). Backward adds the output's
// gradient to every input's.
#pragma once

#include <memory>

#include "common/nn/ops/registry.h"

namespace pstrain {

// y = sum of xs[k], n values each.
void AddForward(const std::vector<const float*>& xs, float* y, size_t n);

class AddOp : public Op {
 public:
  explicit AddOp(ValueShape shape) : shape_(shape) {}
  std::string Describe() const override;
  ValueShape output() const override { return shape_; }
  void Forward(const OpCall& c) override;
  void Backward(const OpCall& c) override;

 private:
  ValueShape shape_;
};

StatusOr<std::unique_ptr<Op>> MakeAdd(const OpContext& c);

}  // namespace pstrain
