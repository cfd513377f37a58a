#include "common/nn/ops/layer_norm.h"

#include <algorithm>
#include <cmath>

namespace pstrain {

void LayerNormForward(const float* x, const float* w, const float* b, float* y, float* mean,
                      float* rstd, int64_t rows, int64_t n) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * n;
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += xr[i];
    const double m = sum / static_cast<double>(n);
    double var = 0;
    for (int64_t i = 0; i < n; ++i) var += (xr[i] - m) * (xr[i] - m);
    const double s = 1.0 / std::sqrt(var / static_cast<double>(n) + kLayerNormEps);
    float* yr = y + r * n;
    for (int64_t i = 0; i < n; ++i) yr[i] = static_cast<float>((xr[i] - m) * s) * w[i] + b[i];
    mean[r] = static_cast<float>(m);
    rstd[r] = static_cast<float>(s);
  }
}

void LayerNormBackward(const float* dy, const float* x, const float* w, const float* mean,
                       const float* rstd, float* dx, float* dw, float* db, int64_t rows, int64_t n,
                       bool add_dx) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * n;
    const float* dyr = dy + r * n;
    // With xhat = (x - mean) rstd and g = dy w:
    // dx = rstd (g - mean(g) - xhat mean(g xhat)).
    double g_mean = 0, gx_mean = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double xhat = (xr[i] - mean[r]) * rstd[r];
      const double g = static_cast<double>(dyr[i]) * w[i];
      g_mean += g;
      gx_mean += g * xhat;
      dw[i] += static_cast<float>(dyr[i] * xhat);
      db[i] += dyr[i];
    }
    if (dx == nullptr) continue;
    g_mean /= static_cast<double>(n);
    gx_mean /= static_cast<double>(n);
    StoreGrad(dx + r * n, static_cast<size_t>(n), add_dx, [&](size_t i) {
      const double xhat = (xr[i] - mean[r]) * rstd[r];
      const double g = static_cast<double>(dyr[i]) * w[i];
      return static_cast<float>(rstd[r] * (g - g_mean - xhat * gx_mean));
    });
  }
}

std::string LayerNormOp::Describe() const { return "layer_norm " + shape_.Text(); }

std::vector<ParamDecl> LayerNormOp::Params() const {
  return {{"weight", {shape_.features()}}, {"bias", {shape_.features()}}};
}

void LayerNormOp::InitParams(Rng& rng, const std::vector<float*>& w) const {
  (void)rng;
  std::fill(w[0], w[0] + shape_.features(), 1.0f);
  std::fill(w[1], w[1] + shape_.features(), 0.0f);
}

size_t LayerNormOp::ScratchBytes(int max_batch) {
  return 2 * static_cast<size_t>(max_batch) * shape_.positions() * sizeof(float);
}

void LayerNormOp::Forward(const OpCall& c) {
  const int64_t rows = c.batch * shape_.positions();
  float* mean = reinterpret_cast<float*>(c.scratch);
  LayerNormForward(c.in[0], c.w[0], c.w[1], c.out, mean, mean + rows, rows, shape_.features());
}

void LayerNormOp::Backward(const OpCall& c) {
  const int64_t rows = c.batch * shape_.positions();
  const int64_t n = shape_.features();
  const float* mean = reinterpret_cast<const float*>(c.scratch);
  for (size_t k = 0; k < 2; ++k) {
    if (!c.dw_add[k]) std::fill(c.dw[k], c.dw[k] + n, 0.0f);
  }
  LayerNormBackward(c.dout, c.in[0], c.w[0], mean, mean + rows, c.din[0], c.dw[0], c.dw[1], rows, n,
                    c.din_add[0]);
}

StatusOr<std::unique_ptr<Op>> MakeLayerNorm(const OpContext& c) {
  return std::unique_ptr<Op>(std::make_unique<LayerNormOp>(c.inputs[0]));
}

}  // namespace pstrain
