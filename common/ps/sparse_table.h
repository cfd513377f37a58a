// A sparse table holds rows of an embedding-like parameter, addressed by a
// 64-bit row id; only rows that have been pushed exist. A row that does not
// exist reads as its initial value: a seeded uniform initialisation that
// depends only on (seed, table, row), so any server that owns a row (or a
// local table in a standalone run) starts it the same. Pushes are applied on
// arrival, row by row, with the job's optimizer, whose state is per row
// (SGD, momentum, AdaGrad, and Adam with a step count per row: "lazy Adam").
// Owned by one thread.
#pragma once

#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

#include "common/base/status.h"
#include "common/ckpt/checkpoint.h"
#include "common/nn/optimizer.h"

namespace pstrain {

class SparseTable {
 public:
  static StatusOr<SparseTable> Create(uint32_t table, uint32_t dim, const OptimizerOptions& opt,
                                      uint64_t seed, float init_scale = 0.05f);

  uint32_t dim() const { return dim_; }
  size_t row_count() const { return index_.size(); }
  // Memory the rows and their optimizer state take (values and state only).
  size_t bytes() const { return (values_.capacity() + state_.capacity()) * sizeof(float); }

  // Copies rows into out (rows.size() * dim floats); rows never pushed read
  // as their initial values and are not created.
  void Pull(std::span<const uint64_t> rows, float* out) const;
  // Applies grads (rows.size() * dim floats) to the rows. A row listed
  // twice gets both gradients.
  void Push(std::span<const uint64_t> rows, const float* grads, float lr);

  // Checkpoints: every row, its values and optimizer state, in row order.
  void Save(BinaryWriter& w) const;
  // A table Save wrote; refused if its width or optimizer differ from the
  // job's (opt).
  static StatusOr<SparseTable> Load(BinaryReader& r, const OptimizerOptions& opt, uint64_t seed);
  // The same with the optimizer kind it was saved with (other settings at
  // their defaults), for tools that read checkpoints without the job.
  static StatusOr<SparseTable> LoadSaved(BinaryReader& r);
  uint32_t table() const { return table_; }
  // The sum of RowDigest over the rows that exist (common/ps/weights_digest.h).
  uint64_t Digest() const;

 private:
  SparseTable(uint32_t table, uint32_t dim, const OptimizerOptions& opt, uint64_t seed,
              float init_scale);
  void Init(uint64_t row, float* out) const;
  // The row's offset in values_, created if new.
  size_t Row(uint64_t row);
  int state_per_value() const;
  // Load's body; opt null: the kind the table was saved with.
  static StatusOr<SparseTable> LoadWith(BinaryReader& r, const OptimizerOptions* opt,
                                        uint64_t seed);

  uint32_t table_;
  uint32_t dim_;
  OptimizerOptions opt_;
  uint64_t seed_;
  float init_scale_;
  std::unordered_map<uint64_t, size_t> index_;  // row id -> offset in values_
  std::vector<float> values_;
  std::vector<float> state_;    // per value: velocity | sum of squares | Adam's m and v
  std::vector<int64_t> steps_;  // adam: updates per row
};

}  // namespace pstrain
