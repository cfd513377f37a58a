// What a run leaves behind, end to end: the SVG plot next to the metrics
// file, `pstrain inspect` and `pstrain eval` on its checkpoints, and the
// summary table at the end of the terminal output.
#include <catch2/catch.hpp>
#include <cmath>
#include <fstream>
#include <regex>
#include <sstream>

#include "tests/e2e/e2e_util.h"
#include "tests/e2e/process.h"

namespace pstrain::testing {
namespace {

using nlohmann::json;

// Parses the SVG with Python's XML parser and prints, per curve, the number
// of polyline points and of circles: "train-loss 3 3" lines.
RunResult SvgCurves(const std::string& svg) {
  const std::string script =
      "import sys, xml.etree.ElementTree as E\n"
      "ns = '{http://www.w3.org/2000/svg}'\n"
      "root = E.parse(sys.argv[1]).getroot()\n"
      "assert root.tag == ns + 'svg', root.tag\n"
      "for p in root.iter(ns + 'polyline'):\n"
      "    pts = p.get('points').split()\n"
      "    dots = [c for c in root.iter(ns + 'circle') if c.get('class') == p.get('id')]\n"
      "    print(p.get('id'), len(pts), len(dots))\n";
  return Run({"/usr/bin/python3", "-c", script, svg});
}

double Number(const std::string& text, const std::string& pattern) {
  std::smatch m;
  if (!std::regex_search(text, m, std::regex(pattern))) return std::nan("");
  return std::stod(m[1]);
}

TEST_CASE("A run leaves a plot, and inspect and eval read its checkpoints", "[e2e][report]") {
  TempDir dir;
  const std::string metrics = dir.File("m.jsonl"), ckpt = dir.File("ckpt");
  RunResult run = Run({kPstrain, "train", kMnistJob, "--servers", "2", "--workers", "2", "--epochs",
                       "3", "--progress", "never", "--metrics", metrics, "--checkpoint-dir", ckpt});
  INFO(run.out << run.err);
  REQUIRE(run.code == 0);
  const auto lines = ReadJsonLines(metrics);
  const auto epochs = Events(lines, "epoch");
  REQUIRE(epochs.size() == 3);
  const json final_line = Events(lines, "final").at(0);

  SECTION("the plot next to the metrics file") {
    RunResult curves = SvgCurves(dir.File("m.svg"));
    INFO(curves.err);
    REQUIRE(curves.code == 0);
    CHECK(curves.out == "train-loss 3 3\ntest-loss 3 3\ntest-accuracy 3 3\n");
  }

  SECTION("the summary table") {
    CHECK_THAT(run.out, Catch::Contains("summary"));
    for (const char* row :
         {"test accuracy", "test loss", "samples/s", "worker 0", "worker 1", "failures survived"}) {
      CHECK_THAT(run.out, Catch::Contains(row));
    }
    const double acc = Number(run.out, R"(\| test accuracy\s*\| ([0-9.]+)%)");
    CHECK(acc == Approx(final_line["test_accuracy"].get<double>() * 100).margin(0.006));
    CHECK(Number(run.out, R"(\| failures survived\s*\| ([0-9]+))") == 0);
    CHECK_THAT(run.out, Catch::Contains("digest " + Digest(final_line) + ")"));
  }

  SECTION("inspect") {
    RunResult r = Run({kPstrain, "inspect", ckpt});
    INFO(r.out << r.err);
    CHECK(r.code == 0);
    CHECK_THAT(r.out, Catch::Contains("ckpt-000003"));
    CHECK_THAT(r.out, Catch::Contains("epochs done 3"));
    CHECK_THAT(r.out, Catch::Contains("job: job.toml"));
    CHECK_THAT(r.out, Catch::Contains("parameters: 235146 in 6 tensors"));
    CHECK_THAT(r.out, Catch::Contains("dense1.weight    [784, 256]"));
    CHECK_THAT(r.out, Catch::Contains("dense3.bias      [10]"));
    CHECK(Number(r.out, R"(\n  weights L2 ([0-9.]+))") ==
          Approx(final_line["weights_l2"].get<double>()).epsilon(1e-5));
    CHECK_THAT(r.out, Catch::Contains("verified"));
    // The newest checkpoint holds the final weights: the same digest.
    CHECK_THAT(r.out, Catch::Contains("weights digest " + Digest(final_line)));

    // One flipped byte in a shard file of the newest checkpoint.
    const std::string folder = ckpt + "/ckpt-000003";
    std::string victim;
    for (const auto& e : std::filesystem::directory_iterator(folder)) {
      if (e.path().extension() == ".bin") victim = e.path().string();
    }
    REQUIRE_FALSE(victim.empty());
    std::string bytes = ReadFile(victim);
    bytes[bytes.size() / 2] ^= 0x55;
    WriteFile(victim, bytes);
    RunResult bad = Run({kPstrain, "inspect", folder});
    INFO(bad.out);
    CHECK(bad.code == 1);
    CHECK_THAT(bad.out, Catch::Contains("BAD: " + victim + ": checksum mismatch"));
    CHECK_THAT(bad.out, Catch::Contains("L2 unknown"));
    CHECK_THAT(bad.out, Catch::Contains("DAMAGED"));

    // eval falls back to the newest checkpoint that verifies.
    RunResult ev = Run({kPstrain, "eval", ckpt});
    INFO(ev.out << ev.err);
    CHECK(ev.code == 0);
    CHECK_THAT(ev.out, Catch::Contains("skipped " + folder));
    CHECK_THAT(ev.out, Catch::Contains("after 2 epoch(s)"));
    CHECK(Number(ev.out, R"(test accuracy ([0-9.]+)%)") / 100 ==
          Approx(epochs[1]["test_accuracy"].get<double>()).margin(0.001));
  }

  SECTION("eval") {
    RunResult r = Run({kPstrain, "eval", ckpt + "/ckpt-000003"});
    INFO(r.out << r.err);
    REQUIRE(r.code == 0);
    // The same weights on the same test set: what the run reported.
    CHECK(Number(r.out, R"(test accuracy ([0-9.]+)%)") / 100 ==
          Approx(epochs[2]["test_accuracy"].get<double>()).margin(0.001));
    CHECK(Number(r.out, R"(test loss ([0-9.]+))") ==
          Approx(epochs[2]["test_loss"].get<double>()).epsilon(1e-3));
    // A 10x10 confusion matrix: rows sum to the test set, the diagonal to
    // the samples classified right.
    const size_t at = r.out.find("confusion matrix");
    REQUIRE(at != std::string::npos);
    std::istringstream in(r.out.substr(r.out.find('\n', r.out.find('\n', at) + 1) + 1));
    int64_t total = 0, diagonal = 0;
    int rows = 0;
    for (std::string line; std::getline(in, line);) {
      std::istringstream cells(line);
      int label;
      cells >> label;
      REQUIRE(label == rows);
      int64_t v;
      for (int j = 0; cells >> v; ++j) {
        total += v;
        if (j == label) diagonal += v;
      }
      ++rows;
    }
    CHECK(rows == 10);
    CHECK(total == 2000);
    CHECK(static_cast<double>(diagonal) == Number(r.out, R"(\(([0-9]+) of 2000 right\))"));

    // Other test data through the usual overrides: a bad one is named.
    RunResult missing =
        Run({kPstrain, "eval", ckpt, "--set", "data.test_images=/nonexistent/images"});
    CHECK(missing.code == 2);
    CHECK_THAT(missing.err, Catch::Contains("data.test_images: data file /nonexistent/images"));
    RunResult none = Run({kPstrain, "eval", dir.File("nothing")});
    CHECK(none.code == 1);
    CHECK_THAT(none.err, Catch::Contains("no such checkpoint folder"));
  }
}

TEST_CASE("A standalone run also leaves its plot and summary", "[e2e][report]") {
  TempDir dir;
  RunResult run = Run({kPstrain, "train", kMnistJob, "--standalone", "--epochs", "2", "--progress",
                       "never", "--metrics", dir.File("solo.jsonl")});
  INFO(run.out << run.err);
  REQUIRE(run.code == 0);
  RunResult curves = SvgCurves(dir.File("solo.svg"));
  INFO(curves.err);
  CHECK(curves.out == "train-loss 2 2\ntest-loss 2 2\ntest-accuracy 2 2\n");
  // The summary, without the rows only distributed runs have.
  CHECK_THAT(run.out, Catch::Contains("summary"));
  CHECK(Number(run.out, R"(\| samples/s\s*\| ([0-9]+) \(16000 samples in 2 epochs\))") > 0);
  CHECK_THAT(run.out, !Catch::Contains("failures survived"));
  CHECK_THAT(run.out, !Catch::Contains("worker 0"));
}

}  // namespace
}  // namespace pstrain::testing
