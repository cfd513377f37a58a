// layer_norm: normalises each run of features (a flat sample, or an image's
// pixel across its channels) to mean 0 and variance 1, then scales and
// shifts it by learned weight (init 1) and bias (init 0) of one value per
// feature, as PyTorch's nn.LayerNorm(features) with eps 1e-5.
#pragma once

#include <memory>

#include "common/nn/ops/registry.h"

namespace pstrain {

inline constexpr float kLayerNormEps = 1e-5f;

// y[r] = (x[r] - mean) * rstd * w + b over `rows` rows of `n` features;
// mean and rstd of each row are kept for the backward pass.
void LayerNormForward(const float* x, const float* w, const float* b, float* y, float* mean,
                      float* rstd, int64_t rows, int64_t n);
// Adds to dw, db and dx (dx may be null; written when !add_dx).
void LayerNormBackward(const float* dy, const float* x, const float* w, const float* mean,
                       const float* rstd, float* dx, float* dw, float* db, int64_t rows, int64_t n,
                       bool add_dx);

class LayerNormOp : public Op {
 public:
  explicit LayerNormOp(ValueShape shape) : shape_(shape) {}
  std::string Describe() const override;
  ValueShape output() const override { return shape_; }
  std::vector<ParamDecl> Params() const override;
  void InitParams(Rng& rng, const std::vector<float*>& w) const override;
  size_t ScratchBytes(int max_batch) override;
  void Forward(const OpCall& c) override;
  void Backward(const OpCall& c) override;

 private:
  ValueShape shape_;
};

StatusOr<std::unique_ptr<Op>> MakeLayerNorm(const OpContext& c);

}  // namespace pstrain
