#include "launch/checkpoint_tools.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "common/ckpt/checkpoint.h"
#include "common/data/job_data.h"
#include "common/job/config.h"
#include "common/nn/blas.h"
#include "common/nn/model.h"
#include "common/ps/keys.h"
#include "common/ps/sparse_table.h"
#include "common/ps/weights_digest.h"
#include "paramserver/checkpoint_files.h"
#include "paramserver/dense_shard.h"

namespace pstrain {
namespace {

namespace fs = std::filesystem;

std::string Shape(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// The checkpoint folder `arg` names: itself when it holds a MANIFEST, else
// its newest ckpt-* folder (that verifies, when `verified`).
StatusOr<std::string> CheckpointFolderOf(const std::string& arg, bool verified) {
  std::error_code ec;
  if (!fs::is_directory(arg, ec)) return NotFound(arg + ": no such checkpoint folder");
  if (fs::exists(fs::path(arg) / "MANIFEST", ec)) return arg;
  if (verified) {
    std::vector<std::string> skipped;
    StatusOr<Manifest> m = FindNewestCheckpoint(arg, &skipped);
    for (const std::string& s : skipped) std::printf("%s\n", s.c_str());
    if (!m.ok()) return m.status();
    return m->dir;
  }
  std::vector<std::string> folders;
  for (const auto& e : fs::directory_iterator(arg, ec)) {
    if (e.is_directory() && e.path().filename().string().rfind("ckpt-", 0) == 0) {
      folders.push_back(e.path().string());
    }
  }
  if (folders.empty()) return NotFound(arg + ": holds no MANIFEST and no ckpt-* folder");
  std::sort(folders.begin(), folders.end());
  if (folders.size() > 1) {
    std::printf("%s holds %zu checkpoints; the newest:\n", arg.c_str(), folders.size());
  }
  return folders.back();
}

// The weights digest contribution of the embedding rows in a server's
// sparse file, and how many rows it holds.
StatusOr<std::pair<uint64_t, uint64_t>> SparseDigest(const std::string& path) {
  ASSIGN_OR_RETURN(BinaryReader reader, BinaryReader::OpenFile(path));
  ASSIGN_OR_RETURN(const uint32_t tables, reader.U32());
  uint64_t digest = 0, rows = 0;
  for (uint32_t i = 0; i < tables; ++i) {
    ASSIGN_OR_RETURN(SparseTable t, SparseTable::LoadSaved(reader));
    digest += t.Digest();
    rows += t.row_count();
  }
  return std::make_pair(digest, rows);
}

}  // namespace

int RunInspect(const CommandLine& cl) {
  if (cl.positional.size() != 1) {
    return Fail(2, InvalidArgument("inspect needs a checkpoint folder: pstrain inspect DIR"));
  }
  StatusOr<std::string> folder = CheckpointFolderOf(cl.positional[0], /*verified=*/false);
  if (!folder.ok()) return Fail(1, folder.status());
  StatusOr<Manifest> m = ReadManifest(*folder);
  if (!m.ok()) return Fail(1, m.status());
  bool ok = true;
  std::printf("checkpoint %s\n", folder->c_str());
  std::printf("  epochs done %d%s, clock %lld, seed %llu\n", m->epochs_done,
              m->step > 0 ? (" and " + std::to_string(m->step) + " steps of the next").c_str() : "",
              static_cast<long long>(m->clock), static_cast<unsigned long long>(m->seed));
  std::printf("  written by a job of %d server(s) and %d worker(s), batch %d per worker\n",
              m->servers, m->workers, m->batch_size);
  if (m->job.name.empty()) {
    std::printf("  job: no copy (an older checkpoint)\n");
  } else {
    Status s = VerifyCheckpointFile(*folder, m->job);
    ok = ok && s.ok();
    std::printf("  job: %s, %llu bytes, crc32 %08x %s\n", m->job.name.c_str(),
                static_cast<unsigned long long>(m->job.bytes), m->job.crc32,
                s.ok() ? "ok" : ("BAD: " + s.message()).c_str());
  }

  TensorLayout layout;
  for (const ManifestTensor& t : m->tensors) layout.Add(t.name, t.shape);
  FloatBuffer params(layout.total_floats());
  std::vector<bool> loaded;
  const std::vector<FileResult> files =
      layout.count() > 0 ? ReadWeights(*folder, *m, layout, params.span(), &loaded)
                         : std::vector<FileResult>{};
  std::printf("  files (%zu):\n", m->files.size());
  for (size_t i = 0; i < m->files.size(); ++i) {
    const ManifestFile& f = m->files[i];
    Status s = files.empty() ? VerifyCheckpointFile(*folder, f) : files[i].status;
    ok = ok && s.ok();
    std::printf(
        "    %s  %s  %llu bytes  crc32 %08x %s", f.name.c_str(),
        f.holds_rows() ? "embedding rows" : ("keys " + ToString({f.key_begin, f.key_end})).c_str(),
        static_cast<unsigned long long>(f.bytes), f.crc32,
        s.ok() ? "ok" : ("BAD: " + s.message()).c_str());
    if (!files.empty() && s.ok() && !f.holds_rows()) {
      std::printf("  floats [%zu, %zu)  clock %lld, %lld updates", files[i].flat.begin,
                  files[i].flat.end, static_cast<long long>(files[i].saved.version),
                  static_cast<long long>(files[i].saved.updates));
    }
    std::printf("\n");
  }
  if (layout.count() == 0) {
    std::printf("  tensors: not listed (an older checkpoint)\n");
  } else {
    std::printf("  parameters: %zu in %d tensors\n", layout.parameter_count(), layout.count());
    double total = 0;
    bool all = true;
    // Columns as wide as the longest name and shape (node paths can be long).
    int name_w = 16, shape_w = 12;
    for (const TensorSpec& t : layout.tensors()) {
      name_w = std::max(name_w, static_cast<int>(t.name.size()));
      shape_w = std::max(shape_w, static_cast<int>(Shape(t.shape).size()));
    }
    for (const TensorSpec& t : layout.tensors()) {
      if (!Covered(loaded, t)) {
        all = false;
        std::printf("    %-*s %-*s L2 unknown (its file is damaged)\n", name_w, t.name.c_str(),
                    shape_w, Shape(t.shape).c_str());
        continue;
      }
      const double l2 = L2Norm(params.span().subspan(t.offset, t.size));
      total += l2 * l2;
      std::printf("    %-*s %-*s L2 %.6f\n", name_w, t.name.c_str(), shape_w,
                  Shape(t.shape).c_str(), l2);
    }
    if (all) {
      std::printf("  weights L2 %.6f\n", std::sqrt(total));
      // The digest of the final metrics line of the run that wrote it.
      uint64_t digest = ModelDigest(KeyLayout(layout), params.span());
      uint64_t rows = 0;
      bool rows_ok = true;
      for (size_t i = 0; i < m->files.size(); ++i) {
        const ManifestFile& f = m->files[i];
        if (!f.holds_rows() || !files[i].status.ok()) continue;
        StatusOr<std::pair<uint64_t, uint64_t>> s = SparseDigest(*folder + "/" + f.name);
        if (!s.ok()) {
          rows_ok = false;
          ok = false;
          std::printf("  %s: BAD: %s\n", f.name.c_str(), s.status().message().c_str());
          continue;
        }
        digest += s->first;
        rows += s->second;
      }
      if (rows_ok) {
        std::printf("  weights digest %s", DigestHex(digest).c_str());
        if (rows > 0)
          std::printf(" (with %llu embedding rows)", static_cast<unsigned long long>(rows));
        std::printf("\n");
      }
    }
  }
  std::printf("%s\n", ok ? "verified: every file matches its size and checksum"
                         : "DAMAGED: this checkpoint would be skipped by --resume");
  return ok ? 0 : 1;
}

StatusOr<LoadedCheckpoint> LoadCheckpoint(const CommandLine& cl, const std::string& command,
                                          int* exit_code) {
  *exit_code = 2;
  if (cl.positional.size() != 1) {
    return InvalidArgument(command + " needs a checkpoint folder: pstrain " + command + " DIR");
  }
  *exit_code = 1;
  LoadedCheckpoint out;
  ASSIGN_OR_RETURN(out.folder, CheckpointFolderOf(cl.positional[0], /*verified=*/true));
  ASSIGN_OR_RETURN(out.manifest, VerifyCheckpoint(out.folder));
  std::string job_path;
  *exit_code = 2;
  if (auto it = cl.options.find("job"); it != cl.options.end()) {
    job_path = it->second;
  } else if (!out.manifest.job.name.empty()) {
    job_path = out.folder + "/" + out.manifest.job.name;
  } else {
    return InvalidArgument(out.folder +
                           " holds no copy of its job (an older checkpoint): name it "
                           "with --job JOB.toml");
  }
  ASSIGN_OR_RETURN(out.config, LoadJobConfig(job_path, cl.overrides));
  SetBlasThreads(out.config.threads);
  *exit_code = 1;
  ASSIGN_OR_RETURN(out.data, LoadJobData(out.config.data));
  const Dataset& test = out.data.test;
  *exit_code = 2;
  ASSIGN_OR_RETURN(out.model, Model::Build(out.config.layers, test.dim, out.data.train.num_classes,
                                           out.config.eval_batch_size, test.shape,
                                           SparseOptionsOf(out.config, &out.data)));
  if (out.model->sparse()) {
    return InvalidArgument("pstrain " + command +
                           ": the job's model is sparse, and checkpoints do "
                           "not hold its embedding rows");
  }
  const TensorLayout& layout = out.model->layout();
  const Manifest& m = out.manifest;
  if (!m.tensors.empty()) {
    bool same = static_cast<int>(m.tensors.size()) == layout.count();
    for (int i = 0; same && i < layout.count(); ++i) {
      same = m.tensors[i].name == layout[i].name && m.tensors[i].shape == layout[i].shape;
    }
    if (!same) {
      return InvalidArgument("the job's model (" + out.model->Describe() +
                             ") is not the one checkpoint " + out.folder + " holds");
    }
  }
  *exit_code = 1;
  std::vector<bool> loaded;
  for (const FileResult& r : ReadWeights(out.folder, m, layout, out.model->params(), &loaded)) {
    RETURN_IF_ERROR(r.status);
  }
  for (const TensorSpec& t : layout.tensors()) {
    if (!Covered(loaded, t)) return DataLoss(out.folder + ": no file holds tensor " + t.name);
  }
  *exit_code = 0;
  return out;
}

int RunEval(const CommandLine& cl) {
  int code = 0;
  StatusOr<LoadedCheckpoint> ck = LoadCheckpoint(cl, "eval", &code);
  if (!ck.ok()) return Fail(code, ck.status());
  const std::string* folder = &ck->folder;
  const Manifest* m = &ck->manifest;
  const JobConfig* c = &ck->config;
  const Dataset& test = ck->data.test;
  std::unique_ptr<Model>* model = &ck->model;
  const int classes = (*model)->num_classes();
  std::vector<int64_t> confusion(static_cast<size_t>(classes) * classes, 0);
  std::FILE* logits_out = nullptr;
  if (auto it = cl.options.find("logits"); it != cl.options.end()) {
    logits_out = std::fopen(it->second.c_str(), "wb");
    if (logits_out == nullptr) return Fail(1, Unavailable(it->second + ": cannot write it"));
  }
  double loss = 0;
  int64_t correct = 0;
  for (int64_t begin = 0; begin < test.count; begin += c->eval_batch_size) {
    const int batch = static_cast<int>(std::min<int64_t>(c->eval_batch_size, test.count - begin));
    const float* logits = (*model)->Forward(test.row(begin), batch);
    const LossResult r =
        SoftmaxCrossEntropy(logits, test.labels.data() + begin, batch, classes, nullptr, 0.0f);
    loss += r.loss_sum;
    correct += r.correct;
    if (logits_out != nullptr) {
      const size_t n = static_cast<size_t>(batch) * classes;
      if (std::fwrite(logits, sizeof(float), n, logits_out) != n) {
        std::fclose(logits_out);
        return Fail(1, Unavailable("--logits: a short write"));
      }
    }
    for (int i = 0; i < batch; ++i) {
      const float* row = logits + static_cast<size_t>(i) * classes;
      const int predicted = static_cast<int>(std::max_element(row, row + classes) - row);
      ++confusion[static_cast<size_t>(test.labels[begin + i]) * classes + predicted];
    }
  }
  if (logits_out != nullptr && std::fclose(logits_out) != 0) {
    return Fail(1, Unavailable("--logits: the file did not close"));
  }
  const double n = static_cast<double>(std::max<int64_t>(test.count, 1));
  std::printf("checkpoint %s: job %s after %d epoch(s)%s, %s\n", folder->c_str(), c->name.c_str(),
              m->epochs_done,
              m->step > 0 ? (" and " + std::to_string(m->step) + " steps").c_str() : "",
              (*model)->Describe().c_str());
  std::printf("test set: %lld samples (%s)\n", static_cast<long long>(test.count),
              test.source.c_str());
  std::printf("test accuracy %.2f%%  test loss %.4f  (%lld of %lld right)\n", correct / n * 100,
              loss / n, static_cast<long long>(correct), static_cast<long long>(test.count));
  std::printf("confusion matrix (rows: true class, columns: predicted class)\n      ");
  for (int j = 0; j < classes; ++j) std::printf(" %5d", j);
  std::printf("\n");
  for (int i = 0; i < classes; ++i) {
    std::printf("%5d ", i);
    for (int j = 0; j < classes; ++j) {
      std::printf(" %5lld",
                  static_cast<long long>(confusion[static_cast<size_t>(i) * classes + j]));
    }
    std::printf("\n");
  }
  return 0;
}

}  // namespace pstrain
