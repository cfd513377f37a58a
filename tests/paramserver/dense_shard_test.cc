#include "paramserver/dense_shard.h"

#include <catch2/catch.hpp>
#include <cstring>
#include <limits>
#include <vector>

#include "common/base/rng.h"
#include "paramserver/range_shard.h"
#include "paramserver/shard_stats.h"

namespace pstrain {
namespace {

Frame Floats(std::vector<float> v) { return Frame::Copy(v.data(), v.size() * sizeof(float)); }

// One tensor of n floats, one float per block: keys (0, i) are floats i.
struct Keys {
  explicit Keys(int n) : layout(Make(n)), keys(layout, 1) {}
  static TensorLayout Make(int n) {
    TensorLayout t;
    t.Add("w", {n});
    return t;
  }
  KeyRange Floats(int a, int b) const { return {MakeKey(0, a), MakeKey(0, b)}; }
  TensorLayout layout;
  KeyLayout keys;
};

ShardOptions Sgd(Consistency c, int slots, int staleness = 0) {
  ShardOptions o;
  o.consistency = c;
  o.staleness = staleness;
  o.slots = slots;
  o.optimizer.kind = OptimizerKind::kSgd;
  return o;
}

std::vector<float> Weights(DenseShard& s) {
  auto snap = s.Snapshot();
  return std::vector<float>(snap->data(), snap->data() + snap->size());
}

TEST_CASE("BSP sums every live worker's gradient and applies once", "[paramserver]") {
  std::vector<float> w0 = {1, 1, 1, 1};
  Keys k_s(4);
  DenseShard s(k_s.keys, k_s.Floats(0, 4), w0, Sgd(Consistency::kBsp, 2));
  CHECK_FALSE(s.PullReady(1));
  // Worker 1 pushes both halves, worker 0 the whole range.
  CHECK(*s.Push(1, 0, k_s.Floats(0, 2), Floats({1, 2}), 5, 0, 0.5f) ==
        DenseShard::PushOutcome::kBuffered);
  CHECK(*s.Push(1, 0, k_s.Floats(2, 4), Floats({3, 4}), 5, 0, 0.5f) ==
        DenseShard::PushOutcome::kBuffered);
  CHECK(Weights(s) == w0);  // nothing applied before everyone pushed
  CHECK(*s.Push(0, 0, k_s.Floats(0, 4), Floats({1, 1, 1, 1}), 5, 0, 0.5f) ==
        DenseShard::PushOutcome::kApplied);
  CHECK(s.version() == 1);
  CHECK(s.PullReady(1));
  CHECK(Weights(s) == std::vector<float>{0.0f, -0.5f, -1.0f, -1.5f});
  CHECK(s.updates_applied() == 1);
}

TEST_CASE("Coded weights are coded once per version and shared by its pulls", "[paramserver]") {
  std::vector<float> w0 = {1.0f, -2.5f, 0.1f, 3.0f};
  Keys k(4);
  DenseShard s(k.keys, k.Floats(0, 4), w0, Sgd(Consistency::kBsp, 1));
  auto a = s.CodedSnapshot(WireType::kBfloat16);
  auto b = s.CodedSnapshot(WireType::kBfloat16);
  CHECK(a == b);  // one coding for every pull of the version
  std::vector<uint16_t> want(4);
  FloatToBf16(w0.data(), want.data(), 4);
  CHECK(*a == want);
  auto h = s.CodedSnapshot(WireType::kFloat16);  // another coding: coded anew
  FloatToHalf(w0.data(), want.data(), 4);
  CHECK(*h == want);
  REQUIRE(*s.Push(0, 0, k.Floats(0, 4), Floats({1, 1, 1, 1}), 1, 0, 1.0f) ==
          DenseShard::PushOutcome::kApplied);
  auto c = s.CodedSnapshot(WireType::kFloat16);
  const std::vector<float> w1 = Weights(s);
  FloatToHalf(w1.data(), want.data(), 4);
  CHECK(*c == want);
  CHECK(c != h);  // h is still held (a reply in flight): not overwritten
  FloatToHalf(w0.data(), want.data(), 4);
  CHECK(*h == want);
}

TEST_CASE("VectorPool lends a vector again only once nobody else holds it", "[paramserver]") {
  VectorPool<float> pool;
  auto a = pool.Get(100);
  auto b = pool.Get(50);
  CHECK(a != b);
  CHECK(a->size() == 100);
  CHECK(b->size() == 50);
  const float* where = a->data();
  a.reset();
  auto c = pool.Get(80);  // fits in a's capacity: a's storage, no allocation
  CHECK(c->data() == where);
  CHECK(c->size() == 80);
  CHECK(pool.size() == 2);
  for (int i = 0; i < 10; ++i) {
    auto d = pool.Get(10);  // released at the end of each iteration
    CHECK(d != b);
    CHECK(d != c);
  }
  CHECK(pool.size() == 3);
}

TEST_CASE("BSP applies a push at most once and refuses running ahead", "[paramserver]") {
  Keys k_s(2);
  DenseShard s(k_s.keys, k_s.Floats(0, 2), std::vector<float>{0, 0}, Sgd(Consistency::kBsp, 1));
  CHECK(*s.Push(0, 0, k_s.Floats(0, 2), Floats({1, 1}), 1, 0, 1.0f) ==
        DenseShard::PushOutcome::kApplied);
  // A duplicate of clock 0 after it was applied.
  CHECK(*s.Push(0, 0, k_s.Floats(0, 2), Floats({1, 1}), 1, 0, 1.0f) ==
        DenseShard::PushOutcome::kDuplicate);
  // A duplicate within a clock that is still open.
  Keys k_t(2);
  DenseShard t(k_t.keys, k_t.Floats(0, 2), std::vector<float>{0, 0}, Sgd(Consistency::kBsp, 2));
  CHECK(*t.Push(0, 0, k_t.Floats(0, 2), Floats({1, 1}), 1, 0, 1.0f) ==
        DenseShard::PushOutcome::kBuffered);
  CHECK(*t.Push(0, 0, k_t.Floats(0, 2), Floats({9, 9}), 1, 0, 1.0f) ==
        DenseShard::PushOutcome::kDuplicate);
  CHECK(*t.Push(1, 0, k_t.Floats(0, 2), Floats({1, 1}), 1, 0, 1.0f) ==
        DenseShard::PushOutcome::kApplied);
  CHECK(Weights(t) == std::vector<float>{-2, -2});
  auto ahead = t.Push(0, 5, k_t.Floats(0, 2), Floats({1, 1}), 1, 0, 1.0f);
  REQUIRE_FALSE(ahead.ok());
  CHECK(ahead.status().code() == StatusCode::kAborted);
}

TEST_CASE("BSP sums in worker order whatever order the pushes arrive in", "[paramserver]") {
  // Values whose float sum depends on the order of addition.
  const std::vector<float> g0 = {1e8f}, g1 = {1.0f}, g2 = {-1e8f};
  auto run = [&](std::vector<int> order) {
    Keys k_s(1);
    DenseShard s(k_s.keys, k_s.Floats(0, 1), std::vector<float>{0}, Sgd(Consistency::kBsp, 3));
    const std::vector<std::vector<float>> g = {g0, g1, g2};
    for (int w : order) REQUIRE(s.Push(w, 0, k_s.Floats(0, 1), Floats(g[w]), 1, 0, 1.0f).ok());
    return Weights(s)[0];
  };
  const float a = run({0, 1, 2});
  CHECK(run({2, 1, 0}) == a);
  CHECK(run({1, 2, 0}) == a);
}

TEST_CASE("A substitute recomputing a dead slot's step fills only the missing parts",
          "[paramserver]") {
  Keys k_s(4);
  DenseShard s(k_s.keys, k_s.Floats(0, 4), std::vector<float>{0, 0, 0, 0},
               Sgd(Consistency::kBsp, 2));
  // Slot 1's first half arrived before its worker died.
  REQUIRE(s.Push(1, 0, k_s.Floats(0, 2), Floats({1, 1}), 8, 77, 1.0f).ok());
  REQUIRE(s.Push(0, 0, k_s.Floats(0, 4), Floats({1, 1, 1, 1}), 8, 11, 1.0f).ok());
  CHECK(s.version() == 0);
  // The substitute sends the whole of slot 1's step (same values).
  CHECK(*s.Push(1, 0, k_s.Floats(0, 2), Floats({1, 1}), 8, 77, 1.0f) ==
        DenseShard::PushOutcome::kDuplicate);
  CHECK(*s.Push(1, 0, k_s.Floats(2, 4), Floats({1, 1}), 8, 77, 1.0f) ==
        DenseShard::PushOutcome::kApplied);
  CHECK(Weights(s) == std::vector<float>{-2, -2, -2, -2});
  // Each (slot, clock) counted once in the sample statistics, then forgotten.
  const DenseShard::SampleStats st = s.TakeSampleStats(0, 1);
  CHECK(st.samples == 16);
  CHECK(st.hash == 88);
  CHECK(s.TakeSampleStats(0, 1).samples == 0);
  CHECK_FALSE(s.Push(2, 1, k_s.Floats(0, 4), Floats({1, 1, 1, 1}), 1, 0, 1.0f).ok());  // no slot 2
}

TEST_CASE("Empty steps count as pushed but add nothing", "[paramserver]") {
  Keys k_s(2);
  DenseShard s(k_s.keys, k_s.Floats(0, 2), std::vector<float>{0, 0}, Sgd(Consistency::kBsp, 2));
  REQUIRE(s.Push(0, 0, k_s.Floats(0, 2), Frame(), 0, 0, 1.0f).ok());
  REQUIRE(s.Push(1, 0, k_s.Floats(0, 2), Floats({1, 3}), 2, 0, 1.0f).ok());
  CHECK(Weights(s) == std::vector<float>{-1, -3});
  CHECK_FALSE(s.Push(0, 1, k_s.Floats(0, 2), Frame(), 4, 0, 1.0f).ok());  // no payload but samples
}

TEST_CASE("ASP applies each push on arrival", "[paramserver]") {
  Keys k_s(2);
  DenseShard s(k_s.keys, k_s.Floats(0, 2), std::vector<float>{0, 0}, Sgd(Consistency::kAsp, 2));
  REQUIRE(s.Push(1, 0, k_s.Floats(0, 2), Floats({1, 1}), 1, 0, 1.0f).ok());
  CHECK(Weights(s) == std::vector<float>{-1, -1});
  REQUIRE(s.Push(1, 1, k_s.Floats(0, 1), Floats({1}), 1, 0, 1.0f).ok());
  CHECK(Weights(s) == std::vector<float>{-2, -1});
  CHECK(s.PullReady(100));
}

TEST_CASE("SSP holds back a worker that runs more than `staleness` steps ahead", "[paramserver]") {
  Keys k_s(1);
  DenseShard s(k_s.keys, k_s.Floats(0, 1), std::vector<float>{0}, Sgd(Consistency::kSsp, 2, 1));
  // Worker 0 pushes clocks 0 and 1; worker 1 pushes nothing.
  REQUIRE(s.Push(0, 0, k_s.Floats(0, 1), Floats({1}), 1, 0, 1.0f).ok());
  REQUIRE(s.Push(0, 1, k_s.Floats(0, 1), Floats({1}), 1, 0, 1.0f).ok());
  CHECK(s.PullReady(1));        // clock 1 needs everyone at >= 0 done
  CHECK_FALSE(s.PullReady(2));  // clock 2 needs worker 1 to have done clock 0
  REQUIRE(s.Push(1, 0, k_s.Floats(0, 1), Floats({1}), 1, 0, 1.0f).ok());
  CHECK(s.PullReady(2));
  CHECK_FALSE(s.PullReady(3));
}

TEST_CASE("A pull may wait only for clocks that pushes can still reach", "[paramserver]") {
  Keys k(2);
  DenseShard bsp(k.keys, k.Floats(0, 2), std::vector<float>{0, 0}, Sgd(Consistency::kBsp, 1));
  CHECK(bsp.NewestWaitableClock() == kPullWindow);
  REQUIRE(bsp.Push(0, 0, k.Floats(0, 2), Floats({1, 1}), 1, 0, 1.0f).ok());
  CHECK(bsp.NewestWaitableClock() == 1 + kPullWindow);
  // SSP: the slowest slot plus the staleness.
  DenseShard ssp(k.keys, k.Floats(0, 2), std::vector<float>{0, 0}, Sgd(Consistency::kSsp, 2, 3));
  REQUIRE(ssp.Push(0, 0, k.Floats(0, 2), Floats({1, 1}), 1, 0, 1.0f).ok());
  CHECK(ssp.NewestWaitableClock() == 3 + kPullWindow);
  DenseShard asp(k.keys, k.Floats(0, 2), std::vector<float>{0, 0}, Sgd(Consistency::kAsp, 1));
  CHECK(asp.NewestWaitableClock() == std::numeric_limits<int64_t>::max());
  // A range of pieces names the piece that is behind.
  RangeShard cut(k.keys, k.Floats(0, 2), std::vector<float>{0, 0}, Sgd(Consistency::kBsp, 1), true);
  CHECK(cut.CheckPullClock(k.Floats(0, 2), kPullWindow).ok());
  const Status far = cut.CheckPullClock(k.Floats(0, 2), kPullWindow + 1);
  CHECK(far.code() == StatusCode::kInvalidArgument);
  CHECK_THAT(far.message(),
             Catch::Contains("are at clock 0, and a pull may wait for clock 4 at most"));
}

TEST_CASE("Snapshots stay unchanged while a reply holds them", "[paramserver]") {
  Keys k_s(1);
  DenseShard s(k_s.keys, k_s.Floats(0, 1), std::vector<float>{0}, Sgd(Consistency::kAsp, 1));
  std::shared_ptr<const std::vector<float>> held = s.Snapshot();
  REQUIRE(s.Push(0, 0, k_s.Floats(0, 1), Floats({1}), 1, 0, 1.0f).ok());
  std::shared_ptr<const std::vector<float>> fresh = s.Snapshot();
  CHECK((*held)[0] == 0.0f);
  CHECK((*fresh)[0] == -1.0f);
  CHECK(held.get() != fresh.get());
}

}  // namespace
}  // namespace pstrain

