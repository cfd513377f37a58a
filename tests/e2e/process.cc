#include "tests/e2e/process.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <stdexcept>
#include <thread>

#include "tests/test_util.h"

namespace pstrain::testing {

Process::Process(std::vector<std::string> argv, std::map<std::string, std::string> env) {
  std::string tmpl = (std::filesystem::temp_directory_path() / "pstrain-proc-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  dir_ = tmpl;
  out_path_ = dir_ + "/stdout";
  err_path_ = dir_ + "/stderr";
  std::vector<char*> args;
  for (std::string& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    ::setpgid(0, 0);
    int out = ::open(out_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = ::open(err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int in = ::open("/dev/null", O_RDONLY);
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(err, 2);
    for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
}

Process::~Process() {
  if (Running()) {
    ::kill(-pid_, SIGKILL);  // the whole process group
    ::kill(pid_, SIGKILL);
    Wait(std::chrono::seconds(30));
  }
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

std::optional<int> Process::Wait(std::chrono::seconds deadline) {
  const auto until = std::chrono::steady_clock::now() + deadline;
  while (!exit_code_) {
    int status = 0;
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      break;
    }
    if (std::chrono::steady_clock::now() >= until) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return exit_code_;
}

bool Process::Running() { return !Wait(std::chrono::seconds(0)).has_value(); }

void Process::Signal(int sig) {
  if (!exit_code_) ::kill(pid_, sig);
}

std::string Process::Stdout() const { return ReadFile(out_path_); }
std::string Process::Stderr() const { return ReadFile(err_path_); }

RunResult Run(std::vector<std::string> argv, std::chrono::seconds deadline) {
  Process p(std::move(argv));
  std::optional<int> code = p.Wait(deadline);
  return {code ? *code : -1, p.Stdout(), p.Stderr()};
}

}  // namespace pstrain::testing
