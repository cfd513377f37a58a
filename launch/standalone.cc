#include "launch/standalone.h"

#include <cstdio>

#include "common/data/job_data.h"
#include "common/nn/blas.h"
#include "common/nn/model.h"
#include "common/nn/optimizer.h"
#include "coordinator/console.h"
#include "coordinator/metrics_log.h"
#include "paramserver/checkpoint_files.h"
#include "worker/trainer.h"

namespace pstrain {
namespace {

class Reporter : public TrainingObserver {
 public:
  Reporter(Console* console, MetricsLog* metrics, int epochs)
      : console_(console), metrics_(metrics), epochs_(epochs) {}
  void OnProgress(const ProgressStats& p) override { console_->Progress(p); }
  Status OnEpoch(const EpochStats& e) override {
    console_->Epoch(e, epochs_);
    return metrics_->WriteEpoch(e);
  }

 private:
  Console* console_;
  MetricsLog* metrics_;
  int epochs_;
};

std::string WithThousands(int64_t n) {
  std::string s = std::to_string(n);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(i, ",");
  return s;
}

}  // namespace

Status RunStandalone(const JobConfig& config, const std::atomic<bool>* stop) {
  SetBlasThreads(config.threads);
  FlushDenormalsToZero();
  ASSIGN_OR_RETURN(JobData data, LoadJobData(config.data));
  ASSIGN_OR_RETURN(std::unique_ptr<Model> model,
                   Model::Build(config.layers, data.train.dim, data.train.num_classes,
                                std::max(config.batch_size, config.eval_batch_size),
                                data.train.shape, SparseOptionsOf(config, &data)));
  model->InitParams(config.seed);
  if (!config.init_from.empty()) {
    if (model->sparse()) {
      return InvalidArgument(
          "model.init_from: sparse models keep embedding rows that it does "
          "not carry over");
    }
    ASSIGN_OR_RETURN(const std::string taken,
                     InitFromCheckpoint(config.init_from, model->layout(), model->params(),
                                        config.init_from_partial));
    std::fprintf(stderr, "%s\n", taken.c_str());
  }
  ASSIGN_OR_RETURN(std::unique_ptr<MetricsLog> metrics, MetricsLog::Open(config.metrics_path));
  metrics->set_title("pstrain " + config.name + " (standalone)");

  Console console(config.progress);
  console.Banner("pstrain " + config.name + ": " + model->Describe() + " (" +
                 WithThousands(static_cast<int64_t>(model->layout().parameter_count())) +
                 " parameters)");
  console.Banner("data: " + std::to_string(data.train.count) + " training and " +
                 std::to_string(data.test.count) + " test samples of " +
                 std::to_string(data.train.dim) + " features, " +
                 std::to_string(data.train.num_classes) + " classes; " +
                 std::string(OptimizerKindName(config.optimizer.kind)) + " lr " +
                 std::to_string(config.optimizer.lr) + ", batch " +
                 std::to_string(config.batch_size) + ", " + std::to_string(config.epochs) +
                 " epochs, " + std::to_string(config.threads) + " thread(s), standalone");

  Reporter reporter(&console, metrics.get(), config.epochs);
  ASSIGN_OR_RETURN(FinalStats final_stats,
                   TrainStandalone(config, data.train, data.test, *model, reporter, stop));
  console.Final(final_stats);
  return metrics->WriteFinal(final_stats);
}

}  // namespace pstrain
