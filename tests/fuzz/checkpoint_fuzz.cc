// libFuzzer target: the checkpoint reader, as a server loads its shard and
// its embedding rows.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/ckpt/checkpoint.h"
#include "common/ps/keys.h"
#include "common/ps/sparse_table.h"
#include "paramserver/dense_shard.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const pstrain::TensorLayout* layout = [] {
    auto* t = new pstrain::TensorLayout();
    t->Add("w", {6});
    t->Add("b", {2});
    return t;
  }();
  static const pstrain::KeyLayout keys(*layout, 4);
  pstrain::ShardOptions o;
  o.optimizer.kind = pstrain::OptimizerKind::kAdam;
  o.slots = 2;
  pstrain::DenseShard shard(keys, keys.all(), std::vector<float>(keys.Flat(keys.all()).size()), o);
  auto reader = pstrain::BinaryReader::Open("fuzz.bin", std::vector<uint8_t>(data, data + size));
  if (reader.ok()) (void)shard.Load(*reader);
  auto rows = pstrain::BinaryReader::Open("rows.bin", std::vector<uint8_t>(data, data + size));
  if (rows.ok()) (void)pstrain::SparseTable::Load(*rows, o.optimizer, 1);
  return 0;
}
