// LibSVM data, the AUC, the synthetic click-through generator and
// standalone training of sparse models.
#include <catch2/catch.hpp>
#include <cmath>

#include "common/data/dataset.h"
#include "common/data/job_data.h"
#include "common/data/synthetic_ctr.h"
#include "common/job/config.h"
#include "common/nn/metrics.h"
#include "tests/test_util.h"
#include "worker/trainer.h"

namespace pstrain {
namespace {

using testing::TempDir;
using testing::WriteFile;

TEST_CASE("LibSVM: labels, ascending indices and values into compressed rows", "[common]") {
  auto d = ParseLibsvmDataset(
      "a.libsvm", "# a comment\n+1 1:0.5 3:2 10:1e-1\n\n-1 qid:7 2:1\n0 4:-3 # tail\n", {});
  REQUIRE(d.ok());
  CHECK(d->sparse);
  CHECK(d->count == 3);
  CHECK(d->dim == 11);
  CHECK(d->num_classes == 2);
  CHECK(d->labels == std::vector<int32_t>{1, 0, 0});
  CHECK(d->offsets == std::vector<int64_t>{0, 3, 4, 5});
  CHECK(d->index == std::vector<uint32_t>{1, 3, 10, 2, 4});
  CHECK(d->value == std::vector<float>{0.5f, 2.0f, 0.1f, 1.0f, -3.0f});
  CHECK(d->max_active == 3);
  auto sized = ParseLibsvmDataset("a.libsvm", "1 3:1\n", {100});
  REQUIRE(sized.ok());
  CHECK(sized->dim == 100);
}

TEST_CASE("LibSVM errors name the file, the line and the problem", "[common]") {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"1 1:1\n2 3:1\n", "f.libsvm:2: the label \"2\" is not binary"},
      {"1 1:1\nyes 3:1\n", "f.libsvm:2: the label \"yes\" is not binary"},
      {"1 5:1 3:1\n",
       "f.libsvm:1: feature index 3 follows index 5: indices must be strictly "
       "ascending"},
      {"1 5:1 5:2\n", "f.libsvm:1: feature index 5 follows index 5"},
      {"0 1:1\n1 -4:1\n", "f.libsvm:2: the index in \"-4:1\" is not a non-negative integer"},
      {"1 4:abc\n", "f.libsvm:1: the value in \"4:abc\" is not a finite number"},
      {"1 4:nan\n", "f.libsvm:1: the value in \"4:nan\" is not a finite number"},
      {"1 4\n", "f.libsvm:1: \"4\" is not index:value"},
      {"1 1:1\n0 20:1\n",
       "f.libsvm:2: feature index 20 is outside the feature space of "
       "data.features = 10"},
      {"", "f.libsvm: no samples (an empty LibSVM file)"},
      {"1\n0\n", "f.libsvm: no sample has any feature"},
  };
  for (const auto& [text, message] : cases) {
    INFO(text);
    auto d = ParseLibsvmDataset("f.libsvm", text, {10});
    REQUIRE_FALSE(d.ok());
    CHECK_THAT(d.status().message(), Catch::Contains(message));
  }
}

TEST_CASE("LibSVM files stream from disk, plain or gzipped, truncated ones refused", "[common]") {
  TempDir dir;
  std::string text;
  for (int i = 0; i < 20000; ++i) {
    text += (i % 3 ? "1" : "0") + std::string(" ") + std::to_string(i % 97) + ":1 " +
            std::to_string(100 + i % 1000) + ":0.5\n";
  }
  WriteFile(dir.File("plain.libsvm"), text);
  testing::WriteGzipFile(dir.File("z.libsvm.gz"), std::vector<uint8_t>(text.begin(), text.end()));
  auto plain = ReadLibsvmDataset(dir.File("plain.libsvm"), {});
  auto z = ReadLibsvmDataset(dir.File("z.libsvm.gz"), {});
  REQUIRE(plain.ok());
  REQUIRE(z.ok());
  CHECK(plain->count == 20000);
  CHECK(plain->index == z->index);
  CHECK(plain->labels == z->labels);
  // Cut inside a line: the last sample is complete up to the cut, or the
  // gzip stream is reported truncated.
  const std::string gz = testing::ReadFile(dir.File("z.libsvm.gz"));
  WriteFile(dir.File("cut.libsvm.gz"), gz.substr(0, gz.size() / 2));
  auto cut = ReadLibsvmDataset(dir.File("cut.libsvm.gz"), {});
  REQUIRE_FALSE(cut.ok());
  CHECK_THAT(cut.status().message(), Catch::Contains("cut.libsvm.gz"));
  CHECK_THAT(ReadLibsvmDataset(dir.File("missing.libsvm"), {}).status().message(),
             Catch::Contains("missing.libsvm: cannot open"));
}

