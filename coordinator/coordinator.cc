#include "coordinator/coordinator.h"

#include <capnp/message.h>

#include <algorithm>
#include <cmath>

#include "common/handout.h"
#include "common/job_data.h"
#include "common/keys.h"
#include "common/logging.h"
#include "common/model.h"

namespace pstrain {
namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

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

Coordinator::Coordinator(ZmqContext& ctx, CoordinatorOptions options, Console* console,
                         MetricsLog* metrics)
    : ctx_(ctx), options_(std::move(options)), console_(console), metrics_(metrics) {}

Coordinator::~Coordinator() = default;

StatusOr<std::string> Coordinator::Bind() {
  SocketOptions o;
  o.max_message_bytes = static_cast<int64_t>(kMaxHeaderBytes);
  ASSIGN_OR_RETURN(socket_, Socket::Create(ctx_, SocketKind::kRouter, o));
  ASSIGN_OR_RETURN(endpoint_, socket_->Bind(TcpWildcardEndpoint(options_.bind_address)));
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
    return SendTo(tmp, m);
  };
  if (role != msg::Role::SERVER && role != msg::Role::WORKER) return refuse("unknown role");
  if (nodes_.count(identity) != 0) return OkStatus();  // a repeated registration
  std::vector<Node*> same = NodesOf(role);
  if (static_cast<int>(same.size()) >= wanted) {
    return refuse("the job already has its " + std::to_string(wanted) + " " + RoleName(role) + "s");
  }
  int id = r.getRequestedId();
  auto taken = [&](int candidate) {
    return std::any_of(same.begin(), same.end(), [&](Node* n) { return n->id == candidate; });
  };
  if (id < 0 || id >= wanted || taken(id)) {
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
  n.last_seen = Clock::now();
  if (role == msg::Role::SERVER && n.endpoint.empty()) return refuse("a server needs an endpoint");
  PSTRAIN_LOG(DEBUG) << RoleName(role) << " " << id << " registered from " << n.host << " pid "
                     << n.pid << (n.endpoint.empty() ? "" : " at " + n.endpoint);
  nodes_.emplace(identity, std::move(n));
  return OkStatus();
}

Status Coordinator::Pump(std::chrono::milliseconds timeout, const Handler& handler) {
  if (stop_ != nullptr && stop_->load()) return Cancelled("stopped by a signal");
  ASSIGN_OR_RETURN(bool readable, socket_->WaitReadable(timeout));
  if (readable) {
    for (int i = 0; i < 1000; ++i) {
      Message frames;
      StatusOr<bool> got = socket_->Recv(&frames, 2);
      if (!got.ok()) {
        if (got.status().code() != StatusCode::kInvalidArgument) return got.status();
        PSTRAIN_LOG(WARNING) << "control: dropped a message: " << got.status().message();
        continue;
      }
      if (!*got) break;
      if (frames.size() != 2) continue;
      const std::string identity(reinterpret_cast<const char*>(frames[0].data()), frames[0].size());
      Status s = WithDecoded<msg::Control>(frames[1], [&](msg::Control::Reader c) -> Status {
        if (c.which() == msg::Control::REGISTER) return OnRegister(identity, c.getRegister());
        auto it = nodes_.find(identity);
        if (it == nodes_.end()) return InvalidArgument("message from an unregistered peer");
        Node& n = it->second;
        n.last_seen = Clock::now();
        if (c.which() == msg::Control::HEARTBEAT) return OkStatus();
        if (c.which() == msg::Control::READY) {
          n.ready = true;
          return OkStatus();
        }
        return handler(n, c);
      });
      if (!s.ok()) {
        if (s.code() != StatusCode::kInvalidArgument) return s;
        PSTRAIN_LOG(WARNING) << "control: " << s.message();
      }
    }
  }
  const auto now = Clock::now();
  const auto hb = std::chrono::milliseconds(options_.config.cluster.heartbeat_ms);
  if (now - last_heartbeat_ >= hb) {
    last_heartbeat_ = now;
    for (auto& [identity, n] : nodes_) {
      capnp::MallocMessageBuilder m;
      auto h = m.initRoot<msg::Control>().initHeartbeat();
      h.setNodeId(-1);
      h.setRole(msg::Role::COORDINATOR);
      Status s = SendTo(n, m);
      if (!s.ok() && s.code() != StatusCode::kUnavailable) return s;
    }
  }
  if (monitoring_) {
    const auto timeout_ms = std::chrono::milliseconds(options_.config.cluster.timeout_ms);
    for (auto& [identity, n] : nodes_) {
      if (now - n.last_seen > timeout_ms) {
        return Unavailable(
            std::string(RoleName(n.role)) + " " + std::to_string(n.id) + " (pid " +
            std::to_string(n.pid) + " on " + n.host + ") has been silent for " +
            std::to_string(
                std::chrono::duration_cast<std::chrono::milliseconds>(now - n.last_seen).count()) +
            " ms: it is dead");
      }
    }
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
      [&] {
        return std::to_string(cl.servers) + " server(s) and " + std::to_string(cl.workers) +
               " worker(s) to register at " + endpoint_;
      }(),
      std::chrono::seconds(cl.start_timeout_s), ignore);
}

Status Coordinator::Assign() {
  const JobConfig& c = options_.config;
  ASSIGN_OR_RETURN(std::unique_ptr<Model> model,
                   Model::Build(c.layers, input_dim_, num_classes_, 1));
  const KeyLayout keys(model->layout());
  ASSIGN_OR_RETURN(std::vector<KeyRange> slices, SliceKeys(keys, c.cluster.servers));
  NodeAssignment a;
  a.membership_epoch = membership_epoch_;
  a.job_text = options_.job_text;
  a.job_name = options_.job_name;
  a.job_base_dir = options_.base_dir;
  a.overrides = options_.overrides;
  a.input_dim = input_dim_;
  a.num_classes = num_classes_;
  a.heartbeat_ms = c.cluster.heartbeat_ms;
  a.timeout_ms = c.cluster.timeout_ms;
  std::vector<Node*> servers = NodesOf(msg::Role::SERVER);
  for (size_t i = 0; i < servers.size(); ++i) {
    a.servers.push_back(
        {servers[i]->id, servers[i]->endpoint, {slices[i]}, servers[i]->incarnation});
  }
  for (Node* w : NodesOf(msg::Role::WORKER)) {
    a.workers.push_back(w->id);
    a.worker_incarnations.push_back(w->incarnation);
  }
  std::string members;
  for (auto& [identity, n] : nodes_) {
    a.node_id = n.id;
    capnp::MallocMessageBuilder m;
    BuildAssignment(a, m.initRoot<msg::Control>().initAssignment());
    RETURN_IF_ERROR(SendTo(n, m));
  }
  // Servers first: workers connect to them.
  auto ignore = [](Node&, msg::Control::Reader) { return OkStatus(); };
  RETURN_IF_ERROR(WaitUntil(
      [&] {
        return std::all_of(nodes_.begin(), nodes_.end(), [](auto& p) { return p.second.ready; });
      },
      "every node to load its data and report ready",
      std::chrono::seconds(c.cluster.start_timeout_s), ignore));
  monitoring_ = true;

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

StatusOr<EpochStats> Coordinator::RunEpoch(int epoch) {
  const JobConfig& c = options_.config;
  const auto start = Clock::now();
  std::vector<Node*> workers = NodesOf(msg::Role::WORKER);
  const int w_count = static_cast<int>(workers.size());
  const HandoutKind kind = c.data.handout == "static" ? HandoutKind::kStatic : HandoutKind::kGlobal;
  const HandoutPlan plan = HandoutPlan::Make(kind, c.seed, epoch, train_count_, c.batch_size,
                                             w_count, c.data.shard_weights);
  for (Node* w : workers) {
    capnp::MallocMessageBuilder m;
    auto s = m.initRoot<msg::Control>().initStartEpoch();
    s.setEpoch(epoch);
    s.setFirstClock(clock_);
    s.setSteps(plan.steps());
    RETURN_IF_ERROR(SendTo(*w, m));
  }
  struct Done {
    int64_t samples = 0;
    double loss = 0;
    int64_t correct = 0;
    uint64_t hash = 0;
    double compute = 0, push = 0, pull = 0;
  };
  std::map<int, Done> done;
  std::map<int, std::pair<int64_t, double>> progress;
  auto handler = [&](Node& n, msg::Control::Reader m) -> Status {
    if (m.which() == msg::Control::PROGRESS && m.getProgress().getEpoch() == epoch) {
      progress[n.id] = {m.getProgress().getSamples(), m.getProgress().getLossSum()};
      int64_t samples = 0;
      double loss = 0;
      for (auto& [id, p] : progress) {
        samples += p.first;
        loss += p.second;
      }
      const double t = Since(start);
      console_->Progress({epoch + 1, c.epochs, samples, train_count_,
                          samples > 0 ? loss / samples : 0, t > 0 ? samples / t : 0, t});
    } else if (m.which() == msg::Control::EPOCH_DONE && m.getEpochDone().getEpoch() == epoch) {
      auto d = m.getEpochDone();
      done[n.id] = {d.getSamples(),        d.getLossSum(),        d.getCorrect(),
                    d.getSampleHash(),     d.getComputeSeconds(), d.getPushWaitSeconds(),
                    d.getPullWaitSeconds()};
    }
    return OkStatus();
  };
  // Training is as long as it is; liveness (heartbeats) bounds the wait.
  RETURN_IF_ERROR(WaitUntil([&] { return static_cast<int>(done.size()) == w_count; },
                            "the workers to finish epoch " + std::to_string(epoch + 1),
                            std::chrono::hours(24 * 365), handler));
  const double train_seconds = Since(start);

  EpochStats e;
  e.epoch = epoch + 1;
  uint64_t hash = 0;
  double compute = 0, push = 0, pull = 0;
  for (auto& [id, d] : done) {
    e.samples += d.samples;
    e.train_loss += d.loss;
    e.train_accuracy += static_cast<double>(d.correct);
    hash += d.hash;
    compute += d.compute;
    push += d.push;
    pull += d.pull;
  }
  e.train_loss /= std::max<int64_t>(e.samples, 1);
  e.train_accuracy /= static_cast<double>(std::max<int64_t>(e.samples, 1));
  e.sample_set_ok = e.samples == train_count_ && hash == SampleSetHash(train_count_) ? 1 : 0;
  if (e.sample_set_ok == 0) {
    PSTRAIN_LOG(ERROR) << "epoch " << epoch + 1 << ": the workers processed " << e.samples
                       << " samples, not each of the " << train_count_ << " exactly once";
  }
  e.compute_s = compute / w_count;
  e.push_wait_s = push / w_count;
  e.pull_wait_s = pull / w_count;
  e.train_seconds = train_seconds;
  e.samples_per_s = e.samples / std::max(train_seconds, 1e-9);
  e.lr = ScheduledLearningRate(c.schedule, c.optimizer.lr, epoch + 1.0, c.epochs);
  clock_ += plan.steps();

  // Evaluation: the test set split evenly across the workers.
  std::map<int, std::tuple<double, int64_t, int64_t>> evals;
  for (int i = 0; i < w_count; ++i) {
    capnp::MallocMessageBuilder m;
    auto ev = m.initRoot<msg::Control>().initEvaluate();
    ev.setEpoch(epoch);
    ev.setBegin(test_count_ * i / w_count);
    ev.setEnd(test_count_ * (i + 1) / w_count);
    RETURN_IF_ERROR(SendTo(*workers[i], m));
  }
  auto eval_handler = [&](Node& n, msg::Control::Reader m) -> Status {
    if (m.which() == msg::Control::EVAL_DONE && m.getEvalDone().getEpoch() == epoch) {
      auto d = m.getEvalDone();
      evals[n.id] = {d.getLossSum(), d.getCorrect(), d.getCount()};
    }
    return OkStatus();
  };
  RETURN_IF_ERROR(WaitUntil([&] { return static_cast<int>(evals.size()) == w_count; },
                            "the workers to evaluate epoch " + std::to_string(epoch + 1),
                            std::chrono::hours(24), eval_handler));
  double loss = 0;
  int64_t correct = 0, count = 0;
  for (auto& [id, v] : evals) {
    loss += std::get<0>(v);
    correct += std::get<1>(v);
    count += std::get<2>(v);
  }
  e.test_loss = loss / std::max<int64_t>(count, 1);
  e.test_accuracy = static_cast<double>(correct) / std::max<int64_t>(count, 1);
  e.seconds = Since(start);
  return e;
}

StatusOr<FinalStats> Coordinator::Run(const std::atomic<bool>* stop) {
  stop_ = stop;
  const auto run_start = Clock::now();
  const JobConfig& c = options_.config;
  StatusOr<FinalStats> result = [&]() -> StatusOr<FinalStats> {
    ASSIGN_OR_RETURN(JobData data, LoadJobData(c.data));
    input_dim_ = data.train.dim;
    num_classes_ = data.train.num_classes;
    train_count_ = data.train.count;
    test_count_ = data.test.count;
    RETURN_IF_ERROR(Register());
    RETURN_IF_ERROR(Assign());
    FinalStats f;
    for (int epoch = 0; epoch < c.epochs; ++epoch) {
      ASSIGN_OR_RETURN(EpochStats e, RunEpoch(epoch));
      console_->Epoch(e, c.epochs);
      RETURN_IF_ERROR(metrics_->WriteEpoch(e));
      f.test_loss = e.test_loss;
      f.test_accuracy = e.test_accuracy;
    }
    // weights_l2 from the servers' sums of squares.
    std::map<int, double> sums;
    const uint64_t token = static_cast<uint64_t>(clock_);
    std::vector<Node*> servers = NodesOf(msg::Role::SERVER);
    for (Node* s : servers) {
      capnp::MallocMessageBuilder m;
      m.initRoot<msg::Control>().initStatsRequest().setToken(token);
      RETURN_IF_ERROR(SendTo(*s, m));
    }
    RETURN_IF_ERROR(WaitUntil([&] { return sums.size() == servers.size(); },
                              "the servers' parameter statistics", std::chrono::seconds(60),
                              [&](Node& n, msg::Control::Reader m) -> Status {
                                if (m.which() == msg::Control::STATS_REPLY &&
                                    m.getStatsReply().getToken() == token) {
                                  sums[n.id] = m.getStatsReply().getSumSquares();
                                }
                                return OkStatus();
                              }));
    double total = 0;
    for (auto& [id, s] : sums) total += s;
    f.weights_l2 = std::sqrt(total);
    ASSIGN_OR_RETURN(std::unique_ptr<Model> model,
                     Model::Build(c.layers, input_dim_, num_classes_, 1));
    f.params = static_cast<int64_t>(model->layout().parameter_count());
    f.epochs = c.epochs;
    f.seconds = Since(run_start);
    return f;
  }();
  if (result.ok()) {
    ShutdownAll(0, "the job is done");
  } else {
    const int code = result.status().code() == StatusCode::kCancelled ? 130 : 1;
    ShutdownAll(code, result.status().message());
  }
  // Give the shutdown messages a moment to leave before the socket closes
  // (its linger bounds this).
  return result;
}

}  // namespace pstrain