namespace pstrain {
namespace {

TEST_CASE("A shard saved and loaded continues exactly where it was", "[paramserver][checkpoint]") {
  Keys k(4);
  ShardOptions o = Sgd(Consistency::kBsp, 1);
  o.optimizer.kind = OptimizerKind::kAdam;
  DenseShard a(k.keys, k.Floats(0, 4), std::vector<float>{1, 2, 3, 4}, o);
  REQUIRE(a.Push(0, 0, k.Floats(0, 4), Floats({1, -1, 2, -2}), 1, 0, 0.1f).ok());
  BinaryWriter w;
  a.Save(w);
  auto reader = BinaryReader::Open("shard", w.Finish());
  REQUIRE(reader.ok());
  DenseShard b(k.keys, k.Floats(0, 4), std::vector<float>{0, 0, 0, 0}, o);
  REQUIRE(b.Load(*reader).ok());
  CHECK(b.version() == 1);
  CHECK(Weights(b) == Weights(a));
  // The next step, with Adam's moments restored, agrees too.
  REQUIRE(a.Push(0, 1, k.Floats(0, 4), Floats({0.5f, 0.5f, 0.5f, 0.5f}), 1, 0, 0.1f).ok());
  REQUIRE(b.Push(0, 1, k.Floats(0, 4), Floats({0.5f, 0.5f, 0.5f, 0.5f}), 1, 0, 0.1f).ok());
  CHECK(Weights(b) == Weights(a));
  // A file for other keys is refused.
  Keys k8(8);
  DenseShard c(k8.keys, k8.Floats(0, 8), std::vector<float>(8, 0.0f), o);
  BinaryWriter w2;
  a.Save(w2);
  auto r2 = BinaryReader::Open("shard", w2.Finish());
  CHECK_THAT(c.Load(*r2).message(), Catch::Contains("was the job's server count changed?"));
}

TEST_CASE("ASP refuses a push running far ahead of its slot", "[paramserver]") {
  Keys k(4);
  DenseShard shard(k.keys, k.keys.all(), std::vector<float>(4, 0.0f), Sgd(Consistency::kAsp, 2));
  auto far = shard.Push(0, kMaxClockLead, k.keys.all(), Floats({1, 1, 1, 1}), 1, 1, 0.1f);
  REQUIRE_FALSE(far.ok());
  CHECK(far.status().code() == StatusCode::kAborted);
  CHECK_THAT(far.status().message(), Catch::Contains("ahead"));
  CHECK(Weights(shard) == std::vector<float>(4, 0.0f));
  CHECK(shard.Push(0, kMaxClockLead - 1, k.keys.all(), Floats({1, 1, 1, 1}), 1, 1, 0.5f).ok());
  CHECK(Weights(shard) == std::vector<float>(4, -0.5f));
}

TEST_CASE("The weights of a saved shard can be read without building one",
          "[paramserver][checkpoint]") {
  Keys k(4);
  DenseShard a(k.keys, k.Floats(0, 4), std::vector<float>{1, 2, 3, 4}, Sgd(Consistency::kBsp, 1));
  REQUIRE(a.Push(0, 0, k.Floats(0, 4), Floats({1, -1, 2, -2}), 1, 0, 0.5f).ok());
  BinaryWriter w;
  a.Save(w);
  const std::vector<uint8_t> bytes = w.Finish();
  auto reader = BinaryReader::Open("shard", bytes);
  REQUIRE(reader.ok());
  std::vector<float> weights(4);
  auto saved = DenseShard::ReadSaved(*reader, k.Floats(0, 4), weights);
  REQUIRE(saved.ok());
  CHECK(saved->version == 1);
  CHECK(saved->updates == 1);
  CHECK(weights == Weights(a));
  auto again = BinaryReader::Open("shard", bytes);
  std::vector<float> three(3);
  CHECK_THAT(DenseShard::ReadSaved(*again, k.Floats(0, 3), three).status().message(),
             Catch::Contains("holds keys"));
}

}  // namespace
}  // namespace pstrain

