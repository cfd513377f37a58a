// Parameter keys and how key ranges are spread over servers.
//
// Every tensor of a model is cut into blocks of at most kBlockFloats floats;
// block b of tensor t has the key (t << 32) | b. Keys sort in layout order,
// so a key range [begin, end) covers one interval of the model's flat
// parameter array (tensor.h), the zero padding between tensors included.
// That interval is what a server stores and what a push or pull carries.
//
// SliceKeys spreads the keys over S servers in contiguous ranges holding
// about the same number of bytes (ps-lite's range slicer). Pure functions;
// a KeyLayout is immutable once built.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/base/status.h"
#include "common/nn/tensor.h"

namespace pstrain {

using Key = uint64_t;
inline constexpr size_t kBlockFloats = 16384;  // 64 KiB
// The grid of pieces: a tensor's blocks are grouped kPieceBlocks at a time
// (128 KiB of float32). A BSP server applies, and answers pulls of, each
// piece on its own; clients cut their requests on the same grid. Smaller
// pieces pipeline a server's incoming gradients and outgoing weights more
// finely at the cost of more messages (1, 2 and 4 blocks measured within a
// few percent of each other on 1 Gbit/s links; 2 a hair ahead of 4).
inline constexpr size_t kPieceBlocks = 2;

inline Key MakeKey(uint32_t tensor, uint32_t block) {
  return (static_cast<Key>(tensor) << 32) | block;
}

struct KeyRange {
  Key begin = 0;
  Key end = 0;  // exclusive
  bool operator==(const KeyRange&) const = default;
};

// A contiguous interval of the flat parameter array, in floats.
struct FlatRange {
  size_t begin = 0;
  size_t end = 0;
  size_t size() const { return end - begin; }
  bool operator==(const FlatRange&) const = default;
};

class KeyLayout {
 public:
  explicit KeyLayout(const TensorLayout& tensors, size_t block_floats = kBlockFloats);

  struct Block {
    Key key;
    size_t flat_begin;
    size_t flat_end;
  };
  const std::vector<Block>& blocks() const { return blocks_; }
  Key end_key() const { return blocks_.empty() ? 0 : blocks_.back().key + 1; }
  KeyRange all() const { return {blocks_.empty() ? 0 : blocks_.front().key, end_key()}; }

  // Index of the first block whose key is >= key.
  size_t LowerBound(Key key) const;
  // True if [r.begin, r.end) starts and ends on block keys and is not empty.
  bool IsValidRange(const KeyRange& r) const;
  // OK for a valid range; else kInvalidArgument saying what is wrong: it is
  // reversed or empty, names a tensor the model lacks, or a block its tensor
  // lacks.
  Status CheckRange(const KeyRange& r) const;
  // The flat interval a valid range covers.
  FlatRange Flat(const KeyRange& r) const;
  // The smallest key range covering flat floats [begin, end) (e.g. a layer).
  KeyRange Covering(size_t flat_begin, size_t flat_end) const;
  // A valid range cut on the piece grid: at every tensor boundary and
  // before every block whose index in its tensor is a multiple of
  // kPieceBlocks, so every caller cuts a range alike.
  std::vector<KeyRange> Pieces(const KeyRange& r) const;
  // Intersection of two ranges (empty: begin == end).
  static KeyRange Intersect(const KeyRange& a, const KeyRange& b);

 private:
  std::vector<Block> blocks_;
};

// Splits all keys into `servers` contiguous ranges of about equal bytes.
// Every range is non-empty when there are at least as many blocks as
// servers; otherwise an error says so.
StatusOr<std::vector<KeyRange>> SliceKeys(const KeyLayout& layout, int servers);

// "[0:0, 0:7)", or "rows/3" for a row bucket.
std::string ToString(const KeyRange& r);

// Row buckets (sparse models). Row r of embedding table t belongs to bucket
// BucketOfRow(t, r, B) of B (the job's cluster.servers), whichever server
// holds the bucket now. A bucket is named by a one-key range of a tensor
// no model has, kRowBucketTensor, so the coordinator places, backs up,
// promotes and checkpoints buckets as it does dense key ranges.
inline constexpr uint32_t kRowBucketTensor = 0xffffffffu;
inline constexpr uint32_t kMaxRowBuckets = 1u << 16;
uint32_t BucketOfRow(uint32_t table, uint64_t row, uint32_t buckets);
inline KeyRange RowBucketRange(uint32_t bucket) {
  return {MakeKey(kRowBucketTensor, bucket), MakeKey(kRowBucketTensor, bucket) + 1};
}
inline bool IsRowBucket(const KeyRange& r) {
  return (r.begin >> 32) == kRowBucketTensor && r.end == r.begin + 1;
}
inline uint32_t RowBucketOf(const KeyRange& r) { return static_cast<uint32_t>(r.begin); }

}  // namespace pstrain
