#include "coordinator/console.h"

#include <unistd.h>

#include <cstdio>

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

void Console::Epoch(const EpochStats& e, int epochs) {
  ClearProgress();
  std::printf(
      "epoch %d/%d  train loss %.4f  test loss %.4f  test accuracy %.2f%%  %.0f samples/s  "
      "%.1fs\n",
      e.epoch, epochs, e.train_loss, e.test_loss, e.test_accuracy * 100, e.samples_per_s,
      e.seconds);
  std::fflush(stdout);
}

void Console::Final(const FinalStats& f) {
  ClearProgress();
  std::printf(
      "final: test accuracy %.2f%%  test loss %.4f  after %d epochs in %.1fs  "
      "(%lld parameters, weights L2 %.4f)\n",
      f.test_accuracy * 100, f.test_loss, f.epochs, f.seconds, static_cast<long long>(f.params),
      f.weights_l2);
  std::fflush(stdout);
}

}  // namespace pstrain
