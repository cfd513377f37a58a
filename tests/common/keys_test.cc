#include "common/ps/keys.h"

#include <algorithm>
#include <catch2/catch.hpp>

#include "common/nn/model.h"

namespace pstrain {
namespace {

TensorLayout SeedLayout() {
  auto m =
      Model::Build({{"dense", 256}, {"relu"}, {"dense", 128}, {"relu"}, {"dense", 10}}, 784, 10, 1);
  return (*m)->layout();
}

TEST_CASE("Tensors are cut into blocks of at most 16384 floats, keyed by tensor and block",
          "[keys]") {
  const TensorLayout t = SeedLayout();
  const KeyLayout k(t);
  // dense1.weight has 200704 floats: 12 full blocks and one of 4096.
  size_t dense1_blocks = 0;
  for (const auto& b : k.blocks()) {
    if ((b.key >> 32) == 0) ++dense1_blocks;
    CHECK(b.flat_end - b.flat_begin <= kBlockFloats);
  }
  CHECK(dense1_blocks == 13);
  CHECK(k.blocks().size() == 13 + 1 + 2 + 1 + 1 + 1);
  CHECK(k.blocks()[12].key == MakeKey(0, 12));
  CHECK(k.blocks()[12].flat_end - k.blocks()[12].flat_begin == 4096);
  CHECK(k.blocks()[13].key == MakeKey(1, 0));
  CHECK(k.Flat(k.all()) == FlatRange{0, t[5].offset + t[5].size});
}

TEST_CASE("Key ranges map to flat intervals and validate their ends", "[keys]") {
  const TensorLayout t = SeedLayout();
  const KeyLayout k(t);
  CHECK(k.IsValidRange({MakeKey(0, 0), MakeKey(0, 3)}));
  CHECK(k.IsValidRange(k.all()));
  CHECK_FALSE(k.IsValidRange({MakeKey(0, 0), MakeKey(0, 0)}));   // empty
  CHECK_FALSE(k.IsValidRange({MakeKey(0, 3), MakeKey(0, 1)}));   // reversed
  CHECK_FALSE(k.IsValidRange({MakeKey(0, 13), MakeKey(1, 1)}));  // no such block
  CHECK_FALSE(k.IsValidRange({MakeKey(0, 0), MakeKey(99, 0)}));  // past the end
  CHECK_FALSE(k.IsValidRange({~0ULL - 1, ~0ULL}));
  CHECK(k.Flat({MakeKey(0, 1), MakeKey(0, 3)}) == FlatRange{16384, 3 * 16384});
  // A layer's two tensors: weight and bias of dense2.
  const KeyRange layer2 = k.Covering(t[2].offset, t[3].offset + t[3].size);
  CHECK(layer2 == KeyRange{MakeKey(2, 0), MakeKey(4, 0)});
  CHECK(KeyLayout::Intersect({1, 10}, {5, 20}) == KeyRange{5, 10});
  CHECK(KeyLayout::Intersect({1, 5}, {5, 20}) == KeyRange{0, 0});
}

TEST_CASE("A bad key range is told what is wrong with it", "[keys]") {
  const KeyLayout k(SeedLayout());
  auto message = [&](KeyRange r) { return k.CheckRange(r).message(); };
  CHECK(k.CheckRange(k.all()).ok());
  CHECK(k.CheckRange({MakeKey(0, 1), MakeKey(1, 0)}).ok());
  CHECK(message({MakeKey(0, 3), MakeKey(0, 1)}) == "key range [0:3, 0:1) ends before it begins");
  CHECK(message({MakeKey(0, 2), MakeKey(0, 2)}) == "key range [0:2, 0:2) is empty");
  CHECK(message({MakeKey(7, 0), MakeKey(7, 1)}) ==
        "key range [7:0, 7:1): its start is in tensor 7, and the model has tensors 0 to 5");
  CHECK(message({MakeKey(0, 14), MakeKey(1, 0)}) ==
        "key range [0:14, 1:0): its start is block 14 of tensor 0, which has 13 blocks");
  CHECK(message({MakeKey(0, 0), MakeKey(0, 13)}) ==
        "key range [0:0, 0:13): its end is block 13 of tensor 0, which has 13 blocks (a range "
        "that ends with a tensor's last block ends at block 0 of the next tensor)");
  CHECK(message({MakeKey(0, 0), MakeKey(99, 0)}) ==
        "key range [0:0, 99:0): its end is in tensor 99, and the model has tensors 0 to 5");
}

TEST_CASE("SliceKeys balances bytes over servers in contiguous ranges", "[keys]") {
  const KeyLayout k(SeedLayout());
  const size_t total = [&] {
    size_t n = 0;
    for (const auto& b : k.blocks()) n += b.flat_end - b.flat_begin;
    return n;
  }();
  for (int servers : {1, 2, 3, 4, 5, 8}) {
    INFO("servers " << servers);
    auto slices = SliceKeys(k, servers);
    REQUIRE(slices.ok());
    REQUIRE(slices->size() == static_cast<size_t>(servers));
    CHECK(slices->front().begin == k.all().begin);
    CHECK(slices->back().end == k.all().end);
    size_t biggest = 0;
    for (size_t i = 0; i < slices->size(); ++i) {
      const KeyRange& r = (*slices)[i];
      CHECK(k.IsValidRange(r));
      if (i > 0) CHECK(r.begin == (*slices)[i - 1].end);
      size_t floats = 0;
      for (const auto& b : k.blocks()) {
        if (b.key >= r.begin && b.key < r.end) floats += b.flat_end - b.flat_begin;
      }
      biggest = std::max(biggest, floats);
    }
    // No server holds more than its fair share plus one block.
    CHECK(biggest <= total / servers + kBlockFloats);
  }
}

TEST_CASE("SliceKeys refuses more servers than blocks", "[keys]") {
  TensorLayout t;
  t.Add("w", {10});
  t.Add("b", {3});
  const KeyLayout k(t);
  auto r = SliceKeys(k, 3);
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.status().message(), Catch::Contains("2 parameter blocks, fewer than the 3 servers"));
  auto two = SliceKeys(k, 2);
  REQUIRE(two.ok());
  CHECK((*two)[0] == KeyRange{MakeKey(0, 0), MakeKey(1, 0)});
  CHECK((*two)[1] == KeyRange{MakeKey(1, 0), MakeKey(1, 1)});
}

}  // namespace
}  // namespace pstrain

