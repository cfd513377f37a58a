// Log lines about refused messages: the peer named by its routing id, and a
// rate limit so a flood of bad messages cannot flood the log. Shared by the
// coordinator's control socket and the servers' data sockets.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace pstrain {

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
