#include "common/nn/layers.h"

#include <algorithm>
#include <cmath>

#include "common/nn/blas.h"
#include "common/base/check.h"

namespace pstrain {

void AffineLayer::DeclareWeights(const std::string& prefix, std::vector<int64_t> weight_shape,
                                 int kernel_area, TensorLayout* layout) {
  int64_t rows = 1;
  for (size_t i = 0; i + 1 < weight_shape.size(); ++i) rows *= weight_shape[i];
  fan_in_ = static_cast<int>(rows);
  units_ = static_cast<int>(weight_shape.back());
  fan_out_ = units_ * kernel_area;
  weight_index_ = layout->Add(prefix + ".weight", std::move(weight_shape));
  bias_index_ = layout->Add(prefix + ".bias", {units_});
}

void AffineLayer::Bind(const TensorLayout& layout, float* params, float* grads) {
  w_ = params + layout[weight_index_].offset;
  b_ = params + layout[bias_index_].offset;
  dw_ = grads + layout[weight_index_].offset;
  db_ = grads + layout[bias_index_].offset;
}

void AffineLayer::InitParams(Rng& rng) {
  const size_t nw = static_cast<size_t>(fan_in_) * units_;
  const double fan_in = fan_in_;
  switch (init_) {
    case InitKind::kHe: {
      const double sd = std::sqrt(2.0 / fan_in);
      for (size_t i = 0; i < nw; ++i) w_[i] = static_cast<float>(rng.Normal() * sd);
      std::fill(b_, b_ + units_, 0.0f);
      break;
    }
    case InitKind::kTorch: {
      const float bound = static_cast<float>(1.0 / std::sqrt(fan_in));
      for (size_t i = 0; i < nw; ++i) w_[i] = rng.Uniform(-bound, bound);
      for (int i = 0; i < units_; ++i) b_[i] = rng.Uniform(-bound, bound);
      break;
    }
    case InitKind::kXavier: {
      const float bound = static_cast<float>(std::sqrt(6.0 / (fan_in + fan_out_)));
      for (size_t i = 0; i < nw; ++i) w_[i] = rng.Uniform(-bound, bound);
      std::fill(b_, b_ + units_, 0.0f);
      break;
    }
  }
}

void AffineLayer::AffineForward(const float* x, float* out, int rows) const {
  const int n = units_;
  Gemm(Trans::kNo, Trans::kNo, rows, n, fan_in_, 1.0f, x, fan_in_, w_, n, 0.0f, out, n);
  // Bias and ReLU in one pass over the product.
  const float* __restrict b = b_;
  for (int r = 0; r < rows; ++r) {
    float* __restrict row = out + static_cast<size_t>(r) * n;
    if (fuse_relu_) {
      for (int c = 0; c < n; ++c) row[c] = std::max(row[c] + b[c], 0.0f);
    } else {
      for (int c = 0; c < n; ++c) row[c] += b[c];
    }
  }
}

void AffineLayer::MaskRelu(const float* out, float* dout, size_t n) const {
  if (!fuse_relu_) return;
  for (size_t i = 0; i < n; ++i) dout[i] = out[i] > 0.0f ? dout[i] : 0.0f;
}

void AffineLayer::AffineBackward(const float* x, const float* dout, float* dx, int rows,
                                 bool accumulate) {
  const int n = units_;
  // dW[fan_in x units] = x^T dout
  Gemm(Trans::kYes, Trans::kNo, fan_in_, n, rows, 1.0f, x, fan_in_, dout, n,
       accumulate ? 1.0f : 0.0f, dw_, n);
  if (!accumulate) std::fill(db_, db_ + n, 0.0f);
  for (int r = 0; r < rows; ++r) {
    const float* row = dout + static_cast<size_t>(r) * n;
    for (int c = 0; c < n; ++c) db_[c] += row[c];
  }
  if (dx != nullptr) {
    // dx[rows x fan_in] = dout W^T
    Gemm(Trans::kNo, Trans::kYes, rows, fan_in_, n, 1.0f, dout, n, w_, n, 0.0f, dx, fan_in_);
  }
}

std::string DenseLayer::Describe() const {
  return "dense " + std::to_string(in_dim()) + "->" + std::to_string(out_dim()) +
         (fused_relu() ? " +relu" : "");
}

void DenseLayer::DeclareParams(const std::string& prefix, TensorLayout* layout) {
  DeclareWeights(prefix, {in_dim(), out_dim()}, 1, layout);
}

void DenseLayer::Forward(const float* in, float* out, int batch) { AffineForward(in, out, batch); }

void DenseLayer::Backward(const float* in, const float* out, float* dout, float* din, int batch) {
  MaskRelu(out, dout, static_cast<size_t>(batch) * out_dim());
  AffineBackward(in, dout, din, batch, false);
}

ImageShape Conv2DLayer::OutputShape(ImageShape in, const ConvOptions& o) {
  const int h = in.height + 2 * o.padding - o.kernel;
  const int w = in.width + 2 * o.padding - o.kernel;
  if (!in.known() || h < 0 || w < 0 || o.stride < 1 || o.filters < 1) return {};
  return {o.filters, h / o.stride + 1, w / o.stride + 1};
}

Conv2DLayer::Conv2DLayer(ImageShape in, const ConvOptions& options, bool fuse_relu, InitKind init)
    : AffineLayer(static_cast<int>(in.size()), static_cast<int>(OutputShape(in, options).size()),
                  fuse_relu, init),
      in_(in),
      out_(OutputShape(in, options)),
      o_(options) {
  PSTRAIN_CHECK(out_.known()) << "conv2d kernel " << o_.kernel << " does not fit " << in.Text();
}

std::string Conv2DLayer::Describe() const {
  std::string s = "conv2d " + in_.Text() + "->" + out_.Text() + " k" + std::to_string(o_.kernel);
  if (o_.stride != 1) s += " s" + std::to_string(o_.stride);
  if (o_.padding != 0) s += " p" + std::to_string(o_.padding);
  return s + (fused_relu() ? " +relu" : "");
}

void Conv2DLayer::DeclareParams(const std::string& prefix, TensorLayout* layout) {
  DeclareWeights(prefix, {o_.kernel, o_.kernel, in_.channels, o_.filters}, o_.kernel * o_.kernel,
                 layout);
}

void Conv2DLayer::Reserve(int max_batch) {
  constexpr size_t kMaxColFloats = size_t{1} << 23;  // 32 MiB
  const size_t per_sample = static_cast<size_t>(out_.height) * out_.width * fan_in();
  chunk_ = static_cast<int>(std::clamp<size_t>(kMaxColFloats / per_sample, 1, max_batch));
  col_ = FloatBuffer(per_sample * chunk_);
}

void Conv2DLayer::Im2Col(const float* in, int n) {
  const int k = o_.kernel, c = in_.channels, row_len = fan_in();
  const size_t in_size = static_cast<size_t>(in_dim());
  float* row = col_.data();
  for (int b = 0; b < n; ++b) {
    const float* img = in + b * in_size;
    for (int oh = 0; oh < out_.height; ++oh) {
      for (int ow = 0; ow < out_.width; ++ow, row += row_len) {
        // The kernel's columns that fall inside the image form one run of
        // adjacent pixels per kernel row.
        const int iw0 = ow * o_.stride - o_.padding;
        const int kw_lo = std::max(0, -iw0), kw_hi = std::min(k, in_.width - iw0);
        for (int kh = 0; kh < k; ++kh) {
          float* dst = row + static_cast<size_t>(kh) * k * c;
          const int ih = oh * o_.stride - o_.padding + kh;
          if (ih < 0 || ih >= in_.height || kw_hi <= kw_lo) {
            std::fill(dst, dst + k * c, 0.0f);
            continue;
          }
          std::fill(dst, dst + kw_lo * c, 0.0f);
          const float* src = img + (static_cast<size_t>(ih) * in_.width + iw0 + kw_lo) * c;
          std::copy(src, src + (kw_hi - kw_lo) * c, dst + kw_lo * c);
          std::fill(dst + kw_hi * c, dst + k * c, 0.0f);
        }
      }
    }
  }
}

void Conv2DLayer::Col2Im(float* din, int n) {
  const int k = o_.kernel, c = in_.channels, row_len = fan_in();
  const size_t in_size = static_cast<size_t>(in_dim());
  std::fill(din, din + n * in_size, 0.0f);
  const float* row = col_.data();
  for (int b = 0; b < n; ++b) {
    float* img = din + b * in_size;
    for (int oh = 0; oh < out_.height; ++oh) {
      for (int ow = 0; ow < out_.width; ++ow, row += row_len) {
        const int iw0 = ow * o_.stride - o_.padding;
        const int kw_lo = std::max(0, -iw0), kw_hi = std::min(k, in_.width - iw0);
        for (int kh = 0; kh < k; ++kh) {
          const int ih = oh * o_.stride - o_.padding + kh;
          if (ih < 0 || ih >= in_.height || kw_hi <= kw_lo) continue;
          const float* src = row + (static_cast<size_t>(kh) * k + kw_lo) * c;
          float* dst = img + (static_cast<size_t>(ih) * in_.width + iw0 + kw_lo) * c;
          const int len = (kw_hi - kw_lo) * c;
          for (int i = 0; i < len; ++i) dst[i] += src[i];
        }
      }
    }
  }
}

void Conv2DLayer::Forward(const float* in, float* out, int batch) {
  PSTRAIN_CHECK(col_.size() > 0) << "Reserve() was not called";
  const int positions = out_.height * out_.width;
  for (int first = 0; first < batch; first += chunk_) {
    const int n = std::min(chunk_, batch - first);
    Im2Col(in + static_cast<size_t>(first) * in_dim(), n);
    AffineForward(col_.data(), out + static_cast<size_t>(first) * out_dim(), n * positions);
  }
  col_whole_ = batch <= chunk_;
}

void Conv2DLayer::Backward(const float* in, const float* out, float* dout, float* din, int batch) {
  MaskRelu(out, dout, static_cast<size_t>(batch) * out_dim());
  const int positions = out_.height * out_.width;
  for (int first = 0; first < batch; first += chunk_) {
    const int n = std::min(chunk_, batch - first);
    if (!col_whole_) Im2Col(in + static_cast<size_t>(first) * in_dim(), n);
    // The weight gradient reads the im2col rows before their gradient
    // overwrites them.
    AffineBackward(col_.data(), dout + static_cast<size_t>(first) * out_dim(),
                   din != nullptr ? col_.data() : nullptr, n * positions, first > 0);
    if (din != nullptr) Col2Im(din + static_cast<size_t>(first) * in_dim(), n);
  }
  col_whole_ = false;
}

ImageShape MaxPool2DLayer::OutputShape(ImageShape in, int size, int stride) {
  if (!in.known() || size < 1 || stride < 1 || size > in.height || size > in.width) return {};
  return {in.channels, (in.height - size) / stride + 1, (in.width - size) / stride + 1};
}

MaxPool2DLayer::MaxPool2DLayer(ImageShape in, int size, int stride)
    : Layer(static_cast<int>(in.size()), static_cast<int>(OutputShape(in, size, stride).size())),
      in_(in),
      out_(OutputShape(in, size, stride)),
      size_(size),
      stride_(stride) {
  PSTRAIN_CHECK(out_.known()) << "maxpool " << size << " does not fit " << in.Text();
}

std::string MaxPool2DLayer::Describe() const {
  std::string s = "maxpool " + in_.Text() + "->" + out_.Text() + " " + std::to_string(size_);
  if (stride_ != size_) s += " s" + std::to_string(stride_);
  return s;
}

void MaxPool2DLayer::Reserve(int max_batch) {
  argmax_.assign(static_cast<size_t>(max_batch) * out_dim(), 0);
}

namespace {

// The maxima of one window for each of `c` channels, and where they are.
// Branch-free over restrict pointers, so the channels vectorize.
void PoolWindow(const float* __restrict img, int32_t corner, int size, int32_t row_step, int c,
                float* __restrict o, int32_t* __restrict a) {
  for (int ch = 0; ch < c; ++ch) {
    o[ch] = img[corner + ch];
    a[ch] = corner + ch;
  }
  for (int kh = 0; kh < size; ++kh) {
    for (int kw = 0; kw < size; ++kw) {
      const int32_t at = corner + kh * row_step + kw * c;
      for (int ch = 0; ch < c; ++ch) {
        const float v = img[at + ch];
        const int32_t more = -static_cast<int32_t>(v > o[ch]);  // all ones or zero
        o[ch] = std::max(o[ch], v);
        a[ch] = (a[ch] & ~more) | ((at + ch) & more);
      }
    }
  }
}

}  // namespace

void MaxPool2DLayer::Forward(const float* in, float* out, int batch) {
  const int c = in_.channels;
  for (int b = 0; b < batch; ++b) {
    const float* img = in + static_cast<size_t>(b) * in_dim();
    float* o = out + static_cast<size_t>(b) * out_dim();
    int32_t* a = argmax_.data() + static_cast<size_t>(b) * out_dim();
    for (int oh = 0; oh < out_.height; ++oh) {
      for (int ow = 0; ow < out_.width; ++ow, o += c, a += c) {
        PoolWindow(img, (oh * stride_ * in_.width + ow * stride_) * c, size_, in_.width * c, c, o,
                   a);
      }
    }
  }
}

void MaxPool2DLayer::Backward(const float* in, const float* out, float* dout, float* din,
                              int batch) {
  (void)in;
  (void)out;
  if (din == nullptr) return;
  std::fill(din, din + static_cast<size_t>(batch) * in_dim(), 0.0f);
  for (int b = 0; b < batch; ++b) {
    float* d = din + static_cast<size_t>(b) * in_dim();
    const float* g = dout + static_cast<size_t>(b) * out_dim();
    const int32_t* a = argmax_.data() + static_cast<size_t>(b) * out_dim();
    for (int i = 0; i < out_dim(); ++i) d[a[i]] += g[i];
  }
}

std::string FlattenLayer::Describe() const {
  return "flatten " + in_.Text() + "->" + std::to_string(out_dim());
}

void FlattenLayer::Forward(const float* in, float* out, int batch) {
  std::copy(in, in + static_cast<size_t>(batch) * in_dim(), out);
}

void FlattenLayer::Backward(const float* in, const float* out, float* dout, float* din, int batch) {
  (void)in;
  (void)out;
  if (din != nullptr) std::copy(dout, dout + static_cast<size_t>(batch) * in_dim(), din);
}

std::string DropoutLayer::Describe() const {
  std::string rate = std::to_string(rate_);
  rate.erase(rate.find_last_not_of('0') + 1);
  return "dropout " + rate;
}

void DropoutLayer::Reserve(int max_batch) {
  mask_ = FloatBuffer(static_cast<size_t>(max_batch) * in_dim());
}

void DropoutLayer::SetMode(bool training, uint64_t step_seed) {
  training_ = training;
  step_seed_ = step_seed;
}

void DropoutLayer::Forward(const float* in, float* out, int batch) {
  const size_t total = static_cast<size_t>(batch) * in_dim();
  if (!training_ || rate_ <= 0.0) {
    std::copy(in, in + total, out);
    return;
  }
  Rng rng(step_seed_, stream_);
  const float keep_scale = static_cast<float>(1.0 / (1.0 - rate_));
  // Compare 53-bit uniforms against the rate in integer form: one draw a value.
  const uint64_t threshold = static_cast<uint64_t>(rate_ * 9007199254740992.0);  // 2^53
  float* mask = mask_.data();
  for (size_t i = 0; i < total; ++i) {
    mask[i] = (rng.NextU64() >> 11) < threshold ? 0.0f : keep_scale;
    out[i] = in[i] * mask[i];
  }
}

void DropoutLayer::Backward(const float* in, const float* out, float* dout, float* din, int batch) {
  (void)in;
  (void)out;
  if (din == nullptr) return;
  const size_t total = static_cast<size_t>(batch) * in_dim();
  if (!training_ || rate_ <= 0.0) {
    std::copy(dout, dout + total, din);
    return;
  }
  for (size_t i = 0; i < total; ++i) din[i] = dout[i] * mask_[i];
}

void ReluLayer::Forward(const float* in, float* out, int batch) {
  const size_t total = static_cast<size_t>(batch) * out_dim();
  for (size_t i = 0; i < total; ++i) out[i] = in[i] > 0.0f ? in[i] : 0.0f;
}

void ReluLayer::Backward(const float* in, const float* out, float* dout, float* din, int batch) {
  (void)out;
  if (din == nullptr) return;
  const size_t total = static_cast<size_t>(batch) * out_dim();
  for (size_t i = 0; i < total; ++i) din[i] = in[i] > 0.0f ? dout[i] : 0.0f;
}

LossResult SoftmaxCrossEntropy(const float* logits, const int32_t* labels, int batch, int classes,
                               float* dlogits, float grad_scale) {
  LossResult result;
  for (int r = 0; r < batch; ++r) {
    const float* z = logits + static_cast<size_t>(r) * classes;
    const int32_t label = labels[r];
    PSTRAIN_CHECK(label >= 0 && label < classes) << "label " << label << " classes " << classes;
    int arg = 0;
    float zmax = z[0];
    for (int c = 1; c < classes; ++c) {
      if (z[c] > zmax) {
        zmax = z[c];
        arg = c;
      }
    }
    if (arg == label) ++result.correct;
    double sum = 0;
    for (int c = 0; c < classes; ++c) sum += std::exp(static_cast<double>(z[c] - zmax));
    const double log_sum = std::log(sum);
    result.loss_sum += log_sum - static_cast<double>(z[label] - zmax);
    if (dlogits != nullptr) {
      float* d = dlogits + static_cast<size_t>(r) * classes;
      for (int c = 0; c < classes; ++c) {
        const double p = std::exp(static_cast<double>(z[c] - zmax) - log_sum);
        d[c] = static_cast<float>(p) * grad_scale;
      }
      d[label] -= grad_scale;
    }
  }
  return result;
}

LossResult SigmoidCrossEntropy(const float* logits, const int32_t* labels, int batch,
                               float* dlogits, float grad_scale) {
  LossResult result;
  for (int r = 0; r < batch; ++r) {
    const double z = logits[r];
    const int32_t y = labels[r];
    PSTRAIN_CHECK(y == 0 || y == 1) << "binary label " << y;
    if ((z > 0) == (y == 1)) ++result.correct;
    // max(z, 0) - z y + log(1 + exp(-|z|)): stable for any z.
    result.loss_sum += std::max(z, 0.0) - z * y + std::log1p(std::exp(-std::abs(z)));
    if (dlogits != nullptr) {
      const double p = 1.0 / (1.0 + std::exp(-z));
      dlogits[r] = static_cast<float>((p - y) * grad_scale);
    }
  }
  return result;
}

void PoolRows(const SparseBatch& b, int batch, const RowBlock& rows, float* out, bool accumulate) {
  const int dim = rows.dim;
  const float* values = rows.values.data();
  for (int i = 0; i < batch; ++i) {
    float* __restrict o = out + static_cast<size_t>(i) * dim;
    if (!accumulate) std::fill(o, o + dim, 0.0f);
    for (int64_t e = b.offsets[i]; e < b.offsets[i + 1]; ++e) {
      const float v = b.value[e];
      const float* __restrict row = values + static_cast<size_t>(b.slot[e]) * dim;
      for (int d = 0; d < dim; ++d) o[d] += v * row[d];
    }
  }
}

void ScatterRowGrads(const SparseBatch& b, int batch, const float* dout, RowBlock* rows) {
  const int dim = rows->dim;
  float* grads = rows->grads.data();
  std::fill(grads, grads + b.rows.size() * dim, 0.0f);
  for (int i = 0; i < batch; ++i) {
    const float* __restrict g = dout + static_cast<size_t>(i) * dim;
    for (int64_t e = b.offsets[i]; e < b.offsets[i + 1]; ++e) {
      const float v = b.value[e];
      float* __restrict row = grads + static_cast<size_t>(b.slot[e]) * dim;
      for (int d = 0; d < dim; ++d) row[d] += v * g[d];
    }
  }
}

std::string EmbeddingLayer::Describe() const {
  return "embedding " + std::to_string(in_dim()) + "x" + std::to_string(out_dim());
}

void EmbeddingLayer::DeclareParams(const std::string& prefix, TensorLayout* layout) {
  bias_index_ = layout->Add(prefix + ".bias", {out_dim()});
}

void EmbeddingLayer::Bind(const TensorLayout& layout, float* params, float* grads) {
  b_ = params + layout[bias_index_].offset;
  db_ = grads + layout[bias_index_].offset;
}

void EmbeddingLayer::Forward(const float* in, float* out, int batch) {
  (void)in;
  const int dim = out_dim();
  for (int i = 0; i < batch; ++i) std::copy(b_, b_ + dim, out + static_cast<size_t>(i) * dim);
  PoolRows(*batch_, batch, *rows_, out, true);
}

void EmbeddingLayer::Backward(const float* in, const float* out, float* dout, float* din,
                              int batch) {
  (void)in;
  (void)out;
  (void)din;
  const int dim = out_dim();
  std::fill(db_, db_ + dim, 0.0f);
  for (int i = 0; i < batch; ++i) {
    for (int d = 0; d < dim; ++d) db_[d] += dout[static_cast<size_t>(i) * dim + d];
  }
  ScatterRowGrads(*batch_, batch, dout, rows_);
}

}  // namespace pstrain
