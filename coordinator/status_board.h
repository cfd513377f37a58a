// What the coordinator knows about its job, for the HTTP status server:
// membership, the epoch running and its progress, every finished epoch's
// figures, per-worker timings, failures.
//
// The coordinator's thread owns the job and writes a ClusterStatus through
// StatusBoard::Update; the HTTP thread takes a copy with Snapshot() and
// renders it without holding the lock. StatusBoard is thread-safe; the
// render functions are pure.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "common/job/choices.h"
#include "common/job/training_stats.h"

namespace pstrain {

struct NodeStatus {
  std::string role;  // "server" | "worker"
  int id = -1;
  int pid = 0;
  std::string host;
  std::string endpoint;  // servers: their data port
  std::string state;     // "joining" | "live" | "dead"
  // Workers, summed over the epochs they finished.
  int64_t samples = 0;
  double train_seconds = 0;  // wall time of those epochs' training
  double compute_s = 0, push_wait_s = 0, pull_wait_s = 0;
  // Workers, their last finished epoch: mean wall time per step (compute +
  // waits) and samples per second (negative: none yet).
  double step_s = -1;
  double samples_per_s = -1;
  int64_t epoch_samples = 0;  // progress in the epoch running
  // Seconds the node's main thread had been busy (a step, loading,
  // evaluating) at its last heartbeat; the heartbeats come from a thread
  // of their own.
  double busy_s = 0;
  std::string death;  // once dead: the cause (coordinator/liveness.h)
};

struct ClusterStatus {
  std::string job;
  std::string phase =
      "starting";       // starting | training | evaluating | checkpointing | done | failed
  std::string message;  // why it failed
  Consistency consistency = Consistency::kBsp;
  int staleness = 0;
  int batch_size = 0;
  int servers_wanted = 0, workers_wanted = 0;
  int64_t params = 0;
  int64_t model_bytes = 0;  // one full push (or pull) of the parameters
  int epochs = 0;           // to run
  int epoch = 0;            // the one running (1-based), or the last one run
  int64_t epoch_samples = 0, epoch_total = 0;
  double epoch_loss = 0;  // running mean training loss of the epoch running
  double epoch_samples_per_s = 0;
  uint64_t membership_epoch = 0;
  int failures = 0;
  std::map<std::string, int> deaths_by_cause;  // cause (coordinator/liveness.h) -> nodes
  int64_t refused_messages = 0;                // control messages refused (see Coordinator::Refuse)
  int64_t samples_total = 0;
  std::chrono::steady_clock::time_point started{};
  std::vector<NodeStatus> nodes;
  std::vector<EpochStats> history;  // finished epochs, in order

  int Live(const std::string& role) const;
  NodeStatus* Find(const std::string& role, int id);
};

class StatusBoard {
 public:
  void Update(const std::function<void(ClusterStatus&)>& change) {
    std::lock_guard<std::mutex> lock(mutex_);
    change(status_);
  }
  ClusterStatus Snapshot() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return status_;
  }

 private:
  mutable std::mutex mutex_;
  ClusterStatus status_;  // guarded by mutex_
};

// Prometheus text exposition format (version 0.0.4).
std::string RenderPrometheus(const ClusterStatus& s);
// The /status document.
std::string RenderStatusJson(const ClusterStatus& s);
// The live page: self-contained HTML (inline script and SVG) that polls
// /status and draws the curves and the cluster.
const std::string& StatusPageHtml();

}  // namespace pstrain
