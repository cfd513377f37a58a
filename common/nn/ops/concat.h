// concat: joins values along their last dimension: flat values end to end,
// images of one height and width channel by channel (a U-Net's skip).
#pragma once

#include <memory>

#include "common/nn/ops/registry.h"

namespace pstrain {

// Per sample and position, the features of xs[0], then xs[1], ...: input k
// has widths[k] features at each of `positions` positions.
void ConcatForward(const std::vector<const float*>& xs, const std::vector<int64_t>& widths,
                   int64_t positions, int batch, float* y);
// The inverse: each input's share of dy, added to dxs[k] (written when
// !add[k]; null: skipped).
void ConcatBackward(const float* dy, const std::vector<int64_t>& widths, int64_t positions,
                    int batch, const std::vector<float*>& dxs, const std::vector<uint8_t>& add);

class ConcatOp : public Op {
 public:
  ConcatOp(std::vector<int64_t> widths, ValueShape out) : widths_(std::move(widths)), out_(out) {}
  std::string Describe() const override;
  ValueShape output() const override { return out_; }
  void Forward(const OpCall& c) override;
  void Backward(const OpCall& c) override;

 private:
  std::vector<int64_t> widths_;
  ValueShape out_;
};

StatusOr<std::unique_ptr<Op>> MakeConcat(const OpContext& c);

}  // namespace pstrain
