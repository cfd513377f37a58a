// A coordinator restarted while its job's servers and workers live on:
// taking them back with their state (Coordinator::AdoptSurvivors).
#include <capnp/message.h>

#include <algorithm>
#include <set>

#include "common/base/logging.h"
#include "coordinator/coordinator.h"

namespace pstrain {

namespace {
using Clock = std::chrono::steady_clock;

KeyRange RangeOf(msg::KeyRange::Reader r) { return {r.getBegin(), r.getEnd()}; }
}  // namespace

// A node that offered itself, and (once adopted) the state it reported.
struct Coordinator::NodeOffer {
  std::string identity;
  msg::Role role = msg::Role::WORKER;
  int id = -1;
  uint64_t incarnation = 0;
  int pid = 0;
  std::string host, endpoint, local_endpoint, host_key;
  uint64_t membership_epoch = 0;
  bool answered = false;
  // Workers.
  int epoch = -1;
  int64_t first_clock = 0, first_step = 0;
  bool training_done = false;
  std::vector<int> owners;
  // Servers.
  std::vector<KeyRange> ranges, backup_ranges;
};

StatusOr<bool> Coordinator::AdoptSurvivors(std::chrono::milliseconds window,
                                           const std::atomic<bool>* stop) {
  const JobConfig& c = options_.config;
  RETURN_IF_ERROR(LoadData());
  std::map<std::string, NodeOffer> offers;  // by routing id
  std::vector<Message> later;               // registrations meanwhile: handled after
  auto send = [&](const std::string& identity, capnp::MessageBuilder& m) {
    Node tmp;
    tmp.identity = identity;
    (void)SendTo(tmp, m);  // best effort: the peer may be gone
  };
  auto shutdown = [&](const std::string& identity, const std::string& why) {
    capnp::MallocMessageBuilder m;
    auto s = m.initRoot<msg::Control>().initShutdown();
    s.setExitCode(1);
    s.setReason(why);
    send(identity, m);
  };
  auto complete = [&] {
    std::set<int> servers, workers;
    for (const auto& [identity, o] : offers) {
      (o.role == msg::Role::SERVER ? servers : workers).insert(o.id);
    }
    return static_cast<int>(servers.size()) == c.cluster.servers &&
           static_cast<int>(workers.size()) == c.cluster.workers;
  };
  // One turn: every message waiting, each to `on` (offers, or states).
  auto receive =
      [&](const std::function<void(const std::string&, msg::Control::Reader)>& on) -> Status {
    if (stop != nullptr && stop->load()) return Cancelled("stopped by a signal");
    ASSIGN_OR_RETURN(bool readable, socket_->WaitReadable(std::chrono::milliseconds(50)));
    if (!readable) return OkStatus();
    for (int i = 0; i < 1000; ++i) {
      Message frames;
      StatusOr<bool> got = socket_->Recv(&frames, 2);
      if (!got.ok() && got.status().code() != StatusCode::kInvalidArgument) return got.status();
      if (!got.ok()) continue;
      if (!*got) break;
      if (frames.size() != 2) continue;
      const std::string identity(reinterpret_cast<const char*>(frames[0].data()), frames[0].size());
      bool is_register = false;
      (void)WithDecoded<msg::Control>(frames[1], [&](msg::Control::Reader m) -> Status {
        is_register = m.which() == msg::Control::REGISTER;
        if (!is_register) on(identity, m);
        return OkStatus();
      });
      if (is_register) later.push_back(std::move(frames));
    }
    return OkStatus();
  };
  auto on_offer = [&](const std::string& identity, msg::Control::Reader m) {
    if (m.which() == msg::Control::HEARTBEAT) {
      capnp::MallocMessageBuilder ask;
      ask.initRoot<msg::Control>().setRejoinAsk();
      send(identity, ask);
      return;
    }
    if (m.which() != msg::Control::REJOIN) return;
    auto r = m.getRejoin();
    const msg::Role role = r.getRole();
    const int count = role == msg::Role::SERVER   ? c.cluster.servers
                      : role == msg::Role::WORKER ? c.cluster.workers
                                                  : 0;
    if (r.getNodeId() < 0 || r.getNodeId() >= count) {
      return shutdown(identity, "this job has no " +
                                    std::string(role == msg::Role::SERVER ? "server " : "worker ") +
                                    std::to_string(r.getNodeId()));
    }
    if (!options_.launch_token.empty() && r.getLaunchToken() != options_.launch_token) {
      return shutdown(identity, "it was not started by this job's launcher");
    }
    NodeOffer& o = offers[identity];
    o.identity = identity;
    o.role = role;
    o.id = r.getNodeId();
    o.incarnation = r.getIncarnation();
    o.pid = r.getPid();
    o.host = r.getHost();
    o.endpoint = r.getDataEndpoint();
    o.local_endpoint = r.getLocalEndpoint();
    o.host_key = r.getHostKey();
    o.membership_epoch = r.getMembershipEpoch();
  };
  const auto until = Clock::now() + window;
  while (Clock::now() < until && !complete()) RETURN_IF_ERROR(receive(on_offer));
  // Fewer than the job's nodes may be all there were (a server that died
  // before, its ranges promoted): the states say whether they hold it all.
  const bool some = std::any_of(offers.begin(), offers.end(),
                                [](auto& p) { return p.second.role == msg::Role::SERVER; }) &&
                    std::any_of(offers.begin(), offers.end(),
                                [](auto& p) { return p.second.role == msg::Role::WORKER; });
  auto replay = [&]() -> Status {
    for (Message& f : later) {
      const std::string identity(reinterpret_cast<const char*>(f[0].data()), f[0].size());
      RETURN_IF_ERROR(WithDecoded<msg::Control>(
          f[1], [&](msg::Control::Reader m) { return OnRegister(identity, m.getRegister()); }));
    }
    later.clear();
    return OkStatus();
  };
  // Those that came back are told to exit, and the job starts from its
  // newest checkpoint.
  auto give_up = [&](const std::string& why) -> StatusOr<bool> {
    const std::string line = why + ": the job starts again from its newest checkpoint";
    console_->Banner(line);
    for (const auto& [identity, o] : offers) {
      shutdown(identity, line);
      nodes_.erase(identity);
    }
    ranges_.clear();
    primary_.clear();
    backup_.clear();
    RETURN_IF_ERROR(metrics_->Write(JsonObject().Add("event", "adoption_failed").Add("why", line)));
    RETURN_IF_ERROR(replay());
    return false;
  };
  const std::string came_back = std::to_string(offers.size()) + " of the job's " +
                                std::to_string(c.cluster.servers + c.cluster.workers) +
                                " nodes came back to the restarted coordinator";
  if (offers.empty()) {
    RETURN_IF_ERROR(replay());
    return false;
  }
  if (!some) return give_up("only " + came_back);
  // Each is taken back and says where it stands.
  for (const auto& [identity, o] : offers) {
    membership_epoch_ = std::max(membership_epoch_, o.membership_epoch);
  }
  const auto now = Clock::now();
  for (const auto& [identity, o] : offers) {
    Node n;
    n.identity = identity;
    n.role = o.role;
    n.id = o.id;
    n.incarnation = o.incarnation;
    n.pid = o.pid;
    n.host = o.host;
    n.endpoint = o.endpoint;
    n.local_endpoint = o.local_endpoint;
    n.host_key = o.host_key;
    n.ready = true;
    n.beats = true;
    n.registered = n.last_seen = now;
    nodes_[identity] = n;
    capnp::MallocMessageBuilder m;
    m.initRoot<msg::Control>().initAdopted().setMembershipEpoch(membership_epoch_);
    RETURN_IF_ERROR(SendTo(n, m));
  }
  auto on_state = [&](const std::string& identity, msg::Control::Reader m) {
    auto it = offers.find(identity);
    if (it == offers.end()) {
      if (m.which() == msg::Control::REJOIN) shutdown(identity, "the job went on without it");
      return;
    }
    NodeOffer& o = it->second;
    nodes_[identity].last_seen = Clock::now();
    if (m.which() == msg::Control::WORKER_STATE && o.role == msg::Role::WORKER) {
      auto st = m.getWorkerState();
      o.epoch = st.getEpoch();
      o.first_clock = st.getFirstClock();
      o.first_step = st.getFirstStep();
      o.training_done = st.getTrainingDone();
      o.owners.clear();
      for (int w : st.getSlotOwners()) o.owners.push_back(w);
      o.answered = true;
    } else if (m.which() == msg::Control::SERVER_STATE && o.role == msg::Role::SERVER) {
      auto st = m.getServerState();
      o.ranges.clear();
      o.backup_ranges.clear();
      for (auto r : st.getRanges()) o.ranges.push_back(RangeOf(r));
      for (auto r : st.getBackupRanges()) o.backup_ranges.push_back(RangeOf(r));
      o.answered = true;
    } else if (m.which() == msg::Control::REJOIN) {
      // The Adopted crossed its next offer: say it again.
      capnp::MallocMessageBuilder again;
      again.initRoot<msg::Control>().initAdopted().setMembershipEpoch(membership_epoch_);
      send(identity, again);
    }
  };
  const auto states_until = Clock::now() + std::chrono::seconds(c.cluster.start_timeout_s);
  while (!std::all_of(offers.begin(), offers.end(), [](auto& p) { return p.second.answered; })) {
    if (Clock::now() >= states_until) {
      const std::string why = "the nodes taken back did not all report their state within " +
                              std::to_string(c.cluster.start_timeout_s) + " s";
      ShutdownAll(1, why);
      return Unavailable(why);
    }
    RETURN_IF_ERROR(receive(on_state));
    RETURN_IF_ERROR(SendHeartbeats(Clock::now()));
  }
  std::vector<NodeOffer> taken;
  for (const auto& [identity, o] : offers) taken.push_back(o);
  if (Status s = TakeBack(taken); !s.ok()) {
    if (s.code() != StatusCode::kUnavailable) {
      ShutdownAll(1, s.message());
      return s;
    }
    return give_up(came_back + ", and " + s.message());
  }
  RETURN_IF_ERROR(replay());
  return true;
}

Status Coordinator::TakeBack(const std::vector<NodeOffer>& offers) {
  const JobConfig& c = options_.config;
  ASSIGN_OR_RETURN(const std::vector<KeyRange> slices, PlanModel());
  ranges_ = slices;
  primary_.assign(slices.size(), -1);
  backup_.assign(slices.size(), -1);
  backup_ready_.assign(slices.size(), true);  // serving as backups already
  auto index_of = [&](const NodeOffer& o, const KeyRange& r) -> StatusOr<size_t> {
    for (size_t i = 0; i < slices.size(); ++i) {
      if (slices[i] == r) return i;
    }
    return InvalidArgument("server " + std::to_string(o.id) + " holds keys " + ToString(r) +
                           ", which this job's model does not cut so (was the job changed?)");
  };
  const NodeOffer* latest = nullptr;  // the worker furthest on
  int trained = 0;
  for (const NodeOffer& o : offers) {
    if (o.role == msg::Role::SERVER) {
      for (const KeyRange& r : o.ranges) {
        ASSIGN_OR_RETURN(const size_t i, index_of(o, r));
        if (primary_[i] >= 0) {
          return InvalidArgument("keys " + ToString(r) + " are held by servers " +
                                 std::to_string(primary_[i]) + " and " + std::to_string(o.id));
        }
        primary_[i] = o.id;
      }
      for (const KeyRange& r : o.backup_ranges) {
        ASSIGN_OR_RETURN(const size_t i, index_of(o, r));
        backup_[i] = o.id;
      }
      continue;
    }
    if (latest == nullptr || o.epoch > latest->epoch) latest = &o;
  }
  std::set<int> workers;
  for (const NodeOffer& o : offers) {
    if (o.role == msg::Role::WORKER) workers.insert(o.id);
  }
  for (size_t i = 0; i < slices.size(); ++i) {
    if (primary_[i] < 0) {
      return Unavailable("keys " + ToString(slices[i]) + " are held by no server that came back");
    }
  }
  Adoption a;
  if (latest != nullptr && latest->epoch >= 0) {
    a.epoch = latest->epoch;
    a.first_clock = latest->first_clock;
    a.first_step = latest->first_step;
    a.owners = latest->owners;
    for (int owner : a.owners) {
      if (workers.count(owner) == 0) {
        return Unavailable("worker " + std::to_string(owner) + ", which trains slots of epoch " +
                           std::to_string(a.epoch + 1) + ", did not");
      }
    }
    for (const NodeOffer& o : offers) {
      if (o.role != msg::Role::WORKER) continue;
      // A worker that joined in a dead one's place and waits for the next
      // epoch owns no slot of this one.
      const bool owns = std::find(a.owners.begin(), a.owners.end(), o.id) != a.owners.end();
      if (owns && (o.epoch != a.epoch || o.first_clock != a.first_clock)) {
        return Unavailable("worker " + std::to_string(o.id) + " is at epoch " +
                           std::to_string(o.epoch + 1) + ", worker " + std::to_string(latest->id) +
                           " at epoch " + std::to_string(a.epoch + 1));
      }
      if (o.training_done && o.epoch == a.epoch) ++trained;
    }
  }
  book_ = WorkBook(c.cluster.workers);
  if (a.epoch < 0 || !book_.SetOwners(a.owners)) book_.SpreadSlots(LiveWorkerIds());
  adoption_ = a;
  monitoring_ = true;
  PublishMembership();
  const size_t servers = offers.size() - workers.size();
  console_->Banner("the coordinator restarted and took back " + std::to_string(servers) +
                   " server(s) and " + std::to_string(workers.size()) +
                   " worker(s) with their state" +
                   (a.epoch >= 0 ? "; epoch " + std::to_string(a.epoch + 1) + " goes on (" +
                                       std::to_string(trained) + " worker(s) done training it)"
                                 : std::string()));
  RETURN_IF_ERROR(
      metrics_->Write(JsonObject()
                          .Add("event", "adopted")
                          .Add("servers", static_cast<int64_t>(servers))
                          .Add("workers", static_cast<int64_t>(workers.size()))
                          .Add("epoch", a.epoch + 1)
                          .Add("first_clock", a.first_clock)
                          .Add("workers_done_training", trained)
                          .Add("membership_epoch", static_cast<int64_t>(membership_epoch_))));
  return WriteMembershipEvent();
}

}  // namespace pstrain
