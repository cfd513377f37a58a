// What the coordinator accepts on its control socket, as plain rules: which
// messages a node of each role may send it (anything else is refused and
// counted), and how a peer is named in the log line of a refusal. Every
// message is attributed to the node registered on the connection it came
// on (its ROUTER routing id), never to a node id it carries.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "common/msg/pstrain.capnp.h"

namespace pstrain {

// True when a node of `role` may send the coordinator a message of kind
// `kind` (Register is answered before a role is known; the coordinator's
// own messages are never accepted from anyone).
bool RoleMaySend(msg::Role role, msg::Control::Which kind);

// "startEpoch", "epochDone", ...: the schema's name of the message kind.
std::string ControlKindName(msg::Control::Which kind);

// A routing id for a log line: printable ids as they are, others in hex.
std::string PeerName(const std::string& routing_id);

// Rate limit of refusal log lines: the first `burst` lines, then at most one
// per `interval`; Allow() also says how many were held back since the last
// line that was allowed.
class LogLimiter {
 public:
  LogLimiter(int burst, std::chrono::milliseconds interval) : burst_(burst), interval_(interval) {}
  // True when a line may be written at `now`; *held_back: lines suppressed
  // since the last one allowed.
  bool Allow(std::chrono::steady_clock::time_point now, int64_t* held_back);

 private:
  int burst_;
  std::chrono::milliseconds interval_;
  int64_t allowed_ = 0, held_ = 0;
  std::chrono::steady_clock::time_point last_{};
};

}  // namespace pstrain
