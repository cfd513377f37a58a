#include "paramserver/shard_stats.h"

namespace pstrain {

ShardStats GatherStats(const std::vector<std::unique_ptr<RangeShard>>& shards,
                       const std::vector<const SparseTable*>& sparse, int64_t clock_begin,
                       int64_t clock_end) {
  ShardStats r;
  for (const auto& s : shards) {
    r.sum_squares += s->SumSquares();
    r.digest += s->Digest();
    r.digest_blocks += static_cast<int64_t>(s->block_count());
    r.updates += s->updates_applied();
    // Every piece saw every (slot, clock): they must agree.
    for (const auto& piece : s->pieces()) {
      const DenseShard::SampleStats st = piece->TakeSampleStats(clock_begin, clock_end);
      if (r.min_samples >= 0 && (st.samples != r.min_samples || st.hash != r.sample_hash)) {
        r.samples_agree = false;
      }
      if (r.min_samples < 0 || st.samples < r.min_samples) {
        r.min_samples = st.samples;
        r.sample_hash = st.hash;
      }
    }
  }
  for (const SparseTable* t : sparse) {
    r.sparse_rows += static_cast<int64_t>(t->row_count());
    r.sparse_bytes += static_cast<int64_t>(t->bytes());
    r.digest += t->Digest();
  }
  return r;
}

}  // namespace pstrain
