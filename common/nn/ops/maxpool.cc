#include "common/nn/ops/maxpool.h"

#include <algorithm>

#include "common/base/check.h"

namespace pstrain {

ImageShape MaxPoolOutputShape(ImageShape in, int size, int stride) {
  if (!in.known() || size < 1 || stride < 1 || size > in.height || size > in.width) return {};
  return {in.channels, (in.height - size) / stride + 1, (in.width - size) / stride + 1};
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

void MaxPoolForward(const float* in, int batch, ImageShape shape, ImageShape out, int size,
                    int stride, float* y, int32_t* argmax) {
  const int c = shape.channels;
  for (int b = 0; b < batch; ++b) {
    const float* img = in + static_cast<size_t>(b) * shape.size();
    float* o = y + static_cast<size_t>(b) * out.size();
    int32_t* a = argmax + static_cast<size_t>(b) * out.size();
    for (int oh = 0; oh < out.height; ++oh) {
      for (int ow = 0; ow < out.width; ++ow, o += c, a += c) {
        PoolWindow(img, (oh * stride * shape.width + ow * stride) * c, size, shape.width * c, c, o,
                   a);
      }
    }
  }
}

void MaxPoolBackward(const float* dout, const int32_t* argmax, int batch, int64_t in_size,
                     int64_t out_size, float* din) {
  for (int b = 0; b < batch; ++b) {
    float* d = din + static_cast<size_t>(b) * in_size;
    const float* g = dout + static_cast<size_t>(b) * out_size;
    const int32_t* a = argmax + static_cast<size_t>(b) * out_size;
    for (int64_t i = 0; i < out_size; ++i) d[a[i]] += g[i];
  }
}

MaxPoolOp::MaxPoolOp(ImageShape in, int size, int stride)
    : in_(in), out_(MaxPoolOutputShape(in, size, stride)), size_(size), stride_(stride) {
  PSTRAIN_CHECK(out_.known()) << "maxpool " << size << " does not fit " << in.Text();
}

std::string MaxPoolOp::Describe() const {
  std::string s = "maxpool " + in_.Text() + "->" + out_.Text() + " " + std::to_string(size_);
  if (stride_ != size_) s += " s" + std::to_string(stride_);
  return s;
}

size_t MaxPoolOp::ScratchBytes(int max_batch) {
  return static_cast<size_t>(max_batch) * out_.size() * sizeof(int32_t);
}

void MaxPoolOp::Forward(const OpCall& c) {
  MaxPoolForward(c.in[0], c.batch, in_, out_, size_, stride_, c.out,
                 reinterpret_cast<int32_t*>(c.scratch));
}

void MaxPoolOp::Backward(const OpCall& c) {
  if (c.din[0] == nullptr) return;
  if (!c.din_add[0])
    std::fill(c.din[0], c.din[0] + static_cast<size_t>(c.batch) * in_.size(), 0.0f);
  MaxPoolBackward(c.dout, reinterpret_cast<const int32_t*>(c.scratch), c.batch, in_.size(),
                  out_.size(), c.din[0]);
}

StatusOr<std::unique_ptr<Op>> MakeMaxPool(const OpContext& c) {
  const ImageShape shape = c.inputs[0].image;
  if (!shape.known()) return c.NeedsImage();
  RETURN_IF_ERROR(c.AtLeast("size", c.spec.size, 1));
  RETURN_IF_ERROR(c.AtLeast("stride", c.spec.stride, 0));  // 0: the default, the size
  const int stride = c.spec.stride == 0 ? c.spec.size : c.spec.stride;
  const ImageShape out = MaxPoolOutputShape(shape, c.spec.size, stride);
  if (!out.known()) {
    return InvalidArgument(c.at + ".size is " + std::to_string(c.spec.size) + ", larger than its " +
                           shape.Text() + " input");
  }
  return std::unique_ptr<Op>(std::make_unique<MaxPoolOp>(shape, c.spec.size, stride));
}

}  // namespace pstrain
