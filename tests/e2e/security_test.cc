// A keyed job seen from outside: every port refuses clients without the
// job's key, the job trains exactly as an unkeyed one, and the bytes on the
// wire carry no plaintext of the protocol.
#include <arpa/inet.h>
#include <capnp/message.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <map>
#include <thread>

#include "common/msg/codec.h"
#include "common/net/zmq_socket.h"
#include "tests/e2e/e2e_util.h"
#include "tests/e2e/netns.h"
#include "tests/e2e/process.h"
#include "tests/net_probe.h"

namespace pstrain::testing {
namespace {

using nlohmann::json;

std::string MakeKey(TempDir& dir, const std::string& name) {
  const std::string path = dir.File(name);
  RunResult r = Run({kPstrain, "keygen", path});
  INFO(r.err);
  REQUIRE(r.code == 0);
  return path;
}

// The job's first membership line (the ports of its nodes), once written.
json WaitForMembership(const std::string& metrics, Process& job) {
  json membership;
  const auto until = std::chrono::steady_clock::now() + std::chrono::minutes(5);
  while (membership.is_null() && job.Running() && std::chrono::steady_clock::now() < until) {
    for (const json& l : Events(ReadJsonLines(metrics), "membership")) membership = l;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  REQUIRE(membership.is_object());
  return membership;
}

size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
  return n;
}

TEST_CASE("a keyed job refuses every client without its key on every port and trains as usual",
          "[e2e][security]") {
  TempDir dir;
  const std::string key_path = MakeKey(dir, "job.key");
  const CurveKeyPair job = *ReadJobKeyFile(key_path);
  const std::vector<std::string> shape = {"--servers", "2", "--workers",  "2",
                                          "--epochs",  "3", "--progress", "never"};
  std::vector<std::string> plain = {kPstrain, "train", kFashionJob, "--metrics", dir.File("plain")};
  plain.insert(plain.end(), shape.begin(), shape.end());
  REQUIRE(Run(plain).code == 0);

  const std::string metrics = dir.File("keyed");
  std::vector<std::string> keyed = {kPstrain, "train", kFashionJob, "--metrics",
                                    metrics,  "--key", key_path};
  keyed.insert(keyed.end(), shape.begin(), shape.end());
  Process p(keyed);
  const json membership = WaitForMembership(metrics, p);
  std::vector<std::string> ports = {membership["coordinator"]};
  for (const json& s : membership["servers"]) ports.push_back(s["endpoint"]);
  REQUIRE(ports.size() == 3);

  const CurveKeyPair other = *GenerateCurveKeyPair(), own = *GenerateCurveKeyPair();
  const std::vector<std::pair<std::string, ProbeIdentity>> strangers = {
      {"CURVE disabled (no key)", {}},
      {"another job's key", {true, other.public_key, other.public_key, other.secret_key}},
      {"the job's public key with its own key pair",
       {true, job.public_key, own.public_key, own.secret_key}},
  };
  for (const std::string& port : ports) {
    for (const auto& [what, id] : strangers) {
      INFO(port << ": " << what);
      CHECK(std::string(ToString(ProbeHandshake(port, id))) == "refused");
    }
    // The same probe does notice a client that gets in.
    INFO(port << ": the job's own key");
    CHECK(std::string(ToString(ProbeHandshake(
              port, {true, job.public_key, job.public_key, job.secret_key}))) == "admitted");
  }
  const auto code = p.Wait(std::chrono::seconds(600));
  INFO(p.Stderr());
  REQUIRE(code == 0);
  // Each refusal was logged by the node that refused it.
  CHECK(Count(p.Stderr(), "refused a connection") >= ports.size() * strangers.size());
  const json a = Events(ReadJsonLines(dir.File("plain")), "final").at(0);
  const json b = Events(ReadJsonLines(metrics), "final").at(0);
  CHECK(b["test_accuracy"].get<double>() > 0.84);
  CHECK(b["test_accuracy"] == a["test_accuracy"]);
  CHECK(Digest(b) == Digest(a));
}

TEST_CASE("a job given another job's key cannot join it", "[e2e][security]") {
  TempDir dir;
  const std::string mine = MakeKey(dir, "mine.key"), theirs = MakeKey(dir, "theirs.key");
  // A coordinator with one key (a job long enough to outlast the test); a
  // worker started by hand with another.
  Process job({kPstrain, "train", kFashionJob, "--servers", "1", "--workers", "1", "--epochs",
               "1000", "--key", mine, "--metrics", dir.File("m"), "--progress", "never"});
  const json membership = WaitForMembership(dir.File("m"), job);
  const std::string coordinator = membership["coordinator"];
  Process stranger({kPstrain, "worker", "--join", coordinator, "--key", theirs});
  // The coordinator refuses the stranger's handshake and says so.
  const auto until = std::chrono::steady_clock::now() + std::chrono::minutes(5);
  auto refused = [&] { return Count(job.Stderr(), "refused a connection") > 0; };
  while (!refused() && job.Running() && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  INFO(job.Stderr());
  REQUIRE(refused());
  // The job goes on training with its own worker: an epoch ends after the
  // refusal.
  const size_t epochs = Events(ReadJsonLines(dir.File("m")), "epoch").size();
  while (Events(ReadJsonLines(dir.File("m")), "epoch").size() == epochs && job.Running() &&
         std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  REQUIRE(job.Running());
  REQUIRE(Events(ReadJsonLines(dir.File("m")), "epoch").size() > epochs);
  job.Signal(SIGTERM);
  REQUIRE(job.Wait(std::chrono::seconds(120)).has_value());
  const std::vector<json> memberships = Events(ReadJsonLines(dir.File("m")), "membership");
  REQUIRE_FALSE(memberships.empty());
  for (const json& m : memberships) CHECK(m["workers"].size() == 1);
  stranger.Signal(SIGKILL);
}

// Network namespace made (and removed) by the test: its own loopback.
class Namespace {
 public:
  Namespace() : name_("pstrain-cap-" + std::to_string(::getpid())) {
    ok_ = Run({kIp, "netns", "add", name_}, std::chrono::seconds(60)).code == 0 &&
          Run({kIp, "-n", name_, "link", "set", "lo", "up"}, std::chrono::seconds(60)).code == 0;
  }
  ~Namespace() { Run({kIp, "netns", "del", name_}, std::chrono::seconds(60)); }
  bool ok() const { return ok_; }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  bool ok_ = false;
};

// Captures every packet on the namespace's loopback (AF_PACKET, as root)
// and looks for the given plaintext strings in them.
class Capture {
 public:
  Capture(const std::string& netns, std::vector<std::string> markers)
      : markers_(std::move(markers)), found_(markers_.size(), false) {
    thread_ = std::thread([this, netns] { Loop(netns); });
    while (!started_.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~Capture() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  bool opened() const { return fd_ok_; }
  size_t bytes() const { return bytes_; }
  std::vector<std::string> found() const {
    std::vector<std::string> out;
    for (size_t i = 0; i < markers_.size(); ++i) {
      if (found_[i]) out.push_back(markers_[i]);
    }
    return out;
  }

 private:
  void Loop(const std::string& netns) {
    const int ns = ::open(("/var/run/netns/" + netns).c_str(), O_RDONLY | O_CLOEXEC);
    int fd = -1;
    if (ns >= 0 && ::setns(ns, CLONE_NEWNET) == 0) {
      fd = ::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
    }
    if (ns >= 0) ::close(ns);
    if (fd >= 0) {
      sockaddr_ll addr{};
      addr.sll_family = AF_PACKET;
      addr.sll_protocol = htons(ETH_P_ALL);
      addr.sll_ifindex = static_cast<int>(if_nametoindex("lo"));
      timeval tv{0, 100000};
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      int buf = 64 << 20;
      ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
      fd_ok_ = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    }
    started_ = true;
    std::string window;
    std::vector<char> packet(1 << 17);
    while (fd_ok_ && !stop_.load()) {
      const ssize_t n = ::recv(fd, packet.data(), packet.size(), 0);
      if (n <= 0) continue;
      bytes_ += static_cast<size_t>(n);
      // The end of the previous packet too, so a string split across two
      // segments is still seen.
      window = window.substr(window.size() > 64 ? window.size() - 64 : 0);
      window.append(packet.data(), static_cast<size_t>(n));
      for (size_t i = 0; i < markers_.size(); ++i) {
        if (!found_[i] && window.find(markers_[i]) != std::string::npos) found_[i] = true;
      }
    }
    if (fd >= 0) ::close(fd);
  }

  std::vector<std::string> markers_;
  std::vector<bool> found_;
  std::atomic<bool> started_{false}, stop_{false};
  bool fd_ok_ = false;
  size_t bytes_ = 0;
  std::thread thread_;
};

TEST_CASE("the bytes of a keyed job on the wire hold no plaintext of the protocol",
          "[e2e][security]") {
  if (const std::string why = NetnsRefusal(); !why.empty()) PSTRAIN_SKIP(why);
  Namespace ns;
  REQUIRE(ns.ok());
  TempDir dir;
  const std::string key = MakeKey(dir, "job.key");
  // Strings every unencrypted run sends: the ZMTP metadata, the endpoints in
  // registration and assignment, the job file's text inside the assignment.
  const std::vector<std::string> markers = {"Socket-Type", "tcp://127.0.0.1:", "test_labels",
                                            "[optimizer]"};
  auto capture_run = [&](bool keyed) {
    Capture cap(ns.name(), markers);
    REQUIRE(cap.opened());
    std::vector<std::string> argv = {
        kIp, "netns", "exec", ns.name(), kPstrain, "train", kMnistJob, "--servers", "1",
        "--workers", "2", "--epochs", "1", "--progress", "never",
        // The data plane over TCP too, so that it crosses the captured loopback.
        "--set", "cluster.ipc=false"};
    if (keyed) {
      argv.push_back("--key");
      argv.push_back(key);
    }
    RunResult r = Run(argv);
    INFO(r.err);
    CHECK(r.code == 0);
    cap.Stop();
    return std::make_pair(cap.found(), cap.bytes());
  };
  const auto [plain_found, plain_bytes] = capture_run(false);
  // The capture does see the protocol when it is not encrypted...
  CHECK(plain_found == markers);
  const auto [keyed_found, keyed_bytes] = capture_run(true);
  // ... and none of it in a keyed run of the same job.
  CHECK(keyed_bytes > (1u << 20));
  CHECK(keyed_found.empty());
}

TEST_CASE("listening beyond loopback without a key is refused with a clear message",
          "[e2e][security]") {
  // The interface check comes before any socket is made: nothing is bound.
  RunResult r = Run({kPstrain, "train", kFashionJob, "--servers", "1", "--workers", "1", "--bind",
                     "0.0.0.0", "--epochs", "1"});
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("pstrain keygen") && Catch::Contains("--insecure"));
}

// The server's peak resident memory so far (VmHWM), in bytes; 0 once gone.
size_t PeakRss(int pid) {
  const std::string status = ReadFile("/proc/" + std::to_string(pid) + "/status");
  const size_t at = status.find("VmHWM:");
  return at == std::string::npos ? 0 : std::stoull(status.substr(at + 6)) * 1024;
}

struct FloodResult {
  json final;
  json server_stats;
  size_t server_peak = 0;
  int64_t sent = 0;
};

// Runs a 1-server, 2-worker BSP job; with `flood`, a stranger sends the
// server 15 MiB pushes as fast as it can, never reading a reply.
FloodResult RunUnderFlood(TempDir& dir, const std::string& name, bool flood) {
  const std::string metrics = dir.File(name);
  Process job({kPstrain, "train", kFashionJob, "--servers", "1", "--workers", "2", "--epochs", "2",
               "--metrics", metrics, "--progress", "never"});
  const json membership = WaitForMembership(metrics, job);
  const int server_pid = membership["servers"][0]["pid"];
  const std::string endpoint = membership["servers"][0]["endpoint"];
  FloodResult result;
  std::atomic<bool> stop{false};
  std::atomic<int64_t> sent{0};
  // Catch2 2.x assertions are not thread-safe: the flooder only records what
  // went wrong, and the test's thread asserts on it.
  std::string flooder_error;
  std::thread flooder([&] {
    if (!flood) return;
    ZmqContext ctx;
    SocketOptions o;
    o.max_message_bytes = -1;
    auto created = Socket::Create(ctx, SocketKind::kDealer, o);
    if (!created.ok()) {
      flooder_error = "socket: " + std::string(created.status().message());
      return;
    }
    auto s = std::move(*created);
    if (Status c = s->Connect(endpoint); !c.ok()) {
      flooder_error = "connect: " + std::string(c.message());
      return;
    }
    auto junk = std::make_shared<std::vector<float>>((15u << 20) / sizeof(float), 1.0f);
    while (!stop.load()) {
      capnp::MallocMessageBuilder b;
      auto h = b.initRoot<msg::DataHeader>();
      h.setOp(msg::DataOp::PUSH);
      h.setRequestId(static_cast<uint64_t>(sent.load()));
      h.setWorkerId(0);
      h.setIncarnation(12345);  // not the real worker 0's
      h.setPayloadFrames(1);
      Message m;
      m.push_back(EncodeFrame(b));
      m.push_back(Frame::Share(junk->data(), junk->size() * sizeof(float), junk));
      if (s->Send(m, /*dontwait=*/true).ok()) {
        ++sent;
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    }
  });
  while (job.Running()) {
    result.server_peak = std::max(result.server_peak, PeakRss(server_pid));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  stop = true;
  flooder.join();
  INFO(flooder_error);
  CHECK(flooder_error.empty());
  result.sent = sent.load();
  const auto code = job.Wait(std::chrono::seconds(600));
  INFO(job.Stderr());
  REQUIRE(code == 0);
  result.final = Events(ReadJsonLines(metrics), "final").at(0);
  result.server_stats = Events(ReadJsonLines(metrics), "server_stats").at(0)["servers"][0];
  return result;
}

TEST_CASE("a client flooding a server with pushes slows only itself: memory stays bounded",
          "[e2e][security]") {
  TempDir dir;
  const FloodResult calm = RunUnderFlood(dir, "calm", false);
  const FloodResult flooded = RunUnderFlood(dir, "flooded", true);
  INFO("server peak RSS " << (calm.server_peak >> 20) << " MiB calm, "
                          << (flooded.server_peak >> 20) << " MiB under a flood of " << flooded.sent
                          << " pushes of 15 MiB");
  CHECK(flooded.sent > 16);
  // The server did read the flood, and refused every push of it.
  CHECK(flooded.server_stats["pushes_refused"].get<int64_t>() > 0);
  CHECK(calm.server_stats["pushes_refused"] == 0);
  // The other workers trained exactly as without the flood.
  CHECK(Digest(flooded.final) == Digest(calm.final));
  CHECK(flooded.final["test_accuracy"] == calm.final["test_accuracy"]);
  // At most 16 unread messages of at most 16 MiB per peer (ZMQ_RCVHWM,
  // ZMQ_MAXMSGSIZE), plus slack for the allocator.
  CHECK(flooded.server_peak < calm.server_peak + (16u << 24) + (64u << 20));
}

}  // namespace
}  // namespace pstrain::testing
