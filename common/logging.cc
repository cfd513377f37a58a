#include "common/logging.h"

#include <unistd.h>

#include <atomic>

namespace pstrain {
namespace {
// Written once by main() before any other thread exists; read-only after.
std::string& Prefix() {
  static std::string prefix;
  return prefix;
}
std::atomic<int> min_level{static_cast<int>(LogLevel::kInfo)};

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "DEBUG";
    case LogLevel::kInfo:
      return "INFO";
    case LogLevel::kWarning:
      return "WARN";
    case LogLevel::kError:
      return "ERROR";
  }
  return "?";
}
}  // namespace

void SetLogPrefix(std::string prefix) { Prefix() = std::move(prefix); }
void SetMinLogLevel(LogLevel level) { min_level = static_cast<int>(level); }
bool LogLevelEnabled(LogLevel level) { return static_cast<int>(level) >= min_level.load(); }

namespace internal {
LogLine::~LogLine() {
  std::string line;
  if (!Prefix().empty()) line += "[" + Prefix() + "] ";
  line += LevelName(level_);
  line += " ";
  line += stream_.str();
  line += "\n";
  // One write so concurrent lines stay whole; a failed write to stderr has
  // nowhere to be reported.
  ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
  (void)ignored;
}
}  // namespace internal

}  // namespace pstrain
