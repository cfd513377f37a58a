#include "worker/trainer.h"

#include <catch2/catch.hpp>
#include <cmath>

#include "common/base/rng.h"
#include "common/nn/optimizer.h"
#include "common/ps/weights_digest.h"

namespace pstrain {
namespace {

// Four Gaussian blobs in 8 dimensions: easy to separate, quick to train.
Dataset Blobs(int64_t count, uint64_t seed) {
  Dataset d;
  d.source = "blobs";
  d.count = count;
  d.dim = 8;
  d.num_classes = 4;
  d.features = FloatBuffer(count * d.dim);
  d.labels.resize(count);
  Rng rng(seed);
  for (int64_t i = 0; i < count; ++i) {
    const int c = static_cast<int>(rng.Below(4));
    d.labels[i] = c;
    for (int j = 0; j < d.dim; ++j) {
      const float center = (j % 4 == c) ? 2.0f : 0.0f;
      d.features[i * d.dim + j] = center + static_cast<float>(rng.Normal()) * 0.7f;
    }
  }
  return d;
}

class Recorder : public TrainingObserver {
 public:
  Status OnEpoch(const EpochStats& e) override {
    epochs.push_back(e);
    return OkStatus();
  }
  void OnProgress(const ProgressStats& p) override { last_progress = p; }
  std::vector<EpochStats> epochs;
  ProgressStats last_progress;
};

JobConfig SmallJob() {
  JobConfig c;
  c.layers = {{"dense", 16}, {"relu"}, {"dense", 4}};
  c.epochs = 4;
  c.batch_size = 30;  // 500 samples: the last batch of each epoch is short
  c.seed = 3;
  c.optimizer.kind = OptimizerKind::kMomentum;
  c.optimizer.lr = 0.05f;
  return c;
}

FinalStats Train(const JobConfig& c, Recorder& rec) {
  Dataset train = Blobs(500, 1), test = Blobs(200, 2);
  auto m = Model::Build(c.layers, 8, 4, 64);
  REQUIRE(m.ok());
  (*m)->InitParams(c.seed);
  auto f = TrainStandalone(c, train, test, **m, rec, nullptr);
  REQUIRE(f.ok());
  return *f;
}

TEST_CASE("Standalone training learns, visits every sample and reports each epoch", "[worker]") {
  Recorder rec;
  FinalStats f = Train(SmallJob(), rec);
  REQUIRE(rec.epochs.size() == 4);
  for (const EpochStats& e : rec.epochs) CHECK(e.samples == 500);
  CHECK(rec.epochs.back().train_loss < rec.epochs.front().train_loss);
  CHECK(f.test_accuracy > 0.9);
  CHECK(f.params == 8 * 16 + 16 + 16 * 4 + 4);
  CHECK(f.weights_l2 > 0);
  CHECK(rec.last_progress.done == 500);
}

TEST_CASE("The same seed gives bit-identical weights, another seed other weights", "[worker]") {
  Recorder a, b, c;
  JobConfig job = SmallJob();
  const FinalStats fa = Train(job, a);
  const FinalStats fb = Train(job, b);
  CHECK(DigestHex(fa.weights_digest) == DigestHex(fb.weights_digest));
  CHECK(fa.test_loss == fb.test_loss);
  job.seed = 4;
  const FinalStats fc = Train(job, c);
  CHECK(DigestHex(fa.weights_digest) != DigestHex(fc.weights_digest));
}

TEST_CASE("Each optimizer trains the blobs", "[worker]") {
  for (OptimizerKind kind : {OptimizerKind::kSgd, OptimizerKind::kMomentum, OptimizerKind::kAdam,
                             OptimizerKind::kAdagrad}) {
    JobConfig job = SmallJob();
    job.optimizer.kind = kind;
    job.optimizer.lr = kind == OptimizerKind::kSgd    ? 0.2f
                       : kind == OptimizerKind::kAdam ? 0.01f
                                                      : 0.05f;
    job.schedule.kind = ScheduleKind::kCosine;
    Recorder rec;
    INFO(OptimizerKindName(kind));
    CHECK(Train(job, rec).test_accuracy > 0.9);
  }
}

// Stops in the middle of an epoch: the request is seen before the next step,
// and no step runs after it.
class StopAfter : public Recorder {
 public:
  StopAfter(int epoch, int64_t done, std::atomic<bool>* stop)
      : epoch_(epoch), done_(done), stop_(stop) {}
  void OnProgress(const ProgressStats& p) override {
    Recorder::OnProgress(p);
    ++reports;
    if (p.epoch == epoch_ && p.done == done_) stop_->store(true);
  }
  int reports = 0;

 private:
  int epoch_;
  int64_t done_;
  std::atomic<bool>* stop_;
};

TEST_CASE("Training stops at the next step when asked", "[worker]") {
  // 2000 samples in batches of 30: 67 steps an epoch, progress every 16.
  Dataset train = Blobs(2000, 1), test = Blobs(10, 2);
  auto m = Model::Build({{"dense", 4}}, 8, 4, 64);
  REQUIRE(m.ok());
  (*m)->InitParams(1);
  std::atomic<bool> stop{false};
  StopAfter rec(2, 16 * 30, &stop);
  auto f = TrainStandalone(SmallJob(), train, test, **m, rec, &stop);
  REQUIRE_FALSE(f.ok());
  CHECK(f.status().code() == StatusCode::kCancelled);
  CHECK_THAT(f.status().message(), Catch::Contains("epoch 2, before step 17"));
  CHECK(rec.epochs.size() == 1);
  // Epoch 1 reported at steps 16, 32, 48, 64 and 67; epoch 2 once, at 16.
  CHECK(rec.reports == 6);
  CHECK(rec.last_progress.done == 16 * 30);
}

TEST_CASE("A stop asked before training runs no step", "[worker]") {
  Dataset train = Blobs(100, 1), test = Blobs(10, 2);
  auto m = Model::Build({{"dense", 4}}, 8, 4, 64);
  REQUIRE(m.ok());
  (*m)->InitParams(1);
  std::atomic<bool> stop{true};
  Recorder rec;
  auto f = TrainStandalone(SmallJob(), train, test, **m, rec, &stop);
  REQUIRE_FALSE(f.ok());
  CHECK_THAT(f.status().message(), Catch::Contains("epoch 1, before step 1"));
  CHECK(rec.epochs.empty());
  CHECK(rec.last_progress.done == 0);
}

}  // namespace
}  // namespace pstrain
