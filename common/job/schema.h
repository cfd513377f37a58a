// The job file's keys, declared once: a table (Schema) of every key with
// its type, default, valid values and documentation, which drives the
// parser, the overrides and `pstrain help job`; and the reading of
// model.layers, whose keys come from the op registry. For the job-file
// code (config.cc) only.
#pragma once

#include <toml++/toml.h>

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/status.h"
#include "common/nn/graph_spec.h"

namespace pstrain::jobfile {

enum class KeyType { kInt, kFloat, kBool, kString, kPath, kEnum, kLayers, kFloatList };

struct KeySpec {
  const char* key;  // "section.name"
  KeyType type;
  const char* default_value;  // TOML syntax; "" for none
  double min = -1e300;        // numbers: inclusive bounds
  double max = 1e300;
  bool min_exclusive = false;
  std::vector<std::string> choices;  // enums
  const char* doc = "";
};

// Every key, in the order `pstrain help job` lists them.
const std::vector<KeySpec>& Schema();
// Null when there is no such key.
const KeySpec* FindKey(std::string_view key);
// "epochs, batch_size, ..." of [section].
std::string KnownKeysOf(std::string_view section);
// "[job], [data], ..."
std::string KnownSections();
// "an integer", "a number", ...
std::string TypeName(KeyType t);
// "\"sgd\", \"momentum\", ..."
std::string ChoicesText(const KeySpec& k);
// A TOML value as a message shows it: "ten" in quotes, 2.5, "an array".
std::string NodeText(const toml::node& n);

// "--set train.epochs: " for overrides.
class Where {
 public:
  Where(std::string file, std::vector<std::string> overridden)
      : file_(std::move(file)), overridden_(std::move(overridden)) {}
  std::string At(const std::string& key, const toml::node* n) const {
    if (std::find(overridden_.begin(), overridden_.end(), key) != overridden_.end()) {
      return "command line: ";
    }
    if (n != nullptr && n->source().begin.line > 0) {
      return file_ + ":" + std::to_string(n->source().begin.line) + ": ";
    }
    return file_ + ": ";
  }

 private:
  std::string file_;
  std::vector<std::string> overridden_;
};

// Reads model.layers (`n` null when missing) into `out`; errors name
// model.layers[i] and its key, and where it was set.
Status ParseLayers(const toml::node* n, const Where& where, std::vector<LayerSpec>* out);

}  // namespace pstrain::jobfile
