#include "coordinator/control_rules.h"

#include <capnp/schema.h>

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
    case C::WORKER_STATE:
      return role == msg::Role::WORKER;
    case C::STATS_REPLY:
    case C::CHECKPOINT_DONE:
    case C::SERVER_STATE:
    case C::REPLICA_READY:
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

}  // namespace pstrain
