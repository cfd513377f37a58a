// The losses a model is trained with, over the logits of a batch.
#pragma once

#include <cstdint>

namespace pstrain {

struct LossResult {
  double loss_sum = 0;  // sum over the batch of -log p(label)
  int64_t correct = 0;  // rows whose arg-max equals the label
};

// Softmax cross-entropy over logits[batch x classes]. When dlogits is not
// null it receives d(mean loss)/dlogits, i.e. (softmax - onehot) * grad_scale
// where grad_scale is normally 1/batch. Labels must be in [0, classes).
LossResult SoftmaxCrossEntropy(const float* logits, const int32_t* labels, int batch, int classes,
                               float* dlogits, float grad_scale);

// The logistic loss of one logit per row (binary tasks, labels 0 or 1):
// -log sigmoid(z) for 1, -log(1 - sigmoid(z)) for 0; dlogits as above
// ((sigmoid - label) * grad_scale); `correct` counts z > 0 == label.
LossResult SigmoidCrossEntropy(const float* logits, const int32_t* labels, int batch,
                               float* dlogits, float grad_scale);

}  // namespace pstrain
