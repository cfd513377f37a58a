#include "common/nn/ops/conv2d.h"

#include <algorithm>

#include "common/base/check.h"
#include "common/nn/ops/dense.h"

namespace pstrain {

ImageShape ConvOutputShape(ImageShape in, const ConvOptions& o) {
  const int h = in.height + 2 * o.padding - o.kernel;
  const int w = in.width + 2 * o.padding - o.kernel;
  if (!in.known() || h < 0 || w < 0 || o.stride < 1 || o.filters < 1) return {};
  return {o.filters, h / o.stride + 1, w / o.stride + 1};
}

void Im2Col(const float* in, int n, ImageShape shape, ImageShape out, const ConvOptions& o,
            float* col) {
  const int k = o.kernel, c = shape.channels, row_len = k * k * c;
  const size_t in_size = static_cast<size_t>(shape.size());
  float* row = col;
  for (int b = 0; b < n; ++b) {
    const float* img = in + b * in_size;
    for (int oh = 0; oh < out.height; ++oh) {
      for (int ow = 0; ow < out.width; ++ow, row += row_len) {
        // The kernel's columns that fall inside the image form one run of
        // adjacent pixels per kernel row.
        const int iw0 = ow * o.stride - o.padding;
        const int kw_lo = std::max(0, -iw0), kw_hi = std::min(k, shape.width - iw0);
        for (int kh = 0; kh < k; ++kh) {
          float* dst = row + static_cast<size_t>(kh) * k * c;
          const int ih = oh * o.stride - o.padding + kh;
          if (ih < 0 || ih >= shape.height || kw_hi <= kw_lo) {
            std::fill(dst, dst + k * c, 0.0f);
            continue;
          }
          std::fill(dst, dst + kw_lo * c, 0.0f);
          const float* src = img + (static_cast<size_t>(ih) * shape.width + iw0 + kw_lo) * c;
          std::copy(src, src + (kw_hi - kw_lo) * c, dst + kw_lo * c);
          std::fill(dst + kw_hi * c, dst + k * c, 0.0f);
        }
      }
    }
  }
}

void Col2Im(const float* col, int n, ImageShape shape, ImageShape out, const ConvOptions& o,
            float* din) {
  const int k = o.kernel, c = shape.channels, row_len = k * k * c;
  const size_t in_size = static_cast<size_t>(shape.size());
  const float* row = col;
  for (int b = 0; b < n; ++b) {
    float* img = din + b * in_size;
    for (int oh = 0; oh < out.height; ++oh) {
      for (int ow = 0; ow < out.width; ++ow, row += row_len) {
        const int iw0 = ow * o.stride - o.padding;
        const int kw_lo = std::max(0, -iw0), kw_hi = std::min(k, shape.width - iw0);
        for (int kh = 0; kh < k; ++kh) {
          const int ih = oh * o.stride - o.padding + kh;
          if (ih < 0 || ih >= shape.height || kw_hi <= kw_lo) continue;
          const float* src = row + (static_cast<size_t>(kh) * k + kw_lo) * c;
          float* dst = img + (static_cast<size_t>(ih) * shape.width + iw0 + kw_lo) * c;
          const int len = (kw_hi - kw_lo) * c;
          for (int i = 0; i < len; ++i) dst[i] += src[i];
        }
      }
    }
  }
}

Conv2DOp::Conv2DOp(ImageShape in, const ConvOptions& options, InitKind init)
    : in_(in), out_(ConvOutputShape(in, options)), o_(options), init_(init) {
  PSTRAIN_CHECK(out_.known()) << "conv2d kernel " << o_.kernel << " does not fit " << in.Text();
}

std::string Conv2DOp::Describe() const {
  std::string s = "conv2d " + in_.Text() + "->" + out_.Text() + " k" + std::to_string(o_.kernel);
  if (o_.stride != 1) s += " s" + std::to_string(o_.stride);
  if (o_.padding != 0) s += " p" + std::to_string(o_.padding);
  return s + (relu_ ? " +relu" : "");
}

std::vector<ParamDecl> Conv2DOp::Params() const {
  return {{"weight", {o_.kernel, o_.kernel, in_.channels, o_.filters}}, {"bias", {o_.filters}}};
}

void Conv2DOp::InitParams(Rng& rng, const std::vector<float*>& w) const {
  InitAffine(init_, rng, w[0], w[1], fan_in(), o_.filters, o_.filters * o_.kernel * o_.kernel);
}

size_t Conv2DOp::ScratchBytes(int max_batch) {
  constexpr size_t kMaxColFloats = size_t{1} << 23;  // 32 MiB
  const size_t per_sample = static_cast<size_t>(out_.height) * out_.width * fan_in();
  chunk_ = static_cast<int>(std::clamp<size_t>(kMaxColFloats / per_sample, 1, max_batch));
  return per_sample * chunk_ * sizeof(float);
}

void Conv2DOp::Forward(const OpCall& c) {
  float* col = reinterpret_cast<float*>(c.scratch);
  const int positions = out_.height * out_.width;
  for (int first = 0; first < c.batch; first += chunk_) {
    const int n = std::min(chunk_, c.batch - first);
    Im2Col(c.in[0] + static_cast<size_t>(first) * in_.size(), n, in_, out_, o_, col);
    DenseForward(col, c.w[0], c.w[1], c.out + static_cast<size_t>(first) * out_.size(),
                 n * positions, fan_in(), o_.filters, relu_);
  }
  col_whole_ = c.batch <= chunk_;
}

void Conv2DOp::Backward(const OpCall& c) {
  float* col = reinterpret_cast<float*>(c.scratch);
  if (relu_) ReluMask(c.out, c.dout, static_cast<size_t>(c.batch) * out_.size());
  const int positions = out_.height * out_.width;
  for (int first = 0; first < c.batch; first += chunk_) {
    const int n = std::min(chunk_, c.batch - first);
    if (!col_whole_)
      Im2Col(c.in[0] + static_cast<size_t>(first) * in_.size(), n, in_, out_, o_, col);
    const float* dy = c.dout + static_cast<size_t>(first) * out_.size();
    DenseBackwardWeights(col, dy, c.dw[0], c.dw[1], n * positions, fan_in(), o_.filters,
                         c.dw_add[0] || first > 0 ? 1.0f : 0.0f);
    if (c.din[0] != nullptr) {
      // The rows' gradient overwrites the rows, which the weight gradient
      // has read, then goes back to the pixels it came from.
      DenseBackwardInput(dy, c.w[0], col, n * positions, fan_in(), o_.filters, 0.0f);
      float* din = c.din[0] + static_cast<size_t>(first) * in_.size();
      // Overlapping windows add into a pixel: the first writer clears first.
      if (!c.din_add[0]) std::fill(din, din + static_cast<size_t>(n) * in_.size(), 0.0f);
      Col2Im(col, n, in_, out_, o_, din);
    }
  }
  col_whole_ = false;
}

StatusOr<std::unique_ptr<Op>> MakeConv2D(const OpContext& c) {
  const LayerSpec& s = c.spec;
  const ImageShape shape = c.inputs[0].image;
  if (!shape.known()) return c.NeedsImage();
  RETURN_IF_ERROR(c.AtLeast("filters", s.filters, 1));
  RETURN_IF_ERROR(c.AtLeast("kernel", s.kernel, 1));
  RETURN_IF_ERROR(c.AtLeast("stride", s.stride, 0));  // 0: the default, 1
  if (s.padding < 0 || s.padding >= s.kernel) {
    return InvalidArgument(c.at + ".padding must be >= 0 and < the kernel (" +
                           std::to_string(s.kernel) + "), got " + std::to_string(s.padding));
  }
  const ConvOptions o{s.filters, s.kernel, s.stride == 0 ? 1 : s.stride, s.padding};
  const ImageShape out = ConvOutputShape(shape, o);
  if (!out.known()) {
    return InvalidArgument(c.at + ".kernel is " + std::to_string(s.kernel) + ", larger than its " +
                           shape.Text() + " input with padding " + std::to_string(s.padding));
  }
  if (out.size() > (int64_t{1} << 26)) {
    return InvalidArgument(c.at + ".filters: the output " + out.Text() +
                           " is too large (more than 2^26 values a sample)");
  }
  return std::unique_ptr<Op>(std::make_unique<Conv2DOp>(shape, o, s.init));
}

}  // namespace pstrain
