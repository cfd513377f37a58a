// The coordinator's HTTP status server on real jobs: /metrics scraped while
// the job runs and checked by Prometheus' own promtool, /status against the
// metrics file, and the live page rendered by headless Chromium.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <regex>
#include <sstream>
#include <thread>

#include "tests/e2e/e2e_util.h"
#include "tests/e2e/process.h"

namespace pstrain::testing {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

// Polls `done` every 50 ms until it holds or `deadline` passes.
bool WaitFor(const std::function<bool()>& done, std::chrono::seconds deadline) {
  const auto until = Clock::now() + deadline;
  while (!done()) {
    if (Clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return true;
}

// The port from the coordinator's "status page at http://127.0.0.1:PORT/" line.
int WaitForHttpPort(Process& job) {
  static const std::regex line(R"(status page at http://127\.0\.0\.1:(\d+)/)");
  int port = 0;
  WaitFor(
      [&] {
        std::smatch m;
        const std::string out = job.Stdout();
        if (std::regex_search(out, m, line)) port = std::stoi(m[1]);
        return port > 0 || !job.Running();
      },
      std::chrono::seconds(120));
  return port;
}

// The value of the sample line `name` (no labels), or NaN.
double Sample(const std::string& text, const std::string& name) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(name + " ", 0) == 0) return std::strtod(line.c_str() + name.size() + 1, nullptr);
  }
  return std::nan("");
}

std::string Which(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path != nullptr ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    const std::filesystem::path p = std::filesystem::path(dir) / program;
    if (::access(p.c_str(), X_OK) == 0) return p.string();
  }
  return "";
}

TEST_CASE("The coordinator serves Prometheus metrics that promtool accepts while a job runs",
          "[e2e][http]") {
  const std::string promtool = Which("promtool");
  INFO("promtool comes with Debian's prometheus, which setup.sh installs");
  REQUIRE_FALSE(promtool.empty());
  TempDir dir;
  const std::string metrics = dir.File("m.jsonl");
  Process job({kPstrain, "train", kFashionJob, "--servers", "1", "--workers", "2", "--epochs", "3",
               "--http", "-1", "--progress", "never", "--metrics", metrics});
  const int port = WaitForHttpPort(job);
  INFO(job.Stdout() << job.Stderr());
  REQUIRE(port > 0);

  // A scrape taken after the first epoch, while the job still runs.
  std::string scrape;
  REQUIRE(WaitFor(
      [&] {
        HttpResult r = HttpGet(port, "/metrics");
        if (r.status == 200 && Sample(r.body, "pstrain_epochs_done") >= 1) scrape = r.body;
        return !scrape.empty() || !job.Running();
      },
      std::chrono::seconds(300)));
  REQUIRE_FALSE(scrape.empty());
  INFO(scrape);
  WriteFile(dir.File("scrape.txt"), scrape);
  RunResult check = Run({"/bin/sh", "-c", promtool + " check metrics < " + dir.File("scrape.txt")});
  INFO(check.out << check.err);
  CHECK(check.code == 0);

  CHECK(Sample(scrape, "pstrain_workers_live") == 2);
  CHECK(Sample(scrape, "pstrain_servers_live") == 1);
  CHECK(Sample(scrape, "pstrain_epochs") == 3);
  CHECK(Sample(scrape, "pstrain_parameters") == 235146);
  CHECK(Sample(scrape, "pstrain_failures_total") == 0);
  CHECK(Sample(scrape, "pstrain_samples_total") >= 60000);
  CHECK(Sample(scrape, "pstrain_samples_per_second") > 0);
  for (const char* node : {"worker 0", "worker 1"}) {
    CHECK_THAT(scrape,
               Catch::Contains("pstrain_worker_step_seconds{node=\"" + std::string(node) + "\"} "));
    CHECK_THAT(scrape, Catch::Contains("pstrain_worker_pull_wait_seconds_total{node=\"" +
                                       std::string(node) + "\"} "));
  }
  const int done_at_scrape = static_cast<int>(Sample(scrape, "pstrain_epochs_done"));
  const double accuracy_at_scrape = Sample(scrape, "pstrain_test_accuracy");
  HttpResult status = HttpGet(port, "/status");
  REQUIRE(status.status == 200);
  CHECK_THAT(status.headers, Catch::Contains("Content-Type: application/json"));
  const json st = json::parse(status.body);
  CHECK(st["workers"].size() == 2);
  CHECK(st["servers"].size() == 1);
  CHECK(st["servers"][0]["endpoint"].get<std::string>().rfind("tcp://", 0) == 0);

  REQUIRE(job.Wait(std::chrono::seconds(600)) == 0);
  // What was served is what the metrics file says about the same epoch.
  const auto epochs = Events(ReadJsonLines(metrics), "epoch");
  REQUIRE(epochs.size() == 3);
  CHECK(epochs[done_at_scrape - 1]["test_accuracy"].get<double>() ==
        Approx(accuracy_at_scrape).epsilon(1e-6));
  const json& first = epochs[0];
  CHECK(st["history"][0]["test_loss"].get<double>() ==
        Approx(first["test_loss"].get<double>()).epsilon(1e-6));
  // The job is over: so is the server.
  CHECK(HttpGet(port, "/metrics").status == -1);
}

