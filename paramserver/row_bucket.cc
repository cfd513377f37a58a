#include "paramserver/row_bucket.h"

#include <string>
#include <utility>

namespace pstrain {

bool RowBucket::FirstTime(const PushId& id) {
  auto low = forgotten_.find(id.slot);
  if (low != forgotten_.end() && id.clock < low->second) return false;
  auto& clocks = seen_[id.slot];
  if (!clocks[id.clock].insert(id.part).second) return false;
  if (clocks.size() > kSeenClocks) {
    forgotten_[id.slot] = std::next(clocks.begin())->first;
    clocks.erase(clocks.begin());
  }
  return true;
}

void RowBucket::SaveRows(BinaryWriter& w) const {
  w.U32(static_cast<uint32_t>(tables_.tables().size()));
  for (const auto& [id, t] : tables_.tables()) t.Save(w);
}

Status RowBucket::LoadRows(BinaryReader& r) {
  RowTables tables(optimizer_, seed_);
  ASSIGN_OR_RETURN(const uint32_t count, r.U32());
  if (count > RowTables::kMaxTables) {
    return DataLoss("rows of " + std::to_string(count) + " tables (at most " +
                    std::to_string(RowTables::kMaxTables) + ")");
  }
  for (uint32_t i = 0; i < count; ++i) {
    ASSIGN_OR_RETURN(SparseTable t, SparseTable::Load(r, optimizer_, seed_));
    tables.Restore(std::move(t));
  }
  tables_ = std::move(tables);
  return OkStatus();
}

void RowBucket::SaveState(BinaryWriter& w) const {
  SaveRows(w);
  w.U32(static_cast<uint32_t>(seen_.size()));
  for (const auto& [slot, clocks] : seen_) {
    w.I64(slot);
    auto low = forgotten_.find(slot);
    w.I64(low == forgotten_.end() ? 0 : low->second);
    w.U64(clocks.size());
    for (const auto& [clock, parts] : clocks) {
      w.I64(clock);
      w.U32(static_cast<uint32_t>(parts.size()));
      for (uint32_t p : parts) w.U32(p);
    }
  }
}

Status RowBucket::LoadState(BinaryReader& r) {
  RETURN_IF_ERROR(LoadRows(r));
  seen_.clear();
  forgotten_.clear();
  ASSIGN_OR_RETURN(const uint32_t slots, r.U32());
  for (uint32_t s = 0; s < slots; ++s) {
    ASSIGN_OR_RETURN(const int64_t slot, r.I64());
    ASSIGN_OR_RETURN(const int64_t low, r.I64());
    ASSIGN_OR_RETURN(const uint64_t clocks, r.U64());
    if (clocks > kSeenClocks) return DataLoss("a row bucket's state remembers too many clocks");
    auto& seen = seen_[static_cast<int>(slot)];
    if (low != 0) forgotten_[static_cast<int>(slot)] = low;
    for (uint64_t c = 0; c < clocks; ++c) {
      ASSIGN_OR_RETURN(const int64_t clock, r.I64());
      ASSIGN_OR_RETURN(const uint32_t parts, r.U32());
      auto& set = seen[clock];
      for (uint32_t p = 0; p < parts; ++p) {
        ASSIGN_OR_RETURN(const uint32_t part, r.U32());
        set.insert(part);
      }
    }
  }
  return OkStatus();
}

}  // namespace pstrain
