// A node's control connection once it has joined, kept alive by a thread of
// its own: the liveness the coordinator sees does not depend on how long
// the node's main thread spends in a training step, loading data or
// evaluating.
//
// The link thread owns the DEALER to the coordinator. It sends a heartbeat
// every heartbeat_ms, swallows the coordinator's heartbeats, notices when
// the coordinator has been silent for timeout_ms, and passes every other
// message through an inproc PAIR to the main thread, which handles them
// when it gets to them (Drain) and sends through the same pair (Send). So
// the main thread takes no lock per step, and only a process that is gone,
// stopped (both threads stand still) or cut off falls silent.
//
// Each heartbeat carries how long the main thread has not looked at the
// link (computeIdleMs): the coordinator shows it, so a node stuck in a step
// is visible without being mistaken for a dead one.
//
// With a grace period, a coordinator silent for timeout_ms does not end
// the node: the link holds what the main thread sends (the main thread goes
// on: a worker trains, a server serves) and offers the node, every
// heartbeat interval, to whatever coordinator answers at the same address
// (Rejoin). A restarted coordinator that takes it answers `adopted`: the
// held messages were meant for the one that died and are dropped, and the
// main thread reports its state. The same coordinator heard again (it was
// stopped, not gone) gets the held messages. Past the grace period, the
// link fails as without one.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/base/status.h"
#include "common/msg/codec.h"
#include "common/net/zmq_socket.h"

namespace pstrain {

struct ControlLinkOptions {
  int node_id = -1;
  uint64_t incarnation = 0;
  msg::Role role = msg::Role::WORKER;
  std::chrono::milliseconds heartbeat{500};
  std::chrono::milliseconds timeout{3000};
  std::string coordinator;  // for messages
  // Above 0: how long to wait for a coordinator once this one fell silent
  // (cluster.coordinator_grace_s); 0: fail at once.
  std::chrono::milliseconds grace{0};
  // What a Rejoin says of the node besides the above.
  std::string host, data_endpoint, local_endpoint, host_key, launch_token;
  int pid = 0;
  uint64_t membership_epoch = 0;  // the assignment's
};

class ControlLink {
 public:
  // Takes over `dealer` (connected, registered) and starts the thread.
  static StatusOr<std::unique_ptr<ControlLink>> Start(ZmqContext& ctx,
                                                      std::unique_ptr<Socket> dealer,
                                                      const ControlLinkOptions& options);
  // Forwards what Send queued, then stops and joins the thread.
  ~ControlLink();
  ControlLink(const ControlLink&) = delete;
  ControlLink& operator=(const ControlLink&) = delete;

  // The rest is for the main thread only.
  Status Send(capnp::MessageBuilder& message);
  // Hands every message waiting from the coordinator to fn, in order.
  // Returns an error when fn does, or a message is malformed.
  Status Drain(const std::function<Status(msg::Control::Reader)>& fn);
  // kUnavailable once the coordinator has been silent for the timeout (or
  // the link failed); OK otherwise.
  Status Tick();
  // Readable when a message waits for Drain (to poll with other sockets).
  Socket* socket() { return main_end_.get(); }

 private:
  ControlLink() = default;
  void Run();
  // One turn of the thread: what the coordinator sent, what the main thread
  // sent, and a heartbeat when one is due. False once the main thread said
  // stop.
  bool Turn(std::chrono::steady_clock::time_point now);
  void FromCoordinator(std::chrono::steady_clock::time_point now);
  bool FromMain();
  void Flush();
  void SendHeartbeat(std::chrono::steady_clock::time_point now);
  void SendRejoin(std::chrono::steady_clock::time_point now);
  // The coordinator is gone: hold what the main thread sends, offer the
  // node to the next one.
  void Orphan(std::chrono::steady_clock::time_point now);
  void SendNow(capnp::MessageBuilder& m, std::chrono::steady_clock::time_point now);
  void Fail(Status s);
  void SeenMain();

  ControlLinkOptions options_;
  std::unique_ptr<Socket> dealer_;    // the link thread's
  std::unique_ptr<Socket> link_end_;  // the link thread's
  std::unique_ptr<Socket> main_end_;  // the main thread's
  std::thread thread_;

  // Link thread only.
  std::deque<Message> outbox_;  // to the coordinator, not yet taken by ZeroMQ
  std::chrono::steady_clock::time_point last_sent_{}, last_heard_{}, last_turn_{};
  bool orphaned_ = false;  // the coordinator fell silent; Rejoin offered
  std::chrono::steady_clock::time_point orphan_since_{};
  std::deque<Message> held_;  // from the main thread while orphaned

  // Shared.
  std::atomic<int64_t> main_seen_ns_{0};  // steady clock: the main thread last used the link
  // The newest membership epoch the main thread was given (Rejoin says it).
  std::atomic<uint64_t> membership_epoch_{0};
  std::mutex mutex_;
  Status failure_;  // guarded by mutex_
};

}  // namespace pstrain
