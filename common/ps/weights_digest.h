// The weights digest: a 64-bit hash of a model's parameter bytes that is
// the same however the parameters are spread over servers, so two runs can
// be checked for equal weights bit for bit (a difference in any float of
// any tensor or embedding row changes it).
//
// It is defined over the key layout (keys.h): every block contributes
// BlockDigest(key, its floats) and every embedding row RowDigest(table,
// row, its floats); the digest is the sum of all contributions modulo 2^64.
// A server sums the blocks and rows it owns, the coordinator adds the
// servers' sums, a standalone run or a checkpoint reader sums the whole
// model: the same number whatever the cut into key ranges. Each
// contribution is a strong hash of the bytes seeded by the key, so moving a
// value to another block, or changing it, changes the digest with
// probability 1 - 2^-64. The zero padding between tensors is not part of
// any block. Pure functions.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "common/ps/keys.h"

namespace pstrain {

// A 64-bit hash of n bytes (all of them, in order) with a seed.
uint64_t HashBytes(const void* data, size_t n, uint64_t seed);

uint64_t BlockDigest(Key key, std::span<const float> values);
uint64_t RowDigest(uint32_t table, uint64_t row, std::span<const float> values);

// The sum of BlockDigest over the blocks of the valid range `keys`, whose
// floats `values` holds from layout.Flat(keys).begin on.
uint64_t RangeDigest(const KeyLayout& layout, const KeyRange& keys, std::span<const float> values);
// The same over every block: the digest of a dense model's flat parameters.
inline uint64_t ModelDigest(const KeyLayout& layout, std::span<const float> params) {
  return RangeDigest(layout, layout.all(), params);
}

// 16 lowercase hex digits, as metrics files and tools print it.
std::string DigestHex(uint64_t digest);

}  // namespace pstrain
