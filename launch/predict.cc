#include "launch/predict.h"

#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "launch/checkpoint_tools.h"

namespace pstrain {
namespace {

// Samples read a batch at a time from a plain or gzipped file.
class SampleStream {
 public:
  virtual ~SampleStream() {
    if (f_ != nullptr) gzclose(f_);
  }
  // Up to `max` samples of `dim` floats into `out`; 0 at the end.
  virtual StatusOr<int> Next(float* out, int max) = 0;

 protected:
  SampleStream(std::string path, int dim) : path_(std::move(path)), dim_(dim) {}
  Status Open() {
    f_ = gzopen(path_.c_str(), "rb");
    if (f_ == nullptr) return NotFound(path_ + ": cannot open it");
    gzbuffer(f_, 1 << 20);
    return OkStatus();
  }
  // Exactly n bytes, or an error (`what` names what was being read).
  Status Read(void* to, size_t n, const std::string& what) {
    const int got = gzread(f_, to, static_cast<unsigned>(n));
    if (got < 0) return DataLoss(path_ + ": " + gzerror(f_, nullptr));
    if (static_cast<size_t>(got) != n) {
      return InvalidArgument(path_ + ": the file ends inside " + what);
    }
    return OkStatus();
  }

  std::string path_;
  int dim_;
  gzFile f_ = nullptr;
  int64_t done_ = 0;
};

// IDX images: pixels scaled by 1/255, as the job's reader scales them.
class IdxStream : public SampleStream {
 public:
  static StatusOr<std::unique_ptr<SampleStream>> Open(const std::string& path, int dim) {
    std::unique_ptr<IdxStream> s(new IdxStream(path, dim));
    RETURN_IF_ERROR(s->SampleStream::Open());
    uint8_t magic[4];
    RETURN_IF_ERROR(s->Read(magic, 4, "the IDX header"));
    if (magic[0] != 0 || magic[1] != 0 || magic[2] != 0x08 || magic[3] < 2) {
      return InvalidArgument(path + ": not an IDX file of unsigned bytes with rank >= 2");
    }
    int64_t per_sample = 1;
    for (int d = 0; d < magic[3]; ++d) {
      uint8_t b[4];
      RETURN_IF_ERROR(s->Read(b, 4, "the IDX header"));
      const int64_t v = (int64_t{b[0]} << 24) | (b[1] << 16) | (b[2] << 8) | b[3];
      if (d == 0) {
        s->count_ = v;
      } else {
        per_sample *= v;
      }
    }
    if (per_sample != dim) {
      return InvalidArgument(path + ": samples of " + std::to_string(per_sample) +
                             " values; the model reads " + std::to_string(dim));
    }
    return std::unique_ptr<SampleStream>(std::move(s));
  }

  StatusOr<int> Next(float* out, int max) override {
    const int n = static_cast<int>(std::min<int64_t>(max, count_ - done_));
    if (n <= 0) {
      char extra;
      if (gzread(f_, &extra, 1) == 1) {
        return InvalidArgument(path_ + ": bytes after the " + std::to_string(count_) +
                               " samples its header announces");
      }
      return 0;
    }
    bytes_.resize(static_cast<size_t>(n) * dim_);
    const int got = gzread(f_, bytes_.data(), static_cast<unsigned>(bytes_.size()));
    if (got < 0) return DataLoss(path_ + ": " + gzerror(f_, nullptr));
    if (static_cast<size_t>(got) != bytes_.size()) {
      return InvalidArgument(path_ + ": the file ends inside sample " +
                             std::to_string(done_ + got / dim_) + " of the " +
                             std::to_string(count_) + " its header announces");
    }
    for (size_t i = 0; i < bytes_.size(); ++i) out[i] = bytes_[i] * (1.0f / 255.0f);
    done_ += n;
    return n;
  }

