// What a server reports of its state when the coordinator asks (after
// each epoch, and for the final result): the sums it checks and the samples
// its ranges applied. No sockets: unit-tested on shards made in the test.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "common/ps/sparse_table.h"
#include "paramserver/range_shard.h"

namespace pstrain {

struct ShardStats {
  double sum_squares = 0;     // of every dense weight
  uint64_t digest = 0;        // weights digest of the dense ranges and the rows
  int64_t digest_blocks = 0;  // dense blocks the digest covers
  int64_t updates = 0;        // updates applied
  // The fewest samples any piece applied over the clocks asked about, and
  // their hash; samples_agree says every piece applied the same set.
  int64_t min_samples = -1;
  uint64_t sample_hash = 0;
  bool samples_agree = true;
  int64_t sparse_rows = 0, sparse_bytes = 0;
};

// Sums over `shards` and `sparse`; takes (and forgets) each piece's sample
// counts of clocks [clock_begin, clock_end).
ShardStats GatherStats(const std::vector<std::unique_ptr<RangeShard>>& shards,
                       const std::vector<const SparseTable*>& sparse, int64_t clock_begin,
                       int64_t clock_end);

}  // namespace pstrain
