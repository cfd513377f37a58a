#include "worker/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "common/data/sampler.h"
#include "common/nn/metrics.h"
#include "common/nn/optimizer.h"
#include "common/ps/sparse_table.h"
#include "common/ps/weights_digest.h"

namespace pstrain {
namespace {
double Since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

void FillBatch(const Dataset& data, const uint32_t* ids, int n, float* input, int32_t* labels) {
  for (int i = 0; i < n; ++i) {
    if (input != nullptr) {
      std::memcpy(input + static_cast<size_t>(i) * data.dim, data.row(ids[i]),
                  data.dim * sizeof(float));
    }
    labels[i] = data.labels[ids[i]];
  }
}

Status CheckLossFinite(double loss_sum, int epoch, int64_t step, int slot) {
  if (std::isfinite(loss_sum)) return OkStatus();
  return InvalidArgument("training diverged: the loss is not finite in epoch " +
                         std::to_string(epoch + 1) + ", step " + std::to_string(step + 1) +
                         (slot >= 0 ? " (slot " + std::to_string(slot) + ")" : "") +
                         "; lower optimizer.lr");
}

StatusOr<EvalResult> EvaluateRange(Model& model, const Dataset& data, int64_t begin, int64_t end,
                                   const RowFetch& fetch, const std::function<Status()>& between) {
  EvalResult r;
  if (end <= begin) return r;
  if (model.sparse() && !fetch) return Internal("a sparse model needs a row source to evaluate");
  if (model.binary()) {
    r.scores.resize(end - begin);
    r.labels.assign(data.labels.begin() + begin, data.labels.begin() + end);
  }
  for (int64_t at = begin; at < end; at += model.max_batch()) {
    const int n = static_cast<int>(std::min<int64_t>(model.max_batch(), end - at));
    if (model.sparse()) {
      model.GatherSparse(data, at, n);
      RETURN_IF_ERROR(fetch(model));
    }
    const LossResult l =
        model.EvaluateBatch(model.sparse() ? nullptr : data.row(at), data.labels.data() + at, n,
                            r.scores.empty() ? nullptr : r.scores.data() + (at - begin));
    r.loss_sum += l.loss_sum;
    r.correct += l.correct;
    if (between) RETURN_IF_ERROR(between());
  }
  r.count = end - begin;
  return r;
}

namespace {

// Test loss, accuracy and AUC of the whole test set into e.
template <typename Stats>
Status EvaluateTest(Model& model, const Dataset& test, const RowFetch& fetch, Stats* e) {
  ASSIGN_OR_RETURN(EvalResult ev, EvaluateRange(model, test, 0, test.count, fetch));
  e->test_loss = ev.loss_sum / std::max<int64_t>(ev.count, 1);
  e->test_accuracy = static_cast<double>(ev.correct) / std::max<int64_t>(ev.count, 1);
  if constexpr (requires { e->test_samples; }) e->test_samples = ev.count;
  if (!ev.scores.empty()) e->test_auc = BinaryAuc(ev.scores, ev.labels);
  return OkStatus();
}

// Forward and backward of one batch of n samples, cut into
// config.micro_batches contiguous parts whose gradients are summed in
// order, exactly as a BSP server sums the workers' parts of a global batch;
// leaves the sum in model.grads(). `input` is null for sparse data.
LossResult AccumulatedStep(Model& model, const JobConfig& config, const float* input,
                           const int32_t* labels, int n, int epoch, int64_t step,
                           FloatBuffer* accum) {
  LossResult l;
  const int parts = std::min(config.micro_batches, n);
  for (int m = 0; m < parts; ++m) {
    const int a = n * m / parts, b = n * (m + 1) / parts;
    model.SetStepSeed(StepSeed(config.seed, epoch, step, m));
    const LossResult part = model.TrainStep(
        input == nullptr ? nullptr : input + static_cast<size_t>(a) * model.input_dim(), labels + a,
        b - a, 1.0f / n);
    l.loss_sum += part.loss_sum;
    l.correct += part.correct;
    if (parts == 1) break;
    const std::span<const float> g = model.grads();
    if (m == 0) {
      std::copy(g.begin(), g.end(), accum->data());
    } else {
      float* __restrict acc = accum->data();
      for (size_t i = 0; i < g.size(); ++i) acc[i] += g[i];
    }
  }
  if (parts > 1) std::copy(accum->data(), accum->data() + accum->size(), model.grads().data());
  return l;
}

}  // namespace

namespace {

// One standalone job: the model's optimizer, the sparse tables (here in
// this process), the batch buffers and the epoch's sample order.
class StandaloneRun {
 public:
  StandaloneRun(const JobConfig& config, const Dataset& train, const Dataset& test, Model& model,
                TrainingObserver& observer, const std::atomic<bool>* stop)
      : config_(config),
        train_(train),
        test_(test),
        model_(model),
        observer_(observer),
        stop_(stop),
        sparse_(model.sparse()),
        steps_per_epoch_((train.count + config.batch_size - 1) / config.batch_size) {}

  Status Setup();
  // Trains epoch `epoch` (0-based) and reports it to the observer.
  Status TrainEpoch(int epoch);
  // The final evaluation and the weights' digest.
  StatusOr<FinalStats> Finish();

 private:
  // Step `step` of the epoch: trains, applies, adds to the epoch's sums.
  Status TrainStep(int epoch, int64_t step, float* lr);

