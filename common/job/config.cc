#include "common/job/config.h"

#include <toml++/toml.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/nn/ops/registry.h"

namespace pstrain {
namespace {

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

const std::vector<KeySpec>& Schema() {
  static const std::vector<KeySpec> schema = {
      {"job.name",
       KeyType::kString,
       "",
       0,
       0,
       false,
       {},
       "name shown in logs and metrics (default: the job file's name)"},
      {"job.seed", KeyType::kInt, "1", 0, 9.2e18, false, {}, "fixes initialisation and data order"},
      {"data.format",
       KeyType::kEnum,
       "\"idx\"",
       0,
       0,
       false,
       {"idx", "csv", "libsvm"},
       "file format of the data"},
      {"data.train_images",
       KeyType::kPath,
       "",
       0,
       0,
       false,
       {},
       "idx: training images (gzipped or plain)"},
      {"data.train_labels", KeyType::kPath, "", 0, 0, false, {}, "idx: training labels"},
      {"data.test_images", KeyType::kPath, "", 0, 0, false, {}, "idx: test images"},
      {"data.test_labels", KeyType::kPath, "", 0, 0, false, {}, "idx: test labels"},
      {"data.train", KeyType::kPath, "", 0, 0, false, {}, "csv, libsvm: training samples"},
      {"data.test", KeyType::kPath, "", 0, 0, false, {}, "csv, libsvm: test samples"},
      {"data.features",
       KeyType::kInt,
       "0",
       0,
       2147483647,
       false,
       {},
       "libsvm: size of the feature space, every index below it (0: one more than the largest "
       "index in the files)"},
      {"data.label_column",
       KeyType::kInt,
       "0",
       -65536,
       65535,
       false,
       {},
       "csv: 0-based column of the label; -1 is the last"},
      {"data.header", KeyType::kBool, "false", 0, 0, false, {}, "csv: the first line is a header"},
      {"data.handout",
       KeyType::kEnum,
       "\"global\"",
       0,
       0,
       false,
       {"global", "static"},
       "how samples are handed to workers: one global order per epoch, or fixed partitions"},
      {"data.shard_weights",
       KeyType::kFloatList,
       "",
       0,
       0,
       false,
       {},
       "static: relative partition size per worker, e.g. [1, 2, 3] (default: equal)"},
      {"data.image_shape",
       KeyType::kFloatList,
       "",
       0,
       0,
       false,
       {},
       "[channels, height, width] of a sample, for conv2d and maxpool layers on data without a "
       "shape of its own (CSV: the features hold each pixel's channels together, row by row); "
       "IDX images have theirs"},
      {"model.layers",
       KeyType::kLayers,
       "",
       0,
       0,
       false,
       {},
       "list of {type = \"dense\", units = N [, init = \"he\"|\"torch\"|\"xavier\"]}, {type = "
       "\"relu\"}, {type = \"conv2d\", filters = N, kernel = K [, stride = 1, padding = 0, init]}, "
       "{type = \"maxpool\", size = N [, stride = size]}, {type = \"flatten\"} and {type = "
       "\"dropout\", rate = R}, {type = \"add\"}, {type = \"concat\"}, {type = \"layer_norm\"}, "
       "{type = \"gelu\"}, {type = \"sigmoid\"}, {type = \"tanh\"}; any node may add name = "
       "\"N\" (its parameters are N.weight, ...; unnamed nodes are dense1, conv1, relu1, ...), "
       "inputs = [\"A\", \"B\"] (the nodes it reads, \"input\" being the data; default: the node "
       "before it) and share = \"A\" (use node A's parameters); the last node is the output and "
       "has one unit per class (or one unit for a binary task, trained with the logistic loss); "
       "sparse data starts with {type = \"embedding\", dim = D}, whose rows live on the "
       "parameter servers"},
      {"model.wide",
       KeyType::kBool,
       "false",
       0,
       0,
       false,
       {},
       "sparse data: add a linear term over the features (a one-float-per-feature table) to a "
       "one-unit output (wide and deep)"},
      {"model.loss",
       KeyType::kEnum,
       "\"softmax_cross_entropy\"",
       0,
       0,
       false,
       {"softmax_cross_entropy"},
       "loss function (a one-output model on two-class data uses the logistic loss)"},
      {"optimizer.type",
       KeyType::kEnum,
       "\"momentum\"",
       0,
       0,
       false,
       {"sgd", "momentum", "adam", "adagrad"},
       "update rule"},
      {"optimizer.lr", KeyType::kFloat, "0.05", 0, 1e6, true, {}, "base learning rate"},
      {"optimizer.momentum",
       KeyType::kFloat,
       "0.9",
       0,
       1,
       true,
       {},
       "momentum: velocity decay, in [0, 1)"},
      {"optimizer.nesterov",
       KeyType::kBool,
       "false",
       0,
       0,
       false,
       {},
       "momentum: use Nesterov's variant"},
      {"optimizer.beta1",
       KeyType::kFloat,
       "0.9",
       0,
       1,
       false,
       {},
       "adam: first-moment decay, in [0, 1)"},
      {"optimizer.beta2",
       KeyType::kFloat,
       "0.999",
       0,
       1,
       false,
       {},
       "adam: second-moment decay, in [0, 1)"},
      {"optimizer.eps",
       KeyType::kFloat,
       "1e-8",
       0,
       1,
       true,
       {},
       "adam, adagrad: denominator guard"},
      {"optimizer.weight_decay",
       KeyType::kFloat,
       "0.0",
       0,
       1,
       false,
       {},
       "L2 penalty added to the gradient"},
      {"schedule.type",
       KeyType::kEnum,
       "\"constant\"",
       0,
       0,
       false,
       {"constant", "step", "cosine"},
       "learning-rate schedule"},
      {"schedule.step_epochs",
       KeyType::kFloat,
       "10.0",
       0,
       1e9,
       true,
       {},
       "step: epochs between decays"},
      {"schedule.gamma", KeyType::kFloat, "0.1", 0, 1, true, {}, "step: decay factor"},
      {"schedule.min_lr_factor",
       KeyType::kFloat,
       "0.0",
       0,
       1,
       false,
       {},
       "cosine: final lr as a fraction of optimizer.lr"},
      {"schedule.warmup_epochs",
       KeyType::kFloat,
       "0.0",
       0,
       1e9,
       false,
       {},
       "linear warm-up from 0 over this many epochs"},
      {"train.epochs", KeyType::kInt, "10", 1, 1e6, false, {}, "passes over the training data"},
      {"train.batch_size",
       KeyType::kInt,
       "64",
       1,
       65536,
       false,
       {},
       "samples per step (per worker)"},
      {"train.threads", KeyType::kInt, "1", 1, 256, false, {}, "OpenBLAS threads per process"},
      {"train.eval_batch_size",
       KeyType::kInt,
       "1000",
       1,
       65536,
       false,
       {},
       "rows per forward pass when evaluating"},
      {"train.micro_batches",
       KeyType::kInt,
       "1",
       1,
       1024,
       false,
       {},
       "standalone: split each batch into this many contiguous parts whose gradients are summed in "
       "order (gradient accumulation); M parts reproduce BSP with M workers bit for bit"},
      {"cluster.servers",
       KeyType::kInt,
       "1",
       1,
       4096,
       false,
       {},
       "parameter servers (local launcher and mpirun)"},
      {"cluster.workers",
       KeyType::kInt,
       "1",
       1,
       4096,
       false,
       {},
       "workers (local launcher; under mpirun: the ranks after the servers)"},
      {"cluster.consistency",
       KeyType::kEnum,
       "\"bsp\"",
       0,
       0,
       false,
       {"bsp", "asp", "ssp"},
       "bsp: sum every worker's gradient, then apply; asp: apply each on arrival; ssp: asp with a "
       "staleness bound"},
      {"cluster.staleness",
       KeyType::kInt,
       "2",
       0,
       1000000,
       false,
       {},
       "ssp: how many steps the fastest worker may run ahead of the slowest"},
      {"cluster.bind",
       KeyType::kString,
       "\"127.0.0.1\"",
       0,
       0,
       false,
       {},
       "address the coordinator and servers listen on (an IP address, or an interface name like "
       "eth0)"},
      {"cluster.replication",
       KeyType::kInt,
       "1",
       1,
       2,
       false,
       {},
       "copies of every key range: 2 keeps a backup on another server, promoted when the primary "
       "dies"},
      {"cluster.ipc",
       KeyType::kBool,
       "false",
       0,
       0,
       false,
       {},
       "workers and backups on a server's host (same host name and network namespace) reach it "
       "through its ipc:// socket instead of TCP (off by default: slower than loopback TCP here)"},
      {"cluster.overlap",
       KeyType::kBool,
       "true",
       0,
       0,
       false,
       {},
       "BSP: servers apply and serve each piece of the parameters (a tensor, cut every 128 KiB) as "
       "soon as every worker pushed it, workers pull layer by layer and start the forward pass "
       "when the first layer's weights are in; false: one pull of the whole model, answered when "
       "every push of the step is in"},
      {"cluster.heartbeat_ms",
       KeyType::kInt,
       "500",
       10,
       60000,
       false,
       {},
       "how often nodes and coordinator exchange heartbeats"},
      {"cluster.timeout_ms",
       KeyType::kInt,
       "3000",
       50,
       3600000,
       false,
       {},
       "a node silent this long is dead"},
      {"cluster.start_timeout_s",
       KeyType::kInt,
       "120",
       1,
       86400,
       false,
       {},
       "how long the coordinator waits for every node to register"},
      {"checkpoint.dir",
       KeyType::kPath,
       "",
       0,
       0,
       false,
       {},
       "folder for checkpoints (empty: none); --resume continues from the newest that verifies"},
      {"checkpoint.every_epochs",
       KeyType::kInt,
       "1",
       1,
       1000000,
       false,
       {},
       "write a checkpoint after every this many epochs"},
      {"checkpoint.keep", KeyType::kInt, "3", 1, 1000, false, {}, "how many checkpoints to keep"},
      {"output.metrics",
       KeyType::kPath,
       "",
       0,
       0,
       false,
       {},
       "JSON-lines metrics file (empty: none)"},
      {"output.progress",
       KeyType::kEnum,
       "\"auto\"",
       0,
       0,
       false,
       {"auto", "always", "never"},
       "progress line while an epoch runs (auto: when stdout is a terminal)"},
      {"output.http_port",
       KeyType::kInt,
       "0",
       -1,
       65535,
       false,
       {},
       "the coordinator serves /metrics (Prometheus), /status (JSON) and a live page / on this "
       "port (0: off; -1: a free port the system picks, printed at start)"},
      {"output.http_bind",
       KeyType::kString,
       "\"127.0.0.1\"",
       0,
       0,
       false,
       {},
       "address the HTTP status server listens on (0.0.0.0: every interface; beyond loopback only "
       "with security.insecure: the page has no authentication)"},
      {"compression.gradients",
       KeyType::kEnum,
       "\"none\"",
       0,
       0,
       false,
       {"none", "fp16", "bf16", "topk"},
       "how workers send gradients: float32, half, bfloat16, or the top-k entries by magnitude "
       "with the rest carried to the next step (error feedback)"},
      {"compression.weights",
       KeyType::kEnum,
       "\"none\"",
       0,
       0,
       false,
       {"none", "fp16", "bf16"},
       "how servers send weights to workers (the servers keep float32)"},
      {"compression.topk_ratio",
       KeyType::kFloat,
       "0.01",
       0,
       1,
       false,
       {},
       "topk: the fraction of each pushed range's entries sent per step, in (0, 1]"},
      {"security.key",
       KeyType::kPath,
       "",
       0,
       0,
       false,
       {},
       "job key file from `pstrain keygen`: every socket uses CurveZMQ and admits only nodes "
       "holding this key (empty: no encryption, loopback only unless security.insecure)"},
      {"security.insecure",
       KeyType::kBool,
       "false",
       0,
       0,
       false,
       {},
       "allow listening on a non-loopback address without a job key (anyone who can reach the "
       "ports can join the job and change its weights)"},
  };
  return schema;
}

const KeySpec* FindKey(std::string_view key) {
  for (const KeySpec& k : Schema()) {
    if (key == k.key) return &k;
  }
  return nullptr;
}

std::string KnownKeysOf(std::string_view section) {
  std::string out;
  for (const KeySpec& k : Schema()) {
    std::string_view full = k.key;
    if (full.substr(0, full.find('.')) != section) continue;
    if (!out.empty()) out += ", ";
    out += full.substr(full.find('.') + 1);
  }
  return out;
}

std::string KnownSections() {
  std::string out;
  std::string last;
  for (const KeySpec& k : Schema()) {
    std::string_view full = k.key;
    std::string section(full.substr(0, full.find('.')));
    if (section == last) continue;
    last = section;
    if (!out.empty()) out += ", ";
    out += "[" + section + "]";
  }
  return out;
}

std::string TypeName(KeyType t) {
  switch (t) {
    case KeyType::kInt:
      return "an integer";
    case KeyType::kFloat:
      return "a number";
    case KeyType::kBool:
      return "true or false";
    case KeyType::kString:
      return "a string";
    case KeyType::kPath:
      return "a file path (string)";
    case KeyType::kEnum:
      return "one of";
    case KeyType::kLayers:
      return "an array of layer tables";
    case KeyType::kFloatList:
      return "an array of positive numbers";
  }
  return "?";
}

std::string NodeText(const toml::node& n) {
  std::ostringstream os;
  if (n.is_string()) {
    os << '"' << *n.value<std::string>() << '"';
  } else if (n.is_table()) {
    os << "a table";
  } else if (n.is_array()) {
    os << "an array";
  } else {
    n.visit([&](const auto& v) { os << v; });
  }
  return os.str();
}

// "job.toml:12: " or "job.toml: " when the node has no source position, or
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

std::string ChoicesText(const KeySpec& k) {
  std::string s;
  for (const std::string& c : k.choices) s += (s.empty() ? "" : ", ") + ("\"" + c + "\"");
  return s;
}

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

std::string JoinKeys(const std::vector<std::string>& keys) {
  std::string s;
  for (const std::string& k : keys) s += (s.empty() ? "" : ", ") + k;
  return s.empty() ? "nothing but its type" : s;
}

// An integer layer key within [lo, hi].
Status LayerInt(const toml::node& v, const std::string& key, int lo, int hi, int* out) {
  if (!v.is_integer()) return InvalidArgument(key + " must be an integer, got " + NodeText(v));
  const int64_t u = *v.value<int64_t>();
  if (u < lo || u > hi) {
    return InvalidArgument(key + " must be >= " + std::to_string(lo) +
                           " and <= " + std::to_string(hi) + ", got " + std::to_string(u));
  }
  *out = static_cast<int>(u);
  return OkStatus();
}

Status ParseLayerValue(const std::string& name, const toml::node& v, const std::string& key,
                       LayerSpec* spec) {
  const std::string full = key + "." + name;
  if (name == "units") return LayerInt(v, full, 1, 1 << 20, &spec->units);
  if (name == "dim") return LayerInt(v, full, 1, 4096, &spec->dim);
  if (name == "filters") return LayerInt(v, full, 1, 1 << 16, &spec->filters);
  if (name == "kernel") return LayerInt(v, full, 1, 1024, &spec->kernel);
  if (name == "stride") return LayerInt(v, full, 1, 1024, &spec->stride);
  if (name == "padding") return LayerInt(v, full, 0, 1024, &spec->padding);
  if (name == "size") return LayerInt(v, full, 1, 1024, &spec->size);
  if (name == "rate") {
    if (!v.is_number()) return InvalidArgument(full + " must be a number, got " + NodeText(v));
    spec->rate = *v.value<double>();
    if (!(spec->rate >= 0.0 && spec->rate < 1.0)) {
      return InvalidArgument(full + " must be >= 0 and < 1, got " + NodeText(v));
    }
    return OkStatus();
  }
  if (name == "init") {
    const std::string v_text = v.is_string() ? *v.value<std::string>() : NodeText(v);
    if (v_text == "he") {
      spec->init = InitKind::kHe;
    } else if (v_text == "torch") {
      spec->init = InitKind::kTorch;
    } else if (v_text == "xavier") {
      spec->init = InitKind::kXavier;
    } else {
      return InvalidArgument(full + " is " + NodeText(v) +
                             "; valid values: \"he\", \"torch\", \"xavier\"");
    }
    return OkStatus();
  }
  return InvalidArgument(
      "unknown key " + full +
      " (a layer has: type, name, inputs, share, units, init, filters, kernel, stride, padding, "
      "size, rate, dim)");
}

// A node's name, inputs or share: names of nodes.
Status ParseNodeLink(const std::string& name, const toml::node& v, const std::string& key,
                     LayerSpec* spec) {
  const std::string full = key + "." + name;
  auto node_name = [&](const toml::node& e, std::string* out) {
    if (!e.is_string() || e.value<std::string>()->empty()) {
      return InvalidArgument(full + " must be a node's name (a non-empty string), got " +
                             NodeText(e));
    }
    *out = *e.value<std::string>();
    return OkStatus();
  };
  if (name == "name") return node_name(v, &spec->name);
  if (name == "share") return node_name(v, &spec->share);
  const toml::array* arr = v.as_array();
  if (arr == nullptr || arr->empty()) {
    return InvalidArgument(
        full + " must be a list of node names, e.g. [\"conv2\", \"pool1\"], got " + NodeText(v));
  }
  for (const toml::node& e : *arr) RETURN_IF_ERROR(node_name(e, &spec->inputs.emplace_back()));
  return OkStatus();
}

Status ParseLayers(const toml::node* n, const Where& where, std::vector<LayerSpec>* out) {
  const std::string at = where.At("model.layers", n);
  if (n == nullptr) {
    return InvalidArgument(at + "model.layers is missing: list the layers, e.g. " +
                           "layers = [{type = \"dense\", units = 10}]");
  }
  const toml::array* arr = n->as_array();
  if (arr == nullptr) {
    return InvalidArgument(at + "model.layers must be an array of layer tables, got " +
                           NodeText(*n));
  }
  for (size_t i = 0; i < arr->size(); ++i) {
    const toml::node& e = *arr->get(i);
    const std::string key = "model.layers[" + std::to_string(i) + "]";
    const std::string eat = where.At("model.layers", &e);
    const toml::table* t = e.as_table();
    if (t == nullptr) {
      return InvalidArgument(
          eat + key + " must be a table like {type = \"dense\", units = 64}, got " + NodeText(e));
    }
    LayerSpec spec;
    const toml::node* type = t->get("type");
    if (type == nullptr) {
      return InvalidArgument(eat + key + " has no type; valid types: " + OpTypesText());
    }
    if (!type->is_string()) {
      return InvalidArgument(eat + key + ".type must be a string, got " + NodeText(*type));
    }
    spec.type = *type->value<std::string>();
    const OpType* kind = FindOpType(spec.type);
    if (kind == nullptr) {
      return InvalidArgument(eat + key + ".type is \"" + spec.type +
                             "\"; valid types: " + OpTypesText());
    }
    for (const auto& [k, v] : *t) {
      const std::string name(k.str());
      if (name == "type") continue;
      if (name == "name" || name == "inputs" || name == "share") {
        Status parsed = ParseNodeLink(name, v, key, &spec);
        if (!parsed.ok()) return InvalidArgument(eat + parsed.message());
        continue;
      }
      Status parsed = ParseLayerValue(name, v, key, &spec);
      if (!parsed.ok()) return InvalidArgument(eat + parsed.message());
      if (std::find(kind->keys.begin(), kind->keys.end(), name) == kind->keys.end()) {
        return InvalidArgument(eat + key + "." + name + ": a " + spec.type + " layer has no " +
                               name + " (it takes " + JoinKeys(kind->keys) + ")");
      }
    }
    for (const std::string& needed : kind->required) {
      if (!t->contains(needed)) {
        return InvalidArgument(eat + key + " is a " + spec.type + " layer without " + needed);
      }
    }
    out->push_back(spec);
  }
  if (out->empty()) return InvalidArgument(at + "model.layers is empty");
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
