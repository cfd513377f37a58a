// Sparse models end to end: a generated click-through data set over 10^7
// hashed features, trained by real servers and workers on loopback.
#include <catch2/catch.hpp>
#include <fstream>

#include "tests/e2e/e2e_util.h"
#include "tests/e2e/process.h"

namespace pstrain::testing {
namespace {

using nlohmann::json;

constexpr int64_t kFeatures = 10'000'000;

// Generates the data set into dir and returns its truth.json.
json Generate(const TempDir& dir, const std::vector<std::string>& settings) {
  std::vector<std::string> argv = {kPstrain, "synth-ctr", dir.path().string(),
                                   "features=" + std::to_string(kFeatures)};
  argv.insert(argv.end(), settings.begin(), settings.end());
  RunResult r = Run(argv);
  INFO(r.err);
  REQUIRE(r.code == 0);
  return json::parse(ReadFile(dir.File("truth.json")));
}

std::string Job(const TempDir& dir, const std::string& model) {
  const std::string path = dir.File("ctr.toml");
  WriteFile(path, "[data]\nformat = \"libsvm\"\ntrain = \"" + dir.File("train.libsvm") +
                      "\"\ntest = \"" + dir.File("test.libsvm") +
                      "\"\nfeatures = " + std::to_string(kFeatures) + "\n[model]\n" + model +
                      "[optimizer]\ntype = \"adagrad\"\nlr = 0.1\n[train]\nbatch_size = 256\n");
  return path;
}

TEST_CASE(
    "Distributed sparse logistic regression over 10^7 features reaches the generating "
    "model's AUC within 0.01",
    "[e2e][sparse]") {
  TempDir dir;
  const json truth = Generate(dir, {});  // 10^6 training samples, 24 features each
  const std::string job = Job(dir, "layers = [{type = \"embedding\", dim = 1}]\n");
  RunResult r = Run({kPstrain, "train", job, "--servers", "2", "--workers", "2", "--epochs", "3",
                     "--progress", "never", "--metrics", dir.File("m.jsonl")});
  INFO(r.err);
  REQUIRE(r.code == 0);
  const auto lines = ReadJsonLines(dir.File("m.jsonl"));
  const json final = Events(lines, "final").at(0);
  const double best = truth["best_auc"];
  INFO("AUC " << final["test_auc"] << ", the generating model's " << best);
  CHECK(final["test_auc"].get<double>() >= best - 0.01);
  CHECK(final["test_auc"].get<double>() <= best + 0.005);
  for (const json& e : Events(lines, "epoch")) CHECK(e["sample_set_ok"] == true);
  // The rows live on both servers, and only the rows the data touches.
  const json servers = Events(lines, "server_stats").at(0)["servers"];
  REQUIRE(servers.size() == 2);
  int64_t rows = 0;
  for (const json& s : servers) {
    CHECK(s["sparse_rows"].get<int64_t>() > 0);
    rows += s["sparse_rows"].get<int64_t>();
  }
  CHECK(rows <= truth["train_active_features"].get<int64_t>());
  CHECK(rows > truth["train_active_features"].get<int64_t>() / 2);
}

TEST_CASE(
    "A wide-and-deep model's table lives on the servers: each worker's peak memory is a "
    "fraction of it",
    "[e2e][sparse]") {
  TempDir dir;
  const json truth = Generate(dir, {"train=100000", "test=20000"});
  const int dim = 16;
  const std::string job = Job(
      dir, "layers = [{type = \"embedding\", dim = " + std::to_string(dim) +
               "}, {type = \"dense\", units = 32}, {type = \"relu\"}, {type = \"dense\", units = "
               "1}]\nwide = true\n");
  RunResult r = Run({kPstrain, "train", job, "--servers", "2", "--workers", "2", "--epochs", "2",
                     "--progress", "never", "--metrics", dir.File("m.jsonl")});
  INFO(r.err);
  REQUIRE(r.code == 0);
  const auto lines = ReadJsonLines(dir.File("m.jsonl"));
  const json final = Events(lines, "final").at(0);
  CHECK(final["test_auc"].get<double>() > 0.5 + (truth["best_auc"].get<double>() - 0.5) * 0.8);
  // The whole table: 10^7 rows of 16 floats (and one float for the wide
  // part), 680 MB before any optimizer state. A worker holds only a batch's rows.
  const double table_bytes = static_cast<double>(kFeatures) * (dim + 1) * sizeof(float);
  const double peak = Events(lines, "epoch").back()["worker_peak_rss_bytes"].get<double>();
  INFO("worker peak " << peak / 1e6 << " MB, table " << table_bytes / 1e6 << " MB");
  CHECK(peak > 0);
  CHECK(peak < table_bytes / 4);
}

TEST_CASE("Sparse jobs with a broken data file or model stop with a message naming it",
          "[e2e][sparse]") {
  TempDir dir;
  WriteFile(dir.File("train.libsvm"), "1 3:1 9:1\n0 2:1\n1 8:1 4:1\n");
  WriteFile(dir.File("test.libsvm"), "1 3:1\n");
  const std::string job = Job(dir, "layers = [{type = \"embedding\", dim = 1}]\n");
  RunResult r =
      Run({kPstrain, "train", job, "--servers", "1", "--workers", "1", "--progress", "never"});
  CHECK(r.code != 0);
  CHECK_THAT(r.err, Catch::Contains("train.libsvm:3: feature index 4 follows index 8"));
  WriteFile(dir.File("train.libsvm"), "1 3:1 9:1\n0 2:1\n");
  const std::string dense = Job(dir, "layers = [{type = \"dense\", units = 1}]\n");
  r = Run({kPstrain, "train", dense, "--standalone", "--progress", "never"});
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("sparse (LibSVM) data starts with an embedding layer"));
}

}  // namespace
}  // namespace pstrain::testing
