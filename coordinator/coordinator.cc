#include "coordinator/coordinator.h"

#include <capnp/message.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "common/base/logging.h"
#include "common/data/handout.h"
#include "common/data/job_data.h"
#include "common/nn/metrics.h"
#include "common/nn/model.h"
#include "common/nn/optimizer.h"
#include "common/ps/keys.h"
#include "common/ps/weights_digest.h"
#include "coordinator/liveness.h"

namespace pstrain {
namespace {

using Clock = std::chrono::steady_clock;

const char* RoleName(msg::Role r) {
  switch (r) {
    case msg::Role::SERVER:
      return "server";
    case msg::Role::WORKER:
      return "worker";
    default:
      return "coordinator";
  }
}

}  // namespace

double Coordinator::Since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

Coordinator::Coordinator(ZmqContext& ctx, CoordinatorOptions options, Console* console,
                         MetricsLog* metrics)
    : ctx_(ctx), options_(std::move(options)), console_(console), metrics_(metrics) {}

Coordinator::~Coordinator() = default;

double Coordinator::SinceStart() const { return Since(run_start_); }

StatusOr<std::string> Coordinator::Bind() {
  SocketOptions o;
  o.max_message_bytes = static_cast<int64_t>(kMaxHeaderBytes);
  ASSIGN_OR_RETURN(socket_, Socket::Create(ctx_, SocketKind::kRouter, o));
  StatusOr<std::string> bound = socket_->Bind(TcpEndpoint(options_.bind_address, options_.port));
  if (!bound.ok()) {
    return Unavailable("cannot listen on port " + std::to_string(options_.port) + " of " +
                       options_.bind_address + " (" + bound.status().message() +
                       "): is the job's coordinator still running?");
  }
  endpoint_ = *bound;
  RETURN_IF_ERROR(StartStatusServer());
  return endpoint_;
}

std::vector<Coordinator::Node*> Coordinator::NodesOf(msg::Role role) {
  std::vector<Node*> out;
  for (auto& [id, n] : nodes_) {
    if (n.role == role) out.push_back(&n);
  }
  std::sort(out.begin(), out.end(), [](Node* a, Node* b) { return a->id < b->id; });
  return out;
}

std::vector<Coordinator::Node*> Coordinator::LiveWorkers() {
  std::vector<Node*> live;
  for (Node* w : NodesOf(msg::Role::WORKER)) {
    if (w->ready) live.push_back(w);
  }
  return live;
}

std::vector<int> Coordinator::LiveWorkerIds() {
  std::vector<int> ids;
  for (Node* w : LiveWorkers()) ids.push_back(w->id);
  return ids;
}

Status Coordinator::SendTo(const Node& n, capnp::MessageBuilder& m) {
  Message frames;
  frames.push_back(Frame::Copy(n.identity));
  frames.push_back(EncodeFrame(m));
  return socket_->Send(frames, /*dontwait=*/true)
      .WithContext(std::string("sending to ") + RoleName(n.role) + " " + std::to_string(n.id));
}

void Coordinator::ShutdownAll(int code, const std::string& reason) {
  for (auto& [identity, n] : nodes_) {
    capnp::MallocMessageBuilder m;
    auto s = m.initRoot<msg::Control>().initShutdown();
    s.setExitCode(code);
    s.setReason(reason);
    (void)SendTo(n, m);  // best effort: a dead node cannot be told
  }
}

Status Coordinator::BroadcastMembership() {
  std::vector<Node*> workers = NodesOf(msg::Role::WORKER);
  for (auto& [identity, n] : nodes_) {
    capnp::MallocMessageBuilder m;
    auto mb = m.initRoot<msg::Control>().initMembership();
    mb.setMembershipEpoch(membership_epoch_);
    auto ids = mb.initWorkers(static_cast<unsigned>(workers.size()));
    auto incs = mb.initWorkerIncarnations(static_cast<unsigned>(workers.size()));
    for (size_t i = 0; i < workers.size(); ++i) {
      ids.set(static_cast<unsigned>(i), workers[i]->id);
      incs.set(static_cast<unsigned>(i), workers[i]->incarnation);
    }
    const std::vector<int>& slot_owners = book_.slot_owners();
    auto owners = mb.initSlotOwners(static_cast<unsigned>(slot_owners.size()));
    for (size_t s = 0; s < slot_owners.size(); ++s) {
      owners.set(static_cast<unsigned>(s), slot_owners[s]);
    }
    Status st = SendTo(n, m);
    if (!st.ok() && st.code() != StatusCode::kUnavailable) return st;
  }
  return OkStatus();
}

StatusOr<Coordinator::Node> Coordinator::Forget(const Node& n, const char* event,
                                                const std::string& reason, double detect_seconds,
                                                const char* cause) {
  const Node gone = n;  // `n` lives in nodes_, erased below
  JsonObject line;
  line.Add("event", event)
      .Add("role", RoleName(gone.role))
      .Add("id", gone.id)
      .Add("pid", gone.pid)
      .Add("host", gone.host)
      .Add("reason", reason);
  if (cause != nullptr) line.Add("cause", cause);
  if (detect_seconds >= 0) line.Add("detect_seconds", detect_seconds);
  RETURN_IF_ERROR(metrics_->Write(line.Add("time", SinceStart())));
  dead_[gone.identity] =
      std::string(event == std::string("node_failed") ? "declared dead: " : "dropped: ") + reason;
  if (gone.launched) dead_pids_.push_back(gone.pid);
  nodes_.erase(gone.identity);
  PublishMembership();
  return gone;
}

StatusOr<Coordinator::Node> Coordinator::Bury(const Node& dead, const Verdict& v) {
  ++failures_;
  PSTRAIN_LOG(WARNING) << RoleName(dead.role) << " " << dead.id << " (pid " << dead.pid << " on "
                       << dead.host << ") is dead (" << v.cause << "): " << v.why;
  board_.Update([&](ClusterStatus& st) {
    ++st.deaths_by_cause[v.cause];
    if (NodeStatus* ns = st.Find(RoleName(dead.role), dead.id)) ns->death = v.cause;
  });
  ASSIGN_OR_RETURN(Node gone, Forget(dead, "node_failed", v.why, v.detect_seconds, v.cause));
  if (death_observer_) death_observer_(gone.role, gone.id, gone.pid);
  return gone;
}

Status Coordinator::DropUnready(const Node& n, const std::string& why) {
  PSTRAIN_LOG(WARNING) << RoleName(n.role) << " " << n.id << " (pid " << n.pid << " on " << n.host
                       << ") registered but never became ready: " << why
                       << "; dropped, its place is free again";
  for (size_t r = 0; r < backup_.size(); ++r) {
    if (backup_[r] == n.id && n.role == msg::Role::SERVER) backup_[r] = -1;
  }
  RETURN_IF_ERROR(Forget(n, "node_dropped", "never ready: " + why, -1, nullptr).status());
  // The servers admitted it with the membership of its joining: no more.
  ++membership_epoch_;
  return BroadcastMembership();
}

Status Coordinator::OnWorkerDeath(const Node& dead, const Verdict& v) {
  ASSIGN_OR_RETURN(const Node gone, Bury(dead, v));
  const std::string& why = v.why;
  const std::vector<int> live = LiveWorkerIds();
  if (live.empty())
    return Unavailable("every worker has died; the last: worker " + std::to_string(gone.id) + ": " +
                       why);
  std::vector<int> survivors = live;
  if (handover_.has_value() && handover_->joiner == gone.id) {
    // Its slots go to the survivors like any dead worker's: their givers
    // take them back at their current step.
    handover_.reset();
  } else if (handover_.has_value()) {
    // Slots it had not said where they go over are its own again, and a
    // worker still waiting to join takes over nothing (unless it is all
    // that is left).
    for (auto it = handover_->giver.begin(); it != handover_->giver.end();) {
      if (it->second != gone.id) {
        ++it;
        continue;
      }
      book_.Reclaim(it->first, gone.id);
      it = handover_->giver.erase(it);
    }
    if (survivors.size() > 1) {
      survivors.erase(std::remove(survivors.begin(), survivors.end(), handover_->joiner),
                      survivors.end());
    }
  }
  // Its slots and test rows go to the survivors (WorkBook::WorkerDied).
  const WorkBook::Death death = book_.WorkerDied(gone.id, survivors);
  ++membership_epoch_;
  RETURN_IF_ERROR(BroadcastMembership());
  pending_acks_.clear();
  for (int w : live) pending_acks_[w] = false;
  recovery_start_ = Clock::now();
  recovering_ = "worker " + std::to_string(gone.id);
  recovering_role_ = "worker";

  // The epoch running: a survivor that had already finished trains the
  // dead worker's slots, and the dead one's test rows are evaluated by
  // the survivors they went to.
  for (const auto& [w, slots] : death.redo) {
    for (Node* n : NodesOf(msg::Role::WORKER)) {
      if (n->id == w) RETURN_IF_ERROR(SendStartEpoch(*n, slots));
    }
  }
  for (const WorkBook::EvalRange& r : death.moved) {
    for (Node* n : NodesOf(msg::Role::WORKER)) {
      if (n->id != r.worker) continue;
      PSTRAIN_LOG(INFO) << "test rows " << r.begin << ".." << r.end << " of worker " << gone.id
                        << " go to worker " << n->id;
      RETURN_IF_ERROR(SendEvaluate(*n, r.begin, r.end));
    }
  }
  return OkStatus();
}

Status Coordinator::SendStartEpoch(const Node& n, const std::vector<int>& only,
                                   const std::vector<int64_t>& from) {
  capnp::MallocMessageBuilder m;
  auto se = m.initRoot<msg::Control>().initStartEpoch();
  se.setEpoch(current_.epoch);
  se.setFirstClock(current_.first_clock);
  se.setSteps(current_.steps);
  se.setFirstStep(current_.first_step);
  const std::vector<int>& slot_owners = book_.slot_owners();
  auto owners = se.initSlotOwners(static_cast<unsigned>(slot_owners.size()));
  for (size_t s = 0; s < slot_owners.size(); ++s) {
    owners.set(static_cast<unsigned>(s), slot_owners[s]);
  }
  auto slots = se.initOnlySlots(static_cast<unsigned>(only.size()));
  for (size_t i = 0; i < only.size(); ++i) slots.set(static_cast<unsigned>(i), only[i]);
  auto first = se.initSlotFrom(static_cast<unsigned>(from.size()));
  for (size_t i = 0; i < from.size(); ++i) first.set(static_cast<unsigned>(i), from[i]);
  return SendTo(n, m);
}

Status Coordinator::StartHandover(const Node& joiner) {
  // One at a time; a worker joining meanwhile, or between epochs, gets its
  // slots at the next epoch.
  if (handover_.has_value() || current_.epoch < 0 || book_.epoch() != current_.epoch) {
    return OkStatus();
  }
  const std::map<int, int> moved = book_.WorkerJoined(joiner.id);
  if (moved.empty()) return OkStatus();
  handover_ = Handover{joiner.id, ++membership_epoch_, moved, {}, Clock::now()};
  std::string list;
  for (const auto& [slot, giver] : moved) {
    list +=
        (list.empty() ? "" : ", ") + std::to_string(slot) + " of worker " + std::to_string(giver);
  }
  PSTRAIN_LOG(INFO) << "worker " << joiner.id << " joins epoch " << current_.epoch + 1
                    << " with slot(s) " << list << " at their next step";
  return BroadcastMembership();
}

Status Coordinator::OnReleased(const Node& n, msg::MembershipAck::Reader ack) {
  if (!handover_.has_value() || ack.getMembershipEpoch() < handover_->membership_epoch) {
    return OkStatus();
  }
  const auto slots = ack.getReleasedSlots();
  const auto at = ack.getReleasedAt();
  if (slots.size() != at.size()) {
    return InvalidArgument("a membershipAck with " + std::to_string(slots.size()) +
                           " released slots and " + std::to_string(at.size()) + " steps");
  }
  for (unsigned i = 0; i < slots.size(); ++i) {
    auto g = handover_->giver.find(slots[i]);
    if (g == handover_->giver.end() || g->second != n.id) continue;
    if (at[i] < current_.first_step || at[i] > current_.steps) {
      return InvalidArgument("slot " + std::to_string(slots[i]) + " released at step " +
                             std::to_string(at[i]) + " of an epoch of " +
                             std::to_string(current_.steps));
    }
    handover_->from[slots[i]] = at[i];
    handover_->giver.erase(g);
  }
  // It acted on the membership that moved them: every one must be named.
  for (const auto& [slot, giver] : handover_->giver) {
    if (giver == n.id) {
      return Internal("worker " + std::to_string(n.id) + " acknowledged membership " +
                      std::to_string(ack.getMembershipEpoch()) + " without saying where slot " +
                      std::to_string(slot) + " goes to worker " +
                      std::to_string(handover_->joiner));
    }
  }
  return OkStatus();
}

Status Coordinator::CheckHandover() {
  if (!handover_.has_value() || !handover_->giver.empty()) return OkStatus();
  const Handover h = *std::exchange(handover_, std::nullopt);
  Node* joiner = nullptr;
  for (Node* w : LiveWorkers()) {
    if (w->id == h.joiner) joiner = w;
  }
  if (joiner == nullptr) return OkStatus();
  std::vector<int64_t> from(book_.slot_owners().size(), current_.first_step);
  std::string slots = "[";
  int64_t first = current_.steps;
  for (const auto& [slot, step] : h.from) {
    from[static_cast<size_t>(slot)] = step;
    first = std::min(first, step);
    slots += std::to_string(slot) + ",";
  }
  if (slots.size() > 1) slots.pop_back();
  slots += "]";
  RETURN_IF_ERROR(metrics_->Write(JsonObject()
                                      .Add("event", "slots_handed")
                                      .Add("worker", h.joiner)
                                      .Add("epoch", current_.epoch + 1)
                                      .AddRaw("slots", slots)
                                      .Add("from_step", first)
                                      .Add("steps", current_.steps)
                                      .Add("seconds", Since(h.start))
                                      .Add("time", SinceStart())));
  PSTRAIN_LOG(INFO) << "worker " << h.joiner << " trains epoch " << current_.epoch + 1
                    << " from step " << first << " of " << current_.steps;
  return SendStartEpoch(*joiner, {}, from);
}

Status Coordinator::SendEvaluate(const Node& n, int64_t begin, int64_t end) {
  capnp::MallocMessageBuilder m;
  auto e = m.initRoot<msg::Control>().initEvaluate();
  e.setEpoch(current_.epoch);
  e.setBegin(begin);
  e.setEnd(end);
  e.setClock(clock_);
  return SendTo(n, m);
}

Status Coordinator::OnRegister(const std::string& identity, msg::Register::Reader r) {
  const msg::Role role = r.getRole();
  const int wanted =
      role == msg::Role::SERVER ? options_.config.cluster.servers : options_.config.cluster.workers;
  auto refuse = [&](const std::string& why) {
    capnp::MallocMessageBuilder m;
    m.initRoot<msg::Control>().setError(why);
    Node tmp;
    tmp.identity = identity;
    tmp.role = role;
    PSTRAIN_LOG(WARNING) << "refused a " << RoleName(role) << " from " << r.getHost().cStr() << ": "
                         << why;
    (void)SendTo(tmp, m);  // best effort: a stranger may be gone already
    return OkStatus();
  };
  if (role != msg::Role::SERVER && role != msg::Role::WORKER) {
    return refuse("only servers and workers register with the coordinator, not role " +
                  std::to_string(static_cast<int>(role)));
  }
  if (nodes_.count(identity) != 0) return OkStatus();  // a repeated registration
  if (!monitoring_ && !options_.launch_token.empty() &&
      std::string_view(r.getLaunchToken().cStr()) != options_.launch_token) {
    return refuse("this job is starting and admits only the nodes its launcher started");
  }
  std::vector<Node*> same = NodesOf(role);
  if (static_cast<int>(same.size()) >= wanted) {
    return refuse("the job already has its " + std::to_string(wanted) + " " + RoleName(role) + "s");
  }
  if (monitoring_ && role == msg::Role::SERVER && options_.config.cluster.replication < 2) {
    return refuse("servers join a running job only to back up its ranges (cluster.replication 2)");
  }
  int id = r.getRequestedId();
  auto taken = [&](int candidate) {
    return std::any_of(same.begin(), same.end(), [&](Node* n) { return n->id == candidate; });
  };
  if (id < 0 || taken(id)) {
    id = 0;
    while (taken(id)) ++id;
  }
  Node n;
  n.identity = identity;
  n.role = role;
  n.id = id;
  n.incarnation = r.getIncarnation();
  n.pid = r.getPid();
  n.host = r.getHost();
  n.endpoint = r.getDataEndpoint();
  n.local_endpoint = r.getLocalEndpoint();
  n.host_key = r.getHostKey();
  n.last_seen = n.registered = Clock::now();
  n.launched = !options_.launch_token.empty() &&
               std::string_view(r.getLaunchToken().cStr()) == options_.launch_token;
  if (role == msg::Role::SERVER && n.endpoint.empty()) return refuse("a server needs an endpoint");
  PSTRAIN_LOG(DEBUG) << RoleName(role) << " " << id << " registered from " << n.host << " pid "
                     << n.pid << (n.endpoint.empty() ? "" : " at " + n.endpoint);
  nodes_.emplace(identity, std::move(n));
  PublishMembership();
  if (monitoring_ && role == msg::Role::SERVER) {
    // A server in a dead one's place: the backup of every range that has
    // none (its assignment says which); the primaries start copying them to
    // it once it is ready.
    int ranges = 0;
    for (size_t i = 0; i < ranges_.size(); ++i) {
      if (backup_[i] >= 0 || primary_[i] == id) continue;
      backup_[i] = id;
      backup_ready_[i] = false;
      ++ranges;
    }
    PSTRAIN_LOG(WARNING) << "server " << id << " joined from " << r.getHost().cStr()
                         << " to back up " << ranges << " range(s)";
    ++membership_epoch_;
    return Assign();
  }
  if (monitoring_) {
    // A replacement joining a running job: it gets the job now, and once
    // it is ready a share of the slots from their next step on
    // (StartHandover), or from the next epoch on if none is training.
    PSTRAIN_LOG(WARNING) << "worker " << id << " joined from " << r.getHost().cStr();
    RETURN_IF_ERROR(metrics_->Write(JsonObject()
                                        .Add("event", "node_joined")
                                        .Add("role", "worker")
                                        .Add("id", id)
                                        .Add("pid", r.getPid())
                                        .Add("time", SinceStart())));
    ++membership_epoch_;
    RETURN_IF_ERROR(Assign());
  }
  return OkStatus();
}

Status Coordinator::Pump(std::chrono::milliseconds timeout, const Handler& handler) {
  if (stop_ != nullptr && stop_->load()) return Cancelled("stopped by a signal");
  ASSIGN_OR_RETURN(bool readable, socket_->WaitReadable(timeout));
  if (readable) RETURN_IF_ERROR(ReceiveAll(handler));
  const auto now = Clock::now();
  RETURN_IF_ERROR(SendHeartbeats(now));
  if (!monitoring_) return OkStatus();
  RETURN_IF_ERROR(DetectDeaths(now));
  RETURN_IF_ERROR(CheckRecovered());
  return CheckHandover();
}

Status Coordinator::ReceiveAll(const Handler& handler) {
  for (int i = 0; i < 1000; ++i) {
    Message frames;
    StatusOr<bool> got = socket_->Recv(&frames, 2);
    if (!got.ok()) {
      if (got.status().code() != StatusCode::kInvalidArgument) return got.status();
      ++refused_;
      PSTRAIN_LOG(WARNING) << "control: dropped a message: " << got.status().message();
      continue;
    }
    if (!*got) break;
    if (frames.empty()) continue;
    const std::string identity(reinterpret_cast<const char*>(frames[0].data()), frames[0].size());
    if (frames.size() != 2) {
      Refuse(identity, "peer " + PeerName(identity),
             "a message of " + std::to_string(frames.size() - 1) +
                 " frames; a control message is one frame");
      continue;
    }
    if (auto d = dead_.find(identity); d != dead_.end()) {
      // A node declared dead spoke again (it was paused, not gone): it
      // must not rejoin with its old state.
      Node tmp;
      tmp.identity = identity;
      tmp.role = msg::Role::WORKER;
      capnp::MallocMessageBuilder m;
      auto s = m.initRoot<msg::Control>().initShutdown();
      s.setExitCode(1);
      s.setReason(d->second);
      (void)SendTo(tmp, m);
      continue;
    }
    std::string peer = "unregistered peer " + PeerName(identity);
    Status s = WithDecoded<msg::Control>(frames[1], [&](msg::Control::Reader c) -> Status {
      if (c.which() == msg::Control::REGISTER) return OnRegister(identity, c.getRegister());
      auto it = nodes_.find(identity);
      if (it == nodes_.end() && c.which() == msg::Control::HEARTBEAT) {
        // A node of a coordinator before this one: it will say who it is.
        capnp::MallocMessageBuilder ask;
        ask.initRoot<msg::Control>().setRejoinAsk();
        Node tmp;
        tmp.identity = identity;
        (void)SendTo(tmp, ask);
        return OkStatus();
      }
      if (it == nodes_.end() && c.which() == msg::Control::REJOIN) {
        // This job runs without it (it was started anew, or the node was
        // replaced): it must not linger.
        capnp::MallocMessageBuilder bye;
        auto sd = bye.initRoot<msg::Control>().initShutdown();
        sd.setExitCode(1);
        sd.setReason("the job's coordinator restarted without this node");
        Node tmp;
        tmp.identity = identity;
        (void)SendTo(tmp, bye);
        return OkStatus();
      }
      if (it == nodes_.end()) {
        return InvalidArgument("a " + ControlKindName(c.which()) +
                               " message from an unregistered peer");
      }
      Node& n = it->second;
      peer = std::string(RoleName(n.role)) + " " + std::to_string(n.id);
      if (!RoleMaySend(n.role, c.which())) {
        return InvalidArgument("a " + ControlKindName(c.which()) + " message, which " +
                               RoleName(n.role) + "s never send");
      }
      n.last_seen = Clock::now();
      switch (c.which()) {
        case msg::Control::HEARTBEAT:
          n.beats = true;
          NoteBusy(n, c.getHeartbeat().getComputeIdleMs());
          return OkStatus();
        case msg::Control::READY:
          n.ready = true;
          PublishMembership();
          if (monitoring_ && n.role == msg::Role::SERVER) return ReReplicate(n);
          if (monitoring_) return StartHandover(n);
          return OkStatus();
        case msg::Control::REPLICA_READY:
          return OnReplicaReady(n, c.getReplicaReady());
        case msg::Control::CHECKPOINT_DONE:
          // A cut answers whenever its server has written it, during any wait.
          if (cuts_.count(c.getCheckpointDone().getToken()) != 0) {
            return OnCutDone(n, c.getCheckpointDone());
          }
          return handler(n, c);
        case msg::Control::MEMBERSHIP_ACK:
          if (c.getMembershipAck().getMembershipEpoch() == membership_epoch_ &&
              pending_acks_.count(n.id) != 0) {
            pending_acks_[n.id] = true;
          }
          return OnReleased(n, c.getMembershipAck());
        default:
          return handler(n, c);
      }
    });
    if (!s.ok()) {
      if (s.code() != StatusCode::kInvalidArgument) return s;
      Refuse(identity, peer, s.message());
    }
  }
  return OkStatus();
}

void Coordinator::Refuse(const std::string& identity, const std::string& peer,
                         const std::string& why) {
  ++refused_;
  board_.Update([&](ClusterStatus& st) { st.refused_messages = refused_; });
  int64_t held_back = 0;
  if (refusal_log_.Allow(Clock::now(), &held_back)) {
    PSTRAIN_LOG(WARNING) << "control: refused from " << peer << ": " << why
                         << (held_back > 0
                                 ? " (" + std::to_string(held_back) + " more refusals not logged)"
                                 : std::string());
  }
  Node to;
  to.identity = identity;
  to.role = msg::Role::WORKER;
  capnp::MallocMessageBuilder m;
  m.initRoot<msg::Control>().setError("refused: " + why);
  (void)SendTo(to, m);  // best effort: the peer may be gone
}

Status Coordinator::SendHeartbeats(std::chrono::steady_clock::time_point now) {
  const auto hb = std::chrono::milliseconds(options_.config.cluster.heartbeat_ms);
  if (now - last_heartbeat_ < hb) return OkStatus();
  last_heartbeat_ = now;
  for (auto& [identity, n] : nodes_) {
    capnp::MallocMessageBuilder m;
    auto h = m.initRoot<msg::Control>().initHeartbeat();
    h.setNodeId(-1);
    h.setRole(msg::Role::COORDINATOR);
    Status s = SendTo(n, m);
    if (!s.ok() && s.code() != StatusCode::kUnavailable) return s;
    // ZeroMQ drops a peer whose connection closed: a killed process is
    // noticed here long before its heartbeats are missed.
    n.unreachable = s.ok() ? 0 : n.unreachable + 1;
  }
  return OkStatus();
}

std::optional<Coordinator::Verdict> Coordinator::Judge(const Node& n, Clock::time_point now,
                                                       const std::vector<int>& exited) const {
  const auto hb = std::chrono::milliseconds(options_.config.cluster.heartbeat_ms);
  const auto timeout = std::chrono::milliseconds(options_.config.cluster.timeout_ms);
  const auto start_deadline = std::chrono::seconds(options_.config.cluster.start_timeout_s);
  if (n.launched && std::find(exited.begin(), exited.end(), n.pid) != exited.end()) {
    return Verdict{kCauseExited, "its process exited", Since(n.last_seen)};
  }
  if (n.unreachable >= 2 && now - n.last_seen > 2 * hb) {
    return Verdict{kCauseClosed, "its connection closed", Since(n.last_seen)};
  }
  // A node beats from its own thread from the assignment on, loading or
  // not; one that never beat (a client of its own) has the start deadline.
  if (!n.ready && !n.beats) {
    if (now - n.registered <= start_deadline) return std::nullopt;
    return Verdict{kCauseNotReady,
                   "not ready " + std::to_string(start_deadline.count()) + " s after it registered",
                   Since(n.registered)};
  }
  if (now - n.last_seen <= timeout) {
    if (n.ready || now - n.registered <= start_deadline) return std::nullopt;
    return Verdict{kCauseNotReady,
                   "not ready " + std::to_string(start_deadline.count()) + " s after it registered",
                   Since(n.registered)};
  }
  // Only the launcher's own nodes on this host are looked up by pid.
  const char* cause = n.launched && n.host == HostName() ? SilentProcessCause(n.pid) : kCauseSilent;
  const std::string how = n.launched && n.host == HostName()
                              ? DescribeSilence(cause)
                              : "stopped, hung or cut off: it runs on " + n.host;
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - n.last_seen).count();
  return Verdict{cause, "silent for " + std::to_string(ms) + " ms; " + how, Since(n.last_seen)};
}

