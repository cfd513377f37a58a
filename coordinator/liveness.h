// Why the coordinator judges a node dead, in the words its log, its metrics
// events and /metrics use. Liveness comes from each node's control-link
// thread (common/net/control_link.h), not from its training loop, so a
// busy node keeps beating; silence means the process is gone, stopped or
// cut off, and for a node started by this job's launcher on this host the
// process table tells which.
#pragma once

#include <string>

namespace pstrain {

// A death's cause: one of these words.
inline constexpr const char* kCauseExited = "exited";  // the process is gone
inline constexpr const char* kCauseClosed = "connection_closed";
inline constexpr const char* kCauseStopped = "stopped";  // SIGSTOP, a debugger
inline constexpr const char* kCauseSilent = "silent";    // hung, or cut off from here
inline constexpr const char* kCauseNotReady = "not_ready";

// What the process table says of `pid` on this host, for a node that fell
// silent: kCauseExited (no such process, or a zombie), kCauseStopped, or
// kCauseSilent (it runs: hung, or its messages do not get through).
const char* SilentProcessCause(int pid);

// The words a log line gives a silent node's cause.
std::string DescribeSilence(const char* cause);

}  // namespace pstrain
