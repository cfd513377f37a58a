#include "common/nn/model.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <vector>

#include "common/job/config.h"
#include "tests/nn/gradcheck.h"
#include "tests/test_util.h"

namespace pstrain {
namespace {

TEST_CASE("Model gradients match finite differences for every parameter", "[nn][gradcheck]") {
  const int in = 6, classes = 3, batch = 4;
  auto built = Model::Build({{"dense", 5, InitKind::kHe},
                             {"relu", 0, InitKind::kHe},
                             {"dense", 4, InitKind::kTorch},
                             {"relu", 0, InitKind::kHe},
                             {"dense", classes, InitKind::kXavier}},
                            in, classes, batch);
  REQUIRE(built.ok());
  Model& m = **built;
  m.InitParams(11);
  Rng rng(3);
  std::vector<float> x = RandomVector(rng, batch * in);
  std::vector<int32_t> y = {0, 2, 1, 2};
  m.TrainStep(x.data(), y.data(), batch, 1.0f / batch);
  std::vector<float> grads(m.grads().begin(), m.grads().end());
  auto mean_loss = [&] { return m.Evaluate(x.data(), y.data(), batch).loss_sum / batch; };
  for (const TensorSpec& t : m.layout().tensors()) {
    for (size_t i = 0; i < t.size; ++i) {
      float* p = m.params().data() + t.offset + i;
      CheckClose(grads[t.offset + i], NumericGrad(mean_loss, p),
                 t.name + "[" + std::to_string(i) + "]");
    }
  }
}

TEST_CASE("A small CNN's gradients match finite differences for every parameter",
          "[nn][gradcheck]") {
  const ImageShape image{2, 6, 5};
  const int classes = 3, batch = 3;
  const std::vector<LayerSpec> specs = {
      {.type = "conv2d", .filters = 3, .kernel = 3, .padding = 1},
      {.type = "relu"},
      {.type = "maxpool", .size = 2},
      {.type = "conv2d", .init = InitKind::kXavier, .filters = 2, .kernel = 2},
      {.type = "flatten"},
      {.type = "dropout", .rate = 0.3},
      {.type = "dense", .units = classes, .init = InitKind::kTorch},
  };
  auto built = Model::Build(specs, static_cast<int>(image.size()), classes, batch, image);
  REQUIRE(built.ok());
  Model& m = **built;
  CHECK(m.Describe() ==
        "conv2d 2x6x5->3x6x5 k3 p1 +relu, maxpool 3x6x5->3x3x2 2, conv2d 3x3x2->2x2x1 k2, "
        "flatten 2x2x1->4, dropout 0.3, dense 4->3");
  m.InitParams(5);
  m.SetStepSeed(77);
  Rng rng(6);
  std::vector<float> x = RandomVector(rng, batch * image.size());
  std::vector<int32_t> y = {0, 2, 1};
  m.TrainStep(x.data(), y.data(), batch, 1.0f / batch);
  std::vector<float> grads(m.grads().begin(), m.grads().end());
  // The training loss with this step's dropout mask.
  auto mean_loss = [&] { return m.TrainStep(x.data(), y.data(), batch, 1.0f).loss_sum / batch; };
  for (const TensorSpec& t : m.layout().tensors()) {
    for (size_t i = 0; i < t.size; ++i) {
      float* p = m.params().data() + t.offset + i;
      CheckClose(grads[t.offset + i], NumericGrad(mean_loss, p),
                 t.name + "[" + std::to_string(i) + "]");
    }
  }
  // Evaluation has no dropout: deterministic whatever the step seed.
  const double eval = m.Evaluate(x.data(), y.data(), batch).loss_sum;
  m.SetStepSeed(78);
  CHECK(m.Evaluate(x.data(), y.data(), batch).loss_sum == eval);
}

TEST_CASE("A CNN for 28x28 images: tensors, shapes and size", "[nn]") {
  std::vector<LayerSpec> specs = {
      {.type = "conv2d", .filters = 32, .kernel = 3, .padding = 1},
      {.type = "relu"},
      {.type = "maxpool", .stride = 2, .size = 2},
      {.type = "conv2d", .filters = 64, .kernel = 3, .padding = 1},
      {.type = "relu"},
      {.type = "maxpool", .size = 2},
      {.type = "flatten"},
      {.type = "dense", .units = 128},
      {.type = "relu"},
      {.type = "dropout", .rate = 0.25},
      {.type = "dense", .units = 10},
  };
  auto m = Model::Build(specs, 784, 10, 64, {1, 28, 28});
  REQUIRE(m.ok());
  const TensorLayout& layout = (*m)->layout();
  CHECK(layout[layout.Find("conv1.weight")].shape == std::vector<int64_t>{3, 3, 1, 32});
  CHECK(layout[layout.Find("conv2.weight")].shape == std::vector<int64_t>{3, 3, 32, 64});
  CHECK(layout[layout.Find("dense1.weight")].shape == std::vector<int64_t>{64 * 7 * 7, 128});
  CHECK(layout.parameter_count() == 320 + 18496 + 401536 + 1290);
  CHECK((*m)->graph().node_count() == 8);
  CHECK((*m)->param_groups().size() == 4);
}

TEST_CASE("Model::Build names the layer and key that does not fit the image", "[nn]") {
  const ImageShape image{1, 5, 5};
  auto build = [&](std::vector<LayerSpec> specs, ImageShape shape) {
    specs.push_back({.type = "flatten"});
    specs.push_back({.type = "dense", .units = 2});
    return Model::Build(specs, 25, 2, 4, shape);
  };
  struct Case {
    const char* name;
    std::vector<LayerSpec> specs;
    ImageShape shape;
    const char* expect;
  };
  const std::vector<Case> cases = {
      {"kernel too large",
       {{.type = "conv2d", .filters = 2, .kernel = 7}},
       image,
       "model.layers[0].kernel is 7, larger than its 1x5x5 input with padding 0"},
      {"padding lets it fit",
       {{.type = "conv2d", .filters = 2, .kernel = 7, .padding = 1}},
       image,
       ""},
      {"zero filters",
       {{.type = "conv2d", .filters = 0, .kernel = 3}},
       image,
       "model.layers[0].filters must be >= 1, got 0"},
      {"padding not below the kernel",
       {{.type = "conv2d", .filters = 1, .kernel = 2, .padding = 2}},
       image,
       "model.layers[0].padding must be >= 0 and < the kernel"},
      {"no image shape",
       {{.type = "conv2d", .filters = 2, .kernel = 3}},
       ImageShape{},
       "model.layers[0] is a conv2d layer, which needs an image, but its input is 25 flat"},
      {"after flatten",
       {{.type = "flatten"}, {.type = "maxpool", .size = 2}},
       image,
       "model.layers[1] is a maxpool layer, which needs an image"},
      {"pool too large",
       {{.type = "conv2d", .filters = 1, .kernel = 3}, {.type = "maxpool", .size = 4}},
       image,
       "model.layers[1].size is 4, larger than its 1x3x3 input"},
      {"dropout rate",
       {{.type = "dropout", .rate = 1.0}},
       image,
       "model.layers[0].rate must be >= 0 and < 1"},
  };
  for (const Case& c : cases) {
    SECTION(c.name) {
      auto m = build(c.specs, c.shape);
      if (std::string(c.expect).empty()) {
        CHECK(m.ok());
      } else {
        REQUIRE_FALSE(m.ok());
        CHECK_THAT(m.status().message(), Catch::Contains(c.expect));
      }
    }
  }
  auto wrong = Model::Build({{"dense", 2}}, 25, 2, 4, {1, 4, 4});
  REQUIRE_FALSE(wrong.ok());
  CHECK_THAT(wrong.status().message(), Catch::Contains("1x4x4 has 16 values"));
}

TEST_CASE("The seed MLP has 235,146 parameters in named tensors", "[nn]") {
  auto m = Model::Build({{"dense", 256}, {"relu"}, {"dense", 128}, {"relu"}, {"dense", 10}}, 784,
                        10, 64);
  REQUIRE(m.ok());
  CHECK((*m)->layout().parameter_count() == 235146);
  CHECK((*m)->graph().node_count() == 3);
  CHECK((*m)->Describe() == "dense 784->256 +relu, dense 256->128 +relu, dense 128->10");
  CHECK((*m)->layout().Find("dense1.weight") == 0);
  CHECK((*m)->layout()[(*m)->layout().Find("dense3.bias")].size == 10);
}

TEST_CASE("The image examples build: their sizes and node names", "[nn]") {
  struct Case {
    const char* file;
    size_t params;
    const char* first_tensor;
  };
  for (const Case& c :
       {Case{"fashion_mlp", 235146, "dense1.weight"}, Case{"fashion_cnn", 421642, "conv1.weight"},
        Case{"fashion_resnet", 17290, "stem.weight"}}) {
    INFO(c.file);
    const std::string dir = std::string(PSTRAIN_SOURCE_DIR) + "/examples";
    const std::string text = testing::ReadFile(dir + "/" + c.file + ".toml");
    // The data are Debian's dataset-fashion-mnist, which setup installs.
    auto job = ParseJobConfig(text, c.file, dir, {});
    INFO(job.status().message());
    REQUIRE(job.ok());
    auto m = Model::Build(job->layers, 784, 10, 64, {1, 28, 28});
    INFO(m.status().message());
    REQUIRE(m.ok());
    CHECK((*m)->layout().parameter_count() == c.params);
    CHECK((*m)->layout()[0].name == c.first_tensor);
  }
}

TEST_CASE("Model::Build rejects layer lists that cannot fit the data", "[nn]") {
  auto wrong_out = Model::Build({{"dense", 7}}, 4, 3, 8);
  REQUIRE_FALSE(wrong_out.ok());
  CHECK_THAT(wrong_out.status().message(), Catch::Contains("3 classes"));
  auto no_dense = Model::Build({{"relu"}}, 3, 3, 8);
  REQUIRE_FALSE(no_dense.ok());
  CHECK_THAT(no_dense.status().message(), Catch::Contains("no dense layer"));
  auto empty = Model::Build({}, 3, 3, 8);
  CHECK_FALSE(empty.ok());
}

TEST_CASE("Initialisation is fixed by the seed", "[nn]") {
  auto a = Model::Build({{"dense", 8}, {"relu"}, {"dense", 2}}, 4, 2, 2);
  auto b = Model::Build({{"dense", 8}, {"relu"}, {"dense", 2}}, 4, 2, 2);
  (*a)->InitParams(9);
  (*b)->InitParams(9);
  CHECK(std::equal((*a)->params().begin(), (*a)->params().end(), (*b)->params().begin()));
  (*b)->InitParams(10);
  CHECK_FALSE(std::equal((*a)->params().begin(), (*a)->params().end(), (*b)->params().begin()));
}

TEST_CASE("Backward reports each layer's gradients as soon as they are final, last first", "[nn]") {
  auto m = Model::Build({{"dense", 8}, {"relu"}, {"dense", 5}, {"relu"}, {"dense", 2}}, 4, 2, 2);
  (*m)->InitParams(1);
  std::vector<float> x(8, 0.5f);
  std::vector<int32_t> y = {0, 1};
  std::vector<std::pair<int, int>> seen;
  (*m)->TrainStep(x.data(), y.data(), 2, 0.5f,
                  [&](int first, int last) { seen.emplace_back(first, last); });
  CHECK(seen == std::vector<std::pair<int, int>>{{4, 6}, {2, 4}, {0, 2}});
}

TEST_CASE("Forward asks for each layer's weights just before it reads them, first first", "[nn]") {
  auto m = Model::Build({{"dense", 8}, {"relu"}, {"dense", 5}, {"relu"}, {"dense", 2}}, 4, 2, 2);
  (*m)->InitParams(1);
  std::vector<float> x(8, 0.5f);
  std::vector<int32_t> y = {0, 1};
  const LossResult plain = (*m)->TrainStep(x.data(), y.data(), 2, 0.5f);
  std::vector<std::pair<int, int>> needed;
  int reported = 0;
  auto grad_ready = [&](int, int) { ++reported; };
  const LossResult hooked =
      (*m)->TrainStep(x.data(), y.data(), 2, 0.5f, grad_ready, [&](int first, int last) {
        needed.emplace_back(first, last);
        return true;
      });
  CHECK(needed == std::vector<std::pair<int, int>>{{0, 2}, {2, 4}, {4, 6}});
  CHECK(reported == 3);
  CHECK(hooked.loss_sum == plain.loss_sum);
  // Saying no stops the step before the layer runs: no gradient reported.
  needed.clear();
  reported = 0;
  (*m)->TrainStep(x.data(), y.data(), 2, 0.5f, grad_ready, [&](int first, int last) {
    needed.emplace_back(first, last);
    return first == 0;
  });
  CHECK(needed == std::vector<std::pair<int, int>>{{0, 2}, {2, 4}});
  CHECK(reported == 0);
}

}  // namespace
}  // namespace pstrain