Status Coordinator::DetectDeaths(Clock::time_point now) {
  // This process itself stood still (stopped, starved of the CPU): every
  // node's silence would be ours. Hear them out for a timeout first.
  const auto timeout = std::chrono::milliseconds(options_.config.cluster.timeout_ms);
  if (last_judged_ != Clock::time_point{} && now - last_judged_ > timeout / 2) {
    PSTRAIN_LOG(WARNING)
        << "the coordinator did not run for "
        << std::chrono::duration_cast<std::chrono::milliseconds>(now - last_judged_).count()
        << " ms; every node gets a timeout to be heard before any is judged";
    for (auto& [identity, n] : nodes_) n.last_seen = std::max(n.last_seen, now);
  }
  last_judged_ = now;
  const std::vector<int> exited = probe_ ? probe_() : std::vector<int>{};
  std::vector<std::pair<std::string, Verdict>> deaths;  // identity, verdict
  for (auto& [identity, n] : nodes_) {
    if (std::optional<Verdict> v = Judge(n, now, exited)) deaths.emplace_back(identity, *v);
  }
  for (const auto& [identity, v] : deaths) {
    auto it = nodes_.find(identity);
    if (it == nodes_.end()) continue;
    const Node& n = it->second;
    if (n.role == msg::Role::SERVER) {
      RETURN_IF_ERROR(OnServerDeath(n, v));
      continue;
    }
    RETURN_IF_ERROR(n.ready ? OnWorkerDeath(n, v) : DropUnready(n, v.why));
  }
  return OkStatus();
}

