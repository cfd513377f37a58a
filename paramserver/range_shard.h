// A RangeShard holds one key range a server owns or backs up, either as one
// DenseShard or cut on the key layout's piece grid (KeyLayout::Pieces:
// tensor boundaries, then every kPieceBlocks blocks) into several. Cut, a
// BSP server applies each piece's update as soon as every slot has pushed
// that piece for the clock, and answers a pull of it as soon as the piece
// reaches the wanted version: gradients still coming in for one piece while
// the weights of another go out. Each piece is a plain DenseShard, so the
// arithmetic (slot-order sums, one apply per clock, Adam's step numbers) is
// the same as uncut, value for value.
//
// Requests that span pieces are split: a push's payload is shared,
// zero-copy, by its pieces; a pull is answered with one frame per piece (and
// zeros for the padding between tensors). A checkpoint holds the range in
// DenseShard's format whatever the cut, so it restores cut or uncut and
// tools read it unchanged.
//
// Owned by the server's single thread.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/ps/compress.h"
#include "paramserver/dense_shard.h"

namespace pstrain {

class RangeShard {
 public:
  // `initial` holds the range's starting weights (layout.Flat(keys).size()
  // floats); `cut`: one DenseShard per piece of the grid, else one in all.
  RangeShard(const KeyLayout& layout, KeyRange keys, std::span<const float> initial,
             const ShardOptions& options, bool cut);

  const KeyRange& keys() const { return keys_; }
  const std::vector<std::unique_ptr<DenseShard>>& pieces() const { return pieces_; }

  // DenseShard::Push for each piece that `part` (a valid range within
  // keys()) touches; the first error, if any.
  Status Push(int slot, int64_t clock, const KeyRange& part, Frame payload, int64_t samples,
              uint64_t sample_hash, float lr);
  bool PullReady(const KeyRange& part, int64_t clock) const;
  // kInvalidArgument when a pull of `part` at `clock` could never be answered
  // (beyond a touched piece's NewestWaitableClock).
  Status CheckPullClock(const KeyRange& part, int64_t clock) const;
  // Appends the current weights of `part`, coded as `wire` (float32: frames
  // that share the pieces' snapshots, no copy).
  void AppendWeights(const KeyRange& part, WireType wire, Message* frames);
  // On a backup: an update of one piece (the primary is cut alike).
  Status ApplyReplicated(const DenseShard::Update& u);

  double SumSquares() const;
  // The weights digest of the range's blocks, and how many blocks it has.
  uint64_t Digest() const;
  size_t block_count() const;
  int64_t updates_applied() const;
  void Save(BinaryWriter& w) const;
  Status Load(BinaryReader& r);
  // Checkpoint cuts (DenseShard::AddCut) on every piece: false if one is
  // past `clock` already.
  bool AddCut(int64_t clock);
  // Has every piece its image of `clock`?
  bool CutTaken(int64_t clock) const;
  // The pieces' images of `clock` (CutTaken), moved out: what Save would
  // have written then (DenseShard::SaveImages).
  std::vector<DenseShard::Image> TakeCut(int64_t clock);
  void DropCut(int64_t clock);
  void ClearCuts();
  // What a pull of `part` at `clock` waits for, for logs.
  std::string Waiting(const KeyRange& part, int64_t clock) const;

 private:
  // Pieces [first, last) that hold keys of `part`.
  std::pair<size_t, size_t> Touched(const KeyRange& part) const;

  const KeyLayout& layout_;
  KeyRange keys_;
  std::vector<std::unique_ptr<DenseShard>> pieces_;
  std::shared_ptr<const FloatBuffer> zeros_;  // the padding between tensors, for pulls
};

}  // namespace pstrain
