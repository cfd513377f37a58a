// The command line of `pstrain`: a subcommand, positional arguments, and
// flags. Flags that set job keys become ConfigOverrides, so the job file and
// the command line are validated by the same code. Pure; no globals.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "common/base/status.h"
#include "common/job/config.h"

namespace pstrain {

struct CommandLine {
  std::string command;                  // "train", "help", ...
  std::vector<std::string> positional;  // e.g. the job file
  std::vector<ConfigOverride> overrides;
  std::map<std::string, std::string> options;  // flags that are not job keys
  bool help = false;
};

// argv[0] is skipped.
StatusOr<CommandLine> ParseCommandLine(int argc, const char* const* argv);

// `pstrain --help` and `pstrain train --help`.
std::string UsageText();
// Prints "pstrain: <the status's message>" on stderr and returns `code`:
// how every command reports the error that ends it.
int Fail(int code, const Status& s);

}  // namespace pstrain
