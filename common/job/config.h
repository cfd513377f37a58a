// The job: one TOML file (model, data, optimizer, schedule, training,
// output), every key of which can be overridden from the command line.
//
// Every key is declared once, in a table (schema.cc): its type, default,
// valid values, a line of documentation and the field it sets. The table
// drives validation, overrides, the reading into JobConfig and `pstrain help
// job`. Unknown keys, wrong types, impossible values and missing files are
// errors that name the key (and the file and line where it was set) and say
// what would be valid.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common/base/status.h"
#include "common/job/choices.h"
#include "common/nn/graph_spec.h"
#include "common/nn/optimizer_options.h"
#include "common/nn/tensor.h"

namespace pstrain {

struct DataConfig {
  std::string format;  // "idx" | "csv" | "libsvm"
  // idx: four files (gzipped or plain)
  std::string train_images, train_labels, test_images, test_labels;
  // csv, libsvm: two files
  std::string train, test;
  int64_t features = 0;  // libsvm: the feature space (0: from the files)
  int label_column = 0;
  bool header = false;
  HandoutKind handout = HandoutKind::kGlobal;
  std::vector<double> shard_weights;  // static: per worker; empty: equal
  ImageShape image_shape;             // unknown: the data's own (IDX), or none (CSV)
};

struct ClusterConfig {
  int servers = 1;
  int workers = 1;
  Consistency consistency = Consistency::kBsp;
  int staleness = 2;
  std::string bind = "127.0.0.1";  // address or interface name
  int replication = 1;             // copies of each key range (1 or 2)
  int heartbeat_ms = 500;
  int timeout_ms = 3000;
  int start_timeout_s = 120;
  int max_restarts = 0;  // local launcher: workers started again in a dead one's place
  int port = 0;          // the coordinator's control port (0: any free one)
  // How long nodes keep their state waiting for a coordinator that fell
  // silent to be restarted (0: they exit at once).
  int coordinator_grace_s = 60;
  bool ipc = false;  // same-host nodes reach servers through ipc://
  // BSP: per-piece apply on the servers, per-layer pulls on the workers, the
  // forward pass waiting for each layer's weights; false: whole-model pulls.
  bool overlap = true;
};

struct JobConfig {
  std::string job_file;  // as given
  std::string name;
  uint64_t seed = 1;
  DataConfig data;
  std::vector<LayerSpec> layers;
  // A checkpoint whose weights start the job instead of the seed's (by
  // tensor name); partial: take what matches, the rest from the seed.
  std::string init_from;
  bool init_from_partial = false;
  bool wide = false;  // sparse models: a linear term over the features
  OptimizerOptions optimizer;
  ScheduleOptions schedule;
  int epochs = 10;
  int batch_size = 64;
  int threads = 1;
  int eval_batch_size = 1000;
  int micro_batches = 1;  // standalone gradient accumulation
  ClusterConfig cluster;
  std::string checkpoint_dir;  // empty: no checkpoints
  int checkpoint_every_epochs = 1;
  int64_t checkpoint_every_steps = 0;   // 0: none within an epoch
  double checkpoint_every_seconds = 0;  // 0: none by time
  int checkpoint_keep = 3;
  std::string metrics_path;                 // empty: no metrics file
  std::string progress;                     // "auto" | "always" | "never"
  std::string compress_gradients = "none";  // "none" | "fp16" | "bf16" | "topk"
  std::string compress_weights = "none";    // "none" | "fp16" | "bf16"
  double topk_ratio = 0.01;
  std::string key_path;   // job key file (CurveZMQ); empty: no encryption
  bool insecure = false;  // listen beyond loopback without a key
  int http_port = 0;      // status server: 0 off, -1 a free port
  std::string http_bind = "127.0.0.1";
};

// One command-line override: `key` is a dotted path ("train.epochs"), `value`
// is TOML syntax (5, 0.1, true, "text") or a bare string.
struct ConfigOverride {
  std::string key;
  std::string value;
};

// The job file's text; kInvalidArgument when `path` is not a regular file,
// kNotFound when it cannot be opened.
StatusOr<std::string> ReadJobFile(const std::string& path);

// Reads, validates and resolves the job file. Relative data paths in the
// file are relative to the file's folder; relative paths given as overrides
// are relative to the current directory.
StatusOr<JobConfig> LoadJobConfig(const std::string& path,
                                  const std::vector<ConfigOverride>& overrides);

// The same from TOML text (tests); `name` stands for the file in messages and
// `base_dir` resolves relative paths.
StatusOr<JobConfig> ParseJobConfig(const std::string& text, const std::string& name,
                                   const std::string& base_dir,
                                   const std::vector<ConfigOverride>& overrides);

// The job as it runs, as one self-contained TOML document: the overrides
// applied and the file's relative paths made absolute, so that parsing it
// without overrides, from anywhere, gives the same JobConfig. Checkpoints
// keep it.
StatusOr<std::string> ResolvedJobToml(const std::string& text, const std::string& name,
                                      const std::string& base_dir,
                                      const std::vector<ConfigOverride>& overrides);

// True for keys whose value is a file path (resolved against a folder).
bool JobKeyIsPath(const std::string& key);

// Every key with its type, default and meaning, for `pstrain help job`.
std::string JobConfigHelp();

}  // namespace pstrain
