// dense: y = x W + b over the rows of a matrix, optionally max(0, .) (a
// following relu fused by the graph). W is {fan_in, units}. The kernels
// here also serve conv2d, which multiplies im2col rows by its kernel.
#pragma once

#include <memory>

#include "common/nn/graph_spec.h"
#include "common/nn/ops/registry.h"

namespace pstrain {

// y[rows x units] = act(x[rows x fan_in] w + b).
void DenseForward(const float* x, const float* w, const float* b, float* y, int rows, int fan_in,
                  int units, bool relu);
// Zeroes dy where a fused ReLU's output y was off.
void ReluMask(const float* y, float* dy, size_t n);
// dw = x^T dy + beta dw, db = column sums of dy + beta db (beta 1: added,
// as every gradient; 0: written, by the gradient's first writer).
void DenseBackwardWeights(const float* x, const float* dy, float* dw, float* db, int rows,
                          int fan_in, int units, float beta);
// dx = dy w^T + beta dx (beta 1: added; 0: written, by the first writer
// or into scratch such as conv2d's im2col rows).
void DenseBackwardInput(const float* dy, const float* w, float* dx, int rows, int fan_in, int units,
                        float beta);
// Fills w {fan_in x units} and b {units}; fan_out counts every output a
// weight reaches (units x kernel area), for Xavier.
void InitAffine(InitKind init, Rng& rng, float* w, float* b, int fan_in, int units, int fan_out);

class DenseOp : public Op {
 public:
  DenseOp(int in, int units, InitKind init) : in_(in), units_(units), init_(init) {}
  void FuseRelu() { relu_ = true; }
  bool fused_relu() const { return relu_; }

  std::string Describe() const override;
  ValueShape output() const override { return ValueShape::Flat(units_); }
  std::vector<ParamDecl> Params() const override;
  void InitParams(Rng& rng, const std::vector<float*>& w) const override;
  void Forward(const OpCall& c) override;
  void Backward(const OpCall& c) override;

 private:
  int in_, units_;
  InitKind init_;
  bool relu_ = false;
};

// On an image, a dense layer sees its values flat, as after a flatten.
StatusOr<std::unique_ptr<Op>> MakeDense(const OpContext& c);

}  // namespace pstrain
