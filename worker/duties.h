// What the coordinator has asked of a worker, as plain data: the slots it
// owns, the slots it must take over mid-epoch, whether its current wait must
// be interrupted, and the queue of tasks (an epoch's training, a range of
// test rows to evaluate) in the order they were asked for.
//
// The worker's reactions to the control plane are the methods here; the
// worker turns each message into one call and does the talking (acks, logs,
// the client's routing). So every reaction is tested without sockets
// (tests/worker/duties_test.cc).
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <vector>

#include "common/base/status.h"

namespace pstrain {

struct WorkerTask {
  enum Kind { kEpoch, kEval } kind = kEpoch;
  int epoch = 0;
  int64_t first_clock = 0, steps = 0;  // kEpoch
  int64_t first_step = 0;              // kEpoch: steps before it were done (a resume)
  std::vector<int> only;               // kEpoch: just these slots, when not empty
  int64_t begin = 0, end = 0;          // kEval: test rows [begin, end)
};

class WorkerDuties {
 public:
  // `node_id`: this worker's; `slots`: the job's slot count (cluster.workers).
  WorkerDuties(int node_id, int slots) : node_id_(node_id), slots_(slots) {}

  // StartEpoch: the slot owners of the new epoch and its training queued
  // (`only`: just these slots, taken over after this worker had finished).
  // Pending takeovers belong to the epoch before: dropped.
  // `first_step`: the steps before it were done before the job resumed.
  Status StartEpoch(int epoch, int64_t first_clock, int64_t steps, const std::vector<int>& owners,
                    const std::vector<int>& only, int64_t first_step = 0);
  // Membership: new slot owners. Slots gained while training are taken over
  // (and the current wait interrupted); while evaluating, every slot of the
  // epoch is done, so gained slots are this worker's from the next epoch.
  // Returns how many slots were taken over.
  StatusOr<int> NewMembership(const std::vector<int>& owners);
  // Routing: a server's ranges moved; the current step is pushed again to
  // the new owners, and the current wait interrupted.
  void NewRouting();
  // Evaluate: test rows [begin, end) of a test set of `test_rows` queued.
  Status Evaluate(int epoch, int64_t begin, int64_t end, int64_t test_rows);

  // The next task, if any, taken off the queue.
  std::optional<WorkerTask> NextTask();
  // True once after a reaction that interrupts the current wait.
  bool TakeInterrupt();
  // The slots to take over, handed out once.
  std::vector<int> TakeTakeover();
  // True once after a routing change: push the current step again.
  bool TakeRerun();
  // Forgets a pending rerun (the step is being computed again anyway).
  void ClearRerun() { rerun_ = false; }

  bool takeover_pending() const { return !takeover_.empty(); }
  bool rerun_pending() const { return rerun_; }
  const std::vector<int>& my_slots() const { return my_slots_; }
  // The worker id of every slot, as last given.
  const std::vector<int>& owners() const { return owners_; }
  void set_evaluating(bool e) { evaluating_ = e; }

 private:
  Status SetOwners(const std::vector<int>& owners, const char* what);

  int node_id_;
  int slots_;
  std::vector<int> my_slots_;
  std::vector<int> owners_;
  std::vector<int> takeover_;  // slots handed to this worker mid-epoch
  bool interrupt_ = false;     // a takeover or new routing interrupts the current wait
  bool rerun_ = false;         // the servers changed: push the current step again
  bool evaluating_ = false;
  std::deque<WorkerTask> tasks_;
};

}  // namespace pstrain
