// One row bucket of a sparse model (common/ps/keys.h: BucketOfRow): the
// embedding tables' rows of the bucket that a server holds, as primary or
// as backup, and which row pushes it has applied. A row push is named by
// the slot that computed it, the clock, and its part (its table and its
// place among that step's messages for the bucket), so a push that comes
// again -- resent to a promoted backup after its primary died, recomputed
// by a worker that took a dead one's slots, or duplicated on the way -- is
// applied once. The backup gets the primary's pushes in the order the
// primary applied them, so both hold the same rows, bit for bit.
// Owned by the server's thread; tested without sockets.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <vector>

#include "common/base/status.h"
#include "common/ckpt/checkpoint.h"
#include "paramserver/row_tables.h"

namespace pstrain {

class RowBucket {
 public:
  // Clocks each slot remembers pushes of; a push older than all of them
  // counts as applied (a worker never lags that far behind itself).
  static constexpr size_t kSeenClocks = 1 << 16;

  RowBucket(uint32_t id, OptimizerOptions optimizer, uint64_t seed)
      : id_(id), optimizer_(optimizer), seed_(seed), tables_(optimizer, seed) {}

  uint32_t id() const { return id_; }
  RowTables& tables() { return tables_; }
  const RowTables& tables() const { return tables_; }

  struct PushId {
    int slot = 0;
    int64_t clock = 0;
    uint32_t part = 0;
  };
  // True the first time `id` comes (and records it).
  bool FirstTime(const PushId& id);

  // Everything a new backup needs: the rows and the pushes seen.
  void SaveState(BinaryWriter& w) const;
  // Replaces this bucket's state with one SaveState wrote.
  Status LoadState(BinaryReader& r);
  // A checkpoint's rows file: the tables (every row, values and optimizer
  // state); restored with LoadRows (no pushes are remembered across a
  // checkpoint: it is taken between epochs).
  void SaveRows(BinaryWriter& w) const;
  Status LoadRows(BinaryReader& r);

 private:
  uint32_t id_;
  OptimizerOptions optimizer_;
  uint64_t seed_;
  RowTables tables_;
  std::map<int, std::map<int64_t, std::set<uint32_t>>> seen_;  // slot -> clock -> parts
  std::map<int, int64_t> forgotten_;  // slot -> the clocks below it were forgotten
};

}  // namespace pstrain
