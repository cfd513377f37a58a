// The HTTP status server and what it renders: the server on a real
// loopback port, the Prometheus text and the /status document from a
// ClusterStatus built by hand.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "coordinator/http_server.h"
#include "coordinator/status_board.h"
#include "tests/test_util.h"

namespace pstrain {
namespace {

using testing::HttpGet;

ClusterStatus SampleStatus() {
  ClusterStatus s;
  s.job = "job \"quoted\"";
  s.phase = "training";
  s.consistency = Consistency::kSsp;
  s.staleness = 3;
  s.batch_size = 64;
  s.servers_wanted = 1;
  s.workers_wanted = 2;
  s.params = 1000;
  s.model_bytes = 4096;
  s.epochs = 5;
  s.epoch = 3;
  s.epoch_samples = 250;
  s.epoch_total = 1000;
  s.epoch_loss = 0.5;
  s.epoch_samples_per_s = 1234;
  s.membership_epoch = 2;
  s.failures = 1;
  s.refused_messages = 7;
  s.deaths_by_cause = {{"stopped", 1}, {"exited", 2}};
  s.samples_total = 2000;
  s.started = std::chrono::steady_clock::now();
  auto node = [](const char* role, int id, const char* state) {
    NodeStatus n;
    n.role = role;
    n.id = id;
    n.pid = 10 + id;
    n.host = "h";
    n.state = state;
    return n;
  };
  NodeStatus server = node("server", 0, "live");
  server.endpoint = "tcp://127.0.0.1:1";
  NodeStatus w0 = node("worker", 0, "dead");
  w0.death = "stopped";
  NodeStatus w1 = node("worker", 1, "live");
  w1.samples = 2000;
  w1.step_s = 0.004;
  w1.samples_per_s = 16000;
  w1.compute_s = 1.5;
  w1.busy_s = 2.25;
  s.nodes = {server, w0, w1};
  for (int e = 1; e <= 2; ++e) {
    EpochStats h;
    h.epoch = e;
    h.train_loss = 1.0 / e;
    h.test_loss = 1.2 / e;
    h.test_accuracy = 0.8 + 0.05 * e;
    h.samples_per_s = 1000 * e;
    s.history.push_back(h);
  }
  return s;
}

// name{labels} -> value, from the sample lines.
std::map<std::string, std::string> Samples(const std::string& text) {
  std::map<std::string, std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t sp = line.rfind(' ');
    out[line.substr(0, sp)] = line.substr(sp + 1);
  }
  return out;
}

TEST_CASE("Prometheus text declares every family once before its samples", "[coordinator]") {
  const std::string text = RenderPrometheus(SampleStatus());
  std::set<std::string> typed, helped;
  std::istringstream in(text);
  std::string line;
  int samples = 0;
  while (std::getline(in, line)) {
    INFO(line);
    REQUIRE_FALSE(line.empty());
    if (line.rfind("# TYPE ", 0) == 0) {
      std::istringstream f(line.substr(7));
      std::string name, type;
      f >> name >> type;
      CHECK((type == "gauge" || type == "counter"));
      CHECK((type != "counter" || name.ends_with("_total")));
      CHECK(typed.insert(name).second);
      continue;
    }
    if (line.rfind("# HELP ", 0) == 0) {
      CHECK(helped.insert(line.substr(7, line.find(' ', 7) - 7)).second);
      continue;
    }
    const std::string name = line.substr(0, line.find_first_of("{ "));
    CHECK(typed.count(name) == 1);
    ++samples;
  }
  CHECK(typed == helped);
  CHECK(samples > 25);
  const auto s = Samples(text);
  CHECK(s.at("pstrain_epoch") == "3");
  CHECK(s.at("pstrain_epochs_done") == "2");
  CHECK(s.at("pstrain_workers_live") == "1");
  CHECK(s.at("pstrain_servers_live") == "1");
  CHECK(s.at("pstrain_failures_total") == "1");
  CHECK(s.at("pstrain_control_refused_total") == "7");
  CHECK(s.at("pstrain_node_deaths_total{cause=\"stopped\"}") == "1");
  CHECK(s.at("pstrain_node_deaths_total{cause=\"exited\"}") == "2");
  CHECK(s.at("pstrain_node_busy_seconds{node=\"worker 1\",role=\"worker\"}") == "2.25");
  CHECK(s.count("pstrain_node_busy_seconds{node=\"worker 0\",role=\"worker\"}") == 0);  // dead
  CHECK(s.at("pstrain_staleness") == "3");
  CHECK(s.at("pstrain_samples_total") == "2000");
  CHECK(s.at("pstrain_train_loss") == "0.5");  // the epoch running
  CHECK(s.at("pstrain_test_accuracy") == "0.9");
  CHECK(s.at("pstrain_epoch_progress_ratio") == "0.25");
  CHECK(s.at("pstrain_worker_step_seconds{node=\"worker 1\"}") == "0.004");
  CHECK(s.at("pstrain_worker_step_seconds{node=\"worker 0\"}") == "NaN");
  CHECK(s.at("pstrain_worker_compute_seconds_total{node=\"worker 1\"}") == "1.5");
  CHECK(s.at("pstrain_node_up{node=\"worker 0\",role=\"worker\"}") == "0");
  CHECK(s.at("pstrain_node_up{node=\"server 0\",role=\"server\"}") == "1");
  CHECK(s.count(R"(pstrain_info{job="job \"quoted\"",consistency="ssp",phase="training"})") == 1);
}

TEST_CASE("Before any epoch the losses are NaN, not zero", "[coordinator]") {
  ClusterStatus st;
  st.started = std::chrono::steady_clock::now();
  const auto s = Samples(RenderPrometheus(st));
  CHECK(s.at("pstrain_test_loss") == "NaN");
  CHECK(s.at("pstrain_test_accuracy") == "NaN");
  CHECK(s.at("pstrain_train_loss") == "NaN");
  CHECK(s.at("pstrain_epochs_done") == "0");
}

TEST_CASE("The status document holds membership, progress and every epoch", "[coordinator]") {
  const nlohmann::json j = nlohmann::json::parse(RenderStatusJson(SampleStatus()));
  CHECK(j["job"] == "job \"quoted\"");
  CHECK(j["phase"] == "training");
  CHECK(j["epoch"] == 3);
  CHECK(j["progress"]["fraction"].get<double>() == Approx(0.25));
  CHECK(j["servers"].size() == 1);
  CHECK(j["servers"][0]["endpoint"] == "tcp://127.0.0.1:1");
  REQUIRE(j["workers"].size() == 2);
  CHECK(j["workers"][0]["state"] == "dead");
  CHECK(j["workers"][0]["step_s"].is_null());
  CHECK(j["workers"][0]["death"] == "stopped");
  CHECK(j["workers"][1].count("death") == 0);
  CHECK(j["workers"][1]["busy_s"] == 2.25);
  CHECK(j["deaths_by_cause"]["exited"] == 2);
  CHECK(j["workers"][1]["samples_per_s"] == 16000);
  REQUIRE(j["history"].size() == 2);
  CHECK(j["history"][1]["test_accuracy"].get<double>() == Approx(0.9));
  CHECK(j["last"]["epoch"] == 2);
  CHECK(j["workers_live"] == 1);
  CHECK(nlohmann::json::parse(RenderStatusJson(ClusterStatus{}))["last"].is_null());
}

TEST_CASE("The live page is self-contained and has the elements it documents", "[coordinator]") {
  const std::string& html = StatusPageHtml();
  CHECK(html.rfind("<!DOCTYPE html>", 0) == 0);
  for (const char* id :
       {"id=\"loss-chart\"", "id=\"accuracy-chart\"", "train-loss-path", "test-loss-path",
        "test-accuracy-path", "id=\"cluster\"", "id=\"phase\"", "fetch(\"/status\""}) {
    CHECK_THAT(html, Catch::Contains(id));
  }
  // Nothing loaded from elsewhere.
  CHECK_THAT(html, !Catch::Contains("src="));
  CHECK_THAT(html, !Catch::Contains("<link"));
  CHECK_THAT(html, !Catch::Contains("@import"));
}

TEST_CASE("The HTTP server answers from its handler while the state changes", "[coordinator]") {
  StatusBoard board;
  board.Update([](ClusterStatus& s) { s.started = std::chrono::steady_clock::now(); });
  auto server = HttpServer::Start("127.0.0.1", 0, [&board](const std::string& path) {
    if (path == "/metrics")
      return HttpResponse{200, "text/plain", RenderPrometheus(board.Snapshot())};
    return HttpResponse{404, "text/plain", "no " + path};
  });
  REQUIRE(server.ok());
  const int port = (*server)->port();
  REQUIRE(port > 0);

  // The coordinator's thread keeps changing the state meanwhile.
  std::atomic<bool> done{false};
  std::thread writer([&] {
    int64_t n = 0;
    while (!done.load()) {
      board.Update([&](ClusterStatus& s) {
        s.samples_total = ++n;
        s.history.resize(static_cast<size_t>(n % 50));
      });
    }
  });
  for (int i = 0; i < 20; ++i) {
    testing::HttpResult r = HttpGet(port, "/metrics");
    REQUIRE(r.status == 200);
    CHECK_THAT(r.body, Catch::Contains("# TYPE pstrain_samples_total counter"));
    CHECK_THAT(r.headers, Catch::Contains("Content-Length: " + std::to_string(r.body.size())));
  }
  done = true;
  writer.join();

  testing::HttpResult missing = HttpGet(port, "/nothing?x=1");
  CHECK(missing.status == 404);
  CHECK(missing.body == "no /nothing");
  CHECK(HttpGet(port, "/metrics", "POST").status == 405);
  testing::HttpResult head = HttpGet(port, "/metrics", "HEAD");
  CHECK(head.status == 200);
  CHECK(head.body.empty());
}

TEST_CASE("Destroying the HTTP server closes its port, idle connections included",
          "[coordinator]") {
  auto server =
      HttpServer::Start("127.0.0.1", 0, [](const std::string&) { return HttpResponse{}; });
  REQUIRE(server.ok());
  const int port = (*server)->port();
  CHECK(HttpGet(port, "/").status == 200);
  // A client that connected and sends nothing.
  const int idle = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(idle, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  CHECK(HttpGet(port, "/").status == 200);  // the idle connection is accepted by now
  const auto start = std::chrono::steady_clock::now();
  server->reset();
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(2));
  CHECK(HttpGet(port, "/").status == -1);
  char byte;
  CHECK(::recv(idle, &byte, 1, 0) <= 0);  // closed by the server
  ::close(idle);
}

TEST_CASE("A bad bind address or a taken port is an error that names it", "[coordinator]") {
  auto bad = HttpServer::Start("not-an-ip", 0, [](const std::string&) { return HttpResponse{}; });
  REQUIRE_FALSE(bad.ok());
  CHECK_THAT(bad.status().message(), Catch::Contains("output.http_bind: \"not-an-ip\""));
  auto first = HttpServer::Start("127.0.0.1", 0, [](const std::string&) { return HttpResponse{}; });
  REQUIRE(first.ok());
  auto second = HttpServer::Start("127.0.0.1", (*first)->port(),
                                  [](const std::string&) { return HttpResponse{}; });
  REQUIRE_FALSE(second.ok());
  CHECK(second.status().code() == StatusCode::kUnavailable);
  CHECK_THAT(second.status().message(),
             Catch::Contains("127.0.0.1:" + std::to_string((*first)->port())));
}

}  // namespace
}  // namespace pstrain
