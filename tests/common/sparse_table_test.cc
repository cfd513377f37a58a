#include "common/ps/sparse_table.h"

#include <catch2/catch.hpp>
#include <cmath>

namespace pstrain {
namespace {

TEST_CASE("Sparse rows read as the same seeded values everywhere, and exist once pushed",
          "[common]") {
  OptimizerOptions o;
  o.kind = OptimizerKind::kSgd;
  auto a = SparseTable::Create(1, 4, o, 7);
  auto b = SparseTable::Create(1, 4, o, 7);
  auto other_table = SparseTable::Create(2, 4, o, 7);
  REQUIRE(a.ok());
  std::vector<uint64_t> rows = {10, 99999999999ULL};
  std::vector<float> ra(8), rb(8), rc(8);
  a->Pull(rows, ra.data());
  b->Pull(std::vector<uint64_t>{99999999999ULL, 10}, rb.data());
  other_table->Pull(rows, rc.data());
  CHECK(std::equal(ra.begin(), ra.begin() + 4, rb.begin() + 4));
  CHECK_FALSE(std::equal(ra.begin(), ra.end(), rc.begin()));
  for (float v : ra) CHECK(std::abs(v) <= 0.05f);
  CHECK(a->row_count() == 0);  // reading creates nothing
  const std::vector<float> g(4, 0.0f);
  a->Push(std::vector<uint64_t>{10}, g.data(), 0.1f);
  CHECK(a->row_count() == 1);
  std::vector<float> again(8);
  a->Pull(rows, again.data());
  CHECK(again == ra);  // a zero gradient changes nothing
}

TEST_CASE("Sparse pushes apply SGD or AdaGrad to the named rows only", "[common]") {
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

// A row updated by the sparse table follows the dense optimizer exactly
// (each row keeps its own state; Adam counts steps per row).
TEST_CASE("Sparse rows follow the dense optimizers' arithmetic", "[common]") {
  for (OptimizerKind kind : {OptimizerKind::kMomentum, OptimizerKind::kAdam}) {
    OptimizerOptions o;
    o.kind = kind;
    o.weight_decay = 0.01f;
    auto table = SparseTable::Create(0, 3, o, 5);
    REQUIRE(table.ok());
    const std::vector<uint64_t> row = {42}, other = {7};
    std::vector<float> w(3), w_other(3), g(3);
    table->Pull(row, w.data());
    table->Pull(other, w_other.data());
    std::unique_ptr<Optimizer> dense = Optimizer::Create(o, 3);
    for (int step = 0; step < 5; ++step) {
      for (int i = 0; i < 3; ++i) g[i] = 0.3f * static_cast<float>(i + 1) - 0.1f * step;
      dense->Apply(w, g, 0.05f);
      table->Push(row, g.data(), 0.05f);
      // Another row's pushes do not advance this row's Adam step.
      if (step % 2 == 0) table->Push(other, g.data(), 0.05f);
    }
    std::vector<float> got(3);
    table->Pull(row, got.data());
    for (int i = 0; i < 3; ++i) CHECK(got[i] == Approx(w[i]).epsilon(1e-5));
  }
}

TEST_CASE("Sparse tables refuse widths they cannot serve", "[common]") {
  OptimizerOptions o;
  CHECK_THAT(SparseTable::Create(0, 0, o, 1).status().message(),
             Catch::Contains("row width 0 is not in [1, 65536]"));
  CHECK_FALSE(SparseTable::Create(0, 70000, o, 1).ok());
}

}  // namespace
}  // namespace pstrain

namespace pstrain {
namespace {

TEST_CASE("A sparse table saved and loaded continues exactly as one never saved", "[common]") {
  OptimizerOptions o;
  o.kind = OptimizerKind::kAdam;
  auto a = SparseTable::Create(3, 2, o, 11);
  REQUIRE(a.ok());
  const std::vector<uint64_t> rows = {5, 900, 77};
  std::vector<float> g = {0.1f, -0.2f, 0.3f, 0.05f, -0.4f, 0.2f};
  for (int i = 0; i < 3; ++i) a->Push(rows, g.data(), 0.01f);
  a->Push(std::vector<uint64_t>{900}, g.data(), 0.01f);  // a row one step ahead
  BinaryWriter w;
  a->Save(w);
  auto reader = BinaryReader::Open("rows.bin", w.Finish());
  REQUIRE(reader.ok());
  auto b = SparseTable::Load(*reader, o, 11);
  REQUIRE(b.ok());
  CHECK(reader->AtEnd());
  CHECK(b->row_count() == 3);
  CHECK(b->table() == 3);
  a->Push(rows, g.data(), 0.01f);
  b->Push(rows, g.data(), 0.01f);
  std::vector<float> va(6), vb(6);
  a->Pull(rows, va.data());
  b->Pull(rows, vb.data());
  CHECK(va == vb);
  // Another optimizer than the job's is refused by name.
  BinaryWriter w2;
  a->Save(w2);
  auto r2 = BinaryReader::Open("rows.bin", w2.Finish());
  o.kind = OptimizerKind::kAdagrad;
  CHECK_THAT(SparseTable::Load(*r2, o, 11).status().message(),
             Catch::Contains("rows.bin: sparse table 3 was saved with another optimizer than the "
                             "job's adagrad"));
}

}  // namespace
}  // namespace pstrain
