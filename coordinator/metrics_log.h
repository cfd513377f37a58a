// The metrics file: one JSON object per line, flushed line by line so a
// reader (a test, tail -f, a plotting script) sees each as soon as it exists.
//   {"event":"epoch","epoch":N,"train_loss":..,"test_loss":..,"test_accuracy":..,
//    "samples":N,"samples_per_s":..,"seconds":..}
//   {"event":"final","epochs":N,"test_loss":..,"test_accuracy":..,"weights_l2":..,
//    "params":N,"seconds":..}
// Owned by one thread.
#pragma once

#include <cstdio>
#include <memory>
#include <string>

#include "common/json.h"
#include "common/status.h"
#include "common/training_stats.h"

namespace pstrain {

class MetricsLog {
 public:
  // An empty path makes a log that writes nothing. With append, lines are
  // added to an existing file (a resumed run).
  static StatusOr<std::unique_ptr<MetricsLog>> Open(const std::string& path, bool append = false);
  ~MetricsLog();

  Status WriteEpoch(const EpochStats& e);
  Status WriteFinal(const FinalStats& f);
  // Any other event: the object must already hold "event".
  Status Write(const JsonObject& line);

 private:
  MetricsLog(std::string path, std::FILE* f) : path_(std::move(path)), file_(f) {}
  std::string path_;
  std::FILE* file_;
};

}  // namespace pstrain
