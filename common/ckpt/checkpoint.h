// Durable, verifiable checkpoint files.
//
// A checkpoint is a folder DIR/ckpt-EEEEEE (E = epochs completed), or
// DIR/ckpt-EEEEEE-SSSSSSSS for one taken after step S of the next epoch
// (checkpoint.every_steps; names sort in the order they were taken), holding
// one file per parameter range (written by the server that owns it) and a
// MANIFEST written last by the coordinator. Every file is written to a
// temporary name, fsync'ed, renamed into place, and the folder fsync'ed, so
// a crash leaves either the old state or the new one. The manifest lists
// each file with its size, the CRC-32 of its content (the binary file
// without its own trailing checksum), the key range and the clock it holds,
// and ends with its own CRC-32; a checkpoint counts only if its manifest
// and every file it lists verify, so a file copied in from another
// checkpoint is refused by name.
// The manifest may also name a copy of the job as it ran (job.toml, with
// the command line's overrides applied) and list the model's tensors, so
// the checkpoint can be inspected and evaluated on its own.
//
// Binary files: "PSTRCKPT", a format version, then fields written by
// BinaryWriter (little-endian), then the CRC-32 of everything before it.
// BinaryReader checks every read against the end: a damaged file is an
// error naming the file and what is wrong, never a crash.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/base/status.h"

namespace pstrain {

uint32_t Crc32(std::span<const uint8_t> bytes);

// Writes `bytes` to `path` atomically and durably (temp, fsync, rename,
// fsync of the folder).
Status WriteFileDurably(const std::string& path, std::span<const uint8_t> bytes);

class BinaryWriter {
 public:
  BinaryWriter();  // starts with the magic and format version
  void U32(uint32_t v);
  void U64(uint64_t v);
  void I64(int64_t v) { U64(static_cast<uint64_t>(v)); }
  void F64(double v);
  void Floats(std::span<const float> v);  // count, then the values
  // Count, then n zero floats, returned for the caller to fill (memcpy:
  // not aligned); valid until the next write.
  uint8_t* ZeroFloats(size_t n);
  void Reserve(size_t bytes) { bytes_.reserve(bytes); }
  // The finished bytes, CRC-32 appended.
  std::vector<uint8_t> Finish();

 private:
  std::vector<uint8_t> bytes_;
};

class BinaryReader {
 public:
  // Checks the magic, version and CRC-32 of `bytes`; `name` is for messages.
  static StatusOr<BinaryReader> Open(std::string name, std::vector<uint8_t> bytes);
  static StatusOr<BinaryReader> OpenFile(const std::string& path);

  StatusOr<uint32_t> U32();
  StatusOr<uint64_t> U64();
  StatusOr<int64_t> I64();
  StatusOr<double> F64();
  // Reads a float array that must have exactly `expected` values.
  Status Floats(std::span<float> out);
  bool AtEnd() const { return pos_ == end_; }
  const std::string& name() const { return name_; }

 private:
  BinaryReader(std::string name, std::vector<uint8_t> bytes, size_t end)
      : name_(std::move(name)), bytes_(std::move(bytes)), end_(end) {}
  Status Need(size_t n, const char* what);
  std::string name_;
  std::vector<uint8_t> bytes_;
  size_t pos_ = 12;  // after magic and version
  size_t end_;       // before the CRC
};

struct ManifestFile {
  std::string name;
  uint64_t bytes = 0;
  // Binary files (written by BinaryWriter): the CRC-32 of everything but
  // the trailing checksum, which must equal it. The job copy, and files of
  // manifests of format 1: the CRC-32 of the whole file.
  uint32_t crc32 = 0;
  bool whole_file_crc = false;
  uint64_t key_begin = 0, key_end = 0;  // the dense keys or the row bucket it holds
  int64_t clock = -1;                   // the clock the file's weights are at; -1: not recorded
  // Embedding rows: a row bucket's (keys of the row-bucket tensor,
  // common/ps/keys.h), or, written before buckets, a server's (equal keys).
  bool holds_rows() const { return key_begin == key_end || (key_begin >> 32) == 0xffffffffu; }
};

struct ManifestTensor {
  std::string name;  // no white space
  std::vector<int64_t> shape;
};

struct Manifest {
  std::string dir;  // the checkpoint folder (filled when read)
  int format = 2;   // 1: written before file lines held content checksums and clocks
  int epochs_done = 0;
  int64_t step = 0;  // steps of epoch epochs_done + 1 done (a cut within it); 0: between epochs
  int64_t clock = 0;
  uint64_t seed = 0;
  int servers = 0;
  int workers = 0;
  int batch_size = 0;
  std::vector<ManifestFile> files;
  ManifestFile job;                     // the job copy; name empty: none
  std::vector<ManifestTensor> tensors;  // the model's layout, in order (may be empty)
};

// DIR/ckpt-EEEEEE for `epochs_done`; DIR/ckpt-EEEEEE-SSSSSSSS for `step`
// steps into the next epoch.
std::string CheckpointFolder(const std::string& dir, int epochs_done, int64_t step = 0);
// Writes DIR/.../MANIFEST durably.
Status WriteManifest(const std::string& folder, const Manifest& m);
// Reads one checkpoint folder's manifest and checks its checksum, not the
// files it lists.
StatusOr<Manifest> ReadManifest(const std::string& folder);
// The checksum a manifest lists for a binary file's bytes: the CRC-32 of
// its content, its trailing checksum left out.
uint32_t ContentCrc32(std::span<const uint8_t> file_bytes);
// Checks one listed file's size and checksum.
Status VerifyCheckpointFile(const std::string& folder, const ManifestFile& f);
// The file the manifest lists for dense keys `begin`..`end`, or an error
// naming the checkpoint.
StatusOr<ManifestFile> FileForKeys(const Manifest& m, uint64_t begin, uint64_t end);
// Reads and verifies one checkpoint folder: the manifest's checksum, every
// file's size and checksum (the job copy's too), and that no dense keys are
// listed twice.
StatusOr<Manifest> VerifyCheckpoint(const std::string& folder);
// The newest checkpoint in `dir` that verifies. `skipped` receives one line
// per newer checkpoint that did not, saying why.
StatusOr<Manifest> FindNewestCheckpoint(const std::string& dir, std::vector<std::string>* skipped);
// Keeps the newest `keep` complete checkpoints of `dir` (keep >= 0; those
// with a MANIFEST), and any folder newer than the newest of them (one being
// written); removes the other folders, and any `.tmp` file a failed write
// left in the ones kept complete.
void PruneCheckpoints(const std::string& dir, int keep);

}  // namespace pstrain
