// The embedding tables a server keeps rows of (sparse models): made on a
// client's first request for a table, at most kMaxTables of them, each with
// one row width. Owned by the server's thread; tested without sockets.
#pragma once

#include <cstdint>
#include <map>

#include "common/base/status.h"
#include "common/nn/optimizer_options.h"
#include "common/ps/sparse_table.h"

namespace pstrain {

class RowTables {
 public:
  // Embedding tables a job may have (a client naming another is refused).
  static constexpr uint32_t kMaxTables = 16;

  // New tables' rows start as SparseTable::Create makes them from `seed`
  // and are updated with `optimizer`.
  RowTables(OptimizerOptions optimizer, uint64_t seed) : optimizer_(optimizer), seed_(seed) {}

  // Table `table` with rows of `dim` floats, made on first use;
  // kInvalidArgument for a table beyond kMaxTables or another row width.
  StatusOr<SparseTable*> Get(uint32_t table, uint32_t dim);
  // A table restored from a checkpoint.
  void Restore(SparseTable t);

  const std::map<uint32_t, SparseTable>& tables() const { return tables_; }
  bool empty() const { return tables_.empty(); }

 private:
  OptimizerOptions optimizer_;
  uint64_t seed_;
  std::map<uint32_t, SparseTable> tables_;
};

}  // namespace pstrain
