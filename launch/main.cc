// The pstrain executable: parses the command line and runs the role or
// command it names. Exit codes: 0 done, 1 the run failed, 2 bad command line
// or job file, 130 stopped by SIGINT/SIGTERM.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/base/json.h"
#include "common/base/logging.h"
#include "common/data/synthetic_ctr.h"
#include "common/job/config.h"
#include "common/nn/blas.h"
#include "launch/checkpoint_tools.h"
#include "launch/export_onnx.h"
#include "launch/flags.h"
#include "launch/predict.h"
#include "launch/roles.h"
#include "launch/standalone.h"

namespace {

std::atomic<bool> g_stop{false};

void OnSignal(int) { g_stop.store(true); }

using pstrain::Fail;

int Train(const pstrain::CommandLine& cl, char** argv) {
  if (cl.positional.size() != 1) {
    return Fail(
        2, pstrain::InvalidArgument("train needs exactly one job file: pstrain train JOB.toml"));
  }
  auto job = pstrain::ReadJobSource(cl.positional[0], cl.overrides);
  if (!job.ok()) return Fail(2, job.status());
  job->resume = cl.options.contains("resume");
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  if (!cl.options.contains("standalone")) {
    // Nodes log warnings and errors only, unless asked for more.
    const std::string level =
        cl.options.contains("log-level") ? cl.options.at("log-level") : "warning";
    if (pstrain::UnderMpirun()) return pstrain::RunMpiJob(*job, argv, level, &g_stop);
    return pstrain::RunLocalJob(*job, level, &g_stop);
  }
  if (job->resume) {
    return Fail(2, pstrain::InvalidArgument(
                       "--resume continues a distributed job from its checkpoints; a --standalone "
                       "run keeps none"));
  }
  pstrain::Status s = pstrain::RunStandalone(job->config, &g_stop);
  if (s.code() == pstrain::StatusCode::kCancelled) {
    std::fprintf(stderr, "pstrain: %s\n", s.message().c_str());
    return 130;
  }
  if (!s.ok()) return Fail(s.code() == pstrain::StatusCode::kInvalidArgument ? 2 : 1, s);
  return 0;
}

// OpenBLAS reads OPENBLAS_CORETYPE only when it loads: when it fell back to
// a generic kernel on a CPU that has AVX2 or AVX-512, run this program again
// with the right core type. Users can pin their own with the variable.
void UseBestBlasKernel(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return;
  const std::string core = pstrain::PreferredBlasCore();
  if (core.empty()) return;
  ::setenv("OPENBLAS_CORETYPE", core.c_str(), 1);
  const std::string self = pstrain::SelfExecutable();
  ::execv(self.c_str(), argv);
  // Still here: exec failed; carry on with the generic kernel.
  std::fprintf(stderr, "pstrain: warning: could not restart with OPENBLAS_CORETYPE=%s\n",
               core.c_str());
}

}  // namespace

// pstrain synth-ctr DIR [name=value ...]: a synthetic click-through set.
int SynthCtr(const pstrain::CommandLine& cl) {
  const char* usage =
      "usage: pstrain synth-ctr DIR [features=N] [fields=N] [vocabulary=N] [zipf=X] "
      "[weight_sd=X] [bias=X] [train=N] [test=N] [seed=N]";
  if (cl.positional.empty()) return Fail(2, pstrain::InvalidArgument(usage));
  pstrain::CtrOptions o;
  for (size_t i = 1; i < cl.positional.size(); ++i) {
    const std::string& a = cl.positional[i];
    const size_t eq = a.find('=');
    const std::string name = a.substr(0, eq);
    const std::string value = eq == std::string::npos ? "" : a.substr(eq + 1);
    char* end = nullptr;
    const double v = std::strtod(value.c_str(), &end);
    if (value.empty() || end == nullptr || *end != '\0' || !std::isfinite(v)) {
      return Fail(
          2, pstrain::InvalidArgument("synth-ctr: \"" + a + "\" is not name=number; " + usage));
    }
    if (name == "features") {
      o.features = static_cast<int64_t>(v);
    } else if (name == "fields") {
      o.fields = static_cast<int>(v);
    } else if (name == "vocabulary") {
      o.largest_vocabulary = static_cast<int64_t>(v);
    } else if (name == "zipf") {
      o.zipf = v;
    } else if (name == "weight_sd") {
      o.weight_sd = v;
    } else if (name == "bias") {
      o.bias = v;
    } else if (name == "train") {
      o.train = static_cast<int64_t>(v);
    } else if (name == "test") {
      o.test = static_cast<int64_t>(v);
    } else if (name == "seed") {
      o.seed = static_cast<uint64_t>(v);
    } else {
      return Fail(
          2, pstrain::InvalidArgument("synth-ctr: unknown setting \"" + name + "\"; " + usage));
    }
  }
  auto truth = pstrain::WriteSyntheticCtr(cl.positional[0], o);
  if (!truth.ok())
    return Fail(truth.status().code() == pstrain::StatusCode::kInvalidArgument ? 2 : 1,
                truth.status());
  std::printf(
      "wrote %s/train.libsvm (%lld samples), test.libsvm (%lld), truth.json: the "
      "generating model's test AUC %.4f, log-loss %.4f, %.1f%% positive, %lld distinct "
      "training features of %lld\n",
      cl.positional[0].c_str(), static_cast<long long>(o.train), static_cast<long long>(o.test),
      truth->best_auc, truth->best_logloss, 100 * truth->positive_rate,
      static_cast<long long>(truth->train_active), static_cast<long long>(o.features));
  return 0;
}

