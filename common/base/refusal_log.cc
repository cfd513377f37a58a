#include "common/base/refusal_log.h"

#include <cctype>
#include <cstdio>

namespace pstrain {

std::string PeerName(const std::string& routing_id) {
  bool printable = !routing_id.empty();
  for (unsigned char ch : routing_id) printable = printable && std::isprint(ch) != 0;
  if (printable) return routing_id;
  std::string hex = "0x";
  char b[3];
  for (unsigned char ch : routing_id) {
    std::snprintf(b, sizeof b, "%02x", ch);
    hex += b;
  }
  return hex;
}

bool LogLimiter::Allow(std::chrono::steady_clock::time_point now, int64_t* held_back) {
  if (allowed_ < burst_ || now - last_ >= interval_) {
    ++allowed_;
    last_ = now;
    *held_back = held_;
    held_ = 0;
    return true;
  }
  ++held_;
  return false;
}

}  // namespace pstrain
