// Can this machine make network namespaces? The tests that need them skip
// (PSTRAIN_SKIP) only when the kernel refuses one, e.g. without root; a
// missing `ip` (Debian's iproute2, which setup.sh installs) fails them.
#pragma once

#include <unistd.h>

#include <catch2/catch.hpp>
#include <string>

#include "tests/e2e/process.h"

namespace pstrain::testing {

inline constexpr const char* kIp = "/usr/sbin/ip";

// "" when a namespace can be made and removed here; else what the kernel
// said. REQUIREs the ip tool.
inline std::string NetnsRefusal() {
  INFO("setup.sh installs iproute2, which has " << kIp);
  REQUIRE(::access(kIp, X_OK) == 0);
  const std::string probe = "pstrain-probe-" + std::to_string(::getpid());
  RunResult r = Run({kIp, "netns", "add", probe}, std::chrono::seconds(60));
  if (r.code != 0) {
    while (!r.err.empty() && (r.err.back() == '\n' || r.err.back() == ' ')) r.err.pop_back();
    return "the kernel refuses network namespaces (" + r.err + ")";
  }
  Run({kIp, "netns", "del", probe}, std::chrono::seconds(60));
  return "";
}

}  // namespace pstrain::testing