TEST_CASE("AUC: the Mann-Whitney statistic, ties counting one half", "[common]") {
  const std::vector<float> s = {0.1f, 0.4f, 0.35f, 0.8f};
  const std::vector<uint8_t> y = {0, 0, 1, 1};
  CHECK(BinaryAuc(s, y) == Approx(0.75));
  const std::vector<uint8_t> perfect = {0, 1, 0, 1};
  CHECK(BinaryAuc(s, perfect) == Approx(1.0));
  const std::vector<float> tied = {0.5f, 0.5f, 0.5f, 0.5f};
  CHECK(BinaryAuc(tied, y) == Approx(0.5));
  const std::vector<uint8_t> one_class = {1, 1, 1, 1};
  CHECK(std::isnan(BinaryAuc(s, one_class)));
}

TEST_CASE("The click-through generator writes LibSVM data and its model's best AUC", "[common]") {
  TempDir dir;
  CtrOptions o;
  o.features = 1000000;
  o.fields = 10;
  o.largest_vocabulary = 1000;
  o.train = 3000;
  o.test = 2000;
  o.seed = 4;
  auto truth = WriteSyntheticCtr(dir.path().string(), o);
  REQUIRE(truth.ok());
  CHECK(truth->best_auc > 0.7);
  CHECK(truth->best_auc < 1.0);
  CHECK(truth->positive_rate > 0.05);
  CHECK(truth->positive_rate < 0.6);
  const std::string json = testing::ReadFile(dir.File("truth.json"));
  CHECK_THAT(json, Catch::Contains("\"best_auc\":"));
  auto train = ReadLibsvmDataset(dir.File("train.libsvm"), {o.features});
  REQUIRE(train.ok());
  CHECK(train->count == 3000);
  CHECK(train->max_active <= 10);
  for (uint32_t i : train->index) CHECK(i < 1000000u);
  // The same seed writes the same files.
  TempDir again;
  auto t2 = WriteSyntheticCtr(again.path().string(), o);
  REQUIRE(t2.ok());
  CHECK(testing::ReadFile(again.File("test.libsvm")) == testing::ReadFile(dir.File("test.libsvm")));
  CHECK(t2->best_auc == truth->best_auc);
  o.fields = 0;
  CHECK_THAT(WriteSyntheticCtr(again.path().string(), o).status().message(),
             Catch::Contains("--fields must be in [1, 1000]"));
}

class Keep : public TrainingObserver {
 public:
  Status OnEpoch(const EpochStats& e) override {
    epochs.push_back(e);
    return OkStatus();
  }
  std::vector<EpochStats> epochs;
};

TEST_CASE("Standalone sparse logistic regression and wide-and-deep approach the best AUC",
          "[common]") {
  TempDir dir;
  CtrOptions o;
  o.features = 1000000;
  o.fields = 12;
  o.largest_vocabulary = 2000;
  o.zipf = 1.5;
  o.train = 40000;
  o.test = 10000;
  auto truth = WriteSyntheticCtr(dir.path().string(), o);
  REQUIRE(truth.ok());
  for (const bool deep : {false, true}) {
    const std::string job =
        "[data]\nformat = \"libsvm\"\ntrain = \"" + dir.File("train.libsvm") + "\"\ntest = \"" +
        dir.File("test.libsvm") + "\"\nfeatures = 1000000\n[model]\n" +
        (deep ? "layers = [{type = \"embedding\", dim = 4}, {type = \"dense\", units = 8}, "
                "{type = \"relu\"}, {type = \"dense\", units = 1}]\nwide = true\n"
              : "layers = [{type = \"embedding\", dim = 1}]\n") +
        "[optimizer]\ntype = \"adagrad\"\nlr = 0.1\n[train]\nepochs = 3\nbatch_size = 128\n";
    auto c = ParseJobConfig(job, "ctr.toml", dir.path().string(), {});
    REQUIRE(c.ok());
    auto data = LoadJobData(c->data);
    REQUIRE(data.ok());
    auto m = Model::Build(c->layers, data->train.dim, 2, 1000, {}, SparseOptionsOf(*c, &*data));
    REQUIRE(m.ok());
    (*m)->InitParams(c->seed);
    Keep keep;
    auto f = TrainStandalone(*c, data->train, data->test, **m, keep, nullptr);
    REQUIRE(f.ok());
    INFO((deep ? "wide and deep" : "logistic regression")
         << ": AUC " << f->test_auc << ", best " << truth->best_auc);
    CHECK(f->test_auc > truth->best_auc - 0.03);
    CHECK(f->test_auc <= truth->best_auc + 0.01);
    CHECK(keep.epochs.back().test_auc == f->test_auc);
    CHECK(keep.epochs.back().test_loss < std::log(2.0));
  }
}

}  // namespace
}  // namespace pstrain
