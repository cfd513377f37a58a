// A network built from the job file's node list (graph.h) with its
// parameters and gradients in two flat arrays laid out by one TensorLayout
// (tensor.h), the loss of its output, and for sparse data the batch's
// embedding rows. Nothing is allocated after Build().
//
// Not thread-safe: one Model per worker thread. Parameters may be replaced
// wholesale (params()) between steps, or a group at a time (BindParams),
// which is how a worker installs weights pulled from the parameter servers.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/base/status.h"
#include "common/data/dataset.h"
#include "common/nn/graph.h"
#include "common/nn/graph_spec.h"
#include "common/nn/loss.h"
#include "common/nn/ops/embedding.h"
#include "common/nn/tensor.h"

namespace pstrain {

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
  // Validates the node list against the data's shape: the last node must
  // produce `num_classes` outputs; image ops (conv2d, maxpool) need
  // `image`, the shape of a sample (its size must be input_dim); a dense
  // layer sees an image as flat values. Errors name model.layers[i] and its
  // key (Graph::Build).
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
  // The parameters a node at a time, in node order: the groups a worker
  // pulls, installs and pushes separately.
  const std::vector<ParamGroup>& param_groups() const { return graph_->groups(); }
  // Points group g at the parameters in `params` (a buffer laid out as
  // params(), which must outlive the binding) instead of params(), whose
  // values for that group are then not read. A worker binds each group to
  // the buffer its pulled weights landed in, rather than copying them.
  void BindParams(int g, const float* params);
  int input_dim() const { return input_dim_; }
  int num_classes() const { return num_classes_; }
  int max_batch() const { return max_batch_; }
  const Graph& graph() const { return *graph_; }
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

  // Called during the backward pass when a group's gradients are final,
  // from the last group to the first: tensors [first_tensor, last_tensor)
  // of the layout.
  using GradReadyFn = Graph::GradReadyFn;

  // Called during the forward pass before a group's parameters are first
  // read, from the first group to the last: tensors [first_tensor,
  // last_tensor) are about to be read (a worker waits there for that
  // group's weights). Returning false stops the step: nothing more is
  // computed and no gradient is reported.
  using WeightsNeededFn = Graph::WeightsNeededFn;

  // Forward, loss and backward on `batch` rows (batch <= max_batch). Leaves
  // d(mean loss)/dparams in grads(), replacing what was there (mean over
  // this batch, times grad_scale * batch; pass 1/batch for the plain mean). When
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

  std::unique_ptr<Graph> graph_;
  TensorLayout layout_;
  FloatBuffer params_;
  FloatBuffer grads_;
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
