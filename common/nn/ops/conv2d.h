// conv2d: 2-D convolution (cross-correlation, as in every framework) of an
// HWC image with `filters` kernels of kernel x kernel x channels; output
// HWC with one channel per filter, optionally max(0, .) (a following relu
// fused by the graph). Weight {kernel, kernel, in channels, filters}, bias
// {filters}. Computed as im2col of up to a chunk of samples into a
// (samples*outH*outW) x (kernel*kernel*channels) matrix and one sgemm; the
// chunk is the whole batch unless that matrix would pass 32 MiB.
#pragma once

#include <memory>

#include "common/nn/graph_spec.h"
#include "common/nn/ops/registry.h"

namespace pstrain {

struct ConvOptions {
  int filters = 1;
  int kernel = 1;  // square kernel side
  int stride = 1;
  int padding = 0;  // zeros added on every side
};

// The output shape, or channels = 0 when the kernel does not fit.
ImageShape ConvOutputShape(ImageShape in, const ConvOptions& o);
// The im2col rows of samples [0, n) of `in` into `col`: one row of
// kernel*kernel*channels values per output position.
void Im2Col(const float* in, int n, ImageShape shape, ImageShape out, const ConvOptions& o,
            float* col);
// Adds the im2col rows `col` of samples [0, n) back into their pixels of `din`.
void Col2Im(const float* col, int n, ImageShape shape, ImageShape out, const ConvOptions& o,
            float* din);

class Conv2DOp : public Op {
 public:
  Conv2DOp(ImageShape in, const ConvOptions& options, InitKind init);
  void FuseRelu() { relu_ = true; }

  std::string Describe() const override;
  ValueShape output() const override { return ValueShape::Of(out_); }
  std::vector<ParamDecl> Params() const override;
  void InitParams(Rng& rng, const std::vector<float*>& w) const override;
  size_t ScratchBytes(int max_batch) override;
  void Forward(const OpCall& c) override;
  void Backward(const OpCall& c) override;

  int chunk() const { return chunk_; }

 private:
  int fan_in() const { return o_.kernel * o_.kernel * in_.channels; }

  ImageShape in_, out_;
  ConvOptions o_;
  InitKind init_;
  bool relu_ = false;
  int chunk_ = 1;           // samples per im2col matrix and sgemm
  bool col_whole_ = false;  // the scratch holds the last Forward's whole batch
};

StatusOr<std::unique_ptr<Op>> MakeConv2D(const OpContext& c);

}  // namespace pstrain
