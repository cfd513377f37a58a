#include "common/layers.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <vector>

#include "common/model.h"

namespace pstrain {
namespace {

std::vector<float> RandomVector(Rng& rng, size_t n, float scale = 1.0f) {
  std::vector<float> v(n);
  for (float& x : v) x = rng.Uniform(-scale, scale);
  return v;
}

// Central difference in double of f at x[i].
template <typename F>
double NumericGrad(F&& f, float* x, double eps = 1e-3) {
  const float saved = *x;
  *x = static_cast<float>(saved + eps);
  const double up = f();
  *x = static_cast<float>(saved - eps);
  const double down = f();
  *x = saved;
  return (up - down) / (2 * eps);
}

void CheckClose(double analytic, double numeric, const std::string& what) {
  INFO(what << ": analytic " << analytic << " numeric " << numeric);
  CHECK(std::abs(analytic - numeric) <= 2e-3 + 2e-2 * std::abs(numeric));
}

TEST_CASE("Model gradients match finite differences for every parameter", "[common][gradcheck]") {
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

TEST_CASE("Dense input gradient matches finite differences, fused ReLU or not",
          "[common][gradcheck]") {
  for (bool fuse : {false, true}) {
    const int in = 5, out = 4, batch = 3;
    DenseLayer layer(in, out, fuse, InitKind::kTorch);
    TensorLayout layout;
    layer.DeclareParams("d", &layout);
    std::vector<float> params(layout.total_floats()), grads(layout.total_floats());
    layer.Bind(layout, params.data(), grads.data());
    Rng rng(5);
    layer.InitParams(rng);
    std::vector<float> x = RandomVector(rng, batch * in), r = RandomVector(rng, batch * out);
    std::vector<float> y(batch * out), dy(r), dx(batch * in);
    // L = sum(y * r): dL/dy = r.
    auto loss = [&] {
      std::vector<float> tmp(batch * out);
      layer.Forward(x.data(), tmp.data(), batch);
      double s = 0;
      for (size_t i = 0; i < tmp.size(); ++i) s += static_cast<double>(tmp[i]) * r[i];
      return s;
    };
    layer.Forward(x.data(), y.data(), batch);
    layer.Backward(x.data(), y.data(), dy.data(), dx.data(), batch);
    for (size_t i = 0; i < x.size(); ++i) {
      CheckClose(dx[i], NumericGrad(loss, &x[i], 1e-3), "dx[" + std::to_string(i) + "]");
    }
  }
}

TEST_CASE("ReLU passes gradient only where its input is positive", "[common][gradcheck]") {
  ReluLayer relu(4);
  std::vector<float> x = {-1.0f, 2.0f, 0.5f, -0.25f}, y(4), dy = {1, 2, 3, 4}, dx(4);
  relu.Forward(x.data(), y.data(), 1);
  CHECK(y == std::vector<float>{0, 2, 0.5f, 0});
  relu.Backward(x.data(), y.data(), dy.data(), dx.data(), 1);
  CHECK(dx == std::vector<float>{0, 2, 3, 0});
}

TEST_CASE("Softmax cross-entropy: loss, accuracy and gradient", "[common][gradcheck]") {
  std::vector<float> z = {1.0f, 2.0f, 0.5f, 3.0f, -1.0f, 0.0f};
  std::vector<int32_t> y = {1, 2};
  std::vector<float> dz(6);
  LossResult r = SoftmaxCrossEntropy(z.data(), y.data(), 2, 3, dz.data(), 0.5f);
  const double l0 = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(0.5)) - 2.0;
  const double l1 = std::log(std::exp(3.0) + std::exp(-1.0) + std::exp(0.0)) - 0.0;
  CHECK(r.loss_sum == Approx(l0 + l1));
  CHECK(r.correct == 1);
  auto loss = [&] {
    return SoftmaxCrossEntropy(z.data(), y.data(), 2, 3, nullptr, 0).loss_sum * 0.5;
  };
  for (size_t i = 0; i < z.size(); ++i) {
    CheckClose(dz[i], NumericGrad(loss, &z[i], 1e-3), "dz[" + std::to_string(i) + "]");
  }
  // Extreme logits stay finite.
  std::vector<float> big = {1000.0f, -1000.0f};
  std::vector<int32_t> y0 = {1};
  LossResult e = SoftmaxCrossEntropy(big.data(), y0.data(), 1, 2, dz.data(), 1.0f);
  CHECK(std::isfinite(e.loss_sum));
  CHECK(e.loss_sum == Approx(2000.0));
}

TEST_CASE("The seed MLP has 235,146 parameters in named tensors", "[common]") {
  auto m = Model::Build({{"dense", 256}, {"relu"}, {"dense", 128}, {"relu"}, {"dense", 10}}, 784,
                        10, 64);
  REQUIRE(m.ok());
  CHECK((*m)->layout().parameter_count() == 235146);
  CHECK((*m)->layer_count() == 3);
  CHECK((*m)->Describe() == "dense 784->256 +relu, dense 256->128 +relu, dense 128->10");
  CHECK((*m)->layout().Find("dense1.weight") == 0);
  CHECK((*m)->layout()[(*m)->layout().Find("dense3.bias")].size == 10);
}

TEST_CASE("Model::Build rejects layer lists that cannot fit the data", "[common]") {
  auto wrong_out = Model::Build({{"dense", 7}}, 4, 3, 8);
  REQUIRE_FALSE(wrong_out.ok());
  CHECK_THAT(wrong_out.status().message(), Catch::Contains("3 classes"));
  auto no_dense = Model::Build({{"relu"}}, 3, 3, 8);
  REQUIRE_FALSE(no_dense.ok());
  CHECK_THAT(no_dense.status().message(), Catch::Contains("no dense layer"));
  auto empty = Model::Build({}, 3, 3, 8);
  CHECK_FALSE(empty.ok());
}

TEST_CASE("Initialisation is fixed by the seed", "[common]") {
  auto a = Model::Build({{"dense", 8}, {"relu"}, {"dense", 2}}, 4, 2, 2);
  auto b = Model::Build({{"dense", 8}, {"relu"}, {"dense", 2}}, 4, 2, 2);
  (*a)->InitParams(9);
  (*b)->InitParams(9);
  CHECK(std::equal((*a)->params().begin(), (*a)->params().end(), (*b)->params().begin()));
  (*b)->InitParams(10);
  CHECK_FALSE(std::equal((*a)->params().begin(), (*a)->params().end(), (*b)->params().begin()));
}

TEST_CASE("Backward reports each layer's gradients as soon as they are final, last first",
          "[common]") {
  auto m = Model::Build({{"dense", 8}, {"relu"}, {"dense", 5}, {"relu"}, {"dense", 2}}, 4, 2, 2);
  (*m)->InitParams(1);
  std::vector<float> x(8, 0.5f);
  std::vector<int32_t> y = {0, 1};
  std::vector<std::pair<int, int>> seen;
  (*m)->TrainStep(x.data(), y.data(), 2, 0.5f,
                  [&](int first, int last) { seen.emplace_back(first, last); });
  CHECK(seen == std::vector<std::pair<int, int>>{{4, 6}, {2, 4}, {0, 2}});
}

}  // namespace
}  // namespace pstrain
