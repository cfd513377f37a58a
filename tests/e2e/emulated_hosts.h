// Emulated hosts for the end-to-end tests (launch/scripts/emulated-hosts.sh):
// network namespaces NAME-h1..hN on a bridge, links rate-limited with tc,
// removed when the fixture goes out of scope, also when a test fails.
#pragma once

#include <unistd.h>

#include <string>

#include "tests/e2e/e2e_util.h"
#include "tests/e2e/process.h"

namespace pstrain::testing {

class EmulatedHosts {
 public:
  // rate: e.g. "1gbit", or "none".
  EmulatedHosts(int hosts, const std::string& rate)
      : name_("pst" + std::to_string(::getpid() % 100000)) {
    RunResult r = Run({"/bin/bash", Script(), "up", name_, std::to_string(hosts), rate},
                      std::chrono::seconds(120));
    ok_ = r.code == 0;
    error_ = r.err;
  }
  ~EmulatedHosts() { Run({"/bin/bash", Script(), "down", name_}, std::chrono::seconds(120)); }
  EmulatedHosts(const EmulatedHosts&) = delete;
  EmulatedHosts& operator=(const EmulatedHosts&) = delete;

  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }
  std::string Host(int i) const { return name_ + "-h" + std::to_string(i); }
  // argv that runs `mpirun ARGS` inside host 1, launching into the others.
  std::vector<std::string> Mpirun(const std::vector<std::string>& args) const {
    std::vector<std::string> argv = {"/bin/bash", Script(), "mpirun", name_};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }
  RunResult Cut(int host) const {
    return Run({"/bin/bash", Script(), "cut", name_, std::to_string(host)},
               std::chrono::seconds(60));
  }

 private:
  static std::string Script() { return kSourceDir + "/launch/scripts/emulated-hosts.sh"; }
  std::string name_;
  bool ok_ = false;
  std::string error_;
};

}  // namespace pstrain::testing
