// ClusterStatus as Prometheus text and as the /status JSON document.
#include <cmath>
#include <limits>
#include <sstream>

#include "common/base/json.h"
#include "coordinator/status_board.h"

namespace pstrain {
namespace {

constexpr double kUnknown = std::numeric_limits<double>::quiet_NaN();

std::string Number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  std::ostringstream os;
  os.precision(10);
  os << v;
  return os.str();
}

std::string LabelValue(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

// Writes one metric family: its HELP and TYPE lines, then its samples.
class Exposition {
 public:
  Exposition& Family(const char* name, const char* type, const char* help) {
    name_ = name;
    out_ << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n";
    return *this;
  }
  Exposition& Sample(double v, const std::string& labels = "") {
    out_ << name_ << (labels.empty() ? "" : "{" + labels + "}") << " " << Number(v) << "\n";
    return *this;
  }
  std::string str() const { return out_.str(); }

 private:
  std::ostringstream out_;
  std::string name_;
};

std::string NodeLabel(const NodeStatus& n) {
  return "node=\"" + LabelValue(n.role + " " + std::to_string(n.id)) + "\"";
}

double Uptime(const ClusterStatus& s) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - s.started).count();
}

}  // namespace

int ClusterStatus::Live(const std::string& role) const {
  int n = 0;
  for (const NodeStatus& node : nodes) n += node.role == role && node.state == "live";
  return n;
}

NodeStatus* ClusterStatus::Find(const std::string& role, int id) {
  for (NodeStatus& n : nodes) {
    if (n.role == role && n.id == id && n.state != "dead") return &n;
  }
  return nullptr;
}

