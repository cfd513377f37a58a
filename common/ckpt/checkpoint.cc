#include "common/ckpt/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace pstrain {
namespace {

constexpr char kMagic[8] = {'P', 'S', 'T', 'R', 'C', 'K', 'P', 'T'};
constexpr uint32_t kFormatVersion = 1;
// Format 2 file lines: name, bytes, content CRC-32, key begin, key end, clock.
constexpr char kManifestHeader[] = "pstrain-checkpoint 2";
constexpr char kManifestHeaderV1[] = "pstrain-checkpoint 1";

std::string Errno() { return std::strerror(errno); }

Status FsyncPath(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) return DataLoss(path + ": cannot open to sync: " + Errno());
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return DataLoss(path + ": fsync failed: " + Errno());
  return OkStatus();
}

}  // namespace

uint32_t Crc32(std::span<const uint8_t> bytes) {
  uLong crc = crc32(0L, Z_NULL, 0);
  size_t done = 0;
  while (done < bytes.size()) {
    const uInt chunk = static_cast<uInt>(std::min<size_t>(bytes.size() - done, 1u << 30));
    crc = crc32(crc, bytes.data() + done, chunk);
    done += chunk;
  }
  return static_cast<uint32_t>(crc);
}

Status WriteFileDurably(const std::string& path, std::span<const uint8_t> bytes) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return DataLoss(tmp + ": cannot create: " + Errno());
  // A failed write leaves nothing behind: a full disk stays no fuller.
  auto fail = [&](const std::string& what) {
    const std::string why = Errno();
    ::close(fd);
    ::unlink(tmp.c_str());
    return DataLoss(tmp + ": " + what + " failed: " + why);
  };
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("write");
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) return fail("fsync");
  if (::close(fd) != 0) {
    const std::string why = Errno();
    ::unlink(tmp.c_str());
    return DataLoss(tmp + ": close failed: " + why);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = Errno();
    ::unlink(tmp.c_str());
    return DataLoss(path + ": rename failed: " + why);
  }
  return FsyncPath(std::filesystem::path(path).parent_path().string(), true);
}

BinaryWriter::BinaryWriter() {
  bytes_.reserve(1 << 16);
  for (char c : kMagic) bytes_.push_back(static_cast<uint8_t>(c));
  U32(kFormatVersion);
}

void BinaryWriter::U32(uint32_t v) {
  for (int i = 0; i < 4; ++i) bytes_.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

void BinaryWriter::U64(uint64_t v) {
  for (int i = 0; i < 8; ++i) bytes_.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

void BinaryWriter::F64(double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, 8);
  U64(bits);
}

void BinaryWriter::Floats(std::span<const float> v) {
  U64(v.size());
  const size_t at = bytes_.size();
  bytes_.resize(at + v.size() * sizeof(float));
  std::memcpy(bytes_.data() + at, v.data(), v.size() * sizeof(float));
}

uint8_t* BinaryWriter::ZeroFloats(size_t n) {
  U64(n);
  const size_t at = bytes_.size();
  bytes_.resize(at + n * sizeof(float));
  return bytes_.data() + at;
}

std::vector<uint8_t> BinaryWriter::Finish() {
  U32(Crc32(bytes_));
  return std::move(bytes_);
}

StatusOr<BinaryReader> BinaryReader::Open(std::string name, std::vector<uint8_t> bytes) {
  if (bytes.size() < 16) {
    return DataLoss(name + ": truncated: " + std::to_string(bytes.size()) +
                    " bytes is shorter than a checkpoint header");
  }
  if (std::memcmp(bytes.data(), kMagic, 8) != 0) {
    return DataLoss(name + ": not a pstrain checkpoint file (bad magic)");
  }
  const size_t end = bytes.size() - 4;
  uint32_t stored = 0;
  for (int i = 0; i < 4; ++i) stored |= static_cast<uint32_t>(bytes[end + i]) << (8 * i);
  if (Crc32(std::span<const uint8_t>(bytes.data(), end)) != stored) {
    return DataLoss(name + ": checksum mismatch: the file is damaged or truncated");
  }
  uint32_t version = 0;
  for (int i = 0; i < 4; ++i) version |= static_cast<uint32_t>(bytes[8 + i]) << (8 * i);
  if (version != kFormatVersion) {
    return DataLoss(name + ": format version " + std::to_string(version) + " is not " +
                    std::to_string(kFormatVersion));
  }
  return BinaryReader(std::move(name), std::move(bytes), end);
}

StatusOr<BinaryReader> BinaryReader::OpenFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound(path + ": cannot open");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
  return Open(path, std::move(bytes));
}

