#include "paramserver/sparse_table.h"

#include <catch2/catch.hpp>
#include <cmath>

namespace pstrain {
namespace {

TEST_CASE("Sparse rows are created on first use, the same on every server", "[paramserver]") {
  OptimizerOptions o;
  o.kind = OptimizerKind::kSgd;
  auto a = SparseTable::Create(1, 4, o, 7);
  auto b = SparseTable::Create(1, 4, o, 7);
  REQUIRE(a.ok());
  std::vector<uint64_t> rows = {10, 99999999999ULL};
  std::vector<float> ra(8), rb(8);
  a->Pull(rows, ra.data());
  b->Pull(std::vector<uint64_t>{99999999999ULL, 10}, rb.data());
  CHECK(std::equal(ra.begin(), ra.begin() + 4, rb.begin() + 4));
  CHECK(a->row_count() == 2);
  for (float v : ra) CHECK(std::abs(v) <= 0.05f);
}

TEST_CASE("Sparse pushes apply SGD or AdaGrad to the named rows only", "[paramserver]") {
  OptimizerOptions o;
  o.kind = OptimizerKind::kSgd;
  auto t = SparseTable::Create(0, 2, o, 1);
  std::vector<float> before(4), after(4);
  const std::vector<uint64_t> rows = {3, 4};
  t->Pull(rows, before.data());
  const std::vector<float> g = {1, 2};
  t->Push(std::vector<uint64_t>{3}, g.data(), 0.1f);
  t->Pull(rows, after.data());
  CHECK(after[0] == Approx(before[0] - 0.1));
  CHECK(after[1] == Approx(before[1] - 0.2));
  CHECK(after[2] == before[2]);

  o.kind = OptimizerKind::kAdagrad;
  auto ada = SparseTable::Create(0, 2, o, 1);
  ada->Pull(rows, before.data());
  ada->Push(std::vector<uint64_t>{3}, g.data(), 0.1f);
  ada->Pull(rows, after.data());
  CHECK(after[0] == Approx(before[0] - 0.1));  // g/sqrt(g^2) = 1
  CHECK(after[1] == Approx(before[1] - 0.1));
}

TEST_CASE("Sparse tables refuse optimizers and widths they cannot serve", "[paramserver]") {
  OptimizerOptions o;
  o.kind = OptimizerKind::kAdam;
  CHECK_THAT(SparseTable::Create(0, 2, o, 1).status().message(),
             Catch::Contains("sgd or adagrad, not adam"));
  o.kind = OptimizerKind::kSgd;
  CHECK_FALSE(SparseTable::Create(0, 0, o, 1).ok());
}

}  // namespace
}  // namespace pstrain
