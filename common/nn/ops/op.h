// An op is one kind of node of the model graph (graph.h): its shape rule,
// its parameters and two kernels, Forward and Backward, over a batch of
// samples laid out one after the other.
//
// The kernels are plain functions in each op's file (dense.h:
// DenseForward, DenseBackwardWeights, ...); the Op class only binds them to
// the graph. Backward *adds* into every gradient it reaches (inputs' and
// parameters'), so a value read by two nodes, or a weight used twice,
// receives the sum of its uses. The one exception saves clearing the
// gradients every step: the first node to reach a gradient in a backward
// pass is told so (OpCall::din_add, dw_add false) and writes it instead,
// as if it had been cleared. Backward follows the Forward of the same batch
// and may read what Forward left in the node's scratch bytes (im2col rows,
// arg-max positions, masks).
//
// An op never allocates after construction: every buffer it needs is its
// scratch, placed by the graph's planner. Not thread-safe: an op belongs to
// one graph, used by one thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/base/rng.h"
#include "common/nn/tensor.h"

namespace pstrain {

// The shape of one sample of a value: flat features, or an image (HWC,
// channels of a pixel adjacent).
struct ValueShape {
  int64_t size = 0;  // floats a sample
  ImageShape image;  // known(): an image of `size` values

  static ValueShape Flat(int64_t n) { return {n, {}}; }
  static ValueShape Of(ImageShape s) { return {s.size(), s}; }
  // The last dimension (what layer_norm normalises and concat joins): an
  // image's channels, else every value.
  int64_t features() const { return image.known() ? image.channels : size; }
  // How many runs of features() a sample holds (an image's pixels, else 1).
  int64_t positions() const { return size / features(); }
  // "1x28x28" or "784".
  std::string Text() const { return image.known() ? image.Text() : std::to_string(size); }
  bool operator==(const ValueShape&) const = default;
};

// A parameter tensor an op needs: "<node>.<suffix>" of `shape`.
struct ParamDecl {
  std::string suffix;
  std::vector<int64_t> shape;
};

// One call of an op's kernels: pointers into the graph's arena (values,
// gradients, scratch) and into the parameters.
struct OpCall {
  int batch = 0;
  std::vector<const float*> in;  // each input's values, batch x its size
  float* out = nullptr;          // batch x output size, written by Forward
  std::vector<float*> din;       // each input's gradient; null: not needed
  std::vector<uint8_t> din_add;  // per input: add to its gradient (else write it: the first)
  float* dout = nullptr;         // the output's gradient; Backward may overwrite it
  std::vector<const float*> w;   // parameters, in Params() order
  std::vector<float*> dw;        // their gradients
  std::vector<uint8_t> dw_add;   // per parameter: add to its gradient (else write it)
  std::byte* scratch = nullptr;  // ScratchBytes() bytes, 64-byte aligned
  bool training = false;         // dropout and the like act only in training
  uint64_t step_seed = 0;        // this step's randomness ...
  uint64_t stream = 0;           // ... and this node's stream of it
};

// Stores g(i) for i in [0, n) into grad: added when `add`, else written.
template <typename G>
inline void StoreGrad(float* __restrict grad, size_t n, bool add, G&& g) {
  if (add) {
    for (size_t i = 0; i < n; ++i) grad[i] += g(i);
  } else {
    for (size_t i = 0; i < n; ++i) grad[i] = g(i);
  }
}

class Op {
 public:
  Op() = default;
  virtual ~Op() = default;
  Op(const Op&) = delete;
  Op& operator=(const Op&) = delete;

  // "dense 784->256 +relu"
  virtual std::string Describe() const = 0;
  virtual ValueShape output() const = 0;
  virtual std::vector<ParamDecl> Params() const { return {}; }
  // Fills the parameters (laid out as Params()) from `rng`.
  virtual void InitParams(Rng& rng, const std::vector<float*>& w) const {
    (void)rng;
    (void)w;
  }
  // Scratch for batches of up to `max_batch` samples; called once, before
  // any kernel.
  virtual size_t ScratchBytes(int max_batch) {
    (void)max_batch;
    return 0;
  }
  virtual void Forward(const OpCall& c) = 0;
  virtual void Backward(const OpCall& c) = 0;
};

}  // namespace pstrain