std::string RenderPrometheus(const ClusterStatus& s) {
  // One metric family after another, in the order of the exposition: a
  // list, kept whole.
  const EpochStats* last = s.history.empty() ? nullptr : &s.history.back();
  const bool running = s.phase == "training" && s.epoch_samples > 0;
  Exposition e;
  e.Family("pstrain_info", "gauge", "The job, its consistency model and phase (always 1).")
      .Sample(1, "job=\"" + LabelValue(s.job) + "\",consistency=\"" +
                     LabelValue(std::string(ConsistencyName(s.consistency))) + "\",phase=\"" +
                     LabelValue(s.phase) + "\"");
  e.Family("pstrain_epoch", "gauge", "The epoch running (1-based), or the last one run.")
      .Sample(s.epoch);
  e.Family("pstrain_epochs", "gauge", "Epochs the job runs in all.").Sample(s.epochs);
  e.Family("pstrain_epochs_done", "gauge", "Epochs finished and evaluated.")
      .Sample(static_cast<double>(s.history.size()));
  e.Family("pstrain_epoch_progress_ratio", "gauge",
           "Fraction of the epoch's training samples processed so far.")
      .Sample(s.epoch_total > 0 ? static_cast<double>(s.epoch_samples) / s.epoch_total : 0);
  e.Family("pstrain_samples_per_second", "gauge",
           "Training samples per second: the epoch running, else the last epoch.")
      .Sample(running ? s.epoch_samples_per_s
              : last  ? last->samples_per_s
                      : 0);
  e.Family("pstrain_train_loss", "gauge",
           "Mean training loss: the epoch running so far, else the last epoch.")
      .Sample(running ? s.epoch_loss
              : last  ? last->train_loss
                      : kUnknown);
  e.Family("pstrain_test_loss", "gauge", "Mean test-set loss after the last epoch.")
      .Sample(last ? last->test_loss : kUnknown);
  e.Family("pstrain_test_accuracy", "gauge",
           "Fraction of the test set classified right after the last epoch.")
      .Sample(last ? last->test_accuracy : kUnknown);
  e.Family("pstrain_learning_rate", "gauge", "Learning rate at the end of the last epoch.")
      .Sample(last ? last->lr : kUnknown);
  e.Family("pstrain_samples_total", "counter", "Training samples processed by the job.")
      .Sample(static_cast<double>(s.samples_total));
  e.Family("pstrain_failures_total", "counter", "Nodes that died and were recovered from.")
      .Sample(s.failures);
  e.Family("pstrain_node_deaths_total", "counter",
           "Nodes declared dead, by cause: exited, connection_closed, stopped (the process is "
           "stopped, SIGSTOP or a debugger), silent (no heartbeat for cluster.timeout_ms, the "
           "process not known to be gone), not_ready (joined but never ready).");
  for (const auto& [cause, count] : s.deaths_by_cause) {
    e.Sample(count, "cause=\"" + LabelValue(cause) + "\"");
  }
  e.Family("pstrain_control_refused_total", "counter",
           "Control messages refused: from unregistered peers, of a kind the sender's role never "
           "sends, reports of work the sender was not given or had reported, malformed ones.")
      .Sample(static_cast<double>(s.refused_messages));
  e.Family("pstrain_workers_live", "gauge", "Workers registered and alive.")
      .Sample(s.Live("worker"));
  e.Family("pstrain_servers_live", "gauge", "Parameter servers registered and alive.")
      .Sample(s.Live("server"));
  e.Family("pstrain_workers_configured", "gauge", "Workers the job was started with.")
      .Sample(s.workers_wanted);
  e.Family("pstrain_servers_configured", "gauge", "Parameter servers the job was started with.")
      .Sample(s.servers_wanted);
  e.Family("pstrain_membership_epoch", "gauge",
           "Membership epoch: grows with every change of the live set.")
      .Sample(static_cast<double>(s.membership_epoch));
  e.Family("pstrain_staleness", "gauge",
           "ssp: steps the fastest worker may run ahead of the slowest (0 for bsp and asp).")
      .Sample(s.consistency == Consistency::kSsp ? s.staleness : 0);
  e.Family("pstrain_batch_size", "gauge", "Samples per step, per worker.").Sample(s.batch_size);
  e.Family("pstrain_parameters", "gauge", "Trainable parameters of the model.")
      .Sample(static_cast<double>(s.params));
  e.Family("pstrain_model_bytes", "gauge",
           "Bytes a worker pushes (gradients) and pulls (weights) per step.")
      .Sample(static_cast<double>(s.model_bytes));
  e.Family("pstrain_uptime_seconds", "gauge", "Seconds since the coordinator started the job.")
      .Sample(Uptime(s));

  e.Family("pstrain_node_up", "gauge", "1 while the node is alive, 0 once declared dead.");
  for (const NodeStatus& n : s.nodes) {
    e.Sample(n.state == "dead" ? 0 : 1, NodeLabel(n) + ",role=\"" + n.role + "\"");
  }
  struct PerWorker {
    const char* name;
    const char* type;
    const char* help;
    double (*value)(const NodeStatus&);
  };
  const PerWorker per_worker[] = {
      {"pstrain_worker_step_seconds", "gauge",
       "Mean wall time per step in the worker's last epoch (compute and waits).",
       [](const NodeStatus& n) { return n.step_s; }},
      {"pstrain_worker_samples_per_second", "gauge", "The worker's samples per second, last epoch.",
       [](const NodeStatus& n) { return n.samples_per_s; }},
      {"pstrain_worker_samples_total", "counter", "Training samples the worker processed.",
       [](const NodeStatus& n) { return static_cast<double>(n.samples); }},
      {"pstrain_worker_epoch_samples", "gauge",
       "Samples the worker processed in the epoch running.",
       [](const NodeStatus& n) { return static_cast<double>(n.epoch_samples); }},
      {"pstrain_worker_compute_seconds_total", "counter",
       "Seconds the worker spent in forward and backward passes.",
       [](const NodeStatus& n) { return n.compute_s; }},
      {"pstrain_worker_push_wait_seconds_total", "counter",
       "Seconds the worker waited for push acknowledgements.",
       [](const NodeStatus& n) { return n.push_wait_s; }},
      {"pstrain_worker_pull_wait_seconds_total", "counter",
       "Seconds the worker waited for fresh weights.",
       [](const NodeStatus& n) { return n.pull_wait_s; }},
  };
  e.Family("pstrain_node_busy_seconds", "gauge",
           "Seconds the node's main thread had been busy in one stretch (a step, loading data, "
           "evaluating) at its last heartbeat; heartbeats come from a thread of their own.");
  for (const NodeStatus& n : s.nodes) {
    if (n.state != "dead") e.Sample(n.busy_s, NodeLabel(n) + ",role=\"" + n.role + "\"");
  }
  for (const PerWorker& m : per_worker) {
    e.Family(m.name, m.type, m.help);
    for (const NodeStatus& n : s.nodes) {
      if (n.role != "worker") continue;
      const double v = m.value(n);
      e.Sample(v < 0 ? kUnknown : v, NodeLabel(n));
    }
  }
  return e.str();
}

