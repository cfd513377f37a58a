// Runs real processes for the end-to-end tests: start with arguments and
// extra environment, capture stdout and stderr to files, wait with a
// deadline, send signals. A Process still running when destroyed is killed
// with SIGKILL and reaped, so a failing test leaves nothing behind.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace pstrain::testing {

class Process {
 public:
  // Starts argv[0] (a path) with argv; output goes to files in a temp folder.
  explicit Process(std::vector<std::string> argv, std::map<std::string, std::string> env = {});
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  // Waits for the exit; returns the exit code (128 + signal when killed), or
  // nullopt when the deadline passes first.
  std::optional<int> Wait(std::chrono::seconds deadline);
  bool Running();
  void Signal(int sig);
  std::string Stdout() const;
  std::string Stderr() const;

 private:
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
  std::string out_path_, err_path_, dir_;
};

// Runs to completion (or kills it after `deadline`) and returns
// {exit code, stdout, stderr}; exit code -1 means the deadline passed.
struct RunResult {
  int code;
  std::string out;
  std::string err;
};
RunResult Run(std::vector<std::string> argv,
              std::chrono::seconds deadline = std::chrono::seconds(600));

}  // namespace pstrain::testing
