// The coordinator's bookkeeping of slots, training reports and test rows,
// through worker deaths at every phase of an epoch.
#include "coordinator/work_book.h"

#include <catch2/catch.hpp>

namespace pstrain {
namespace {

using Range = WorkBook::EvalRange;

TEST_CASE("Slots are spread round robin and a dead worker's go to the survivors with fewest",
          "[coordinator][workbook]") {
  WorkBook b(6);
  b.SpreadSlots({0, 1, 2});
  CHECK(b.slot_owners() == std::vector<int>{0, 1, 2, 0, 1, 2});
  b.StartEpoch(0, {0, 1, 2});
  const WorkBook::Death d = b.WorkerDied(1, {0, 2});
  CHECK(d.taken == std::vector<int>{1, 4});
  // Slot 1 to the first of the least loaded (0 and 2 own two each), slot 4
  // to the other.
  CHECK(b.slot_owners() == std::vector<int>{0, 0, 2, 0, 2, 2});
  CHECK(b.SlotsOf(2) == std::vector<int>{2, 4, 5});
  // Nobody had finished: the survivors take the slots over themselves.
  CHECK(d.redo.empty());
  CHECK(d.moved.empty());
  CHECK_FALSE(b.AllTrained());
  CHECK(b.Trained(0));
  CHECK(b.Trained(2));
  CHECK(b.AllTrained());  // the dead worker is not waited for
}

TEST_CASE("Slot owners taken as they are must name one owner per slot", "[coordinator][workbook]") {
  WorkBook b(3);
  CHECK(b.SetOwners({2, 0, 2}));
  CHECK(b.slot_owners() == std::vector<int>{2, 0, 2});
  CHECK(b.SlotsOf(2) == std::vector<int>{0, 2});
  CHECK_FALSE(b.SetOwners({0, 1}));
  CHECK(b.slot_owners() == std::vector<int>{2, 0, 2});
}

TEST_CASE("A survivor that had finished the epoch trains the dead worker's slots again",
          "[coordinator][workbook]") {
  WorkBook b(4);
  b.SpreadSlots({0, 1, 2, 3});
  b.StartEpoch(3, {0, 1, 2, 3});
  CHECK(b.Trained(0));
  CHECK(b.Trained(2));
  CHECK_FALSE(b.Trained(2));  // a duplicate report counts once
  CHECK_FALSE(b.Trained(7));  // a worker not in the epoch
  const WorkBook::Death d = b.WorkerDied(3, {0, 1, 2});
  REQUIRE(d.taken == std::vector<int>{3});
  CHECK(b.slot_owners()[3] == 0);
  CHECK(d.redo == std::map<int, std::vector<int>>{{0, {3}}});
  CHECK_FALSE(b.AllTrained());  // worker 0 must report again
  CHECK(b.Trained(1));
  CHECK_FALSE(b.AllTrained());
  CHECK(b.Trained(0));
  CHECK(b.AllTrained());
  // A second death, of a finished worker still owning a slot.
  const WorkBook::Death again = b.WorkerDied(2, {0, 1});
  CHECK(again.taken == std::vector<int>{2});
  CHECK(b.slot_owners()[2] == 1);
  CHECK(again.redo == std::map<int, std::vector<int>>{{1, {2}}});
}

TEST_CASE("Test rows are split evenly, and a report counts only for a range its sender holds",
          "[coordinator][workbook]") {
  WorkBook b(3);
  b.SpreadSlots({0, 1, 2});
  b.StartEpoch(0, {0, 1, 2});
  for (int w : {0, 1, 2}) CHECK(b.Trained(w));
  const std::vector<Range> out = b.StartEvaluation(10, {0, 1, 2});
  CHECK(out == std::vector<Range>{{0, 0, 3}, {1, 3, 6}, {2, 6, 10}});
  CHECK(b.evaluating());
  CHECK_FALSE(b.Evaluated(0, 3, 3));  // worker 1's rows
  CHECK_FALSE(b.Evaluated(0, 0, 4));  // not the range it holds
  CHECK(b.Evaluated(0, 0, 3));
  CHECK_FALSE(b.Evaluated(0, 0, 3));  // counted once
  CHECK_FALSE(b.AllEvaluated());
  CHECK(b.Evaluated(1, 3, 3));
  CHECK(b.Evaluated(2, 6, 4));
  CHECK(b.AllEvaluated());
}

TEST_CASE("Deaths during evaluation move every range of the dead to the survivor holding fewest",
          "[coordinator][workbook]") {
  WorkBook b(3);
  b.SpreadSlots({0, 1, 2});
  b.StartEpoch(1, {0, 1, 2});
  for (int w : {0, 1, 2}) CHECK(b.Trained(w));
  b.StartEvaluation(9, {0, 1, 2});
  CHECK(b.Evaluated(0, 0, 3));
  // Worker 2 dies: its range goes to 0, which holds none now.
  const WorkBook::Death first = b.WorkerDied(2, {0, 1});
  CHECK(first.moved == std::vector<Range>{{0, 6, 9}});
  CHECK(first.redo.empty());  // every slot is done once evaluating
  CHECK(first.taken == std::vector<int>{2});
  // Worker 0 dies holding it: both outstanding ranges end with worker 1.
  const WorkBook::Death second = b.WorkerDied(0, {1});
  CHECK(second.moved == std::vector<Range>{{1, 6, 9}});
  CHECK(b.outstanding() == std::vector<Range>{{1, 3, 6}, {1, 6, 9}});
  CHECK_FALSE(b.Evaluated(0, 6, 3));  // a late report from the dead one
  CHECK(b.Evaluated(1, 6, 3));
  CHECK(b.Evaluated(1, 3, 3));
  CHECK(b.AllEvaluated());
  CHECK(b.slot_owners() == std::vector<int>{1, 1, 1});
}

TEST_CASE("A new epoch forgets the last one's reports and ranges", "[coordinator][workbook]") {
  WorkBook b(2);
  b.SpreadSlots({4, 5});
  b.StartEpoch(0, {4, 5});
  b.StartEvaluation(4, {4, 5});
  b.StartEpoch(1, {4, 5});
  CHECK_FALSE(b.evaluating());
  CHECK(b.AllEvaluated());
  CHECK_FALSE(b.AllTrained());
  CHECK_FALSE(b.Evaluated(4, 0, 2));
  CHECK(b.epoch() == 1);
}

TEST_CASE("A death between epochs (while a checkpoint is written) only moves the slots",
          "[coordinator][workbook]") {
  WorkBook b(3);
  b.SpreadSlots({0, 1, 2});
  b.StartEpoch(0, {0, 1, 2});
  for (int w : {0, 1, 2}) CHECK(b.Trained(w));
  b.StartEvaluation(6, {0, 1, 2});
  for (int w : {0, 1, 2}) CHECK(b.Evaluated(w, 2 * w, 2));
  b.EndEpoch();  // the coordinator now asks the servers for a checkpoint
  const WorkBook::Death d = b.WorkerDied(1, {0, 2});
  CHECK(d.taken == std::vector<int>{1});
  CHECK(d.redo.empty());
  CHECK(d.moved.empty());
  CHECK(b.AllTrained());
  CHECK(b.AllEvaluated());
  // The next epoch spreads the slots over the survivors again.
  b.SpreadSlots({0, 2});
  CHECK(b.slot_owners() == std::vector<int>{0, 2, 0});
}

TEST_CASE("A worker joining while the epoch trains takes its share from the busiest",
          "[coordinator][workbook]") {
  WorkBook b(6);
  b.SpreadSlots({0, 1, 2});
  // Nothing to take between epochs.
  CHECK(b.WorkerJoined(3).empty());
  b.StartEpoch(0, {0, 1, 2});
  b.WorkerDied(2, {0, 1});  // slots 2 and 5 go to workers 0 and 1
  CHECK(b.slot_owners() == std::vector<int>{0, 1, 0, 0, 1, 1});
  const std::map<int, int> moved = b.WorkerJoined(3);
  CHECK(moved == std::map<int, int>{{3, 0}, {5, 1}});
  CHECK(b.slot_owners() == std::vector<int>{0, 1, 0, 3, 1, 3});
  CHECK(b.WorkerJoined(3).empty());  // once
  // It must report the epoch too.
  CHECK(b.Trained(0));
  CHECK(b.Trained(1));
  CHECK_FALSE(b.AllTrained());
  CHECK(b.Trained(3));
  CHECK(b.AllTrained());
}

TEST_CASE("A worker joining takes nothing from workers done with the epoch or while evaluating",
          "[coordinator][workbook]") {
  WorkBook b(2);
  b.SpreadSlots({0, 1});
  b.StartEpoch(0, {0, 1});
  b.WorkerDied(1, {0});
  CHECK(b.Trained(0));
  CHECK(b.WorkerJoined(2).empty());  // worker 0 has trained both
  b.StartEpoch(1, {0});
  b.StartEvaluation(100, {0});
  CHECK(b.WorkerJoined(2).empty());
  b.StartEpoch(2, {0});
  CHECK(b.WorkerJoined(2) == std::map<int, int>{{1, 0}});
  // Its giver died before saying where the slot goes over: it is the
  // giver's again, and moves with the giver's own.
  b.Reclaim(1, 0);
  CHECK(b.slot_owners() == std::vector<int>{0, 0});
}

}  // namespace
}  // namespace pstrain