namespace pstrain {
namespace {

TEST_CASE("Pieces cuts at tensor boundaries and on a grid of kPieceBlocks blocks", "[keys]") {
  const TensorLayout t = SeedLayout();
  const KeyLayout k(t);
  // A range starting mid-tensor, off the grid, and one starting on it: both
  // cut where the whole model is cut.
  const std::vector<KeyRange> whole = k.Pieces(k.all());
  for (const KeyRange& r : {k.all(), KeyRange{MakeKey(0, 3), MakeKey(2, 1)}}) {
    const std::vector<KeyRange> parts = k.Pieces(r);
    REQUIRE_FALSE(parts.empty());
    CHECK(parts.front().begin == r.begin);
    CHECK(parts.back().end == r.end);
    for (size_t i = 0; i < parts.size(); ++i) {
      REQUIRE(k.IsValidRange(parts[i]));
      const size_t first = k.LowerBound(parts[i].begin), last = k.LowerBound(parts[i].end);
      CHECK(last - first <= kPieceBlocks);
      // One tensor per piece.
      CHECK((k.blocks()[first].key >> 32) == (k.blocks()[last - 1].key >> 32));
      if (i > 0) CHECK(parts[i].begin == parts[i - 1].end);
      // Each piece lies inside one piece of the whole model's grid.
      CHECK(std::any_of(whole.begin(), whole.end(), [&](const KeyRange& w) {
        return w.begin <= parts[i].begin && parts[i].end <= w.end;
      }));
    }
  }
  // The seed MLP's first weight (13 blocks) is cut every kPieceBlocks
  // blocks; its bias is one piece.
  const size_t first_weight = (13 + kPieceBlocks - 1) / kPieceBlocks;
  CHECK(whole[0] == KeyRange{MakeKey(0, 0), MakeKey(0, kPieceBlocks)});
  CHECK(whole[first_weight - 1].end == MakeKey(1, 0));
  CHECK(whole[first_weight] == KeyRange{MakeKey(1, 0), MakeKey(2, 0)});
}

TEST_CASE("Row buckets are one-key ranges of a tensor no model has", "[keys]") {
  const KeyRange b = RowBucketRange(5);
  CHECK(IsRowBucket(b));
  CHECK(RowBucketOf(b) == 5);
  CHECK(ToString(b) == "rows/5");
  CHECK_FALSE(IsRowBucket({MakeKey(0, 0), MakeKey(1, 0)}));
  CHECK_FALSE(KeyLayout(SeedLayout()).IsValidRange(b));
  // Rows spread over the buckets, the same way on every node.
  std::vector<int> count(4, 0);
  for (uint64_t row = 0; row < 4000; ++row) ++count[BucketOfRow(0, row, 4)];
  for (int c : count) CHECK(c > 800);
  CHECK(BucketOfRow(1, 77, 4) == BucketOfRow(1, 77, 4));
  CHECK(BucketOfRow(1, 77, 1) == 0);
}

}  // namespace
}  // namespace pstrain
