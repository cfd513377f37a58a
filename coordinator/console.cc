#include "coordinator/console.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <utility>

#include "common/ps/weights_digest.h"

namespace pstrain {

Console::Console(const std::string& progress_mode)
    : progress_(progress_mode == "always" || (progress_mode == "auto" && ::isatty(1))) {}

void Console::ClearProgress() {
  if (drawn_) {
    std::fputs("\r\033[K", stdout);
    drawn_ = false;
  }
}

void Console::Banner(const std::string& text) {
  ClearProgress();
  std::printf("%s\n", text.c_str());
  std::fflush(stdout);
}

void Console::Progress(const ProgressStats& p) {
  if (!progress_) return;
  const auto now = std::chrono::steady_clock::now();
  if (drawn_ && now - last_draw_ < std::chrono::milliseconds(100) && p.done < p.total) return;
  last_draw_ = now;
  const int width = 30;
  const double frac = p.total > 0 ? static_cast<double>(p.done) / p.total : 0;
  char bar[width + 1];
  for (int i = 0; i < width; ++i) bar[i] = i < static_cast<int>(frac * width) ? '#' : '.';
  bar[width] = '\0';
  const double eta = p.samples_per_s > 0 ? (p.total - p.done) / p.samples_per_s : 0;
  std::printf("\r\033[Kepoch %d/%d [%s] %3.0f%%  %.0f samples/s  loss %.4f  ETA %.0fs", p.epoch,
              p.epochs, bar, frac * 100, p.samples_per_s, p.loss, eta);
  std::fflush(stdout);
  drawn_ = true;
}

namespace {

std::string Format(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

}  // namespace

void Console::Epoch(const EpochStats& e, int epochs) {
  ClearProgress();
  epochs_.push_back(e);
  const std::string auc = e.test_auc >= 0 ? Format("  test AUC %.4f", e.test_auc) : "";
  std::printf(
      "epoch %d/%d  train loss %.4f  test loss %.4f  test accuracy %.2f%%%s  %.0f samples/s  "
      "%.1fs\n",
      e.epoch, epochs, e.train_loss, e.test_loss, e.test_accuracy * 100, auc.c_str(),
      e.samples_per_s, e.seconds);
  std::fflush(stdout);
}

void Console::Final(const FinalStats& f) {
  ClearProgress();
  std::printf(
      "final: test accuracy %.2f%%  test loss %.4f  after %d epochs in %.1fs  "
      "(%lld parameters, weights L2 %.4f, digest %s)\n",
      f.test_accuracy * 100, f.test_loss, f.epochs, f.seconds, static_cast<long long>(f.params),
      f.weights_l2, DigestHex(f.weights_digest).c_str());
  std::fputs(SummaryTable(f, epochs_).c_str(), stdout);
  std::fflush(stdout);
}

std::string SummaryTable(const FinalStats& f, const std::vector<EpochStats>& epochs) {
  int64_t samples = 0;
  double train_seconds = 0, train_loss = -1;
  for (const EpochStats& e : epochs) {
    samples += e.samples;
    train_seconds += e.train_seconds;
    train_loss = e.train_loss;
  }
  std::vector<std::pair<std::string, std::string>> rows = {
      {"test accuracy", Format("%.2f%%", f.test_accuracy * 100)},
      {"test loss", Format("%.4f", f.test_loss) +
                        (train_loss >= 0 ? Format(" (train loss %.4f)", train_loss) : "")},
      {"time", Format("%.1f s", f.seconds) + " for " + std::to_string(f.epochs) +
                   (f.epochs == 1 ? " epoch" : " epochs") +
                   (train_seconds > 0 ? Format(", %.1f s training", train_seconds) : "")},
  };
  if (f.test_auc >= 0) rows.insert(rows.begin() + 1, {"test AUC", Format("%.4f", f.test_auc)});
  if (train_seconds > 0) {
    rows.push_back({"samples/s", Format("%.0f", samples / train_seconds) + " (" +
                                     std::to_string(samples) + " samples in " +
                                     std::to_string(epochs.size()) +
                                     (epochs.size() == 1 ? " epoch)" : " epochs)")});
  }
  rows.push_back({"parameters", std::to_string(f.params) +
                                    Format(" (weights L2 %.4f, digest ", f.weights_l2) +
                                    DigestHex(f.weights_digest) + ")"});
  for (const WorkerTotals& w : f.workers) {
    rows.push_back(
        {"worker " + std::to_string(w.id),
         Format("%.0f samples/s", w.train_seconds > 0 ? w.samples / w.train_seconds : 0) + " (" +
             std::to_string(w.samples) + " samples)" + (w.alive ? "" : ", died during the run")});
  }
  if (f.failures >= 0) rows.push_back({"failures survived", std::to_string(f.failures)});
  size_t left = 0, right = 0;
  for (const auto& [k, v] : rows) {
    left = std::max(left, k.size());
    right = std::max(right, v.size());
  }
  const std::string rule =
      "+" + std::string(left + 2, '-') + "+" + std::string(right + 2, '-') + "+\n";
  std::string out = "summary\n" + rule;
  for (const auto& [k, v] : rows) {
    out += "| " + k + std::string(left - k.size(), ' ') + " | " + v +
           std::string(right - v.size(), ' ') + " |\n";
  }
  return out + rule;
}

}  // namespace pstrain
