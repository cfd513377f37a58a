// Helpers shared by the tests: a temporary folder removed at scope exit,
// and file writing.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace pstrain::testing {

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
