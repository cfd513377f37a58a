// Shared by the end-to-end tests: where the binary and the data are, and
// reading a metrics file.
#pragma once

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/test_util.h"

namespace pstrain::testing {

inline const std::string kPstrain = PSTRAIN_BINARY;
inline const std::string kSourceDir = PSTRAIN_SOURCE_DIR;
inline const std::string kFashionJob = kSourceDir + "/examples/fashion_mlp.toml";
inline const std::string kMnistJob = kSourceDir + "/examples/mnist_mlp.toml";

// Every line of a JSON-lines file.
inline std::vector<nlohmann::json> ReadJsonLines(const std::string& path) {
  std::vector<nlohmann::json> out;
  const std::string text = ReadFile(path);
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    if (end > pos) out.push_back(nlohmann::json::parse(text.substr(pos, end - pos)));
    pos = end + 1;
  }
  return out;
}

// The lines whose "event" is `event`.
inline std::vector<nlohmann::json> Events(const std::vector<nlohmann::json>& lines,
                                          const std::string& event) {
  std::vector<nlohmann::json> out;
  for (const auto& l : lines) {
    if (l.value("event", "") == event) out.push_back(l);
  }
  return out;
}

// The weights digest of a "final" line: 16 hex digits that change with any
// bit of any weight. Equal weights are claimed by equal digests, never by
// close norms.
inline std::string Digest(const nlohmann::json& final_line) {
  const std::string d = final_line.value("weights_digest", "");
  INFO("final line " << final_line.dump());
  REQUIRE(d.size() == 16);
  REQUIRE(d.find_first_not_of("0123456789abcdef") == std::string::npos);
  return d;
}

}  // namespace pstrain::testing
