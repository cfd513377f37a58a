// A feed-forward network built from the job file's list of layers, with its
// parameters and gradients in two flat arrays laid out by one TensorLayout
// (tensor.h), and activation buffers sized once for the largest batch.
// Nothing is allocated after Build().
//
// Not thread-safe: one Model per worker thread. Parameters may be replaced
// wholesale (params()) between steps, which is how a worker installs weights
// pulled from the parameter servers.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/layers.h"
#include "common/status.h"
#include "common/tensor.h"

namespace pstrain {

struct LayerSpec {
  std::string type;  // "dense" | "relu"
  int units = 0;     // dense only: output width
  InitKind init = InitKind::kHe;
};

class Model {
 public:
  // Validates the layer list against the data's shape: the last layer must
  // produce `num_classes` outputs. A Dense directly followed by a ReLU is
  // fused into one layer.
  static StatusOr<std::unique_ptr<Model>> Build(const std::vector<LayerSpec>& specs, int input_dim,
                                                int num_classes, int max_batch);

  void InitParams(uint64_t seed);

  const TensorLayout& layout() const { return layout_; }
  std::span<float> params() { return params_.span(); }
  std::span<const float> params() const { return params_.span(); }
  std::span<float> grads() { return grads_.span(); }
  int input_dim() const { return input_dim_; }
  int num_classes() const { return num_classes_; }
  int max_batch() const { return max_batch_; }
  int layer_count() const { return static_cast<int>(layers_.size()); }
  const Layer& layer(int i) const { return *layers_[i]; }
  // "dense 784->256 +relu, dense 256->128 +relu, dense 128->10"
  std::string Describe() const;

  // Called during Backward when a layer's gradients are final, from the last
  // layer to the first: tensors [first_tensor, last_tensor) of the layout.
  using GradReadyFn = std::function<void(int first_tensor, int last_tensor)>;

  // Forward, loss and backward on `batch` rows (batch <= max_batch). Leaves
  // d(mean loss)/dparams in grads() (mean over this batch, times
  // grad_scale * batch; pass 1/batch for the plain mean).
  LossResult TrainStep(const float* input, const int32_t* labels, int batch, float grad_scale,
                       const GradReadyFn& on_grad_ready = nullptr);

  // Forward and loss only, on any number of rows (processed max_batch at a
  // time).
  LossResult Evaluate(const float* input, const int32_t* labels, int64_t rows);

  // Logits for `batch` rows (batch <= max_batch); valid until the next call.
  const float* Forward(const float* input, int batch);

 private:
  Model() = default;

  std::vector<std::unique_ptr<Layer>> layers_;
  TensorLayout layout_;
  FloatBuffer params_;
  FloatBuffer grads_;
  // acts_[i] holds the output of layer i (max_batch x out_dim).
  std::vector<FloatBuffer> acts_;
  // Two ping-pong buffers for dLoss/dactivation (max_batch x widest layer).
  FloatBuffer dbuf_[2];
  int input_dim_ = 0;
  int num_classes_ = 0;
  int max_batch_ = 0;
};

}  // namespace pstrain
