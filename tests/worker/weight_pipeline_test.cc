// The worker's weight pipeline against a fake parameter server whose
// replies come when the test says: late, twice, out of order or never.
#include "worker/weight_pipeline.h"

#include <catch2/catch.hpp>
#include <map>
#include <vector>

namespace pstrain {
namespace {

constexpr auto kDeadline = std::chrono::milliseconds(50);

// The servers' weights after `clock` steps: every value is the clock.
class FakeSource : public WeightSource {
 public:
  explicit FakeSource(const KeyLayout& keys) : keys_(keys) {}

  struct Request {
    KeyRange range;
    float* flat = nullptr;
    int64_t clock = 0;
    bool abandoned = false;
    bool delivered = false;
    bool never = false;  // Wait times out
  };

  StatusOr<Ticket> Pull(const KeyRange& range, float* flat, int64_t clock) override {
    requests[next] = {range, flat, clock};
    return next++;
  }
  // The reply of `t` arrives: written where the pull asked, unless the
  // pull was abandoned (as PsClient drops replies of abandoned tickets).
  void Deliver(Ticket t) {
    Request& r = requests.at(t);
    if (r.abandoned) {
      ++dropped;
      return;
    }
    const FlatRange f = keys_.Flat(r.range);
    for (size_t i = f.begin; i < f.end; ++i) r.flat[i] = static_cast<float>(r.clock);
    r.delivered = true;
  }
  Status Wait(Ticket t, std::chrono::milliseconds) override {
    Request& r = requests.at(t);
    if (r.never) return DeadlineExceeded("no reply to pull " + std::to_string(t));
    if (!r.delivered) Deliver(t);
    return OkStatus();
  }
  void Abandon(Ticket t) override { requests.at(t).abandoned = true; }

  // The tickets of the pulls of `clock` not abandoned, in the order sent.
  std::vector<Ticket> Live(int64_t clock) const {
    std::vector<Ticket> v;
    for (const auto& [t, r] : requests) {
      if (r.clock == clock && !r.abandoned) v.push_back(t);
    }
    return v;
  }

  std::map<Ticket, Request> requests;
  Ticket next = 1;
  int dropped = 0;

