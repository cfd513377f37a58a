#include "common/ps/weights_digest.h"

#include <catch2/catch.hpp>
#include <cstring>
#include <set>

#include "common/base/rng.h"
#include "common/ps/keys.h"
#include "common/ps/sparse_table.h"
#include "paramserver/range_shard.h"

namespace pstrain {
namespace {

// Three tensors of 40000, 7 and 20000 floats: full blocks, short blocks, padding.
TensorLayout Layout() {
  TensorLayout t;
  t.Add("a", {200, 200});
  t.Add("b", {7});
  t.Add("c", {20000});
  return t;
}

std::vector<float> Values(const TensorLayout& t, uint64_t seed) {
  std::vector<float> v(t.total_floats(), 0.0f);
  Rng rng(seed, 0);
  for (const TensorSpec& s : t.tensors()) {
    for (size_t i = 0; i < s.size; ++i) v[s.offset + i] = static_cast<float>(rng.Normal());
  }
  return v;
}

TEST_CASE("The weights digest is the same for any cut into key ranges", "[digest]") {
  const TensorLayout t = Layout();
  const KeyLayout k(t);
  const std::vector<float> v = Values(t, 1);
  const uint64_t whole = ModelDigest(k, v);
  for (int servers : {1, 2, 3, 5}) {
    auto ranges = SliceKeys(k, servers);
    REQUIRE(ranges.ok());
    uint64_t sum = 0;
    for (const KeyRange& r : *ranges) {
      const FlatRange f = k.Flat(r);
      sum += RangeDigest(k, r, std::span<const float>(v).subspan(f.begin, f.size()));
    }
    CHECK(sum == whole);
  }
  // Servers hold ranges as RangeShards, cut into pieces or not.
  for (bool cut : {false, true}) {
    RangeShard shard(k, k.all(), v, ShardOptions{}, cut);
    CHECK(shard.Digest() == whole);
    CHECK(shard.block_count() == k.blocks().size());
  }
  CHECK(DigestHex(whole).size() == 16);
  CHECK(DigestHex(0x0123456789abcdefULL) == "0123456789abcdef");
}

TEST_CASE("Any change of any float's bits changes the weights digest", "[digest]") {
  const TensorLayout t = Layout();
  const KeyLayout k(t);
  const std::vector<float> v = Values(t, 1);
  const uint64_t base = ModelDigest(k, v);
  CHECK(ModelDigest(k, Values(t, 2)) != base);
  std::set<uint64_t> seen = {base};
  for (const size_t at :
       {size_t{0}, size_t{16383}, size_t{16384}, t[1].offset + 6, t[2].offset + 19999}) {
    std::vector<float> w = v;
    uint32_t bits;
    std::memcpy(&bits, &w[at], 4);
    bits ^= 1;  // the least significant bit of the mantissa
    std::memcpy(&w[at], &bits, 4);
    CHECK(seen.insert(ModelDigest(k, w)).second);
  }
  // +0 and -0 compare equal but are other bytes.
  std::vector<float> zero = v, negative_zero = v;
  zero[5] = 0.0f;
  negative_zero[5] = -0.0f;
  CHECK(ModelDigest(k, zero) != ModelDigest(k, negative_zero));
  // Two blocks' contents swapped: the sum of per-block hashes still changes.
  std::vector<float> swapped = v;
  std::swap_ranges(swapped.begin(), swapped.begin() + 16384, swapped.begin() + 16384);
  CHECK(ModelDigest(k, swapped) != base);
  // The zero padding between tensors is no block's.
  std::vector<float> padded = v;
  REQUIRE(t[2].offset > t[1].offset + t[1].size);
  padded[t[1].offset + t[1].size] = 1.0f;
  CHECK(ModelDigest(k, padded) == base);
}

TEST_CASE("Embedding rows add their digest whatever their order", "[digest]") {
  OptimizerOptions opt;
  auto a = SparseTable::Create(0, 4, opt, 7);
  auto b = SparseTable::Create(0, 4, opt, 7);
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  const std::vector<uint64_t> rows = {5, 900000000001ULL, 17};
  const std::vector<uint64_t> reversed = {17, 900000000001ULL, 5};
  std::vector<float> g(12, 0.25f);
  a->Push(rows, g.data(), 0.1f);
  b->Push(reversed, g.data(), 0.1f);
  CHECK(a->Digest() == b->Digest());
  CHECK(a->Digest() != 0);
  std::vector<float> one(4, 0.5f);
  const std::vector<uint64_t> first = {5};
  b->Push(first, one.data(), 0.1f);
  CHECK(a->Digest() != b->Digest());
  // A row of another table with the same values counts differently.
  std::vector<float> values(4, 1.0f);
  CHECK(RowDigest(0, 5, values) != RowDigest(1, 5, values));
  CHECK(RowDigest(0, 5, values) != RowDigest(0, 6, values));
}

}  // namespace
}  // namespace pstrain
