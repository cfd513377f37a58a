#include "common/nn/ops/registry.h"

#include "common/nn/ops/activations.h"
#include "common/nn/ops/add.h"
#include "common/nn/ops/concat.h"
#include "common/nn/ops/conv2d.h"
#include "common/nn/ops/dense.h"
#include "common/nn/ops/dropout.h"
#include "common/nn/ops/embedding.h"
#include "common/nn/ops/flatten.h"
#include "common/nn/ops/layer_norm.h"
#include "common/nn/ops/maxpool.h"

namespace pstrain {

Status OpContext::AtLeast(const char* key, int value, int min) const {
  if (value >= min) return OkStatus();
  return InvalidArgument(at + "." + key + " must be >= " + std::to_string(min) + ", got " +
                         std::to_string(value));
}

Status OpContext::NeedsImage() const {
  return InvalidArgument(at + " is a " + spec.type +
                         " layer, which needs an image, but its input is " + inputs[0].Text() +
                         " flat features (after a flatten or dense layer, or data without an "
                         "image shape: give data.image_shape for CSV data)");
}

const std::vector<OpType>& OpTypes() {
  static const std::vector<OpType> types = {
      {"dense", {"units", "init"}, {"units"}, 1, 1, MakeDense},
      {"relu", {}, {}, 1, 1, MakeRelu},
      {"conv2d",
       {"filters", "kernel", "stride", "padding", "init"},
       {"filters", "kernel"},
       1,
       1,
       MakeConv2D},
      {"maxpool", {"size", "stride"}, {"size"}, 1, 1, MakeMaxPool},
      {"flatten", {}, {}, 1, 1, MakeFlatten},
      {"dropout", {"rate"}, {"rate"}, 1, 1, MakeDropout},
      {"embedding", {"dim"}, {"dim"}, 0, 0, MakeEmbedding},
      {"add", {}, {}, 2, -1, MakeAdd},
      {"concat", {}, {}, 2, -1, MakeConcat},
      {"layer_norm", {}, {}, 1, 1, MakeLayerNorm},
      {"gelu", {}, {}, 1, 1, MakeGelu},
      {"sigmoid", {}, {}, 1, 1, MakeSigmoid},
      {"tanh", {}, {}, 1, 1, MakeTanh},
  };
  return types;
}

const OpType* FindOpType(const std::string& type) {
  for (const OpType& t : OpTypes()) {
    if (t.type == type) return &t;
  }
  return nullptr;
}

std::string OpTypesText() {
  std::string s;
  for (const OpType& t : OpTypes()) s += std::string(s.empty() ? "" : ", ") + "\"" + t.type + "\"";
  return s;
}

}  // namespace pstrain
