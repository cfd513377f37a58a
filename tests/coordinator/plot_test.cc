// The run's SVG plot, the metrics file it is drawn from, and the summary
// table at the end of a run.
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <sstream>

#include "coordinator/console.h"
#include "coordinator/metrics_log.h"
#include "coordinator/plot_svg.h"
#include "tests/test_util.h"

namespace pstrain {
namespace {

int CountOf(const std::string& s, const std::string& what) {
  int n = 0;
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
  return n;
}

// The number of "x,y" pairs in the points of polyline `id`.
int PointsOf(const std::string& svg, const std::string& id) {
  const size_t at = svg.find("<polyline id=\"" + id + "\" points=\"");
  if (at == std::string::npos) return -1;
  const size_t begin = svg.find("points=\"", at) + 8;
  return CountOf(svg.substr(begin, svg.find('"', begin) - begin), ",");
}

EpochStats Epoch(int n, double loss) {
  EpochStats e;
  e.epoch = n;
  e.train_loss = loss;
  e.test_loss = loss * 1.1;
  e.test_accuracy = 1 - loss / 4;
  return e;
}

TEST_CASE("The plot has one point per epoch for each curve, axes and a legend", "[coordinator]") {
  const std::vector<EpochStats> epochs = {Epoch(1, 0.9), Epoch(2, 0.5), Epoch(3, 0.4)};
  const std::string svg = PlotSvg("job <a&b>", epochs);
  CHECK(svg.rfind("<?xml", 0) == 0);
  for (const char* id : {"train-loss", "test-loss", "test-accuracy"}) {
    INFO(id);
    CHECK(PointsOf(svg, id) == 3);
    CHECK(CountOf(svg, "<circle class=\"" + std::string(id) + "\"") == 3);
  }
  CHECK_THAT(svg, Catch::Contains("job &lt;a&amp;b&gt;"));
  CHECK_THAT(svg, Catch::Contains(">train loss</text>"));
  CHECK_THAT(svg, Catch::Contains(">test accuracy</text>"));
  CHECK_THAT(svg, Catch::Contains(">epoch</text>"));
  CHECK(CountOf(svg, "<text class=\"tick\"") >= 8);
  CHECK(CountOf(svg, "<svg") == 1);
  CHECK(CountOf(svg, "</svg>") == 1);

  EpochStats diverged = Epoch(4, 0.3);
  diverged.train_loss = std::nan("");
  std::vector<EpochStats> more = epochs;
  more.push_back(diverged);
  const std::string svg4 = PlotSvg("t", more);
  CHECK(PointsOf(svg4, "train-loss") == 3);  // no point where there is no number
  CHECK(PointsOf(svg4, "test-loss") == 4);
  CHECK(PointsOf(PlotSvg("t", {}), "test-loss") == 0);
}

TEST_CASE("A metrics file gets its plot next to it, a resumed run's included", "[coordinator]") {
  testing::TempDir dir;
  const std::string path = dir.File("run.jsonl");
  {
    auto log = MetricsLog::Open(path);
    REQUIRE(log.ok());
    CHECK((*log)->plot_path() == dir.File("run.svg"));
    for (int e = 1; e <= 3; ++e) REQUIRE((*log)->WriteEpoch(Epoch(e, 1.0 / e)).ok());
  }
  CHECK(PointsOf(testing::ReadFile(dir.File("run.svg")), "test-loss") == 3);
  const std::vector<EpochStats> read = ReadEpochLines(testing::ReadFile(path));
  REQUIRE(read.size() == 3);
  CHECK(read[1].epoch == 2);
  CHECK(read[1].train_loss == Approx(0.5));
  CHECK(read[2].test_accuracy == Approx(1 - 1.0 / 12));
  {
    // Resumed from the checkpoint after epoch 2: epoch 3 again, then 4.
    auto log = MetricsLog::Open(path, /*append=*/true);
    REQUIRE(log.ok());
    REQUIRE((*log)->WriteEpoch(Epoch(3, 0.2)).ok());
    REQUIRE((*log)->WriteEpoch(Epoch(4, 0.1)).ok());
  }
  const std::string svg = testing::ReadFile(dir.File("run.svg"));
  CHECK(PointsOf(svg, "train-loss") == 4);
  CHECK(ReadEpochLines(testing::ReadFile(path)).at(2).train_loss == Approx(0.2));
  // Without a metrics file, no plot.
  auto none = MetricsLog::Open("");
  REQUIRE(none.ok());
  CHECK((*none)->plot_path().empty());
  REQUIRE((*none)->WriteEpoch(Epoch(1, 1)).ok());
}

TEST_CASE("The summary table lines up and has a row per worker and the failures", "[coordinator]") {
  FinalStats f;
  f.epochs = 2;
  f.test_accuracy = 0.8765;
  f.test_loss = 0.25;
  f.seconds = 12.5;
  f.params = 1000;
  f.workers = {{0, 6000, 2.0, true}, {1, 2000, 1.0, false}};
  f.failures = 1;
  EpochStats e = Epoch(1, 0.5);
  e.samples = 4000;
  e.train_seconds = 1.0;
  const std::string t = SummaryTable(f, {e, e});
  INFO(t);
  CHECK(t.rfind("summary\n+", 0) == 0);
  CHECK_THAT(t, Catch::Contains("| test accuracy     | 87.65% "));
  CHECK_THAT(t, Catch::Contains("| samples/s         | 4000 (8000 samples in 2 epochs) "));
  CHECK_THAT(t, Catch::Contains("| worker 0          | 3000 samples/s (6000 samples) "));
  CHECK_THAT(t, Catch::Contains(
                    "| worker 1          | 2000 samples/s (2000 samples), died during the run |"));
  CHECK_THAT(t, Catch::Contains("| failures survived | 1 "));
  // Every line of the table is as wide as the first rule.
  std::istringstream in(t.substr(t.find('\n') + 1));
  std::string rule, line;
  std::getline(in, rule);
  while (std::getline(in, line)) CHECK(line.size() == rule.size());
  // Standalone runs have no worker rows and no failure count.
  FinalStats solo = f;
  solo.workers.clear();
  solo.failures = -1;
  CHECK_THAT(SummaryTable(solo, {e}), !Catch::Contains("failures"));
}

}  // namespace
}  // namespace pstrain
