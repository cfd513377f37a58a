// dropout: in training, zeroes each value with probability `rate` and
// scales the rest by 1/(1-rate) (inverted dropout), the mask drawn from the
// step's seed and the node's stream alone; in evaluation, the identity.
#pragma once

#include <memory>

#include "common/nn/ops/registry.h"

namespace pstrain {

// mask[i] = 0 or 1/(1-rate) from Rng(step_seed, stream), y = x * mask.
void DropoutForward(const float* x, float* y, float* mask, size_t n, double rate,
                    uint64_t step_seed, uint64_t stream);
// dx += dy * mask (written when !add).
void DropoutBackward(const float* dy, const float* mask, float* dx, size_t n, bool add);

// OK when 0 <= rate < 1; else an error naming `key` and showing the value
// as `shown` (the job-file parser and the graph builder both check here).
Status CheckDropoutRate(double rate, const std::string& key, const std::string& shown);

class DropoutOp : public Op {
 public:
  DropoutOp(ValueShape shape, double rate) : shape_(shape), rate_(rate) {}
  std::string Describe() const override;
  ValueShape output() const override { return shape_; }
  size_t ScratchBytes(int max_batch) override;
  void Forward(const OpCall& c) override;
  void Backward(const OpCall& c) override;

 private:
  ValueShape shape_;
  double rate_;
  bool masked_ = false;  // the last Forward drew a mask (training, rate > 0)
};

StatusOr<std::unique_ptr<Op>> MakeDropout(const OpContext& c);

}  // namespace pstrain
