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
#include "common/job/config.h"
#include "common/nn/graph_spec.h"

namespace pstrain::jobfile {

enum class KeyType { kInt, kFloat, kBool, kString, kPath, kEnum, kLayers, kFloatList };

struct KeySpec;

// A key's checked value as the parser hands it to the key's setter: the
// file's (or the command line's) node, or the default's.
struct KeyValue {
  const KeySpec& spec;
  const toml::node& node;
  const std::string& base_dir;  // relative paths are relative to it
};

struct KeySpec {
  const char* key;  // "section.name"
  KeyType type;
  const char* default_value;  // TOML syntax; "" for none
  double min = -1e300;        // numbers: inclusive bounds
  double max = 1e300;
  bool min_exclusive = false;
  std::vector<std::string> choices;  // enums, in the order of the enum they set
  const char* doc = "";
  // Stores the value in the job (null: the parser reads the key itself,
  // like model.layers). Set<&JobConfig::epochs>, SetIn<&JobConfig::cluster,
  // &ClusterConfig::servers>: the row names the field, and the field's type
  // says how to convert.
  void (*set)(JobConfig* job, const KeyValue& value) = nullptr;
};

// False for output.metrics, which is relative to the current folder like a
// flag; true for every other path key.
bool ResolvesAgainstJobFile(const KeySpec& k);

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