Status Coordinator::CheckRecovered() {
  if (pending_acks_.empty()) return OkStatus();
  // Survivors that died meanwhile are not waited for.
  for (auto it = pending_acks_.begin(); it != pending_acks_.end();) {
    const std::vector<int> live = LiveWorkerIds();
    it = std::find(live.begin(), live.end(), it->first) == live.end() ? pending_acks_.erase(it)
                                                                      : std::next(it);
  }
  if (std::all_of(pending_acks_.begin(), pending_acks_.end(), [](auto& p) { return p.second; })) {
    RETURN_IF_ERROR(
        metrics_->Write(JsonObject()
                            .Add("event", "recovered")
                            .Add("role", recovering_role_)
                            .Add("failed", recovering_)
                            .Add("recover_seconds", Since(recovery_start_))
                            .Add("live_workers", static_cast<int>(LiveWorkerIds().size()))
                            .Add("time", SinceStart())));
    pending_acks_.clear();
  }
  return OkStatus();
}

Status Coordinator::WaitUntil(const std::function<bool()>& done, const std::string& what,
                              std::chrono::seconds deadline, const Handler& handler) {
  const auto until = Clock::now() + deadline;
  while (!done()) {
    if (Clock::now() >= until) {
      return DeadlineExceeded("waited " + std::to_string(deadline.count()) + " s for " + what);
    }
    RETURN_IF_ERROR(Pump(std::chrono::milliseconds(50), handler));
  }
  return OkStatus();
}

