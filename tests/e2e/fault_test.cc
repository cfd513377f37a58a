// Faults caused for real: kill -9 and SIGSTOP of worker processes, under the
// local launcher and under mpirun.
#include <capnp/message.h>
#include <signal.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <thread>

#include "common/msg/codec.h"
#include "common/net/node.h"
#include "common/net/zmq_socket.h"
#include "tests/e2e/e2e_util.h"
#include "tests/e2e/process.h"

namespace pstrain::testing {
namespace {

using nlohmann::json;

// Waits (bounded) until the metrics file has a line for which pred holds.
bool WaitForLine(const std::string& metrics, Process& job,
                 const std::function<bool(const json&)>& pred) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::minutes(5);
  while (job.Running() && std::chrono::steady_clock::now() < until) {
    for (const json& l : ReadJsonLines(metrics)) {
      if (pred(l)) return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

// The pid of `role` ("workers" or "servers") `id` in the membership lines.
int NodePid(const std::string& metrics, const char* role, int id) {
  for (const json& m : Events(ReadJsonLines(metrics), "membership")) {
    for (const json& w : m[role]) {
      if (w["id"] == id) return w["pid"];
    }
  }
  return -1;
}

int WorkerPid(const std::string& metrics, int id) { return NodePid(metrics, "workers", id); }

json Final(const std::string& metrics) { return Events(ReadJsonLines(metrics), "final").at(0); }

void CheckEveryEpochComplete(const std::string& metrics, int epochs, int64_t samples) {
  const auto lines = Events(ReadJsonLines(metrics), "epoch");
  REQUIRE(lines.size() == static_cast<size_t>(epochs));
  for (const json& e : lines) {
    CHECK(e["samples"] == samples);
    CHECK(e["sample_set_ok"] == true);
  }
}

// Prints, when the test ends for any reason, what a failure needs to be
// understood: every metrics line and the job's own stderr. ctest shows it
// only for a test that failed (--output-on-failure).
class DumpOnExit {
 public:
  DumpOnExit(std::string metrics, const Process* job) : metrics_(std::move(metrics)), job_(job) {}
  ~DumpOnExit() {
    std::cerr << "--- metrics " << metrics_ << "\n"
              << ReadFile(metrics_) << "--- job stderr\n"
              << (job_ != nullptr ? job_->Stderr() : std::string()) << "--- end\n";
  }

 private:
  std::string metrics_;
  const Process* job_;
};

// `pstrain train job --metrics metrics flags...`
std::vector<std::string> TrainArgv(const std::string& job, const std::string& metrics,
                                   const std::vector<std::string>& flags) {
  std::vector<std::string> argv = {kPstrain, "train", job, "--metrics", metrics};
  argv.insert(argv.end(), flags.begin(), flags.end());
  return argv;
}

// Runs `job` with `flags` to the end, fault-free, and returns its final line.
json CleanFinal(const std::string& job, const std::string& metrics,
                const std::vector<std::string>& flags) {
  std::vector<std::string> argv = {kPstrain, "train", job, "--metrics", metrics};
  argv.insert(argv.end(), flags.begin(), flags.end());
  RunResult r = Run(argv);
  INFO("fault-free run: " << r.err);
  REQUIRE(r.code == 0);
  return Final(metrics);
}

// 2 servers and 3 workers for `epochs` epochs, quietly.
std::vector<std::string> ThreeWorkers(int epochs) {
  return {"--servers",  "2",    "--workers", "3", "--epochs", std::to_string(epochs),
          "--progress", "never"};
}
const std::vector<std::string> kThreeWorkers = ThreeWorkers(4);

TEST_CASE("kill -9 of one of 3 workers in epoch 2: the job finishes as if nothing happened",
          "[e2e][fault]") {
  TempDir dir;
  const json clean = CleanFinal(kFashionJob, dir.File("clean"), kThreeWorkers);
  const std::string metrics = dir.File("m");
  std::vector<std::string> argv = {kPstrain, "train", kFashionJob, "--metrics", metrics};
  argv.insert(argv.end(), kThreeWorkers.begin(), kThreeWorkers.end());
  Process job(argv);
  REQUIRE(WaitForLine(metrics, job, [](const json& l) { return l["event"] == "epoch"; }));
  const int victim = WorkerPid(metrics, 1);
  REQUIRE(victim > 0);
  REQUIRE(::kill(victim, SIGKILL) == 0);
  REQUIRE(WaitForLine(metrics, job, [](const json& l) { return l["event"] == "node_failed"; }));
  auto code = job.Wait(std::chrono::seconds(600));
  INFO(job.Stderr());
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  CheckEveryEpochComplete(metrics, 4, 60000);
  const json failed = Events(ReadJsonLines(metrics), "node_failed").at(0);
  CHECK(failed["role"] == "worker");
  CHECK(failed["id"] == 1);
  // Noticed from the exit, not from the silence timeout (how soon is a
  // figure of the metrics line, not something a busy machine can promise).
  INFO("detected after " << failed["detect_seconds"] << " s");
  CHECK_THAT(failed["reason"].get<std::string>(), !Catch::Contains("silent"));
  CHECK(Events(ReadJsonLines(metrics), "recovered").size() == 1);
  const json f = Final(metrics);
  // The survivors computed the dead worker's share with the same weights:
  // the result is the fault-free one (the issue asks for 0.5 pt).
  CHECK(std::abs(f["test_accuracy"].get<double>() - clean["test_accuracy"].get<double>()) <= 0.005);
  CHECK(Digest(f) == Digest(clean));
  // The summary table counts the failure and names the worker that died.
  CHECK_THAT(job.Stdout(), Catch::Contains("| failures survived | 1 "));
  CHECK_THAT(
      job.Stdout(),
      Catch::Matches(
          R"((.|\n)*\| worker 1 +\| [0-9]+ samples/s \([0-9]+ samples\), died during the run(.|\n)*)"));
}

size_t Count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

// Waits (bounded) until the job's stderr holds `needle` `times` times.
bool WaitForStderr(Process& job, const std::string& needle, size_t times) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::minutes(5);
  while (job.Running() && std::chrono::steady_clock::now() < until) {
    if (Count(job.Stderr(), needle) >= times) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

TEST_CASE("Two of three workers die while evaluating: the test metrics still cover every row",
          "[e2e][fault]") {
  TempDir dir;
  const std::vector<std::string> flags = ThreeWorkers(1);
  const json clean = CleanFinal(kFashionJob, dir.File("clean"), flags);
  const json clean_epoch = Events(ReadJsonLines(dir.File("clean")), "epoch").at(0);
  CHECK(clean_epoch["test_samples"] == 10000);

  // Every worker holds its range of test rows until the gate file exists:
  // the deaths happen during the evaluation, whatever the machine's speed.
  const std::string metrics = dir.File("m"), gate = dir.File("gate");
  std::vector<std::string> argv = {kPstrain, "train",       kFashionJob, "--metrics",
                                   metrics,  "--log-level", "info"};
  argv.insert(argv.end(), flags.begin(), flags.end());
  Process job(argv, {{"PSTRAIN_FAULT_EVAL_GATE", gate}});
  const DumpOnExit dump(metrics, &job);
  REQUIRE(WaitForStderr(job, "waiting for " + gate + " before evaluating", 3));
  auto failures = [&] { return Events(ReadJsonLines(metrics), "node_failed").size(); };
  // Worker 2's range goes to worker 0 (the survivors hold one each, the
  // lower id wins); then worker 0 dies holding two, and both go to worker 1.
  REQUIRE(::kill(WorkerPid(metrics, 2), SIGKILL) == 0);
  REQUIRE(WaitForLine(metrics, job, [](const json& l) { return l["event"] == "node_failed"; }));
  REQUIRE(WaitForStderr(job, "of worker 2 go to worker 0", 1));
  REQUIRE(::kill(WorkerPid(metrics, 0), SIGKILL) == 0);
  REQUIRE(WaitForStderr(job, "of worker 0 go to worker 1", 2));
  CHECK(failures() == 2);
  WriteFile(gate, "");
  auto code = job.Wait(std::chrono::seconds(600));
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  const json epoch = Events(ReadJsonLines(metrics), "epoch").at(0);
  CHECK(epoch["test_samples"] == 10000);
  CHECK(epoch["samples"] == 60000);
  CHECK(epoch["sample_set_ok"] == true);
  // The deaths came after training: the same weights, the same figures
  // (the loss summed over the ranges in another order).
  const json f = Final(metrics);
  CHECK(Digest(f) == Digest(clean));
  CHECK(f["test_accuracy"] == clean["test_accuracy"]);
  CHECK(std::abs(f["test_loss"].get<double>() / clean["test_loss"].get<double>() - 1) < 1e-12);
}

TEST_CASE("A worker paused past the timeout is dropped and its late pushes are not applied",
          "[e2e][fault]") {
  TempDir dir;
  const json clean = CleanFinal(kFashionJob, dir.File("clean"), kThreeWorkers);
  const std::string metrics = dir.File("m");
  std::vector<std::string> argv = {kPstrain, "train", kFashionJob, "--metrics", metrics};
  argv.insert(argv.end(), kThreeWorkers.begin(), kThreeWorkers.end());
  Process job(argv);
  REQUIRE(WaitForLine(metrics, job, [](const json& l) { return l["event"] == "epoch"; }));
  const int victim = WorkerPid(metrics, 2);
  REQUIRE(::kill(victim, SIGSTOP) == 0);
  REQUIRE(WaitForLine(metrics, job, [](const json& l) { return l["event"] == "node_failed"; }));
  REQUIRE(::kill(victim, SIGCONT) == 0);
  auto code = job.Wait(std::chrono::seconds(600));
  INFO(job.Stderr());
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  const json failed = Events(ReadJsonLines(metrics), "node_failed").at(0);
  CHECK(failed["id"] == 2);
  CHECK_THAT(failed["reason"].get<std::string>(), Catch::Contains("silent"));
  CHECK(failed["cause"] == "stopped");  // read off the process table
  CheckEveryEpochComplete(metrics, 4, 60000);
  CHECK(Digest(Final(metrics)) == Digest(clean));
  // Resumed, it was told it is no longer a member, by a server or the coordinator.
  CHECK_THAT(job.Stderr(),
             Catch::Contains("not a live member") || Catch::Contains("declared dead"));
}

TEST_CASE("Under pstrain-mpirun, kill -9 of a worker rank: the job finishes", "[e2e][fault][mpi]") {
  TempDir dir;
  const std::string metrics = dir.File("m");
  Process job({kSourceDir + "/launch/pstrain-mpirun", "--allow-run-as-root", "--oversubscribe",
               "-np", "6", kPstrain, "train", kFashionJob, "--servers", "2", "--epochs", "3",
               "--progress", "never", "--metrics", metrics});
  REQUIRE(WaitForLine(metrics, job, [](const json& l) { return l["event"] == "epoch"; }));
  const int victim = WorkerPid(metrics, 1);
  REQUIRE(victim > 0);
  REQUIRE(::kill(victim, SIGKILL) == 0);
  auto code = job.Wait(std::chrono::seconds(600));
  INFO(job.Stdout() << job.Stderr());
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  CheckEveryEpochComplete(metrics, 3, 60000);
  const json failed = Events(ReadJsonLines(metrics), "node_failed").at(0);
  CHECK(failed["id"] == 1);
  INFO("detected after " << failed["detect_seconds"] << " s");
  CHECK_THAT(failed["reason"].get<std::string>(), !Catch::Contains("silent"));
}

// A client that registers in a dead worker's place and, never Ready, sends
// the reports of work it was not given: every epoch's epochDone under the
// id of worker 0, evalDone of test rows it does not hold, and a server's
// statsReply; each repeated.
void SendForgedReports(ControlChannel& c, int epochs) {
  auto send = [&c](const std::function<void(msg::Control::Builder)>& fill) {
    capnp::MallocMessageBuilder m;
    fill(m.initRoot<msg::Control>());
    REQUIRE(c.Send(m).ok());
  };
  for (int e = 0; e < epochs; ++e) {
    send([e](msg::Control::Builder b) {
      auto d = b.initEpochDone();
      d.setNodeId(0);
      d.setEpoch(e);
      d.setSamples(30000);
      d.setLossSum(1.0);
      d.setCorrect(29999);
    });
    send([e](msg::Control::Builder b) {
      auto v = b.initEvalDone();
      v.setEpoch(e);
      v.setCount(5000);
      v.setCorrect(5000);
    });
  }
  send([](msg::Control::Builder b) { b.initStatsReply().setNodeId(0); });
}

std::string ProcessName(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/comm");
  std::string name;
  std::getline(in, name);
  return name;
}

TEST_CASE("Every process of a running job is named pstrain in the process table", "[e2e][fault]") {
  TempDir dir;
  const std::string metrics = dir.File("m");
  Process job(
      TrainArgv(kFashionJob, metrics,
                {"--servers", "2", "--workers", "2", "--epochs", "2", "--progress", "never"}));
  REQUIRE(WaitForLine(metrics, job, [](const json& l) { return l["event"] == "membership"; }));
  const json m = Events(ReadJsonLines(metrics), "membership").at(0);
  CHECK(ProcessName(job.pid()) == "pstrain");
  for (const char* role : {"servers", "workers"}) {
    for (const json& n : m[role]) {
      INFO(role << " " << n["id"]);
      CHECK(ProcessName(n["pid"].get<int>()) == "pstrain");
    }
  }
  auto code = job.Wait(std::chrono::seconds(600));
  REQUIRE(code.has_value());
  CHECK(*code == 0);
}

TEST_CASE("A server stopped past the timeout fails over and is killed, not waited for",
          "[e2e][fault]") {
  TempDir dir;
  const std::vector<std::string> flags = {
      "--servers",  "2",    "--workers", "2", "--epochs", "3", "--set", "cluster.replication=2",
      "--progress", "never"};
  const json clean = CleanFinal(kFashionJob, dir.File("clean"), flags);
  const std::string metrics = dir.File("m");
  Process job(TrainArgv(kFashionJob, metrics, flags));
  DumpOnExit dump(metrics, &job);
  REQUIRE(WaitForLine(metrics, job, [](const json& l) { return l["event"] == "epoch"; }));
  const int victim = NodePid(metrics, "servers", 0);
  REQUIRE(::kill(victim, SIGSTOP) == 0);
  REQUIRE(WaitForLine(metrics, job, [](const json& l) { return l["event"] == "node_failed"; }));
  auto code = job.Wait(std::chrono::seconds(600));
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  const json failed = Events(ReadJsonLines(metrics), "node_failed").at(0);
  CHECK(failed["role"] == "server");
  CHECK_THAT(failed["reason"].get<std::string>(), Catch::Contains("silent"));
  CHECK(failed["cause"] == "stopped");
  CheckEveryEpochComplete(metrics, 3, 60000);
  CHECK(Digest(Final(metrics)) == Digest(clean));
  CHECK_THAT(job.Stderr(), Catch::Contains("server 0 (pid " + std::to_string(victim) +
                                           ") was declared dead and is still there (stopped?): "
                                           "killed"));
  CHECK(::kill(victim, 0) != 0);  // gone
}

// After the job's first epoch: kill -9 worker `victim`, wait until the
// coordinator has noticed, and register a stranger (never Ready) in its
// place. Returns the stranger's control channel.
std::unique_ptr<ControlChannel> StrangerInPlaceOf(int victim, const std::string& metrics,
                                                  Process& job, ZmqContext& ctx) {
  REQUIRE(WaitForLine(metrics, job, [](const json& l) { return l["event"] == "epoch"; }));
  const std::string coordinator = Events(ReadJsonLines(metrics), "membership").at(0)["coordinator"];
  REQUIRE(::kill(WorkerPid(metrics, victim), SIGKILL) == 0);
  REQUIRE(WaitForLine(metrics, job, [](const json& l) { return l["event"] == "node_failed"; }));
  auto channel = ControlChannel::Connect(ctx, coordinator);
  REQUIRE(channel.ok());
  REQUIRE((*channel)
              ->Join(msg::Role::WORKER, -1, NewIncarnation(), "", std::chrono::seconds(120))
              .ok());
  return std::move(*channel);
}

TEST_CASE("Forged and repeated reports from a registered stranger change nothing",
          "[e2e][fault][trust]") {
  TempDir dir;
  const std::vector<std::string> flags = ThreeWorkers(3);
  const json clean = CleanFinal(kFashionJob, dir.File("clean"), flags);
  const std::string metrics = dir.File("m");
  Process job(TrainArgv(kFashionJob, metrics, flags));
  DumpOnExit dump(metrics, &job);
  ZmqContext ctx;
  auto channel = StrangerInPlaceOf(1, metrics, job, ctx);
  // Reports until the job ends, answering heartbeats so it stays registered.
  int refusals = 0;
  while (job.Running()) {
    SendForgedReports(*channel, 3);
    (void)channel->Drain([&refusals](msg::Control::Reader c) {
      if (c.which() == msg::Control::ERROR) ++refusals;
      return OkStatus();
    });
    (void)channel->Tick();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  // Each refusal was answered.
  CHECK(refusals > 0);
  auto code = job.Wait(std::chrono::seconds(600));
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  CheckEveryEpochComplete(metrics, 3, 60000);
  const auto epochs = Events(ReadJsonLines(metrics), "epoch");
  const auto clean_epochs = Events(ReadJsonLines(dir.File("clean")), "epoch");
  // The epoch the worker died in: its losses of the steps before are lost
  // with it, so that epoch's training loss is not the clean one.
  size_t death_epoch = 0;
  for (const json& l : ReadJsonLines(metrics)) {
    if (l["event"] == "node_failed") break;
    if (l["event"] == "epoch") ++death_epoch;
  }
  REQUIRE(death_epoch + 1 < epochs.size());
  // The same weights, so the same losses, up to the order in which fewer
  // workers sum them (a forged report moves them by far more).
  for (size_t e = 0; e < epochs.size(); ++e) {
    INFO("epoch " << e + 1);
    if (e != death_epoch) {
      CHECK(epochs[e]["train_loss"].get<double>() ==
            Approx(clean_epochs[e]["train_loss"].get<double>()).epsilon(1e-6));
    }
    CHECK(epochs[e]["test_loss"].get<double>() ==
          Approx(clean_epochs[e]["test_loss"].get<double>()).epsilon(1e-6));
    CHECK(epochs[e]["test_samples"] == 10000);
  }
  CHECK(Digest(Final(metrics)) == Digest(clean));
  CHECK_THAT(job.Stderr(), Catch::Contains("control: refused from worker"));
  CHECK_THAT(job.Stderr(), Catch::Contains("a statsReply message, which workers never send"));
}

TEST_CASE("Strangers registering while a job starts neither take its places nor abort it",
          "[e2e][fault][trust]") {
  TempDir dir;
  const std::string metrics = dir.File("m");
  Process job(
      TrainArgv(kFashionJob, metrics,
                {"--servers", "1", "--workers", "2", "--epochs", "2", "--progress", "never"}));
  DumpOnExit dump(metrics, &job);
  // The address, as soon as the launcher prints it (its own nodes are just
  // being started then).
  std::string coordinator;
  const auto until = std::chrono::steady_clock::now() + std::chrono::minutes(5);
  while (coordinator.empty() && job.Running() && std::chrono::steady_clock::now() < until) {
    const std::string out = job.Stdout();
    const size_t at = out.find("coordinator at ");
    const size_t end = out.find(',', at);
    if (at != std::string::npos && end != std::string::npos) {
      coordinator = out.substr(at + 15, end - at - 15);
    }
  }
  REQUIRE(!coordinator.empty());
  ZmqContext ctx;
  // One registers and goes at once, before any answer can come.
  {
    auto raw = Socket::Create(ctx, SocketKind::kDealer, SocketOptions{});
    REQUIRE(raw.ok());
    REQUIRE((*raw)->Connect(coordinator).ok());
    capnp::MallocMessageBuilder m;
    auto r = m.initRoot<msg::Control>().initRegister();
    r.setRole(msg::Role::WORKER);
    r.setRequestedId(0);
    r.setIncarnation(7);
    Message frames;
    frames.push_back(EncodeFrame(m));
    REQUIRE((*raw)->Send(frames).ok());
  }
  // Another asks for worker 0's place and waits for the answer.
  auto stranger = ControlChannel::Connect(ctx, coordinator);
  REQUIRE(stranger.ok());
  auto joined =
      (*stranger)->Join(msg::Role::WORKER, 0, NewIncarnation(), "", std::chrono::seconds(120));
  REQUIRE_FALSE(joined.ok());
  INFO(joined.status().message());
  CHECK_THAT(joined.status().message(),
             Catch::Contains("admits only the nodes its launcher started") ||
                 Catch::Contains("already has its 2 workers"));
  auto code = job.Wait(std::chrono::seconds(600));
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  CheckEveryEpochComplete(metrics, 2, 60000);
  // The job's workers are the launcher's own children.
  const json first = Events(ReadJsonLines(metrics), "membership").at(0);
  REQUIRE(first["workers"].size() == 2);
  for (const json& w : first["workers"]) CHECK(w["pid"] != ::getpid());
}

TEST_CASE("A worker that joins and never becomes ready is dropped, and a real one then joins",
          "[e2e][fault][trust]") {
  TempDir dir;
  const std::string metrics = dir.File("m");
  Process job(TrainArgv(kFashionJob, metrics,
                        {"--servers", "1", "--workers", "2", "--epochs", "10", "--progress",
                         "never", "--set", "cluster.start_timeout_s=10"}));
  DumpOnExit dump(metrics, &job);
  // A stranger takes the free place, answers heartbeats and never says Ready.
  ZmqContext ctx;
  auto stranger = StrangerInPlaceOf(0, metrics, job, ctx);
  const std::string coordinator = Events(ReadJsonLines(metrics), "membership").at(0)["coordinator"];
  bool dropped = false;
  while (job.Running() && !dropped) {
    (void)stranger->Drain([](msg::Control::Reader) { return OkStatus(); });
    (void)stranger->Tick();
    for (const json& l : ReadJsonLines(metrics)) dropped = dropped || l["event"] == "node_dropped";
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  REQUIRE(dropped);
  const json drop = Events(ReadJsonLines(metrics), "node_dropped").at(0);
  CHECK_THAT(drop["reason"].get<std::string>(),
             Catch::Contains("not ready 10 s after it registered"));
  // Its place is free again: a real worker joins and trains.
  Process replacement({kPstrain, "worker", "--join", coordinator});
  REQUIRE(WaitForLine(metrics, job, [&](const json& l) {
    return l["event"] == "node_joined" && l["pid"] == replacement.pid();
  }));
  auto code = job.Wait(std::chrono::seconds(600));
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  CHECK(replacement.Wait(std::chrono::seconds(60)) == 0);
  CHECK(Events(ReadJsonLines(metrics), "node_joined").size() == 2);
  CheckEveryEpochComplete(metrics, 10, 60000);
}

TEST_CASE(
    "A replacement worker started by hand joins a running job and the job completes every epoch",
    "[e2e][fault]") {
  TempDir dir;
  const std::string metrics = dir.File("m");
  Process job({kPstrain, "train", kFashionJob, "--servers", "1", "--workers", "2", "--epochs", "4",
               "--progress", "never", "--metrics", metrics});
  REQUIRE(WaitForLine(metrics, job, [](const json& l) { return l["event"] == "membership"; }));
  const std::string coordinator = Events(ReadJsonLines(metrics), "membership").at(0)["coordinator"];
  REQUIRE(::kill(WorkerPid(metrics, 0), SIGKILL) == 0);
  REQUIRE(WaitForLine(metrics, job, [](const json& l) { return l["event"] == "node_failed"; }));
  Process replacement({kPstrain, "worker", "--join", coordinator});
  REQUIRE(WaitForLine(metrics, job, [](const json& l) { return l["event"] == "node_joined"; }));
  auto code = job.Wait(std::chrono::seconds(600));
  INFO(job.Stderr() << replacement.Stderr());
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  CHECK(replacement.Wait(std::chrono::seconds(60)) == 0);
  CheckEveryEpochComplete(metrics, 4, 60000);
}

TEST_CASE(
    "With --max-restarts the launcher starts killed workers again: the job ends at full "
    "strength with the fault-free weights",
    "[e2e][fault]") {
  TempDir dir;
  const std::vector<std::string> flags = {"--servers", "1", "--workers",  "2",
                                          "--epochs",  "5", "--progress", "never"};
  const json clean = CleanFinal(kFashionJob, dir.File("clean"), flags);
  const std::string metrics = dir.File("m");
  std::vector<std::string> argv = TrainArgv(kFashionJob, metrics, flags);
  argv.insert(argv.end(), {"--max-restarts", "2"});
  Process job(argv);
  DumpOnExit dump(metrics, &job);
  auto count = [&](const char* event) { return Events(ReadJsonLines(metrics), event).size(); };
  // Worker 0 after epoch 1, then the process started in its place after
  // epoch 3.
  for (int round = 1; round <= 2; ++round) {
    REQUIRE(WaitForLine(metrics, job, [&](const json& l) {
      return l["event"] == "epoch" && l["epoch"] == 2 * round - 1;
    }));
    const auto restarted = Events(ReadJsonLines(metrics), "node_restarted");
    const int victim = round == 1 ? WorkerPid(metrics, 0) : restarted.at(0)["pid"].get<int>();
    REQUIRE(victim > 0);
    REQUIRE(::kill(victim, SIGKILL) == 0);
    REQUIRE(WaitForLine(metrics, job, [&](const json&) {
      return count("node_joined") == static_cast<size_t>(round);
    }));
  }
  auto code = job.Wait(std::chrono::seconds(600));
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  const auto restarted = Events(ReadJsonLines(metrics), "node_restarted");
  REQUIRE(restarted.size() == 2);
  CHECK(restarted[0]["exit_code"] == 128 + SIGKILL);
  CHECK(restarted[1]["restart"] == 2);
  CHECK(count("node_failed") == 2);
  CheckEveryEpochComplete(metrics, 5, 60000);
  // Each epoch was evaluated with its weights, by the processes started
  // during it too: the fault-free run's test figures.
  const auto epochs = Events(ReadJsonLines(metrics), "epoch");
  const auto clean_epochs = Events(ReadJsonLines(dir.File("clean")), "epoch");
  REQUIRE(clean_epochs.size() == epochs.size());
  for (size_t i = 0; i < epochs.size(); ++i) {
    INFO("epoch " << i + 1);
    CHECK(epochs[i]["test_accuracy"] == clean_epochs[i]["test_accuracy"]);
    CHECK(epochs[i]["test_samples"] == 10000);
  }
  // Both places filled again at the end.
  const json last = Events(ReadJsonLines(metrics), "membership").back();
  CHECK(last["workers"].size() == 2);
  CHECK(Digest(Final(metrics)) == Digest(clean));
  CHECK_THAT(job.Stderr(), Catch::Contains("started again as pid"));
}

}  // namespace
}  // namespace pstrain::testing

namespace pstrain::testing {
namespace {

TEST_CASE("kill -9 of every process mid-run, then --resume: the result of the uninterrupted run",
          "[e2e][fault][checkpoint]") {
  TempDir dir;
  const std::vector<std::string> flags = {"--servers", "2", "--workers",  "2",
                                          "--epochs",  "4", "--progress", "never"};
  const json clean = CleanFinal(kFashionJob, dir.File("clean"), flags);

  const std::string metrics = dir.File("m"), ckpt = dir.File("ckpt");
  std::vector<std::string> argv = {kPstrain,           "train", kFashionJob, "--metrics", metrics,
                                   "--checkpoint-dir", ckpt};
  argv.insert(argv.end(), flags.begin(), flags.end());
  {
    Process job(argv);
    REQUIRE(WaitForLine(metrics, job, [](const json& l) {
      return l["event"] == "checkpoint" && l["epochs_done"] == 2;
    }));
    // The whole job at once: launcher, servers and workers.
    REQUIRE(::kill(-job.pid(), SIGKILL) == 0);
    REQUIRE(job.Wait(std::chrono::seconds(60)).has_value());
  }
  // Written by servers that keep each range in pieces (cluster.overlap),
  // read by servers that keep it whole: the same files.
  argv.push_back("--resume");
  argv.insert(argv.end(), {"--set", "cluster.overlap=false"});
  RunResult r = Run(argv);
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("resuming from " + ckpt + "/ckpt-00000"));
  const json resumed = Final(metrics);
  CHECK(Digest(resumed) == Digest(clean));
  CHECK(resumed["test_loss"] == clean["test_loss"]);
  const auto events = Events(ReadJsonLines(metrics), "resumed");
  REQUIRE(events.size() == 1);
  CHECK(events[0]["epochs_done"].get<int>() >= 2);
}

// `pstrain train` of the Fashion-MNIST job with a checkpoint every 50 steps.
std::vector<std::string> EveryFiftySteps(const std::string& metrics, const std::string& ckpt,
                                         const std::vector<std::string>& flags) {
  std::vector<std::string> argv = {kPstrain,    "train", kFashionJob,
                                   "--metrics", metrics, "--checkpoint-dir",
                                   ckpt,        "--set", "checkpoint.every_steps=50"};
  argv.insert(argv.end(), flags.begin(), flags.end());
  return argv;
}

// Waits for the checkpoint after `step` (or a later one) of epoch `epochs_done` + 1.
bool WaitForCut(const std::string& metrics, Process& job, int epochs_done, int64_t step) {
  return WaitForLine(metrics, job, [&](const json& l) {
    return l["event"] == "checkpoint" && l["epochs_done"] == epochs_done && l.contains("step") &&
           l["step"].get<int64_t>() >= step;
  });
}

// Checkpoints every 50 steps: kill -9 of every process mid-epoch, then
// --resume gives the uninterrupted run's weights with under 50 steps redone.
TEST_CASE("Resume mid-epoch from checkpoints taken every 50 steps", "[e2e][fault][checkpoint]") {
  TempDir dir;
  const std::vector<std::string> flags = {"--servers", "2", "--workers",  "2",
                                          "--epochs",  "2", "--progress", "never"};
  const json clean = CleanFinal(kFashionJob, dir.File("clean"), flags);

  const std::string metrics = dir.File("m"), ckpt = dir.File("ckpt");
  std::vector<std::string> argv = EveryFiftySteps(metrics, ckpt, flags);
  {
    Process job(argv);
    DumpOnExit dump(metrics, &job);
    REQUIRE(WaitForCut(metrics, job, 1, 200));
    REQUIRE(::kill(-job.pid(), SIGKILL) == 0);
    REQUIRE(job.Wait(std::chrono::seconds(60)).has_value());
  }
  // Taken every 50 steps of each epoch, while training went on.
  std::vector<int64_t> steps;
  int64_t newest_clock = 0;
  for (const json& l : Events(ReadJsonLines(metrics), "checkpoint")) {
    if (l["epochs_done"] != 1 || !l.contains("step")) continue;
    steps.push_back(l["step"].get<int64_t>());
    newest_clock = std::max(newest_clock, l["clock"].get<int64_t>());
  }
  REQUIRE(steps.size() >= 4);
  for (size_t i = 0; i < steps.size(); ++i) CHECK(steps[i] == 50 * static_cast<int64_t>(i + 1));

  argv.push_back("--resume");
  RunResult r = Run(argv);
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("steps of epoch 2)"));
  const json resumed = Final(metrics);
  CHECK(Digest(resumed) == Digest(clean));
  CHECK(resumed["test_loss"] == clean["test_loss"]);
  const auto events = Events(ReadJsonLines(metrics), "resumed");
  REQUIRE(events.size() == 1);
  // From the newest checkpoint written before the kill (or one the kill
  // came too soon to log): what is done again is less than 50 steps.
  CHECK(events[0]["epochs_done"] == 1);
  CHECK(events[0]["clock"].get<int64_t>() >= newest_clock);
  CHECK(events[0]["step"].get<int64_t>() % 50 == 0);
  // The resumed epoch still applied every sample exactly once.
  const auto epochs = Events(ReadJsonLines(metrics), "epoch");
  REQUIRE(!epochs.empty());
  const json& last = epochs.back();
  CHECK(last["epoch"] == 2);
  CHECK(last["resumed_at_step"] == events[0]["step"]);
  CHECK(last["samples"] == 60000);
  CHECK(last["sample_set_ok"] == true);
}

TEST_CASE("Resuming skips a damaged or mixed checkpoint, says why, and uses the previous one",
          "[e2e][fault][checkpoint]") {
  TempDir dir;
  const std::string ckpt = dir.File("ckpt");
  std::vector<std::string> argv = {kPstrain, "train",      kMnistJob,    "--servers",
                                   "1",      "--workers",  "1",          "--epochs",
                                   "3",      "--progress", "never",      "--checkpoint-dir",
                                   ckpt,     "--metrics",  dir.File("m")};
  REQUIRE(Run(argv).code == 0);
  const json clean = Final(dir.File("m"));
  // The newest (after epoch 3) and its server file.
  const std::string newest = ckpt + "/ckpt-000003";
  std::string name;
  for (const auto& e : std::filesystem::directory_iterator(newest)) {
    if (e.path().extension() == ".bin") name = e.path().filename().string();
  }
  REQUIRE_FALSE(name.empty());
  std::string why;
  SECTION("a flipped bit") {
    std::string bytes = ReadFile(newest + "/" + name);
    bytes[bytes.size() / 2] ^= 0x04;
    WriteFile(newest + "/" + name, bytes);
    why = "checksum mismatch";
  }
  SECTION("a sound file of the checkpoint before, copied in") {
    std::filesystem::copy_file(ckpt + "/ckpt-000002/" + name, newest + "/" + name,
                               std::filesystem::copy_options::overwrite_existing);
    why = newest + "/" + name + ": is not the file this checkpoint's manifest lists";
    for (const char* tool : {"inspect", "eval"}) {
      RunResult t = Run({kPstrain, tool, newest});
      INFO(tool << ": " << t.out << t.err);
      CHECK(t.code != 0);
      CHECK_THAT(t.out + t.err, Catch::Contains(why));
    }
  }
  argv.back() = dir.File("resumed");  // the metrics file
  argv.push_back("--resume");
  RunResult r = Run(argv);
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("skipped " + newest + ": "));
  CHECK_THAT(r.out, Catch::Contains(why));
  CHECK_THAT(r.out, Catch::Contains("resuming from " + ckpt + "/ckpt-000002"));
  // Epoch 3 again from the checkpoint after epoch 2: the same weights.
  CHECK(Digest(Final(dir.File("resumed"))) == Digest(clean));
}

TEST_CASE("Resume after a failover reads the ranges the promoted server wrote",
          "[e2e][fault][checkpoint]") {
  TempDir dir;
  const std::vector<std::string> flags = {"--servers",  "2",    "--workers",     "2",
                                          "--epochs",   "4",    "--replication", "2",
                                          "--progress", "never"};
  const json clean = CleanFinal(kFashionJob, dir.File("clean"), flags);
  const std::string metrics = dir.File("m"), ckpt = dir.File("ckpt");
  std::vector<std::string> argv = TrainArgv(kFashionJob, metrics, flags);
  argv.insert(argv.end(), {"--checkpoint-dir", ckpt});
  {
    Process job(argv);
    DumpOnExit dump(metrics, &job);
    REQUIRE(WaitForLine(metrics, job, [](const json& l) {
      return l["event"] == "checkpoint" && l["epochs_done"] == 1;
    }));
    const int first = NodePid(metrics, "servers", 0);
    REQUIRE(::kill(first, SIGKILL) == 0);
    REQUIRE(WaitForLine(metrics, job, [](const json& l) {
      return l["event"] == "checkpoint" && l["epochs_done"] == 2;
    }));
    // Server 1 now holds every range, the ones it took over without a
    // backup: its death stops the job.
    REQUIRE(::kill(NodePid(metrics, "servers", 1), SIGKILL) == 0);
    auto code = job.Wait(std::chrono::seconds(600));
    REQUIRE(code.has_value());
    CHECK(*code != 0);
    CHECK_THAT(job.Stderr(),
               Catch::Contains("have no replica left: resume from " + ckpt + "/ckpt-00000"));
  }
  // The newest checkpoint holds server 1's files for server 0's range.
  bool taken_over = false;
  for (const auto& e : std::filesystem::directory_iterator(ckpt + "/ckpt-000002")) {
    taken_over =
        taken_over || e.path().filename().string().rfind("server-1-0000000000000000", 0) == 0;
  }
  CHECK(taken_over);
  argv.push_back("--resume");
  RunResult r = Run(argv);
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("resuming from " + ckpt + "/ckpt-00000"));
  CHECK(Digest(Final(metrics)) == Digest(clean));
}

TEST_CASE("A server that cannot restore its checkpoint fails the start at once, saying why",
          "[e2e][fault][checkpoint]") {
  TempDir dir;
  const std::string ckpt = dir.File("ckpt");
  std::vector<std::string> argv = {kPstrain, "train",      kMnistJob,    "--servers",
                                   "1",      "--workers",  "1",          "--epochs",
                                   "1",      "--progress", "never",      "--checkpoint-dir",
                                   ckpt,     "--metrics",  dir.File("m")};
  REQUIRE(Run(argv).code == 0);
  // Momentum's state does not fit Adam's: the server refuses the file. The
  // launcher sees it exit; nobody waits cluster.start_timeout_s for it.
  argv.insert(argv.end(), {"--resume", "--epochs", "2", "--set", "optimizer.type=\"adam\""});
  RunResult r = Run(argv);
  INFO(r.out << r.err);
  CHECK(r.code != 0);
  CHECK_THAT(r.err, Catch::Contains("was optimizer.type changed?"));
  CHECK_THAT(r.err, Catch::Contains("server 0 (pid "));
  CHECK_THAT(r.err, Catch::Contains("exited before it was ready; its log says why (it was "
                                    "restoring " +
                                    ckpt + "/ckpt-000001)"));
  CHECK_THAT(r.err, !Catch::Contains("waited"));
}

TEST_CASE("A server death without a replica or checkpoints says the job must start over",
          "[e2e][fault][checkpoint]") {
  TempDir dir;
  const std::string metrics = dir.File("m");
  Process job(
      TrainArgv(kMnistJob, metrics,
                {"--servers", "1", "--workers", "1", "--epochs", "200", "--progress", "never"}));
  DumpOnExit dump(metrics, &job);
  REQUIRE(WaitForLine(metrics, job, [](const json& l) { return l["event"] == "epoch"; }));
  REQUIRE(::kill(NodePid(metrics, "servers", 0), SIGKILL) == 0);
  auto code = job.Wait(std::chrono::seconds(600));
  REQUIRE(code.has_value());
  CHECK(*code != 0);
  CHECK_THAT(job.Stderr(), Catch::Contains("this job takes no checkpoints (checkpoint.dir is not "
                                           "set), so it must start over"));
  CHECK_THAT(job.Stderr(), !Catch::Contains("--resume"));
}

TEST_CASE("A full disk stops the job with nothing half-written left, and keep makes room",
          "[e2e][fault][checkpoint]") {
  TempDir dir;
  const std::vector<std::string> flags = {"--servers", "1", "--workers",  "1",
                                          "--epochs",  "4", "--progress", "never"};
  // The size of one checkpoint, from a run on the ordinary disk.
  const json clean = CleanFinal(kMnistJob, dir.File("clean"),
                                {"--servers", "1", "--workers", "1", "--epochs", "4", "--progress",
                                 "never", "--checkpoint-dir", dir.File("sized")});
  uintmax_t one = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.File("sized") + "/ckpt-000004")) {
    one += std::filesystem::file_size(e.path());
  }
  REQUIRE(one > 0);
  // A small file system of our own, in a mount namespace of our own.
  const std::string disk = dir.File("disk");
  std::filesystem::create_directories(disk);
  auto train = [&](const std::string& metrics, const std::string& extra) {
    std::string cmd = kPstrain + " train " + kMnistJob + " --metrics " + metrics +
                      " --checkpoint-dir " + disk + "/ckpt";
    for (const std::string& f : flags) cmd += " " + f;
    return cmd + " " + extra;
  };
  const auto kib = [](uintmax_t bytes) { return std::to_string(bytes / 1024 + 64) + "k"; };
  // 1: room for 2.5 checkpoints and checkpoint.keep = 2: the oldest goes
  // before the third is written. 2: room for 1.5 with keep = 1: the second
  // cannot be written; the job stops and leaves no partial files. 3: more
  // room, --resume: the fault-free weights.
  const std::string script =
      "set -u\n"
      "mount -t tmpfs -o size=" +
      kib(one * 5 / 2) + " pstrain-test " + disk + " || exit 77\n" +
      train(dir.File("keep"), "--set checkpoint.keep=2") + " > " + dir.File("keep.out") +
      " 2>&1; echo keep $? > " + dir.File("codes") + "\n" + "ls -R " + disk + " > " +
      dir.File("keep.ls") + "\n" + "rm -rf " + disk + "/ckpt\n" +
      "mount -o remount,size=" + kib(one * 3 / 2) + " " + disk + "\n" +
      train(dir.File("full"), "--set checkpoint.keep=1") + " > " + dir.File("full.out") +
      " 2>&1; echo full $? >> " + dir.File("codes") + "\n" + "ls -R " + disk + " > " +
      dir.File("full.ls") + "\n" + "mount -o remount,size=" + kib(one * 4) + " " + disk + "\n" +
      train(dir.File("resumed"), "--set checkpoint.keep=1 --resume") + " > " +
      dir.File("resumed.out") + " 2>&1; echo resumed $? >> " + dir.File("codes") + "\n";
  RunResult r =
      Run({"/usr/bin/unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script});
  if (r.code == 77) PSTRAIN_SKIP("this kernel does not let the test mount a tmpfs: " << r.err);
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  const std::string codes = ReadFile(dir.File("codes"));
  INFO(codes << "--- keep\n"
             << ReadFile(dir.File("keep.out")) << ReadFile(dir.File("keep.ls")) << "--- full\n"
             << ReadFile(dir.File("full.out")) << ReadFile(dir.File("full.ls")) << "--- resumed\n"
             << ReadFile(dir.File("resumed.out")));
  CHECK_THAT(codes, Catch::Contains("keep 0"));
  CHECK(Digest(Final(dir.File("keep"))) == Digest(clean));
  CHECK_THAT(ReadFile(dir.File("full.out")), Catch::Contains("No space left on device"));
  CHECK_THAT(ReadFile(dir.File("full.out")),
             Catch::Contains("its files were removed; --resume starts from " + disk +
                             "/ckpt/ckpt-000001"));
  CHECK_THAT(codes, !Catch::Contains("full 0"));
  CHECK_THAT(ReadFile(dir.File("full.ls")), !Catch::Contains(".tmp"));
  CHECK_THAT(ReadFile(dir.File("full.ls")), !Catch::Contains("ckpt-000002"));
  CHECK_THAT(codes, Catch::Contains("resumed 0"));
  CHECK_THAT(ReadFile(dir.File("resumed.out")),
             Catch::Contains("resuming from " + disk + "/ckpt/ckpt-000001"));
  CHECK(Digest(Final(dir.File("resumed"))) == Digest(clean));
}

}  // namespace
}  // namespace pstrain::testing

namespace pstrain::testing {
namespace {

TEST_CASE("kill -9 of a server with replication 2 mid-run loses no update", "[e2e][fault]") {
  TempDir dir;
  const std::vector<std::string> flags = {"--servers",  "2",    "--workers",     "2",
                                          "--epochs",   "3",    "--replication", "2",
                                          "--progress", "never"};
  const json clean = CleanFinal(kFashionJob, dir.File("clean"), flags);

  const std::string metrics = dir.File("m");
  std::vector<std::string> argv = {kPstrain, "train", kFashionJob, "--metrics", metrics};
  argv.insert(argv.end(), flags.begin(), flags.end());
  Process job(argv);
  REQUIRE(WaitForLine(metrics, job, [](const json& l) { return l["event"] == "epoch"; }));
  int victim = -1;
  for (const json& m : Events(ReadJsonLines(metrics), "membership"))
    victim = m["servers"][0]["pid"];
  REQUIRE(victim > 0);
  REQUIRE(::kill(victim, SIGKILL) == 0);
  auto code = job.Wait(std::chrono::seconds(600));
  INFO(job.Stderr());
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  CheckEveryEpochComplete(metrics, 3, 60000);
  const json failed = Events(ReadJsonLines(metrics), "node_failed").at(0);
  CHECK(failed["role"] == "server");
  INFO("detected after " << failed["detect_seconds"] << " s");
  CHECK_THAT(failed["reason"].get<std::string>(), !Catch::Contains("silent"));
  CHECK((failed["cause"] == "exited" || failed["cause"] == "connection_closed"));
  const auto recovered = Events(ReadJsonLines(metrics), "recovered");
  REQUIRE(recovered.size() == 1);
  CHECK(recovered[0]["role"] == "server");
  const json f = Final(metrics);
  CHECK(Digest(f) == Digest(clean));
  CHECK(f["test_loss"] == clean["test_loss"]);
}

TEST_CASE("Checkpoints by time are taken within epochs, and --resume continues from the last",
          "[e2e][checkpoint]") {
  TempDir dir;
  const std::vector<std::string> flags = {"--servers", "2", "--workers",  "2",
                                          "--epochs",  "3", "--progress", "never"};
  const json clean = CleanFinal(kFashionJob, dir.File("clean"), flags);
  const std::string metrics = dir.File("m"), ckpt = dir.File("ckpt");
  // No checkpoints between epochs: the newest is one taken by time.
  std::vector<std::string> argv = {kPstrain,
                                   "train",
                                   kFashionJob,
                                   "--metrics",
                                   metrics,
                                   "--checkpoint-dir",
                                   ckpt,
                                   "--set",
                                   "checkpoint.every_seconds=0.2",
                                   "--set",
                                   "checkpoint.every_epochs=1000"};
  argv.insert(argv.end(), flags.begin(), flags.end());
  RunResult r = Run(argv);
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  CHECK(Digest(Final(metrics)) == Digest(clean));
  int64_t cuts = 0;
  for (const json& l : Events(ReadJsonLines(metrics), "checkpoint")) {
    REQUIRE(l.contains("step"));
    CHECK(l["step"].get<int64_t>() > 0);
    ++cuts;
  }
  CHECK(cuts >= 2);
  // The job resumed from its last cut ends where it ended.
  argv.push_back("--resume");
  r = Run(argv);
  REQUIRE(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("steps of epoch 3)"));
  const auto finals = Events(ReadJsonLines(metrics), "final");  // appended to
  REQUIRE(finals.size() == 2);
  CHECK(Digest(finals.back()) == Digest(clean));
}

TEST_CASE("A server death abandons the checkpoints in flight, and the next epoch takes its own",
          "[e2e][fault][checkpoint]") {
  TempDir dir;
  const std::vector<std::string> flags = {"--servers",  "2",    "--workers",     "2",
                                          "--epochs",   "3",    "--replication", "2",
                                          "--progress", "never"};
  const json clean = CleanFinal(kFashionJob, dir.File("clean"), flags);

  const std::string metrics = dir.File("m"), ckpt = dir.File("ckpt");
  Process job(EveryFiftySteps(metrics, ckpt, flags));
  DumpOnExit dump(metrics, &job);
  REQUIRE(WaitForCut(metrics, job, 1, 100));
  const int victim = NodePid(metrics, "servers", 0);
  REQUIRE(victim > 0);
  REQUIRE(::kill(victim, SIGKILL) == 0);
  auto code = job.Wait(std::chrono::seconds(600));
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  CheckEveryEpochComplete(metrics, 3, 60000);
  const json f = Final(metrics);
  CHECK(Digest(f) == Digest(clean));
  // The last epoch, on the one server left, took every one of its cuts.
  int64_t last_epoch_cuts = 0;
  for (const json& l : Events(ReadJsonLines(metrics), "checkpoint")) {
    if (l["epochs_done"] == 2 && l.contains("step")) ++last_epoch_cuts;
  }
  CHECK(last_epoch_cuts == 9);
  // The newest checkpoint verifies.
  RunResult r = Run({kPstrain, "inspect", ckpt});
  INFO(r.out << r.err);
  CHECK(r.code == 0);
}

TEST_CASE(
    "A worker started again in a dead one's place takes slots at their next step: the "
    "fault-free weights",
    "[e2e][fault]") {
  const bool overlap = GENERATE(true, false);
  INFO("overlap " << overlap);
  TempDir dir;
  const std::vector<std::string> flags = {
      "--servers",  "1",
      "--workers",  "2",
      "--epochs",   "2",
      "--progress", "never",
      "--set",      std::string("cluster.overlap=") + (overlap ? "true" : "false")};
  const json clean = CleanFinal(kFashionJob, dir.File("clean"), flags);
  const std::string metrics = dir.File("m"), gate = dir.File("gate");
  std::vector<std::string> argv = TrainArgv(kFashionJob, metrics, flags);
  argv.insert(argv.end(), {"--max-restarts", "1", "--log-level", "info"});
  // Every worker waits before step 100 of each epoch until the gate exists:
  // worker 0 dies there, and the process started in its place joins the
  // first epoch there, however fast the machine.
  Process job(argv, {{"PSTRAIN_FAULT_STEP_GATE", gate + "@100"}});
  const DumpOnExit dump(metrics, &job);
  REQUIRE(WaitForStderr(job, "waiting for " + gate + " before step 100", 2));
  REQUIRE(::kill(WorkerPid(metrics, 0), SIGKILL) == 0);
  REQUIRE(WaitForLine(metrics, job, [](const json& l) { return l["event"] == "slots_handed"; }));
  WriteFile(gate, "");
  auto code = job.Wait(std::chrono::seconds(600));
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  const auto lines = ReadJsonLines(metrics);
  CHECK(Events(lines, "node_failed").size() == 1);
  CHECK(Events(lines, "node_restarted").size() == 1);
  // Worker 1 had both slots; the new worker 0 computes slot 1 from the
  // step worker 1 had not started, in the epoch it joined.
  const auto handed = Events(lines, "slots_handed");
  REQUIRE(handed.size() == 1);
  CHECK(handed[0]["worker"] == 0);
  CHECK(handed[0]["epoch"] == 1);
  CHECK(handed[0]["slots"] == json::array({1}));
  CHECK(handed[0]["from_step"] == 100);
  CheckEveryEpochComplete(metrics, 2, 60000);
  CHECK(Digest(Final(metrics)) == Digest(clean));
}

TEST_CASE("Two server deaths with replication 2 and --max-restarts 2: the second is survived too",
          "[e2e][fault]") {
  TempDir dir;
  const std::vector<std::string> flags = {"--servers",  "2",     "--workers",     "2",
                                          "--epochs",   "4",     "--replication", "2",
                                          "--progress", "never", "--batch-size",  "32"};
  const json clean = CleanFinal(kFashionJob, dir.File("clean"), flags);
  const std::string metrics = dir.File("m");
  std::vector<std::string> argv = TrainArgv(kFashionJob, metrics, flags);
  argv.insert(argv.end(), {"--max-restarts", "2"});
  Process job(argv);
  DumpOnExit dump(metrics, &job);
  REQUIRE(WaitForLine(metrics, job, [](const json& l) { return l["event"] == "epoch"; }));
  REQUIRE(::kill(NodePid(metrics, "servers", 0), SIGKILL) == 0);
  // Server 1 holds both ranges now, without a backup, until server 0 is
  // started again and has copied them.
  REQUIRE(WaitForLine(metrics, job, [](const json& l) {
    return l["event"] == "re_replicated" && l["server"] == 0 && l["keys"] == "[0:0, 0:7)";
  }));
  REQUIRE(WaitForLine(metrics, job, [](const json& l) {
    return l["event"] == "re_replicated" && l["server"] == 0 && l["keys"] != "[0:0, 0:7)";
  }));
  REQUIRE(::kill(NodePid(metrics, "servers", 1), SIGKILL) == 0);
  auto code = job.Wait(std::chrono::seconds(600));
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  CheckEveryEpochComplete(metrics, 4, 60000);
  const auto failed = Events(ReadJsonLines(metrics), "node_failed");
  REQUIRE(failed.size() == 2);
  for (const json& f : failed) CHECK(f["role"] == "server");
  CHECK(Events(ReadJsonLines(metrics), "node_restarted").size() == 2);
  const json f = Final(metrics);
  CHECK(Digest(f) == Digest(clean));
  CHECK(f["test_loss"] == clean["test_loss"]);
}

// Gone: no such process, or a zombie nobody reaped yet.
bool Gone(int pid) {
  if (::kill(pid, 0) != 0) return true;
  const std::string stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  const size_t paren = stat.rfind(')');
  return paren == std::string::npos || stat.compare(paren + 2, 1, "Z") == 0;
}

// The updates each server applied, by id (from the server_stats line).
std::map<int, int64_t> UpdatesApplied(const std::string& metrics) {
  std::map<int, int64_t> out;
  for (const json& s : Events(ReadJsonLines(metrics), "server_stats").back()["servers"]) {
    out[s["id"].get<int>()] = s["updates_applied"].get<int64_t>();
  }
  return out;
}

TEST_CASE("kill -9 of the coordinator mid-epoch, then the same command with --resume",
          "[e2e][fault][coordinator]") {
  TempDir dir;
  const std::vector<std::string> flags = {"--servers",    "2",  "--workers",     "2",
                                          "--epochs",     "3",  "--progress",    "never",
                                          "--batch-size", "32", "--replication", "2"};
  const json clean = CleanFinal(kFashionJob, dir.File("clean"), flags);
  const std::string metrics = dir.File("m"), ckpt = dir.File("ckpt");
  std::vector<std::string> argv = {kPstrain,    "train", kFashionJob,
                                   "--metrics", metrics, "--checkpoint-dir",
                                   ckpt,        "--set", "checkpoint.every_steps=300"};
  argv.insert(argv.end(), flags.begin(), flags.end());
  Process first(argv);  // its process group is killed when the test ends
  DumpOnExit dump(metrics, &first);
  REQUIRE(WaitForCut(metrics, first, 1, 300));
  std::vector<int> nodes;
  for (const char* role : {"servers", "workers"}) {
    for (int id = 0; id < 2; ++id) nodes.push_back(NodePid(metrics, role, id));
  }
  SECTION("every node lives on: the restarted coordinator takes them back") {
    REQUIRE(::kill(first.pid(), SIGKILL) == 0);  // the coordinator (the launcher) alone
    REQUIRE(first.Wait(std::chrono::seconds(60)).has_value());
    for (int pid : nodes) CHECK_FALSE(Gone(pid));
    argv.push_back("--resume");
    RunResult r = Run(argv);
    INFO(r.out << r.err);
    REQUIRE(r.code == 0);
    CHECK_THAT(r.out, Catch::Contains("took back 2 server(s) and 2 worker(s) with their state"));
    const auto adopted = Events(ReadJsonLines(metrics), "adopted");
    REQUIRE(adopted.size() == 1);
    CHECK(adopted[0]["epoch"] == 2);
    CHECK(Events(ReadJsonLines(metrics), "resumed").empty());  // no checkpoint was read
    const auto finals = Events(ReadJsonLines(metrics), "final");
    REQUIRE(finals.size() == 1);
    CHECK(Digest(finals[0]) == Digest(clean));
    // No step went into the weights twice.
    CHECK(UpdatesApplied(metrics) == UpdatesApplied(dir.File("clean")));
    for (const json& e : Events(ReadJsonLines(metrics), "epoch")) {
      CHECK(e["samples"] == 60000);
      CHECK(e["sample_set_ok"] == true);
    }
    // The nodes it took back end with the job.
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (!std::all_of(nodes.begin(), nodes.end(), Gone) &&
           std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    for (int pid : nodes) CHECK(Gone(pid));
  }
  SECTION("a server had failed over before: the restarted coordinator takes back the rest") {
    REQUIRE(::kill(nodes[0], SIGKILL) == 0);  // server 0: its range goes to server 1
    REQUIRE(WaitForLine(metrics, first, [](const json& l) { return l["event"] == "recovered"; }));
    REQUIRE(::kill(first.pid(), SIGKILL) == 0);
    REQUIRE(first.Wait(std::chrono::seconds(60)).has_value());
    argv.push_back("--resume");
    RunResult r = Run(argv);
    INFO(r.out << r.err);
    REQUIRE(r.code == 0);
    CHECK_THAT(r.out, Catch::Contains("took back 1 server(s) and 2 worker(s) with their state"));
    REQUIRE(Events(ReadJsonLines(metrics), "adopted").size() == 1);
    const auto finals = Events(ReadJsonLines(metrics), "final");
    REQUIRE(finals.size() == 1);
    CHECK(Digest(finals[0]) == Digest(clean));
    for (const json& e : Events(ReadJsonLines(metrics), "epoch")) {
      CHECK(e["samples"] == 60000);
      CHECK(e["sample_set_ok"] == true);
    }
  }
  SECTION("a node died with it: the restart goes back to the newest checkpoint") {
    REQUIRE(::kill(first.pid(), SIGKILL) == 0);
    REQUIRE(::kill(nodes[3], SIGKILL) == 0);  // worker 1
    REQUIRE(first.Wait(std::chrono::seconds(60)).has_value());
    argv.push_back("--resume");
    RunResult r = Run(argv);
    INFO(r.out << r.err);
    REQUIRE(r.code == 0);
    CHECK_THAT(r.out, Catch::Contains("3 of the job's 4 nodes came back") &&
                          Catch::Contains("worker 1, which trains slots of epoch 2, did not"));
    CHECK(Events(ReadJsonLines(metrics), "adopted").empty());
    REQUIRE(Events(ReadJsonLines(metrics), "resumed").size() == 1);
    const auto finals = Events(ReadJsonLines(metrics), "final");
    REQUIRE(finals.size() == 1);
    CHECK(Digest(finals[0]) == Digest(clean));
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (!std::all_of(nodes.begin(), nodes.end(), Gone) &&
           std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    for (int pid : nodes) CHECK(Gone(pid));
  }
}

// The pid of every node alive by the metrics so far, by (role, id).
std::map<std::pair<std::string, int>, int> LivePids(const std::string& metrics,
                                                    std::set<int>* seen) {
  std::map<std::pair<std::string, int>, int> live;
  for (const json& l : ReadJsonLines(metrics)) {
    const std::string event = l["event"];
    if (event == "membership") {
      for (const char* role : {"servers", "workers"}) {
        const std::string r = std::string(role) == "servers" ? "server" : "worker";
        for (const json& n : l[role]) live[{r, n["id"].get<int>()}] = n["pid"].get<int>();
      }
    } else if (event == "node_joined" || event == "node_restarted") {
      live[{l["role"].get<std::string>(), l["id"].get<int>()}] = l["pid"].get<int>();
    } else if (event == "node_failed" || event == "node_dropped") {
      auto it = live.find({l["role"].get<std::string>(), l["id"].get<int>()});
      if (it != live.end() && it->second == l["pid"].get<int>()) live.erase(it);
    }
  }
  for (const auto& [key, pid] : live) seen->insert(pid);
  return live;
}

// For the whole run, every 20-30 s, kill -9 of a random worker or server
// (each started again: --max-restarts; a server's ranges fail over to their
// backups, and the new server becomes their backup) and once of the
// coordinator (the same command with --resume takes the rest back, or
// resumes from the newest checkpoint). The weights must be those of the
// calm run, every sample counted once per epoch, and no process left
// behind.
TEST_CASE("Chaos: workers, a server and the coordinator killed all through a run",
          "[e2e][fault][chaos]") {
  TempDir dir;
  const std::string epochs = "100";
  // The calm run: standalone with the three workers' batches as micro-batches.
  RunResult calm = Run({kPstrain, "train", kFashionJob, "--standalone", "--batch-size", "96",
                        "--set", "train.micro_batches=3", "--epochs", epochs, "--progress", "never",
                        "--metrics", dir.File("calm")});
  REQUIRE(calm.code == 0);
  const json clean = Final(dir.File("calm"));
  const std::string metrics = dir.File("m"), ckpt = dir.File("ckpt");
  std::vector<std::string> argv = {kPstrain,
                                   "train",
                                   kFashionJob,
                                   "--metrics",
                                   metrics,
                                   "--servers",
                                   "3",
                                   "--workers",
                                   "3",
                                   "--replication",
                                   "2",
                                   "--max-restarts",
                                   "100",
                                   "--batch-size",
                                   "32",
                                   "--epochs",
                                   epochs,
                                   "--progress",
                                   "never",
                                   "--checkpoint-dir",
                                   ckpt,
                                   "--set",
                                   "checkpoint.every_steps=200"};
  std::vector<std::unique_ptr<Process>> launchers;  // each kills its group at the end
  launchers.push_back(std::make_unique<Process>(argv));
  std::mt19937 rng(20261207);
  auto pause = [&] {
    return std::chrono::milliseconds(std::uniform_int_distribution<int>(20000, 30000)(rng));
  };
  bool server_killed = false, coordinator_killed = false;
  int kills = 0;
  std::set<int> seen;
  std::string what;  // what was killed, for the report
  const auto start = std::chrono::steady_clock::now();
  auto next = start + pause();
  while (launchers.back()->Running()) {
    REQUIRE(std::chrono::steady_clock::now() - start < std::chrono::minutes(40));
    if (std::chrono::steady_clock::now() < next) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    next = std::chrono::steady_clock::now() + pause();
    const auto live = LivePids(metrics, &seen);
    // A worker, a server, the coordinator; then workers and servers.
    const std::string kind = kills == 1   ? "server"
                             : kills == 2 ? "coordinator"
                                          : (rng() % 3 == 0 ? "server" : "worker");
    if (kind == "coordinator") {
      REQUIRE(::kill(launchers.back()->pid(), SIGKILL) == 0);
      REQUIRE(launchers.back()->Wait(std::chrono::seconds(60)).has_value());
      std::vector<std::string> again = argv;
      again.push_back("--resume");
      launchers.push_back(std::make_unique<Process>(again));
      coordinator_killed = true;
    } else {
      std::vector<int> pids;
      for (const auto& [key, pid] : live) {
        if (key.first == kind) pids.push_back(pid);
      }
      if (pids.empty()) continue;
      ::kill(pids[rng() % pids.size()], SIGKILL);
      if (kind == "server") server_killed = true;
    }
    ++kills;
    what += (what.empty() ? "" : ", ") + kind;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  WARN("chaos: " << kills << " kill(s) in " << seconds << " s: " << what);
  INFO(launchers.back()->Stdout() << launchers.back()->Stderr());
  REQUIRE(launchers.back()->Wait(std::chrono::seconds(0)) == std::optional<int>(0));
  CHECK(kills >= 4);
  CHECK(server_killed);
  CHECK(coordinator_killed);
  CHECK(Events(ReadJsonLines(metrics), "node_failed").size() >= 2);
  const auto finals = Events(ReadJsonLines(metrics), "final");
  REQUIRE(finals.size() == 1);
  CHECK(Digest(finals[0]) == Digest(clean));
  // Every epoch's last line: every sample once.
  std::map<int, json> last;
  for (const json& e : Events(ReadJsonLines(metrics), "epoch")) last[e["epoch"].get<int>()] = e;
  CHECK(last.size() == 100);
  for (const auto& [epoch, e] : last) {
    INFO("epoch " << epoch);
    CHECK(e["samples"] == 60000);
    CHECK(e["sample_set_ok"] == true);
  }
  // No process left behind.
  (void)LivePids(metrics, &seen);
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(90);
  while (!std::all_of(seen.begin(), seen.end(), Gone) && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  for (int pid : seen) CHECK(Gone(pid));
}

}  // namespace
}  // namespace pstrain::testing

namespace pstrain::testing {
namespace {

// A sparse logistic-regression job over a generated click-through set.
std::string SparseJob(const TempDir& dir, const std::string& extra) {
  RunResult g = Run({kPstrain, "synth-ctr", dir.path().string(), "train=200000", "test=20000"});
  REQUIRE(g.code == 0);
  const std::string path = dir.File("ctr.toml");
  WriteFile(path,
            "[data]\nformat = \"libsvm\"\ntrain = \"train.libsvm\"\ntest = \"test.libsvm\"\n"
            "features = 10000000\n[model]\nlayers = [{type = \"embedding\", dim = 1}]\n"
            "[optimizer]\ntype = \"adagrad\"\nlr = 0.1\n[train]\nbatch_size = 256\n" +
                extra);
  return path;
}

// Runs the sparse job, kills (-9) `role` `id` once the first epoch is
// done, and checks that the job still completes its 3 epochs.
void KillOnceAndFinish(const std::string& job, const std::string& metrics,
                       const std::vector<std::string>& flags, const char* role, int id) {
  Process run(TrainArgv(job, metrics, flags));
  const DumpOnExit dump(metrics, &run);
  REQUIRE(WaitForLine(metrics, run, [](const json& l) { return l["event"] == "epoch"; }));
  // Into the second epoch's pushes (where exactly does not matter).
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const int victim = NodePid(metrics, role, id);
  REQUIRE(victim > 0);
  REQUIRE(::kill(victim, SIGKILL) == 0);
  auto code = run.Wait(std::chrono::seconds(600));
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  CheckEveryEpochComplete(metrics, 3, 200000);
  CHECK(Events(ReadJsonLines(metrics), "node_failed").size() == 1);
}

TEST_CASE("kill -9 of a worker in a sparse job: the job finishes with the AUC it should have",
          "[e2e][fault][sparse]") {
  TempDir dir;
  const std::string job = SparseJob(dir, "");
  const std::vector<std::string> flags = ThreeWorkers(3);
  const json clean = CleanFinal(job, dir.File("clean"), flags);
  const std::string metrics = dir.File("m");
  KillOnceAndFinish(job, metrics, flags, "workers", 1);
  // Rows are updated as pushes arrive, so runs differ in rounding: the
  // same AUC, not the same weights.
  const json f = Final(metrics);
  INFO("AUC " << f["test_auc"] << ", fault-free " << clean["test_auc"]);
  CHECK(std::abs(f["test_auc"].get<double>() - clean["test_auc"].get<double>()) <= 0.005);
}

TEST_CASE("A sparse job killed whole and resumed gets its embedding rows back from the checkpoint",
          "[e2e][fault][checkpoint][sparse]") {
  TempDir dir;
  const std::string job = SparseJob(dir, "");
  // One worker: its pushes and pulls reach the server in one order, so the
  // run is deterministic and the resumed run must match it exactly.
  const std::vector<std::string> flags = {"--servers", "2", "--workers",  "1",
                                          "--epochs",  "3", "--progress", "never"};
  const json clean = CleanFinal(job, dir.File("clean"), flags);
  const std::string metrics = dir.File("m"), ckpt = dir.File("ckpt");
  std::vector<std::string> argv = {kPstrain,           "train", job, "--metrics", metrics,
                                   "--checkpoint-dir", ckpt};
  argv.insert(argv.end(), flags.begin(), flags.end());
  {
    Process run(argv);
    REQUIRE(WaitForLine(metrics, run, [](const json& l) {
      return l["event"] == "checkpoint" && l["epochs_done"] == 2;
    }));
    REQUIRE(::kill(-run.pid(), SIGKILL) == 0);
    REQUIRE(run.Wait(std::chrono::seconds(60)).has_value());
  }
  RunResult inspect = Run({kPstrain, "inspect", ckpt});
  CHECK_THAT(inspect.out, Catch::Contains("rows-bucket-0.bin  embedding rows"));
  // Resuming with another number of servers would scatter the rows: refused.
  std::vector<std::string> wrong = argv;
  wrong.insert(wrong.end(), {"--resume", "--servers", "3"});
  RunResult refused = Run(wrong);
  CHECK(refused.code != 0);
  CHECK_THAT(refused.err, Catch::Contains("was written by a job with servers 2; this job has 3"));
  CHECK_THAT(refused.err, !Catch::Contains("ERROR"));
  argv.push_back("--resume");
  RunResult r = Run(argv);
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  const json resumed = Final(metrics);
  CHECK(Digest(resumed) == Digest(clean));
  CHECK(resumed["test_auc"] == clean["test_auc"]);
  CHECK(resumed["test_loss"] == clean["test_loss"]);
}

TEST_CASE("A sparse job with replication 2 survives a server's kill -9 with the fault-free weights",
          "[e2e][fault][sparse]") {
  TempDir dir;
  const std::string job = SparseJob(dir, "");
  // One worker: deterministic, so the weights digest must match.
  const std::vector<std::string> flags = {"--servers",  "2",    "--workers",     "1",
                                          "--epochs",   "3",    "--replication", "2",
                                          "--progress", "never"};
  const json clean = CleanFinal(job, dir.File("clean"), flags);
  // Server 0 holds the dense bias and row bucket 0, server 1 bucket 1;
  // each backs up the other's.
  const int victim_id = GENERATE(0, 1);
  INFO("killing server " << victim_id);
  const std::string metrics = dir.File("m" + std::to_string(victim_id));
  KillOnceAndFinish(job, metrics, flags, "servers", victim_id);
  // Every row push was applied once: the weights of the fault-free run.
  const json f = Final(metrics);
  CHECK(Digest(f) == Digest(clean));
  CHECK(f["test_auc"] == clean["test_auc"]);
}

}  // namespace
}  // namespace pstrain::testing