 private:
  const KeyLayout& keys_;
};

// A model of three parameter groups, its keys and a fake source.
struct Fixture {
  Fixture() {
    auto m = Model::Build({{"dense", 6}, {"relu"}, {"dense", 5}, {"relu"}, {"dense", 3}}, 4, 3, 2);
    REQUIRE(m.ok());
    model = std::move(*m);
    keys = std::make_unique<KeyLayout>(model->layout());
    source = std::make_unique<FakeSource>(*keys);
  }
  // The logits of a fixed input with the weights the model reads now.
  std::vector<float> Logits() {
    const std::vector<float> x = {0.5f, -1.0f, 0.25f, 2.0f};
    const float* y = model->Forward(x.data(), 1);
    return std::vector<float>(y, y + 3);
  }
  // The logits of the same input if every weight were `value`.
  std::vector<float> LogitsAt(float value) {
    auto m = Model::Build({{"dense", 6}, {"relu"}, {"dense", 5}, {"relu"}, {"dense", 3}}, 4, 3, 2);
    const TensorLayout& layout = (*m)->layout();
    for (const TensorSpec& t : layout.tensors()) {
      std::fill((*m)->params().begin() + t.offset, (*m)->params().begin() + t.offset + t.size,
                value);
    }
    const std::vector<float> x = {0.5f, -1.0f, 0.25f, 2.0f};
    const float* y = (*m)->Forward(x.data(), 1);
    return std::vector<float>(y, y + 3);
  }
  std::unique_ptr<Model> model;
  std::unique_ptr<KeyLayout> keys;
  std::unique_ptr<FakeSource> source;
};

TEST_CASE("Without overlap a pull copies every weight into the model once all arrived",
          "[worker][pipeline]") {
  Fixture f;
  WeightPipeline w(*f.model, *f.keys, *f.source, /*overlap=*/false, kDeadline);
  CHECK(w.BeforeForward() == nullptr);
  REQUIRE(w.Pull(3, 3).ok());
  CHECK(w.version() == 3);
  CHECK(f.Logits() == f.LogitsAt(3));
  // A pull that never completes leaves the model as it was, and is abandoned.
  class Never : public FakeSource {
   public:
    using FakeSource::FakeSource;
    StatusOr<Ticket> Pull(const KeyRange& r, float* flat, int64_t clock) override {
      auto t = FakeSource::Pull(r, flat, clock);
      requests.at(*t).never = true;
      return t;
    }
  } never(*f.keys);
  WeightPipeline stuck(*f.model, *f.keys, never, false, kDeadline);
  const Status s = stuck.Pull(4, 0);
  CHECK(s.code() == StatusCode::kDeadlineExceeded);
  CHECK(never.requests.at(1).abandoned);
  CHECK(stuck.version() == -1);
  CHECK(f.Logits() == f.LogitsAt(3));
}

TEST_CASE(
    "With overlap each group is pulled on its own and installed before the forward pass "
    "reads it",
    "[worker][pipeline]") {
  Fixture f;
  WeightPipeline w(*f.model, *f.keys, *f.source, /*overlap=*/true, kDeadline);
  REQUIRE(w.Pull(0, 0).ok());  // every group at clock 0
  CHECK(f.Logits() == f.LogitsAt(0));
  REQUIRE(w.Prefetch(1).ok());
  const std::vector<WeightSource::Ticket> pulls = f.source->Live(1);
  REQUIRE(pulls.size() == 3);  // one per group, first group first
  CHECK(f.source->requests.at(pulls[0]).range.begin < f.source->requests.at(pulls[1]).range.begin);
  // Prefetching again sends nothing more.
  REQUIRE(w.Prefetch(1).ok());
  CHECK(f.source->Live(1).size() == 3);
  // Replies out of order: the last group's first, then the first's, twice.
  f.source->Deliver(pulls[2]);
  f.source->Deliver(pulls[0]);
  f.source->Deliver(pulls[0]);
  // Until installed the model reads clock 0: the replies land in the other buffer.
  CHECK(f.Logits() == f.LogitsAt(0));
  w.set_want_clock(1);
  Model::WeightsNeededFn before = w.BeforeForward();
  std::vector<float> x = {0.5f, -1.0f, 0.25f, 2.0f};
  std::vector<int32_t> y = {1};
  f.model->TrainStep(x.data(), y.data(), 1, 1.0f, nullptr, before);
  REQUIRE(w.forward_status().ok());
  CHECK(f.Logits() == f.LogitsAt(1));
  CHECK(f.source->dropped == 0);
}

TEST_CASE(
    "A rewind abandons the pulls in flight, so a late reply cannot change the weights "
    "the model reads",
    "[worker][pipeline]") {
  Fixture f;
  WeightPipeline w(*f.model, *f.keys, *f.source, /*overlap=*/true, kDeadline);
  REQUIRE(w.Pull(0, 0).ok());
  REQUIRE(w.InstallAll(1).ok());  // clock 1 in buffer 1, clock 0 kept in buffer 0
  CHECK(f.Logits() == f.LogitsAt(1));
  // The pulls of clock 2 go out into buffer 0; then a worker died and
  // step 1 must be computed again with clock 1's weights.
  REQUIRE(w.Prefetch(2).ok());
  const std::vector<WeightSource::Ticket> late = f.source->Live(2);
  REQUIRE(late.size() == 3);
  w.Rewind(1);
  for (WeightSource::Ticket t : late) CHECK(f.source->requests.at(t).abandoned);
  // Back to clock 0, the weights in buffer 0, and the late replies of
  // clock 2 arrive: dropped, nothing overwritten.
  w.Rewind(0);
  for (WeightSource::Ticket t : late) f.source->Deliver(t);
  CHECK(f.source->dropped == 3);
  CHECK(f.Logits() == f.LogitsAt(0));
  // Forward again from clock 0: fresh pulls of clock 1 are installed.
  REQUIRE(w.InstallAll(1).ok());
  CHECK(f.Logits() == f.LogitsAt(1));
}

TEST_CASE("A pull that never answers stops the forward pass with the reason, and is abandoned",
          "[worker][pipeline]") {
  Fixture f;
  WeightPipeline w(*f.model, *f.keys, *f.source, /*overlap=*/true, kDeadline);
  REQUIRE(w.Pull(0, 0).ok());
  REQUIRE(w.Prefetch(1).ok());
  const std::vector<WeightSource::Ticket> pulls = f.source->Live(1);
  f.source->requests.at(pulls[1]).never = true;
  w.set_want_clock(1);
  std::vector<float> x = {0.5f, -1.0f, 0.25f, 2.0f};
  std::vector<int32_t> y = {1};
  int reported = 0;
  f.model->TrainStep(
      x.data(), y.data(), 1, 1.0f, [&](int, int) { ++reported; }, w.BeforeForward());
  CHECK(w.forward_status().code() == StatusCode::kDeadlineExceeded);
  CHECK(reported == 0);  // no gradient of a step that did not run
  CHECK(f.source->requests.at(pulls[1]).abandoned);
  // The group with no pull in flight cannot be installed: an error, not a hang.
  const Status again = w.Install(1);
  CHECK(again.code() == StatusCode::kInternal);
  CHECK_THAT(again.message(), Catch::Contains("no pull brings them"));
  // A whole pull recovers.
  REQUIRE(w.Pull(1, 1).ok());
  CHECK(f.Logits() == f.LogitsAt(1));
}

}  // namespace
}  // namespace pstrain
