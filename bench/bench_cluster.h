// Parameter servers in this process for benchmarks: S real servers (each
// its own thread, ZeroMQ over TCP loopback) started by a stand-in
// coordinator that registers them, hands out the assignment (`ranges(id)`
// gives each server's dense keys) and stops them at the end.
#pragma once

#include <capnp/message.h>
#include <pthread.h>
#include <time.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/msg/codec.h"
#include "common/net/node.h"
#include "paramserver/server.h"

namespace pstrain::bench {

class BenchCluster {
 public:
  struct Options {
    int servers = 1;
    int workers = 1;  // worker ids 0..workers-1, incarnation 1
    std::string job_text;
    int input_dim = 0;
    int num_classes = 0;
    std::function<std::vector<KeyRange>(int server)> ranges;
  };

  explicit BenchCluster(const Options& o) : o_(o) {
    router_ = *Socket::Create(ctx_, SocketKind::kRouter, SocketOptions{});
    const std::string endpoint = *router_->Bind("tcp://127.0.0.1:*");
    for (int s = 0; s < o.servers; ++s) {
      threads_.emplace_back([this, endpoint, s] {
        ServerOptions so;
        so.coordinator = endpoint;
        so.requested_id = s;
        int code = 0;
        Status st = RunServer(so, &stop_, &code);
        if (!st.ok()) std::fprintf(stderr, "server: %s\n", st.message().c_str());
      });
    }
    std::vector<std::pair<std::string, ServerEntry>> regs;
    while (static_cast<int>(regs.size()) < o.servers) {
      Message m = Receive();
      (void)WithDecoded<msg::Control>(m[1], [&](msg::Control::Reader c) {
        if (c.which() == msg::Control::REGISTER) {
          ServerEntry e;
          e.id = c.getRegister().getRequestedId();
          e.endpoint = c.getRegister().getDataEndpoint();
          regs.push_back({std::string(reinterpret_cast<const char*>(m[0].data()), m[0].size()), e});
        }
        return OkStatus();
      });
    }
    NodeAssignment a;
    a.membership_epoch = 1;
    a.job_text = o.job_text;
    a.job_name = "bench.toml";
    a.job_base_dir = "/";
    a.input_dim = o.input_dim;
    a.num_classes = o.num_classes;
    for (int w = 0; w < o.workers; ++w) {
      a.workers.push_back(w);
      a.worker_incarnations.push_back(1);
    }
    a.heartbeat_ms = 1000;
    a.timeout_ms = 600000;
    for (auto& [identity, e] : regs) {
      e.ranges = o.ranges(e.id);
      a.servers.push_back(e);
      identities_.push_back(identity);
    }
    servers_ = a.servers;
    for (auto& [identity, e] : regs) {
      a.node_id = e.id;
      capnp::MallocMessageBuilder m;
      BuildAssignment(a, m.initRoot<msg::Control>().initAssignment());
      Send(identity, m);
    }
    for (int ready = 0; ready < o.servers;) {
      Message m = Receive();
      (void)WithDecoded<msg::Control>(m[1], [&](msg::Control::Reader c) {
        if (c.which() == msg::Control::READY) ++ready;
        return OkStatus();
      });
    }
  }

  ~BenchCluster() {
    for (const std::string& identity : identities_) {
      capnp::MallocMessageBuilder m;
      m.initRoot<msg::Control>().initShutdown().setExitCode(0);
      Send(identity, m);
    }
    for (auto& t : threads_) t.join();
  }

  ZmqContext& ctx() { return ctx_; }
  // CPU time the server threads have used so far.
  double ServerCpuSeconds() {
    double total = 0;
    for (auto& t : threads_) {
      clockid_t id;
      timespec ts{};
      if (pthread_getcpuclockid(t.native_handle(), &id) == 0 && clock_gettime(id, &ts) == 0) {
        total += static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
      }
    }
    return total;
  }
  const std::vector<ServerEntry>& servers() const { return servers_; }

 private:
  Message Receive() {
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < give_up) {
      if (!*router_->WaitReadable(std::chrono::milliseconds(100))) continue;
      Message m;
      if (*router_->Recv(&m, 2)) return m;
    }
    std::fprintf(stderr, "bench: the servers did not start within 60 s\n");
    std::exit(1);
  }
  void Send(const std::string& identity, capnp::MessageBuilder& m) {
    Message frames;
    frames.push_back(Frame::Copy(identity));
    frames.push_back(EncodeFrame(m));
    (void)router_->Send(frames);
  }

  Options o_;
  ZmqContext ctx_;
  std::unique_ptr<Socket> router_;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
  std::vector<std::string> identities_;
  std::vector<ServerEntry> servers_;
};

}  // namespace pstrain::bench
