#include "paramserver/routing_plan.h"

#include <algorithm>

namespace pstrain {

StatusOr<RoutingPlan> PlanRouting(int self, const std::vector<ServerEntry>& servers,
                                  const std::vector<KeyRange>& owned,
                                  const std::vector<KeyRange>& replicas) {
  RoutingPlan plan;
  std::vector<KeyRange> serving = owned;
  auto has = [](const std::vector<KeyRange>& v, const KeyRange& r) {
    return std::find(v.begin(), v.end(), r) != v.end();
  };
  // Served already: inside a range this server serves.
  auto serves = [&serving](const KeyRange& r) {
    return std::any_of(serving.begin(), serving.end(),
                       [&](const KeyRange& s) { return r.begin >= s.begin && r.end <= s.end; });
  };
  for (const ServerEntry& s : servers) {
    if (s.id != self) continue;
    for (const KeyRange& r : s.ranges) {
      if (serves(r)) continue;
      if (!has(replicas, r)) {
        return Internal("assigned keys " + ToString(r) + " that this server has no replica of");
      }
      plan.promote.push_back(r);
      serving.push_back(r);
    }
  }
  for (const KeyRange& r : serving) {
    RoutingPlan::Backup b{r, -1};
    for (const ServerEntry& s : servers) {
      if (s.id != self && has(s.backup_ranges, r)) b.server = s.id;
    }
    plan.backups.push_back(b);
  }
  return plan;
}

}  // namespace pstrain