// Chromium's DOM after the page's script ran, or "" with the reason in *why.
std::string RenderedDom(const std::string& chromium, const std::string& url,
                        const std::string& profile, std::string* why) {
  RunResult r = Run({chromium, "--headless", "--no-sandbox", "--disable-gpu",
                     "--user-data-dir=" + profile, "--virtual-time-budget=5000", "--dump-dom", url},
                    std::chrono::seconds(120));
  *why = r.err;
  return r.code == 0 ? r.out : "";
}

// The value of attribute `attr` of the element with id `id` in `html`.
std::string Attribute(const std::string& html, const std::string& id, const std::string& attr) {
  const std::regex tag("<[^>]*\\bid=\"" + id + "\"[^>]*>");
  std::smatch m;
  if (!std::regex_search(html, m, tag)) return "";
  const std::string t = m[0];
  const std::regex a("\\b" + attr + "=\"([^\"]*)\"");
  std::smatch v;
  return std::regex_search(t, v, a) ? std::string(v[1]) : "";
}

int CountOf(const std::string& s, const std::string& what) {
  int n = 0;
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
  return n;
}

TEST_CASE("Headless Chromium draws one point per finished epoch on the live page", "[e2e][http]") {
  const std::string chromium = Which("chromium");
  INFO("setup.sh installs Debian's chromium");
  REQUIRE_FALSE(chromium.empty());
  TempDir dir;
  // Long enough to be looked at while it runs; stopped below.
  Process job({kPstrain, "train", kMnistJob, "--servers", "1", "--workers", "2", "--epochs", "400",
               "--http", "-1", "--progress", "never"});
  const int port = WaitForHttpPort(job);
  INFO(job.Stdout() << job.Stderr());
  REQUIRE(port > 0);
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/";
  auto epochs_done = [&] {
    HttpResult r = HttpGet(port, "/status");
    return r.status == 200 ? static_cast<int>(json::parse(r.body)["history"].size()) : -1;
  };
  REQUIRE(WaitFor([&] { return epochs_done() >= 3 || !job.Running(); }, std::chrono::seconds(300)));
  const int before = epochs_done();
  REQUIRE(before >= 3);

  std::string why;
  const std::string dom = RenderedDom(chromium, url, dir.File("profile"), &why);
  const int after = epochs_done();
  INFO("chromium: " << why);
  REQUIRE_FALSE(dom.empty());
  // A screenshot for people to look at, kept with the build.
  const std::string shots = std::string(PSTRAIN_BUILD_DIR) + "/test-artifacts";
  std::filesystem::create_directories(shots);
  Run({chromium, "--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir=" + dir.File("p2"),
       "--virtual-time-budget=5000", "--window-size=1100,800",
       "--screenshot=" + shots + "/status_page.png", url},
      std::chrono::seconds(120));
  job.Signal(SIGINT);
  CHECK(job.Wait(std::chrono::seconds(60)) == 130);

  INFO(dom);
  const int drawn = std::atoi(Attribute(dom, "loss-chart", "data-epochs").c_str());
  CHECK(drawn >= before);
  CHECK(drawn <= after);
  CHECK(Attribute(dom, "accuracy-chart", "data-epochs") == std::to_string(drawn));
  for (const char* path : {"train-loss-path", "test-loss-path", "test-accuracy-path"}) {
    INFO(path);
    CHECK(Attribute(dom, path, "data-points") == std::to_string(drawn));
    const std::string d = Attribute(dom, path, "d");
    CHECK(CountOf(d, "M") == 1);
    CHECK(CountOf(d, "L") == drawn - 1);
  }
  CHECK(CountOf(dom, "class=\"node live\"") == 3);
  CHECK_THAT(dom, Catch::Contains("pstrain · mnist_mlp"));
  CHECK(std::filesystem::file_size(shots + "/status_page.png") > 1000);
}

