// What the process table says of a silent node's process.
#include "coordinator/liveness.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <thread>

namespace pstrain {
namespace {

// Polls SilentProcessCause(pid) until it says `want` (30 s at most).
std::string WaitForCause(int pid, const std::string& want) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  std::string cause = SilentProcessCause(pid);
  while (cause != want && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    cause = SilentProcessCause(pid);
  }
  return cause;
}

}  // namespace

TEST_CASE("a silent process is told apart: running, stopped, gone", "[liveness]") {
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    while (true) pause();
  }
  CHECK(WaitForCause(child, kCauseSilent) == kCauseSilent);  // it runs (sleeping in pause)
  REQUIRE(kill(child, SIGSTOP) == 0);
  int status = 0;
  REQUIRE(waitpid(child, &status, WUNTRACED) == child);
  REQUIRE(WIFSTOPPED(status));
  CHECK(WaitForCause(child, kCauseStopped) == kCauseStopped);
  REQUIRE(kill(child, SIGCONT) == 0);
  CHECK(WaitForCause(child, kCauseSilent) == kCauseSilent);
  REQUIRE(kill(child, SIGKILL) == 0);
  CHECK(WaitForCause(child, kCauseExited) == kCauseExited);  // a zombie until reaped
  REQUIRE(waitpid(child, &status, 0) == child);
  CHECK(SilentProcessCause(child) == std::string(kCauseExited));
  CHECK(SilentProcessCause(0) == std::string(kCauseSilent));
  CHECK(DescribeSilence(kCauseStopped) == "its process is stopped");
}

}  // namespace pstrain
