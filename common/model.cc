#include "common/model.h"

#include <algorithm>

namespace pstrain {

StatusOr<std::unique_ptr<Model>> Model::Build(const std::vector<LayerSpec>& specs, int input_dim,
                                              int num_classes, int max_batch) {
  if (specs.empty()) return InvalidArgument("model.layers is empty: list at least one dense layer");
  if (max_batch < 1) return InvalidArgument("batch size must be >= 1");
  std::unique_ptr<Model> m(new Model());
  m->input_dim_ = input_dim;
  m->num_classes_ = num_classes;
  m->max_batch_ = max_batch;
  int dim = input_dim;
  int dense_count = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    const LayerSpec& s = specs[i];
    if (s.type == "dense") {
      if (s.units < 1) {
        return InvalidArgument("model.layers[" + std::to_string(i) + "].units must be >= 1, got " +
                               std::to_string(s.units));
      }
      const bool fuse = i + 1 < specs.size() && specs[i + 1].type == "relu";
      auto layer = std::make_unique<DenseLayer>(dim, s.units, fuse, s.init);
      layer->DeclareParams("dense" + std::to_string(++dense_count), &m->layout_);
      m->layers_.push_back(std::move(layer));
      dim = s.units;
      if (fuse) ++i;
    } else if (s.type == "relu") {
      m->layers_.push_back(std::make_unique<ReluLayer>(dim));
    } else {
      return InvalidArgument("model.layers[" + std::to_string(i) + "].type is \"" + s.type +
                             "\"; valid types: dense, relu");
    }
  }
  if (dense_count == 0) return InvalidArgument("model.layers has no dense layer: nothing to train");
  if (dim != num_classes) {
    return InvalidArgument("model.layers: the last layer has " + std::to_string(dim) +
                           " outputs but the data has " + std::to_string(num_classes) +
                           " classes; make the last dense layer's units " +
                           std::to_string(num_classes));
  }
  m->params_ = FloatBuffer(m->layout_.total_floats());
  m->grads_ = FloatBuffer(m->layout_.total_floats());
  int widest = input_dim;
  for (auto& layer : m->layers_) {
    layer->Bind(m->layout_, m->params_.data(), m->grads_.data());
    m->acts_.emplace_back(static_cast<size_t>(max_batch) * layer->out_dim());
    widest = std::max(widest, layer->out_dim());
  }
  for (FloatBuffer& b : m->dbuf_) b = FloatBuffer(static_cast<size_t>(max_batch) * widest);
  return m;
}

void Model::InitParams(uint64_t seed) {
  params_.Fill(0.0f);
  for (size_t i = 0; i < layers_.size(); ++i) {
    Rng rng(seed, 1000 + i);
    layers_[i]->InitParams(rng);
  }
}

std::string Model::Describe() const {
  std::string s;
  for (const auto& layer : layers_) {
    if (!s.empty()) s += ", ";
    s += layer->Describe();
  }
  return s;
}

const float* Model::Forward(const float* input, int batch) {
  const float* in = input;
  for (size_t i = 0; i < layers_.size(); ++i) {
    layers_[i]->Forward(in, acts_[i].data(), batch);
    in = acts_[i].data();
  }
  return in;
}

LossResult Model::TrainStep(const float* input, const int32_t* labels, int batch, float grad_scale,
                            const GradReadyFn& on_grad_ready) {
  const float* logits = Forward(input, batch);
  float* dcur = dbuf_[0].data();
  LossResult loss = SoftmaxCrossEntropy(logits, labels, batch, num_classes_, dcur, grad_scale);
  for (int i = layer_count() - 1; i >= 0; --i) {
    const float* in = i == 0 ? input : acts_[i - 1].data();
    // The first layer's input gradient is never needed.
    float* dnext = i == 0 ? nullptr : dbuf_[(layer_count() - i) % 2].data();
    layers_[i]->Backward(in, acts_[i].data(), dcur, dnext, batch);
    if (on_grad_ready && layers_[i]->first_tensor() >= 0) {
      on_grad_ready(layers_[i]->first_tensor(), layers_[i]->last_tensor());
    }
    dcur = dnext;
  }
  return loss;
}

LossResult Model::Evaluate(const float* input, const int32_t* labels, int64_t rows) {
  LossResult total;
  for (int64_t r = 0; r < rows; r += max_batch_) {
    const int n = static_cast<int>(std::min<int64_t>(max_batch_, rows - r));
    const float* logits = Forward(input + r * input_dim_, n);
    LossResult part = SoftmaxCrossEntropy(logits, labels + r, n, num_classes_, nullptr, 0.0f);
    total.loss_sum += part.loss_sum;
    total.correct += part.correct;
  }
  return total;
}

}  // namespace pstrain
