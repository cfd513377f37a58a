// A DenseShard owns one key range of the model's parameters on a server:
// the weights, the optimizer state, and the bookkeeping of the consistency
// model. Gradients are contributed by *slots* (hand-out positions, one per
// configured worker); a live worker computes one or more slots, and when a
// worker dies another takes its slots over, so the arithmetic of the job
// does not depend on which process computed what.
//   BSP: the parts of every slot for clock t are kept (zero-copy, as the
//        frames that carried them) until all slots have sent theirs, then
//        summed in slot order (deterministic), applied once, and the version
//        becomes t + 1. Pulls of version t + 1 wait until then.
//   ASP: each part is applied on arrival; pulls are answered at once.
//   SSP: like ASP, but a pull for clock c waits until every slot has pushed
//        all of clock c - staleness - 1.
// Every (slot, clock, part) is applied at most once: a duplicate (a retry, a
// reordered copy, or a substitute recomputing a dead worker's step) is
// acknowledged and dropped. The samples behind each (slot, clock) are
// counted once, so the coordinator can check every sample was used once.
// Owned by the server's single thread.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <vector>

#include "common/base/buffer_pool.h"
#include "common/base/status.h"
#include "common/ckpt/checkpoint.h"
#include "common/job/choices.h"
#include "common/net/zmq_socket.h"
#include "common/nn/optimizer.h"
#include "common/nn/tensor.h"
#include "common/ps/compress.h"
#include "common/ps/keys.h"

namespace pstrain {

struct ShardOptions {
  Consistency consistency = Consistency::kBsp;
  int staleness = 0;  // ssp
  int slots = 1;      // gradient contributions per step (configured workers)
  OptimizerOptions optimizer;
};

// How far (in steps) an ASP/SSP push may run ahead of its slot's completed
// clock; further pushes are refused.
inline constexpr int64_t kMaxClockLead = 1024;
// How far past the weights a shard has a pull may ask (see
// DenseShard::NewestWaitableClock).
inline constexpr int64_t kPullWindow = 4;

class DenseShard {
 public:
  // Owns the valid key range `keys` of `layout` (which must outlive it);
  // `initial` holds the range's starting weights (layout.Flat(keys).size()
  // floats).
  DenseShard(const KeyLayout& layout, KeyRange keys, std::span<const float> initial,
             const ShardOptions& options);

  const KeyRange& keys() const { return keys_; }
  const FlatRange& flat() const { return flat_; }
  int64_t version() const { return version_; }

  enum class PushOutcome { kApplied, kBuffered, kDuplicate };
  // A gradient for the keys `part` (a valid range within this shard's) from
  // `slot` at `clock`. `payload` holds the part's floats, or nothing for an
  // empty step (samples == 0). samples/sample_hash describe the whole
  // (slot, clock).
  StatusOr<PushOutcome> Push(int slot, int64_t clock, const KeyRange& part, Frame payload,
                             int64_t samples, uint64_t sample_hash, float lr);

  // May a pull of `clock` be answered now? With a backup, only weights the
  // backup has too are served.
  bool PullReady(int64_t clock) const;
  // The newest clock a pull may wait for: BSP, kPullWindow past the version;
  // SSP, past the slowest slot's clock plus the staleness. No client asks
  // for more (a worker asks for the weights of its next step), and such a
  // pull would wait for pushes that never come.
  int64_t NewestWaitableClock() const;

  // Replication (--replication 2). An applied update, as the primary sends
  // it to its backup.
  struct Update {
    KeyRange part;          // the keys updated
    const float* gradient;  // valid during the callback only; null: nothing to add
    float lr;
    int64_t step;     // the optimizer's step number
    int64_t version;  // the shard's version after the update
    int64_t clock;    // the clock whose samples it carries
    int slot;         // -1: the sum of every slot (BSP)
    int64_t samples;
    uint64_t sample_hash;
  };
  // Called for every update this shard applies while it has a backup.
  void SetReplication(std::function<void(const Update&)> send) {
    replicate_ = std::move(send);
    if (!replicate_) durable_version_ = version_;
  }
  bool replicated() const { return static_cast<bool>(replicate_); }
  // The backup has applied updates up to `version`.
  void Acknowledged(int64_t version) { durable_version_ = std::max(durable_version_, version); }
  // On the backup: applies an update its primary applied.
  Status ApplyReplicated(const Update& u);

  // The current weights, immutable, shared with replies in flight.
  std::shared_ptr<const std::vector<float>> Snapshot();
  // The current weights coded as `wire` (kFloat16 or kBfloat16), coded once
  // per version and shared by every pull of that version.
  std::shared_ptr<const std::vector<uint16_t>> CodedSnapshot(WireType wire);
  double SumSquares() const;
  // The weights digest of this shard's blocks (common/ps/weights_digest.h).
  uint64_t Digest() const;
  size_t block_count() const { return blocks_; }
  int64_t updates_applied() const { return updates_; }

  // Samples and sample-hash sum over (slot, clock) with clock in [begin,
  // end), each counted once; forgets clocks before `end`.
  struct SampleStats {
    int64_t samples = 0;
    uint64_t hash = 0;
  };
  SampleStats TakeSampleStats(int64_t clock_begin, int64_t clock_end);

