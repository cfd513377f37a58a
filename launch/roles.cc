#include "launch/roles.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <thread>

#include "common/base/json.h"
#include "common/base/logging.h"
#include "common/ckpt/checkpoint.h"
#include "common/net/zmq_socket.h"
#include "coordinator/console.h"
#include "coordinator/coordinator.h"
#include "coordinator/metrics_log.h"
#include "paramserver/server.h"
#include "worker/worker.h"

namespace pstrain {
namespace {

int ExitCodeFor(const Status& s) {
  if (s.ok()) return 0;
  if (s.code() == StatusCode::kCancelled) return 130;
  if (s.code() == StatusCode::kInvalidArgument) return 2;
  return 1;
}

// Runs the coordinator on this thread until the job ends.
int Coordinate(const JobSource& job, Coordinator& coordinator, Console& console,
               MetricsLog& metrics, const std::atomic<bool>* stop) {
  StatusOr<FinalStats> f = coordinator.Run(stop);
  if (!f.ok()) {
    std::fprintf(stderr, "pstrain: %s\n", f.status().message().c_str());
    return ExitCodeFor(f.status());
  }
  console.Final(*f);
  Status s = metrics.WriteFinal(*f);
  if (!s.ok()) {
    std::fprintf(stderr, "pstrain: %s\n", s.message().c_str());
    return 1;
  }
  (void)job;
  return 0;
}

}  // namespace

CoordinatorOptions OptionsFor(const JobSource& job, const std::string& bind,
                              const std::string& launch_token) {
  CoordinatorOptions o;
  o.config = job.config;
  o.job_text = job.text;
  o.job_name = job.path;
  o.base_dir = job.base_dir;
  o.overrides = job.overrides;
  o.bind_address = bind;
  o.resume = job.resume;
  o.launch_token = launch_token;
  return o;
}

StatusOr<std::string> NewLaunchToken() {
  unsigned char bytes[16];
  std::ifstream in("/dev/urandom", std::ios::binary);
  if (!in.read(reinterpret_cast<char*>(bytes), sizeof bytes)) {
    return Unavailable("cannot read /dev/urandom for the job's launch token");
  }
  std::string hex;
  char b[3];
  for (unsigned char c : bytes) {
    std::snprintf(b, sizeof b, "%02x", c);
    hex += b;
  }
  return hex;
}

std::optional<CoordinatorRecord> ReadCoordinatorRecord(const std::string& dir) {
  std::ifstream in(std::filesystem::path(dir) / "coordinator");
  CoordinatorRecord r;
  std::string key;
  while (in >> key) {
    if (key == "port") in >> r.port;
    if (key == "launch_token") in >> r.launch_token;
  }
  if (r.port <= 0 || r.port > 65535) return std::nullopt;
  return r;
}

Status WriteCoordinatorRecord(const std::string& dir, const CoordinatorRecord& r) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  const std::string text =
      "port " + std::to_string(r.port) + "\nlaunch_token " + r.launch_token + "\n";
  const std::string path = (std::filesystem::path(dir) / "coordinator").string();
  RETURN_IF_ERROR(WriteFileDurably(
      path, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size())));
  std::filesystem::permissions(
      path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write, ec);
  return OkStatus();
}

std::string SelfExecutable() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0 || static_cast<size_t>(n) >= sizeof buf - 1) return "/proc/self/exe";
  const std::string path(buf, static_cast<size_t>(n));
  // Replaced on disk since it started: only the link reaches this binary.
  if (path.size() > 10 && path.compare(path.size() - 10, 10, " (deleted)") == 0) {
    return "/proc/self/exe";
  }
  return path;
}

StatusOr<JobSource> ReadJobSource(const std::string& path,
                                  const std::vector<ConfigOverride>& overrides) {
  JobSource j;
  ASSIGN_OR_RETURN(j.text, ReadJobFile(path));
  j.path = path;
  j.base_dir = std::filesystem::absolute(path).parent_path().string();
  // Paths given on the command line are made absolute (ParseJobConfig does)
  // before they travel to other processes.
  ASSIGN_OR_RETURN(j.config, ParseJobConfig(j.text, path, j.base_dir, overrides));
  for (const ConfigOverride& o : overrides) {
    ConfigOverride abs = o;
    if (JobKeyIsPath(o.key) && !o.value.empty()) {
      abs.value = std::filesystem::absolute(o.value).string();
    }
    j.overrides.push_back(abs);
  }
  return j;
}

