// embedding (sparse data): the weighted sum of the embeddings of a sparse
// sample's features, plus a bias: y = b + sum_e value_e * E[feature_e].
// E (features x dim) lives elsewhere (parameter servers, or the standalone
// trainer's table); only the bias {dim} is a parameter of the graph. The op
// reads the model's current SparseBatch and the RowBlock of its table.
#pragma once

#include <memory>

#include "common/nn/ops/registry.h"

namespace pstrain {

// A batch of sparse samples (LibSVM data) as an embedding reads it: sample
// i's features are entries [offsets[i], offsets[i+1]); entry e refers to
// row slot[e] of the batch's rows (its distinct features) with weight
// value[e]. Owned by the model; rows' values are filled in by the caller
// (from the parameter servers or a local table) before the forward pass.
struct SparseBatch {
  std::vector<int64_t> offsets;  // batch + 1
  std::vector<uint32_t> slot;
  std::vector<float> value;
  std::vector<uint64_t> rows;  // the distinct feature indices, ascending
};

// The rows of one embedding table that a batch touches: values[r x dim]
// for rows[r], and after the backward pass their gradients.
struct RowBlock {
  uint32_t table = 0;
  int dim = 0;
  FloatBuffer values;
  FloatBuffer grads;
};

// out[i x dim] = (accumulate ? out : 0) + sum over sample i's entries of
// value * values[slot].
void PoolRows(const SparseBatch& b, int batch, const RowBlock& rows, float* out, bool accumulate);
// grads of the batch's rows += sum over entries of value * dout[sample].
void ScatterRowGrads(const SparseBatch& b, int batch, const float* dout, RowBlock* rows);

class EmbeddingOp : public Op {
 public:
  EmbeddingOp(int64_t features, int dim, const SparseBatch* batch, RowBlock* rows)
      : features_(features), dim_(dim), batch_(batch), rows_(rows) {}
  std::string Describe() const override;
  ValueShape output() const override { return ValueShape::Flat(dim_); }
  std::vector<ParamDecl> Params() const override { return {{"bias", {dim_}}}; }
  void Forward(const OpCall& c) override;
  void Backward(const OpCall& c) override;

 private:
  int64_t features_;
  int dim_;
  const SparseBatch* batch_;
  RowBlock* rows_;
};

StatusOr<std::unique_ptr<Op>> MakeEmbedding(const OpContext& c);

}  // namespace pstrain