  // Checkpoints: the weights, the optimizer state, the clocks, and the
  // samples of this epoch's steps already applied (so a resume in the middle
  // of an epoch still counts every sample once). Taken between epochs, or
  // from an Image taken at a cut.
  void Save(BinaryWriter& w) const;
  Status Load(BinaryReader& r);
  // The same for shards holding consecutive pieces of one range, written as
  // that range (the padding between their tensors as zeros): what Save of
  // one shard for the whole range would write, and what Load reads.
  static void SaveRange(BinaryWriter& w, std::span<const DenseShard* const> pieces);
  static Status LoadRange(BinaryReader& r, std::span<DenseShard* const> pieces);

  // A copy of what Save writes, taken at one version while training goes
  // on, to be written by another thread.
  struct Image {
    KeyRange keys;
    size_t flat_begin = 0, flat_end = 0;
    int64_t version = 0, updates = 0, optimizer_steps = 0;
    std::vector<float> params;
    std::vector<std::vector<float>> state;  // the optimizer's arrays
    std::map<size_t, int64_t> async_steps;
    std::vector<int64_t> completed;
    SampleStats stats;  // samples behind the steps before `version` not yet taken
  };
  Image TakeImage() const;
  // What SaveRange writes, from images of consecutive pieces of one range.
  static void SaveImages(BinaryWriter& w, std::span<const Image* const> pieces);

  // Checkpoint cuts (BSP): an Image of the state at version `clock`, taken
  // the moment the shard reaches it (at once if it is there), before any
  // update of that clock is applied. False if the shard is past `clock`.
  bool AddCut(int64_t clock);
  bool HasCutImage(int64_t clock) const { return cut_images_.count(clock) != 0; }
  // The image taken at `clock` (which must be there), moved out.
  Image TakeCutImage(int64_t clock);
  // Forgets the cut at `clock` (asked for or taken).
  void DropCut(int64_t clock) {
    cuts_.erase(clock);
    cut_images_.erase(clock);
  }
  // Forgets every cut asked for and every image not taken.
  void ClearCuts();

  // The start of what Save wrote: the keys, clocks and weights (which must
  // be for `keys`, weights.size() floats), without building a shard. For
  // tools that read checkpoints.
  struct Saved {
    int64_t version = 0;  // the clock the weights are at
    int64_t updates = 0;  // updates applied
    int64_t optimizer_steps = 0;
  };
  static StatusOr<Saved> ReadSaved(BinaryReader& r, const KeyRange& keys, std::span<float> weights);

  // What a BSP step is waiting for ("slots 1, 3 at clock 17"), for logs.
  std::string Waiting() const;

 private:
  struct Part {
    size_t begin;
    size_t n;
    Frame payload;
  };
  struct SlotClock {
    std::vector<std::pair<size_t, size_t>> parts;  // blocks [first, last) received
    size_t received = 0;                           // blocks
    int64_t samples = 0;
    uint64_t hash = 0;
  };
  // Records a part (blocks [first, last)); false if it overlaps one
  // already received.
  bool Record(int slot, int64_t clock, size_t first, size_t last, int64_t samples, uint64_t hash);
  void MaybeCompleteBsp();
  void ApplyAsync(size_t begin, size_t n, const float* g, float lr);

  const KeyLayout& layout_;
  KeyRange keys_;
  FlatRange flat_;
  size_t blocks_ = 0;  // how many blocks of the layout this shard owns
  ShardOptions options_;
  FloatBuffer params_;
  std::unique_ptr<Optimizer> optimizer_;
  FloatBuffer accum_;
  int64_t version_ = 0;
  int64_t updates_ = 0;
  int64_t durable_version_ = 0;  // the newest version the backup acknowledged
  std::function<void(const Update&)> replicate_;
  // BSP: samples behind the steps received by replication, per clock.
  std::map<int64_t, SampleStats> replicated_stats_;
  std::map<std::pair<int64_t, int>, SlotClock> seen_;  // by (clock, slot)
  // BSP: parts held for clock version_, per slot.
  std::map<int, std::vector<Part>> pending_;
  float pending_lr_ = 0;
  // SSP: clocks fully pushed per slot.
  std::vector<int64_t> completed_;
  std::map<size_t, int64_t> async_steps_;  // Adam's step count per pushed part
  // Snapshots handed to replies; reused once no reply holds them.
  VectorPool<float> snapshots_;
  int64_t snapshot_version_ = -1;
  std::shared_ptr<std::vector<float>> current_snapshot_;
  VectorPool<uint16_t> coded_pool_;
  std::shared_ptr<std::vector<uint16_t>> current_coded_;
  int64_t coded_version_ = -1;
  WireType coded_wire_ = WireType::kFloat32;
  // BSP: accum_ = the slots' gradients summed in slot order, in one pass
  // when every slot sent the whole range in one aligned frame; false (and
  // nothing done) otherwise.
  bool SumWholeParts();
  std::vector<float> scratch_;  // for payloads that arrive unaligned
  std::set<int64_t> cuts_;      // versions to take an Image at
  std::map<int64_t, Image> cut_images_;
};

}  // namespace pstrain
