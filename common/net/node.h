// What every node (server or worker) does on the control plane: connect a
// DEALER to the coordinator, register, receive its assignment, exchange
// heartbeats, and notice when the coordinator falls silent.
// Owned by the node's main thread (the socket is not thread safe).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/base/status.h"
#include "common/job/config.h"
#include "common/msg/codec.h"
#include "common/net/zmq_socket.h"
#include "common/ps/keys.h"

namespace pstrain {

struct ServerEntry {
  int id = -1;
  std::string endpoint;
  std::vector<KeyRange> ranges;  // owned (primary)
  uint64_t incarnation = 0;
  std::vector<KeyRange> backup_ranges;  // replicas kept for other servers
  std::string local_endpoint;           // ipc://, for nodes on the same host
  std::string host_key;                 // see LocalHostKey()
};

// This process's host as far as ipc:// goes: host name and network
// namespace (hosts emulated in namespaces share a name and a file system,
// yet must talk over their own links).
std::string LocalHostKey();
// Where to reach a server from this process: its ipc:// socket when on the
// same host, else its TCP endpoint.
const std::string& BestEndpoint(const ServerEntry& e);

void BuildServerInfo(const ServerEntry& e, msg::ServerInfo::Builder b);
ServerEntry ReadServerInfo(msg::ServerInfo::Reader r);

// A node's assignment, decoded from msg::Assignment.
struct NodeAssignment {
  int node_id = -1;
  uint64_t membership_epoch = 0;
  JobConfig config;
  std::string job_text, job_name, job_base_dir;
  std::vector<ConfigOverride> overrides;
  int input_dim = 0;
  int num_classes = 0;
  ImageShape input_shape;  // unknown for flat data
  std::vector<ServerEntry> servers;
  std::vector<int> workers;  // live worker ids, in hand-out order
  std::vector<uint64_t> worker_incarnations;
  int heartbeat_ms = 500;
  int timeout_ms = 3000;
  std::string restore_dir;  // servers: load ranges from this checkpoint folder
};

// Fills an msg::Assignment from `a` (coordinator side).
void BuildAssignment(const NodeAssignment& a, msg::Assignment::Builder b);
// Decodes and parses the job it carries (node side).
StatusOr<NodeAssignment> ReadAssignment(msg::Assignment::Reader r);

// A random 64-bit number that differs between process starts.
uint64_t NewIncarnation();
std::string HostName();
// This process's peak resident memory (VmHWM), or -1 if unknown.
int64_t PeakRssBytes();

class ControlChannel {
 public:
  static StatusOr<std::unique_ptr<ControlChannel>> Connect(ZmqContext& ctx,
                                                           const std::string& coordinator);

  // Sends Register and waits (at most `deadline`) for the Assignment.
  // Servers give their data endpoint, and optionally the same socket as
  // ipc:// for nodes on this host. Gives up (kCancelled) when *stop turns true.
  StatusOr<NodeAssignment> Join(msg::Role role, int requested_id, uint64_t incarnation,
                                const std::string& data_endpoint, std::chrono::seconds deadline,
                                const std::string& local_endpoint = "",
                                const std::atomic<bool>* stop = nullptr);

  Status Send(capnp::MessageBuilder& message);
  // Receives every waiting control message and hands each to fn; heartbeats
  // are answered here. Returns an error when fn does, or a message is bad.
  Status Drain(const std::function<Status(msg::Control::Reader)>& fn);
  // Sends a heartbeat when one is due; returns kUnavailable when nothing has
  // come from the coordinator for timeout_ms.
  Status Tick();

  // The launch token Join sends (see Register.launchToken).
  void set_launch_token(std::string token) { launch_token_ = std::move(token); }

  Socket* socket() { return socket_.get(); }
  int node_id() const { return node_id_; }

 private:
  explicit ControlChannel(std::unique_ptr<Socket> s) : socket_(std::move(s)) {}
  std::unique_ptr<Socket> socket_;
  std::string coordinator_;
  msg::Role role_ = msg::Role::WORKER;
  int node_id_ = -1;
  uint64_t incarnation_ = 0;
  std::string launch_token_;
  std::chrono::milliseconds heartbeat_{500};
  std::chrono::milliseconds timeout_{3000};
  std::chrono::steady_clock::time_point last_sent_{};
  std::chrono::steady_clock::time_point last_heard_{};
  std::chrono::steady_clock::time_point last_tick_{};  // to notice this process stalled
};

}  // namespace pstrain
