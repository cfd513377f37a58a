#include "coordinator/metrics_log.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/ps/weights_digest.h"
#include "coordinator/plot_svg.h"

namespace pstrain {

namespace {

// The number after "key": in a JSON line written by JsonObject (NaN for
// null or a missing key).
double NumberAfter(const std::string& line, const std::string& key) {
  const size_t at = line.find("\"" + key + "\":");
  if (at == std::string::npos) return std::nan("");
  const char* begin = line.c_str() + at + key.size() + 3;
  char* end = nullptr;
  const double v = std::strtod(begin, &end);
  return end == begin ? std::nan("") : v;
}

}  // namespace

std::vector<EpochStats> ReadEpochLines(const std::string& text) {
  std::vector<EpochStats> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.find("\"event\":\"epoch\"") == std::string::npos) continue;
    EpochStats e;
    const double epoch = NumberAfter(line, "epoch");
    if (!(epoch >= 1 && epoch < 1e9)) continue;
    e.epoch = static_cast<int>(epoch);
    e.train_loss = NumberAfter(line, "train_loss");
    e.test_loss = NumberAfter(line, "test_loss");
    e.test_accuracy = NumberAfter(line, "test_accuracy");
    e.samples_per_s = NumberAfter(line, "samples_per_s");
    std::erase_if(out, [&](const EpochStats& o) { return o.epoch == e.epoch; });
    out.push_back(e);
  }
  std::sort(out.begin(), out.end(),
            [](const EpochStats& a, const EpochStats& b) { return a.epoch < b.epoch; });
  return out;
}

MetricsLog::MetricsLog(std::string path, std::FILE* f) : path_(std::move(path)), file_(f) {
  if (path_.empty()) return;
  plot_path_ = std::filesystem::path(path_).replace_extension(".svg").string();
  title_ = std::filesystem::path(path_).filename().string();
}

StatusOr<std::unique_ptr<MetricsLog>> MetricsLog::Open(const std::string& path, bool append) {
  std::FILE* f = nullptr;
  std::vector<EpochStats> earlier;
  if (!path.empty() && append) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    earlier = ReadEpochLines(text.str());
  }
  if (!path.empty()) {
    f = std::fopen(path.c_str(), append ? "a" : "w");
    if (f == nullptr) {
      return InvalidArgument("metrics file " + path + ": cannot create: " + std::strerror(errno));
    }
  }
  std::unique_ptr<MetricsLog> log(new MetricsLog(path, f));
  log->epochs_ = std::move(earlier);
  return log;
}

MetricsLog::~MetricsLog() {
  if (file_ != nullptr) std::fclose(file_);
}

Status MetricsLog::Write(const JsonObject& line) {
  if (file_ == nullptr) return OkStatus();
  const std::string s = line.str() + "\n";
  if (std::fwrite(s.data(), 1, s.size(), file_) != s.size() || std::fflush(file_) != 0) {
    return DataLoss("metrics file " + path_ + ": write failed: " + std::strerror(errno));
  }
  return OkStatus();
}

Status MetricsLog::WriteEpoch(const EpochStats& e) {
  JsonObject line;
  line.Add("event", "epoch")
      .Add("epoch", e.epoch)
      .Add("train_loss", e.train_loss)
      .Add("train_accuracy", e.train_accuracy)
      .Add("test_loss", e.test_loss)
      .Add("test_accuracy", e.test_accuracy)
      .Add("test_samples", e.test_samples)
      .Add("samples", e.samples)
      .Add("samples_per_s", e.samples_per_s)
      .Add("train_seconds", e.train_seconds)
      .Add("seconds", e.seconds)
      .Add("lr", static_cast<double>(e.lr));
  if (e.test_auc >= 0) line.Add("test_auc", e.test_auc);
  if (e.resumed_at_step > 0) line.Add("resumed_at_step", e.resumed_at_step);
  if (e.adopted) line.Add("adopted", true);
  if (e.worker_peak_rss >= 0) line.Add("worker_peak_rss_bytes", e.worker_peak_rss);
  if (e.sample_set_ok >= 0) line.Add("sample_set_ok", e.sample_set_ok == 1);
  if (e.compute_s >= 0) {
    line.Add("compute_s", e.compute_s)
        .Add("push_wait_s", e.push_wait_s)
        .Add("pull_wait_s", e.pull_wait_s);
  }
  RETURN_IF_ERROR(Write(line));
  if (file_ == nullptr) return OkStatus();
  std::erase_if(epochs_, [&](const EpochStats& o) { return o.epoch >= e.epoch; });
  epochs_.push_back(e);
  const std::string svg = PlotSvg(title_, epochs_);
  std::ofstream out(plot_path_, std::ios::binary | std::ios::trunc);
  out << svg;
  out.close();
  if (!out) return DataLoss("plot " + plot_path_ + ": write failed: " + std::strerror(errno));
  return OkStatus();
}

Status MetricsLog::WriteFinal(const FinalStats& f) {
  JsonObject line;
  line.Add("event", "final")
      .Add("epochs", f.epochs)
      .Add("test_loss", f.test_loss)
      .Add("test_accuracy", f.test_accuracy);
  if (f.test_auc >= 0) line.Add("test_auc", f.test_auc);
  return Write(line.Add("weights_l2", f.weights_l2)
                   .Add("weights_digest", DigestHex(f.weights_digest))
                   .Add("params", f.params)
                   .Add("seconds", f.seconds));
}

}  // namespace pstrain
