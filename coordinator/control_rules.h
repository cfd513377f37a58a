// What the coordinator accepts on its control socket, as plain rules: which
// messages a node of each role may send it (anything else is refused and
// counted; common/base/refusal_log.h names the peer and limits the lines). Every
// message is attributed to the node registered on the connection it came
// on (its ROUTER routing id), never to a node id it carries.
#pragma once

#include <string>

#include "common/base/refusal_log.h"
#include "common/msg/pstrain.capnp.h"

namespace pstrain {

// True when a node of `role` may send the coordinator a message of kind
// `kind` (Register is answered before a role is known; the coordinator's
// own messages are never accepted from anyone).
bool RoleMaySend(msg::Role role, msg::Control::Which kind);

// "startEpoch", "epochDone", ...: the schema's name of the message kind.
std::string ControlKindName(msg::Control::Which kind);

}  // namespace pstrain