Status Coordinator::Register() {
  const ClusterConfig& cl = options_.config.cluster;
  auto ignore = [](Node&, msg::Control::Reader) { return OkStatus(); };
  return WaitUntil(
      [&] {
        return static_cast<int>(NodesOf(msg::Role::SERVER).size()) == cl.servers &&
               static_cast<int>(NodesOf(msg::Role::WORKER).size()) == cl.workers;
      },
      std::to_string(cl.servers) + " server(s) and " + std::to_string(cl.workers) +
          " worker(s) to register at " + endpoint_,
      std::chrono::seconds(cl.start_timeout_s), ignore);
}

// Sends the assignment to every node that has not got one yet (all of them
// at the start; a replacement later).
StatusOr<std::vector<KeyRange>> Coordinator::PlanKeyRanges(const Model& model) const {
  const JobConfig& c = options_.config;
  const KeyLayout keys(model.layout());
  if (model.sparse() && (c.checkpoint_every_steps > 0 || c.checkpoint_every_seconds > 0)) {
    return InvalidArgument(
        "checkpoint.every_steps and checkpoint.every_seconds: embedding rows are applied as they "
        "come, with no clock to cut them at; a sparse job "
        "checkpoints between epochs (checkpoint.every_epochs)");
  }
  // A sparse model's dense part may be smaller than one block a server:
  // the servers past its blocks then hold embedding rows only.
  const int dense_servers =
      model.sparse() ? std::min(c.cluster.servers, static_cast<int>(keys.blocks().size()))
                     : c.cluster.servers;
  ASSIGN_OR_RETURN(std::vector<KeyRange> slices, SliceKeys(keys, dense_servers));
  for (const KeyRange& r : slices) {
    const size_t bytes = keys.Flat(r).size() * sizeof(float);
    if (c.cluster.replication > 1 && bytes > kMaxDataFrameBytes) {
      return InvalidArgument("cluster.replication " + std::to_string(c.cluster.replication) +
                             " forwards a whole key range per step, and a range of this model on " +
                             std::to_string(c.cluster.servers) + " server(s) holds " +
                             std::to_string(bytes >> 20) + " MiB, more than the " +
                             std::to_string(kMaxDataFrameBytes >> 20) +
                             " MiB a message may carry: use more servers (cluster.servers)");
    }
  }
  // A sparse model's rows: one bucket a server, placed, backed up and
  // promoted like the key ranges.
  if (model.sparse()) {
    for (int b = 0; b < c.cluster.servers; ++b) {
      slices.push_back(RowBucketRange(static_cast<uint32_t>(b)));
    }
  }
  return slices;
}

