// Activations applied value by value: relu, gelu, sigmoid, tanh. Each has
// its kernels in its own file (relu.cc, ...); ElementwiseOp binds a pair of
// them to the graph. The output has the input's shape.
#pragma once

#include <memory>

#include "common/nn/ops/registry.h"

namespace pstrain {

// y = f(x) over n values.
using ElementwiseFn = void (*)(const float* x, float* y, size_t n);
// dx += f'(x) dy over n values, or dx = f'(x) dy when !add (y = f(x), for
// ops whose derivative is cheaper from it).
using ElementwiseGradFn = void (*)(const float* x, const float* y, const float* dy, float* dx,
                                   size_t n, bool add);

void ReluForward(const float* x, float* y, size_t n);
void ReluBackward(const float* x, const float* y, const float* dy, float* dx, size_t n, bool add);
// The exact GELU, x * Phi(x) (PyTorch's nn.GELU() default).
void GeluForward(const float* x, float* y, size_t n);
void GeluBackward(const float* x, const float* y, const float* dy, float* dx, size_t n, bool add);
void SigmoidForward(const float* x, float* y, size_t n);
void SigmoidBackward(const float* x, const float* y, const float* dy, float* dx, size_t n,
                     bool add);
void TanhForward(const float* x, float* y, size_t n);
void TanhBackward(const float* x, const float* y, const float* dy, float* dx, size_t n, bool add);

class ElementwiseOp : public Op {
 public:
  ElementwiseOp(std::string type, ValueShape shape, ElementwiseFn f, ElementwiseGradFn g)
      : type_(std::move(type)), shape_(shape), f_(f), g_(g) {}
  std::string Describe() const override { return type_; }
  ValueShape output() const override { return shape_; }
  void Forward(const OpCall& c) override {
    f_(c.in[0], c.out, static_cast<size_t>(c.batch) * shape_.size);
  }
  void Backward(const OpCall& c) override {
    if (c.din[0] != nullptr) {
      g_(c.in[0], c.out, c.dout, c.din[0], static_cast<size_t>(c.batch) * shape_.size,
         c.din_add[0]);
    }
  }

 private:
  std::string type_;
  ValueShape shape_;
  ElementwiseFn f_;
  ElementwiseGradFn g_;
};

StatusOr<std::unique_ptr<Op>> MakeRelu(const OpContext& c);
StatusOr<std::unique_ptr<Op>> MakeGelu(const OpContext& c);
StatusOr<std::unique_ptr<Op>> MakeSigmoid(const OpContext& c);
StatusOr<std::unique_ptr<Op>> MakeTanh(const OpContext& c);

}  // namespace pstrain
