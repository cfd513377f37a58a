// What the coordinator has asked of a worker, as plain data: the slots it
// owns, the slots it must take over mid-epoch, the slots it hands to a
// worker that joined (and up to which step it still computes them), whether
// its current wait must be interrupted, and the queue of tasks (an epoch's
// training, a range of test rows to evaluate) in the order they were asked
// for.
//
// The worker's reactions to the control plane are the methods here; the
// worker turns each message into one call and does the talking (acks, logs,
// the client's routing). So every reaction is tested without sockets
// (tests/worker/duties_test.cc).
#pragma once

#include <cstdint>
#include <deque>
#include <map>
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
  // kEpoch: per slot, the first step its owner computes (a worker that
  // joined mid-epoch starts where each slot's giver stopped); empty: every
  // slot from first_step.
  std::vector<int64_t> from;
  int64_t begin = 0, end = 0;  // kEval: test rows [begin, end)
};

class WorkerDuties {
 public:
  // A slot handed to another worker: this one computed its steps before
  // `step`, the new owner computes the rest.
  struct Release {
    int slot = -1;
    int64_t step = 0;
    bool operator==(const Release&) const = default;
  };
  // What a membership changed for this worker.
  struct Change {
    int gained = 0;                 // slots taken over
    std::vector<Release> released;  // slots handed away, with where their steps went over
  };

  // `node_id`: this worker's; `slots`: the job's slot count (cluster.workers).
  WorkerDuties(int node_id, int slots) : node_id_(node_id), slots_(slots) {}

  // StartEpoch: the slot owners of the new epoch and its training queued
  // (`only`: just these slots, taken over after this worker had finished).
  // Pending takeovers belong to the epoch before: dropped.
  // `first_step`: the steps before it were done before the job resumed.
  // `from`: per slot, the step its owner starts at (at least first_step, at
  // most steps); empty: first_step for every slot.
  Status StartEpoch(int epoch, int64_t first_clock, int64_t steps, const std::vector<int>& owners,
                    const std::vector<int>& only, int64_t first_step = 0,
                    const std::vector<int64_t>& from = {});
  // Membership: new slot owners. Slots gained while training are taken over
  // (and the current wait interrupted); while evaluating, every slot of the
  // epoch is done, so gained slots are this worker's from the next epoch.
  // Slots lost are released: those of the epoch being trained stay this
  // worker's up to the end of its current step (a worker that joined
  // computes the rest), those of an epoch not started yet go whole, and
  // those of an epoch trained already are done.
  StatusOr<Change> NewMembership(const std::vector<int>& owners);
  // Routing: a server's ranges moved; the current step is pushed again to
  // the new owners, and the current wait interrupted.
  void NewRouting();
  // Evaluate: test rows [begin, end) of a test set of `test_rows` queued.
  Status Evaluate(int epoch, int64_t begin, int64_t end, int64_t test_rows);

  // The next task, if any, taken off the queue. An epoch's training taken
  // is the run that StepSlots and releases refer to until FinishRun.
  std::optional<WorkerTask> NextTask();
  // The run's training reached `k`: the step being computed, or whose
  // weights are awaited (first step - 1 before the first).
  void set_step(int64_t k) { step_ = k; }
  // The run's training is over: every slot's steps are pushed.
  void FinishRun() { running_ = false; }
  // The slots to compute at step `k` of the run, ascending: the owned ones
  // (or the run's only ones) from their first step, and released ones
  // before their release step.
  std::vector<int> StepSlots(int64_t k) const;
  // The run's first step to compute: the earliest of its slots' first
  // steps; its last step + 1 when it has none.
  int64_t FirstStep() const;
  // True once after a reaction that interrupts the current wait.
  bool TakeInterrupt();
  // The slots to take over, handed out once (and, when the run trains just
  // some slots, trained by it to the end).
  std::vector<int> TakeTakeover();
  // True once after a routing change: push the current step again.
  bool TakeRerun();
  // Forgets a pending rerun (the step is being computed again anyway).
  void ClearRerun() { rerun_ = false; }

  bool takeover_pending() const { return !takeover_.empty(); }
  bool running() const { return running_; }
  bool rerun_pending() const { return rerun_; }
  const std::vector<int>& my_slots() const { return my_slots_; }
  // The worker id of every slot, as last given.
  const std::vector<int>& owners() const { return owners_; }
  void set_evaluating(bool e) { evaluating_ = e; }

 private:
  Status SetOwners(const std::vector<int>& owners, const char* what);

  // Where a slot lost now hands over (nullopt: this worker has no epoch).
  std::optional<int64_t> ReleaseStep(int slot) const;

  int node_id_;
  int slots_;
  // The run: the epoch task taken last.
  bool running_ = false, had_run_ = false, restricted_ = false;
  int64_t run_first_step_ = 0, run_steps_ = 0, step_ = -1;
  std::vector<int64_t> from_;     // per slot
  std::vector<int> only_;         // restricted_: the slots trained
  std::map<int, int64_t> until_;  // released slots -> the step they go over at
  std::vector<int> my_slots_;
  std::vector<int> owners_;
  std::vector<int> takeover_;  // slots handed to this worker mid-epoch
  bool interrupt_ = false;     // a takeover or new routing interrupts the current wait
  bool rerun_ = false;         // the servers changed: push the current step again
  bool evaluating_ = false;
  std::deque<WorkerTask> tasks_;
};

}  // namespace pstrain
