#include "launch/flags.h"

#include <cstdio>
#include <filesystem>
#include <string_view>

namespace pstrain {
namespace {

struct FlagSpec {
  const char* flag;
  const char* key;  // job key it overrides, or nullptr for a launcher option
  bool takes_value;
  const char* help;
};

const FlagSpec kFlags[] = {
    {"--standalone", nullptr, false, "train in this one process (no servers, no workers)"},
    {"--servers", "cluster.servers", true, "S: parameter servers"},
    {"--workers", "cluster.workers", true, "W: workers (local launcher)"},
    {"--consistency", "cluster.consistency", true, "bsp|asp|ssp"},
    {"--staleness", "cluster.staleness", true, "K: ssp's staleness bound"},
    {"--replication", "cluster.replication", true, "1|2: keep a backup of every key range"},
    {"--max-restarts", "cluster.max_restarts", true,
     "N: start a worker or server again in the place of one that died, at most N times"},
    {"--bind", "cluster.bind", true, "ADDRESS|INTERFACE: where to listen (default 127.0.0.1)"},
    {"--port", "cluster.port", true, "P: the coordinator's control port (default: a free one)"},
    {"--key", "security.key", true,
     "FILE: job key from `pstrain keygen FILE`; all sockets use CurveZMQ and admit only its "
     "holders"},
    {"--insecure", "security.insecure", false,
     "listen beyond loopback without a job key (anyone reaching the ports can join)"},
    {"--checkpoint-dir", "checkpoint.dir", true, "DIR: write a checkpoint every epoch into DIR"},
    {"--init-from", "model.init_from", true,
     "CKPT: start from another job's weights, matched by tensor name (fine-tuning)"},
    {"--init-from-partial", "model.init_from_partial", false,
     "with --init-from: take the tensors that match, list the rest"},
    {"--resume", nullptr, false,
     "continue from the newest checkpoint in checkpoint.dir that verifies"},
    {"--join", nullptr, true, "tcp://HOST:PORT: (server, worker) the coordinator to join"},
    {"--id", nullptr, true, "N: (server, worker) the id to ask for"},
    {"--epochs", "train.epochs", true, "N: passes over the training data"},
    {"--batch-size", "train.batch_size", true, "N: samples per step (per worker)"},
    {"--lr", "optimizer.lr", true, "X: base learning rate"},
    {"--seed", "job.seed", true, "N: fixes initialisation and data order"},
    {"--threads", "train.threads", true, "N: OpenBLAS threads per process"},
    {"--metrics", "output.metrics", true, "FILE: write JSON-lines metrics to FILE"},
    {"--progress", "output.progress", true, "auto|always|never: the live progress line"},
    {"--http", "output.http_port", true,
     "PORT: serve /metrics, /status and a live page (-1: a free port)"},
    {"--set", nullptr, true, "KEY=VALUE: override any job key, e.g. --set optimizer.type=adam"},
    {"--job", nullptr, true,
     "JOB.toml: (eval, export) the checkpoint's job, if it holds no copy of its own"},
    {"--format", nullptr, true,
     "onnx: (export) the format to write; idx|csv: (predict) the input's"},
    {"--input", nullptr, true, "FILE: (predict) the samples, plain or gzipped"},
    {"--top-k", nullptr, true, "K: (predict) the most probable classes listed, above 10 classes"},
    {"--logits", nullptr, true, "FILE: (eval) also write the test set's logits, float32 rows"},
    {"--output", nullptr, true, "FILE: (export, predict; also -o FILE) where to write"},
    {"--log-level", nullptr, true, "debug|info|warning|error (default info)"},
};

}  // namespace

StatusOr<CommandLine> ParseCommandLine(int argc, const char* const* argv) {
  CommandLine cl;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      cl.help = true;
      continue;
    }
    if (arg == "-o") {
      if (i + 1 >= argc) return InvalidArgument("flag -o needs a value");
      cl.options["output"] = argv[++i];
      continue;
    }
    if (arg.substr(0, 2) != "--") {
      if (cl.command.empty()) {
        cl.command = std::string(arg);
      } else {
        cl.positional.emplace_back(arg);
      }
      continue;
    }
    std::string name(arg);
    std::string value;
    bool has_inline = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_inline = true;
    }
    const FlagSpec* spec = nullptr;
    for (const FlagSpec& f : kFlags) {
      if (name == f.flag) spec = &f;
    }
    if (spec == nullptr) {
      return InvalidArgument("unknown flag " + name + " (see pstrain --help)");
    }
    if (spec->takes_value && !has_inline) {
      if (i + 1 >= argc) return InvalidArgument("flag " + name + " needs a value");
      value = argv[++i];
    } else if (!spec->takes_value && has_inline) {
      return InvalidArgument("flag " + name + " takes no value");
    }
    if (name == "--set") {
      const size_t eq = value.find('=');
      if (eq == std::string::npos || eq == 0) {
        return InvalidArgument("--set wants KEY=VALUE, got \"" + value + "\"");
      }
      cl.overrides.push_back({value.substr(0, eq), value.substr(eq + 1)});
    } else if (spec->key != nullptr) {
      // A checkpoint named on the command line is the shell's, not the job file's.
      if (name == "--init-from" && !value.empty()) {
        value = std::filesystem::absolute(value).lexically_normal().string();
      }
      cl.overrides.push_back({spec->key, spec->takes_value ? value : "true"});
    } else {
      cl.options[name.substr(2)] = spec->takes_value ? value : "true";
    }
  }
  return cl;
}

int Fail(int code, const Status& s) {
  std::fprintf(stderr, "pstrain: %s\n", s.message().c_str());
  return code;
}

std::string UsageText() {
  std::string s =
      "usage: pstrain train JOB.toml [flags]      train: 1 coordinator + S servers + W workers as\n"
      "                                           local processes (or the ranks of mpirun)\n"
      "       pstrain train JOB.toml --standalone train in this one process\n"
      "       pstrain server --join tcp://HOST:PORT [--id N] [--bind ADDRESS] [--key FILE]\n"
      "       pstrain worker --join tcp://HOST:PORT [--id N] [--key FILE]\n"
      "                                           start one node by hand (e.g. a replacement)\n"
      "       pstrain keygen FILE                 write a new job key (CurveZMQ key pair, mode "
      "0600)\n"
      "       pstrain inspect DIR                 what a checkpoint holds (files, checksums, "
      "tensors)\n"
      "       pstrain eval DIR [--set data.KEY=..] test loss, accuracy and confusion matrix of a\n"
      "                                           checkpoint's weights\n"
      "       pstrain export DIR --format onnx -o FILE  the checkpoint's model as ONNX\n"
      "       pstrain predict DIR --input FILE -o OUT   the model's class and probabilities\n"
      "                                           for every sample of FILE (OUT .jsonl or .csv)\n"
      "       pstrain synth-ctr DIR [features=N train=N ...] write a synthetic click-through\n"
      "                                           set (LibSVM) from a known model\n"
      "       pstrain help job                    every job-file key with its default\n"
      "       pstrain info                        version and the BLAS kernel in use, as JSON\n"
      "\nflags:\n";
  for (const FlagSpec& f : kFlags) {
    s += "  " + std::string(f.flag);
    s.append(s.size() - s.rfind('\n') < 18 ? 18 - (s.size() - s.rfind('\n') - 1) : 1, ' ');
    s += f.help;
    if (f.key != nullptr) s += " [" + std::string(f.key) + "]";
    s += "\n";
  }
  return s;
}

}  // namespace pstrain
