// The job file's choices that every role acts on, as enums: parsed once, by
// the job-file parser (job/config.cc), and switched on everywhere else.
// Value types.
#pragma once

#include <string_view>

namespace pstrain {

// cluster.consistency: when a server answers a pull (consistency models of
// the parameter-server literature).
enum class Consistency {
  kBsp,  // bulk synchronous: the weights after every slot's gradient of each step
  kAsp,  // asynchronous: whatever the server has
  kSsp   // stale synchronous: at most cluster.staleness steps behind the slowest slot
};

// data.handout: how training samples are handed to the slots of a step.
enum class HandoutKind {
  kGlobal,  // one seeded order of all samples per epoch, cut into the slots' parts
  kStatic   // fixed partitions, one per slot, each shuffled per epoch
};

// "bsp", "asp", "ssp": as the job file writes them.
constexpr std::string_view ConsistencyName(Consistency c) {
  switch (c) {
    case Consistency::kBsp:
      return "bsp";
    case Consistency::kAsp:
      return "asp";
    case Consistency::kSsp:
      return "ssp";
  }
  return "?";
}

constexpr std::string_view HandoutKindName(HandoutKind k) {
  return k == HandoutKind::kStatic ? "static" : "global";
}

}  // namespace pstrain
