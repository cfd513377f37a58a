// The coordinator's bookkeeping of the workers' work, as plain data: which
// worker owns each hand-out slot, who has still to finish the epoch's
// training, and which ranges of test rows are still out and with whom. It
// decides what a worker's death changes (WorkerDied); the coordinator only
// sends the messages the decision names. No sockets, no clocks: unit tests
// drive it through deaths during training and evaluation.
//
// Owned by the coordinator's thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <vector>

namespace pstrain {

class WorkBook {
 public:
  // A range of test rows [begin, end) handed to `worker`.
  struct EvalRange {
    int worker = -1;
    int64_t begin = 0, end = 0;
    bool operator==(const EvalRange&) const = default;
  };
  // What a worker's death changes.
  struct Death {
    std::vector<int> taken;                // its slots, each now a survivor's
    std::map<int, std::vector<int>> redo;  // survivor -> slots to train this epoch
    std::vector<EvalRange> moved;          // its test rows, each now a survivor's
  };

  explicit WorkBook(int slots) : owners_(static_cast<size_t>(slots), -1) {}

  const std::vector<int>& slot_owners() const { return owners_; }
  // The slots of `worker`.
  std::vector<int> SlotsOf(int worker) const;
  // Spreads the slots over `live` (ascending ids), round robin.
  void SpreadSlots(const std::vector<int>& live);
  // The owners as they are (a restarted coordinator takes them from its
  // workers); false, and nothing changed, unless one per slot.
  bool SetOwners(const std::vector<int>& owners);

  // A new epoch: `workers` each train their slots and report once.
  void StartEpoch(int epoch, const std::vector<int>& workers);
  int epoch() const { return epoch_; }
  // `worker` reported the end of its training; false when it had nothing
  // to report (not training this epoch, or already reported).
  bool Trained(int worker);
  bool AllTrained() const;
  // The epoch is over: nothing is waited for until the next StartEpoch.
  void EndEpoch() { StartEpoch(-1, {}); }

  // Evaluation of the epoch: the test rows [0, rows) split evenly over
  // `workers`, in order. Returns the ranges handed out.
  const std::vector<EvalRange>& StartEvaluation(int64_t rows, const std::vector<int>& workers);
  bool evaluating() const { return evaluating_; }
  // `worker` reported `count` rows from `begin`: true, and the range is
  // done, when that is a range it holds; false for anything else (a range
  // already counted, rows it was not given), which must not be counted.
  bool Evaluated(int worker, int64_t begin, int64_t count);
  bool AllEvaluated() const { return evals_.empty(); }
  const std::vector<EvalRange>& outstanding() const { return evals_; }

  // `worker` joined while the epoch trains: it takes its share of the
  // slots (slots / (workers training + 1)), one at a time the highest slot
  // of the worker training with the most (highest id on ties), and must
  // report the epoch too. Returns slot -> the worker it came from; nothing
  // while evaluating, between epochs, or when no worker has two slots more.
  std::map<int, int> WorkerJoined(int worker);
  // `slot`, handed to a worker that joined, is `giver`'s again (the giver
  // died before it said where the slot goes over).
  void Reclaim(int slot, int giver) { owners_[static_cast<size_t>(slot)] = giver; }

  // `worker` died; `survivors` are the live workers (not empty). Its slots
  // go one by one to the survivor owning the fewest (lowest id on ties).
  // During training a survivor that had finished trains them this epoch
  // (one still training takes them over itself); during evaluation every
  // slot is done. Its test rows go range by range to the survivor holding
  // the fewest ranges.
  Death WorkerDied(int worker, const std::vector<int>& survivors);

 private:
  std::vector<int> owners_;  // worker id per slot
  int epoch_ = -1;
  std::map<int, bool> training_;  // worker -> done
  bool evaluating_ = false;
  std::vector<EvalRange> evals_;  // not reported yet
};

}  // namespace pstrain
