// The metrics file: one JSON object per line, flushed line by line so a
// reader (a test, tail -f, a plotting script) sees each as soon as it exists.
//   {"event":"epoch","epoch":N,"train_loss":..,"test_loss":..,"test_accuracy":..,
//    "samples":N,"samples_per_s":..,"seconds":..}
//   {"event":"final","epochs":N,"test_loss":..,"test_accuracy":..,"weights_l2":..,
//    "params":N,"seconds":..}
// Next to FILE it keeps FILE's stem + ".svg" (m.jsonl -> m.svg), a plot of
// the losses and test accuracy per epoch (plot_svg.h), rewritten after
// every epoch; a resumed run's plot includes the epochs already in FILE.
// Owned by one thread.
#pragma once

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "common/base/json.h"
#include "common/base/status.h"
#include "common/job/training_stats.h"

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

  // The plot's title (default: the metrics file's name).
  void set_title(std::string title) { title_ = std::move(title); }
  // Where the plot goes ("" without a metrics file).
  const std::string& plot_path() const { return plot_path_; }

 private:
  MetricsLog(std::string path, std::FILE* f);
  std::string path_;
  std::FILE* file_;
  std::string plot_path_;
  std::string title_;
  std::vector<EpochStats> epochs_;  // by epoch number, for the plot
};

// The epoch lines of a metrics file's text, by epoch number (a later line
// for the same epoch replaces an earlier one).
std::vector<EpochStats> ReadEpochLines(const std::string& text);

}  // namespace pstrain
