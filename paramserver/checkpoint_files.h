// The files a server writes into a checkpoint folder: their names, and
// writing one durably while describing it for the coordinator's manifest.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "common/base/status.h"
#include "common/ckpt/checkpoint.h"
#include "common/msg/pstrain.capnp.h"
#include "common/nn/tensor.h"
#include "common/ps/keys.h"
#include "paramserver/dense_shard.h"

namespace pstrain {

// "rows-bucket-3.bin": the embedding rows of row bucket 3, whichever
// server held it.
std::string RowsFileName(uint32_t bucket);
// "server-3-rows.bin": the rows server 3 held, in checkpoints written
// before rows were kept in buckets (server N held bucket N); still read.
std::string SparseFileName(int server);
// "server-3-00000000000a0000.bin": the range starting at r.begin.
std::string ShardFileName(int server, const KeyRange& r);
// Writes what `w` holds durably to dir/name and describes the file in `f`
// (name, bytes, the CRC-32 of its content).
Status WriteCheckpointFile(const std::string& dir, const std::string& name, BinaryWriter& w,
                           msg::CheckpointFile::Builder f);

// What one dense shard file of a checkpoint gave.
struct FileResult {
  Status status;  // checksum, size, format
  KeyRange keys;
  FlatRange flat;
  DenseShard::Saved saved;
};
// Reads every dense shard file's weights into `params` (laid out by
// `layout`); `loaded` marks the floats that were read.
std::vector<FileResult> ReadWeights(const std::string& folder, const Manifest& m,
                                    const TensorLayout& layout, std::span<float> params,
                                    std::vector<bool>* loaded);
// Whether every float of tensor t was read.
bool Covered(const std::vector<bool>& loaded, const TensorSpec& t);

// model.init_from: overwrites the tensors of `params` (laid out by
// `layout`) with those of the same name and shape in the checkpoint at
// `path` (a checkpoint folder, or a folder of them: the newest that
// verifies). A tensor without its match on the other side is an error that
// lists every name and shape on both sides, unless `partial`: then the
// matching ones are taken. Returns a line saying what was taken and what
// was left as it was.
StatusOr<std::string> InitFromCheckpoint(const std::string& path, const TensorLayout& layout,
                                         std::span<float> params, bool partial);

}  // namespace pstrain
