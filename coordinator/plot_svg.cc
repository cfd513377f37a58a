#include "coordinator/plot_svg.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>

namespace pstrain {
namespace {

constexpr double kWidth = 760, kHeight = 420;
constexpr double kLeft = 70, kRight = 70, kTop = 56, kBottom = 56;

std::string Fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string Escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// A step of 1, 2 or 5 times a power of ten giving about `ticks` intervals.
double NiceStep(double range, int ticks) {
  const double raw = range / ticks;
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0}) {
    if (raw <= m * p) return m * p;
  }
  return 10 * p;
}

int DigitsFor(double step) { return std::max(0, static_cast<int>(-std::floor(std::log10(step)))); }

struct Axis {
  double lo, hi, step;
  double Y(double v) const {
    return kTop + (kHeight - kTop - kBottom) * (1 - (v - lo) / (hi - lo));
  }
};

struct Series {
  const char* id;
  const char* label;
  const char* color;
  const Axis* axis;
  std::function<double(const EpochStats&)> value;
};

}  // namespace

std::string PlotSvg(const std::string& title, const std::vector<EpochStats>& epochs) {
  // One picture drawn top to bottom (frame, grid, axes, lines, legend):
  // kept whole so the coordinates read together.
  const size_t n = epochs.size();
  double loss_max = 0;
  double acc_min = 1;
  for (const EpochStats& e : epochs) {
    for (double v : {e.train_loss, e.test_loss}) {
      if (std::isfinite(v)) loss_max = std::max(loss_max, v);
    }
    if (std::isfinite(e.test_accuracy)) acc_min = std::min(acc_min, e.test_accuracy);
  }
  Axis loss{0, 0, 0};
  loss.step = NiceStep(loss_max > 0 ? loss_max : 1, 5);
  loss.hi = std::ceil((loss_max > 0 ? loss_max : 1) / loss.step) * loss.step;
  Axis acc{0, 1, 0};
  acc.lo = std::clamp(std::floor(acc_min * 10) / 10, 0.0, 0.9);
  acc.step = NiceStep(acc.hi - acc.lo, 5);
  const double plot_w = kWidth - kLeft - kRight;
  auto x = [&](size_t i) { return kLeft + (n <= 1 ? plot_w / 2 : plot_w * i / (n - 1)); };

  std::string s;
  s += "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  s += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + Fixed(kWidth, 0) + "\" height=\"" +
       Fixed(kHeight, 0) + "\" viewBox=\"0 0 " + Fixed(kWidth, 0) + " " + Fixed(kHeight, 0) +
       "\" font-family=\"sans-serif\" font-size=\"12\" data-epochs=\"" + std::to_string(n) +
       "\">\n";
  s += "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n";
  s += "<text x=\"" + Fixed(kLeft, 0) + "\" y=\"24\" font-size=\"15\" font-weight=\"bold\">" +
       Escape(title) + "</text>\n";
  const double bottom = kHeight - kBottom, right = kWidth - kRight;
  // Grid and left axis (loss).
  for (double v = loss.lo; v <= loss.hi + loss.step / 2; v += loss.step) {
    const std::string y = Fixed(loss.Y(v), 1);
    s += "<line x1=\"" + Fixed(kLeft, 0) + "\" x2=\"" + Fixed(right, 0) + "\" y1=\"" + y +
         "\" y2=\"" + y + "\" stroke=\"#eeeeee\"/>\n";
    s += "<text class=\"tick\" x=\"" + Fixed(kLeft - 6, 0) + "\" y=\"" + Fixed(loss.Y(v) + 4, 1) +
         "\" text-anchor=\"end\">" + Fixed(v, DigitsFor(loss.step)) + "</text>\n";
  }
  // Right axis (accuracy).
  for (double v = acc.lo; v <= acc.hi + acc.step / 2; v += acc.step) {
    s += "<line x1=\"" + Fixed(right, 0) + "\" x2=\"" + Fixed(right + 4, 0) + "\" y1=\"" +
         Fixed(acc.Y(v), 1) + "\" y2=\"" + Fixed(acc.Y(v), 1) + "\" stroke=\"#888888\"/>\n";
    s += "<text class=\"tick\" x=\"" + Fixed(right + 7, 0) + "\" y=\"" + Fixed(acc.Y(v) + 4, 1) +
         "\">" + Fixed(v * 100, std::max(0, DigitsFor(acc.step) - 2)) + "%</text>\n";
  }
  // Bottom axis (epochs).
  const size_t every = std::max<size_t>(1, (n + 9) / 10);
  for (size_t i = 0; i < n; i += every) {
    s += "<line x1=\"" + Fixed(x(i), 1) + "\" x2=\"" + Fixed(x(i), 1) + "\" y1=\"" +
         Fixed(bottom, 0) + "\" y2=\"" + Fixed(bottom + 4, 0) + "\" stroke=\"#888888\"/>\n";
    s += "<text class=\"tick\" x=\"" + Fixed(x(i), 1) + "\" y=\"" + Fixed(bottom + 18, 0) +
         "\" text-anchor=\"middle\">" + std::to_string(epochs[i].epoch) + "</text>\n";
  }
  s += "<path d=\"M" + Fixed(kLeft, 0) + " " + Fixed(kTop, 0) + " V" + Fixed(bottom, 0) + " H" +
       Fixed(right, 0) + " V" + Fixed(kTop, 0) + "\" fill=\"none\" stroke=\"#888888\"/>\n";
  s += "<text x=\"" + Fixed(kLeft + plot_w / 2, 0) + "\" y=\"" + Fixed(kHeight - 14, 0) +
       "\" text-anchor=\"middle\">epoch</text>\n";
  s += "<text transform=\"translate(18 " + Fixed(kTop + (bottom - kTop) / 2, 0) +
       ") rotate(-90)\" text-anchor=\"middle\">loss</text>\n";
  s += "<text transform=\"translate(" + Fixed(kWidth - 12, 0) + " " +
       Fixed(kTop + (bottom - kTop) / 2, 0) +
       ") rotate(90)\" text-anchor=\"middle\">test accuracy</text>\n";

  const Series series[] = {
      {"train-loss", "train loss", "#3b7dd8", &loss,
       [](const EpochStats& e) { return e.train_loss; }},
      {"test-loss", "test loss", "#e67e22", &loss, [](const EpochStats& e) { return e.test_loss; }},
      {"test-accuracy", "test accuracy", "#2e8b57", &acc,
       [](const EpochStats& e) { return e.test_accuracy; }},
  };
  double legend_x = kLeft;
  for (const Series& c : series) {
    std::string points, dots;
    for (size_t i = 0; i < n; ++i) {
      const double v = c.value(epochs[i]);
      if (!std::isfinite(v)) continue;
      const std::string px = Fixed(x(i), 1), py = Fixed(c.axis->Y(v), 1);
      points += (points.empty() ? "" : " ") + px + "," + py;
      dots += "<circle class=\"" + std::string(c.id) + "\" cx=\"" + px + "\" cy=\"" + py +
              "\" r=\"3\" fill=\"" + c.color + "\"><title>epoch " +
              std::to_string(epochs[i].epoch) + ": " + Fixed(v, 4) + "</title></circle>\n";
    }
    s += "<polyline id=\"" + std::string(c.id) + "\" points=\"" + points +
         "\" fill=\"none\" stroke=\"" + c.color + "\" stroke-width=\"2\"/>\n" + dots;
    s += "<rect x=\"" + Fixed(legend_x, 0) + "\" y=\"32\" width=\"12\" height=\"12\" fill=\"" +
         c.color + "\"/>\n";
    s += "<text x=\"" + Fixed(legend_x + 16, 0) + "\" y=\"42\">" + c.label + "</text>\n";
    legend_x += 130;
  }
  s += "</svg>\n";
  return s;
}

}  // namespace pstrain
