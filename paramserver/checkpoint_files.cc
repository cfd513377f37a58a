#include "paramserver/checkpoint_files.h"

#include <cstdio>

namespace pstrain {

std::string RowsFileName(uint32_t bucket) {
  return "rows-bucket-" + std::to_string(bucket) + ".bin";
}

std::string SparseFileName(int server) { return "server-" + std::to_string(server) + "-rows.bin"; }

std::string ShardFileName(int server, const KeyRange& r) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "server-%d-%016llx.bin", server,
                static_cast<unsigned long long>(r.begin));
  return buf;
}

Status WriteCheckpointFile(const std::string& dir, const std::string& name, BinaryWriter& w,
                           msg::CheckpointFile::Builder f) {
  const std::vector<uint8_t> bytes = w.Finish();
  RETURN_IF_ERROR(WriteFileDurably(dir + "/" + name, bytes));
  f.setName(name);
  f.setBytes(bytes.size());
  f.setCrc32(ContentCrc32(bytes));
  return OkStatus();
}

}  // namespace pstrain
