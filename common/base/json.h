// A minimal JSON object writer for metrics lines and status documents:
//   JsonObject().Add("event", "epoch").Add("loss", 0.25).str()
// Non-finite numbers become null. Not thread-safe (a value type).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace pstrain {

class JsonObject {
 public:
  JsonObject& Add(std::string_view key, std::string_view value);
  JsonObject& Add(std::string_view key, const char* value) {
    return Add(key, std::string_view(value));
  }
  JsonObject& Add(std::string_view key, double value);
  JsonObject& Add(std::string_view key, int64_t value);
  JsonObject& Add(std::string_view key, int value) { return Add(key, static_cast<int64_t>(value)); }
  JsonObject& Add(std::string_view key, bool value);
  // Inserts already-serialised JSON (an array or object) as the value.
  JsonObject& AddRaw(std::string_view key, std::string_view json);
  std::string str() const { return body_ + "}"; }

 private:
  void Key(std::string_view key);
  std::string body_ = "{";
};

// `s` as a JSON string literal, quotes included.
std::string JsonQuote(std::string_view s);

}  // namespace pstrain