StatusOr<std::string> ResolveBindAddress(const std::string& bind) {
  in_addr addr{};
  if (inet_pton(AF_INET, bind.c_str(), &addr) == 1) return bind;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return Internal("getifaddrs failed");
  std::string found;
  std::string names;
  for (ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
    if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != AF_INET) continue;
    names += (names.empty() ? "" : ", ") + std::string(i->ifa_name);
    if (bind == i->ifa_name) {
      char buf[INET_ADDRSTRLEN];
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, buf, sizeof buf);
      found = buf;
      break;
    }
  }
  freeifaddrs(list);
  if (found.empty()) {
    return InvalidArgument(
        "cluster.bind: \"" + bind +
        "\" is neither an IPv4 address nor an interface with one (interfaces: " + names + ")");
  }
  return found;
}

StatusOr<std::optional<CurveKeyPair>> JobSecurity(const std::string& key_path, bool insecure,
                                                  const std::string& bind_address) {
  if (!key_path.empty()) {
    ASSIGN_OR_RETURN(CurveKeyPair key, ReadJobKeyFile(key_path));
    return std::optional<CurveKeyPair>(std::move(key));
  }
  if (bind_address.rfind("127.", 0) != 0 && !insecure) {
    return InvalidArgument(
        "cluster.bind " + bind_address +
        " would open the job's sockets beyond this machine without a job key: anyone who can "
        "reach them could join and change the weights. Make a key (pstrain keygen job.key) and "
        "give every node --key job.key, or say --insecure");
  }
  return std::optional<CurveKeyPair>();
}

std::vector<std::string> SecurityFlags(const JobConfig& c) {
  std::vector<std::string> flags;
  if (!c.key_path.empty()) {
    flags.push_back("--key");
    flags.push_back(std::filesystem::absolute(c.key_path).string());
  }
  if (c.insecure) flags.push_back("--insecure");
  return flags;
}