Status BinaryReader::Need(size_t n, const char* what) {
  if (end_ - pos_ < n) {
    return DataLoss(name_ + ": ends inside " + what + " (" + std::to_string(end_ - pos_) +
                    " bytes left, " + std::to_string(n) + " needed)");
  }
  return OkStatus();
}

StatusOr<uint32_t> BinaryReader::U32() {
  RETURN_IF_ERROR(Need(4, "a 32-bit field"));
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(bytes_[pos_ + i]) << (8 * i);
  pos_ += 4;
  return v;
}

StatusOr<uint64_t> BinaryReader::U64() {
  RETURN_IF_ERROR(Need(8, "a 64-bit field"));
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(bytes_[pos_ + i]) << (8 * i);
  pos_ += 8;
  return v;
}

StatusOr<int64_t> BinaryReader::I64() {
  ASSIGN_OR_RETURN(uint64_t v, U64());
  return static_cast<int64_t>(v);
}

StatusOr<double> BinaryReader::F64() {
  ASSIGN_OR_RETURN(uint64_t bits, U64());
  double v;
  std::memcpy(&v, &bits, 8);
  return v;
}

Status BinaryReader::Floats(std::span<float> out) {
  ASSIGN_OR_RETURN(uint64_t n, U64());
  if (n != out.size()) {
    return DataLoss(name_ + ": holds " + std::to_string(n) + " values where " +
                    std::to_string(out.size()) + " were expected");
  }
  RETURN_IF_ERROR(Need(n * sizeof(float), "a float array"));
  std::memcpy(out.data(), bytes_.data() + pos_, n * sizeof(float));
  pos_ += n * sizeof(float);
  return OkStatus();
}

std::string CheckpointFolder(const std::string& dir, int epochs_done, int64_t step) {
  char buf[48];
  if (step > 0) {
    std::snprintf(buf, sizeof buf, "ckpt-%06d-%08lld", epochs_done, static_cast<long long>(step));
  } else {
    std::snprintf(buf, sizeof buf, "ckpt-%06d", epochs_done);
  }
  return (std::filesystem::path(dir) / buf).string();
}