Status Coordinator::WriteMembershipEvent() {
  std::vector<Node*> servers = NodesOf(msg::Role::SERVER);
  std::string servers_json = "[", workers_json = "[";
  for (Node* s : servers) {
    servers_json += (servers_json.size() > 1 ? "," : "") + JsonObject()
                                                               .Add("id", s->id)
                                                               .Add("endpoint", s->endpoint)
                                                               .Add("pid", s->pid)
                                                               .Add("host", s->host)
                                                               .str();
  }
  for (Node* w : NodesOf(msg::Role::WORKER)) {
    workers_json += (workers_json.size() > 1 ? "," : "") +
                    JsonObject().Add("id", w->id).Add("pid", w->pid).Add("host", w->host).str();
  }
  RETURN_IF_ERROR(
      metrics_->Write(JsonObject()
                          .Add("event", "membership")
                          .Add("coordinator", endpoint_)
                          .Add("membership_epoch", static_cast<int64_t>(membership_epoch_))
                          .AddRaw("servers", servers_json + "]")
                          .AddRaw("workers", workers_json + "]")));
  return OkStatus();
}

StatusOr<std::vector<KeyRange>> Coordinator::PlanModel() {
  const JobConfig& c = options_.config;
  ASSIGN_OR_RETURN(std::unique_ptr<Model> model,
                   Model::Build(c.layers, input_dim_, num_classes_, 1, input_shape_,
                                SparseOptionsOf(c, nullptr)));
  ASSIGN_OR_RETURN(std::vector<KeyRange> slices, PlanKeyRanges(*model));
  tensors_.clear();
  for (const TensorSpec& t : model->layout().tensors()) tensors_.push_back({t.name, t.shape});
  board_.Update([&](ClusterStatus& s) {
    s.params = static_cast<int64_t>(model->layout().parameter_count());
    s.model_bytes = static_cast<int64_t>(model->layout().total_floats() * sizeof(float));
  });
  return slices;
}

