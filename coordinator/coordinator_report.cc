// The coordinator's side of the HTTP status server: it starts the server
// and publishes copies of its state to the StatusBoard the server reads.
#include <algorithm>
#include <cmath>

#include "common/base/logging.h"
#include "coordinator/coordinator.h"

namespace pstrain {
namespace {

const char* RoleText(msg::Role r) { return r == msg::Role::SERVER ? "server" : "worker"; }

}  // namespace

Status Coordinator::StartStatusServer() {
  const JobConfig& c = options_.config;
  board_.Update([&](ClusterStatus& s) {
    s.job = c.name;
    s.consistency = c.cluster.consistency;
    s.staleness = c.cluster.staleness;
    s.batch_size = c.batch_size;
    s.servers_wanted = c.cluster.servers;
    s.workers_wanted = c.cluster.workers;
    s.epochs = c.epochs;
    s.started = std::chrono::steady_clock::now();
  });
  if (c.http_port == 0) return OkStatus();
  if (c.http_bind.rfind("127.", 0) != 0 && !c.insecure) {
    return InvalidArgument("output.http_bind " + c.http_bind +
                           " would show the job's status page, which has no authentication, "
                           "beyond this machine: keep it on loopback (and reach it through an "
                           "SSH tunnel), or say --insecure");
  }
  StatusBoard* board = &board_;
  ASSIGN_OR_RETURN(
      http_,
      HttpServer::Start(c.http_bind, std::max(c.http_port, 0),
                        [board](const std::string& path) -> HttpResponse {
                          if (path == "/metrics") {
                            return {200, "text/plain; version=0.0.4; charset=utf-8",
                                    RenderPrometheus(board->Snapshot())};
                          }
                          if (path == "/status") {
                            return {200, "application/json", RenderStatusJson(board->Snapshot())};
                          }
                          if (path == "/" || path == "/index.html") {
                            return {200, "text/html; charset=utf-8", StatusPageHtml()};
                          }
                          return {404, "text/plain; charset=utf-8",
                                  "not found; pstrain serves /, /status and /metrics\n"};
                        }));
  const std::string url = "http://" + c.http_bind + ":" + std::to_string(http_->port()) + "/";
  console_->Banner("status page at " + url + " (Prometheus metrics at " + url + "metrics)");
  return OkStatus();
}

void Coordinator::PublishMembership() {
  std::vector<NodeStatus> live;
  for (auto& [identity, n] : nodes_) {
    NodeStatus s;
    s.role = RoleText(n.role);
    s.id = n.id;
    s.pid = n.pid;
    s.host = n.host;
    s.endpoint = n.endpoint;
    s.state = n.ready ? "live" : "joining";
    live.push_back(std::move(s));
  }
  board_.Update([&](ClusterStatus& s) {
    // Known nodes no longer in the membership are dead; they stay listed.
    for (NodeStatus& known : s.nodes) {
      if (known.state == "dead") continue;
      const bool present = std::any_of(live.begin(), live.end(), [&](const NodeStatus& n) {
        return n.role == known.role && n.id == known.id && n.pid == known.pid;
      });
      if (!present) known.state = "dead";
    }
    for (const NodeStatus& n : live) {
      NodeStatus* known = s.Find(n.role, n.id);
      if (known != nullptr && known->pid == n.pid) {
        known->state = n.state;
        known->endpoint = n.endpoint;
      } else {
        s.nodes.push_back(n);
      }
    }
    std::stable_sort(s.nodes.begin(), s.nodes.end(), [](const NodeStatus& a, const NodeStatus& b) {
      return std::tie(a.role, a.id) < std::tie(b.role, b.id);
    });
    s.membership_epoch = membership_epoch_;
    s.failures = failures_;
  });
}

void Coordinator::NoteBusy(const Node& n, uint32_t compute_idle_ms) {
  board_.Update([&](ClusterStatus& s) {
    NodeStatus* known = s.Find(RoleText(n.role), n.id);
    if (known != nullptr && known->pid == n.pid) known->busy_s = compute_idle_ms / 1000.0;
  });
}

void Coordinator::PublishPhase(const std::string& phase, int epoch) {
  board_.Update([&](ClusterStatus& s) {
    s.phase = phase;
    s.membership_epoch = membership_epoch_;
    s.failures = failures_;
    if (epoch > 0) s.epoch = epoch;
    if (phase == "training") {
      s.epoch_samples = 0;
      s.epoch_loss = 0;
      s.epoch_samples_per_s = 0;
      for (NodeStatus& n : s.nodes) n.epoch_samples = 0;
    }
  });
}

void Coordinator::PublishProgress(const std::map<int, std::pair<int64_t, double>>& progress,
                                  int64_t total, double elapsed) {
  board_.Update([&](ClusterStatus& s) {
    int64_t samples = 0;
    double loss = 0;
    for (const auto& [id, p] : progress) {
      samples += p.first;
      loss += p.second;
      if (NodeStatus* n = s.Find("worker", id)) n->epoch_samples = p.first;
    }
    s.epoch_samples = samples;
    s.epoch_total = total;
    s.epoch_loss = samples > 0 ? loss / samples : 0;
    s.epoch_samples_per_s = elapsed > 0 ? samples / elapsed : 0;
  });
}

void Coordinator::PublishEpoch(const EpochStats& e, const std::map<int, WorkerEpoch>& done) {
  const int batch = options_.config.batch_size;
  board_.Update([&](ClusterStatus& s) {
    for (const auto& [id, d] : done) {
      NodeStatus* n = s.Find("worker", id);
      if (n == nullptr) continue;
      n->samples += d.samples;
      n->train_seconds += e.train_seconds;
      n->compute_s += d.compute;
      n->push_wait_s += d.push;
      n->pull_wait_s += d.pull;
      const double steps = std::ceil(static_cast<double>(d.samples) / batch);
      n->step_s = steps > 0 ? (d.compute + d.push + d.pull) / steps : -1;
      n->samples_per_s = e.train_seconds > 0 ? d.samples / e.train_seconds : -1;
      n->epoch_samples = d.samples;
    }
    s.samples_total += e.samples;
    s.epoch_samples = s.epoch_total;
    s.history.push_back(e);
    s.failures = failures_;
  });
}

void Coordinator::AddRunTotals(FinalStats& f) const {
  const ClusterStatus s = board_.Snapshot();
  for (const NodeStatus& n : s.nodes) {
    if (n.role != "worker") continue;
    f.workers.push_back({n.id, n.samples, n.train_seconds, n.state != "dead"});
  }
  f.failures = failures_;
}

}  // namespace pstrain
