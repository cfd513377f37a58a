// A DenseShard owns one key range of the model's parameters on a server:
// the weights, the optimizer state, and the bookkeeping of the consistency
// model.
//   BSP: the pushes of every live worker for clock t are kept (zero-copy,
//        as the frames that carried them) until all have arrived, then
//        summed in worker-id order (deterministic), applied once, and the
//        version becomes t + 1. Pulls of version t + 1 wait until then.
//   ASP: each push is applied on arrival; pulls are answered at once.
//   SSP: like ASP, but a pull for clock c waits until every live worker has
//        pushed all of clock c - staleness - 1.
// Owned by the server's single thread.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "common/keys.h"
#include "common/net/zmq_socket.h"
#include "common/optimizer.h"
#include "common/status.h"
#include "common/tensor.h"

namespace pstrain {

enum class Consistency { kBsp, kAsp, kSsp };

struct ShardOptions {
  Consistency consistency = Consistency::kBsp;
  int staleness = 0;  // ssp
  OptimizerOptions optimizer;
};

class DenseShard {
 public:
  // `initial` holds the range's starting weights (flat.size() floats).
  DenseShard(KeyRange keys, FlatRange flat, std::span<const float> initial,
             const ShardOptions& options, std::vector<int> workers);

  const KeyRange& keys() const { return keys_; }
  const FlatRange& flat() const { return flat_; }
  int64_t version() const { return version_; }

  // The live workers, ascending. A BSP step that waited only for workers
  // no longer listed completes now.
  void SetWorkers(std::vector<int> workers);

  enum class PushOutcome { kApplied, kBuffered, kDuplicate };
  // A gradient for floats [begin, begin + n) of this shard (offsets relative
  // to the shard), at `clock`, from `worker`. `payload` is empty for an empty
  // step (samples == 0) covering the whole shard.
  StatusOr<PushOutcome> Push(int worker, int64_t clock, size_t begin, size_t n, Frame payload,
                             int64_t samples, float lr);

  // May a pull of `clock` by a worker be answered now?
  bool PullReady(int64_t clock) const;

  // The current weights, immutable, shared with replies in flight.
  std::shared_ptr<const FloatBuffer> Snapshot();
  double SumSquares() const {
    const double n = L2Norm(params_.span());
    return n * n;
  }
  int64_t updates_applied() const { return updates_; }
  // What a BSP step is waiting for ("workers 1, 3 at clock 17"), for logs.
  std::string Waiting() const;

 private:
  struct Part {
    size_t begin;
    size_t n;
    Frame payload;
  };
  void MaybeCompleteBsp();
  void ApplyAsync(size_t begin, size_t n, const float* g, float lr);

  KeyRange keys_;
  FlatRange flat_;
  ShardOptions options_;
  std::vector<int> workers_;
  FloatBuffer params_;
  std::unique_ptr<Optimizer> optimizer_;
  FloatBuffer accum_;
  int64_t version_ = 0;
  int64_t updates_ = 0;
  // BSP: parts received for clock version_, per worker.
  std::map<int, std::vector<Part>> pending_;
  std::map<int, size_t> received_;
  float pending_lr_ = 0;
  // ASP/SSP: per (worker, clock) floats received; per worker clocks completed.
  std::map<std::pair<int, int64_t>, size_t> async_received_;
  std::map<int, int64_t> completed_;
  std::map<size_t, int64_t> async_steps_;  // Adam's step count per pushed part
  // Snapshots handed to replies; reused once no reply holds them.
  std::vector<std::shared_ptr<FloatBuffer>> snapshots_;
  int64_t snapshot_version_ = -1;
  std::shared_ptr<FloatBuffer> current_snapshot_;
  std::vector<float> scratch_;  // for payloads that arrive unaligned
};

}  // namespace pstrain
