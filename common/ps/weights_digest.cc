#include "common/ps/weights_digest.h"

#include <cstdio>
#include <cstring>

#include "common/base/check.h"

namespace pstrain {
namespace {

constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ULL;

// SplitMix64's finaliser: every input bit moves every output bit.
uint64_t Mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

uint64_t Rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

}  // namespace

uint64_t HashBytes(const void* data, size_t n, uint64_t seed) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint64_t h = Mix(seed ^ (n * kGolden));
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    h = Rotl(h ^ Mix(w), 27) * kGolden + 0x52dce729;
  }
  if (i < n) {
    uint64_t w = 0;
    std::memcpy(&w, p + i, n - i);
    h = Rotl(h ^ Mix(w ^ 0xff), 27) * kGolden + 0x52dce729;
  }
  return Mix(h);
}

uint64_t BlockDigest(Key key, std::span<const float> values) {
  return HashBytes(values.data(), values.size_bytes(), Mix(key) ^ 0x626c6f636bULL);  // "block"
}

uint64_t RowDigest(uint32_t table, uint64_t row, std::span<const float> values) {
  const uint64_t seed = Mix(Mix(table + 1ULL) ^ row) ^ 0x726f77ULL;  // "row"
  return HashBytes(values.data(), values.size_bytes(), seed);
}

uint64_t RangeDigest(const KeyLayout& layout, const KeyRange& keys, std::span<const float> values) {
  const FlatRange flat = layout.Flat(keys);
  PSTRAIN_CHECK(values.size() >= flat.size()) << values.size() << " < " << flat.size();
  uint64_t sum = 0;
  const auto& blocks = layout.blocks();
  for (size_t b = layout.LowerBound(keys.begin); b < blocks.size() && blocks[b].key < keys.end;
       ++b) {
    sum += BlockDigest(blocks[b].key, values.subspan(blocks[b].flat_begin - flat.begin,
                                                     blocks[b].flat_end - blocks[b].flat_begin));
  }
  return sum;
}

std::string DigestHex(uint64_t digest) {
  char out[17];
  std::snprintf(out, sizeof(out), "%016llx", static_cast<unsigned long long>(digest));
  return out;
}

}  // namespace pstrain
