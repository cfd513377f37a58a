#include "common/job/config.h"

#include <toml++/toml.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/job/schema.h"

namespace pstrain {
namespace {

using jobfile::ChoicesText;
using jobfile::FindKey;
using jobfile::KeySpec;
using jobfile::KeyType;
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
        if (!e.is_number() || *e.value<double>() <= 0) {
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

template <typename T>
T Get(const toml::table& root, const KeySpec& k) {
  const toml::node* n = root.at_path(k.key).node();
  if (n != nullptr) {
    if constexpr (std::is_same_v<T, std::string>)
      return *n->value<std::string>();
    else
      return *n->value<T>();
  }
  if (k.default_value[0] == '\0') return T{};
  toml::table d = toml::parse(std::string("v = ") + k.default_value);
  return *d.get("v")->value<T>();
}

}  // namespace

StatusOr<JobConfig> ParseJobConfig(const std::string& text, const std::string& name,
                                   const std::string& base_dir,
                                   const std::vector<ConfigOverride>& overrides) {
  // Longer than a function should be, and kept whole: after the checks
  // every line reads one key into the job, in the schema's order.
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

  // Unknown sections and keys.
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

  auto spec = [](const char* key) -> const KeySpec& { return *FindKey(key); };
  auto str = [&](const char* key) { return Get<std::string>(root, spec(key)); };
  auto num = [&](const char* key) { return Get<double>(root, spec(key)); };
  auto integer = [&](const char* key) { return Get<int64_t>(root, spec(key)); };
  auto boolean = [&](const char* key) { return Get<bool>(root, spec(key)); };
  auto path = [&](const char* key) {
    std::string p = str(key);
    if (p.empty() || std::filesystem::path(p).is_absolute()) return p;
    return (std::filesystem::path(base_dir) / p).lexically_normal().string();
  };

  JobConfig c;
  c.job_file = name;
  c.name = str("job.name");
  if (c.name.empty()) c.name = std::filesystem::path(name).stem().string();
  c.seed = static_cast<uint64_t>(integer("job.seed"));

  c.data.format = str("data.format");
  c.data.train_images = path("data.train_images");
  c.data.train_labels = path("data.train_labels");
  c.data.test_images = path("data.test_images");
  c.data.test_labels = path("data.test_labels");
  c.data.train = path("data.train");
  c.data.test = path("data.test");
  c.data.label_column = static_cast<int>(integer("data.label_column"));
  c.data.header = boolean("data.header");
  c.data.features = integer("data.features");
  c.data.handout = str("data.handout") == HandoutKindName(HandoutKind::kStatic)
                       ? HandoutKind::kStatic
                       : HandoutKind::kGlobal;
  if (const toml::node* n = root.at_path("data.shard_weights").node()) {
    for (const toml::node& e : *n->as_array()) c.data.shard_weights.push_back(*e.value<double>());
  }
  if (const toml::node* n = root.at_path("data.image_shape").node()) {
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
    c.data.image_shape = {static_cast<int>(*a[0].value<int64_t>()),
                          static_cast<int>(*a[1].value<int64_t>()),
                          static_cast<int>(*a[2].value<int64_t>())};
  }
  const std::vector<const char*> needed =
      c.data.format == "idx" ? std::vector<const char*>{"data.train_images", "data.train_labels",
                                                        "data.test_images", "data.test_labels"}
                             : std::vector<const char*>{"data.train", "data.test"};
  for (const char* key : needed) {
    const std::string p = path(key);
    const toml::node* n = root.at_path(key).node();
    if (p.empty()) {
      return InvalidArgument(where.At(key, n) + key + " is missing: data.format = \"" +
                             c.data.format + "\" needs it");
    }
    std::error_code ec;
    if (!std::filesystem::is_regular_file(p, ec)) {
      return InvalidArgument(where.At(key, n) + key + ": data file " + p + " does not exist" +
                             (std::filesystem::exists(p, ec) ? " as a regular file" : ""));
    }
  }

  RETURN_IF_ERROR(ParseLayers(root.at_path("model.layers").node(), where, &c.layers));
  c.wide = boolean("model.wide");

  const std::string opt = str("optimizer.type");
  c.optimizer.kind = opt == "sgd"        ? OptimizerKind::kSgd
                     : opt == "momentum" ? OptimizerKind::kMomentum
                     : opt == "adam"     ? OptimizerKind::kAdam
                                         : OptimizerKind::kAdagrad;
  c.optimizer.lr = static_cast<float>(num("optimizer.lr"));
  c.optimizer.momentum = static_cast<float>(num("optimizer.momentum"));
  c.optimizer.nesterov = boolean("optimizer.nesterov");
  c.optimizer.beta1 = static_cast<float>(num("optimizer.beta1"));
  c.optimizer.beta2 = static_cast<float>(num("optimizer.beta2"));
  c.optimizer.eps = static_cast<float>(num("optimizer.eps"));
  c.optimizer.weight_decay = static_cast<float>(num("optimizer.weight_decay"));
  for (const char* key : {"optimizer.beta1", "optimizer.beta2"}) {
    if (num(key) >= 1.0) {
      return InvalidArgument(where.At(key, root.at_path(key).node()) + key + " must be < 1, got " +
                             NumberText(num(key)));
    }
  }

  const std::string sched = str("schedule.type");
  c.schedule.kind = sched == "constant" ? ScheduleKind::kConstant
                    : sched == "step"   ? ScheduleKind::kStep
                                        : ScheduleKind::kCosine;
  c.schedule.step_epochs = num("schedule.step_epochs");
  c.schedule.gamma = num("schedule.gamma");
  c.schedule.min_lr_factor = num("schedule.min_lr_factor");
  c.schedule.warmup_epochs = num("schedule.warmup_epochs");

  c.epochs = static_cast<int>(integer("train.epochs"));
  c.batch_size = static_cast<int>(integer("train.batch_size"));
  c.threads = static_cast<int>(integer("train.threads"));
  c.eval_batch_size = static_cast<int>(integer("train.eval_batch_size"));
  c.micro_batches = static_cast<int>(integer("train.micro_batches"));
  c.cluster.servers = static_cast<int>(integer("cluster.servers"));
  c.cluster.workers = static_cast<int>(integer("cluster.workers"));
  // The schema has checked the value is one of the names.
  for (Consistency k : {Consistency::kBsp, Consistency::kAsp, Consistency::kSsp}) {
    if (str("cluster.consistency") == ConsistencyName(k)) c.cluster.consistency = k;
  }
  c.cluster.staleness = static_cast<int>(integer("cluster.staleness"));
  c.cluster.bind = str("cluster.bind");
  c.cluster.replication = static_cast<int>(integer("cluster.replication"));
  if (c.cluster.replication > c.cluster.servers) {
    return InvalidArgument(
        where.At("cluster.replication", root.at_path("cluster.replication").node()) +
        "cluster.replication " + std::to_string(c.cluster.replication) +
        " needs at least as many servers, not " + std::to_string(c.cluster.servers));
  }
  c.cluster.heartbeat_ms = static_cast<int>(integer("cluster.heartbeat_ms"));
  c.cluster.ipc = boolean("cluster.ipc");
  c.cluster.overlap = boolean("cluster.overlap");
  c.cluster.timeout_ms = static_cast<int>(integer("cluster.timeout_ms"));
  c.cluster.start_timeout_s = static_cast<int>(integer("cluster.start_timeout_s"));
  if (c.cluster.timeout_ms <= c.cluster.heartbeat_ms) {
    return InvalidArgument(
        where.At("cluster.timeout_ms", root.at_path("cluster.timeout_ms").node()) +
        "cluster.timeout_ms (" + std::to_string(c.cluster.timeout_ms) +
        ") must be larger than cluster.heartbeat_ms (" + std::to_string(c.cluster.heartbeat_ms) +
        ")");
  }
  if (!c.data.shard_weights.empty() && c.data.handout != HandoutKind::kStatic) {
    return InvalidArgument(
        where.At("data.shard_weights", root.at_path("data.shard_weights").node()) +
        "data.shard_weights needs data.handout = \"static\"");
  }
  c.checkpoint_dir = path("checkpoint.dir");
  c.checkpoint_every_epochs = static_cast<int>(integer("checkpoint.every_epochs"));
  c.checkpoint_keep = static_cast<int>(integer("checkpoint.keep"));
  c.metrics_path = str("output.metrics");
  c.progress = str("output.progress");
  c.compress_gradients = str("compression.gradients");
  c.compress_weights = str("compression.weights");
  c.topk_ratio = num("compression.topk_ratio");
  if (!(c.topk_ratio > 0.0)) {
    return InvalidArgument(
        where.At("compression.topk_ratio", root.at_path("compression.topk_ratio").node()) +
        "compression.topk_ratio must be above 0 (and at most 1), not " +
        std::to_string(c.topk_ratio));
  }
  c.key_path = path("security.key");
  c.insecure = boolean("security.insecure");
  c.http_port = static_cast<int>(integer("output.http_port"));
  c.http_bind = str("output.http_bind");
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
    // output.metrics is relative to the current folder, like a flag.
    if (k.type != KeyType::kPath || std::string_view(k.key) == "output.metrics") continue;
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

StatusOr<JobConfig> LoadJobConfig(const std::string& path,
                                  const std::vector<ConfigOverride>& overrides) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound(path + ": cannot open the job file");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string dir = std::filesystem::absolute(path).parent_path().string();
  return ParseJobConfig(ss.str(), path, dir, overrides);
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