namespace pstrain {
namespace {

// A small sparse data set: 5 samples over 50 features, some shared.
Dataset TinySparse() {
  auto d = ParseLibsvmDataset(
      "tiny", "1 3:1 7:0.5 40:2\n0 3:1 9:1\n1 7:1 9:-1 12:1 49:1\n0 12:3\n1 3:1\n", {50});
  REQUIRE(d.ok());
  return std::move(*d);
}

TEST_CASE("GatherSparse finds a batch's distinct features and where each entry's row is", "[nn]") {
  const Dataset d = TinySparse();
  auto m = Model::Build({{.type = "embedding", .dim = 2}, {.type = "dense", .units = 1}}, d.dim, 2,
                        4, {}, {.enabled = true, .max_active = d.max_active});
  REQUIRE(m.ok());
  const std::vector<uint32_t> ids = {2, 0, 4};
  (*m)->GatherSparse(d, ids.data(), 3);
  const std::vector<uint64_t> rows((*m)->rows().begin(), (*m)->rows().end());
  CHECK(rows == std::vector<uint64_t>{3, 7, 9, 12, 40, 49});
  CHECK((*m)->tables().size() == 1);
  CHECK((*m)->binary());
  CHECK((*m)->sparse());
}

TEST_CASE("A sparse wide-and-deep model's gradients match finite differences, rows included",
          "[nn][gradcheck]") {
  const Dataset d = TinySparse();
  const std::vector<LayerSpec> specs = {{.type = "embedding", .dim = 3},
                                        {.type = "dense", .units = 4},
                                        {.type = "relu"},
                                        {.type = "dense", .units = 1}};
  auto built = Model::Build(specs, d.dim, 2, 5, {},
                            {.enabled = true, .max_active = d.max_active, .wide = true});
  REQUIRE(built.ok());
  Model& m = **built;
  CHECK(m.Describe() == "embedding 50x3, dense 3->4 +relu, dense 4->1");
  m.InitParams(3);
  const std::vector<uint32_t> ids = {0, 1, 2, 3, 4};
  m.GatherSparse(d, ids.data(), 5);
  REQUIRE(m.tables().size() == 2);
  Rng rng(9);
  for (RowBlock& t : m.tables()) {
    for (size_t i = 0; i < m.rows().size() * t.dim; ++i) t.values[i] = rng.Uniform(-0.5f, 0.5f);
  }
  const int32_t* labels = d.labels.data();
  m.TrainStep(nullptr, labels, 5, 1.0f / 5);
  std::vector<float> grads(m.grads().begin(), m.grads().end());
  std::vector<std::vector<float>> row_grads;
  for (RowBlock& t : m.tables()) {
    row_grads.emplace_back(t.grads.data(), t.grads.data() + m.rows().size() * t.dim);
  }
  auto mean_loss = [&] { return m.TrainStep(nullptr, labels, 5, 1.0f).loss_sum / 5; };
  for (const TensorSpec& t : m.layout().tensors()) {
    for (size_t i = 0; i < t.size; ++i) {
      CheckClose(grads[t.offset + i], NumericGrad(mean_loss, m.params().data() + t.offset + i),
                 t.name + "[" + std::to_string(i) + "]");
    }
  }
  for (size_t k = 0; k < m.tables().size(); ++k) {
    RowBlock& t = m.tables()[k];
    for (size_t i = 0; i < m.rows().size() * t.dim; ++i) {
      CheckClose(row_grads[k][i], NumericGrad(mean_loss, t.values.data() + i),
                 "table " + std::to_string(t.table) + " value " + std::to_string(i));
    }
  }
  // Scores are probabilities and agree with the loss.
  std::vector<float> scores(5);
  const LossResult r = m.EvaluateBatch(nullptr, labels, 5, scores.data());
  double loss = 0;
  for (int i = 0; i < 5; ++i) loss -= std::log(labels[i] ? scores[i] : 1 - scores[i]);
  CHECK(r.loss_sum == Approx(loss).epsilon(1e-4));
}

TEST_CASE("Model::Build places embeddings first, on sparse data only", "[nn]") {
  const SparseOptions sparse{.enabled = true, .max_active = 3};
  auto dense_first = Model::Build({{"dense", 1}}, 100, 2, 4, {}, sparse);
  CHECK_THAT(dense_first.status().message(),
             Catch::Contains("model.layers[0].type is \"dense\" but sparse (LibSVM) data starts "
                             "with an embedding layer"));
  auto on_dense = Model::Build({{.type = "embedding", .dim = 2}, {"dense", 2}}, 10, 2, 4);
  CHECK_THAT(on_dense.status().message(),
             Catch::Contains("model.layers[0] is an embedding layer, which only sparse"));
  auto second =
      Model::Build({{.type = "embedding", .dim = 2}, {.type = "embedding", .dim = 2}, {"dense", 1}},
                   100, 2, 4, {}, sparse);
  CHECK_THAT(second.status().message(), Catch::Contains("model.layers[1] is an embedding layer"));
  auto wide_multiclass = Model::Build({{.type = "embedding", .dim = 2}, {"dense", 3}}, 100, 3, 4,
                                      {}, {.enabled = true, .max_active = 3, .wide = true});
  CHECK_THAT(wide_multiclass.status().message(),
             Catch::Contains("model.wide needs sparse (LibSVM) data and a model with one output"));
  auto two_class = Model::Build({{"dense", 3}}, 4, 2, 4);
  CHECK_THAT(two_class.status().message(), Catch::Contains("(or 1, for the logistic loss)"));
}

}  // namespace
}  // namespace pstrain
