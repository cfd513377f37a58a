// The op types the job file can name, in one table shared by the job-file
// parser (which keys each type takes) and the graph builder (how to make
// one). Adding an op: its kernels, class and factory in a file of their own
// under ops/ (the factory declared in its header), and a row of the table in
// registry.cc.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/base/status.h"
#include "common/nn/graph_spec.h"
#include "common/nn/ops/op.h"

namespace pstrain {

struct SparseBatch;
struct RowBlock;

// What an op's factory is given: the node's settings and the shapes of its
// inputs, checked against the type's input count.
struct OpContext {
  const LayerSpec& spec;
  std::string at;                   // "model.layers[3]", for errors
  std::vector<ValueShape> inputs;   // one per input
  const SparseBatch* sparse_batch;  // embedding: the model's current sparse batch
  RowBlock* rows;                   // embedding: its table's rows for that batch
  int64_t sparse_features = 0;      // embedding: the size of the feature space

  // An error naming `at`.`key` unless value >= min.
  Status AtLeast(const char* key, int value, int min) const;
  // The error of an op that needs an image input.
  Status NeedsImage() const;
};

using OpFactory = StatusOr<std::unique_ptr<Op>> (*)(const OpContext&);

struct OpType {
  std::string type;
  std::vector<std::string> keys;      // settings besides type, name, inputs, share
  std::vector<std::string> required;  // of keys
  int min_inputs = 1;
  int max_inputs = 1;  // -1: any number
  OpFactory make = nullptr;
};

const std::vector<OpType>& OpTypes();
// Null when there is no such type.
const OpType* FindOpType(const std::string& type);
// "\"dense\", \"relu\", ..."
std::string OpTypesText();

}  // namespace pstrain