  const JobConfig& config_;
  const Dataset& train_;
  const Dataset& test_;
  Model& model_;
  TrainingObserver& observer_;
  const std::atomic<bool>* stop_;
  const bool sparse_;
  const int64_t steps_per_epoch_;
  std::unique_ptr<Optimizer> optimizer_;
  std::vector<SparseTable> tables_;
  RowFetch fetch_;
  FloatBuffer input_, accum_;
  std::vector<int32_t> labels_;
  std::vector<uint32_t> order_;
  // The epoch's sums.
  double loss_sum_ = 0;
  int64_t correct_ = 0, done_ = 0;
};

Status StandaloneRun::Setup() {
  if (sparse_ && config_.micro_batches > 1) {
    return InvalidArgument("train.micro_batches > 1 is for dense models; this one is sparse");
  }
  optimizer_ = Optimizer::Create(config_.optimizer, model_.params().size());
  for (const RowBlock& b : model_.tables()) {
    ASSIGN_OR_RETURN(SparseTable t,
                     SparseTable::Create(b.table, b.dim, config_.optimizer, config_.seed));
    tables_.push_back(std::move(t));
  }
  fetch_ = [this](Model& m) {
    for (size_t t = 0; t < tables_.size(); ++t)
      tables_[t].Pull(m.rows(), m.tables()[t].values.data());
    return OkStatus();
  };
  input_ = FloatBuffer(sparse_ ? 0 : static_cast<size_t>(config_.batch_size) * train_.dim);
  accum_ = FloatBuffer(config_.micro_batches > 1 ? model_.grads().size() : 0);
  labels_.resize(config_.batch_size);
  return OkStatus();
}

Status StandaloneRun::TrainStep(int epoch, int64_t step, float* lr) {
  const int64_t first = step * config_.batch_size;
  const int n = static_cast<int>(std::min<int64_t>(config_.batch_size, train_.count - first));
  float* input = sparse_ ? nullptr : input_.data();
  FillBatch(train_, order_.data() + first, n, input, labels_.data());
  if (sparse_) {
    model_.GatherSparse(train_, order_.data() + first, n);
    RETURN_IF_ERROR(fetch_(model_));
  }
  const LossResult l =
      AccumulatedStep(model_, config_, input, labels_.data(), n, epoch, step, &accum_);
  *lr = ScheduledLearningRate(config_.schedule, config_.optimizer.lr,
                              epoch + static_cast<double>(step) / steps_per_epoch_, config_.epochs);
  RETURN_IF_ERROR(CheckLossFinite(l.loss_sum, epoch, step, -1));
  optimizer_->Apply(model_.params(), model_.grads(), *lr);
  for (size_t t = 0; t < tables_.size(); ++t) {
    tables_[t].Push(model_.rows(), model_.tables()[t].grads.data(), *lr);
  }
  loss_sum_ += l.loss_sum;
  correct_ += l.correct;
  done_ += n;
  return OkStatus();
}

Status StandaloneRun::TrainEpoch(int epoch) {
  const auto epoch_start = std::chrono::steady_clock::now();
  FillEpochOrder(config_.seed, epoch, train_.count, &order_);
  loss_sum_ = 0;
  correct_ = done_ = 0;
  float lr = config_.optimizer.lr;
  for (int64_t step = 0; step < steps_per_epoch_; ++step) {
    if (stop_ != nullptr && stop_->load(std::memory_order_relaxed)) {
      return Cancelled("training stopped by a signal in epoch " + std::to_string(epoch + 1) +
                       ", before step " + std::to_string(step + 1));
    }
    RETURN_IF_ERROR(TrainStep(epoch, step, &lr));
    if ((step & 15) == 15 || step + 1 == steps_per_epoch_) {
      const double t = Since(epoch_start);
      observer_.OnProgress({epoch + 1, config_.epochs, done_, train_.count, loss_sum_ / done_,
                            t > 0 ? done_ / t : 0, t});
    }
  }
  EpochStats e;
  e.epoch = epoch + 1;
  e.train_seconds = Since(epoch_start);
  e.samples = done_;
  e.train_loss = loss_sum_ / std::max<int64_t>(done_, 1);
  e.train_accuracy = static_cast<double>(correct_) / std::max<int64_t>(done_, 1);
  e.samples_per_s = done_ / std::max(e.train_seconds, 1e-9);
  RETURN_IF_ERROR(EvaluateTest(model_, test_, fetch_, &e));
  e.seconds = Since(epoch_start);
  e.lr = lr;
  return observer_.OnEpoch(e);
}

StatusOr<FinalStats> StandaloneRun::Finish() {
  FinalStats f;
  f.epochs = config_.epochs;
  RETURN_IF_ERROR(EvaluateTest(model_, test_, fetch_, &f));
  f.weights_l2 = L2Norm(model_.params());
  f.weights_digest = ModelDigest(KeyLayout(model_.layout()), model_.params());
  for (const SparseTable& t : tables_) f.weights_digest += t.Digest();
  f.params = static_cast<int64_t>(model_.layout().parameter_count());
  return f;
}

}  // namespace

StatusOr<FinalStats> TrainStandalone(const JobConfig& config, const Dataset& train,
                                     const Dataset& test, Model& model, TrainingObserver& observer,
                                     const std::atomic<bool>* stop) {
  const auto run_start = std::chrono::steady_clock::now();
  StandaloneRun run(config, train, test, model, observer, stop);
  RETURN_IF_ERROR(run.Setup());
  for (int epoch = 0; epoch < config.epochs; ++epoch) RETURN_IF_ERROR(run.TrainEpoch(epoch));
  ASSIGN_OR_RETURN(FinalStats f, run.Finish());
  f.seconds = Since(run_start);
  return f;
}

}  // namespace pstrain
