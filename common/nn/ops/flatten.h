// flatten: an image as a flat vector; the values stay in their order (a
// copy). On values already flat the graph adds no node.
#pragma once

#include <memory>

#include "common/nn/ops/registry.h"

namespace pstrain {

class FlattenOp : public Op {
 public:
  explicit FlattenOp(ImageShape in) : in_(in) {}
  std::string Describe() const override;
  ValueShape output() const override { return ValueShape::Flat(in_.size()); }
  void Forward(const OpCall& c) override;
  void Backward(const OpCall& c) override;

 private:
  ImageShape in_;
};

StatusOr<std::unique_ptr<Op>> MakeFlatten(const OpContext& c);

}  // namespace pstrain
