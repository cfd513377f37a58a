#include "common/nn/layers.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <vector>

#include "common/nn/model.h"

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

// Binds `layer` to fresh arrays, then checks its input gradient and (when
// it has any) its parameter gradients against central differences of
// L = sum(y * r) for a random r.
void CheckLayerGradients(Layer& layer, int batch, uint64_t seed, bool training = false) {
  TensorLayout layout;
  layer.DeclareParams("l", &layout);
  std::vector<float> params(layout.total_floats()), grads(layout.total_floats());
  layer.Bind(layout, params.data(), grads.data());
  layer.Reserve(batch);
  layer.SetMode(training, seed);
  Rng rng(seed);
  layer.InitParams(rng);
  // Biases start at zero; random ones exercise their gradient too.
  for (float& p : params) p += rng.Uniform(-0.1f, 0.1f);
  std::vector<float> x = RandomVector(rng, static_cast<size_t>(batch) * layer.in_dim());
  std::vector<float> r = RandomVector(rng, static_cast<size_t>(batch) * layer.out_dim());
  std::vector<float> y(r.size()), dy(r), dx(x.size());
  auto loss = [&] {
    std::vector<float> tmp(r.size());
    layer.Forward(x.data(), tmp.data(), batch);
    double sum = 0;
    for (size_t i = 0; i < tmp.size(); ++i) sum += static_cast<double>(tmp[i]) * r[i];
    return sum;
  };
  layer.Forward(x.data(), y.data(), batch);
  layer.Backward(x.data(), y.data(), dy.data(), dx.data(), batch);
  const std::vector<float> analytic(grads);
  for (size_t i = 0; i < x.size(); ++i) {
    CheckClose(dx[i], NumericGrad(loss, &x[i]),
               layer.Describe() + " dx[" + std::to_string(i) + "]");
  }
  for (const TensorSpec& t : layout.tensors()) {
    for (size_t i = 0; i < t.size; ++i) {
      CheckClose(analytic[t.offset + i], NumericGrad(loss, &params[t.offset + i]),
                 layer.Describe() + " " + t.name + "[" + std::to_string(i) + "]");
    }
  }
}

TEST_CASE("Conv2D gradients match finite differences", "[common][gradcheck]") {
  struct Case {
    ImageShape in;
    ConvOptions o;
    bool relu;
  };
  const std::vector<Case> cases = {
      {{1, 5, 5}, {2, 3, 1, 0}, false},  // valid convolution
      {{2, 5, 4}, {3, 3, 1, 1}, true},   // padding, fused ReLU, two channels
      {{3, 6, 5}, {2, 3, 2, 1}, false},  // stride 2, uneven size
      {{2, 4, 4}, {2, 2, 2, 0}, true},   // kernel = stride
  };
  for (const Case& c : cases) {
    Conv2DLayer conv(c.in, c.o, c.relu, InitKind::kHe);
    CheckLayerGradients(conv, 3, 21);
  }
}

// Direct convolution of HWC images, for comparison.
std::vector<float> NaiveConv(const std::vector<float>& x, const float* w, const float* b,
                             ImageShape in, const ConvOptions& o, int batch) {
  const ImageShape out = Conv2DLayer::OutputShape(in, o);
  std::vector<float> y(static_cast<size_t>(batch) * out.size());
  for (int n = 0; n < batch; ++n) {
    for (int oh = 0; oh < out.height; ++oh) {
      for (int ow = 0; ow < out.width; ++ow) {
        for (int f = 0; f < o.filters; ++f) {
          double sum = b[f];
          for (int kh = 0; kh < o.kernel; ++kh) {
            for (int kw = 0; kw < o.kernel; ++kw) {
              const int ih = oh * o.stride - o.padding + kh, iw = ow * o.stride - o.padding + kw;
              if (ih < 0 || iw < 0 || ih >= in.height || iw >= in.width) continue;
              for (int c = 0; c < in.channels; ++c) {
                sum +=
                    static_cast<double>(x[n * in.size() + (ih * in.width + iw) * in.channels + c]) *
                    w[((kh * o.kernel + kw) * in.channels + c) * o.filters + f];
              }
            }
          }
          y[n * out.size() + (oh * out.width + ow) * o.filters + f] = static_cast<float>(sum);
        }
      }
    }
  }
  return y;
}