Status Coordinator::Assign() {
  const JobConfig& c = options_.config;
  ASSIGN_OR_RETURN(const std::vector<KeyRange> slices, PlanModel());
  NodeAssignment a;
  a.membership_epoch = membership_epoch_;
  a.job_text = options_.job_text;
  a.job_name = options_.job_name;
  a.job_base_dir = options_.base_dir;
  a.overrides = options_.overrides;
  a.input_dim = input_dim_;
  a.num_classes = num_classes_;
  a.input_shape = input_shape_;
  a.heartbeat_ms = c.cluster.heartbeat_ms;
  a.timeout_ms = c.cluster.timeout_ms;
  // A node joining a running job starts from what the others hold now.
  a.restore_dir = monitoring_ ? "" : restore_dir_;
  std::vector<Node*> servers = NodesOf(msg::Role::SERVER);
  if (ranges_.empty()) {
    // Range i lives on server i, row bucket b on server b; with
    // replication 2 the backup is on the next server.
    ranges_ = slices;
    for (size_t i = 0; i < ranges_.size(); ++i) {
      const size_t at = IsRowBucket(ranges_[i]) ? RowBucketOf(ranges_[i]) : i;
      primary_.push_back(servers[at]->id);
      backup_.push_back(c.cluster.replication > 1 ? servers[(at + 1) % servers.size()]->id : -1);
    }
    backup_ready_.assign(ranges_.size(), false);  // until each copy is in
  }
  a.servers = ServerTable();
  for (Node* w : NodesOf(msg::Role::WORKER)) {
    a.workers.push_back(w->id);
    a.worker_incarnations.push_back(w->incarnation);
  }
  const bool joining = monitoring_;
  std::vector<std::string> vanished;  // joiners gone before their assignment
  for (auto& [identity, n] : nodes_) {
    if (joining && n.ready) continue;
    a.node_id = n.id;
    capnp::MallocMessageBuilder m;
    BuildAssignment(a, m.initRoot<msg::Control>().initAssignment());
    Status sent = SendTo(n, m);
    if (joining && sent.code() == StatusCode::kUnavailable) {
      vanished.push_back(identity);
      continue;
    }
    RETURN_IF_ERROR(sent);
  }
  for (const std::string& identity : vanished) {
    auto it = nodes_.find(identity);
    if (it != nodes_.end()) {
      RETURN_IF_ERROR(DropUnready(it->second, "its connection closed before its assignment"));
    }
  }
  if (joining) return BroadcastMembership();  // servers learn the new incarnation

  auto ignore = [](Node&, msg::Control::Reader) { return OkStatus(); };
  // A node of the launcher's that exits meanwhile (a checkpoint it cannot
  // restore, say) fails the start at once: its own log line said why.
  const Node* quit = nullptr;
  RETURN_IF_ERROR(WaitUntil(
      [&] {
        for (int pid : probe_ ? probe_() : std::vector<int>{}) {
          for (const auto& [identity, n] : nodes_) {
            if (n.launched && n.pid == pid) quit = &n;
          }
        }
        return quit != nullptr ||
               std::all_of(nodes_.begin(), nodes_.end(), [](auto& p) { return p.second.ready; });
      },
      "every node to load its data and report ready",
      std::chrono::seconds(c.cluster.start_timeout_s), ignore));
  if (quit != nullptr) {
    dead_pids_.push_back(quit->pid);
    return Unavailable(std::string(RoleName(quit->role)) + " " + std::to_string(quit->id) +
                       " (pid " + std::to_string(quit->pid) +
                       ") exited before it was ready; its log says why" +
                       (restore_dir_.empty() ? "" : " (it was restoring " + restore_dir_ + ")"));
  }
  monitoring_ = true;
  book_ = WorkBook(c.cluster.workers);
  book_.SpreadSlots(LiveWorkerIds());

  return WriteMembershipEvent();
}

