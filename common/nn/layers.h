// Layers of a feed-forward network over row-major batches: Dense and Conv2D
// (each with an optional fused ReLU), ReLU, MaxPool2D, Flatten, Dropout, and
// the softmax cross-entropy loss.
//
// A batch is `batch` samples of in_dim() floats each, one after the other.
// Image layers see a sample as height x width x channels with the channels
// of a pixel adjacent (ImageShape, HWC); Flatten makes that a flat vector.
//
// A layer does not own its parameters: it declares named tensors in the
// model's TensorLayout and is bound to the model's flat parameter and
// gradient arrays. Its scratch buffers are sized once by Reserve(); it never
// allocates after that. Backward() follows the Forward() of the same batch
// (a layer may keep what it needs from it: im2col rows, arg-max positions,
// dropout masks). Not thread-safe; a layer belongs to one model, used by one
// thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/base/rng.h"
#include "common/nn/tensor.h"

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
  // Sizes scratch buffers for batches of up to `max_batch` samples.
  virtual void Reserve(int max_batch) { (void)max_batch; }
  // Training or evaluation for the following Forward() calls; `step_seed`
  // fixes this step's randomness (dropout masks).
  virtual void SetMode(bool training, uint64_t step_seed) {
    (void)training;
    (void)step_seed;
  }
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

// y = x W + b (optionally max(0, .)) over the rows of a matrix: the part
// Dense and Conv2D share. W is {fan_in, units} in the layout.
class AffineLayer : public Layer {
 public:
  AffineLayer(int in_dim, int out_dim, bool fuse_relu, InitKind init)
      : Layer(in_dim, out_dim), fuse_relu_(fuse_relu), init_(init) {}
  void Bind(const TensorLayout& layout, float* params, float* grads) override;
  void InitParams(Rng& rng) override;
  int first_tensor() const override { return weight_index_; }
  int last_tensor() const override { return bias_index_ + 1; }

  bool fused_relu() const { return fuse_relu_; }

 protected:
  // Declares `prefix`.weight with `weight_shape` (its last dimension is the
  // units) and `prefix`.bias {units}; `kernel_area` is how many positions
  // each weight is applied at per output (1 for Dense).
  void DeclareWeights(const std::string& prefix, std::vector<int64_t> weight_shape, int kernel_area,
                      TensorLayout* layout);
  // out[rows x units] = act(x[rows x fan_in] W + b).
  void AffineForward(const float* x, float* out, int rows) const;
  // Zeroes dout where the fused ReLU was off.
  void MaskRelu(const float* out, float* dout, size_t n) const;
  // dW = x^T dout and db = column sums of dout, added to the gradients when
  // `accumulate`, else written; dx = dout W^T when dx is not null.
  void AffineBackward(const float* x, const float* dout, float* dx, int rows, bool accumulate);

  int fan_in() const { return fan_in_; }
  int units() const { return units_; }

 private:
  bool fuse_relu_;
  InitKind init_;
  int fan_in_ = 0;   // rows of W
  int units_ = 0;    // columns of W
  int fan_out_ = 0;  // for Xavier: units x kernel area
  int weight_index_ = -1;
  int bias_index_ = -1;
  float* w_ = nullptr;
  float* b_ = nullptr;
  float* dw_ = nullptr;
  float* db_ = nullptr;
};

class DenseLayer : public AffineLayer {
 public:
  // y = x W + b, W of shape {in, out}; with fuse_relu, y = max(0, x W + b).
  DenseLayer(int in_dim, int out_dim, bool fuse_relu, InitKind init)
      : AffineLayer(in_dim, out_dim, fuse_relu, init) {}
  std::string Describe() const override;
  void DeclareParams(const std::string& prefix, TensorLayout* layout) override;
  void Forward(const float* in, float* out, int batch) override;
  void Backward(const float* in, const float* out, float* dout, float* din, int batch) override;
};

struct ConvOptions {
  int filters = 1;
  int kernel = 1;  // square kernel side
  int stride = 1;
  int padding = 0;  // zeros added on every side
};

// 2-D convolution (cross-correlation, as in every framework) of an HWC image
// with `filters` kernels of kernel x kernel x channels; output HWC with one
// channel per filter. Weight {kernel, kernel, in channels, filters}, bias
// {filters}. Computed as im2col of up to a chunk of samples into a
// (samples*outH*outW) x (kernel*kernel*channels) matrix and one sgemm; the
// chunk is the whole batch unless that matrix would pass 32 MiB.
class Conv2DLayer : public AffineLayer {
 public:
  Conv2DLayer(ImageShape in, const ConvOptions& options, bool fuse_relu, InitKind init);
  // The output shape, or channels = 0 when the kernel does not fit.
  static ImageShape OutputShape(ImageShape in, const ConvOptions& options);

  std::string Describe() const override;
  void DeclareParams(const std::string& prefix, TensorLayout* layout) override;
  void Reserve(int max_batch) override;
  void Forward(const float* in, float* out, int batch) override;
  void Backward(const float* in, const float* out, float* dout, float* din, int batch) override;

  ImageShape in_shape() const { return in_; }
  ImageShape out_shape() const { return out_; }
  int chunk() const { return chunk_; }

 private:
  // Rows of im2col for samples [0, n) of `in` into col_.
  void Im2Col(const float* in, int n);
  // Adds col_'s rows for samples [0, n) back into their pixels of `din`.
  void Col2Im(float* din, int n);