TEST_CASE("Workers that stand still longer than the timeout on a loaded machine are busy, not dead",
          "[e2e][fault][http]") {
  // Other work keeps both cores busy, as on a shared machine.
  std::vector<std::unique_ptr<Process>> load;
  for (int i = 0; i < 3; ++i) {
    load.push_back(std::make_unique<Process>(
        std::vector<std::string>{"/bin/sh", "-c", "while :; do :; done"}));
  }
  TempDir dir;
  const std::string metrics = dir.File("m.jsonl");
  // Each worker's main thread stands still for 8 s in its first epoch: more
  // than twice cluster.timeout_ms (3 s, the default).
  Process job({kPstrain, "train", kFashionJob, "--servers", "1", "--workers", "2", "--epochs", "2",
               "--http", "-1", "--progress", "never", "--metrics", metrics},
              {{"PSTRAIN_FAULT_STALL_MS", "8000"}});
  const int port = WaitForHttpPort(job);
  INFO(job.Stdout() << job.Stderr());
  REQUIRE(port > 0);
  // The status page shows them busy meanwhile, beating all along.
  double busiest = 0;
  int asked = 0, answered = 0;
  std::string scrape;
  REQUIRE(WaitFor(
      [&] {
        HttpResult r = HttpGet(port, "/status");
        ++asked;
        if (r.status == 200) {
          ++answered;
          const json st = json::parse(r.body);
          for (const json& w : st["workers"]) {
            busiest = std::max(busiest, w["busy_s"].get<double>());
          }
        }
        if (busiest > 3.5 && scrape.empty()) scrape = HttpGet(port, "/metrics").body;
        return busiest > 3.5 || !job.Running();
      },
      std::chrono::seconds(300)));
  INFO("the busiest worker had been busy " << busiest << " s; " << answered << " of " << asked
                                           << " status requests answered");
  CHECK(busiest > 3.5);
  CHECK_THAT(scrape, Catch::Contains("pstrain_node_busy_seconds{node=\"worker "));
  auto code = job.Wait(std::chrono::seconds(600));
  load.clear();
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  const auto lines = ReadJsonLines(metrics);
  CHECK(Events(lines, "node_failed").empty());
  CHECK(Events(lines, "epoch").size() == 2);
  for (const json& e : Events(lines, "epoch")) CHECK(e["samples"] == 60000);
  CHECK_THAT(job.Stderr(), Catch::Contains("standing still for 8000 ms"));
}

}  // namespace
}  // namespace pstrain::testing
