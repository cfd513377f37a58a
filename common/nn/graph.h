// The model graph: nodes {op, inputs, output, parameters} over values of
// fixed per-sample shapes, built once from the job file's node list and
// never changed after. Build() infers every shape through the ops'
// factories (errors name model.layers[i] and its key, unknown or cyclic
// inputs, and both shapes of a mismatch), fuses a dense or conv2d whose
// only reader is a relu into one node, declares the parameters in the
// TensorLayout by node name ("<node>.weight", in node order) and places
// every value, gradient and scratch buffer of a batch of up to max_batch
// samples in one arena. Nothing is allocated per step.
//
// Forward runs the nodes in topological order; Backward runs them in
// reverse, each adding into its inputs' and parameters' gradients, so a
// value read by several nodes and a weight used by several nodes (`share`)
// receive the sum of their uses; the first to reach a gradient writes it
// (OpCall::din_add, dw_add), so no gradient is cleared per step. A parameter group (the tensors one
// node declares) is reported ready once the earliest node that reads it has been back-propagated.
//
// The graph never owns parameters: it reads them through one pointer a
// tensor (BindTensors), and writes their gradients into the array given to
// Build. Not thread-safe: one graph per model, used by one thread.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/base/status.h"
#include "common/nn/graph_spec.h"
#include "common/nn/ops/op.h"
#include "common/nn/tensor.h"

namespace pstrain {

struct SparseBatch;
struct RowBlock;

// The tensors one node declares, [first_tensor, last_tensor) of the
// layout: what a worker pulls and installs together, and what is reported
// ready for pushing together.
struct ParamGroup {
  int first_tensor = 0;
  int last_tensor = 0;
  std::string node;
};

// What the graph's sources are: the data as a dense value of `input`'s
// shape, or (sparse data) nothing dense, only the embedding's rows.
struct GraphInput {
  ValueShape input;  // size 0 for sparse data
  const SparseBatch* sparse_batch = nullptr;
  RowBlock* rows = nullptr;  // the embedding table's rows
  int64_t sparse_features = 0;
};

class Graph {
 public:
  // Called before a node first reads a group's parameters in a forward
  // pass; false stops the pass.
  using WeightsNeededFn = std::function<bool(int first_tensor, int last_tensor)>;
  // Called during Backward when a group's gradients are final.
  using GradReadyFn = std::function<void(int first_tensor, int last_tensor)>;

  // Appends the parameters to `layout`; `grads` is bound later (Bind).
  static StatusOr<std::unique_ptr<Graph>> Build(const std::vector<LayerSpec>& specs,
                                                const GraphInput& input, int max_batch,
                                                TensorLayout* layout);

  // Points every tensor's parameters at `params` and gradients at `grads`
  // (arrays laid out by the layout given to Build).
  void Bind(const TensorLayout& layout, float* params, float* grads);
  // Points tensors [first, last) at their place in `params` (laid out as
  // the layout), which must outlive the binding.
  void BindTensors(const TensorLayout& layout, int first, int last, const float* params);
  // Initialises every node's own parameters in `params`, each node from
  // its init stream of `seed`.
  void InitParams(const TensorLayout& layout, float* params, uint64_t seed) const;

  // The output of `batch` samples of `input` (null for sparse data), or
  // null when `before` stopped the pass. Valid until the next Forward.
  float* Forward(const float* input, int batch, bool training, uint64_t step_seed,
                 const WeightsNeededFn& before = nullptr);
  // Where the caller writes the output's gradient before Backward.
  float* output_grad() { return values_[output_].grad; }
  // Writes every parameter's gradient (the sum over its uses) into the
  // gradient array, and every value's on the way: the first node to reach
  // a gradient writes it, the others add to it, so nothing needs clearing.
  void Backward(int batch, const GradReadyFn& on_ready = nullptr);

  ValueShape output_shape() const { return values_[output_].shape; }
  // The graph as built, for an exporter: each node in topological order
  // with its job-file settings, the values it reads (0: the data) and
  // writes, whether a relu after it was fused into it, and the layout's
  // tensor for each of its parameters.
  struct NodeInfo {
    std::string name;
    LayerSpec spec;
    std::vector<int> inputs;
    int output = -1;
    bool relu = false;
    std::vector<int> tensors;
  };
  std::vector<NodeInfo> Nodes() const;
  ValueShape value_shape(int value) const { return values_[static_cast<size_t>(value)].shape; }
  int output_value() const { return output_; }
  const std::vector<ParamGroup>& groups() const { return groups_; }
  int node_count() const { return static_cast<int>(nodes_.size()); }
  // "dense 784->256 +relu, dense 256->128 +relu, dense 128->10"; a node
  // that does not read the one before it also says what it reads.
  std::string Describe() const;
  // Bytes of the arena (values, gradients, scratch).
  size_t arena_bytes() const { return arena_bytes_; }

 private:
  struct Node {
    std::string name;
    LayerSpec spec;
    bool fused_relu = false;
    std::unique_ptr<Op> op;
    std::vector<int> inputs;  // value ids
    int output = -1;
    std::vector<int> tensors;  // the layout's tensor for each of op->Params()
    int own_group = -1;        // the group it declares, or -1 (none, or shared)
    uint64_t init_stream = 0;
    uint64_t rand_stream = 0;
    std::vector<int> groups_needed;  // groups first read by this node, in a forward pass
    std::vector<int> groups_ready;   // groups final after this node's backward
    OpCall call;
  };
  struct Value {
    ValueShape shape;
    int producer = -1;  // -1: the data
    int consumers = 0;
    bool needs_grad = false;
    float* data = nullptr;
    float* grad = nullptr;
  };
  class Builder;

  Graph() = default;
  void Plan(int max_batch);
  void RefreshParamPointers();

  std::vector<Node> nodes_;    // in topological order
  std::vector<Value> values_;  // 0 is the data
  int output_ = -1;
  std::vector<ParamGroup> groups_;
  std::vector<const float*> tensor_params_;  // per layout tensor
  std::vector<float*> tensor_grads_;
  std::vector<std::pair<int, int>> input_uses_;  // (node, input slot) reading the data
  struct ArenaFree {
    void operator()(std::byte* p) const;
  };
  std::unique_ptr<std::byte[], ArenaFree> arena_;
  size_t arena_bytes_ = 0;
};

}  // namespace pstrain
