// Line-oriented logging to stderr: PSTRAIN_LOG(INFO) << "text";
// Each line is "[role id] LEVEL text" and is written with one write(2), so
// lines from the processes of one job do not interleave. Thread-safe.
#pragma once

#include <sstream>
#include <string>
#include <string_view>

namespace pstrain {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// Process-wide settings.
void SetLogPrefix(std::string prefix);  // e.g. "worker 2"
void SetMinLogLevel(LogLevel level);    // default kInfo
bool LogLevelEnabled(LogLevel level);

namespace internal {
class LogLine {
 public:
  explicit LogLine(LogLevel level) : level_(level) {}
  ~LogLine();
  template <typename T>
  LogLine& operator<<(const T& v) {
    stream_ << v;
    return *this;
  }

 private:
  LogLevel level_;
  std::ostringstream stream_;
};
// Makes `PSTRAIN_LOG(INFO) << a << b` one expression.
struct LogVoidify {
  void operator&(const LogLine&) {}
};
}  // namespace internal

}  // namespace pstrain

#define PSTRAIN_LOG_LEVEL_DEBUG ::pstrain::LogLevel::kDebug
#define PSTRAIN_LOG_LEVEL_INFO ::pstrain::LogLevel::kInfo
#define PSTRAIN_LOG_LEVEL_WARNING ::pstrain::LogLevel::kWarning
#define PSTRAIN_LOG_LEVEL_ERROR ::pstrain::LogLevel::kError

#define PSTRAIN_LOG(level)                               \
  !::pstrain::LogLevelEnabled(PSTRAIN_LOG_LEVEL_##level) \
      ? (void)0                                          \
      : ::pstrain::internal::LogVoidify() &              \
            ::pstrain::internal::LogLine(PSTRAIN_LOG_LEVEL_##level)