std::vector<ServerEntry> Coordinator::ServerTable() {
  std::vector<ServerEntry> table;
  for (Node* s : NodesOf(msg::Role::SERVER)) {
    ServerEntry e;
    e.id = s->id;
    e.endpoint = s->endpoint;
    if (options_.config.cluster.ipc) e.local_endpoint = s->local_endpoint;
    e.host_key = s->host_key;
    e.incarnation = s->incarnation;
    for (size_t r = 0; r < ranges_.size(); ++r) {
      if (primary_[r] == s->id) e.ranges.push_back(ranges_[r]);
      if (backup_[r] == s->id) e.backup_ranges.push_back(ranges_[r]);
    }
    table.push_back(std::move(e));
  }
  return table;
}

Status Coordinator::BroadcastRouting() {
  ++membership_epoch_;
  const std::vector<ServerEntry> table = ServerTable();
  for (auto& [identity, n] : nodes_) {
    capnp::MallocMessageBuilder m;
    auto rt = m.initRoot<msg::Control>().initRouting();
    rt.setMembershipEpoch(membership_epoch_);
    auto list = rt.initServers(static_cast<unsigned>(table.size()));
    for (size_t i = 0; i < table.size(); ++i)
      BuildServerInfo(table[i], list[static_cast<unsigned>(i)]);
    Status st = SendTo(n, m);
    if (!st.ok() && st.code() != StatusCode::kUnavailable) return st;
  }
  return OkStatus();
}

Status Coordinator::ReReplicate(const Node& server) {
  int ranges = 0;
  for (size_t r = 0; r < ranges_.size(); ++r) {
    if (backup_[r] != server.id) continue;
    copying_[r] = Clock::now();
    ++ranges;
  }
  PSTRAIN_LOG(WARNING) << "server " << server.id << " is ready: the primaries send it the "
                       << ranges << " range(s) it backs up";
  RETURN_IF_ERROR(metrics_->Write(JsonObject()
                                      .Add("event", "node_joined")
                                      .Add("role", "server")
                                      .Add("id", server.id)
                                      .Add("pid", server.pid)
                                      .Add("backup_ranges", ranges)
                                      .Add("time", SinceStart())));
  return BroadcastRouting();
}

Status Coordinator::OnReplicaReady(const Node& n, msg::ReplicaReady::Reader r) {
  const KeyRange keys{r.getKeyBegin(), r.getKeyEnd()};
  for (size_t i = 0; i < ranges_.size(); ++i) {
    if (ranges_[i] != keys || backup_[i] != n.id) continue;
    backup_ready_[i] = true;
    auto copy = copying_.find(i);
    if (copy == copying_.end()) return OkStatus();  // the job's first copies
    PSTRAIN_LOG(WARNING) << "keys " << ToString(keys) << " have a backup again, on server " << n.id
                         << " (from clock " << r.getVersion() << ")";
    RETURN_IF_ERROR(metrics_->Write(JsonObject()
                                        .Add("event", "re_replicated")
                                        .Add("keys", ToString(keys))
                                        .Add("server", n.id)
                                        .Add("primary", primary_[i])
                                        .Add("clock", r.getVersion())
                                        .Add("seconds", Since(copy->second))
                                        .Add("time", SinceStart())));
    copying_.erase(copy);
    return OkStatus();
  }
  return OkStatus();  // a copy for a routing since replaced
}

