#include "coordinator/liveness.h"

#include <cstring>
#include <fstream>
#include <sstream>

namespace pstrain {

const char* SilentProcessCause(int pid) {
  if (pid <= 0) return kCauseSilent;
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return kCauseExited;
  // "pid (comm) S ...": comm may hold spaces and parentheses; the state
  // follows the last ')'.
  const size_t close = line.rfind(')');
  if (close == std::string::npos || close + 2 >= line.size()) return kCauseSilent;
  switch (line[close + 2]) {
    case 'T':  // stopped by a signal
    case 't':  // stopped by a tracer
      return kCauseStopped;
    case 'Z':
    case 'X':
      return kCauseExited;
    default:
      return kCauseSilent;
  }
}

std::string DescribeSilence(const char* cause) {
  if (std::strcmp(cause, kCauseStopped) == 0) return "its process is stopped";
  if (std::strcmp(cause, kCauseExited) == 0) return "its process is gone";
  return "its process runs here but nothing it sends arrives";
}

}  // namespace pstrain
