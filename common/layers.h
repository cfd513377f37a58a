// Layers of a feed-forward network over row-major batches: Dense (with an
// optional fused ReLU), ReLU, and the softmax cross-entropy loss.
//
// A layer does not own its parameters: it declares named tensors in the
// model's TensorLayout and is bound to the model's flat parameter and
// gradient arrays. It never allocates after Bind(). Not thread-safe; a
// layer belongs to one model, used by one thread.
#pragma once

#include <cstdint>
#include <string>

#include "common/rng.h"
#include "common/tensor.h"

namespace pstrain {

enum class InitKind {
  kHe,     // weights N(0, 2/fan_in), bias 0 (He et al., for ReLU nets)
  kTorch,  // PyTorch's nn.Linear default: U(+-1/sqrt(fan_in)) for weight and bias
  kXavier  // U(+-sqrt(6/(fan_in+fan_out))), bias 0
};

class Layer {
 public:
  Layer(int in_dim, int out_dim) : in_dim_(in_dim), out_dim_(out_dim) {}
  virtual ~Layer() = default;
  Layer(const Layer&) = delete;
  Layer& operator=(const Layer&) = delete;

  int in_dim() const { return in_dim_; }
  int out_dim() const { return out_dim_; }
  virtual std::string Describe() const = 0;

  // Registers this layer's tensors; `prefix` is unique per layer ("dense1").
  virtual void DeclareParams(const std::string& prefix, TensorLayout* layout) {
    (void)prefix;
    (void)layout;
  }
  // Points the layer at its tensors in the flat arrays laid out by `layout`.
  virtual void Bind(const TensorLayout& layout, float* params, float* grads) {
    (void)layout;
    (void)params;
    (void)grads;
  }
  virtual void InitParams(Rng& rng) { (void)rng; }
  // Indices (in the layout) of the tensors this layer owns, [first, last).
  virtual int first_tensor() const { return -1; }
  virtual int last_tensor() const { return -1; }

  // out[batch x out_dim] = f(in[batch x in_dim]).
  virtual void Forward(const float* in, float* out, int batch) = 0;
  // Given in, out and dout (dLoss/dout, which the layer may overwrite), writes
  // this layer's parameter gradients (overwriting them) and, when din is not
  // null, dLoss/din.
  virtual void Backward(const float* in, const float* out, float* dout, float* din, int batch) = 0;

 private:
  int in_dim_;
  int out_dim_;
};

class DenseLayer : public Layer {
 public:
  // y = x W + b, W of shape {in, out}; with fuse_relu, y = max(0, x W + b).
  DenseLayer(int in_dim, int out_dim, bool fuse_relu, InitKind init);
  std::string Describe() const override;
  void DeclareParams(const std::string& prefix, TensorLayout* layout) override;
  void Bind(const TensorLayout& layout, float* params, float* grads) override;
  void InitParams(Rng& rng) override;
  int first_tensor() const override { return weight_index_; }
  int last_tensor() const override { return bias_index_ + 1; }
  void Forward(const float* in, float* out, int batch) override;
  void Backward(const float* in, const float* out, float* dout, float* din, int batch) override;

  bool fused_relu() const { return fuse_relu_; }

 private:
  bool fuse_relu_;
  InitKind init_;
  int weight_index_ = -1;
  int bias_index_ = -1;
  float* w_ = nullptr;
  float* b_ = nullptr;
  float* dw_ = nullptr;
  float* db_ = nullptr;
};

class ReluLayer : public Layer {
 public:
  explicit ReluLayer(int dim) : Layer(dim, dim) {}
  std::string Describe() const override { return "relu"; }
  void Forward(const float* in, float* out, int batch) override;
  void Backward(const float* in, const float* out, float* dout, float* din, int batch) override;
};

struct LossResult {
  double loss_sum = 0;  // sum over the batch of -log p(label)
  int64_t correct = 0;  // rows whose arg-max equals the label
};

// Softmax cross-entropy over logits[batch x classes]. When dlogits is not
// null it receives d(mean loss)/dlogits, i.e. (softmax - onehot) * grad_scale
// where grad_scale is normally 1/batch. Labels must be in [0, classes).
LossResult SoftmaxCrossEntropy(const float* logits, const int32_t* labels, int batch, int classes,
                               float* dlogits, float grad_scale);

}  // namespace pstrain
