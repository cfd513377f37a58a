#include "paramserver/row_tables.h"

#include <string>
#include <utility>

namespace pstrain {

StatusOr<SparseTable*> RowTables::Get(uint32_t table, uint32_t dim) {
  auto it = tables_.find(table);
  if (it == tables_.end() && table >= kMaxTables) {
    return InvalidArgument("sparse table " + std::to_string(table) + " does not exist (at most " +
                           std::to_string(kMaxTables) + " tables)");
  }
  if (it == tables_.end()) {
    ASSIGN_OR_RETURN(SparseTable t, SparseTable::Create(table, dim, optimizer_, seed_));
    it = tables_.emplace(table, std::move(t)).first;
  }
  if (it->second.dim() != dim) {
    return InvalidArgument("sparse table " + std::to_string(table) + " has rows of " +
                           std::to_string(it->second.dim()) + " floats, not " +
                           std::to_string(dim));
  }
  return &it->second;
}

void RowTables::Restore(SparseTable t) {
  const uint32_t id = t.table();
  tables_.emplace(id, std::move(t));
}

}  // namespace pstrain
