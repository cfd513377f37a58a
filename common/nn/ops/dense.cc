#include "common/nn/ops/dense.h"

#include <algorithm>
#include <cmath>

#include "common/nn/blas.h"

namespace pstrain {

void DenseForward(const float* x, const float* w, const float* b, float* y, int rows, int fan_in,
                  int units, bool relu) {
  const int n = units;
  Gemm(Trans::kNo, Trans::kNo, rows, n, fan_in, 1.0f, x, fan_in, w, n, 0.0f, y, n);
  // Bias and ReLU in one pass over the product.
  const float* __restrict bias = b;
  for (int r = 0; r < rows; ++r) {
    float* __restrict row = y + static_cast<size_t>(r) * n;
    if (relu) {
      for (int c = 0; c < n; ++c) row[c] = std::max(row[c] + bias[c], 0.0f);
    } else {
      for (int c = 0; c < n; ++c) row[c] += bias[c];
    }
  }
}

void ReluMask(const float* y, float* dy, size_t n) {
  for (size_t i = 0; i < n; ++i) dy[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

void DenseBackwardWeights(const float* x, const float* dy, float* dw, float* db, int rows,
                          int fan_in, int units, float beta) {
  const int n = units;
  Gemm(Trans::kYes, Trans::kNo, fan_in, n, rows, 1.0f, x, fan_in, dy, n, beta, dw, n);
  if (beta == 0.0f) std::fill(db, db + n, 0.0f);
  for (int r = 0; r < rows; ++r) {
    const float* row = dy + static_cast<size_t>(r) * n;
    for (int c = 0; c < n; ++c) db[c] += row[c];
  }
}

void DenseBackwardInput(const float* dy, const float* w, float* dx, int rows, int fan_in, int units,
                        float beta) {
  Gemm(Trans::kNo, Trans::kYes, rows, fan_in, units, 1.0f, dy, units, w, units, beta, dx, fan_in);
}

void InitAffine(InitKind init, Rng& rng, float* w, float* b, int fan_in, int units, int fan_out) {
  const size_t nw = static_cast<size_t>(fan_in) * units;
  const double fan = fan_in;
  switch (init) {
    case InitKind::kHe: {
      const double sd = std::sqrt(2.0 / fan);
      for (size_t i = 0; i < nw; ++i) w[i] = static_cast<float>(rng.Normal() * sd);
      std::fill(b, b + units, 0.0f);
      break;
    }
    case InitKind::kTorch: {
      const float bound = static_cast<float>(1.0 / std::sqrt(fan));
      for (size_t i = 0; i < nw; ++i) w[i] = rng.Uniform(-bound, bound);
      for (int i = 0; i < units; ++i) b[i] = rng.Uniform(-bound, bound);
      break;
    }
    case InitKind::kXavier: {
      const float bound = static_cast<float>(std::sqrt(6.0 / (fan + fan_out)));
      for (size_t i = 0; i < nw; ++i) w[i] = rng.Uniform(-bound, bound);
      std::fill(b, b + units, 0.0f);
      break;
    }
  }
}

std::string DenseOp::Describe() const {
  return "dense " + std::to_string(in_) + "->" + std::to_string(units_) + (relu_ ? " +relu" : "");
}

std::vector<ParamDecl> DenseOp::Params() const {
  return {{"weight", {in_, units_}}, {"bias", {units_}}};
}

void DenseOp::InitParams(Rng& rng, const std::vector<float*>& w) const {
  InitAffine(init_, rng, w[0], w[1], in_, units_, units_);
}

void DenseOp::Forward(const OpCall& c) {
  DenseForward(c.in[0], c.w[0], c.w[1], c.out, c.batch, in_, units_, relu_);
}

void DenseOp::Backward(const OpCall& c) {
  if (relu_) ReluMask(c.out, c.dout, static_cast<size_t>(c.batch) * units_);
  DenseBackwardWeights(c.in[0], c.dout, c.dw[0], c.dw[1], c.batch, in_, units_,
                       c.dw_add[0] ? 1.0f : 0.0f);
  if (c.din[0] != nullptr) {
    DenseBackwardInput(c.dout, c.w[0], c.din[0], c.batch, in_, units_, c.din_add[0] ? 1.0f : 0.0f);
  }
}

StatusOr<std::unique_ptr<Op>> MakeDense(const OpContext& c) {
  RETURN_IF_ERROR(c.AtLeast("units", c.spec.units, 1));
  return std::unique_ptr<Op>(
      std::make_unique<DenseOp>(static_cast<int>(c.inputs[0].size), c.spec.units, c.spec.init));
}

}  // namespace pstrain
