// maxpool: the maximum over size x size windows, stride apart, per channel
// of an HWC image (no padding; windows that would cross the border are
// dropped). Forward remembers where each maximum came from, in scratch.
#pragma once

#include <memory>

#include "common/nn/ops/registry.h"

namespace pstrain {

// The output shape, or channels = 0 when the window does not fit.
ImageShape MaxPoolOutputShape(ImageShape in, int size, int stride);
// out and argmax (each maximum's index within its sample) of `batch` images.
void MaxPoolForward(const float* in, int batch, ImageShape shape, ImageShape out, int size,
                    int stride, float* y, int32_t* argmax);
// din[argmax] += dout, sample by sample.
void MaxPoolBackward(const float* dout, const int32_t* argmax, int batch, int64_t in_size,
                     int64_t out_size, float* din);

class MaxPoolOp : public Op {
 public:
  MaxPoolOp(ImageShape in, int size, int stride);

  std::string Describe() const override;
  ValueShape output() const override { return ValueShape::Of(out_); }
  size_t ScratchBytes(int max_batch) override;
  void Forward(const OpCall& c) override;
  void Backward(const OpCall& c) override;

 private:
  ImageShape in_, out_;
  int size_, stride_;
};

StatusOr<std::unique_ptr<Op>> MakeMaxPool(const OpContext& c);

}  // namespace pstrain
