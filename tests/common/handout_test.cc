#include "common/data/handout.h"

#include <catch2/catch.hpp>
#include <vector>

#include "common/data/sampler.h"

namespace pstrain {
namespace {

// Every sample exactly once across workers and steps.
void CheckCoversOnce(const HandoutPlan& p, int64_t n) {
  std::vector<int> seen(n, 0);
  int64_t total = 0;
  for (int64_t k = 0; k < p.steps(); ++k) {
    int64_t step = 0;
    for (int w = 0; w < p.workers(); ++w) {
      for (uint32_t s : p.Samples(w, k)) {
        REQUIRE(s < n);
        ++seen[s];
      }
      step += static_cast<int64_t>(p.Samples(w, k).size());
    }
    CHECK(step == p.StepTotal(k));
    total += step;
  }
  CHECK(total == n);
  for (int c : seen) REQUIRE(c == 1);
}

TEST_CASE("Global hand-out: W workers split each global batch of the epoch's order", "[handout]") {
  for (int workers : {1, 2, 3, 5}) {
    for (int64_t n : {0, 1, 7, 1000, 1001}) {
      INFO("workers " << workers << " samples " << n);
      const HandoutPlan p = HandoutPlan::Make(HandoutKind::kGlobal, 3, 2, n, 16, workers);
      CheckCoversOnce(p, n);
      CHECK(p.steps() == (n + 16 * workers - 1) / (16 * workers));
    }
  }
  // With one worker the steps are the standalone batches of EpochOrder.
  const HandoutPlan one = HandoutPlan::Make(HandoutKind::kGlobal, 3, 2, 100, 16, 1);
  const std::vector<uint32_t> order = EpochOrder(3, 2, 100);
  CHECK(std::vector<uint32_t>(one.Samples(0, 1).begin(), one.Samples(0, 1).end()) ==
        std::vector<uint32_t>(order.begin() + 16, order.begin() + 32));
  // Two workers of batch b cover exactly the standalone batch of 2b.
  const HandoutPlan two = HandoutPlan::Make(HandoutKind::kGlobal, 3, 2, 100, 8, 2);
  std::vector<uint32_t> joined(two.Samples(0, 1).begin(), two.Samples(0, 1).end());
  joined.insert(joined.end(), two.Samples(1, 1).begin(), two.Samples(1, 1).end());
  CHECK(joined == std::vector<uint32_t>(order.begin() + 16, order.begin() + 32));
}

TEST_CASE("Static hand-out: weighted partitions, equal step counts, empty steps at the end",
          "[handout]") {
  const HandoutPlan p = HandoutPlan::Make(HandoutKind::kStatic, 1, 0, 600, 10, 3, {1, 2, 3});
  CheckCoversOnce(p, 600);
  CHECK(p.WorkerTotal(0) == 100);
  CHECK(p.WorkerTotal(1) == 200);
  CHECK(p.WorkerTotal(2) == 300);
  CHECK(p.steps() == 30);
  CHECK(p.Samples(0, 9).size() == 10);
  CHECK(p.Samples(0, 10).empty());
  CHECK(p.Samples(2, 29).size() == 10);
  CHECK(p.StepTotal(29) == 10);
  // Each worker keeps its own partition across epochs, in a new order.
  const HandoutPlan next = HandoutPlan::Make(HandoutKind::kStatic, 1, 1, 600, 10, 3, {1, 2, 3});
  std::vector<uint32_t> a(p.Samples(1, 0).begin(), p.Samples(1, 0).end());
  std::vector<uint32_t> b(next.Samples(1, 0).begin(), next.Samples(1, 0).end());
  CHECK(a != b);
  for (uint32_t s : b) CHECK((s >= 100 && s < 300));
}

TEST_CASE("The sample-set hash ignores order and notices a missing or repeated sample",
          "[handout]") {
  uint64_t h = 0;
  for (uint32_t i : EpochOrder(9, 0, 500)) h += Mix64(i);
  CHECK(h == SampleSetHash(500));
  CHECK(h - Mix64(7) != SampleSetHash(500));
  CHECK(h + Mix64(7) != SampleSetHash(500));
}

}  // namespace
}  // namespace pstrain