Status WriteManifest(const std::string& folder, const Manifest& m) {
  std::ostringstream os;
  os << kManifestHeader << "\n"
     << "epochs_done " << m.epochs_done << "\n"
     << (m.step > 0 ? "step " + std::to_string(m.step) + "\n" : std::string()) << "clock "
     << m.clock << "\nseed " << m.seed << "\nservers " << m.servers << "\nworkers " << m.workers
     << "\nbatch_size " << m.batch_size << "\n";
  for (const ManifestFile& f : m.files) {
    os << "file " << f.name << " " << f.bytes << " " << f.crc32 << " " << f.key_begin << " "
       << f.key_end << " " << f.clock << "\n";
  }
  if (!m.job.name.empty())
    os << "job " << m.job.name << " " << m.job.bytes << " " << m.job.crc32 << "\n";
  for (const ManifestTensor& t : m.tensors) {
    os << "tensor " << t.name;
    for (int64_t d : t.shape) os << " " << d;
    os << "\n";
  }
  std::string text = os.str();
  text += "crc32 " +
          std::to_string(Crc32(std::span<const uint8_t>(
              reinterpret_cast<const uint8_t*>(text.data()), text.size()))) +
          "\n";
  return WriteFileDurably(
      folder + "/MANIFEST",
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
}

StatusOr<Manifest> ReadManifest(const std::string& folder) {
  const std::string path = folder + "/MANIFEST";
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound(path + ": missing (the checkpoint was never completed)");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  const size_t crc_at = text.rfind("crc32 ");
  const bool v1 = text.rfind(kManifestHeaderV1, 0) == 0;
  if (crc_at == std::string::npos || (!v1 && text.rfind(kManifestHeader, 0) != 0)) {
    return DataLoss(path + ": damaged (no header or no checksum line)");
  }
  const uint32_t want =
      Crc32(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), crc_at));
  if (std::to_string(want) + "\n" != text.substr(crc_at + 6)) {
    return DataLoss(path + ": checksum mismatch: the manifest is damaged");
  }
  Manifest m;
  m.dir = folder;
  m.format = v1 ? 1 : 2;
  std::istringstream lines(text.substr(0, crc_at));
  std::string line;
  std::getline(lines, line);  // header
  while (std::getline(lines, line)) {
    std::istringstream f(line);
    std::string key;
    f >> key;
    if (key == "epochs_done")
      f >> m.epochs_done;
    else if (key == "step") {
      f >> m.step;
      if (!f || m.step < 1) return DataLoss(path + ": bad step line \"" + line + "\"");
    } else if (key == "clock")
      f >> m.clock;
    else if (key == "seed")
      f >> m.seed;
    else if (key == "servers")
      f >> m.servers;
    else if (key == "workers")
      f >> m.workers;
    else if (key == "batch_size")
      f >> m.batch_size;
    else if (key == "file") {
      ManifestFile mf;
      f >> mf.name >> mf.bytes >> mf.crc32 >> mf.key_begin >> mf.key_end;
      if (v1) {
        mf.whole_file_crc = true;  // format 1 listed the CRC-32 of the whole file
      } else {
        f >> mf.clock;
      }
      if (!f || mf.name.find('/') != std::string::npos) {
        return DataLoss(path + ": bad file line \"" + line + "\"");
      }
      m.files.push_back(mf);
    } else if (key == "job") {
      f >> m.job.name >> m.job.bytes >> m.job.crc32;
      m.job.whole_file_crc = true;
      if (!f || m.job.name.find('/') != std::string::npos) {
        return DataLoss(path + ": bad job line \"" + line + "\"");
      }
    } else if (key == "tensor") {
      ManifestTensor t;
      f >> t.name;
      for (int64_t d; f >> d;) {
        if (d < 1) return DataLoss(path + ": bad tensor line \"" + line + "\"");
        t.shape.push_back(d);
      }
      if (t.name.empty() || t.shape.empty() || !f.eof()) {
        return DataLoss(path + ": bad tensor line \"" + line + "\"");
      }
      m.tensors.push_back(std::move(t));
    } else {
      return DataLoss(path + ": unknown line \"" + line + "\"");
    }
  }
  if (m.files.empty()) return DataLoss(path + ": lists no files");
  return m;
}

Status VerifyCheckpointFile(const std::string& folder, const ManifestFile& mf) {
  const std::string fp = folder + "/" + mf.name;
  std::ifstream fin(fp, std::ios::binary);
  if (!fin) return DataLoss(fp + ": missing");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(fin)),
                             std::istreambuf_iterator<char>());
  if (bytes.size() != mf.bytes) {
    return DataLoss(fp + ": " + std::to_string(bytes.size()) + " bytes, the manifest says " +
                    std::to_string(mf.bytes) + " (truncated?)");
  }
  if (mf.whole_file_crc) {
    if (Crc32(bytes) != mf.crc32) {
      return DataLoss(fp + ": checksum mismatch: the file is damaged");
    }
    return OkStatus();
  }
  if (bytes.size() < 4) return DataLoss(fp + ": truncated");
  const uint32_t content = ContentCrc32(bytes);
  uint32_t trailer = 0;
  for (int i = 0; i < 4; ++i)
    trailer |= static_cast<uint32_t>(bytes[bytes.size() - 4 + i]) << (8 * i);
  if (content != trailer) return DataLoss(fp + ": checksum mismatch: the file is damaged");
  if (content != mf.crc32) {
    return DataLoss(fp +
                    ": is not the file this checkpoint's manifest lists (its content's "
                    "checksum differs): copied from another checkpoint?");
  }
  return OkStatus();
}