int main(int argc, char** argv) {
  UseBestBlasKernel(argv);
  auto cl = pstrain::ParseCommandLine(argc, argv);
  if (!cl.ok()) return Fail(2, cl.status());
  if (auto it = cl->options.find("log-level"); it != cl->options.end()) {
    const std::string& v = it->second;
    if (v == "debug") {
      pstrain::SetMinLogLevel(pstrain::LogLevel::kDebug);
    } else if (v == "info") {
      pstrain::SetMinLogLevel(pstrain::LogLevel::kInfo);
    } else if (v == "warning") {
      pstrain::SetMinLogLevel(pstrain::LogLevel::kWarning);
    } else if (v == "error") {
      pstrain::SetMinLogLevel(pstrain::LogLevel::kError);
    } else {
      return Fail(2, pstrain::InvalidArgument("--log-level is \"" + v +
                                              "\"; valid: debug, info, warning, error"));
    }
  }
  if (cl->help || cl->command.empty()) {
    std::fputs(pstrain::UsageText().c_str(), stdout);
    return cl->help ? 0 : 2;
  }
  if (cl->command == "help") {
    if (cl->positional.size() == 1 && cl->positional[0] == "job") {
      std::fputs(pstrain::JobConfigHelp().c_str(), stdout);
      return 0;
    }
    std::fputs(pstrain::UsageText().c_str(), stdout);
    return 0;
  }
  if (cl->command == "train") return Train(*cl, argv);
  if (cl->command == "keygen") {
    if (cl->positional.size() != 1) {
      return Fail(2, pstrain::InvalidArgument("usage: pstrain keygen FILE"));
    }
    auto key = pstrain::GenerateCurveKeyPair();
    if (!key.ok()) return Fail(1, key.status());
    pstrain::Status s = pstrain::WriteJobKeyFile(cl->positional[0], *key);
    if (!s.ok()) return Fail(s.code() == pstrain::StatusCode::kInvalidArgument ? 2 : 1, s);
    std::printf("wrote job key %s (mode 0600); give every node of the job --key %s\n",
                cl->positional[0].c_str(), cl->positional[0].c_str());
    return 0;
  }
  if (cl->command == "server" || cl->command == "worker") {
    // Started by pstrain's launcher, SIGINT is ignored: the coordinator ends the job.
    struct sigaction old {};
    ::sigaction(SIGINT, nullptr, &old);
    if (old.sa_handler != SIG_IGN) std::signal(SIGINT, OnSignal);
    std::signal(SIGTERM, OnSignal);
    return pstrain::RunRole(*cl, &g_stop);
  }
  if (cl->command == "synth-ctr") return SynthCtr(*cl);
  if (cl->command == "inspect") return pstrain::RunInspect(*cl);
  if (cl->command == "eval") return pstrain::RunEval(*cl);
  if (cl->command == "export") return pstrain::RunExport(*cl, PSTRAIN_VERSION);
  if (cl->command == "predict") return pstrain::RunPredict(*cl);
  if (cl->command == "info") {
    const char* env = std::getenv("OPENBLAS_CORETYPE");
    std::printf("%s\n", pstrain::JsonObject()
                            .Add("version", PSTRAIN_VERSION)
                            .Add("blas_core", pstrain::BlasCoreName())
                            .Add("openblas_coretype", env != nullptr ? env : "")
                            .str()
                            .c_str());
    return 0;
  }
  return Fail(
      2, pstrain::InvalidArgument("unknown command \"" + cl->command + "\" (see pstrain --help)"));
}
