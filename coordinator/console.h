// What the person who started the job sees on stdout: a progress line that
// redraws itself while an epoch runs (only when stdout is a terminal, or
// when asked), one line per epoch, and a summary at the end. Owned by one
// thread.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "common/job/training_stats.h"

namespace pstrain {

class Console {
 public:
  // progress_mode: "auto" (when stdout is a terminal), "always", "never".
  explicit Console(const std::string& progress_mode);

  void Banner(const std::string& text);
  // Redraws at most ~10 times a second.
  void Progress(const ProgressStats& p);
  void Epoch(const EpochStats& e, int epochs);
  // The final line, then a summary table: accuracy, loss, time, throughput
  // (over the epochs this console saw), per-worker throughput and failures
  // survived (distributed runs).
  void Final(const FinalStats& f);

 private:
  void ClearProgress();
  bool progress_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point last_draw_{};
  std::vector<EpochStats> epochs_;  // as shown
};

// The summary table Final prints, one row a line.
std::string SummaryTable(const FinalStats& f, const std::vector<EpochStats>& epochs);

}  // namespace pstrain
