#include "coordinator/metrics_log.h"

#include <cerrno>
#include <cstring>

namespace pstrain {

StatusOr<std::unique_ptr<MetricsLog>> MetricsLog::Open(const std::string& path, bool append) {
  std::FILE* f = nullptr;
  if (!path.empty()) {
    f = std::fopen(path.c_str(), append ? "a" : "w");
    if (f == nullptr) {
      return InvalidArgument("metrics file " + path + ": cannot create: " + std::strerror(errno));
    }
  }
  return std::unique_ptr<MetricsLog>(new MetricsLog(path, f));
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
      .Add("samples", e.samples)
      .Add("samples_per_s", e.samples_per_s)
      .Add("train_seconds", e.train_seconds)
      .Add("seconds", e.seconds)
      .Add("lr", static_cast<double>(e.lr));
  if (e.sample_set_ok >= 0) line.Add("sample_set_ok", e.sample_set_ok == 1);
  if (e.compute_s >= 0) {
    line.Add("compute_s", e.compute_s)
        .Add("push_wait_s", e.push_wait_s)
        .Add("pull_wait_s", e.pull_wait_s);
  }
  return Write(line);
}

Status MetricsLog::WriteFinal(const FinalStats& f) {
  return Write(JsonObject()
                   .Add("event", "final")
                   .Add("epochs", f.epochs)
                   .Add("test_loss", f.test_loss)
                   .Add("test_accuracy", f.test_accuracy)
                   .Add("weights_l2", f.weights_l2)
                   .Add("params", f.params)
                   .Add("seconds", f.seconds));
}

}  // namespace pstrain
