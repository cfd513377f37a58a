// What the job file says a model is: a list of nodes (model.layers), each an
// op with its settings, a name and the nodes it reads. A node without
// `inputs` reads the node before it (the first one reads the data), so a
// plain list of layers is a chain, as it always was. Value types; the
// model engine (graph.h) validates them against the data's shape.
#pragma once

#include <string>
#include <vector>

namespace pstrain {

enum class InitKind {
  kHe,     // weights N(0, 2/fan_in), bias 0 (He et al., for ReLU nets)
  kTorch,  // PyTorch's nn.Linear default: U(+-1/sqrt(fan_in)) for weight and bias
  kXavier  // U(+-sqrt(6/(fan_in+fan_out))), bias 0
};

struct LayerSpec {
  std::string type;               // an op of the registry (ops/registry.h): "dense", "add", ...
  int units = 0;                  // dense only: output width
  InitKind init = InitKind::kHe;  // dense, conv2d
  int filters = 0;                // conv2d: output channels
  int kernel = 0;                 // conv2d: kernel side
  int stride = 0;                 // conv2d (0: 1), maxpool (0: the window's size)
  int padding = 0;                // conv2d: zeros on every side
  int size = 0;                   // maxpool: window side
  double rate = 0;                // dropout: probability of zeroing a value, in [0, 1)
  int dim = 0;                    // embedding: floats per row
  // The node's name: its parameters are "<name>.weight", ..., and its
  // randomness (initialisation, dropout masks) is drawn from a stream keyed
  // by it. Empty: a name from its type and position ("dense2"), and streams
  // from its position, as in every model before names existed.
  std::string name = {};
  // The nodes whose outputs this one reads ("input" is the data); empty:
  // the node before it.
  std::vector<std::string> inputs = {};
  // A node of the same type and shapes whose parameters this one uses
  // instead of having its own (tied weights); empty: its own.
  std::string share = {};
};

}  // namespace pstrain