int RunLocalJob(const JobSource& job, const std::string& log_level, const std::atomic<bool>* stop) {
  const JobConfig& c = job.config;
  StatusOr<std::string> bind = ResolveBindAddress(c.cluster.bind);
  if (!bind.ok()) {
    std::fprintf(stderr, "pstrain: %s\n", bind.status().message().c_str());
    return 2;
  }
  auto metrics = MetricsLog::Open(c.metrics_path, job.resume);
  if (!metrics.ok()) {
    std::fprintf(stderr, "pstrain: %s\n", metrics.status().message().c_str());
    return 2;
  }
  StatusOr<std::optional<CurveKeyPair>> key = JobSecurity(c.key_path, c.insecure, *bind);
  if (!key.ok()) {
    std::fprintf(stderr, "pstrain: %s\n", key.status().message().c_str());
    return 2;
  }
  Console console(c.progress);
  ZmqContext ctx;
  if (key->has_value()) {
    Status st = ctx.EnableCurve(**key);
    if (!st.ok()) {
      std::fprintf(stderr, "pstrain: %s\n", st.message().c_str());
      return 1;
    }
  }
  StatusOr<std::string> token = NewLaunchToken();
  if (!token.ok()) {
    std::fprintf(stderr, "pstrain: %s\n", token.status().message().c_str());
    return 1;
  }
  // Resumed: where the coordinator before listened, and the token its
  // nodes carry (they may have outlived it).
  std::optional<CoordinatorRecord> earlier;
  if (job.resume && !c.checkpoint_dir.empty()) earlier = ReadCoordinatorRecord(c.checkpoint_dir);
  if (earlier.has_value() && !earlier->launch_token.empty()) *token = earlier->launch_token;
  CoordinatorOptions co = OptionsFor(job, *bind, *token);
  co.port = c.cluster.port > 0 ? c.cluster.port : earlier.has_value() ? earlier->port : 0;
  // The children inherit it; it never appears on a command line.
  ::setenv(kLaunchTokenVariable, token->c_str(), 1);
  Coordinator coordinator(ctx, co, &console, metrics->get());
  StatusOr<std::string> endpoint = coordinator.Bind();
  if (!endpoint.ok()) {
    std::fprintf(stderr, "pstrain: %s\n", endpoint.status().message().c_str());
    return 1;
  }
  if (!c.checkpoint_dir.empty()) {
    CoordinatorRecord record;
    record.port = std::atoi(endpoint->substr(endpoint->rfind(':') + 1).c_str());
    record.launch_token = *token;
    if (Status st = WriteCoordinatorRecord(c.checkpoint_dir, record); !st.ok()) {
      PSTRAIN_LOG(WARNING) << "cannot record the coordinator's port: " << st.message();
    }
  }
  // Nodes that outlived the coordinator before come back to this one; then
  // none is started.
  bool adopted = false;
  if (earlier.has_value()) {
    const auto window = std::chrono::milliseconds(c.cluster.timeout_ms + 2000);
    StatusOr<bool> a = coordinator.AdoptSurvivors(window, stop);
    if (!a.ok()) {
      std::fprintf(stderr, "pstrain: %s\n", a.status().message().c_str());
      return ExitCodeFor(a.status());
    }
    adopted = *a;
  }
  console.Banner(
      "pstrain " + c.name + ": coordinator at " + *endpoint + ", " +
      std::to_string(c.cluster.servers) + " server(s), " + std::to_string(c.cluster.workers) +
      " worker(s), " + std::string(ConsistencyName(c.cluster.consistency)) + ", batch " +
      std::to_string(c.batch_size) + " per worker, " + std::to_string(c.epochs) + " epochs");

  std::vector<pid_t> children;
  std::map<pid_t, std::string> names;  // "server 0"
  const std::string self = SelfExecutable();
  auto spawn = [&](const char* role, int id) {
    std::vector<std::string> args = {"pstrain", role,      "--id",        std::to_string(id),
                                     "--join",  *endpoint, "--log-level", log_level};
    if (std::string(role) == "server") {
      args.push_back("--bind");
      args.push_back(*bind);
    }
    for (const std::string& f : SecurityFlags(c)) args.push_back(f);
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    // Between fork and exec the child still has the launcher's handlers: a
    // SIGTERM caught there would be lost with the exec, and the child would
    // run on. So the signals wait, blocked, until the child has its own
    // dispositions (and die with it then, at the default action).
    sigset_t stops, before;
    sigemptyset(&stops);
    sigaddset(&stops, SIGTERM);
    sigaddset(&stops, SIGINT);
    ::pthread_sigmask(SIG_BLOCK, &stops, &before);
    const pid_t launcher = ::getpid();
    const pid_t pid = ::fork();
    if (pid == 0) {
      // Never outlive the launcher while joining; once joined, a node with
      // a grace period (cluster.coordinator_grace_s) clears this and waits
      // that long for the coordinator to be restarted (ControlChannel::Join).
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != launcher) ::_exit(127);  // it died before the line above
      ::signal(SIGTERM, SIG_DFL);
      ::signal(SIGINT, SIG_IGN);  // the coordinator stops the job, not the terminal
      ::pthread_sigmask(SIG_SETMASK, &before, nullptr);
      ::execv(self.c_str(), argv.data());
      ::_exit(127);
    }
    ::pthread_sigmask(SIG_SETMASK, &before, nullptr);
    if (pid > 0) {
      children.push_back(pid);
      names[pid] = std::string(role) + " " + std::to_string(id);
    }
  };
  if (!adopted) {
    for (int i = 0; i < c.cluster.servers; ++i) spawn("server", i);
    for (int i = 0; i < c.cluster.workers; ++i) spawn("worker", i);
  }

  // A child that exits is known at once: the coordinator need not wait for
  // its heartbeats to stop.
  std::map<pid_t, int> exit_codes;
  auto reap = [&](pid_t pid, int options) {
    int status = 0;
    const pid_t r = ::waitpid(pid, &status, options);
    if (r == pid)
      exit_codes[pid] = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return r == pid;
  };
  // A worker that died (exited with an error, or was killed) is started
  // again in its place while restarts are left; it joins the running job as
  // any replacement does. Servers cannot join a running job yet.
  int restarts = 0;
  coordinator.SetExitedPidsProbe([&] {
    std::vector<int> exited;
    for (pid_t pid : children) {
      if (exit_codes.count(pid) == 0 && reap(pid, WNOHANG)) exited.push_back(pid);
    }
    for (pid_t pid : exited) {
      const std::string name = names[pid];
      const bool server = name.rfind("server ", 0) == 0;
      // A server comes back as a backup, which needs replication 2.
      if (exit_codes[pid] == 0 || restarts >= c.cluster.max_restarts ||
          (server && c.cluster.replication < 2)) {
        continue;
      }
      ++restarts;
      const int id = std::stoi(name.substr(7));
      const size_t before = children.size();
      spawn(server ? "server" : "worker", id);
      if (children.size() == before) {
        PSTRAIN_LOG(WARNING) << "could not start " << name << " again: fork failed";
        continue;
      }
      PSTRAIN_LOG(WARNING) << name << " (pid " << pid << ") exited with code " << exit_codes[pid]
                           << ": started again as pid " << children.back() << " (restart "
                           << restarts << " of " << c.cluster.max_restarts << ")";
      Status st = (*metrics)->Write(JsonObject()
                                        .Add("event", "node_restarted")
                                        .Add("role", server ? "server" : "worker")
                                        .Add("id", id)
                                        .Add("old_pid", pid)
                                        .Add("pid", children.back())
                                        .Add("exit_code", exit_codes[pid])
                                        .Add("restart", restarts));
      if (!st.ok()) PSTRAIN_LOG(WARNING) << "metrics: " << st.message();
    }
    return exited;
  });

  // A worker taken back from the coordinator before is not this launcher's
  // child: its death is known from the coordinator, and it is started again
  // the same way.
  coordinator.SetDeathObserver([&](msg::Role role, int id, int pid) {
    const bool server = role == msg::Role::SERVER;
    if (restarts >= c.cluster.max_restarts || (server && c.cluster.replication < 2) ||
        std::find(children.begin(), children.end(), pid) != children.end()) {
      return;
    }
    const char* what = server ? "server" : "worker";
    const size_t had = children.size();
    spawn(what, id);
    if (children.size() == had) {
      PSTRAIN_LOG(WARNING) << "could not start " << what << " " << id << " again: fork failed";
      return;
    }
    ++restarts;
    PSTRAIN_LOG(WARNING) << what << " " << id << " (pid " << pid << ", taken back from the "
                         << "coordinator before) died: started again (restart " << restarts
                         << " of " << c.cluster.max_restarts << ")";
    Status st = (*metrics)->Write(JsonObject()
                                      .Add("event", "node_restarted")
                                      .Add("role", what)
                                      .Add("id", id)
                                      .Add("old_pid", pid)
                                      .Add("pid", children.back())
                                      .Add("restart", restarts));
    if (!st.ok()) PSTRAIN_LOG(WARNING) << "metrics: " << st.message();
  });

  const int code = Coordinate(job, coordinator, console, **metrics, stop);

  // Every child got a Shutdown; wait for them, then make sure none is left.
  // A coordinator that failed early (a bad data file) may have told no one:
  // stop the children now rather than after their join deadline.
  if (code != 0) {
    for (pid_t pid : children) {
      if (exit_codes.count(pid) == 0 && !reap(pid, WNOHANG)) ::kill(pid, SIGTERM);
    }
  }
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  int failed = 0;
  const std::vector<int>& dead = coordinator.dead_pids();
  // A node declared dead (killed, or stopped past the timeout) is not
  // waited for: a stopped one would hold the command until it is continued.
  for (pid_t pid : children) {
    if (exit_codes.count(pid) == 0 && std::find(dead.begin(), dead.end(), pid) != dead.end() &&
        !reap(pid, WNOHANG)) {
      PSTRAIN_LOG(WARNING) << names[pid] << " (pid " << pid
                           << ") was declared dead and is still there (stopped?): killed";
      ::kill(pid, SIGKILL);
    }
  }
  for (pid_t pid : children) {
    while (exit_codes.count(pid) == 0 && !reap(pid, WNOHANG)) {
      if (std::chrono::steady_clock::now() >= until) {
        PSTRAIN_LOG(WARNING) << names[pid] << " (pid " << pid
                             << ") did not stop within 20 s of the job's end: killed";
        ::kill(pid, SIGKILL);
        reap(pid, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    // Nodes declared dead (killed, paused past the timeout) fail by design.
    const bool expected = std::find(dead.begin(), dead.end(), pid) != dead.end();
    if (code == 0 && exit_codes[pid] != 0 && !expected) ++failed;
  }
  if (failed > 0) {
    std::fprintf(stderr, "pstrain: %d node process(es) did not exit cleanly\n", failed);
    return 1;
  }
  return code;
}

int RunRole(const CommandLine& cl, const std::atomic<bool>* stop) {
  auto join = cl.options.find("join");
  if (join == cl.options.end()) {
    std::fprintf(stderr, "pstrain: %s needs --join tcp://HOST:PORT (the coordinator)\n",
                 cl.command.c_str());
    return 2;
  }
  int id = -1;
  if (auto it = cl.options.find("id"); it != cl.options.end()) {
    try {
      id = std::stoi(it->second);
    } catch (const std::exception&) {
      std::fprintf(stderr, "pstrain: --id must be an integer, got \"%s\"\n", it->second.c_str());
      return 2;
    }
  }
  std::string bind = "127.0.0.1", key_path;
  bool insecure = false;
  for (const ConfigOverride& ov : cl.overrides) {
    if (ov.key == "cluster.bind") bind = ov.value;
    if (ov.key == "security.key") key_path = ov.value;
    if (ov.key == "security.insecure") insecure = ov.value == "true";
  }
  StatusOr<std::string> addr = ResolveBindAddress(bind);
  if (!addr.ok()) {
    std::fprintf(stderr, "pstrain: %s\n", addr.status().message().c_str());
    return 2;
  }
  StatusOr<std::optional<CurveKeyPair>> key = JobSecurity(key_path, insecure, *addr);
  if (!key.ok()) {
    std::fprintf(stderr, "pstrain: %s\n", key.status().message().c_str());
    return 2;
  }
  // Started by the job's launcher: its token, which no other node needs.
  std::string launch_token;
  if (const char* t = std::getenv(kLaunchTokenVariable); t != nullptr) launch_token = t;
  ::unsetenv(kLaunchTokenVariable);
  int exit_code = 0;
  Status s;
  if (cl.command == "server") {
    ServerOptions o;
    o.coordinator = join->second;
    o.requested_id = id;
    o.bind_address = *addr;
    o.key = *key;
    o.launch_token = launch_token;
    SetLogPrefix("server");
    s = RunServer(o, stop, &exit_code);
  } else {
    WorkerOptions o;
    o.coordinator = join->second;
    o.requested_id = id;
    o.key = *key;
    o.launch_token = launch_token;
    if (const char* gate = std::getenv("PSTRAIN_FAULT_EVAL_GATE"); gate != nullptr) {
      o.eval_gate = gate;
    }
    if (const char* stall = std::getenv("PSTRAIN_FAULT_STALL_MS"); stall != nullptr) {
      o.stall_ms = std::atoi(stall);
    }
    if (const char* gate = std::getenv("PSTRAIN_FAULT_STEP_GATE"); gate != nullptr) {
      const std::string g = gate;
      const size_t at = g.rfind('@');
      if (at == std::string::npos) {
        PSTRAIN_LOG(ERROR) << "PSTRAIN_FAULT_STEP_GATE=" << g << ": not FILE@STEP";
        return 2;
      }
      o.step_gate = g.substr(0, at);
      o.step_gate_at = std::atoll(g.c_str() + at + 1);
    }
    SetLogPrefix("worker");
    s = RunWorker(o, stop, &exit_code);
  }
  if (!s.ok()) {
    // Stopped by the launcher (the job failed before it began): it said why.
    if (!(s.code() == StatusCode::kCancelled && stop != nullptr && stop->load())) {
      PSTRAIN_LOG(ERROR) << s.message();
    }
    return ExitCodeFor(s);
  }
  return exit_code;
}

}  // namespace pstrain