 private:
  using SampleStream::SampleStream;
  int64_t count_ = 0;
  std::vector<uint8_t> bytes_;
};

// CSV rows of the features, or of the job's columns (features and the
// label column, which is skipped).
class CsvStream : public SampleStream {
 public:
  static StatusOr<std::unique_ptr<SampleStream>> Open(const std::string& path, int dim,
                                                      int label_column, bool header) {
    std::unique_ptr<CsvStream> s(new CsvStream(path, dim));
    s->label_column_ = label_column;
    RETURN_IF_ERROR(s->SampleStream::Open());
    if (header) {
      std::string line;
      RETURN_IF_ERROR(s->Line(&line).status());
    }
    return std::unique_ptr<SampleStream>(std::move(s));
  }

  StatusOr<int> Next(float* out, int max) override {
    int n = 0;
    std::string line;
    std::vector<float> fields;
    while (n < max) {
      ASSIGN_OR_RETURN(bool got, Line(&line));
      if (!got) break;
      ++line_no_;
      if (line.empty()) continue;
      fields.clear();
      const char* p = line.c_str();
      while (true) {
        char* end = nullptr;
        const float v = std::strtof(p, &end);
        if (end == p || !std::isfinite(v)) {
          return InvalidArgument(path_ + ":" + std::to_string(line_no_) + ": field " +
                                 std::to_string(fields.size() + 1) + " is not a finite number");
        }
        fields.push_back(v);
        p = end;
        while (*p == ' ' || *p == '\r') ++p;
        if (*p == '\0') break;
        if (*p != ',') {
          return InvalidArgument(path_ + ":" + std::to_string(line_no_) + ": \"" +
                                 std::string(1, *p) + "\" where a comma should be");
        }
        ++p;
      }
      float* row = out + static_cast<size_t>(n) * dim_;
      if (static_cast<int>(fields.size()) == dim_) {
        std::copy(fields.begin(), fields.end(), row);
      } else if (static_cast<int>(fields.size()) == dim_ + 1) {
        const int cols = dim_ + 1;
        const int label = label_column_ < 0 ? cols + label_column_ : label_column_;
        for (int c = 0, k = 0; c < cols; ++c) {
          if (c != label) row[k++] = fields[static_cast<size_t>(c)];
        }
      } else {
        return InvalidArgument(path_ + ":" + std::to_string(line_no_) + ": " +
                               std::to_string(fields.size()) + " fields; the model reads " +
                               std::to_string(dim_) + " features (or them and a label)");
      }
      ++n;
    }
    return n;
  }

