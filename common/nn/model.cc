#include "common/nn/model.h"

#include <algorithm>
#include <cmath>

#include "common/base/check.h"

namespace pstrain {

uint64_t StepSeed(uint64_t job_seed, int epoch, int64_t step, int part) {
  uint64_t h = job_seed;
  for (uint64_t v :
       {static_cast<uint64_t>(epoch), static_cast<uint64_t>(step), static_cast<uint64_t>(part)}) {
    h = Rng(h, v).NextU64();
  }
  return h;
}

StatusOr<std::unique_ptr<Model>> Model::Build(const std::vector<LayerSpec>& specs, int input_dim,
                                              int num_classes, int max_batch,
                                              const ImageShape& image,
                                              const SparseOptions& sparse) {
  if (image.known() && image.size() != input_dim) {
    return InvalidArgument("the data's image shape " + image.Text() + " has " +
                           std::to_string(image.size()) + " values but a sample has " +
                           std::to_string(input_dim));
  }
  if (sparse.max_active < 1) return InvalidArgument("no sample has any feature");
  std::unique_ptr<Model> m(new Model());
  m->input_dim_ = input_dim;
  m->num_classes_ = num_classes;
  m->max_batch_ = max_batch;
  // Reserved once: the graph's embedding points into it.
  m->tables_.reserve(2);
  GraphInput input;
  if (sparse.enabled) {
    RowBlock& block = m->tables_.emplace_back();
    block.table = kEmbeddingTable;
    block.dim = specs.empty() ? 0 : specs[0].dim;
    input.sparse_batch = &m->sparse_;
    input.rows = &block;
    input.sparse_features = input_dim;
  } else {
    input.input = image.known() ? ValueShape::Of(image) : ValueShape::Flat(input_dim);
  }
  ASSIGN_OR_RETURN(m->graph_, Graph::Build(specs, input, max_batch, &m->layout_));
  if (m->graph_->groups().empty()) {
    return InvalidArgument("model.layers has no dense layer (nor conv2d): nothing to train");
  }
  const int64_t out = m->graph_->output_shape().size;
  m->binary_ = out == 1 && num_classes == 2;
  if (out != num_classes && !m->binary_) {
    return InvalidArgument(
        "model.layers: the last layer has " + std::to_string(out) + " outputs but the data has " +
        std::to_string(num_classes) + " classes; make the last dense layer's units " +
        std::to_string(num_classes) + (num_classes == 2 ? " (or 1, for the logistic loss)" : ""));
  }
  if (sparse.wide) {
    if (!sparse.enabled || !m->binary_) {
      return InvalidArgument(
          "model.wide needs sparse (LibSVM) data and a model with one output (binary)");
    }
    RowBlock& block = m->tables_.emplace_back();
    block.table = kWideTable;
    block.dim = 1;
    m->wide_ = true;
  }
  const size_t max_entries = static_cast<size_t>(max_batch) * sparse.max_active;
  if (sparse.enabled) {
    m->sparse_.offsets.assign(max_batch + 1, 0);
    m->sparse_.slot.resize(max_entries);
    m->sparse_.value.resize(max_entries);
    m->sparse_.rows.reserve(max_entries);
    m->sort_.resize(max_entries);
    for (RowBlock& t : m->tables_) {
      t.values = FloatBuffer(max_entries * t.dim);
      t.grads = FloatBuffer(max_entries * t.dim);
    }
  }
  m->params_ = FloatBuffer(m->layout_.total_floats());
  m->grads_ = FloatBuffer(m->layout_.total_floats());
  m->graph_->Bind(m->layout_, m->params_.data(), m->grads_.data());
  return m;
}

void Model::InitParams(uint64_t seed) {
  step_seed_ = seed;
  params_.Fill(0.0f);
  graph_->InitParams(layout_, params_.data(), seed);
}

void Model::BindParams(int g, const float* params) {
  const ParamGroup& group = graph_->groups()[static_cast<size_t>(g)];
  graph_->BindTensors(layout_, group.first_tensor, group.last_tensor, params);
}

std::string Model::Describe() const { return graph_->Describe(); }

const float* Model::Forward(const float* input, int batch) { return Run(input, batch, false); }

const float* Model::Run(const float* input, int batch, bool training,
                        const WeightsNeededFn& before_forward) {
  float* logits = graph_->Forward(input, batch, training, step_seed_, before_forward);
  if (logits != nullptr && wide_) PoolRows(sparse_, batch, tables_.back(), logits, true);
  return logits;
}

LossResult Model::Loss(const float* logits, const int32_t* labels, int batch, float* dlogits,
                       float grad_scale) const {
  if (binary_) return SigmoidCrossEntropy(logits, labels, batch, dlogits, grad_scale);
  return SoftmaxCrossEntropy(logits, labels, batch, num_classes_, dlogits, grad_scale);
}

template <typename SampleAt>
void Model::Gather(const Dataset& data, int n, SampleAt sample_at) {
  PSTRAIN_CHECK(sparse() && data.sparse && n <= max_batch_) << "GatherSparse of " << n;
  // Entries in batch order, each tagged with its feature; sorting the tags
  // gives the distinct features and where each entry's row is.
  size_t e = 0;
  sparse_.offsets[0] = 0;
  for (int i = 0; i < n; ++i) {
    const int64_t s = sample_at(i);
    PSTRAIN_CHECK(e + data.active(s) <= sort_.size()) << "a sample has more features than planned";
    for (int64_t k = data.offsets[s]; k < data.offsets[s + 1]; ++k, ++e) {
      sparse_.value[e] = data.value[k];
      sort_[e] = static_cast<uint64_t>(data.index[k]) << 32 | e;
    }
    sparse_.offsets[i + 1] = static_cast<int64_t>(e);
  }
  std::sort(sort_.begin(), sort_.begin() + e);
  sparse_.rows.clear();
  for (size_t k = 0; k < e; ++k) {
    const uint64_t feature = sort_[k] >> 32;
    if (sparse_.rows.empty() || sparse_.rows.back() != feature) sparse_.rows.push_back(feature);
    sparse_.slot[sort_[k] & 0xffffffffu] = static_cast<uint32_t>(sparse_.rows.size() - 1);
  }
}

void Model::GatherSparse(const Dataset& data, const uint32_t* ids, int n) {
  Gather(data, n, [ids](int i) { return static_cast<int64_t>(ids[i]); });
}

void Model::GatherSparse(const Dataset& data, int64_t first, int n) {
  Gather(data, n, [first](int i) { return first + i; });
}

LossResult Model::TrainStep(const float* input, const int32_t* labels, int batch, float grad_scale,
                            const GradReadyFn& on_grad_ready,
                            const WeightsNeededFn& before_forward) {
  const float* logits = Run(input, batch, true, before_forward);
  if (logits == nullptr) return LossResult{};
  // The rows' gradients are sums over a batch's entries: cleared, then
  // added to (the graph's own gradients need no clearing).
  for (RowBlock& t : tables_) {
    std::fill(t.grads.data(), t.grads.data() + sparse_.rows.size() * t.dim, 0.0f);
  }
  float* dlogits = graph_->output_grad();
  LossResult loss = Loss(logits, labels, batch, dlogits, grad_scale);
  if (wide_) ScatterRowGrads(sparse_, batch, dlogits, &tables_.back());
  graph_->Backward(batch, on_grad_ready);
  return loss;
}

LossResult Model::Evaluate(const float* input, const int32_t* labels, int64_t rows) {
  LossResult total;
  for (int64_t r = 0; r < rows; r += max_batch_) {
    const int n = static_cast<int>(std::min<int64_t>(max_batch_, rows - r));
    const float* logits = Forward(input + r * input_dim_, n);
    LossResult part = Loss(logits, labels + r, n, nullptr, 0.0f);
    total.loss_sum += part.loss_sum;
    total.correct += part.correct;
  }
  return total;
}

LossResult Model::EvaluateBatch(const float* input, const int32_t* labels, int batch,
                                float* scores) {
  const float* logits = Forward(input, batch);
  if (binary_ && scores != nullptr) {
    for (int i = 0; i < batch; ++i) scores[i] = 1.0f / (1.0f + std::exp(-logits[i]));
  }
  return Loss(logits, labels, batch, nullptr, 0.0f);
}

}  // namespace pstrain
