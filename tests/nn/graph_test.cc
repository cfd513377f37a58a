// The model graph: named nodes with explicit inputs, values read by several
// nodes, weights used twice, fusion, the order gradients become ready, and
// the errors of graphs that cannot be built.
#include <algorithm>
#include <catch2/catch.hpp>
#include <vector>

#include "common/nn/model.h"
#include "tests/nn/gradcheck.h"

namespace pstrain {
namespace {

// Checks every parameter's gradient of the mean training loss of a fixed
// batch against central differences.
void CheckModelGradients(Model& m, const std::vector<float>& x, const std::vector<int32_t>& y) {
  const int batch = static_cast<int>(y.size());
  m.SetStepSeed(77);
  m.TrainStep(x.data(), y.data(), batch, 1.0f / batch);
  const std::vector<float> grads(m.grads().begin(), m.grads().end());
  auto mean_loss = [&] { return m.TrainStep(x.data(), y.data(), batch, 1.0f).loss_sum / batch; };
  for (const TensorSpec& t : m.layout().tensors()) {
    for (size_t i = 0; i < t.size; ++i) {
      CheckClose(grads[t.offset + i], NumericGrad(mean_loss, m.params().data() + t.offset + i),
                 t.name + "[" + std::to_string(i) + "]");
    }
  }
}

std::unique_ptr<Model> BuildOk(const std::vector<LayerSpec>& specs, int in, int classes, int batch,
                               ImageShape image = {}) {
  auto m = Model::Build(specs, in, classes, batch, image);
  INFO(m.status().message());
  REQUIRE(m.ok());
  return std::move(*m);
}

TEST_CASE("A value read by two nodes gets the sum of both gradients", "[nn][gradcheck]") {
  // h feeds the next dense layer and, around it, the add: a residual MLP.
  auto m = BuildOk({{.type = "dense", .units = 5, .name = "h"},
                    {.type = "tanh", .name = "t"},
                    {.type = "dense", .units = 5, .name = "f"},
                    {.type = "add", .name = "skip", .inputs = {"f", "t"}},
                    {.type = "layer_norm", .name = "norm"},
                    {.type = "gelu"},
                    {.type = "dense", .units = 3, .name = "out"}},
                   4, 3, 4);
  CHECK(m->Describe() ==
        "dense 4->5, tanh, dense 5->5, add 5 [skip <- f + t], layer_norm 5, "
        "gelu, dense 5->3");
  const TensorLayout& l = m->layout();
  CHECK(l[0].name == "h.weight");
  CHECK(l.Find("norm.weight") >= 0);
  CHECK(l.Find("out.bias") == l.count() - 1);
  m->InitParams(3);
  Rng rng(4);
  CheckModelGradients(*m, RandomVector(rng, 16), {0, 2, 1, 1});
}

TEST_CASE("A weight used by two nodes gets the sum of both uses, and is pushed once",
          "[nn][gradcheck]") {
  auto m = BuildOk({{.type = "dense", .units = 4, .name = "a"},
                    {.type = "tanh"},
                    {.type = "dense", .units = 4, .name = "b", .share = "a2"},
                    {.type = "sigmoid"},
                    {.type = "dense", .units = 4, .name = "a2"},
                    {.type = "tanh"},
                    {.type = "dense", .units = 2, .name = "out"}},
                   4, 2, 3);
  // b declares nothing: a2's tensors serve both.
  CHECK(m->layout().Find("b.weight") < 0);
  REQUIRE(m->param_groups().size() == 3);
  CHECK(m->param_groups()[1].node == "a2");
  m->InitParams(8);
  Rng rng(5);
  const std::vector<float> x = RandomVector(rng, 12);
  CheckModelGradients(*m, x, {0, 1, 1});
  // Forward asks for a2's weights before b, its first reader; backward
  // reports them once, after b (the last reached going back).
  std::vector<std::string> needed, ready;
  auto name_of = [&](int first) {
    for (const ParamGroup& g : m->param_groups()) {
      if (g.first_tensor == first) return g.node;
    }
    return std::string("?");
  };
  const std::vector<int32_t> y = {0, 1, 1};
  m->TrainStep(
      x.data(), y.data(), 3, 1.0f / 3, [&](int first, int) { ready.push_back(name_of(first)); },
      [&](int first, int) {
        needed.push_back(name_of(first));
        return true;
      });
  CHECK(needed == std::vector<std::string>{"a", "a2", "out"});
  CHECK(ready == std::vector<std::string>{"out", "a2", "a"});
}

TEST_CASE("A residual CNN's gradients match finite differences for every parameter",
          "[nn][gradcheck]") {
  const ImageShape image{2, 6, 6};
  auto m = BuildOk({{.type = "conv2d", .filters = 3, .kernel = 3, .padding = 1, .name = "stem"},
                    {.type = "relu", .name = "stem_relu"},
                    {.type = "conv2d", .filters = 3, .kernel = 3, .padding = 1, .name = "b1.conv1"},
                    {.type = "relu"},
                    {.type = "conv2d", .filters = 3, .kernel = 3, .padding = 1, .name = "b1.conv2"},
                    {.type = "add", .name = "b1.skip", .inputs = {"b1.conv2", "stem_relu"}},
                    {.type = "relu"},
                    {.type = "concat", .name = "wide", .inputs = {"relu2", "stem_relu"}},
                    {.type = "maxpool", .size = 2},
                    {.type = "dropout", .rate = 0.25, .name = "drop"},
                    {.type = "flatten"},
                    {.type = "dense", .units = 3, .name = "head"}},
                   static_cast<int>(image.size()), 3, 3, image);
  // A relu is fused into the convolution it alone reads, whoever reads the
  // relu; the add's relu is not (the add is no convolution).
  CHECK(m->Describe() ==
        "conv2d 2x6x6->3x6x6 k3 p1 +relu, conv2d 3x6x6->3x6x6 k3 p1 +relu, "
        "conv2d 3x6x6->3x6x6 k3 p1, add 3x6x6 [b1.skip <- b1.conv2 + stem], relu, "
        "concat 3+3->6x6x6 [wide <- relu2 + stem], maxpool 6x6x6->6x3x3 2, dropout 0.25, "
        "flatten 6x3x3->54, dense 54->3");
  CHECK(m->layout()[0].name == "stem.weight");
  CHECK(m->layout().Find("b1.conv2.bias") >= 0);
  m->InitParams(2);
  Rng rng(7);
  CheckModelGradients(*m, RandomVector(rng, 3 * image.size()), {2, 0, 1});
}

TEST_CASE("A named node's randomness does not depend on where it is", "[nn]") {
  auto a = BuildOk(
      {{.type = "dense", .units = 8, .name = "a"}, {.type = "dense", .units = 2, .name = "b"}}, 4,
      2, 2);
  auto b = BuildOk({{.type = "dense", .units = 8, .name = "a"},
                    {.type = "tanh"},
                    {.type = "dropout", .rate = 0.5},
                    {.type = "dense", .units = 2, .name = "b"}},
                   4, 2, 2);
  a->InitParams(5);
  b->InitParams(5);
  const TensorSpec& wa = a->layout()[a->layout().Find("b.weight")];
  const TensorSpec& wb = b->layout()[b->layout().Find("b.weight")];
  CHECK(std::equal(a->params().begin() + wa.offset, a->params().begin() + wa.offset + wa.size,
                   b->params().begin() + wb.offset));
  // Unnamed nodes keep the positional streams of the sequential engine.
  auto c = BuildOk({{"dense", 8}, {"dense", 2}}, 4, 2, 2);
  c->InitParams(5);
  CHECK_FALSE(std::equal(a->params().begin(), a->params().end(), c->params().begin()));
}

TEST_CASE("Graphs that cannot be built say which node and why", "[nn]") {
  struct Case {
    const char* name;
    std::vector<LayerSpec> specs;
    const char* expect;
  };
  const std::vector<Case> cases = {
      {"unknown input",
       {{.type = "dense", .units = 4, .name = "a"},
        {.type = "add", .inputs = {"a", "nope"}},
        {.type = "dense", .units = 2}},
       "model.layers[1].inputs names \"nope\", which is no node (the nodes are \"input\", \"a\","},
      {"cycle",
       {{.type = "dense", .units = 4, .name = "a", .inputs = {"c"}},
        {.type = "tanh", .name = "b"},
        {.type = "add", .name = "c", .inputs = {"b", "input"}},
        {.type = "dense", .units = 2, .inputs = {"c"}}},
       "the inputs form a cycle through model.layers[0] \"a\", model.layers[1] \"b\", "
       "model.layers[2] \"c\""},
      {"shape mismatch",
       {{.type = "dense", .units = 4, .name = "a"},
        {.type = "dense", .units = 3, .name = "b"},
        {.type = "add", .inputs = {"a", "b"}},
        {.type = "dense", .units = 2}},
       "model.layers[2]: an add needs inputs of one shape, but input 0 is 4 and input 1 is 3"},
      {"unread node",
       {{.type = "dense", .units = 4, .name = "a"},
        {.type = "dense", .units = 4, .name = "b", .inputs = {"input"}},
        {.type = "dense", .units = 2, .inputs = {"b"}}},
       "model.layers[0] \"a\": nothing reads its output"},
      {"one input to add",
       {{.type = "dense", .units = 4}, {.type = "add"}, {.type = "dense", .units = 2}},
       "model.layers[1] is a add layer, which reads 2 or more input(s), but it is given 1"},
      {"name twice",
       {{.type = "dense", .units = 4, .name = "dense2"},
        {.type = "dense", .units = 4},
        {.type = "dense", .units = 2}},
       "model.layers[2].name \"dense2\" is also the name of model.layers[0]"},
      {"share of another shape",
       {{.type = "dense", .units = 4, .name = "a"}, {.type = "dense", .units = 2, .share = "a"}},
       "model.layers[1].share: \"a\" is a dense node with parameters weight {3,4}, bias {4}; this "
       "dense node needs weight {4,2}, bias {2}"},
      {"share of nothing",
       {{.type = "dense", .units = 4}, {.type = "dense", .units = 2, .share = "zz"}},
       "model.layers[1].share names \"zz\", which is no node"},
  };
  for (const Case& c : cases) {
    SECTION(c.name) {
      auto m = Model::Build(c.specs, 3, 2, 4);
      REQUIRE_FALSE(m.ok());
      CHECK_THAT(m.status().message(), Catch::Contains(c.expect));
    }
  }
}

}  // namespace
}  // namespace pstrain
