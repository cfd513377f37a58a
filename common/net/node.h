// What every node (server or worker) does on the control plane: connect a
// DEALER to the coordinator, register, receive its assignment, exchange
// heartbeats, and notice when the coordinator falls silent.
// A ControlChannel is used by the node's main thread only.
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
#include "common/net/control_link.h"
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

// Until Join succeeds the caller's thread talks on the DEALER itself; from
// then on a ControlLink (control_link.h) owns it and keeps the node's
// heartbeats going whatever the caller is doing.
class ControlChannel {
 public:
  static StatusOr<std::unique_ptr<ControlChannel>> Connect(ZmqContext& ctx,
                                                           const std::string& coordinator);

  // Sends Register and waits (at most `deadline`) for the Assignment, then
  // starts the link thread. Servers give their data endpoint, and
  // optionally the same socket as ipc:// for nodes on this host. Gives up
  // (kCancelled) when *stop turns true.
  StatusOr<NodeAssignment> Join(msg::Role role, int requested_id, uint64_t incarnation,
                                const std::string& data_endpoint, std::chrono::seconds deadline,
                                const std::string& local_endpoint = "",
                                const std::atomic<bool>* stop = nullptr);

  Status Send(capnp::MessageBuilder& message);
  // Receives every waiting control message and hands each to fn (the
  // coordinator's heartbeats never reach it). Returns an error when fn
  // does, or a message is bad.
  Status Drain(const std::function<Status(msg::Control::Reader)>& fn);
  // Returns kUnavailable when nothing has come from the coordinator for
  // timeout_ms (heartbeats go out from the link thread).
  Status Tick();

  // The launch token Join sends (see Register.launchToken).
  void set_launch_token(std::string token) { launch_token_ = std::move(token); }

  // Readable when a control message waits (to poll with other sockets).
  Socket* socket();
  int node_id() const { return node_id_; }

 private:
  ControlChannel(ZmqContext& ctx, std::unique_ptr<Socket> s) : ctx_(ctx), socket_(std::move(s)) {}
  ZmqContext& ctx_;
  std::unique_ptr<Socket> socket_;     // until Join succeeds
  std::unique_ptr<ControlLink> link_;  // from then on
  std::string coordinator_;
  int node_id_ = -1;
  std::string launch_token_;
};

}  // namespace pstrain