TEST_CASE("Conv2D computes the convolution of HWC images, whole batch or in chunks", "[common]") {
  // 64x64 images: the im2col matrix of 230 samples passes 32 MiB, so the
  // layer works in chunks; stride 2 fits them in one. Samples one by one
  // must agree.
  const ImageShape in{2, 64, 64};
  const int stride = GENERATE(1, 2);
  const ConvOptions o{3, 3, stride, 1};
  const int batch = 230;
  Conv2DLayer conv(in, o, false, InitKind::kHe);
  TensorLayout layout;
  conv.DeclareParams("conv1", &layout);
  CHECK(layout[0].name == "conv1.weight");
  CHECK(layout[0].shape == std::vector<int64_t>{3, 3, 2, 3});
  CHECK(layout[1].name == "conv1.bias");
  std::vector<float> params(layout.total_floats()), grads(layout.total_floats());
  conv.Bind(layout, params.data(), grads.data());
  conv.Reserve(batch);
  CHECK(conv.chunk() == (stride == 1 ? 113 : batch));
  Rng rng(4);
  conv.InitParams(rng);
  for (size_t i = 0; i < layout[1].size; ++i) params[layout[1].offset + i] = 0.1f * (i + 1);
  std::vector<float> x = RandomVector(rng, batch * in.size());
  std::vector<float> y(batch * conv.out_dim());
  conv.Forward(x.data(), y.data(), batch);
  const std::vector<float> expect = NaiveConv(x, params.data() + layout[0].offset,
                                              params.data() + layout[1].offset, in, o, batch);
  double worst = 0;
  for (size_t i = 0; i < y.size(); ++i) worst = std::max<double>(worst, std::abs(y[i] - expect[i]));
  CHECK(worst < 1e-4);

  // Gradients of the whole batch equal the sums over single samples.
  std::vector<float> dy = RandomVector(rng, y.size()), dy_copy(dy), dx(x.size());
  conv.Backward(x.data(), y.data(), dy.data(), dx.data(), batch);
  const std::vector<float> whole(grads);
  std::vector<double> summed(grads.size());
  std::vector<float> dx_one(in.size()), y_one(conv.out_dim());
  double worst_dx = 0;
  for (int n = 0; n < batch; ++n) {
    const float* xn = x.data() + n * in.size();
    conv.Forward(xn, y_one.data(), 1);
    conv.Backward(xn, y_one.data(), dy_copy.data() + n * conv.out_dim(), dx_one.data(), 1);
    for (size_t i = 0; i < grads.size(); ++i) summed[i] += grads[i];
    for (int64_t i = 0; i < in.size(); ++i) {
      worst_dx = std::max<double>(worst_dx, std::abs(dx_one[i] - dx[n * in.size() + i]));
    }
  }
  CHECK(worst_dx < 1e-5);
  for (size_t i = 0; i < grads.size(); ++i) {
    INFO("gradient " << i);
    CHECK(whole[i] == Approx(summed[i]).epsilon(1e-4).margin(1e-3));
  }
}

TEST_CASE("MaxPool2D takes window maxima per channel and routes gradients to them",
          "[common][gradcheck]") {
  // One 4x4 image of two channels: channel 0 is 0..15, channel 1 its negation.
  std::vector<float> x(32);
  for (int i = 0; i < 16; ++i) {
    x[2 * i] = static_cast<float>(i);
    x[2 * i + 1] = static_cast<float>(-i);
  }
  MaxPool2DLayer pool({2, 4, 4}, 2, 2);
  REQUIRE(pool.out_shape() == ImageShape{2, 2, 2});
  pool.Reserve(1);
  std::vector<float> y(8);
  pool.Forward(x.data(), y.data(), 1);
  CHECK(y == std::vector<float>{5, 0, 7, -2, 13, -8, 15, -10});
  std::vector<float> dy = {1, 2, 3, 4, 5, 6, 7, 8}, dx(32);
  pool.Backward(x.data(), y.data(), dy.data(), dx.data(), 1);
  CHECK(dx[2 * 5] == 1);
  CHECK(dx[2 * 0 + 1] == 2);
  CHECK(dx[2 * 15] == 7);
  double total = 0;
  for (float v : dx) total += v;
  CHECK(total == 36);

  MaxPool2DLayer overlapping({3, 5, 5}, 3, 2);
  CheckLayerGradients(overlapping, 2, 8);
  MaxPool2DLayer uneven({2, 5, 4}, 2, 2);
  CHECK(uneven.out_shape() == ImageShape{2, 2, 2});
  CheckLayerGradients(uneven, 2, 9);
}

