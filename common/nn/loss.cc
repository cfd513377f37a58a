#include "common/nn/loss.h"

#include <algorithm>
#include <cmath>

#include "common/base/check.h"

namespace pstrain {

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

LossResult SigmoidCrossEntropy(const float* logits, const int32_t* labels, int batch,
                               float* dlogits, float grad_scale) {
  LossResult result;
  for (int r = 0; r < batch; ++r) {
    const double z = logits[r];
    const int32_t y = labels[r];
    PSTRAIN_CHECK(y == 0 || y == 1) << "binary label " << y;
    if ((z > 0) == (y == 1)) ++result.correct;
    // max(z, 0) - z y + log(1 + exp(-|z|)): stable for any z.
    result.loss_sum += std::max(z, 0.0) - z * y + std::log1p(std::exp(-std::abs(z)));
    if (dlogits != nullptr) {
      const double p = 1.0 / (1.0 + std::exp(-z));
      dlogits[r] = static_cast<float>((p - y) * grad_scale);
    }
  }
  return result;
}

}  // namespace pstrain
