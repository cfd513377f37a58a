// The files a server writes into a checkpoint folder: their names, and
// writing one durably while describing it for the coordinator's manifest.
#pragma once

#include <string>

#include "common/base/status.h"
#include "common/ckpt/checkpoint.h"
#include "common/msg/pstrain.capnp.h"
#include "common/ps/keys.h"

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

}  // namespace pstrain
