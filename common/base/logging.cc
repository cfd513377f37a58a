#include "common/base/logging.h"

#include <unistd.h>

#include <atomic>
#include <mutex>

namespace pstrain {
namespace {
// Set when a node learns its id, possibly while a socket-security thread
// logs: guarded.
std::mutex prefix_mu;
std::string& PrefixLocked() {
  static std::string prefix;
  return prefix;
}
std::string Prefix() {
  std::lock_guard<std::mutex> lock(prefix_mu);
  return PrefixLocked();
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

void SetLogPrefix(std::string prefix) {
  std::lock_guard<std::mutex> lock(prefix_mu);
  PrefixLocked() = std::move(prefix);
}
void SetMinLogLevel(LogLevel level) { min_level = static_cast<int>(level); }
bool LogLevelEnabled(LogLevel level) { return static_cast<int>(level) >= min_level.load(); }

namespace internal {
LogLine::~LogLine() {
  std::string line;
  if (const std::string prefix = Prefix(); !prefix.empty()) line += "[" + prefix + "] ";
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