namespace pstrain {
namespace {

// Three tensors of 10, 3 and 4 floats in blocks of 2 (5, 2 and 2 blocks),
// with padding between them: a is cut into several pieces.
struct Tensors {
  Tensors() : keys(Make(), 2) {}
  static TensorLayout Make() {
    TensorLayout t;
    t.Add("a", {10});
    t.Add("b", {3});
    t.Add("c", {4});
    return t;
  }
  KeyRange Tensor(uint32_t t) const {
    return {MakeKey(t, 0), t + 1 < 3 ? MakeKey(t + 1, 0) : keys.end_key()};
  }
  size_t floats() const { return keys.Flat(keys.all()).size(); }
  // Values for every float of `r` from `seed`, zero in the padding between
  // tensors (as in a model's gradients and weights).
  std::vector<float> Random(const KeyRange& r, uint64_t seed) const {
    Rng rng(seed);
    const size_t base = keys.Flat(r).begin;
    std::vector<float> v(keys.Flat(r).size());
    for (size_t i = 0; i < v.size(); ++i) {
      const size_t at = base + i;
      const bool used = at < 10 || (at >= 16 && at < 19) || at >= 32;
      v[i] = used ? rng.Uniform(-1.0f, 1.0f) : 0.0f;
    }
    return v;
  }
  KeyLayout keys;
};

// The floats of `frames`, back to back.
std::vector<float> Joined(const Message& frames) {
  std::vector<float> out;
  for (const Frame& f : frames) {
    const size_t at = out.size();
    out.resize(at + f.size() / sizeof(float));
    std::memcpy(out.data() + at, f.data(), f.size());
  }
  return out;
}

std::vector<float> Pulled(RangeShard& s, const KeyRange& r) {
  Message frames;
  s.AppendWeights(r, WireType::kFloat32, &frames);
  return Joined(frames);
}

std::vector<uint8_t> Saved(const RangeShard& s) {
  BinaryWriter w;
  s.Save(w);
  return w.Finish();
}

std::vector<float> Initial(const Tensors& t) { return t.Random(t.keys.all(), 9); }

TEST_CASE("A cut range applies each piece once every slot pushed it, and serves it at once",
          "[paramserver]") {
  Tensors t;
  const std::vector<float> w0 = Initial(t);
  RangeShard s(t.keys, t.keys.all(), w0, Sgd(Consistency::kBsp, 2), /*cut=*/true);
  REQUIRE(s.pieces().size() == t.keys.Pieces(t.keys.all()).size());
  REQUIRE(s.pieces().size() >= 4);
  // The last tensor first, as backward produces it.
  for (int slot : {0, 1}) {
    REQUIRE(s.Push(slot, 0, t.Tensor(2), Floats({1, 1, 1, 1}), 3, 7, 0.5f).ok());
  }
  CHECK(s.PullReady(t.Tensor(2), 1));
  CHECK_FALSE(s.PullReady(t.Tensor(0), 1));
  CHECK_FALSE(s.PullReady(t.keys.all(), 1));
  CHECK(Pulled(s, t.Tensor(2)) ==
        std::vector<float>{w0[32] - 1, w0[33] - 1, w0[34] - 1, w0[35] - 1});
  // Only the first tensor's pieces wait now; a pull spanning them waits too.
  for (int slot : {0, 1}) REQUIRE(s.Push(slot, 0, t.Tensor(1), Floats({0, 0, 0}), 3, 7, 0.5f).ok());
  REQUIRE(
      s.Push(0, 0, t.Tensor(0), Frame::Copy(t.Random(t.Tensor(0), 1).data(), 40), 3, 7, 0.5f).ok());
  CHECK_FALSE(s.PullReady(t.Tensor(0), 1));
  REQUIRE(
      s.Push(1, 0, t.Tensor(0), Frame::Copy(t.Random(t.Tensor(0), 1).data(), 40), 3, 7, 0.5f).ok());
  CHECK(s.PullReady(t.keys.all(), 1));
  // A pull across pieces comes back as the whole interval, padding zero.
  const std::vector<float> all = Pulled(s, t.keys.all());
  REQUIRE(all.size() == t.floats());
  CHECK(all[10] == 0.0f);
  CHECK(all[19] == 0.0f);
  CHECK(all[16] == w0[16]);
  for (const auto& piece : s.pieces()) {
    CHECK(piece->version() == 1);
    CHECK(piece->TakeSampleStats(0, 1).samples == 6);
  }
  CHECK(s.updates_applied() == 1);
}

TEST_CASE("Cut and uncut ranges compute the same weights and read each other's checkpoints",
          "[paramserver][checkpoint]") {
  Tensors t;
  ShardOptions o = Sgd(Consistency::kBsp, 2);
  o.optimizer.kind = OptimizerKind::kAdam;
  const std::vector<float> w0 = Initial(t);
  RangeShard cut(t.keys, t.keys.all(), w0, o, true), whole(t.keys, t.keys.all(), w0, o, false);
  // Slot 0 pushes everything in one message (split among the pieces), slot
  // 1 tensor by tensor from the last.
  auto step = [&](RangeShard& s, int64_t clock) {
    std::vector<float> g = t.Random(t.keys.all(), 100 + clock);
    REQUIRE(s.Push(0, clock, t.keys.all(), Frame::Copy(g.data(), g.size() * 4), 2, 1, 0.1f).ok());
    for (uint32_t tensor : {2u, 1u, 0u}) {
      std::vector<float> h = t.Random(t.Tensor(tensor), 200 + clock * 3 + tensor);
      REQUIRE(
          s.Push(1, clock, t.Tensor(tensor), Frame::Copy(h.data(), h.size() * 4), 2, 1, 0.1f).ok());
    }
  };
  for (int64_t clock = 0; clock < 3; ++clock) {
    step(cut, clock);
    step(whole, clock);
    CHECK(Pulled(cut, t.keys.all()) == Pulled(whole, t.keys.all()));
  }
  // The same file either way.
  const std::vector<uint8_t> bytes = Saved(cut);
  CHECK(bytes == Saved(whole));
  RangeShard cut2(t.keys, t.keys.all(), std::vector<float>(t.floats()), o, true);
  RangeShard whole2(t.keys, t.keys.all(), std::vector<float>(t.floats()), o, false);
  auto r1 = BinaryReader::Open("shard", bytes);
  auto r2 = BinaryReader::Open("shard", bytes);
  REQUIRE(whole2.Load(*r1).ok());
  REQUIRE(cut2.Load(*r2).ok());
  // The next step (Adam's moments and step numbers restored) agrees too.
  for (RangeShard* s : {&cut, &whole, &cut2, &whole2}) step(*s, 3);
  CHECK(Pulled(cut2, t.keys.all()) == Pulled(cut, t.keys.all()));
  CHECK(Pulled(whole2, t.keys.all()) == Pulled(cut, t.keys.all()));
}

TEST_CASE("A checkpoint cut taken while training goes on holds the state of its clock",
          "[paramserver][checkpoint]") {
  Tensors t;
  ShardOptions o = Sgd(Consistency::kBsp, 2);
  o.optimizer.kind = OptimizerKind::kAdam;
  const std::vector<float> w0 = Initial(t);
  RangeShard running(t.keys, t.keys.all(), w0, o, true),
      stopped(t.keys, t.keys.all(), w0, o, false);
  auto step = [&](RangeShard& s, int64_t clock) {
    for (int slot = 0; slot < 2; ++slot) {
      std::vector<float> g = t.Random(t.keys.all(), 100 + clock * 2 + slot);
      REQUIRE(s.Push(slot, clock, t.keys.all(), Frame::Copy(g.data(), g.size() * 4), 3,
                     static_cast<uint64_t>(7 + clock), 0.1f)
                  .ok());
    }
  };
  REQUIRE(running.AddCut(2));
  REQUIRE(running.AddCut(4));
  for (int64_t clock = 0; clock < 5; ++clock) step(running, clock);
  for (int64_t clock = 0; clock < 2; ++clock) step(stopped, clock);
  CHECK_FALSE(running.AddCut(3));  // past it
  REQUIRE(running.CutTaken(2));
  REQUIRE(running.CutTaken(4));
  running.DropCut(4);
  CHECK_FALSE(running.CutTaken(4));
  // The image of clock 2, taken while steps 2..4 went on, is what a shard
  // that stopped at clock 2 writes, byte for byte.
  std::vector<DenseShard::Image> images = running.TakeCut(2);
  std::vector<const DenseShard::Image*> views;
  for (const auto& m : images) views.push_back(&m);
  BinaryWriter w;
  DenseShard::SaveImages(w, views);
  const std::vector<uint8_t> bytes = w.Finish();
  CHECK(bytes == Saved(stopped));
  // Restored, it computes steps 2..4 to the same weights, and still counts
  // the samples of steps 0 and 1 (so the epoch's sample check holds).
  RangeShard resumed(t.keys, t.keys.all(), std::vector<float>(t.floats()), o, true);
  auto r = BinaryReader::Open("cut", bytes);
  REQUIRE(resumed.Load(*r).ok());
  CHECK(resumed.pieces().front()->version() == 2);
  for (int64_t clock = 2; clock < 5; ++clock) step(resumed, clock);
  CHECK(Pulled(resumed, t.keys.all()) == Pulled(running, t.keys.all()));
  for (size_t i = 0; i < resumed.pieces().size(); ++i) {
    const DenseShard::SampleStats a = running.pieces()[i]->TakeSampleStats(0, 5);
    const DenseShard::SampleStats b = resumed.pieces()[i]->TakeSampleStats(0, 5);
    CHECK(a.samples == 30);
    CHECK(b.samples == a.samples);
    CHECK(b.hash == a.hash);
  }
}

TEST_CASE("A cut range replicates each piece to a backup cut alike", "[paramserver]") {
  Tensors t;
  const std::vector<float> w0 = Initial(t);
  const ShardOptions o = Sgd(Consistency::kBsp, 1);
  RangeShard primary(t.keys, t.keys.all(), w0, o, true), backup(t.keys, t.keys.all(), w0, o, true);
  Status replicated;
  for (const auto& piece : primary.pieces()) {
    piece->SetReplication([&](const DenseShard::Update& u) {
      Status s = backup.ApplyReplicated(u);
      if (replicated.ok()) replicated = s;
    });
  }
  for (int64_t clock = 0; clock < 2; ++clock) {
    std::vector<float> g = t.Random(t.keys.all(), 300 + clock);
    REQUIRE(
        primary.Push(0, clock, t.keys.all(), Frame::Copy(g.data(), g.size() * 4), 1, 1, 0.1f).ok());
  }
  REQUIRE(replicated.ok());
  CHECK(Pulled(backup, t.keys.all()) == Pulled(primary, t.keys.all()));
  for (const auto& piece : backup.pieces()) CHECK(piece->version() == 2);
}

TEST_CASE(
    "A server's statistics sum its ranges and say whether every piece applied the same "
    "samples",
    "[paramserver]") {
  Tensors t;
  const std::vector<float> w0 = Initial(t);
  std::vector<std::unique_ptr<RangeShard>> shards;
  shards.push_back(
      std::make_unique<RangeShard>(t.keys, t.keys.all(), w0, Sgd(Consistency::kBsp, 2), true));
  // Only the last tensor's pieces hear of clock 0.
  for (int slot : {0, 1}) {
    REQUIRE(shards[0]->Push(slot, 0, t.Tensor(2), Floats({1, 1, 1, 1}), 3, 7, 0.5f).ok());
  }
  const ShardStats partial = GatherStats(shards, {}, 0, 1);
  CHECK_FALSE(partial.samples_agree);
  CHECK(partial.min_samples == 0);
  CHECK(partial.digest == shards[0]->Digest());
  CHECK(partial.sum_squares == shards[0]->SumSquares());
  CHECK(partial.digest_blocks == static_cast<int64_t>(shards[0]->block_count()));
  // Another server whose every piece applies clock 0 with the same samples.
  std::vector<std::unique_ptr<RangeShard>> whole;
  whole.push_back(
      std::make_unique<RangeShard>(t.keys, t.keys.all(), w0, Sgd(Consistency::kBsp, 2), true));
  for (int slot : {0, 1}) {
    for (uint32_t k = 0; k < 3; ++k) {
      const size_t n = t.keys.Flat(t.Tensor(k)).size();
      REQUIRE(whole[0]
                  ->Push(slot, 0, t.Tensor(k), Frame::Copy(t.Random(t.Tensor(k), 1).data(), n * 4),
                         3, 7, 0.5f)
                  .ok());
    }
  }
  const ShardStats full = GatherStats(whole, {}, 0, 1);
  CHECK(full.samples_agree);
  CHECK(full.min_samples == 6);
  CHECK(full.updates == whole[0]->updates_applied());
}

}  // namespace
}  // namespace pstrain
