#include "common/layers.h"

#include <algorithm>
#include <cmath>

#include "common/blas.h"
#include "common/check.h"

namespace pstrain {

DenseLayer::DenseLayer(int in_dim, int out_dim, bool fuse_relu, InitKind init)
    : Layer(in_dim, out_dim), fuse_relu_(fuse_relu), init_(init) {}

std::string DenseLayer::Describe() const {
  return "dense " + std::to_string(in_dim()) + "->" + std::to_string(out_dim()) +
         (fuse_relu_ ? " +relu" : "");
}

void DenseLayer::DeclareParams(const std::string& prefix, TensorLayout* layout) {
  weight_index_ = layout->Add(prefix + ".weight", {in_dim(), out_dim()});
  bias_index_ = layout->Add(prefix + ".bias", {out_dim()});
}

void DenseLayer::Bind(const TensorLayout& layout, float* params, float* grads) {
  w_ = params + layout[weight_index_].offset;
  b_ = params + layout[bias_index_].offset;
  dw_ = grads + layout[weight_index_].offset;
  db_ = grads + layout[bias_index_].offset;
}

void DenseLayer::InitParams(Rng& rng) {
  const size_t nw = static_cast<size_t>(in_dim()) * out_dim();
  const double fan_in = in_dim();
  switch (init_) {
    case InitKind::kHe: {
      const double sd = std::sqrt(2.0 / fan_in);
      for (size_t i = 0; i < nw; ++i) w_[i] = static_cast<float>(rng.Normal() * sd);
      std::fill(b_, b_ + out_dim(), 0.0f);
      break;
    }
    case InitKind::kTorch: {
      const float bound = static_cast<float>(1.0 / std::sqrt(fan_in));
      for (size_t i = 0; i < nw; ++i) w_[i] = rng.Uniform(-bound, bound);
      for (int i = 0; i < out_dim(); ++i) b_[i] = rng.Uniform(-bound, bound);
      break;
    }
    case InitKind::kXavier: {
      const float bound = static_cast<float>(std::sqrt(6.0 / (fan_in + out_dim())));
      for (size_t i = 0; i < nw; ++i) w_[i] = rng.Uniform(-bound, bound);
      std::fill(b_, b_ + out_dim(), 0.0f);
      break;
    }
  }
}

void DenseLayer::Forward(const float* in, float* out, int batch) {
  const int n = out_dim();
  // Bias first, then accumulate the product into it (beta = 1).
  for (int r = 0; r < batch; ++r) std::copy(b_, b_ + n, out + static_cast<size_t>(r) * n);
  Gemm(Trans::kNo, Trans::kNo, batch, n, in_dim(), 1.0f, in, in_dim(), w_, n, 1.0f, out, n);
  if (fuse_relu_) {
    const size_t total = static_cast<size_t>(batch) * n;
    for (size_t i = 0; i < total; ++i) out[i] = out[i] > 0.0f ? out[i] : 0.0f;
  }
}

void DenseLayer::Backward(const float* in, const float* out, float* dout, float* din, int batch) {
  const int n = out_dim();
  const size_t total = static_cast<size_t>(batch) * n;
  if (fuse_relu_) {
    for (size_t i = 0; i < total; ++i) dout[i] = out[i] > 0.0f ? dout[i] : 0.0f;
  }
  // dW[in x out] = in^T dout
  Gemm(Trans::kYes, Trans::kNo, in_dim(), n, batch, 1.0f, in, in_dim(), dout, n, 0.0f, dw_, n);
  std::fill(db_, db_ + n, 0.0f);
  for (int r = 0; r < batch; ++r) {
    const float* row = dout + static_cast<size_t>(r) * n;
    for (int c = 0; c < n; ++c) db_[c] += row[c];
  }
  if (din != nullptr) {
    // din[batch x in] = dout W^T
    Gemm(Trans::kNo, Trans::kYes, batch, in_dim(), n, 1.0f, dout, n, w_, n, 0.0f, din, in_dim());
  }
}

void ReluLayer::Forward(const float* in, float* out, int batch) {
  const size_t total = static_cast<size_t>(batch) * out_dim();
  for (size_t i = 0; i < total; ++i) out[i] = in[i] > 0.0f ? in[i] : 0.0f;
}

void ReluLayer::Backward(const float* in, const float* out, float* dout, float* din, int batch) {
  (void)out;
  if (din == nullptr) return;
  const size_t total = static_cast<size_t>(batch) * out_dim();
  for (size_t i = 0; i < total; ++i) din[i] = in[i] > 0.0f ? dout[i] : 0.0f;
}

LossResult SoftmaxCrossEntropy(const float* logits, const int32_t* labels, int batch, int classes,
                               float* dlogits, float grad_scale) {
  LossResult result;
  for (int r = 0; r < batch; ++r) {
    const float* z = logits + static_cast<size_t>(r) * classes;
    const int32_t label = labels[r];
    PSTRAIN_CHECK(label >= 0 && label < classes) << "label " << label << " classes " << classes;
    int arg = 0;
    float zmax = z[0];
    for (int c = 1; c < classes; ++c) {
      if (z[c] > zmax) {
        zmax = z[c];
        arg = c;
      }
    }
    if (arg == label) ++result.correct;
    double sum = 0;
    for (int c = 0; c < classes; ++c) sum += std::exp(static_cast<double>(z[c] - zmax));
    const double log_sum = std::log(sum);
    result.loss_sum += log_sum - static_cast<double>(z[label] - zmax);
    if (dlogits != nullptr) {
      float* d = dlogits + static_cast<size_t>(r) * classes;
      for (int c = 0; c < classes; ++c) {
        const double p = std::exp(static_cast<double>(z[c] - zmax) - log_sum);
        d[c] = static_cast<float>(p) * grad_scale;
      }
      d[label] -= grad_scale;
    }
  }
  return result;
}

}  // namespace pstrain
