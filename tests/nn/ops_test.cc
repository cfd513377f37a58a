// Each op's kernels: what they compute, and their gradients against finite
// differences (gradcheck.h), one test case per op.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <vector>

#include "common/nn/loss.h"
#include "common/nn/ops/activations.h"
#include "common/nn/ops/add.h"
#include "common/nn/ops/conv2d.h"
#include "common/nn/ops/dense.h"
#include "common/nn/ops/registry.h"
#include "tests/nn/gradcheck.h"

namespace pstrain {
namespace {

// The op the registry makes of `spec` over inputs of `shapes`.
std::unique_ptr<Op> Make(const LayerSpec& spec, std::vector<ValueShape> shapes) {
  OpContext ctx{spec, "model.layers[0]", std::move(shapes), nullptr, nullptr, 0};
  const OpType* type = FindOpType(spec.type);
  REQUIRE(type != nullptr);
  auto op = type->make(ctx);
  INFO(op.status().message());
  REQUIRE(op.ok());
  return std::move(*op);
}

ValueShape Flat(int64_t n) { return ValueShape::Flat(n); }
ValueShape Image(int c, int h, int w) { return ValueShape::Of({c, h, w}); }

TEST_CASE("dense: gradients match finite differences, fused ReLU or not", "[nn][gradcheck]") {
  for (InitKind init : {InitKind::kHe, InitKind::kTorch, InitKind::kXavier}) {
    auto op = Make({.type = "dense", .units = 4, .init = init}, {Flat(5)});
    CheckOpGradients(*op, {Flat(5)}, 3, 5);
    auto fused = std::make_unique<DenseOp>(5, 4, init);
    fused->FuseRelu();
    CHECK(fused->Describe() == "dense 5->4 +relu");
    CheckOpGradients(*fused, {Flat(5)}, 3, 6);
  }
}

TEST_CASE("conv2d: gradients match finite differences", "[nn][gradcheck]") {
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
    Conv2DOp conv(c.in, c.o, InitKind::kHe);
    if (c.relu) conv.FuseRelu();
    CheckOpGradients(conv, {ValueShape::Of(c.in)}, 3, 21);
  }
}

// Direct convolution of HWC images, for comparison.
std::vector<float> NaiveConv(const std::vector<float>& x, const float* w, const float* b,
                             ImageShape in, const ConvOptions& o, int batch) {
  const ImageShape out = ConvOutputShape(in, o);
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

TEST_CASE("conv2d computes the convolution of HWC images, whole batch or in chunks", "[nn]") {
  // 64x64 images: the im2col matrix of 230 samples passes 32 MiB, so the
  // op works in chunks; stride 2 fits them in one. Samples one by one must
  // agree.
  const ImageShape in{2, 64, 64};
  const int stride = GENERATE(1, 2);
  const ConvOptions o{3, 3, stride, 1};
  const int batch = 230;
  Conv2DOp conv(in, o, InitKind::kHe);
  REQUIRE(conv.Params().size() == 2);
  CHECK(conv.Params()[0].shape == std::vector<int64_t>{3, 3, 2, 3});
  std::vector<float> scratch(conv.ScratchBytes(batch) / 4);
  CHECK(conv.chunk() == (stride == 1 ? 113 : batch));
  Rng rng(4);
  std::vector<float> w(3 * 3 * 2 * 3), b(3), dw(w.size()), db(3);
  conv.InitParams(rng, {w.data(), b.data()});
  for (size_t i = 0; i < b.size(); ++i) b[i] = 0.1f * (i + 1);
  const int64_t out_size = conv.output().size;
  std::vector<float> x = RandomVector(rng, batch * in.size());
  std::vector<float> y(batch * out_size);
  OpCall c;
  c.batch = batch;
  c.in = {x.data()};
  c.out = y.data();
  c.w = {w.data(), b.data()};
  c.dw = {dw.data(), db.data()};
  c.dw_add = {0, 0};
  c.din_add = {0};
  c.scratch = reinterpret_cast<std::byte*>(scratch.data());
  conv.Forward(c);
  const std::vector<float> expect = NaiveConv(x, w.data(), b.data(), in, o, batch);
  double worst = 0;
  for (size_t i = 0; i < y.size(); ++i) worst = std::max<double>(worst, std::abs(y[i] - expect[i]));
  CHECK(worst < 1e-4);

  // Gradients of the whole batch equal the sums over single samples.
  std::vector<float> dy = RandomVector(rng, y.size()), dy_copy(dy), dx(x.size());
  c.dout = dy.data();
  c.din = {dx.data()};
  conv.Backward(c);
  const std::vector<float> whole_w(dw), whole_b(db);
  std::fill(dw.begin(), dw.end(), 0.0f);
  std::fill(db.begin(), db.end(), 0.0f);
  std::vector<float> dx_one(in.size()), y_one(out_size);
  double worst_dx = 0;
  for (int n = 0; n < batch; ++n) {
    std::fill(dx_one.begin(), dx_one.end(), 0.0f);
    OpCall one = c;
    one.batch = 1;
    one.dw_add = {1, 1};
    one.in = {x.data() + n * in.size()};
    one.out = y_one.data();
    one.dout = dy_copy.data() + n * out_size;
    one.din = {dx_one.data()};
    conv.Forward(one);
    conv.Backward(one);  // adds this sample's share into dw, db
    for (int64_t i = 0; i < in.size(); ++i) {
      worst_dx = std::max<double>(worst_dx, std::abs(dx_one[i] - dx[n * in.size() + i]));
    }
  }
  CHECK(worst_dx < 1e-5);
  for (size_t i = 0; i < dw.size(); ++i) {
    INFO("weight gradient " << i);
    CHECK(whole_w[i] == Approx(dw[i]).epsilon(1e-4).margin(1e-3));
  }
  for (size_t i = 0; i < db.size(); ++i) CHECK(whole_b[i] == Approx(db[i]).epsilon(1e-4));
}

TEST_CASE("maxpool takes window maxima per channel and routes gradients to them",
          "[nn][gradcheck]") {
  // One 4x4 image of two channels: channel 0 is 0..15, channel 1 its negation.
  std::vector<float> x(32);
  for (int i = 0; i < 16; ++i) {
    x[2 * i] = static_cast<float>(i);
    x[2 * i + 1] = static_cast<float>(-i);
  }
  auto pool = Make({.type = "maxpool", .stride = 2, .size = 2}, {Image(2, 4, 4)});
  REQUIRE(pool->output() == Image(2, 2, 2));
  std::vector<int32_t> argmax(8);
  std::vector<float> y(8);
  OpCall c;
  c.batch = 1;
  c.in = {x.data()};
  c.out = y.data();
  c.scratch = reinterpret_cast<std::byte*>(argmax.data());
  c.din_add = {0};
  REQUIRE(pool->ScratchBytes(1) == argmax.size() * 4);
  pool->Forward(c);
  CHECK(y == std::vector<float>{5, 0, 7, -2, 13, -8, 15, -10});
  std::vector<float> dy = {1, 2, 3, 4, 5, 6, 7, 8}, dx(32);
  c.dout = dy.data();
  c.din = {dx.data()};
  pool->Backward(c);
  CHECK(dx[2 * 5] == 1);
  CHECK(dx[2 * 0 + 1] == 2);
  CHECK(dx[2 * 15] == 7);
  double total = 0;
  for (float v : dx) total += v;
  CHECK(total == 36);

  auto overlapping = Make({.type = "maxpool", .stride = 2, .size = 3}, {Image(3, 5, 5)});
  CheckOpGradients(*overlapping, {Image(3, 5, 5)}, 2, 8);
  auto uneven = Make({.type = "maxpool", .size = 2}, {Image(2, 5, 4)});
  CHECK(uneven->output() == Image(2, 2, 2));
  CheckOpGradients(*uneven, {Image(2, 5, 4)}, 2, 9);
}

TEST_CASE("flatten keeps the values and passes the gradient through", "[nn][gradcheck]") {
  auto flatten = Make({.type = "flatten"}, {Image(2, 3, 2)});
  CHECK(flatten->output() == Flat(12));
  CHECK(flatten->Describe() == "flatten 2x3x2->12");
  CheckOpGradients(*flatten, {Image(2, 3, 2)}, 2, 5);
}

TEST_CASE("dropout: seeded inverted masks in training, the identity in evaluation",
          "[nn][gradcheck]") {
  const int dim = 1000, batch = 4;
  auto drop = Make({.type = "dropout", .rate = 0.25}, {Flat(dim)});
  std::vector<float> mask(drop->ScratchBytes(batch) / 4);
  std::vector<float> x(dim * batch, 2.0f), y(x.size()), again(x.size());
  OpCall c;
  c.batch = batch;
  c.in = {x.data()};
  c.out = y.data();
  c.scratch = reinterpret_cast<std::byte*>(mask.data());
  c.training = true;
  c.step_seed = 42;
  c.stream = 7;
  drop->Forward(c);
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
  c.out = again.data();
  drop->Forward(c);
  CHECK(again == y);  // the same step seed and stream, the same mask
  c.step_seed = 43;
  drop->Forward(c);
  CHECK(again != y);
  c.step_seed = 42;
  c.stream = 8;
  drop->Forward(c);
  CHECK(again != y);
  c.training = false;
  drop->Forward(c);
  CHECK(again == x);

  auto small = Make({.type = "dropout", .rate = 0.5}, {Flat(6)});
  CheckOpGradients(*small, {Flat(6)}, 3, 12, /*training=*/true);
  CheckOpGradients(*small, {Flat(6)}, 3, 12, /*training=*/false);
}

TEST_CASE("relu passes gradient only where its input is positive", "[nn][gradcheck]") {
  std::vector<float> x = {-1.0f, 2.0f, 0.5f, -0.25f}, y(4), dy = {1, 2, 3, 4}, dx(4, 1.0f);
  ReluForward(x.data(), y.data(), 4);
  CHECK(y == std::vector<float>{0, 2, 0.5f, 0});
  ReluBackward(x.data(), y.data(), dy.data(), dx.data(), 4, /*add=*/true);
  CHECK(dx == std::vector<float>{1, 3, 4, 1});  // added to what was there
  ReluBackward(x.data(), y.data(), dy.data(), dx.data(), 4, /*add=*/false);
  CHECK(dx == std::vector<float>{0, 2, 3, 0});  // the first writer writes
  auto relu = Make({.type = "relu"}, {Flat(7)});
  CheckOpGradients(*relu, {Flat(7)}, 3, 2);
}

TEST_CASE("gelu is x Phi(x) and its gradient matches finite differences", "[nn][gradcheck]") {
  std::vector<float> x = {-3.0f, -1.0f, 0.0f, 0.5f, 2.0f}, y(5);
  GeluForward(x.data(), y.data(), 5);
  for (size_t i = 0; i < x.size(); ++i) {
    const double want = 0.5 * x[i] * (1 + std::erf(x[i] / std::sqrt(2.0)));
    CHECK(y[i] == Approx(want).margin(1e-6));
  }
  CHECK(y[4] == Approx(1.9544997).epsilon(1e-6));  // torch.nn.functional.gelu(2.0)
  auto gelu = Make({.type = "gelu"}, {Image(2, 2, 3)});
  CHECK(gelu->output() == Image(2, 2, 3));
  CheckOpGradients(*gelu, {Image(2, 2, 3)}, 2, 3);
}

TEST_CASE("sigmoid and tanh: values and gradients", "[nn][gradcheck]") {
  std::vector<float> x = {-2.0f, 0.0f, 3.0f}, y(3);
  SigmoidForward(x.data(), y.data(), 3);
  CHECK(y[1] == 0.5f);
  CHECK(y[2] == Approx(1 / (1 + std::exp(-3.0))));
  TanhForward(x.data(), y.data(), 3);
  CHECK(y[0] == Approx(std::tanh(-2.0)));
  auto sigmoid = Make({.type = "sigmoid"}, {Flat(6)});
  CheckOpGradients(*sigmoid, {Flat(6)}, 3, 4);
  auto tanh_op = Make({.type = "tanh"}, {Flat(6)});
  CheckOpGradients(*tanh_op, {Flat(6)}, 3, 5);
}

TEST_CASE("add sums its inputs and hands each the whole gradient", "[nn][gradcheck]") {
  auto add = Make({.type = "add"}, {Image(2, 3, 3), Image(2, 3, 3), Image(2, 3, 3)});
  CHECK(add->output() == Image(2, 3, 3));
  CheckOpGradients(*add, {Image(2, 3, 3), Image(2, 3, 3), Image(2, 3, 3)}, 2, 6);
  OpContext mismatch{LayerSpec{.type = "add"},
                     "model.layers[4]",
                     {Image(2, 3, 3), Image(3, 3, 3)},
                     nullptr,
                     nullptr,
                     0};
  auto bad = MakeAdd(mismatch);
  REQUIRE_FALSE(bad.ok());
  CHECK_THAT(bad.status().message(),
             Catch::Contains("model.layers[4]: an add needs inputs of one shape, but input 0 is "
                             "2x3x3 and input 1 is 3x3x3"));
}

TEST_CASE("concat joins flat values end to end and images channel by channel", "[nn][gradcheck]") {
  auto flat = Make({.type = "concat"}, {Flat(3), Flat(2)});
  CHECK(flat->output() == Flat(5));
  std::vector<float> a = {1, 2, 3, 4, 5, 6}, b = {7, 8, 9, 10}, y(10);
  OpCall c;
  c.batch = 2;
  c.in = {a.data(), b.data()};
  c.out = y.data();
  flat->Forward(c);
  CHECK(y == std::vector<float>{1, 2, 3, 7, 8, 4, 5, 6, 9, 10});
  CheckOpGradients(*flat, {Flat(3), Flat(2)}, 2, 7);

  auto images = Make({.type = "concat"}, {Image(2, 3, 2), Image(1, 3, 2)});
  CHECK(images->output() == Image(3, 3, 2));
  CheckOpGradients(*images, {Image(2, 3, 2), Image(1, 3, 2)}, 2, 8);

  OpContext mismatch{LayerSpec{.type = "concat"},
                     "model.layers[2]",
                     {Image(2, 3, 2), Image(2, 2, 2)},
                     nullptr,
                     nullptr,
                     0};
  auto bad = FindOpType("concat")->make(mismatch);
  REQUIRE_FALSE(bad.ok());
  CHECK_THAT(bad.status().message(), Catch::Contains("input 0 is 2x3x2 and input 1 is 2x2x2"));
}

TEST_CASE("layer_norm normalises each run of features, and its gradients match finite differences",
          "[nn][gradcheck]") {
  auto ln = Make({.type = "layer_norm"}, {Flat(5)});
  REQUIRE(ln->Params().size() == 2);
  CHECK(ln->Params()[0].suffix == "weight");
  std::vector<float> w(5), b(5), mean(4), x = {1, 2, 3, 4, 5, -1, 0, 1, 0, 0}, y(10);
  Rng rng(1);
  ln->InitParams(rng, {w.data(), b.data()});
  CHECK(w == std::vector<float>(5, 1.0f));
  OpCall c;
  c.batch = 2;
  c.in = {x.data()};
  c.out = y.data();
  c.w = {w.data(), b.data()};
  c.scratch = reinterpret_cast<std::byte*>(mean.data());
  REQUIRE(ln->ScratchBytes(2) == mean.size() * 4);
  ln->Forward(c);
  // torch.nn.functional.layer_norm(torch.tensor([1., 2, 3, 4, 5]), (5,))
  CHECK(y[0] == Approx(-1.4142100).epsilon(1e-5));
  CHECK(y[2] == Approx(0.0).margin(1e-6));
  CHECK(y[4] == Approx(1.4142100).epsilon(1e-5));
  CheckOpGradients(*ln, {Flat(5)}, 3, 9);
  auto per_pixel = Make({.type = "layer_norm"}, {Image(4, 2, 3)});
  CHECK(per_pixel->Params()[0].shape == std::vector<int64_t>{4});
  CheckOpGradients(*per_pixel, {Image(4, 2, 3)}, 2, 10);
}

TEST_CASE("Softmax cross-entropy: loss, accuracy and gradient", "[nn][gradcheck]") {
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

TEST_CASE("Logistic loss: values, accuracy, gradient, extreme logits", "[nn][gradcheck]") {
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

}  // namespace
}  // namespace pstrain
