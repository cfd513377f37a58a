#include "common/nn/ops/dropout.h"

#include <algorithm>

namespace pstrain {

void DropoutForward(const float* x, float* y, float* mask, size_t n, double rate,
                    uint64_t step_seed, uint64_t stream) {
  Rng rng(step_seed, stream);
  const float keep_scale = static_cast<float>(1.0 / (1.0 - rate));
  // Compare 53-bit uniforms against the rate in integer form: one draw a value.
  const uint64_t threshold = static_cast<uint64_t>(rate * 9007199254740992.0);  // 2^53
  for (size_t i = 0; i < n; ++i) {
    mask[i] = (rng.NextU64() >> 11) < threshold ? 0.0f : keep_scale;
    y[i] = x[i] * mask[i];
  }
}

void DropoutBackward(const float* dy, const float* mask, float* dx, size_t n, bool add) {
  StoreGrad(dx, n, add, [&](size_t i) { return dy[i] * mask[i]; });
}

Status CheckDropoutRate(double rate, const std::string& key, const std::string& shown) {
  if (rate >= 0.0 && rate < 1.0) return OkStatus();
  return InvalidArgument(key + " must be >= 0 and < 1, got " + shown);
}

std::string DropoutOp::Describe() const {
  std::string rate = std::to_string(rate_);
  rate.erase(rate.find_last_not_of('0') + 1);
  return "dropout " + rate;
}

size_t DropoutOp::ScratchBytes(int max_batch) {
  return static_cast<size_t>(max_batch) * shape_.size * sizeof(float);
}

void DropoutOp::Forward(const OpCall& c) {
  const size_t n = static_cast<size_t>(c.batch) * shape_.size;
  masked_ = c.training && rate_ > 0.0;
  if (!masked_) {
    std::copy(c.in[0], c.in[0] + n, c.out);
    return;
  }
  DropoutForward(c.in[0], c.out, reinterpret_cast<float*>(c.scratch), n, rate_, c.step_seed,
                 c.stream);
}

void DropoutOp::Backward(const OpCall& c) {
  if (c.din[0] == nullptr) return;
  const size_t n = static_cast<size_t>(c.batch) * shape_.size;
  if (!masked_) {
    StoreGrad(c.din[0], n, c.din_add[0], [&](size_t i) { return c.dout[i]; });
    return;
  }
  DropoutBackward(c.dout, reinterpret_cast<const float*>(c.scratch), c.din[0], n, c.din_add[0]);
}

StatusOr<std::unique_ptr<Op>> MakeDropout(const OpContext& c) {
  RETURN_IF_ERROR(CheckDropoutRate(c.spec.rate, c.at + ".rate", std::to_string(c.spec.rate)));
  return std::unique_ptr<Op>(std::make_unique<DropoutOp>(c.inputs[0], c.spec.rate));
}

}  // namespace pstrain
