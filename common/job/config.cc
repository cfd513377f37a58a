#include "common/job/config.h"

#include <toml++/toml.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "common/job/schema.h"

namespace pstrain {
namespace {

using jobfile::ChoicesText;
using jobfile::FindKey;
using jobfile::KeySpec;
using jobfile::KeyType;
using jobfile::KeyValue;
using jobfile::KnownKeysOf;
using jobfile::KnownSections;
using jobfile::NodeText;
using jobfile::ParseLayers;
using jobfile::Schema;
using jobfile::TypeName;
using jobfile::Where;

std::string NumberText(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

Status CheckValue(const KeySpec& k, const toml::node& n, const Where& where) {
  const std::string at = where.At(k.key, &n);
  auto wrong_type = [&](const std::string& want) {
    return InvalidArgument(at + k.key + " must be " + want + ", got " + NodeText(n));
  };
  double number = 0;
  switch (k.type) {
    case KeyType::kInt:
      if (!n.is_integer()) return wrong_type("an integer");
      number = static_cast<double>(*n.value<int64_t>());
      break;
    case KeyType::kFloat:
      if (!n.is_number()) return wrong_type("a number");
      number = *n.value<double>();
      if (!std::isfinite(number)) return wrong_type("a finite number");
      break;
    case KeyType::kBool:
      if (!n.is_boolean()) return wrong_type("true or false");
      return OkStatus();
    case KeyType::kString:
    case KeyType::kPath:
      if (!n.is_string()) return wrong_type("a string");
      return OkStatus();
    case KeyType::kEnum: {
      if (!n.is_string()) return wrong_type("one of " + ChoicesText(k));
      const std::string v = *n.value<std::string>();
      if (std::find(k.choices.begin(), k.choices.end(), v) == k.choices.end()) {
        return InvalidArgument(at + k.key + " is \"" + v + "\"; valid values: " + ChoicesText(k));
      }
      return OkStatus();
    }
    case KeyType::kLayers:
      return OkStatus();  // checked by ParseLayers
    case KeyType::kFloatList: {
      const toml::array* a = n.as_array();
      if (a == nullptr || a->empty()) return wrong_type("a non-empty array of positive numbers");
      for (const toml::node& e : *a) {
        if (!e.is_number() || !(*e.value<double>() > 0) || !std::isfinite(*e.value<double>())) {
          return InvalidArgument(at + k.key + " must hold positive numbers, got " + NodeText(e));
        }
      }
      return OkStatus();
    }
  }
  const bool low = k.min_exclusive ? number <= k.min : number < k.min;
  if (low || number > k.max) {
    std::string range = k.min_exclusive ? "> " + NumberText(k.min) : ">= " + NumberText(k.min);
    if (k.max < 1e299) range += " and <= " + NumberText(k.max);
    return InvalidArgument(at + k.key + " must be " + range + ", got " + NodeText(n));
  }
  return OkStatus();
}

// Sets `value` (TOML syntax, or a bare string) at dotted `key` in `root`.
Status ApplyOverride(toml::table& root, const ConfigOverride& o) {
  const KeySpec* spec = FindKey(o.key);
  if (spec == nullptr) {
    std::string section = o.key.substr(0, o.key.find('.'));
    std::string known = KnownKeysOf(section);
    return InvalidArgument("command line: unknown key " + o.key +
                           (known.empty() ? " (sections: " + KnownSections() + ")"
                                          : " (known keys in [" + section + "]: " + known + ")"));
  }
  const std::string section = o.key.substr(0, o.key.find('.'));
  const std::string name = o.key.substr(o.key.find('.') + 1);
  if (!root.contains(section)) root.insert(section, toml::table{});
  toml::table* t = root[section].as_table();
  if (t == nullptr) return InvalidArgument("job file: [" + section + "] must be a table");
  if (spec->type == KeyType::kString || spec->type == KeyType::kPath ||
      spec->type == KeyType::kEnum) {
    std::string v = o.value;
    if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
    if (spec->type == KeyType::kPath && !v.empty()) v = std::filesystem::absolute(v).string();
    t->insert_or_assign(name, v);
    return OkStatus();
  }
  try {
    toml::table parsed = toml::parse("v = " + o.value);
    t->insert_or_assign(name, *parsed.get("v"));
  } catch (const toml::parse_error&) {
    t->insert_or_assign(name, o.value);  // type-checked below like any other value
  }
  return OkStatus();
}

// Unknown sections and keys, and every value against its key's type and range.
Status CheckKeys(const toml::table& root, const Where& where) {
  for (const auto& [section_key, section_node] : root) {
    const std::string section(section_key.str());
    const toml::table* t = section_node.as_table();
    if (KnownKeysOf(section).empty()) {
      return InvalidArgument(where.At("", &section_node) + "unknown section [" + section +
                             "] (sections: " + KnownSections() + ")");
    }
    if (t == nullptr) {
      return InvalidArgument(where.At("", &section_node) + section + " must be a table [" +
                             section + "], got " + NodeText(section_node));
    }
    for (const auto& [k, v] : *t) {
      const std::string key = section + "." + std::string(k.str());
      const KeySpec* spec = FindKey(key);
      if (spec == nullptr) {
        return InvalidArgument(where.At(key, &v) + "unknown key " + key + " (known keys in [" +
                               section + "]: " + KnownKeysOf(section) + ")");
      }
      RETURN_IF_ERROR(CheckValue(*spec, v, where));
    }
  }
  return OkStatus();
}

// Every key with a setter: its value, or its default when it has one.
void ReadKeys(const toml::table& root, const std::string& base_dir, JobConfig* c) {
  for (const KeySpec& k : Schema()) {
    if (k.set == nullptr) continue;
    const toml::node* n = root.at_path(k.key).node();
    toml::table defaults;
    if (n == nullptr) {
      if (k.default_value[0] == '\0') continue;
      defaults = toml::parse(std::string("v = ") + k.default_value);
      n = defaults.get("v");
    }
    k.set(c, KeyValue{k, *n, base_dir});
  }
}

Status ReadImageShape(const toml::table& root, const Where& where, ImageShape* shape) {
  const toml::node* n = root.at_path("data.image_shape").node();
  if (n == nullptr) return OkStatus();
  const toml::array& a = *n->as_array();
  std::string given;
  for (const toml::node& e : a) given += (given.empty() ? "[" : ", ") + NodeText(e);
  if (a.size() != 3 || !std::all_of(a.begin(), a.end(), [](const toml::node& e) {
        return e.is_integer() && *e.value<int64_t>() <= (1 << 24);
      })) {
    return InvalidArgument(where.At("data.image_shape", n) +
                           "data.image_shape must be [channels, height, width], three positive "
                           "integers, got " +
                           given + "]");
  }
  *shape = {static_cast<int>(*a[0].value<int64_t>()), static_cast<int>(*a[1].value<int64_t>()),
            static_cast<int>(*a[2].value<int64_t>())};
  return OkStatus();
}

// The files data.format needs are named and exist.
Status CheckDataFiles(const DataConfig& d, const toml::table& root, const Where& where) {
  using Needed = std::vector<std::pair<const char*, const std::string*>>;
  const Needed needed = d.format == "idx"
                            ? Needed{{"data.train_images", &d.train_images},
                                     {"data.train_labels", &d.train_labels},
                                     {"data.test_images", &d.test_images},
                                     {"data.test_labels", &d.test_labels}}
                            : Needed{{"data.train", &d.train}, {"data.test", &d.test}};
  for (const auto& [key, path] : needed) {
    const toml::node* n = root.at_path(key).node();
    if (path->empty()) {
      return InvalidArgument(where.At(key, n) + key + " is missing: data.format = \"" + d.format +
                             "\" needs it");
    }
    std::error_code ec;
    if (!std::filesystem::is_regular_file(*path, ec)) {
      return InvalidArgument(where.At(key, n) + key + ": data file " + *path + " does not exist" +
                             (std::filesystem::exists(*path, ec) ? " as a regular file" : ""));
    }
  }
  return OkStatus();
}

// What no single key's range can say: keys that must agree with each other.
Status CheckAcrossKeys(const JobConfig& c, const toml::table& root, const Where& where) {
  auto at = [&](const char* key) { return where.At(key, root.at_path(key).node()); };
  for (const auto& [key, beta] : {std::pair{"optimizer.beta1", c.optimizer.beta1},
                                  std::pair{"optimizer.beta2", c.optimizer.beta2}}) {
    if (beta >= 1.0f) {
      return InvalidArgument(at(key) + key + " must be < 1, got " + NumberText(beta));
    }
  }
  if (c.cluster.replication > c.cluster.servers) {
    return InvalidArgument(
        at("cluster.replication") + "cluster.replication " + std::to_string(c.cluster.replication) +
        " needs at least as many servers, not " + std::to_string(c.cluster.servers));
  }
  if (c.cluster.timeout_ms <= c.cluster.heartbeat_ms) {
    return InvalidArgument(at("cluster.timeout_ms") + "cluster.timeout_ms (" +
                           std::to_string(c.cluster.timeout_ms) +
                           ") must be larger than cluster.heartbeat_ms (" +
                           std::to_string(c.cluster.heartbeat_ms) + ")");
  }
  if (!c.data.shard_weights.empty() && c.data.handout != HandoutKind::kStatic) {
    return InvalidArgument(at("data.shard_weights") +
                           "data.shard_weights needs data.handout = \"static\"");
  }
  for (const auto& [key, set] :
       {std::pair{"checkpoint.every_steps", c.checkpoint_every_steps > 0},
        std::pair{"checkpoint.every_seconds", c.checkpoint_every_seconds > 0}}) {
    if (set && c.cluster.consistency != Consistency::kBsp) {
      return InvalidArgument(at(key) + key +
                             " needs cluster.consistency = \"bsp\": only BSP has a clock at which "
                             "every range holds the same steps");
    }
  }
  if (c.init_from_partial && c.init_from.empty()) {
    return InvalidArgument(at("model.init_from_partial") +
                           "model.init_from_partial needs model.init_from (--init-from CKPT)");
  }
  if (!c.init_from.empty() && !std::filesystem::is_directory(c.init_from)) {
    return InvalidArgument(at("model.init_from") + "model.init_from: " + c.init_from +
                           ": no such checkpoint folder");
  }
  if (!(c.topk_ratio > 0.0)) {
    return InvalidArgument(at("compression.topk_ratio") +
                           "compression.topk_ratio must be above 0 (and at most 1), not " +
                           std::to_string(c.topk_ratio));
  }
  return OkStatus();
}

}  // namespace

StatusOr<JobConfig> ParseJobConfig(const std::string& text, const std::string& name,
                                   const std::string& base_dir,
                                   const std::vector<ConfigOverride>& overrides) {
  toml::table root;
  try {
    root = toml::parse(text, name);
  } catch (const toml::parse_error& e) {
    return InvalidArgument(name + ":" + std::to_string(e.source().begin.line) + ": " +
                           std::string(e.description()));
  }
  std::vector<std::string> overridden;
  for (const ConfigOverride& o : overrides) {
    RETURN_IF_ERROR(ApplyOverride(root, o));
    overridden.push_back(o.key);
  }
  const Where where(name, overridden);
  RETURN_IF_ERROR(CheckKeys(root, where));

  JobConfig c;
  c.job_file = name;
  ReadKeys(root, base_dir, &c);
  if (c.name.empty()) c.name = std::filesystem::path(name).stem().string();
  RETURN_IF_ERROR(ReadImageShape(root, where, &c.data.image_shape));
  RETURN_IF_ERROR(CheckDataFiles(c.data, root, where));
  RETURN_IF_ERROR(ParseLayers(root.at_path("model.layers").node(), where, &c.layers));
  RETURN_IF_ERROR(CheckAcrossKeys(c, root, where));
  return c;
}

StatusOr<std::string> ResolvedJobToml(const std::string& text, const std::string& name,
                                      const std::string& base_dir,
                                      const std::vector<ConfigOverride>& overrides) {
  // Validates everything first: what is written must parse again.
  RETURN_IF_ERROR(ParseJobConfig(text, name, base_dir, overrides).status());
  toml::table root = toml::parse(text, name);
  for (const ConfigOverride& o : overrides) RETURN_IF_ERROR(ApplyOverride(root, o));
  for (const KeySpec& k : Schema()) {
    if (!jobfile::ResolvesAgainstJobFile(k)) continue;
    toml::node* n = root.at_path(k.key).node();
    if (n == nullptr || !n->is_string()) continue;
    const std::string p = *n->value<std::string>();
    if (p.empty() || std::filesystem::path(p).is_absolute()) continue;
    *n->as_string() = (std::filesystem::path(base_dir) / p).lexically_normal().string();
  }
  std::ostringstream os;
  os << "# " << name << " as it ran, command-line overrides applied\n" << root << "\n";
  return os.str();
}

StatusOr<std::string> ReadJobFile(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::exists(path, ec) && !std::filesystem::is_regular_file(path, ec)) {
    return InvalidArgument(path + ": the job file is not a regular file");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound(path + ": cannot open the job file");
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return InvalidArgument(path + ": cannot read the job file");
  return ss.str();
}

StatusOr<JobConfig> LoadJobConfig(const std::string& path,
                                  const std::vector<ConfigOverride>& overrides) {
  ASSIGN_OR_RETURN(const std::string text, ReadJobFile(path));
  const std::string dir = std::filesystem::absolute(path).parent_path().string();
  return ParseJobConfig(text, path, dir, overrides);
}

bool JobKeyIsPath(const std::string& key) {
  const KeySpec* k = FindKey(key);
  return k != nullptr && k->type == KeyType::kPath;
}

std::string JobConfigHelp() {
  std::ostringstream os;
  std::string last;
  for (const KeySpec& k : Schema()) {
    std::string_view full = k.key;
    std::string section(full.substr(0, full.find('.')));
    if (section != last) {
      os << (last.empty() ? "" : "\n") << "[" << section << "]\n";
      last = section;
    }
    std::string type = TypeName(k.type);
    if (k.type == KeyType::kEnum) type += " " + ChoicesText(k);
    os << "  " << full.substr(full.find('.') + 1) << " = "
       << (k.default_value[0] ? k.default_value : "(none)") << "   # " << type << "; " << k.doc
       << "\n";
  }
  return os.str();
}

}  // namespace pstrain