std::string RenderStatusJson(const ClusterStatus& s) {
  auto node_list = [&](const std::string& role) {
    std::string out = "[";
    for (const NodeStatus& n : s.nodes) {
      if (n.role != role) continue;
      JsonObject o;
      o.Add("id", n.id).Add("state", n.state).Add("pid", n.pid).Add("host", n.host);
      o.Add("busy_s", n.busy_s);
      if (!n.death.empty()) o.Add("death", n.death);
      if (role == "server") {
        o.Add("endpoint", n.endpoint);
      } else {
        o.Add("samples", n.samples)
            .Add("epoch_samples", n.epoch_samples)
            .Add("step_s", n.step_s < 0 ? kUnknown : n.step_s)
            .Add("samples_per_s", n.samples_per_s < 0 ? kUnknown : n.samples_per_s)
            .Add("compute_s", n.compute_s)
            .Add("push_wait_s", n.push_wait_s)
            .Add("pull_wait_s", n.pull_wait_s);
      }
      out += (out.size() > 1 ? "," : "") + o.str();
    }
    return out + "]";
  };
  std::string history = "[";
  for (const EpochStats& h : s.history) {
    history += (history.size() > 1 ? "," : "") + JsonObject()
                                                     .Add("epoch", h.epoch)
                                                     .Add("train_loss", h.train_loss)
                                                     .Add("train_accuracy", h.train_accuracy)
                                                     .Add("test_loss", h.test_loss)
                                                     .Add("test_accuracy", h.test_accuracy)
                                                     .Add("samples_per_s", h.samples_per_s)
                                                     .Add("seconds", h.seconds)
                                                     .str();
  }
  history += "]";
  const EpochStats* last = s.history.empty() ? nullptr : &s.history.back();
  const std::string last_json = last == nullptr ? "null"
                                                : JsonObject()
                                                      .Add("epoch", last->epoch)
                                                      .Add("train_loss", last->train_loss)
                                                      .Add("test_loss", last->test_loss)
                                                      .Add("test_accuracy", last->test_accuracy)
                                                      .Add("samples_per_s", last->samples_per_s)
                                                      .str();
  const std::string progress =
      JsonObject()
          .Add("samples", s.epoch_samples)
          .Add("total", s.epoch_total)
          .Add("fraction",
               s.epoch_total > 0 ? static_cast<double>(s.epoch_samples) / s.epoch_total : 0.0)
          .Add("loss", s.epoch_samples > 0 ? s.epoch_loss : kUnknown)
          .Add("samples_per_s", s.epoch_samples_per_s)
          .str();
  JsonObject deaths_object;
  for (const auto& [cause, count] : s.deaths_by_cause) deaths_object.Add(cause, count);
  const std::string deaths = deaths_object.str();
  return JsonObject()
             .Add("job", s.job)
             .Add("phase", s.phase)
             .Add("message", s.message)
             .Add("consistency", std::string(ConsistencyName(s.consistency)))
             .Add("staleness", s.staleness)
             .Add("batch_size", s.batch_size)
             .Add("params", s.params)
             .Add("epochs", s.epochs)
             .Add("epoch", s.epoch)
             .AddRaw("progress", progress)
             .Add("membership_epoch", static_cast<int64_t>(s.membership_epoch))
             .Add("failures", s.failures)
             .AddRaw("deaths_by_cause", deaths)
             .Add("samples_total", s.samples_total)
             .Add("uptime_s", Uptime(s))
             .Add("servers_live", s.Live("server"))
             .Add("workers_live", s.Live("worker"))
             .AddRaw("servers", node_list("server"))
             .AddRaw("workers", node_list("worker"))
             .AddRaw("history", history)
             .AddRaw("last", last_json)
             .str() +
         "\n";
}

}  // namespace pstrain