std::string Coordinator::ResumeAdvice() const {
  const JobConfig& c = options_.config;
  if (c.checkpoint_dir.empty()) {
    return "this job takes no checkpoints (checkpoint.dir is not set), so it must start over; "
           "checkpoint.dir and cluster.replication = 2 let a job survive this";
  }
  StatusOr<Manifest> newest = FindNewestCheckpoint(c.checkpoint_dir, nullptr);
  if (!newest.ok()) {
    return "no checkpoint in " + c.checkpoint_dir + " is complete yet, so the job must start over";
  }
  return "resume from " + newest->dir + " (--resume)";
}

Status Coordinator::OnServerDeath(const Node& dead, const Verdict& v) {
  ASSIGN_OR_RETURN(const Node gone, Bury(dead, v));
  const std::string& why = v.why;
  int promoted = 0;
  for (size_t r = 0; r < ranges_.size(); ++r) {
    if (backup_[r] == gone.id) backup_[r] = -1;
    if (primary_[r] != gone.id) continue;
    // A backup still copying the range holds nothing to promote.
    if (backup_[r] >= 0 && !backup_ready_[r]) {
      PSTRAIN_LOG(WARNING) << "keys " << ToString(ranges_[r]) << ": the backup on server "
                           << backup_[r] << " had not finished copying them";
      backup_[r] = -1;
    }
    if (backup_[r] < 0) {
      return Unavailable("server " + std::to_string(gone.id) + " (pid " + std::to_string(gone.pid) +
                         " on " + gone.host + ") is dead (" + why + ") and keys " +
                         ToString(ranges_[r]) + " have no replica left: " + ResumeAdvice());
    }
    primary_[r] = backup_[r];
    backup_[r] = -1;
    backup_ready_[r] = false;
    copying_.erase(r);
    ++promoted;
  }
  // Ranges change hands: the cuts asked for will not all be taken. The
  // next epoch's are.
  RETURN_IF_ERROR(AbandonCuts(gone.id, "server " + std::to_string(gone.id) + " died"));
  RETURN_IF_ERROR(BroadcastRouting());
  pending_acks_.clear();
  for (int w : LiveWorkerIds()) pending_acks_[w] = false;
  recovery_start_ = Clock::now();
  recovering_role_ = "server";
  recovering_ = "server " + std::to_string(gone.id) + " (" + std::to_string(promoted) +
                " range(s) promoted to their backups)";
  return OkStatus();
}

Status Coordinator::LoadData() {
  if (data_loaded_) return OkStatus();
  ASSIGN_OR_RETURN(JobData data, LoadJobData(options_.config.data));
  input_dim_ = data.train.dim;
  num_classes_ = data.train.num_classes;
  input_shape_ = data.train.shape;
  train_count_ = data.train.count;
  test_count_ = data.test.count;
  test_labels_.assign(data.test.labels.begin(), data.test.labels.end());
  data_loaded_ = true;
  return OkStatus();
}

StatusOr<FinalStats> Coordinator::Run(const std::atomic<bool>* stop) {
  stop_ = stop;
  run_start_ = Clock::now();
  const JobConfig& c = options_.config;
  metrics_->set_title("pstrain " + c.name);
  StatusOr<FinalStats> result = [&]() -> StatusOr<FinalStats> {
    RETURN_IF_ERROR(LoadData());
    int first_epoch = 0;
    if (adoption_.has_value()) {
      // Carrying on where the nodes are: the epoch they train (or trained).
      first_epoch = std::max(adoption_->epoch, 0);
      clock_ = adoption_->first_clock + adoption_->first_step;
      resume_step_ = adoption_->first_step;
    } else if (options_.resume) {
      ASSIGN_OR_RETURN(Manifest m, PickCheckpoint());
      first_epoch = m.epochs_done;
      resume_step_ = m.step;
      clock_ = m.clock;
      restore_dir_ = m.dir;
      console_->Banner("resuming from " + m.dir + " (" + std::to_string(m.epochs_done) +
                       " epoch(s) done" +
                       (m.step > 0 ? ", and " + std::to_string(m.step) + " steps of epoch " +
                                         std::to_string(m.epochs_done + 1)
                                   : std::string()) +
                       ")");
      RETURN_IF_ERROR(metrics_->Write(JsonObject()
                                          .Add("event", "resumed")
                                          .Add("dir", m.dir)
                                          .Add("epochs_done", m.epochs_done)
                                          .Add("step", m.step)
                                          .Add("clock", m.clock)));
    }
    if (!adoption_.has_value()) {
      RETURN_IF_ERROR(Register());
      RETURN_IF_ERROR(Assign());
    }
    last_checkpoint_ = Clock::now();
    FinalStats f;
    for (int epoch = first_epoch; epoch < c.epochs; ++epoch) {
      ASSIGN_OR_RETURN(EpochStats e, RunEpoch(epoch));
      console_->Epoch(e, c.epochs);
      RETURN_IF_ERROR(metrics_->WriteEpoch(e));
      f.test_loss = e.test_loss;
      f.test_accuracy = e.test_accuracy;
      f.test_auc = e.test_auc;
      if (!c.checkpoint_dir.empty() && (epoch + 1) % c.checkpoint_every_epochs == 0) {
        RETURN_IF_ERROR(WriteCheckpoint(epoch + 1));
      }
    }
    RETURN_IF_ERROR(GatherFinalStats(&f));
    f.epochs = c.epochs;
    f.seconds = Since(run_start_);
    AddRunTotals(f);
    return f;
  }();
  board_.Update([&](ClusterStatus& s) {
    s.phase = result.ok() ? "done" : "failed";
    if (!result.ok()) s.message = result.status().message();
  });
  if (result.ok()) {
    ShutdownAll(0, "the job is done");
  } else {
    const int code = result.status().code() == StatusCode::kCancelled ? 130 : 1;
    ShutdownAll(code, result.status().message());
  }
  return result;
}

}  // namespace pstrain
