#include "common/nn/model.h"

#include <algorithm>
#include <cmath>

#include "common/base/check.h"

namespace pstrain {

namespace {

std::string At(size_t i) { return "model.layers[" + std::to_string(i) + "]"; }

Status NeedsImage(size_t i, const std::string& type, int dim) {
  return InvalidArgument(At(i) + " is a " + type +
                         " layer, which needs an image, but its input is " + std::to_string(dim) +
                         " flat features (after a flatten or dense layer, or data without an "
                         "image shape: give data.image_shape for CSV data)");
}

// An error naming model.layers[i].`key` unless value >= min.
Status AtLeast(size_t i, const char* key, int value, int min) {
  if (value >= min) return OkStatus();
  return InvalidArgument(At(i) + "." + key + " must be >= " + std::to_string(min) + ", got " +
                         std::to_string(value));
}

}  // namespace

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
  if (specs.empty()) return InvalidArgument("model.layers is empty: list at least one dense layer");
  if (max_batch < 1) return InvalidArgument("batch size must be >= 1");
  if (image.known() && image.size() != input_dim) {
    return InvalidArgument("the data's image shape " + image.Text() + " has " +
                           std::to_string(image.size()) + " values but a sample has " +
                           std::to_string(input_dim));
  }
  std::unique_ptr<Model> m(new Model());
  m->input_dim_ = input_dim;
  m->num_classes_ = num_classes;
  m->max_batch_ = max_batch;
  int dim = input_dim;
  ImageShape shape = image;  // channels = 0 once the values are flat
  int dense_count = 0, conv_count = 0;
  if (sparse.enabled && specs[0].type != "embedding") {
    return InvalidArgument(At(0) + ".type is \"" + specs[0].type +
                           "\" but sparse (LibSVM) data starts with an embedding layer, e.g. "
                           "{type = \"embedding\", dim = 1} for logistic regression");
  }
  if (sparse.max_active < 1) return InvalidArgument("no sample has any feature");
  m->tables_.reserve(2);
  for (size_t i = 0; i < specs.size(); ++i) {
    const LayerSpec& s = specs[i];
    const bool relu_next = i + 1 < specs.size() && specs[i + 1].type == "relu";
    if (s.type == "embedding") {
      if (!sparse.enabled || i != 0) {
        return InvalidArgument(At(i) + " is an embedding layer, which only sparse (LibSVM) data " +
                               "takes, as the first layer");
      }
      RETURN_IF_ERROR(AtLeast(i, "dim", s.dim, 1));
      RowBlock& block = m->tables_.emplace_back();
      block.table = kEmbeddingTable;
      block.dim = s.dim;
      auto layer = std::make_unique<EmbeddingLayer>(input_dim, s.dim, &m->sparse_, &block);
      layer->DeclareParams("embedding", &m->layout_);
      m->layers_.push_back(std::move(layer));
      dim = s.dim;
      ++dense_count;
    } else if (s.type == "dense") {
      RETURN_IF_ERROR(AtLeast(i, "units", s.units, 1));
      // On an image, a dense layer sees its values flat, as after a flatten.
      shape = ImageShape{};
      auto layer = std::make_unique<DenseLayer>(dim, s.units, relu_next, s.init);
      layer->DeclareParams("dense" + std::to_string(++dense_count), &m->layout_);
      m->layers_.push_back(std::move(layer));
      dim = s.units;
      if (relu_next) ++i;
    } else if (s.type == "conv2d") {
      if (!shape.known()) return NeedsImage(i, s.type, dim);
      RETURN_IF_ERROR(AtLeast(i, "filters", s.filters, 1));
      RETURN_IF_ERROR(AtLeast(i, "kernel", s.kernel, 1));
      RETURN_IF_ERROR(AtLeast(i, "stride", s.stride, 0));  // 0: the default, 1
      if (s.padding < 0 || s.padding >= s.kernel) {
        return InvalidArgument(At(i) + ".padding must be >= 0 and < the kernel (" +
                               std::to_string(s.kernel) + "), got " + std::to_string(s.padding));
      }
      const ConvOptions o{s.filters, s.kernel, s.stride == 0 ? 1 : s.stride, s.padding};
      const ImageShape out = Conv2DLayer::OutputShape(shape, o);
      if (!out.known()) {
        return InvalidArgument(At(i) + ".kernel is " + std::to_string(s.kernel) +
                               ", larger than its " + shape.Text() + " input with padding " +
                               std::to_string(s.padding));
      }
      if (out.size() > (int64_t{1} << 26)) {
        return InvalidArgument(At(i) + ".filters: the output " + out.Text() +
                               " is too large (more than 2^26 values a sample)");
      }
      auto layer = std::make_unique<Conv2DLayer>(shape, o, relu_next, s.init);
      layer->DeclareParams("conv" + std::to_string(++conv_count), &m->layout_);
      m->layers_.push_back(std::move(layer));
      shape = out;
      dim = static_cast<int>(out.size());
      if (relu_next) ++i;
    } else if (s.type == "maxpool") {
      if (!shape.known()) return NeedsImage(i, s.type, dim);
      RETURN_IF_ERROR(AtLeast(i, "size", s.size, 1));
      RETURN_IF_ERROR(AtLeast(i, "stride", s.stride, 0));  // 0: the default, the size
      const int stride = s.stride == 0 ? s.size : s.stride;
      const ImageShape out = MaxPool2DLayer::OutputShape(shape, s.size, stride);
      if (!out.known()) {
        return InvalidArgument(At(i) + ".size is " + std::to_string(s.size) + ", larger than its " +
                               shape.Text() + " input");
      }
      m->layers_.push_back(std::make_unique<MaxPool2DLayer>(shape, s.size, stride));
      shape = out;
      dim = static_cast<int>(out.size());
    } else if (s.type == "flatten") {
      // Already flat values need no layer.
      if (shape.known()) m->layers_.push_back(std::make_unique<FlattenLayer>(shape));
      shape = ImageShape{};
    } else if (s.type == "dropout") {
      if (!(s.rate >= 0.0 && s.rate < 1.0)) {
        return InvalidArgument(At(i) + ".rate must be >= 0 and < 1, got " + std::to_string(s.rate));
      }
      m->layers_.push_back(std::make_unique<DropoutLayer>(dim, s.rate, 1000 + i));
    } else if (s.type == "relu") {
      m->layers_.push_back(std::make_unique<ReluLayer>(dim));
    } else {
      return InvalidArgument(
          At(i) + ".type is \"" + s.type +
          "\"; valid types: dense, relu, conv2d, maxpool, flatten, dropout, embedding");
    }
  }
  if (dense_count + conv_count == 0) {
    return InvalidArgument("model.layers has no dense layer (nor conv2d): nothing to train");
  }
  m->binary_ = dim == 1 && num_classes == 2;
  if (dim != num_classes && !m->binary_) {
    return InvalidArgument(
        "model.layers: the last layer has " + std::to_string(dim) + " outputs but the data has " +
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
  // A sparse input is never a dense array.
  int widest = sparse.enabled ? 1 : input_dim;
  for (auto& layer : m->layers_) {
    layer->Bind(m->layout_, m->params_.data(), m->grads_.data());
    layer->Reserve(max_batch);
    m->acts_.emplace_back(static_cast<size_t>(max_batch) * layer->out_dim());
    widest = std::max(widest, layer->out_dim());
  }
  for (FloatBuffer& b : m->dbuf_) b = FloatBuffer(static_cast<size_t>(max_batch) * widest);
  return m;
}

void Model::InitParams(uint64_t seed) {
  step_seed_ = seed;
  params_.Fill(0.0f);
  for (size_t i = 0; i < layers_.size(); ++i) {
    Rng rng(seed, 1000 + i);
    layers_[i]->InitParams(rng);
  }
}

void Model::BindLayerParams(int i, float* params) {
  layers_[static_cast<size_t>(i)]->Bind(layout_, params, grads_.data());
}

std::string Model::Describe() const {
  std::string s;
  for (const auto& layer : layers_) {
    if (!s.empty()) s += ", ";
    s += layer->Describe();
  }
  return s;
}

const float* Model::Forward(const float* input, int batch) { return Run(input, batch, false); }

const float* Model::Run(const float* input, int batch, bool training,
                        const WeightsNeededFn& before_forward) {
  const float* in = input;
  for (size_t i = 0; i < layers_.size(); ++i) {
    if (before_forward && layers_[i]->first_tensor() >= 0 &&
        !before_forward(layers_[i]->first_tensor(), layers_[i]->last_tensor())) {
      return nullptr;
    }
    layers_[i]->SetMode(training, step_seed_);
    layers_[i]->Forward(in, acts_[i].data(), batch);
    in = acts_[i].data();
  }
  if (wide_) PoolRows(sparse_, batch, tables_.back(), acts_.back().data(), true);
  return in;
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
  float* dcur = dbuf_[0].data();
  LossResult loss = Loss(logits, labels, batch, dcur, grad_scale);
  if (wide_) ScatterRowGrads(sparse_, batch, dcur, &tables_.back());
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
