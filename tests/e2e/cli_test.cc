// The pstrain executable's command line and its answers to bad input: each
// bad job file or flag exits 2 with one line naming the key or file.
#include <catch2/catch.hpp>
#include <sstream>

#include "tests/e2e/e2e_util.h"
#include "tests/e2e/process.h"

namespace pstrain::testing {
namespace {

std::string WithoutTrailingNewline(std::string s) {
  while (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

TEST_CASE("pstrain --help and help job print usage and every job key", "[e2e][cli]") {
  RunResult r = Run({kPstrain, "--help"});
  CHECK(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("pstrain train JOB.toml"));
  RunResult job = Run({kPstrain, "help", "job"});
  CHECK(job.code == 0);
  CHECK_THAT(job.out, Catch::Contains("batch_size = 64"));
}

TEST_CASE("The job-file reference documents every key help job prints", "[e2e][cli]") {
  RunResult help = Run({kPstrain, "help", "job"});
  REQUIRE(help.code == 0);
  const std::string doc = ReadFile(kSourceDir + "/docs/job-file.md");
  std::istringstream lines(help.out);
  std::string line, section;
  int keys = 0;
  while (std::getline(lines, line)) {
    if (line.rfind("[", 0) == 0) {
      section = line.substr(1, line.find(']') - 1);
    } else if (line.rfind("  ", 0) == 0) {
      const std::string key = section + "." + line.substr(2, line.find(" = ") - 2);
      const std::string default_value =
          line.substr(line.find(" = ") + 3, line.find("   # ") - line.find(" = ") - 3);
      INFO(key);
      CHECK_THAT(doc, Catch::Contains("| `" + key + "` |"));
      if (default_value != "(none)") {
        CHECK_THAT(doc, Catch::Contains("| `" + key + "` |") &&
                            Catch::Contains("| `" + default_value + "` |"));
      }
      ++keys;
    }
  }
  CHECK(keys > 40);
}

TEST_CASE("Bad job files and flags exit 2 with one line naming the problem", "[e2e][cli]") {
  TempDir dir;
  const std::string job = dir.File("job.toml");
  const std::string good = ReadFile(kFashionJob);
  struct Case {
    const char* name;
    std::string text;
    std::vector<std::string> flags;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {"unknown key", good + "\n[output]\nmetric = \"x\"\n", {}, "unknown key output.metric"},
      {"wrong type", good + "\n[output]\nprogress = 3\n", {}, "output.progress must be one of"},
      {"impossible value",
       good,
       {"--batch-size", "0"},
       "command line: train.batch_size must be >= 1"},
      {"missing data file",
       good,
       {"--set", "data.test_labels=/nonexistent/labels.gz"},
       "data.test_labels: data file /nonexistent/labels.gz does not exist"},
      {"unknown flag", good, {"--epoch", "3"}, "unknown flag --epoch"},
      {"syntax error", "[data\n", {}, "job.toml:1:"},
      {"nan learning rate", good, {"--lr", "nan"}, "optimizer.lr must be a finite number, got nan"},
      {"nan momentum",
       good,
       {"--set", "optimizer.momentum=nan"},
       "optimizer.momentum must be a finite number, got nan"},
      {"nan weight decay",
       good,
       {"--set", "optimizer.weight_decay=nan"},
       "optimizer.weight_decay must be a finite number, got nan"},
      {"nan gamma",
       good,
       {"--set", "schedule.gamma=nan"},
       "schedule.gamma must be a finite number, got nan"},
      {"nan warm-up",
       good,
       {"--set", "schedule.warmup_epochs=nan"},
       "schedule.warmup_epochs must be a finite number, got nan"},
      {"wrong last layer",
       good + "\n",
       {"--set", "model.layers=[{type=\"dense\",units=7}]"},
       "the last layer has 7 outputs but the data has 10 classes"},
  };
  for (const Case& c : cases) {
    SECTION(c.name) {
      WriteFile(job, c.text);
      std::vector<std::string> argv = {kPstrain, "train", job, "--standalone"};
      argv.insert(argv.end(), c.flags.begin(), c.flags.end());
      RunResult r = Run(argv);
      CHECK(r.code == 2);
      const std::string err = WithoutTrailingNewline(r.err);
      CHECK_THAT(err, Catch::Contains(c.expect));
      CHECK(err.find('\n') == std::string::npos);
      CHECK(err.rfind("pstrain: ", 0) == 0);
    }
  }
  SECTION("job file that is a folder") {
    RunResult r = Run({kPstrain, "train", dir.path().string(), "--standalone"});
    CHECK(r.code == 2);
    CHECK_THAT(r.err,
               Catch::Contains(dir.path().string() + ": the job file is not a regular file"));
  }
  SECTION("job file missing") {
    RunResult r = Run({kPstrain, "train", dir.File("none.toml"), "--standalone"});
    CHECK(r.code == 2);
    CHECK_THAT(r.err, Catch::Contains(dir.File("none.toml") + ": cannot open the job file"));
  }
}

TEST_CASE("A data error stops the job and every node it started, however early", "[e2e][cli]") {
  // The launcher stops its children as soon as the coordinator fails; a
  // child between fork and exec must not miss that (it would run on until
  // the launcher's last resort, a SIGKILL 20 s later).
  TempDir dir;
  WriteFile(dir.File("empty"), "");
  for (int run = 0; run < 10; ++run) {
    INFO("run " << run);
    RunResult r = Run({kPstrain, "train", kFashionJob, "--servers", "1", "--workers", "2",
                       "--progress", "never", "--set", "data.train_images=" + dir.File("empty")});
    CHECK(r.code == 2);
    CHECK_THAT(r.err, Catch::Contains(dir.File("empty")));
    CHECK_THAT(r.err, !Catch::Contains("did not stop"));
  }
}

TEST_CASE("A damaged data file stops the run with the file named", "[e2e][cli]") {
  TempDir dir;
  // Half of the real Fashion-MNIST test labels: a truncated gzip stream.
  const std::string labels =
      ReadFile("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz");
  WriteFile(dir.File("labels.gz"), labels.substr(0, labels.size() / 2));
  RunResult r = Run({kPstrain, "train", kFashionJob, "--standalone", "--set",
                     "data.test_labels=" + dir.File("labels.gz")});
  CHECK(r.code == 1);
  CHECK_THAT(r.err, Catch::Contains(dir.File("labels.gz") + ": gzip stream is truncated"));
}

}  // namespace
}  // namespace pstrain::testing
