#include "coordinator/control_rules.h"

#include <capnp/schema.h>

#include <cctype>
#include <cstdio>

namespace pstrain {

bool RoleMaySend(msg::Role role, msg::Control::Which kind) {
  using C = msg::Control;
  switch (kind) {
    case C::HEARTBEAT:
    case C::READY:
    case C::MEMBERSHIP_ACK:
    case C::ERROR:
      return role == msg::Role::WORKER || role == msg::Role::SERVER;
    case C::PROGRESS:
    case C::EPOCH_DONE:
    case C::EVAL_DONE:
      return role == msg::Role::WORKER;
    case C::STATS_REPLY:
    case C::CHECKPOINT_DONE:
      return role == msg::Role::SERVER;
    default:
      return false;  // Register (answered first) and the coordinator's own messages
  }
}

std::string ControlKindName(msg::Control::Which kind) {
  KJ_IF_MAYBE (field, capnp::Schema::from<msg::Control>().getFieldByDiscriminant(
                          static_cast<uint16_t>(kind))) {
    return field->getProto().getName().cStr();
  }
  return "kind " + std::to_string(static_cast<int>(kind));
}

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
