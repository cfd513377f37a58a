// The server's units that need no sockets: who may send requests, the
// pulls waiting for their clock, the embedding tables, and what a new
// server table means for the ranges a server serves and backs up.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "paramserver/admission.h"
#include "paramserver/pull_queue.h"
#include "paramserver/routing_plan.h"
#include "paramserver/row_bucket.h"
#include "paramserver/row_tables.h"

namespace pstrain {
namespace {

bool Has(const Status& s, const std::string& text) {
  return s.message().find(text) != std::string::npos;
}

bool Fails(const Status& s, StatusCode code, const std::string& text) {
  return s.code() == code && Has(s, text);
}

TEST_CASE("Only live workers of the current routing may send requests", "[server-units]") {
  Admission a;
  REQUIRE(a.SetMembership({0, 1}, {100, 101}, 1).ok());
  a.set_routing_epoch(3);
  CHECK(a.Check(0, 100, 3, 1, 1).ok());
  CHECK(a.Check(1, 101, 4, 0, 0).ok());  // a newer membership than the server's routing
  CHECK(Fails(a.Check(2, 102, 3, 0, 0), StatusCode::kAborted, "worker 2 is not a live member"));
  // A dead worker's id reused by its replacement: the old incarnation is refused.
  CHECK(Fails(a.Check(1, 99, 3, 0, 0), StatusCode::kAborted, "stale incarnation"));
  CHECK(Fails(a.Check(0, 100, 2, 0, 0), StatusCode::kAborted,
              "membership epoch 2 is older than the servers' routing, epoch 3"));
  CHECK(Fails(a.Check(0, 100, 3, 1, 2), StatusCode::kInvalidArgument,
              "header announces 1 payload frames, 2 came"));
  // Row requests name their bucket: any routing will do, not any worker.
  CHECK(a.Check(0, 100, 2, 0, 0, /*routed=*/false).ok());
  CHECK(Fails(a.Check(1, 99, 3, 0, 0, false), StatusCode::kAborted, "stale incarnation"));
}

TEST_CASE("A request older than the membership its worker joined in is refused", "[server-units]") {
  Admission a;
  REQUIRE(a.SetMembership({0, 1}, {100, 101}, 1).ok());
  // Worker 1 died; a replacement with a new incarnation took id 1 in epoch 3.
  REQUIRE(a.SetMembership({0, 1}, {100, 201}, 3).ok());
  CHECK(a.Check(0, 100, 1, 0, 0).ok());  // worker 0 joined in epoch 1
  CHECK(a.Check(1, 201, 3, 0, 0).ok());
  CHECK(Fails(a.Check(1, 201, 2, 0, 0), StatusCode::kAborted,
              "membership epoch 2 is older than 3, in which worker 1 joined"));
  // A later membership keeps the epoch each known worker joined in.
  REQUIRE(a.SetMembership({0, 1}, {100, 201}, 4).ok());
  CHECK(a.Check(1, 201, 3, 0, 0).ok());
}

TEST_CASE("A new membership replaces the live workers", "[server-units]") {
  Admission a;
  REQUIRE(a.SetMembership({0, 1}, {100, 101}, 1).ok());
  REQUIRE(a.SetMembership({0, 2}, {100, 200}, 2).ok());  // worker 1 died, 2 joined
  CHECK(a.live_workers() == 2);
  CHECK(a.Check(1, 101, 0, 0, 0).code() == StatusCode::kAborted);
  CHECK(a.Check(2, 200, 2, 0, 0).ok());
  CHECK(a.SetMembership({0, 1}, {100}, 3).code() == StatusCode::kInvalidArgument);
}

TEST_CASE("A replacement under a dead worker's id starts a new window of pushes",
          "[server-units]") {
  Admission a;
  REQUIRE(a.SetMembership({0, 1}, {100, 101}, 1).ok());
  for (uint64_t seq = 0; seq < 5; ++seq) REQUIRE(a.FirstTime(1, seq));
  REQUIRE(a.SetMembership({0}, {100}, 2).ok());          // worker 1 died
  REQUIRE(a.SetMembership({0, 1}, {100, 201}, 3).ok());  // a new process took its id
  CHECK(a.FirstTime(1, 0));                              // applied, not a duplicate
  CHECK_FALSE(a.FirstTime(1, 0));
  // The same incarnation in a later membership keeps its window.
  REQUIRE(a.FirstTime(0, 0));
  REQUIRE(a.SetMembership({0, 1}, {100, 201}, 4).ok());
  CHECK_FALSE(a.FirstTime(0, 0));
  CHECK(a.FirstTime(0, 1));
}

TEST_CASE("Each worker's pushes are applied once, whatever the other workers send",
          "[server-units]") {
  Admission a;
  CHECK(a.FirstTime(0, 0));
  CHECK(a.FirstTime(1, 0));  // another worker's sequence
  CHECK_FALSE(a.FirstTime(0, 0));
  CHECK(a.FirstTime(0, 1));
  CHECK_FALSE(a.FirstTime(1, 0));
}

PendingPull PullFor(int worker, int64_t clock, uint64_t id) {
  PendingPull p;
  p.peer = Frame::Copy("peer", 4);
  p.worker = worker;
  p.clock = clock;
  p.request_id = id;
  return p;
}

TEST_CASE("Waiting pulls are served in arrival order once their clock is reached",
          "[server-units]") {
  PullQueue q(4);
  REQUIRE(q.Park(PullFor(0, 2, 1), 0).ok());
  REQUIRE(q.Park(PullFor(1, 1, 2), 0).ok());
  REQUIRE(q.Park(PullFor(0, 1, 3), 0).ok());
  CHECK(q.waiting(0) == 2);
  int64_t applied = 0;  // the shards' clock
  std::vector<uint64_t> served;
  auto ready = [&](const PendingPull& p) { return p.clock <= applied; };
  auto serve = [&](PendingPull& p) { served.push_back(p.request_id); };
  q.ServeReady(ready, serve);
  CHECK(served.empty());
  applied = 1;
  q.ServeReady(ready, serve);
  CHECK(served == std::vector<uint64_t>{2, 3});
  CHECK(q.size() == 1);
  CHECK(q.oldest().request_id == 1);
  CHECK(q.waiting(0) == 1);
  CHECK(q.waiting(1) == 0);
  applied = 2;
  q.ServeReady(ready, serve);
  CHECK(served == std::vector<uint64_t>{2, 3, 1});
  CHECK(q.empty());
}

TEST_CASE("A worker may have only so many pulls waiting", "[server-units]") {
  PullQueue q(2);
  // Two pieces served here: 2 + 2 * 2 pulls may wait per worker.
  for (uint64_t i = 0; i < 6; ++i) REQUIRE(q.Park(PullFor(0, 9, i), 2).ok());
  CHECK(Fails(q.Park(PullFor(0, 9, 6), 2), StatusCode::kResourceExhausted,
              "worker 0 already has 6 pulls waiting"));
  CHECK(q.Park(PullFor(1, 9, 7), 2).ok());  // another worker is not held back
  q.ServeReady([](const PendingPull& p) { return p.request_id == 0; }, [](PendingPull&) {});
  CHECK(q.Park(PullFor(0, 9, 8), 2).ok());  // room again once one was served
}

TEST_CASE("Embedding tables are made on first use, with one row width each", "[server-units]") {
  OptimizerOptions opt;
  RowTables t(opt, 7);
  auto a = t.Get(0, 4);
  REQUIRE(a.ok());
  auto again = t.Get(0, 4);
  REQUIRE(again.ok());
  CHECK(*a == *again);
  // Rows start as a table of the same seed starts them.
  auto fresh = SparseTable::Create(0, 4, opt, 7);
  REQUIRE(fresh.ok());
  const std::vector<uint64_t> rows = {3, 1000000};
  std::vector<float> got(8), want(8);
  (*a)->Pull(rows, got.data());
  fresh->Pull(rows, want.data());
  CHECK(got == want);
  const Status width = t.Get(0, 8).status();
  CHECK(Has(width, "sparse table 0 has rows of 4 floats, not 8"));
  const Status beyond = t.Get(RowTables::kMaxTables, 4).status();
  CHECK(Has(beyond, "does not exist (at most 16 tables)"));
  CHECK(t.tables().size() == 1);
}

ServerEntry Entry(int id, std::vector<KeyRange> ranges, std::vector<KeyRange> backups) {
  ServerEntry e;
  e.id = id;
  e.ranges = std::move(ranges);
  e.backup_ranges = std::move(backups);
  return e;
}

const KeyRange kA{0, 4}, kB{4, 8};

TEST_CASE("Each served range replicates to the server that keeps its backup", "[server-units]") {
  // Server 0 serves A and backs up B; server 1 the other way round.
  const std::vector<ServerEntry> table = {Entry(0, {kA}, {kB}), Entry(1, {kB}, {kA})};
  auto plan = PlanRouting(0, table, {kA}, {kB});
  REQUIRE(plan.ok());
  CHECK(plan->promote.empty());
  REQUIRE(plan->backups.size() == 1);
  CHECK(plan->backups[0].keys == kA);
  CHECK(plan->backups[0].server == 1);
}

TEST_CASE("A replica whose primary died is promoted and runs without a backup", "[server-units]") {
  // Server 1 died: its range B is now server 0's, and nobody backs up A or B.
  const std::vector<ServerEntry> table = {Entry(0, {kA, kB}, {})};
  auto plan = PlanRouting(0, table, {kA}, {kB});
  REQUIRE(plan.ok());
  CHECK(plan->promote == std::vector<KeyRange>{kB});
  REQUIRE(plan->backups.size() == 2);
  CHECK((plan->backups[0].keys == kA && plan->backups[0].server == -1));
  CHECK((plan->backups[1].keys == kB && plan->backups[1].server == -1));
}

TEST_CASE("A row bucket is promoted and backed up like a key range", "[server-units]") {
  const KeyRange b0 = RowBucketRange(0), b1 = RowBucketRange(1);
  // Server 1 died: bucket 1, backed up here, is now server 0's.
  const std::vector<ServerEntry> table = {Entry(0, {kA, b0, b1}, {})};
  auto plan = PlanRouting(0, table, {kA, b0}, {b1});
  REQUIRE(plan.ok());
  CHECK(plan->promote == std::vector<KeyRange>{b1});
  REQUIRE(plan->backups.size() == 3);
  CHECK(plan->backups[2].keys == b1);
}

TEST_CASE("A range assigned without a replica here is an error", "[server-units]") {
  const std::vector<ServerEntry> table = {Entry(0, {kA, kB}, {})};
  auto plan = PlanRouting(0, table, {kA}, {});
  CHECK(plan.status().code() == StatusCode::kInternal);
  CHECK(Has(plan.status(), "that this server has no replica of"));
}

TEST_CASE("A server never backs up its own range", "[server-units]") {
  const std::vector<ServerEntry> table = {Entry(0, {kA}, {kA})};
  auto plan = PlanRouting(0, table, {kA}, {kA});
  REQUIRE(plan.ok());
  CHECK(plan->backups[0].server == -1);
}

OptimizerOptions Adagrad() {
  OptimizerOptions o;
  o.kind = OptimizerKind::kAdagrad;
  return o;
}

TEST_CASE("A row push is applied once under its slot, clock and part", "[server-units]") {
  RowBucket b(3, Adagrad(), 7);
  CHECK(b.FirstTime({0, 10, 1}));
  CHECK_FALSE(b.FirstTime({0, 10, 1}));  // resent, recomputed or duplicated
  CHECK(b.FirstTime({0, 10, 2}));        // another message of the step
  CHECK(b.FirstTime({1, 10, 1}));        // another slot
  CHECK(b.FirstTime({0, 9, 1}));         // an older step, first time
  CHECK(b.FirstTime({0, 11, 1}));
}

TEST_CASE("A slot forgets its oldest clocks, which then count as applied", "[server-units]") {
  RowBucket b(0, Adagrad(), 7);
  for (int64_t c = 0; c <= static_cast<int64_t>(RowBucket::kSeenClocks); ++c) {
    REQUIRE(b.FirstTime({0, c, 0}));
  }
  CHECK_FALSE(b.FirstTime({0, 0, 1}));  // forgotten: never applied twice
  CHECK(b.FirstTime({0, 1, 1}));        // still remembered
  CHECK(b.FirstTime({1, 0, 0}));        // other slots unaffected
}

TEST_CASE("A row bucket's state makes a backup that holds the same rows and pushes",
          "[server-units]") {
  RowBucket primary(1, Adagrad(), 7);
  SparseTable* t = *primary.tables().Get(2, 4);
  const std::vector<uint64_t> rows = {5, 99};
  const std::vector<float> g(8, 0.25f);
  t->Push(rows, g.data(), 0.1f);
  REQUIRE(primary.FirstTime({0, 4, 7}));
  BinaryWriter w;
  primary.SaveState(w);
  auto reader = BinaryReader::Open("state", w.Finish());
  REQUIRE(reader.ok());
  RowBucket backup(1, Adagrad(), 7);
  REQUIRE(backup.LoadState(*reader).ok());
  CHECK_FALSE(backup.FirstTime({0, 4, 7}));
  CHECK(backup.FirstTime({0, 5, 7}));
  const SparseTable* copy = *backup.tables().Get(2, 4);
  CHECK(copy->Digest() == t->Digest());
  CHECK(copy->row_count() == 2);
  // The same next push keeps them equal, value for value.
  t->Push(rows, g.data(), 0.1f);
  (*backup.tables().Get(2, 4))->Push(rows, g.data(), 0.1f);
  CHECK(copy->Digest() == t->Digest());
  // A checkpoint's rows file holds the rows and no pushes.
  BinaryWriter rw;
  primary.SaveRows(rw);
  auto rr = BinaryReader::Open("rows", rw.Finish());
  REQUIRE(rr.ok());
  RowBucket restored(1, Adagrad(), 7);
  REQUIRE(restored.LoadRows(*rr).ok());
  CHECK((*restored.tables().Get(2, 4))->Digest() == t->Digest());
  CHECK(restored.FirstTime({0, 4, 7}));
  // A state that ends early is refused, and the bucket keeps what it held.
  BinaryWriter short_state;
  short_state.U32(1);  // one table, and nothing of it
  auto bad = BinaryReader::Open("bad", short_state.Finish());
  REQUIRE(bad.ok());
  CHECK_FALSE(backup.LoadState(*bad).ok());
  CHECK((*backup.tables().Get(2, 4))->row_count() == 2);
}

}  // namespace
}  // namespace pstrain