  ImageShape in_, out_;
  ConvOptions o_;
  int chunk_ = 1;           // samples per im2col matrix and sgemm
  bool col_whole_ = false;  // col_ holds the last Forward's whole batch
  FloatBuffer col_;
};

// Max over size x size windows, stride apart, per channel (no padding;
// windows that would cross the border are dropped). Remembers where each
// maximum came from for Backward.
class MaxPool2DLayer : public Layer {
 public:
  MaxPool2DLayer(ImageShape in, int size, int stride);
  // The output shape, or channels = 0 when the window does not fit.
  static ImageShape OutputShape(ImageShape in, int size, int stride);

  std::string Describe() const override;
  void Reserve(int max_batch) override;
  void Forward(const float* in, float* out, int batch) override;
  void Backward(const float* in, const float* out, float* dout, float* din, int batch) override;

  ImageShape out_shape() const { return out_; }

 private:
  ImageShape in_, out_;
  int size_, stride_;
  std::vector<int32_t> argmax_;  // per output value: its input's index in the sample
};

// An image as a flat vector; the values stay where they are (a copy).
class FlattenLayer : public Layer {
 public:
  explicit FlattenLayer(ImageShape in)
      : Layer(static_cast<int>(in.size()), static_cast<int>(in.size())), in_(in) {}
  std::string Describe() const override;
  void Forward(const float* in, float* out, int batch) override;
  void Backward(const float* in, const float* out, float* dout, float* din, int batch) override;

 private:
  ImageShape in_;
};

// Training: zeroes each value with probability `rate` and scales the rest
// by 1/(1-rate) (inverted dropout); the mask comes from the step seed and
// `stream` alone. Evaluation: the identity.
class DropoutLayer : public Layer {
 public:
  DropoutLayer(int dim, double rate, uint64_t stream)
      : Layer(dim, dim), rate_(rate), stream_(stream) {}
  std::string Describe() const override;
  void Reserve(int max_batch) override;
  void SetMode(bool training, uint64_t step_seed) override;
  void Forward(const float* in, float* out, int batch) override;
  void Backward(const float* in, const float* out, float* dout, float* din, int batch) override;

 private:
  double rate_;
  uint64_t stream_;
  bool training_ = false;
  uint64_t step_seed_ = 0;
  FloatBuffer mask_;  // 0 or 1/(1-rate) per value of the last training batch
};

class ReluLayer : public Layer {
 public:
  explicit ReluLayer(int dim) : Layer(dim, dim) {}
  std::string Describe() const override { return "relu"; }
  void Forward(const float* in, float* out, int batch) override;
  void Backward(const float* in, const float* out, float* dout, float* din, int batch) override;
};

// A batch of sparse samples (LibSVM data) as an embedding layer reads it:
// sample i's features are entries [offsets[i], offsets[i+1]); entry e
// refers to row slot[e] of the batch's rows (its distinct features) with
// weight value[e]. Owned by the model; rows' values are filled in by the
// caller (from the parameter servers or a local table) before Forward.
struct SparseBatch {
  std::vector<int64_t> offsets;  // batch + 1
  std::vector<uint32_t> slot;
  std::vector<float> value;
  std::vector<uint64_t> rows;  // the distinct feature indices, ascending
};

// The rows of one embedding table that a batch touches: values[r x dim]
// for rows[r], and after Backward their gradients.
struct RowBlock {
  uint32_t table = 0;
  int dim = 0;
  FloatBuffer values;
  FloatBuffer grads;
};

// out[i x dim] = (accumulate ? out : 0) + sum over sample i's entries of
// value * values[slot].
void PoolRows(const SparseBatch& b, int batch, const RowBlock& rows, float* out, bool accumulate);
// grads of the batch's rows = sum over entries of value * dout[sample]
// (overwritten).
void ScatterRowGrads(const SparseBatch& b, int batch, const float* dout, RowBlock* rows);

// The weighted sum of the embeddings of a sparse sample's features, plus a
// bias: out = b + sum_e value_e * E[feature_e]. E (features x dim) lives
// elsewhere (parameter servers); only the bias {dim} is in the layout. The
// layer reads the model's current SparseBatch and RowBlock.
class EmbeddingLayer : public Layer {
 public:
  EmbeddingLayer(int features, int dim, const SparseBatch* batch, RowBlock* rows)
      : Layer(features, dim), batch_(batch), rows_(rows) {}
  std::string Describe() const override;
  void DeclareParams(const std::string& prefix, TensorLayout* layout) override;
  void Bind(const TensorLayout& layout, float* params, float* grads) override;
  int first_tensor() const override { return bias_index_; }
  int last_tensor() const override { return bias_index_ + 1; }
  void Forward(const float* in, float* out, int batch) override;
  void Backward(const float* in, const float* out, float* dout, float* din, int batch) override;

 private:
  const SparseBatch* batch_;
  RowBlock* rows_;
  int bias_index_ = -1;
  float* b_ = nullptr;
  float* db_ = nullptr;
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

// The logistic loss of one logit per row (binary tasks, labels 0 or 1):
// -log sigmoid(z) for 1, -log(1 - sigmoid(z)) for 0; dlogits as above
// ((sigmoid - label) * grad_scale); `correct` counts z > 0 == label.
LossResult SigmoidCrossEntropy(const float* logits, const int32_t* labels, int batch,
                               float* dlogits, float grad_scale);

}  // namespace pstrain
