#include "common/nn/ops/embedding.h"

#include <algorithm>

namespace pstrain {

void PoolRows(const SparseBatch& b, int batch, const RowBlock& rows, float* out, bool accumulate) {
  const int dim = rows.dim;
  const float* values = rows.values.data();
  for (int i = 0; i < batch; ++i) {
    float* __restrict o = out + static_cast<size_t>(i) * dim;
    if (!accumulate) std::fill(o, o + dim, 0.0f);
    for (int64_t e = b.offsets[i]; e < b.offsets[i + 1]; ++e) {
      const float v = b.value[e];
      const float* __restrict row = values + static_cast<size_t>(b.slot[e]) * dim;
      for (int d = 0; d < dim; ++d) o[d] += v * row[d];
    }
  }
}

void ScatterRowGrads(const SparseBatch& b, int batch, const float* dout, RowBlock* rows) {
  const int dim = rows->dim;
  float* grads = rows->grads.data();
  for (int i = 0; i < batch; ++i) {
    const float* __restrict g = dout + static_cast<size_t>(i) * dim;
    for (int64_t e = b.offsets[i]; e < b.offsets[i + 1]; ++e) {
      const float v = b.value[e];
      float* __restrict row = grads + static_cast<size_t>(b.slot[e]) * dim;
      for (int d = 0; d < dim; ++d) row[d] += v * g[d];
    }
  }
}

std::string EmbeddingOp::Describe() const {
  return "embedding " + std::to_string(features_) + "x" + std::to_string(dim_);
}

void EmbeddingOp::Forward(const OpCall& c) {
  for (int i = 0; i < c.batch; ++i) {
    std::copy(c.w[0], c.w[0] + dim_, c.out + static_cast<size_t>(i) * dim_);
  }
  PoolRows(*batch_, c.batch, *rows_, c.out, true);
}

void EmbeddingOp::Backward(const OpCall& c) {
  if (!c.dw_add[0]) std::fill(c.dw[0], c.dw[0] + dim_, 0.0f);
  for (int i = 0; i < c.batch; ++i) {
    for (int d = 0; d < dim_; ++d) c.dw[0][d] += c.dout[static_cast<size_t>(i) * dim_ + d];
  }
  ScatterRowGrads(*batch_, c.batch, c.dout, rows_);
}

StatusOr<std::unique_ptr<Op>> MakeEmbedding(const OpContext& c) {
  RETURN_IF_ERROR(c.AtLeast("dim", c.spec.dim, 1));
  if (c.sparse_batch == nullptr || c.rows == nullptr) {
    return InvalidArgument(c.at + " is an embedding layer, which only sparse (LibSVM) data " +
                           "takes, as the first layer");
  }
  return std::unique_ptr<Op>(
      std::make_unique<EmbeddingOp>(c.sparse_features, c.spec.dim, c.sparse_batch, c.rows));
}

}  // namespace pstrain