TEST_CASE("Flatten keeps the values and passes the gradient through", "[common][gradcheck]") {
  FlattenLayer flatten({2, 3, 2});
  CHECK(flatten.out_dim() == 12);
  CHECK(flatten.Describe() == "flatten 2x3x2->12");
  CheckLayerGradients(flatten, 2, 5);
}

TEST_CASE("Dropout: seeded inverted masks in training, the identity in evaluation",
          "[common][gradcheck]") {
  const int dim = 1000, batch = 4;
  DropoutLayer drop(dim, 0.25, 7);
  drop.Reserve(batch);
  std::vector<float> x(dim * batch, 2.0f), y(x.size()), again(x.size());
  drop.SetMode(true, 42);
  drop.Forward(x.data(), y.data(), batch);
  size_t zeros = 0;
  for (float v : y) {
    if (v == 0.0f) {
      ++zeros;
    } else {
      CHECK(v == Approx(2.0f / 0.75f));
    }
  }
  CHECK(zeros > 0.22 * y.size());
  CHECK(zeros < 0.28 * y.size());
  drop.Forward(x.data(), again.data(), batch);
  CHECK(again == y);  // the same step seed, the same mask
  drop.SetMode(true, 43);
  drop.Forward(x.data(), again.data(), batch);
  CHECK(again != y);
  drop.SetMode(false, 43);
  drop.Forward(x.data(), again.data(), batch);
  CHECK(again == x);

  DropoutLayer small(6, 0.5, 1);
  CheckLayerGradients(small, 3, 12, /*training=*/true);
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

TEST_CASE("A small CNN's gradients match finite differences for every parameter",
          "[common][gradcheck]") {
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

TEST_CASE("A CNN for 28x28 images: tensors, shapes and size", "[common]") {
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
  CHECK((*m)->layer_count() == 8);
}

TEST_CASE("Model::Build names the layer and key that does not fit the image", "[common]") {
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

TEST_CASE("Forward asks for each layer's weights just before it reads them, first first",
          "[common]") {
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

TEST_CASE("GatherSparse finds a batch's distinct features and where each entry's row is",
          "[common]") {
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
          "[common][gradcheck]") {
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

TEST_CASE("Logistic loss: values, accuracy, gradient, extreme logits", "[common][gradcheck]") {
  std::vector<float> z = {0.3f, -1.2f, 2.0f};
  std::vector<int32_t> y = {1, 1, 0};
  std::vector<float> dz(3);
  const LossResult r = SigmoidCrossEntropy(z.data(), y.data(), 3, dz.data(), 1.0f / 3);
  const double want =
      std::log1p(std::exp(-0.3)) + std::log1p(std::exp(1.2)) + std::log1p(std::exp(2.0));
  CHECK(r.loss_sum == Approx(want));
  CHECK(r.correct == 1);
  auto loss = [&] { return SigmoidCrossEntropy(z.data(), y.data(), 3, nullptr, 0).loss_sum / 3; };
  for (size_t i = 0; i < z.size(); ++i) {
    CheckClose(dz[i], NumericGrad(loss, &z[i], 1e-3), "dz[" + std::to_string(i) + "]");
  }
  std::vector<float> big = {1000.0f, -1000.0f};
  std::vector<int32_t> y2 = {0, 1};
  const LossResult e = SigmoidCrossEntropy(big.data(), y2.data(), 2, dz.data(), 1.0f);
  CHECK(e.loss_sum == Approx(2000.0));
  CHECK(dz[0] == Approx(1.0));
  CHECK(dz[1] == Approx(-1.0));
}

TEST_CASE("Model::Build places embeddings first, on sparse data only", "[common]") {
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
