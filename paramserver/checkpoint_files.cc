#include "paramserver/checkpoint_files.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>

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

std::vector<FileResult> ReadWeights(const std::string& folder, const Manifest& m,
                                    const TensorLayout& layout, std::span<float> params,
                                    std::vector<bool>* loaded) {
  const KeyLayout keys(layout);
  loaded->assign(params.size(), false);
  std::vector<FileResult> out;
  for (const ManifestFile& f : m.files) {
    FileResult r;
    r.keys = {f.key_begin, f.key_end};
    r.status = VerifyCheckpointFile(folder, f);
    if (f.holds_rows()) {  // embedding rows, not dense keys
      out.push_back(std::move(r));
      continue;
    }
    if (r.status.ok() && !keys.IsValidRange(r.keys)) {
      r.status = DataLoss(f.name + ": keys " + ToString(r.keys) + " are not a range of the model");
    }
    if (r.status.ok()) {
      r.flat = keys.Flat(r.keys);
      StatusOr<BinaryReader> reader = BinaryReader::OpenFile(folder + "/" + f.name);
      StatusOr<DenseShard::Saved> saved =
          reader.ok()
              ? DenseShard::ReadSaved(*reader, r.keys, params.subspan(r.flat.begin, r.flat.size()))
              : StatusOr<DenseShard::Saved>(reader.status());
      if (saved.ok() && f.clock >= 0 && saved->version != f.clock) {
        saved = DataLoss(folder + "/" + f.name + ": holds clock " + std::to_string(saved->version) +
                         ", the manifest says " + std::to_string(f.clock));
      }
      if (saved.ok()) {
        r.saved = *saved;
        std::fill(loaded->begin() + static_cast<std::ptrdiff_t>(r.flat.begin),
                  loaded->begin() + static_cast<std::ptrdiff_t>(r.flat.end), true);
      } else {
        r.status = saved.status();
      }
    }
    out.push_back(std::move(r));
  }
  return out;
}

bool Covered(const std::vector<bool>& loaded, const TensorSpec& t) {
  return std::all_of(loaded.begin() + static_cast<std::ptrdiff_t>(t.offset),
                     loaded.begin() + static_cast<std::ptrdiff_t>(t.offset + t.size),
                     [](bool b) { return b; });
}

namespace {

std::string ShapeText(const std::vector<int64_t>& shape) {
  std::string s = "{";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "}";
}

std::string Listed(const TensorLayout& l) {
  std::string s;
  for (const TensorSpec& t : l.tensors())
    s += (s.empty() ? "" : ", ") + t.name + " " + ShapeText(t.shape);
  return s;
}

}  // namespace

StatusOr<std::string> InitFromCheckpoint(const std::string& path, const TensorLayout& layout,
                                         std::span<float> params, bool partial) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(path, ec)) return NotFound(path + ": no such checkpoint folder");
  Manifest m;
  if (fs::exists(fs::path(path) / "MANIFEST", ec)) {
    ASSIGN_OR_RETURN(m, VerifyCheckpoint(path));
  } else {
    std::vector<std::string> skipped;
    ASSIGN_OR_RETURN(m, FindNewestCheckpoint(path, &skipped));
  }
  if (m.tensors.empty()) {
    return InvalidArgument(m.dir +
                           ": the manifest lists no tensors (an older checkpoint), so "
                           "nothing can be matched by name");
  }
  TensorLayout source;
  for (const ManifestTensor& t : m.tensors) source.Add(t.name, t.shape);
  FloatBuffer weights(source.total_floats());
  std::vector<bool> loaded;
  for (const FileResult& r : ReadWeights(m.dir, m, source, weights.span(), &loaded)) {
    RETURN_IF_ERROR(r.status);
  }
  std::vector<std::string> taken, left;
  for (const TensorSpec& t : layout.tensors()) {
    const int s = source.Find(t.name);
    if (s < 0 || source[s].shape != t.shape) {
      left.push_back(t.name + " " + ShapeText(t.shape));
      continue;
    }
    if (!Covered(loaded, source[s])) return DataLoss(m.dir + ": no file holds tensor " + t.name);
    taken.push_back(t.name);
  }
  std::vector<std::string> unused;
  for (const TensorSpec& t : source.tensors()) {
    const int d = layout.Find(t.name);
    if (d < 0 || layout[d].shape != t.shape) unused.push_back(t.name + " " + ShapeText(t.shape));
  }
  auto join = [](const std::vector<std::string>& v) {
    std::string s;
    for (const std::string& x : v) s += (s.empty() ? "" : ", ") + x;
    return s.empty() ? std::string("none") : s;
  };
  if (!partial && (!left.empty() || !unused.empty())) {
    return InvalidArgument("model.init_from " + m.dir +
                           ": its tensors do not match this model's (" +
                           (left.empty() ? "" : "this model's " + join(left) + " not there; ") +
                           (unused.empty() ? "" : "its " + join(unused) + " not here; ") +
                           "it holds " + Listed(source) + "; this model has " + Listed(layout) +
                           "). --init-from-partial takes the tensors that match");
  }
  if (taken.empty()) {
    return InvalidArgument("model.init_from " + m.dir + ": no tensor matches this model's " +
                           "in name and shape (it holds " + Listed(source) + "; this model has " +
                           Listed(layout) + ")");
  }
  for (const std::string& name : taken) {
    const TensorSpec& d = layout[layout.Find(name)];
    const TensorSpec& s = source[source.Find(name)];
    std::copy_n(weights.data() + s.offset, s.size, params.data() + d.offset);
  }
  return "weights from " + m.dir + ": " + join(taken) +
         (left.empty() ? "" : "; from the seed: " + join(left));
}

}  // namespace pstrain
