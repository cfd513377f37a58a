// Helpers shared by the tests: a temporary folder removed at scope exit,
// file writing, HTTP requests, and skips that ctest reports as skipped.
#pragma once

#include <cstdint>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

namespace pstrain::testing {

// The exit code of a test process whose tests passed but one skipped; the
// tests' CTest SKIP_RETURN_CODE (tests/CMakeLists.txt).
inline constexpr int kSkipExitCode = 77;

// Records that the running test cannot run on this machine, and why. Under
// CI=true it fails the test instead. Use PSTRAIN_SKIP, which also returns.
// Only for what this machine truly cannot do (the kernel refuses network
// namespaces): a missing tool that setup.sh installs is a failure.
void Skip(const std::string& why);
const std::vector<std::string>& Skips();

#define PSTRAIN_SKIP(why)                                      \
  do {                                                         \
    std::ostringstream pstrain_skip_why;                       \
    pstrain_skip_why << why; /* NOLINT(bugprone-macro-parentheses) */ \
    ::pstrain::testing::Skip(pstrain_skip_why.str());          \
    return;                                                    \
  } while (false)

class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::string File(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

void WriteFile(const std::string& path, const std::string& bytes);
void WriteFile(const std::string& path, const std::vector<uint8_t>& bytes);
std::string ReadFile(const std::string& path);
// gzip-compresses `bytes` into `path`.
void WriteGzipFile(const std::string& path, const std::vector<uint8_t>& bytes);

// One HTTP/1.1 request to 127.0.0.1:port (Connection: close); status -1
// when the connection failed or the answer was not HTTP.
struct HttpResult {
  int status = -1;
  std::string headers;
  std::string body;
};
HttpResult HttpGet(int port, const std::string& path, const std::string& method = "GET");

}  // namespace pstrain::testing