uint32_t ContentCrc32(std::span<const uint8_t> file_bytes) {
  return Crc32(file_bytes.first(file_bytes.size() < 4 ? 0 : file_bytes.size() - 4));
}

StatusOr<ManifestFile> FileForKeys(const Manifest& m, uint64_t begin, uint64_t end) {
  for (const ManifestFile& f : m.files) {
    if (f.key_begin == begin && f.key_end == end) return f;
  }
  return DataLoss(m.dir + " lists no file for keys [" + std::to_string(begin) + ", " +
                  std::to_string(end) + ") (was the job's server count changed?)");
}

StatusOr<Manifest> VerifyCheckpoint(const std::string& folder) {
  ASSIGN_OR_RETURN(Manifest m, ReadManifest(folder));
  for (const ManifestFile& mf : m.files) RETURN_IF_ERROR(VerifyCheckpointFile(folder, mf));
  if (!m.job.name.empty()) RETURN_IF_ERROR(VerifyCheckpointFile(folder, m.job));
  std::vector<const ManifestFile*> dense;
  for (const ManifestFile& mf : m.files) {
    if (!mf.holds_rows()) dense.push_back(&mf);
  }
  std::sort(dense.begin(), dense.end(), [](const ManifestFile* a, const ManifestFile* b) {
    return a->key_begin < b->key_begin;
  });
  for (size_t i = 1; i < dense.size(); ++i) {
    if (dense[i]->key_begin < dense[i - 1]->key_end) {
      return DataLoss(folder + "/MANIFEST: " + dense[i - 1]->name + " and " + dense[i]->name +
                      " both hold keys from " + std::to_string(dense[i]->key_begin));
    }
  }
  return m;
}

StatusOr<Manifest> FindNewestCheckpoint(const std::string& dir, std::vector<std::string>* skipped) {
  std::vector<std::string> folders;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (e.is_directory() && name.rfind("ckpt-", 0) == 0) folders.push_back(e.path().string());
  }
  if (ec) return NotFound("checkpoint folder " + dir + ": " + ec.message());
  std::sort(folders.rbegin(), folders.rend());
  for (const std::string& f : folders) {
    StatusOr<Manifest> m = VerifyCheckpoint(f);
    if (m.ok()) return m;
    if (skipped != nullptr) skipped->push_back("skipped " + f + ": " + m.status().message());
  }
  return NotFound("no complete checkpoint in " + dir);
}

void PruneCheckpoints(const std::string& dir, int keep) {
  std::vector<std::string> folders;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (e.is_directory() && name.rfind("ckpt-", 0) == 0) folders.push_back(e.path().string());
  }
  std::sort(folders.rbegin(), folders.rend());
  int complete = 0;
  for (const std::string& f : folders) {
    const bool has_manifest = std::filesystem::exists(f + "/MANIFEST", ec);
    if (!has_manifest && complete == 0) continue;  // newer than any complete one: being written
    if (!has_manifest || complete >= std::max(keep, 0)) {
      std::filesystem::remove_all(f, ec);
      continue;
    }
    ++complete;
    std::vector<std::filesystem::path> leftovers;
    for (const auto& e : std::filesystem::directory_iterator(f, ec)) {
      if (e.path().extension() == ".tmp") leftovers.push_back(e.path());
    }
    for (const auto& p : leftovers) std::filesystem::remove(p, ec);
  }
}

}  // namespace pstrain
