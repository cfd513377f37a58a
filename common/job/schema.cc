#include "common/job/schema.h"

#include <filesystem>
#include <sstream>
#include <type_traits>

namespace pstrain::jobfile {
namespace {

// How a checked TOML value becomes a field of the job, by the field's type.
void Assign(int& field, const KeyValue& v) { field = static_cast<int>(*v.node.value<int64_t>()); }
void Assign(int64_t& field, const KeyValue& v) { field = *v.node.value<int64_t>(); }
void Assign(uint64_t& field, const KeyValue& v) {
  field = static_cast<uint64_t>(*v.node.value<int64_t>());
}
void Assign(double& field, const KeyValue& v) { field = *v.node.value<double>(); }
void Assign(float& field, const KeyValue& v) {
  field = static_cast<float>(*v.node.value<double>());
}
void Assign(bool& field, const KeyValue& v) { field = *v.node.value<bool>(); }
void Assign(std::vector<double>& field, const KeyValue& v) {
  field.clear();
  for (const toml::node& e : *v.node.as_array()) field.push_back(*e.value<double>());
}
void Assign(std::string& field, const KeyValue& v) {
  field = *v.node.value<std::string>();
  if (v.spec.type != KeyType::kPath || !ResolvesAgainstJobFile(v.spec) || field.empty() ||
      std::filesystem::path(field).is_absolute()) {
    return;
  }
  field = (std::filesystem::path(v.base_dir) / field).lexically_normal().string();
}
// Enums: the value's place among the key's choices (checked by then), which
// the table lists in the enum's order.
template <typename E, typename = std::enable_if_t<std::is_enum_v<E>>>
void Assign(E& field, const KeyValue& v) {
  const std::string s = *v.node.value<std::string>();
  const auto& c = v.spec.choices;
  field = static_cast<E>(std::find(c.begin(), c.end(), s) - c.begin());
}

template <auto Field>
void Set(JobConfig* job, const KeyValue& v) {
  Assign(job->*Field, v);
}
template <auto Section, auto Field>
void SetIn(JobConfig* job, const KeyValue& v) {
  Assign((job->*Section).*Field, v);
}

}  // namespace

bool ResolvesAgainstJobFile(const KeySpec& k) {
  return k.type == KeyType::kPath && std::string_view(k.key) != "output.metrics";
}

const std::vector<KeySpec>& Schema() {
  // One entry per key, in the order `pstrain help job` prints them: a table
  // reads better whole than cut into functions.
  static const std::vector<KeySpec> schema = {
      {"job.name",
       KeyType::kString,
       "",
       0,
       0,
       false,
       {},
       "name shown in logs and metrics (default: the job file's name)",
       Set<&JobConfig::name>},
      {"job.seed",
       KeyType::kInt,
       "1",
       0,
       9.2e18,
       false,
       {},
       "fixes initialisation and data order",
       Set<&JobConfig::seed>},
      {"data.format",
       KeyType::kEnum,
       "\"idx\"",
       0,
       0,
       false,
       {"idx", "csv", "libsvm"},
       "file format of the data",
       SetIn<&JobConfig::data, &DataConfig::format>},
      {"data.train_images",
       KeyType::kPath,
       "",
       0,
       0,
       false,
       {},
       "idx: training images (gzipped or plain)",
       SetIn<&JobConfig::data, &DataConfig::train_images>},
      {"data.train_labels",
       KeyType::kPath,
       "",
       0,
       0,
       false,
       {},
       "idx: training labels",
       SetIn<&JobConfig::data, &DataConfig::train_labels>},
      {"data.test_images",
       KeyType::kPath,
       "",
       0,
       0,
       false,
       {},
       "idx: test images",
       SetIn<&JobConfig::data, &DataConfig::test_images>},
      {"data.test_labels",
       KeyType::kPath,
       "",
       0,
       0,
       false,
       {},
       "idx: test labels",
       SetIn<&JobConfig::data, &DataConfig::test_labels>},
      {"data.train",
       KeyType::kPath,
       "",
       0,
       0,
       false,
       {},
       "csv, libsvm: training samples",
       SetIn<&JobConfig::data, &DataConfig::train>},
      {"data.test",
       KeyType::kPath,
       "",
       0,
       0,
       false,
       {},
       "csv, libsvm: test samples",
       SetIn<&JobConfig::data, &DataConfig::test>},
      {"data.features",
       KeyType::kInt,
       "0",
       0,
       2147483647,
       false,
       {},
       "libsvm: size of the feature space, every index below it (0: one more than the largest "
       "index in the files)",
       SetIn<&JobConfig::data, &DataConfig::features>},
      {"data.label_column",
       KeyType::kInt,
       "0",
       -65536,
       65535,
       false,
       {},
       "csv: 0-based column of the label; -1 is the last",
       SetIn<&JobConfig::data, &DataConfig::label_column>},
      {"data.header",
       KeyType::kBool,
       "false",
       0,
       0,
       false,
       {},
       "csv: the first line is a header",
       SetIn<&JobConfig::data, &DataConfig::header>},
      {"data.handout",
       KeyType::kEnum,
       "\"global\"",
       0,
       0,
       false,
       {"global", "static"},
       "how samples are handed to workers: one global order per epoch, or fixed partitions",
       SetIn<&JobConfig::data, &DataConfig::handout>},
      {"data.shard_weights",
       KeyType::kFloatList,
       "",
       0,
       0,
       false,
       {},
       "static: relative partition size per worker, e.g. [1, 2, 3] (default: equal)",
       SetIn<&JobConfig::data, &DataConfig::shard_weights>},
      {"data.image_shape",
       KeyType::kFloatList,
       "",
       0,
       0,
       false,
       {},
       "[channels, height, width] of a sample, for conv2d and maxpool layers on data without a "
       "shape of its own (CSV: the features hold each pixel's channels together, row by row); "
       "IDX images have theirs",
       nullptr},
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
       "parameter servers",
       nullptr},
      {"model.init_from",
       KeyType::kPath,
       "",
       0,
       0,
       false,
       {},
       "a checkpoint (its folder, or a checkpoint.dir: the newest there) whose weights start "
       "this job instead of the seed's, tensor by tensor by name, to fine-tune on new data "
       "(--init-from); every tensor must match in name and shape unless "
       "model.init_from_partial. The optimizer starts afresh",
       Set<&JobConfig::init_from>},
      {"model.init_from_partial",
       KeyType::kBool,
       "false",
       0,
       0,
       false,
       {},
       "with model.init_from: take the tensors whose names and shapes match, start the others "
       "from the seed, and list both (--init-from-partial)",
       Set<&JobConfig::init_from_partial>},
      {"model.wide",
       KeyType::kBool,
       "false",
       0,
       0,
       false,
       {},
       "sparse data: add a linear term over the features (a one-float-per-feature table) to a "
       "one-unit output (wide and deep)",
       Set<&JobConfig::wide>},
      {"model.loss",
       KeyType::kEnum,
       "\"softmax_cross_entropy\"",
       0,
       0,
       false,
       {"softmax_cross_entropy"},
       "loss function (a one-output model on two-class data uses the logistic loss)",
       nullptr},
      {"optimizer.type",
       KeyType::kEnum,
       "\"momentum\"",
       0,
       0,
       false,
       {"sgd", "momentum", "adam", "adagrad"},
       "update rule",
       SetIn<&JobConfig::optimizer, &OptimizerOptions::kind>},
      {"optimizer.lr",
       KeyType::kFloat,
       "0.05",
       0,
       1e6,
       true,
       {},
       "base learning rate",
       SetIn<&JobConfig::optimizer, &OptimizerOptions::lr>},
      {"optimizer.momentum",
       KeyType::kFloat,
       "0.9",
       0,
       1,
       true,
       {},
       "momentum: velocity decay, in [0, 1)",
       SetIn<&JobConfig::optimizer, &OptimizerOptions::momentum>},
      {"optimizer.nesterov",
       KeyType::kBool,
       "false",
       0,
       0,
       false,
       {},
       "momentum: use Nesterov's variant",
       SetIn<&JobConfig::optimizer, &OptimizerOptions::nesterov>},
      {"optimizer.beta1",
       KeyType::kFloat,
       "0.9",
       0,
       1,
       false,
       {},
       "adam: first-moment decay, in [0, 1)",
       SetIn<&JobConfig::optimizer, &OptimizerOptions::beta1>},
      {"optimizer.beta2",
       KeyType::kFloat,
       "0.999",
       0,
       1,
       false,
       {},
       "adam: second-moment decay, in [0, 1)",
       SetIn<&JobConfig::optimizer, &OptimizerOptions::beta2>},
      {"optimizer.eps",
       KeyType::kFloat,
       "1e-8",
       0,
       1,
       true,
       {},
       "adam, adagrad: denominator guard",
       SetIn<&JobConfig::optimizer, &OptimizerOptions::eps>},
      {"optimizer.weight_decay",
       KeyType::kFloat,
       "0.0",
       0,
       1,
       false,
       {},
       "L2 penalty added to the gradient",
       SetIn<&JobConfig::optimizer, &OptimizerOptions::weight_decay>},
      {"schedule.type",
       KeyType::kEnum,
       "\"constant\"",
       0,
       0,
       false,
       {"constant", "step", "cosine"},
       "learning-rate schedule",
       SetIn<&JobConfig::schedule, &ScheduleOptions::kind>},
      {"schedule.step_epochs",
       KeyType::kFloat,
       "10.0",
       0,
       1e9,
       true,
       {},
       "step: epochs between decays",
       SetIn<&JobConfig::schedule, &ScheduleOptions::step_epochs>},
      {"schedule.gamma",
       KeyType::kFloat,
       "0.1",
       0,
       1,
       true,
       {},
       "step: decay factor",
       SetIn<&JobConfig::schedule, &ScheduleOptions::gamma>},
      {"schedule.min_lr_factor",
       KeyType::kFloat,
       "0.0",
       0,
       1,
       false,
       {},
       "cosine: final lr as a fraction of optimizer.lr",
       SetIn<&JobConfig::schedule, &ScheduleOptions::min_lr_factor>},
      {"schedule.warmup_epochs",
       KeyType::kFloat,
       "0.0",
       0,
       1e9,
       false,
       {},
       "linear warm-up from 0 over this many epochs",
       SetIn<&JobConfig::schedule, &ScheduleOptions::warmup_epochs>},
      {"train.epochs",
       KeyType::kInt,
       "10",
       1,
       1e6,
       false,
       {},
       "passes over the training data",
       Set<&JobConfig::epochs>},
      {"train.batch_size",
       KeyType::kInt,
       "64",
       1,
       65536,
       false,
       {},
       "samples per step (per worker)",
       Set<&JobConfig::batch_size>},
      {"train.threads",
       KeyType::kInt,
       "1",
       1,
       256,
       false,
       {},
       "OpenBLAS threads per process",
       Set<&JobConfig::threads>},
      {"train.eval_batch_size",
       KeyType::kInt,
       "1000",
       1,
       65536,
       false,
       {},
       "rows per forward pass when evaluating",
       Set<&JobConfig::eval_batch_size>},
      {"train.micro_batches",
       KeyType::kInt,
       "1",
       1,
       1024,
       false,
       {},
       "standalone: split each batch into this many contiguous parts whose gradients are summed in "
       "order (gradient accumulation); M parts reproduce BSP with M workers bit for bit",
       Set<&JobConfig::micro_batches>},
      {"cluster.servers",
       KeyType::kInt,
       "1",
       1,
       4096,
       false,
       {},
       "parameter servers (local launcher and mpirun)",
       SetIn<&JobConfig::cluster, &ClusterConfig::servers>},
      {"cluster.workers",
       KeyType::kInt,
       "1",
       1,
       4096,
       false,
       {},
       "workers (local launcher; under mpirun: the ranks after the servers)",
       SetIn<&JobConfig::cluster, &ClusterConfig::workers>},
      {"cluster.consistency",
       KeyType::kEnum,
       "\"bsp\"",
       0,
       0,
       false,
       {"bsp", "asp", "ssp"},
       "bsp: sum every worker's gradient, then apply; asp: apply each on arrival; ssp: asp with a "
       "staleness bound",
       SetIn<&JobConfig::cluster, &ClusterConfig::consistency>},
      {"cluster.staleness",
       KeyType::kInt,
       "2",
       0,
       1000000,
       false,
       {},
       "ssp: how many steps the fastest worker may run ahead of the slowest",
       SetIn<&JobConfig::cluster, &ClusterConfig::staleness>},
      {"cluster.bind",
       KeyType::kString,
       "\"127.0.0.1\"",
       0,
       0,
       false,
       {},
       "address the coordinator and servers listen on (an IP address, or an interface name like "
       "eth0)",
       SetIn<&JobConfig::cluster, &ClusterConfig::bind>},
      {"cluster.replication",
       KeyType::kInt,
       "1",
       1,
       2,
       false,
       {},
       "copies of every key range: 2 keeps a backup on another server, promoted when the primary "
       "dies",
       SetIn<&JobConfig::cluster, &ClusterConfig::replication>},
      {"cluster.ipc",
       KeyType::kBool,
       "false",
       0,
       0,
       false,
       {},
       "workers and backups on a server's host (same host name and network namespace) reach it "
       "through its ipc:// socket instead of TCP (off by default: slower than loopback TCP here)",
       SetIn<&JobConfig::cluster, &ClusterConfig::ipc>},
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
       "every push of the step is in",
       SetIn<&JobConfig::cluster, &ClusterConfig::overlap>},
      {"cluster.heartbeat_ms",
       KeyType::kInt,
       "500",
       10,
       60000,
       false,
       {},
       "how often nodes and coordinator exchange heartbeats",
       SetIn<&JobConfig::cluster, &ClusterConfig::heartbeat_ms>},
      {"cluster.timeout_ms",
       KeyType::kInt,
       "3000",
       50,
       3600000,
       false,
       {},
       "a node silent this long is dead",
       SetIn<&JobConfig::cluster, &ClusterConfig::timeout_ms>},
      {"cluster.start_timeout_s",
       KeyType::kInt,
       "120",
       1,
       86400,
       false,
       {},
       "how long the coordinator waits for every node to register",
       SetIn<&JobConfig::cluster, &ClusterConfig::start_timeout_s>},
      {"cluster.max_restarts",
       KeyType::kInt,
       "0",
       0,
       1000000,
       false,
       {},
       "the local launcher starts a worker or server process again in the place of one that "
       "exited with an error, at most this many times in the job (a server comes back as the "
       "backup of the ranges left without one, so only with cluster.replication 2)",
       SetIn<&JobConfig::cluster, &ClusterConfig::max_restarts>},
      {"cluster.port",
       KeyType::kInt,
       "0",
       0,
       65535,
       false,
       {},
       "the coordinator's control port (0: a free one); with checkpoint.dir it is recorded there, "
       "and --resume binds the same one, so nodes that outlived their coordinator find it",
       SetIn<&JobConfig::cluster, &ClusterConfig::port>},
      {"cluster.coordinator_grace_s",
       KeyType::kInt,
       "60",
       0,
       86400,
       false,
       {},
       "how long servers and workers keep their state and wait when the coordinator falls "
       "silent, for it to be restarted (--resume) and take them back (0: they exit at once)",
       SetIn<&JobConfig::cluster, &ClusterConfig::coordinator_grace_s>},
      {"checkpoint.dir",
       KeyType::kPath,
       "",
       0,
       0,
       false,
       {},
       "folder for checkpoints (empty: none); --resume continues from the newest that verifies",
       Set<&JobConfig::checkpoint_dir>},
      {"checkpoint.every_epochs",
       KeyType::kInt,
       "1",
       1,
       1000000,
       false,
       {},
       "write a checkpoint after every this many epochs",
       Set<&JobConfig::checkpoint_every_epochs>},
      {"checkpoint.every_steps",
       KeyType::kInt,
       "0",
       0,
       100000000,
       false,
       {},
       "also write a checkpoint every this many steps of an epoch while training goes on (BSP; "
       "0: none), so --resume loses at most this many steps",
       Set<&JobConfig::checkpoint_every_steps>},
      {"checkpoint.every_seconds",
       KeyType::kFloat,
       "0",
       0,
       1e9,
       false,
       {},
       "also write a checkpoint within an epoch once this many seconds have passed since the last "
       "one, at a step a little ahead of the workers (BSP; 0: none)",
       Set<&JobConfig::checkpoint_every_seconds>},
      {"checkpoint.keep",
       KeyType::kInt,
       "3",
       1,
       1000,
       false,
       {},
       "how many checkpoints to keep; older ones go before a new one is written (with 1, once it "
       "is complete)",
       Set<&JobConfig::checkpoint_keep>},
      {"output.metrics",
       KeyType::kPath,
       "",
       0,
       0,
       false,
       {},
       "JSON-lines metrics file (empty: none)",
       Set<&JobConfig::metrics_path>},
      {"output.progress",
       KeyType::kEnum,
       "\"auto\"",
       0,
       0,
       false,
       {"auto", "always", "never"},
       "progress line while an epoch runs (auto: when stdout is a terminal)",
       Set<&JobConfig::progress>},
      {"output.http_port",
       KeyType::kInt,
       "0",
       -1,
       65535,
       false,
       {},
       "the coordinator serves /metrics (Prometheus), /status (JSON) and a live page / on this "
       "port (0: off; -1: a free port the system picks, printed at start)",
       Set<&JobConfig::http_port>},
      {"output.http_bind",
       KeyType::kString,
       "\"127.0.0.1\"",
       0,
       0,
       false,
       {},
       "address the HTTP status server listens on (0.0.0.0: every interface; beyond loopback only "
       "with security.insecure: the page has no authentication)",
       Set<&JobConfig::http_bind>},
      {"compression.gradients",
       KeyType::kEnum,
       "\"none\"",
       0,
       0,
       false,
       {"none", "fp16", "bf16", "topk"},
       "how workers send gradients: float32, half, bfloat16, or the top-k entries by magnitude "
       "with the rest carried to the next step (error feedback)",
       Set<&JobConfig::compress_gradients>},
      {"compression.weights",
       KeyType::kEnum,
       "\"none\"",
       0,
       0,
       false,
       {"none", "fp16", "bf16"},
       "how servers send weights to workers (the servers keep float32)",
       Set<&JobConfig::compress_weights>},
      {"compression.topk_ratio",
       KeyType::kFloat,
       "0.01",
       0,
       1,
       false,
       {},
       "topk: the fraction of each pushed range's entries sent per step, in (0, 1]",
       Set<&JobConfig::topk_ratio>},
      {"security.key",
       KeyType::kPath,
       "",
       0,
       0,
       false,
       {},
       "job key file from `pstrain keygen`: every socket uses CurveZMQ and admits only nodes "
       "holding this key (empty: no encryption, loopback only unless security.insecure)",
       Set<&JobConfig::key_path>},
      {"security.insecure",
       KeyType::kBool,
       "false",
       0,
       0,
       false,
       {},
       "allow listening on a non-loopback address without a job key (anyone who can reach the "
       "ports can join the job and change its weights)",
       Set<&JobConfig::insecure>},
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

std::string ChoicesText(const KeySpec& k) {
  std::string s;
  for (const std::string& c : k.choices) s += (s.empty() ? "" : ", ") + ("\"" + c + "\"");
  return s;
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

}  // namespace pstrain::jobfile
