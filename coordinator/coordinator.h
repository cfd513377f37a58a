// The coordinator: registers the nodes, assigns key ranges to servers and
// the hand-out order to workers, runs the epochs (start, progress, end,
// evaluation on the test set split across workers), checks that every
// sample was processed exactly once per epoch, watches heartbeats, writes
// the metrics and the terminal output, and ends the job.
//
// One thread runs it: a loop over its ROUTER socket with deadlines. Nodes
// talk to it only through that socket.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/msg/codec.h"
#include "common/net/zmq_socket.h"
#include "common/node.h"
#include "common/status.h"
#include "common/training_stats.h"
#include "coordinator/console.h"
#include "coordinator/metrics_log.h"

namespace pstrain {

struct CoordinatorOptions {
  JobConfig config;
  std::string job_text;  // the job file's text, sent to every node
  std::string job_name;  // its path as given
  std::string base_dir;  // where relative paths in it point
  std::vector<ConfigOverride> overrides;
  std::string bind_address = "127.0.0.1";
};

class Coordinator {
 public:
  Coordinator(ZmqContext& ctx, CoordinatorOptions options, Console* console, MetricsLog* metrics);
  ~Coordinator();

  // Binds the control socket; returns the endpoint nodes join.
  StatusOr<std::string> Bind();
  // Runs the job to its end. On an error or *stop, nodes are told to exit.
  StatusOr<FinalStats> Run(const std::atomic<bool>* stop);

 private:
  struct Node {
    std::string identity;  // ROUTER routing id
    msg::Role role;
    int id = -1;
    uint64_t incarnation = 0;
    int pid = 0;
    std::string host;
    std::string endpoint;
    bool ready = false;
    std::chrono::steady_clock::time_point last_seen;
  };
  using Handler = std::function<Status(Node& from, msg::Control::Reader c)>;

  Status SendTo(const Node& n, capnp::MessageBuilder& m);
  void ShutdownAll(int code, const std::string& reason);
  // Receives for up to `timeout`, answering heartbeats and handing other
  // messages from registered nodes to `handler`; checks liveness.
  Status Pump(std::chrono::milliseconds timeout, const Handler& handler);
  Status OnRegister(const std::string& identity, msg::Register::Reader r);
  Status WaitUntil(const std::function<bool()>& done, const std::string& what,
                   std::chrono::seconds deadline, const Handler& handler);
  Status Register();
  Status Assign();
  StatusOr<EpochStats> RunEpoch(int epoch);
  std::vector<Node*> NodesOf(msg::Role role);

  ZmqContext& ctx_;
  CoordinatorOptions options_;
  Console* console_;
  MetricsLog* metrics_;
  const std::atomic<bool>* stop_ = nullptr;
  std::unique_ptr<Socket> socket_;
  std::string endpoint_;
  std::map<std::string, Node> nodes_;  // by routing id
  int input_dim_ = 0, num_classes_ = 0;
  int64_t train_count_ = 0, test_count_ = 0;
  uint64_t membership_epoch_ = 1;
  int64_t clock_ = 0;
  bool monitoring_ = false;  // liveness is checked once every node is ready
  std::chrono::steady_clock::time_point last_heartbeat_{};
};

}  // namespace pstrain
