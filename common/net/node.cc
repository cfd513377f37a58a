#include "common/net/node.h"

#include <capnp/message.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <random>

#include "common/base/logging.h"

namespace pstrain {

void BuildServerInfo(const ServerEntry& s, msg::ServerInfo::Builder sb) {
  sb.setId(s.id);
  sb.setEndpoint(s.endpoint);
  sb.setIncarnation(s.incarnation);
  sb.setLocalEndpoint(s.local_endpoint);
  sb.setHostKey(s.host_key);
  auto ranges = sb.initRanges(static_cast<unsigned>(s.ranges.size()));
  for (size_t r = 0; r < s.ranges.size(); ++r) {
    ranges[static_cast<unsigned>(r)].setBegin(s.ranges[r].begin);
    ranges[static_cast<unsigned>(r)].setEnd(s.ranges[r].end);
  }
  auto backups = sb.initBackupRanges(static_cast<unsigned>(s.backup_ranges.size()));
  for (size_t r = 0; r < s.backup_ranges.size(); ++r) {
    backups[static_cast<unsigned>(r)].setBegin(s.backup_ranges[r].begin);
    backups[static_cast<unsigned>(r)].setEnd(s.backup_ranges[r].end);
  }
}

ServerEntry ReadServerInfo(msg::ServerInfo::Reader s) {
  ServerEntry e;
  e.id = s.getId();
  e.endpoint = s.getEndpoint();
  e.incarnation = s.getIncarnation();
  e.local_endpoint = s.getLocalEndpoint();
  e.host_key = s.getHostKey();
  for (auto kr : s.getRanges()) e.ranges.push_back({kr.getBegin(), kr.getEnd()});
  for (auto kr : s.getBackupRanges()) e.backup_ranges.push_back({kr.getBegin(), kr.getEnd()});
  return e;
}

void BuildAssignment(const NodeAssignment& a, msg::Assignment::Builder b) {
  b.setNodeId(a.node_id);
  b.setMembershipEpoch(a.membership_epoch);
  b.setJobText(a.job_text);
  b.setJobName(a.job_name);
  b.setJobBaseDir(a.job_base_dir);
  auto keys = b.initOverrideKeys(static_cast<unsigned>(a.overrides.size()));
  auto values = b.initOverrideValues(static_cast<unsigned>(a.overrides.size()));
  for (size_t i = 0; i < a.overrides.size(); ++i) {
    keys.set(static_cast<unsigned>(i), a.overrides[i].key);
    values.set(static_cast<unsigned>(i), a.overrides[i].value);
  }
  b.setInputDim(a.input_dim);
  b.setNumClasses(a.num_classes);
  b.setInputChannels(a.input_shape.channels);
  b.setInputHeight(a.input_shape.height);
  b.setInputWidth(a.input_shape.width);
  auto servers = b.initServers(static_cast<unsigned>(a.servers.size()));
  for (size_t i = 0; i < a.servers.size(); ++i) {
    BuildServerInfo(a.servers[i], servers[static_cast<unsigned>(i)]);
  }
  auto workers = b.initWorkers(static_cast<unsigned>(a.workers.size()));
  auto incs = b.initWorkerIncarnations(static_cast<unsigned>(a.workers.size()));
  for (size_t i = 0; i < a.workers.size(); ++i) {
    workers.set(static_cast<unsigned>(i), a.workers[i]);
    incs.set(static_cast<unsigned>(i),
             i < a.worker_incarnations.size() ? a.worker_incarnations[i] : 0);
  }
  b.setRestoreDir(a.restore_dir);
  b.setHeartbeatMs(static_cast<uint32_t>(a.heartbeat_ms));
  b.setTimeoutMs(static_cast<uint32_t>(a.timeout_ms));
}

StatusOr<NodeAssignment> ReadAssignment(msg::Assignment::Reader r) {
  NodeAssignment a;
  a.node_id = r.getNodeId();
  a.membership_epoch = r.getMembershipEpoch();
  a.job_text = r.getJobText();
  a.job_name = r.getJobName();
  a.job_base_dir = r.getJobBaseDir();
  // Each get of a list counts against the traversal limit: get them once.
  const auto keys = r.getOverrideKeys();
  const auto values = r.getOverrideValues();
  if (keys.size() != values.size()) {
    return InvalidArgument("assignment: override keys and values differ in number");
  }
  for (unsigned i = 0; i < keys.size(); ++i) a.overrides.push_back({keys[i], values[i]});
  a.input_dim = r.getInputDim();
  a.num_classes = r.getNumClasses();
  a.input_shape = {r.getInputChannels(), r.getInputHeight(), r.getInputWidth()};
  for (auto s : r.getServers()) a.servers.push_back(ReadServerInfo(s));
  for (int32_t w : r.getWorkers()) a.workers.push_back(w);
  for (uint64_t inc : r.getWorkerIncarnations()) a.worker_incarnations.push_back(inc);
  a.restore_dir = r.getRestoreDir();
  a.heartbeat_ms = static_cast<int>(r.getHeartbeatMs());
  a.timeout_ms = static_cast<int>(r.getTimeoutMs());
  if (a.heartbeat_ms < 1 || a.timeout_ms <= a.heartbeat_ms) {
    return InvalidArgument("assignment: bad heartbeat/timeout");
  }
  ASSIGN_OR_RETURN(a.config, ParseJobConfig(a.job_text, a.job_name, a.job_base_dir, a.overrides));
  return a;
}

uint64_t NewIncarnation() {
  std::random_device rd;
  const uint64_t r = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  return r ^ (static_cast<uint64_t>(::getpid()) << 17) ^
         static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
}

std::string HostName() {
  char buf[256] = {0};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

StatusOr<std::unique_ptr<ControlChannel>> ControlChannel::Connect(ZmqContext& ctx,
                                                                  const std::string& coordinator) {
  SocketOptions o;
  o.max_message_bytes = static_cast<int64_t>(kMaxHeaderBytes);
  ASSIGN_OR_RETURN(std::unique_ptr<Socket> s, Socket::Create(ctx, SocketKind::kDealer, o));
  RETURN_IF_ERROR(s->Connect(coordinator));
  auto c = std::unique_ptr<ControlChannel>(new ControlChannel(ctx, std::move(s)));
  c->coordinator_ = coordinator;
  return c;
}

Status ControlChannel::Send(capnp::MessageBuilder& message) {
  if (link_ != nullptr) return link_->Send(message);
  Message frames;
  frames.push_back(EncodeFrame(message));
  return socket_->Send(frames);
}

Socket* ControlChannel::socket() { return link_ != nullptr ? link_->socket() : socket_.get(); }

std::string LocalHostKey() {
  struct stat st {};
  const std::string ns =
      ::stat("/proc/self/ns/net", &st) == 0 ? std::to_string(st.st_ino) : std::string("?");
  return HostName() + "/net:" + ns;
}

const std::string& BestEndpoint(const ServerEntry& e) {
  static const std::string here = LocalHostKey();
  return !e.local_endpoint.empty() && e.host_key == here ? e.local_endpoint : e.endpoint;
}

StatusOr<NodeAssignment> ControlChannel::Join(msg::Role role, int requested_id,
                                              uint64_t incarnation,
                                              const std::string& data_endpoint,
                                              std::chrono::seconds deadline,
                                              const std::string& local_endpoint,
                                              const std::atomic<bool>* stop) {
  {
    capnp::MallocMessageBuilder m;
    auto r = m.initRoot<msg::Control>().initRegister();
    r.setRole(role);
    r.setRequestedId(requested_id);
    r.setIncarnation(incarnation);
    r.setHost(HostName());
    r.setPid(::getpid());
    r.setDataEndpoint(data_endpoint);
    r.setLocalEndpoint(local_endpoint);
    r.setHostKey(LocalHostKey());
    r.setLaunchToken(launch_token_);
    RETURN_IF_ERROR(Send(m));
  }
  const auto until = std::chrono::steady_clock::now() + deadline;
  while (std::chrono::steady_clock::now() < until) {
    if (stop != nullptr && stop->load()) return Cancelled("stopped by a signal while joining");
    ASSIGN_OR_RETURN(bool readable, socket_->WaitReadable(std::chrono::milliseconds(100)));
    if (!readable) continue;
    Message frames;
    ASSIGN_OR_RETURN(bool got, socket_->Recv(&frames, 1));
    if (!got) continue;
    std::optional<NodeAssignment> assignment;
    Status s = WithDecoded<msg::Control>(frames[0], [&](msg::Control::Reader c) -> Status {
      switch (c.which()) {
        case msg::Control::ASSIGNMENT: {
          ASSIGN_OR_RETURN(NodeAssignment a, ReadAssignment(c.getAssignment()));
          assignment = std::move(a);
          return OkStatus();
        }
        case msg::Control::SHUTDOWN:
          return Cancelled("the coordinator refused to start this node: " +
                           std::string(c.getShutdown().getReason().cStr()));
        case msg::Control::ERROR:
          return InvalidArgument("the coordinator refused to register this node: " +
                                 std::string(c.getError().cStr()));
        default:
          return OkStatus();  // heartbeats before the assignment
      }
    });
    RETURN_IF_ERROR(s);
    if (assignment) {
      node_id_ = assignment->node_id;
      ControlLinkOptions o;
      o.node_id = node_id_;
      o.incarnation = incarnation;
      o.role = role;
      o.heartbeat = std::chrono::milliseconds(assignment->heartbeat_ms);
      o.timeout = std::chrono::milliseconds(assignment->timeout_ms);
      o.coordinator = coordinator_;
      o.grace = std::chrono::seconds(assignment->config.cluster.coordinator_grace_s);
      o.host = HostName();
      o.pid = ::getpid();
      o.data_endpoint = data_endpoint;
      o.local_endpoint = local_endpoint;
      o.host_key = LocalHostKey();
      o.launch_token = launch_token_;
      o.membership_epoch = assignment->membership_epoch;
      ASSIGN_OR_RETURN(link_, ControlLink::Start(ctx_, std::move(socket_), o));
      // Started by a launcher that holds the coordinator: until now this
      // node dies with it; from now on it outlives it for the grace period,
      // waiting for a restarted coordinator to take it back.
      if (o.grace.count() > 0) ::prctl(PR_SET_PDEATHSIG, 0);
      return *std::move(assignment);
    }
  }
  return DeadlineExceeded("no assignment from the coordinator at " + coordinator_ + " within " +
                          std::to_string(deadline.count()) + " s of registering");
}

Status ControlChannel::Drain(const std::function<Status(msg::Control::Reader)>& fn) {
  if (link_ == nullptr) return Internal("control: Drain before joining");
  return link_->Drain(fn);
}

Status ControlChannel::Tick() {
  if (link_ == nullptr) return Internal("control: Tick before joining");
  return link_->Tick();
}

int64_t PeakRssBytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::atoll(line.c_str() + 6) * 1024;
  }
  return -1;
}

}  // namespace pstrain
