// A sparse table holds rows of an embedding-like parameter, addressed by a
// 64-bit row id; only rows that are pushed or pulled exist. Rows are
// created on first use with a seeded uniform initialisation that depends
// only on (seed, table, row), so any server that owns a row creates the same
// values. Pushes are applied on arrival, row by row, with SGD or AdaGrad
// (the usual choices for embeddings; their state is per row).
// Owned by the server's single thread.
#pragma once

#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

#include "common/optimizer.h"
#include "common/status.h"

namespace pstrain {

class SparseTable {
 public:
  // Only kSgd and kAdagrad are accepted (Create returns an error otherwise).
  static StatusOr<SparseTable> Create(uint32_t table, uint32_t dim, const OptimizerOptions& opt,
                                      uint64_t seed, float init_scale = 0.05f);

  uint32_t dim() const { return dim_; }
  size_t row_count() const { return index_.size(); }

  // Copies rows (created if new) into out (rows.size() * dim floats).
  void Pull(std::span<const uint64_t> rows, float* out);
  // Applies grads (rows.size() * dim floats) to the rows. A row listed
  // twice gets both gradients.
  void Push(std::span<const uint64_t> rows, const float* grads, float lr);

 private:
  SparseTable(uint32_t table, uint32_t dim, const OptimizerOptions& opt, uint64_t seed,
              float init_scale);
  float* Row(uint64_t row);

  uint32_t table_;
  uint32_t dim_;
  OptimizerOptions opt_;
  uint64_t seed_;
  float init_scale_;
  std::unordered_map<uint64_t, size_t> index_;  // row id -> offset in values_
  std::vector<float> values_;
  std::vector<float> state_;  // adagrad: sum of squared gradients
};

}  // namespace pstrain
