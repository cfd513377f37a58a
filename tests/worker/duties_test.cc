// The worker's reactions to the coordinator, without sockets: what each
// control message changes in the worker's duties.
#include "worker/duties.h"

#include <catch2/catch.hpp>
#include <vector>

namespace pstrain {
namespace {

using Owners = std::vector<int>;

// Worker 5 of a job with 3 slots.
WorkerDuties Duties() { return WorkerDuties(5, 3); }

// The same, training epoch 0 with slot 0 (workers 6 and 7 have the others).
WorkerDuties Training() {
  WorkerDuties d = Duties();
  REQUIRE(d.StartEpoch(0, 0, 5, Owners{5, 6, 7}, {}).ok());
  return d;
}

// Nothing to take over, no wait to interrupt.
void CheckNoTakeover(WorkerDuties& d) {
  CHECK_FALSE(d.takeover_pending());
  CHECK_FALSE(d.TakeInterrupt());
}

TEST_CASE("StartEpoch sets the owned slots and queues the epoch", "[duties]") {
  WorkerDuties d = Duties();
  REQUIRE(d.StartEpoch(2, 100, 7, Owners{5, 6, 5}, {}).ok());
  CHECK(d.my_slots() == std::vector<int>{0, 2});
  const auto t = d.NextTask();
  REQUIRE(t.has_value());
  CHECK(t->kind == WorkerTask::kEpoch);
  CHECK(t->epoch == 2);
  CHECK(t->first_clock == 100);
  CHECK(t->steps == 7);
  CHECK(t->only.empty());
  CHECK_FALSE(d.NextTask().has_value());
  CHECK_FALSE(d.TakeInterrupt());
}

TEST_CASE("A bad StartEpoch is refused and changes nothing", "[duties]") {
  WorkerDuties d = Training();
  REQUIRE(d.NextTask().has_value());
  const Status owners = d.StartEpoch(1, 5, 5, Owners{5, 5}, {});
  CHECK(owners.code() == StatusCode::kInvalidArgument);
  CHECK(owners.message().find("2 slot owners for 3 slots") != std::string::npos);
  CHECK(d.StartEpoch(1, 5, -1, Owners{5, 5, 5}, {}).code() == StatusCode::kInvalidArgument);
  CHECK(d.StartEpoch(-1, 5, 5, Owners{5, 5, 5}, {}).code() == StatusCode::kInvalidArgument);
  const Status slot = d.StartEpoch(1, 5, 5, Owners{5, 5, 5}, {1, 3});
  CHECK(slot.message().find("slot 3 of 3") != std::string::npos);
  CHECK(d.my_slots() == std::vector<int>{0});
  CHECK_FALSE(d.NextTask().has_value());
}

TEST_CASE("A slot gained mid-epoch is taken over once and interrupts the wait", "[duties]") {
  WorkerDuties d = Training();
  // Worker 6 died: its slot 1 comes to this worker.
  auto gained = d.NewMembership(Owners{5, 5, 7});
  REQUIRE(gained.ok());
  CHECK(gained->gained == 1);
  CHECK(d.my_slots() == std::vector<int>{0, 1});
  CHECK(d.takeover_pending());
  CHECK(d.TakeInterrupt());
  CHECK_FALSE(d.TakeInterrupt());  // once
  CHECK(d.TakeTakeover() == std::vector<int>{1});
  CHECK_FALSE(d.takeover_pending());
  CHECK(d.TakeTakeover().empty());
  // The same membership again (a duplicate): nothing new to take over.
  gained = d.NewMembership(Owners{5, 5, 7});
  REQUIRE(gained.ok());
  CHECK(gained->gained == 0);
  CHECK_FALSE(d.TakeInterrupt());
}

TEST_CASE("Slots gained by other workers are not this worker's to take over", "[duties]") {
  WorkerDuties d = Training();
  auto gained = d.NewMembership(Owners{5, 7, 7});
  REQUIRE(gained.ok());
  CHECK(gained->gained == 0);
  CHECK(d.my_slots() == std::vector<int>{0});
  CheckNoTakeover(d);
}

TEST_CASE("Two deaths before the takeover runs are taken over together", "[duties]") {
  WorkerDuties d = Training();
  REQUIRE(d.NewMembership(Owners{5, 5, 7}).ok());
  REQUIRE(d.NewMembership(Owners{5, 5, 5}).ok());
  CHECK(d.TakeTakeover() == std::vector<int>{1, 2});
}

TEST_CASE("Slots gained while evaluating wait for the next epoch", "[duties]") {
  WorkerDuties d = Training();
  d.set_evaluating(true);
  auto gained = d.NewMembership(Owners{5, 5, 7});
  REQUIRE(gained.ok());
  CHECK(gained->gained == 0);
  CHECK(d.my_slots() == std::vector<int>{0, 1});
  CheckNoTakeover(d);
}

TEST_CASE("A new epoch drops the takeovers of the epoch before", "[duties]") {
  WorkerDuties d = Training();
  REQUIRE(d.NewMembership(Owners{5, 5, 7}).ok());
  REQUIRE(d.StartEpoch(1, 5, 5, Owners{5, 5, 7}, {}).ok());
  CheckNoTakeover(d);
  CHECK(d.my_slots() == std::vector<int>{0, 1});
}

TEST_CASE("A bad membership is refused and keeps the slots", "[duties]") {
  WorkerDuties d = Training();
  CHECK(d.NewMembership(Owners{5, 5, 5, 5}).status().code() == StatusCode::kInvalidArgument);
  CHECK(d.my_slots() == std::vector<int>{0});
  CHECK_FALSE(d.takeover_pending());
}

TEST_CASE("A routing change reruns the step once and interrupts the wait", "[duties]") {
  WorkerDuties d = Training();
  d.NewRouting();
  CHECK(d.rerun_pending());
  CHECK(d.TakeInterrupt());
  CHECK(d.TakeRerun());
  CHECK_FALSE(d.TakeRerun());
  d.NewRouting();
  d.ClearRerun();  // the step is computed again anyway
  CHECK_FALSE(d.rerun_pending());
  CHECK_FALSE(d.takeover_pending());
}

TEST_CASE("Evaluations are queued behind the epoch in the order asked", "[duties]") {
  WorkerDuties d = Duties();
  REQUIRE(d.StartEpoch(3, 0, 5, Owners{5, 6, 7}, {2}).ok());
  REQUIRE(d.Evaluate(3, 0, 400, 1000).ok());
  REQUIRE(d.Evaluate(3, 800, 1000, 1000).ok());  // a dead worker's range
  CHECK(d.Evaluate(3, 900, 1001, 1000).code() == StatusCode::kInvalidArgument);
  CHECK(d.Evaluate(3, -1, 10, 1000).code() == StatusCode::kInvalidArgument);
  CHECK(d.Evaluate(3, 10, 5, 1000).code() == StatusCode::kInvalidArgument);
  auto t = d.NextTask();
  REQUIRE(t.has_value());
  CHECK(t->kind == WorkerTask::kEpoch);
  CHECK(t->only == std::vector<int>{2});
  t = d.NextTask();
  REQUIRE(t.has_value());
  CHECK(t->kind == WorkerTask::kEval);
  CHECK((t->begin == 0 && t->end == 400));
  t = d.NextTask();
  REQUIRE(t.has_value());
  CHECK((t->begin == 800 && t->end == 1000 && t->epoch == 3));
  CHECK_FALSE(d.NextTask().has_value());
}

TEST_CASE("A slot handed to a joining worker stays this one's to the end of its step", "[duties]") {
  WorkerDuties d = Duties();
  REQUIRE(d.StartEpoch(0, 0, 10, Owners{5, 5, 7}, {}).ok());
  REQUIRE(d.NextTask().has_value());
  CHECK(d.FirstStep() == 0);
  d.set_step(3);
  // Worker 8 joined: slot 1 is its from the step after this one's.
  auto change = d.NewMembership(Owners{5, 8, 7});
  REQUIRE(change.ok());
  CHECK(change->gained == 0);
  CHECK(change->released == std::vector<WorkerDuties::Release>{{1, 4}});
  CheckNoTakeover(d);
  CHECK(d.my_slots() == std::vector<int>{0});
  CHECK(d.StepSlots(3) == std::vector<int>{0, 1});  // a rerun of step 3 still has it
  CHECK(d.StepSlots(4) == std::vector<int>{0});
  // The joiner died at once: the slot is back, taken over at the current step.
  change = d.NewMembership(Owners{5, 5, 7});
  REQUIRE(change.ok());
  CHECK(change->gained == 1);
  CHECK(d.TakeTakeover() == std::vector<int>{1});
  CHECK(d.StepSlots(4) == std::vector<int>{0, 1});
}

TEST_CASE("Slots handed away before the epoch started or after it was trained go whole or done",
          "[duties]") {
  WorkerDuties d = Duties();
  REQUIRE(d.NewMembership(Owners{5, 6, 7}).ok());  // no epoch yet: nothing to say
  CHECK(d.NewMembership(Owners{6, 6, 7})->released.empty());
  REQUIRE(d.StartEpoch(0, 0, 10, Owners{5, 5, 7}, {}, 2).ok());
  // Queued, not started: the new owner computes every step from the first.
  auto change = d.NewMembership(Owners{5, 8, 7});
  REQUIRE(change.ok());
  CHECK(change->released == std::vector<WorkerDuties::Release>{{1, 2}});
  REQUIRE(d.NextTask().has_value());
  CHECK(d.StepSlots(2) == std::vector<int>{0});
  d.set_step(9);
  d.FinishRun();
  change = d.NewMembership(Owners{8, 8, 7});
  REQUIRE(change.ok());
  CHECK(change->released == std::vector<WorkerDuties::Release>{{0, 10}});
}

TEST_CASE("A worker that joins mid-epoch starts each slot where its giver stopped", "[duties]") {
  WorkerDuties d = Duties();
  REQUIRE(d.NewMembership(Owners{5, 5, 7}).ok());  // the slots are its before the epoch starts
  const Status bad = d.StartEpoch(0, 0, 10, Owners{5, 5, 7}, {}, 0, {4, 11, 0});
  CHECK(bad.message().find("starting at step 11") != std::string::npos);
  CHECK(d.StartEpoch(0, 0, 10, Owners{5, 5, 7}, {}, 0, {4, 6}).code() ==
        StatusCode::kInvalidArgument);
  REQUIRE(d.StartEpoch(0, 0, 10, Owners{5, 5, 7}, {}, 0, {4, 6, 0}).ok());
  const auto t = d.NextTask();
  REQUIRE(t.has_value());
  CHECK(t->from == std::vector<int64_t>{4, 6, 0});
  CHECK(d.FirstStep() == 4);
  CHECK(d.StepSlots(4) == std::vector<int>{0});
  CHECK(d.StepSlots(5) == std::vector<int>{0});
  CHECK(d.StepSlots(6) == std::vector<int>{0, 1});
  d.set_step(4);
  // Handing slot 1 on before it started: the next owner starts it at 6.
  auto change = d.NewMembership(Owners{5, 9, 7});
  REQUIRE(change.ok());
  CHECK(change->released == std::vector<WorkerDuties::Release>{{1, 6}});
  CHECK(d.StepSlots(6) == std::vector<int>{0});
}

TEST_CASE("A run of just some slots hands one away and keeps the slots it takes over", "[duties]") {
  WorkerDuties d = Duties();
  REQUIRE(d.StartEpoch(0, 0, 10, Owners{5, 5, 5}, {1, 2}).ok());
  REQUIRE(d.NextTask().has_value());
  d.set_step(2);
  auto change = d.NewMembership(Owners{5, 8, 5});
  REQUIRE(change.ok());
  // Slot 0 was trained before this run; slot 1 goes over after step 2.
  CHECK(change->released == std::vector<WorkerDuties::Release>{{1, 3}});
  CHECK(d.StepSlots(3) == std::vector<int>{2});
  change = d.NewMembership(Owners{8, 8, 5});
  REQUIRE(change.ok());
  CHECK(change->released == std::vector<WorkerDuties::Release>{{0, 10}});
  change = d.NewMembership(Owners{5, 8, 5});  // worker 8 died
  REQUIRE(change.ok());
  CHECK(d.TakeTakeover() == std::vector<int>{0});
  CHECK(d.StepSlots(3) == std::vector<int>{0, 2});
}

}  // namespace
}  // namespace pstrain
