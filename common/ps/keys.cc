#include "common/ps/keys.h"

#include <algorithm>
#include <cstdio>

#include "common/data/handout.h"

namespace pstrain {

KeyLayout::KeyLayout(const TensorLayout& tensors, size_t block_floats) {
  for (int t = 0; t < tensors.count(); ++t) {
    const TensorSpec& spec = tensors[t];
    uint32_t b = 0;
    for (size_t off = 0; off < spec.size; off += block_floats, ++b) {
      blocks_.push_back({MakeKey(static_cast<uint32_t>(t), b), spec.offset + off,
                         spec.offset + std::min(spec.size, off + block_floats)});
    }
  }
}

size_t KeyLayout::LowerBound(Key key) const {
  return static_cast<size_t>(std::lower_bound(blocks_.begin(), blocks_.end(), key,
                                              [](const Block& b, Key k) { return b.key < k; }) -
                             blocks_.begin());
}

bool KeyLayout::IsValidRange(const KeyRange& r) const {
  if (r.begin >= r.end) return false;
  const size_t first = LowerBound(r.begin);
  if (first >= blocks_.size() || blocks_[first].key != r.begin) return false;
  const size_t last = LowerBound(r.end);
  return last == blocks_.size() ? r.end == end_key() : blocks_[last].key == r.end;
}

Status KeyLayout::CheckRange(const KeyRange& r) const {
  const std::string name = "key range " + ToString(r);
  if (r.begin > r.end) return InvalidArgument(name + " ends before it begins");
  if (r.begin == r.end) return InvalidArgument(name + " is empty");
  const uint32_t tensors =
      blocks_.empty() ? 0 : static_cast<uint32_t>(blocks_.back().key >> 32) + 1;
  auto check = [&](Key k, const char* what) -> Status {
    const size_t i = LowerBound(k);
    if ((i < blocks_.size() && blocks_[i].key == k) || (k == r.end && k == end_key())) {
      return OkStatus();
    }
    const uint32_t tensor = static_cast<uint32_t>(k >> 32), block = static_cast<uint32_t>(k);
    if (tensor >= tensors) {
      return InvalidArgument(name + ": its " + what + " is in tensor " + std::to_string(tensor) +
                             ", and the model has tensors 0 to " + std::to_string(tensors - 1));
    }
    const size_t count = LowerBound(MakeKey(tensor + 1, 0)) - LowerBound(MakeKey(tensor, 0));
    return InvalidArgument(name + ": its " + what + " is block " + std::to_string(block) +
                           " of tensor " + std::to_string(tensor) + ", which has " +
                           std::to_string(count) + " blocks" +
                           (block == count ? " (a range that ends with a tensor's last block ends "
                                             "at block 0 of the next tensor)"
                                           : ""));
  };
  RETURN_IF_ERROR(check(r.begin, "start"));
  return check(r.end, "end");
}

FlatRange KeyLayout::Flat(const KeyRange& r) const {
  const size_t first = LowerBound(r.begin);
  const size_t last = LowerBound(r.end);  // one past the final block
  if (first >= last) return {0, 0};
  return {blocks_[first].flat_begin, blocks_[last - 1].flat_end};
}

KeyRange KeyLayout::Covering(size_t flat_begin, size_t flat_end) const {
  KeyRange r{0, 0};
  bool found = false;
  for (size_t i = 0; i < blocks_.size(); ++i) {
    const Block& b = blocks_[i];
    if (b.flat_end <= flat_begin || b.flat_begin >= flat_end) continue;
    if (!found) r.begin = b.key;
    found = true;
    r.end = i + 1 < blocks_.size() ? blocks_[i + 1].key : end_key();
  }
  return r;
}

std::vector<KeyRange> KeyLayout::Pieces(const KeyRange& r) const {
  std::vector<KeyRange> out;
  const size_t first = LowerBound(r.begin), last = LowerBound(r.end);
  size_t begin = first;
  for (size_t b = first; b < last; ++b) {
    const size_t next = b + 1;
    const bool cut = next == last || (blocks_[next].key >> 32) != (blocks_[b].key >> 32) ||
                     (blocks_[next].key & 0xffffffff) % kPieceBlocks == 0;
    if (!cut) continue;
    out.push_back({blocks_[begin].key, next < blocks_.size() ? blocks_[next].key : end_key()});
    begin = next;
  }
  return out;
}

KeyRange KeyLayout::Intersect(const KeyRange& a, const KeyRange& b) {
  KeyRange r{std::max(a.begin, b.begin), std::min(a.end, b.end)};
  if (r.begin >= r.end) return {0, 0};
  return r;
}

StatusOr<std::vector<KeyRange>> SliceKeys(const KeyLayout& layout, int servers) {
  const auto& blocks = layout.blocks();
  if (servers < 1) return InvalidArgument("need at least one server");
  if (blocks.size() < static_cast<size_t>(servers)) {
    return InvalidArgument("the model has " + std::to_string(blocks.size()) +
                           " parameter blocks, fewer than the " + std::to_string(servers) +
                           " servers; use at most " + std::to_string(blocks.size()) + " servers");
  }
  size_t total = 0;
  for (const auto& b : blocks) total += b.flat_end - b.flat_begin;
  std::vector<KeyRange> out;
  size_t i = 0;
  size_t done = 0;
  for (int s = 0; s < servers; ++s) {
    const size_t first = i;
    // Take blocks while this server is below its fair share of what is
    // left, keeping at least one block for each server after it.
    const size_t remaining_servers = static_cast<size_t>(servers - s);
    const size_t target = done + (total - done + remaining_servers / 2) / remaining_servers;
    size_t acc = done;
    while (i < blocks.size() - (remaining_servers - 1)) {
      const size_t sz = blocks[i].flat_end - blocks[i].flat_begin;
      // Stop before a block that overshoots more than stopping short does.
      if (i > first && acc + sz > target && (acc + sz - target) > (target - acc)) break;
      acc += sz;
      ++i;
      if (acc >= target) break;
    }
    if (s == servers - 1) i = blocks.size();
    done = acc;
    out.push_back({blocks[first].key, i < blocks.size() ? blocks[i].key : layout.end_key()});
  }
  return out;
}

uint32_t BucketOfRow(uint32_t table, uint64_t row, uint32_t buckets) {
  return static_cast<uint32_t>(Mix64((static_cast<uint64_t>(table) << 40) ^ row) %
                               std::max<uint32_t>(buckets, 1));
}

std::string ToString(const KeyRange& r) {
  if (IsRowBucket(r)) return "rows/" + std::to_string(RowBucketOf(r));
  char buf[96];
  std::snprintf(buf, sizeof buf, "[%u:%u, %u:%u)", static_cast<unsigned>(r.begin >> 32),
                static_cast<unsigned>(r.begin & 0xffffffff), static_cast<unsigned>(r.end >> 32),
                static_cast<unsigned>(r.end & 0xffffffff));
  return buf;
}

}  // namespace pstrain