 private:
  using SampleStream::SampleStream;
  StatusOr<bool> Line(std::string* line) {
    line->clear();
    char buf[1 << 16];
    while (gzgets(f_, buf, sizeof(buf)) != nullptr) {
      line->append(buf);
      if (!line->empty() && line->back() == '\n') {
        line->pop_back();
        return true;
      }
    }
    int err = 0;
    const char* msg = gzerror(f_, &err);
    if (err < 0) return DataLoss(path_ + ": " + msg);
    return !line->empty();
  }
  int label_column_ = 0;
  int64_t line_no_ = 0;
};

}  // namespace

int RunPredict(const CommandLine& cl) {
  const auto input = cl.options.find("input");
  if (input == cl.options.end()) {
    return Fail(2, InvalidArgument("predict needs --input FILE: pstrain predict DIR --input "
                                   "FILE -o OUT"));
  }
  const auto output = cl.options.find("output");
  if (output == cl.options.end() || output->second.empty()) {
    return Fail(2, InvalidArgument("predict needs -o OUT (.jsonl, or .csv for CSV rows)"));
  }
  int top_k = 5;
  if (auto it = cl.options.find("top-k"); it != cl.options.end()) {
    top_k = std::atoi(it->second.c_str());
    if (top_k < 1) return Fail(2, InvalidArgument("--top-k " + it->second + ": at least 1"));
  }
  int code = 0;
  StatusOr<LoadedCheckpoint> ck = LoadCheckpoint(cl, "predict", &code);
  if (!ck.ok()) return Fail(code, ck.status());
  Model& model = *ck->model;
  const JobConfig& c = ck->config;
  std::string format = c.data.format == "csv" ? "csv" : "idx";
  if (auto it = cl.options.find("format"); it != cl.options.end()) format = it->second;
  if (format != "idx" && format != "csv") {
    return Fail(2, InvalidArgument("--format " + format + ": predict reads idx or csv"));
  }
  StatusOr<std::unique_ptr<SampleStream>> stream =
      format == "idx"
          ? IdxStream::Open(input->second, model.input_dim())
          : CsvStream::Open(input->second, model.input_dim(), c.data.label_column, c.data.header);
  if (!stream.ok()) return Fail(1, stream.status());
  const std::string& path = output->second;
  const bool csv_out = path.size() >= 4 && path.compare(path.size() - 4, 4, ".csv") == 0;
  const std::string tmp = path + ".tmp";
  std::FILE* out = std::fopen(tmp.c_str(), "w");
  if (out == nullptr) return Fail(1, Unavailable(path + ": cannot write it"));
  const int classes = model.num_classes();
  const int batch = c.eval_batch_size;
  const bool all = classes <= 10;
  if (csv_out) {
    std::fprintf(out, "index,class");
    for (int k = 0; k < classes; ++k) std::fprintf(out, ",p%d", k);
    std::fprintf(out, "\n");
  }
  std::vector<float> x(static_cast<size_t>(batch) * model.input_dim()), p(classes);
  std::vector<int> order(classes);
  int64_t index = 0;
  const auto start = std::chrono::steady_clock::now();
  Status failed;
  while (true) {
    StatusOr<int> n = (*stream)->Next(x.data(), batch);
    if (!n.ok()) {
      failed = n.status();
      break;
    }
    if (*n == 0) break;
    const float* logits = model.Forward(x.data(), *n);
    for (int i = 0; i < *n; ++i, ++index) {
      const float* z = logits + static_cast<size_t>(i) * classes;
      const float top = *std::max_element(z, z + classes);
      double sum = 0;
      for (int k = 0; k < classes; ++k) sum += p[k] = std::exp(z[k] - top);
      for (int k = 0; k < classes; ++k) p[k] = static_cast<float>(p[k] / sum);
      const int best = static_cast<int>(std::max_element(z, z + classes) - z);
      if (csv_out) {
        std::fprintf(out, "%lld,%d", static_cast<long long>(index), best);
        for (int k = 0; k < classes; ++k) std::fprintf(out, ",%.6g", static_cast<double>(p[k]));
        std::fprintf(out, "\n");
        continue;
      }
      std::fprintf(out, "{\"index\":%lld,\"class\":%d,", static_cast<long long>(index), best);
      if (all) {
        std::fprintf(out, "\"probabilities\":[");
        for (int k = 0; k < classes; ++k) {
          std::fprintf(out, "%s%.6g", k ? "," : "", static_cast<double>(p[k]));
        }
        std::fprintf(out, "]}\n");
        continue;
      }
      std::iota(order.begin(), order.end(), 0);
      const int k_top = std::min(top_k, classes);
      std::partial_sort(order.begin(), order.begin() + k_top, order.end(),
                        [&](int a, int b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
      std::fprintf(out, "\"top\":[");
      for (int k = 0; k < k_top; ++k) {
        std::fprintf(out, "%s{\"class\":%d,\"p\":%.6g}", k ? "," : "", order[k],
                     static_cast<double>(p[order[k]]));
      }
      std::fprintf(out, "]}\n");
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const bool closed = std::fclose(out) == 0;
  if (failed.ok() && !closed) failed = Unavailable(path + ": the file did not close (disk full?)");
  if (!failed.ok()) {
    std::filesystem::remove(tmp);
    return Fail(1, failed);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return Fail(1, Unavailable(path + ": " + ec.message()));
  std::printf("predicted %lld samples in %.3f s: %.0f samples/s (%d thread(s), batch %d) -> %s\n",
              static_cast<long long>(index), seconds, index / std::max(seconds, 1e-9), c.threads,
              batch, path.c_str());
  return 0;
}

}  // namespace pstrain
