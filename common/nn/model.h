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

#include "common/data/dataset.h"
#include "common/nn/layers.h"
#include "common/base/status.h"
#include "common/nn/tensor.h"

namespace pstrain {

struct LayerSpec {
  std::string type;               // "dense" | "relu" | "conv2d" | "maxpool" | "flatten" | "dropout"
  int units = 0;                  // dense only: output width
  InitKind init = InitKind::kHe;  // dense, conv2d
  int filters = 0;                // conv2d: output channels
  int kernel = 0;                 // conv2d: kernel side
  int stride = 0;                 // conv2d (0: 1), maxpool (0: the window's size)
  int padding = 0;                // conv2d: zeros on every side
  int size = 0;                   // maxpool: window side
  double rate = 0;                // dropout: probability of zeroing a value, in [0, 1)
  int dim = 0;                    // embedding: floats per row
};

// The seed of one training step's randomness (dropout masks): a function of
// the job's seed, the epoch, the step and which part of the step's batch
// this is (a worker's slot, or a standalone micro-batch), so a run is
// reproducible and BSP sees the same masks as standalone accumulation.
uint64_t StepSeed(uint64_t job_seed, int epoch, int64_t step, int part);

// Sparse data (LibSVM): what Build needs besides the layers.
struct SparseOptions {
  bool enabled = false;  // the first layer is an embedding over input_dim features
  int max_active = 1;    // the most features one sample has (sizes the buffers)
  bool wide = false;     // add a linear term over the features to the one output
};

// Embedding tables: 0 is the embedding layer's, 1 the wide term's (one float
// a feature).
inline constexpr uint32_t kEmbeddingTable = 0;
inline constexpr uint32_t kWideTable = 1;

class Model {
 public:
  // Validates the layer list against the data's shape: the last layer must
  // produce `num_classes` outputs; image layers (conv2d, maxpool) need
  // `image`, the shape of a sample (its size must be input_dim); a dense
  // layer sees an image as flat values. A Dense or Conv2D directly followed by
  // a ReLU is fused into one layer. Errors name model.layers[i] and its key.
  //
  // A model whose last layer has one output on two-class data is binary: it
  // is trained with the logistic loss and scores each sample with
  // P(label 1). Sparse data needs an embedding first layer (and nothing
  // else takes one); its rows are not parameters of the model but blocks
  // the caller fills per batch (GatherSparse, then tables()).
  static StatusOr<std::unique_ptr<Model>> Build(const std::vector<LayerSpec>& specs, int input_dim,
                                                int num_classes, int max_batch,
                                                const ImageShape& image = {},
                                                const SparseOptions& sparse = {});

  // Initialises the parameters from `seed`; also sets the step seed to it.
  void InitParams(uint64_t seed);
  // Seeds the randomness of the following TrainStep() calls (StepSeed()).
  void SetStepSeed(uint64_t seed) { step_seed_ = seed; }

  const TensorLayout& layout() const { return layout_; }
  std::span<float> params() { return params_.span(); }
  std::span<const float> params() const { return params_.span(); }
  std::span<float> grads() { return grads_.span(); }
  // Points layer i at the parameters in `params` (a buffer laid out as
  // params(), which must outlive the binding) instead of params(), whose
  // values for that layer are then not read. A worker binds each layer to
  // the buffer its pulled weights landed in, rather than copying them.
  void BindLayerParams(int i, float* params);
  int input_dim() const { return input_dim_; }
  int num_classes() const { return num_classes_; }
  int max_batch() const { return max_batch_; }
  int layer_count() const { return static_cast<int>(layers_.size()); }
  const Layer& layer(int i) const { return *layers_[i]; }
  // "dense 784->256 +relu, dense 256->128 +relu, dense 128->10"
  std::string Describe() const;
  bool binary() const { return binary_; }
  bool sparse() const { return !tables_.empty(); }

  // Sparse models: makes samples ids[0, n) (n <= max_batch) of `data` the
  // next batch: its distinct features become each table's rows(), whose
  // values the caller must fill before TrainStep / Forward (input null).
  void GatherSparse(const Dataset& data, const uint32_t* ids, int n);
  // The same for samples [first, first + n).
  void GatherSparse(const Dataset& data, int64_t first, int n);
  std::span<const uint64_t> rows() const { return sparse_.rows; }
  // The embedding tables (kEmbeddingTable, then kWideTable if wide): values
  // to fill for rows(), and after TrainStep the rows' gradients.
  std::vector<RowBlock>& tables() { return tables_; }

  // Called during Backward when a layer's gradients are final, from the last
  // layer to the first: tensors [first_tensor, last_tensor) of the layout.
  using GradReadyFn = std::function<void(int first_tensor, int last_tensor)>;

  // Called during the forward pass before a layer with parameters runs,
  // from the first layer to the last: tensors [first_tensor, last_tensor)
  // are about to be read (a worker waits there for that layer's weights).
  // Returning false stops the step: nothing more is computed and no
  // gradient is reported.
  using WeightsNeededFn = std::function<bool(int first_tensor, int last_tensor)>;

  // Forward, loss and backward on `batch` rows (batch <= max_batch). Leaves
  // d(mean loss)/dparams in grads() (mean over this batch, times
  // grad_scale * batch; pass 1/batch for the plain mean). When
  // `before_forward` stops the step, the result and grads() mean nothing.
  LossResult TrainStep(const float* input, const int32_t* labels, int batch, float grad_scale,
                       const GradReadyFn& on_grad_ready = nullptr,
                       const WeightsNeededFn& before_forward = nullptr);

  // Forward and loss only, on any number of rows (processed max_batch at a
  // time). Dense models only.
  LossResult Evaluate(const float* input, const int32_t* labels, int64_t rows);
  // Forward and loss of `batch` rows of `input` (null: the gathered sparse
  // batch); binary models write P(label 1) of each row to scores if given.
  LossResult EvaluateBatch(const float* input, const int32_t* labels, int batch, float* scores);

  // Logits for `batch` rows (batch <= max_batch), evaluation mode (dropout
  // off); valid until the next call.
  const float* Forward(const float* input, int batch);

 private:
  Model() = default;
  // The logits, or null when `before_forward` stopped the pass.
  const float* Run(const float* input, int batch, bool training,
                   const WeightsNeededFn& before_forward = nullptr);
  LossResult Loss(const float* logits, const int32_t* labels, int batch, float* dlogits,
                  float grad_scale) const;
  template <typename SampleAt>
  void Gather(const Dataset& data, int n, SampleAt sample_at);

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
  uint64_t step_seed_ = 0;
  bool binary_ = false;
  // Sparse models: the current batch, and the tables' rows for it.
  SparseBatch sparse_;
  std::vector<uint64_t> sort_;    // (feature << 32 | entry), for GatherSparse
  std::vector<RowBlock> tables_;  // reserved once: layers point into it
  bool wide_ = false;
};

}  // namespace pstrain
