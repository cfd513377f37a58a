// What a server does with a new server table (Routing): which of the
// replicas it keeps become ranges it serves (promoted after their primary
// died), and, for every range it serves, the server that keeps its backup
// (none: the range runs without one). A plain function of the table and the
// ranges the server holds; the server carries the plan out (moves the
// shards, connects to backups). Tested without sockets.
#pragma once

#include <vector>

#include "common/base/status.h"
#include "common/net/node.h"
#include "common/ps/keys.h"

namespace pstrain {

struct RoutingPlan {
  std::vector<KeyRange> promote;  // replicas this server serves from now on
  struct Backup {
    KeyRange keys;    // a range this server serves (after the promotions)
    int server = -1;  // the server that keeps its backup; -1: none
  };
  std::vector<Backup> backups;
};

// `self`: this server's id; `owned`: the ranges it serves now; `replicas`:
// the backups it keeps. kInternal when the table gives this server a range
// that it neither serves nor has a replica of.
StatusOr<RoutingPlan> PlanRouting(int self, const std::vector<ServerEntry>& servers,
                                  const std::vector<KeyRange>& owned,
                                  const std::vector<KeyRange>& replicas);

}  // namespace pstrain
