#include "common/nn/graph.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>

#include "common/base/check.h"
#include "common/nn/ops/activations.h"
#include "common/nn/ops/conv2d.h"
#include "common/nn/ops/dense.h"
#include "common/nn/ops/registry.h"

namespace pstrain {

namespace {

constexpr size_t kAlign = 64;

std::string At(size_t i) { return "model.layers[" + std::to_string(i) + "]"; }

// FNV-1a: the stream of a named node's randomness.
uint64_t NameStream(const std::string& name) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char ch : name) h = (h ^ ch) * 1099511628211ull;
  return h;
}

size_t AlignUp(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

// The name a node without one gets: its type and count, as parameters were
// always named ("dense1", "conv2"; an embedding counts as a dense layer).
std::string AutoName(const std::string& type, std::map<std::string, int>* counts) {
  if (type == "embedding") {
    ++(*counts)["dense"];
    const int n = ++(*counts)["embedding"];
    return n == 1 ? "embedding" : "embedding" + std::to_string(n);
  }
  const std::string stem = type == "dense" ? "dense" : type == "conv2d" ? "conv" : type;
  return stem + std::to_string(++(*counts)[stem]);
}

// The node list's inputs as spec indices (-1: the data), each checked.
StatusOr<std::vector<std::vector<int>>> ResolveInputs(const std::vector<LayerSpec>& specs,
                                                      const std::vector<std::string>& names) {
  std::map<std::string, int> index;
  for (size_t i = 0; i < names.size(); ++i) index[names[i]] = static_cast<int>(i);
  std::vector<std::vector<int>> inputs(specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    const LayerSpec& s = specs[i];
    const OpType* type = FindOpType(s.type);
    if (s.inputs.empty()) {
      if (type->max_inputs != 0) inputs[i].push_back(static_cast<int>(i) - 1);
    } else {
      for (const std::string& in : s.inputs) {
        if (in == "input") {
          inputs[i].push_back(-1);
          continue;
        }
        auto it = index.find(in);
        if (it == index.end()) {
          std::string known = "\"input\"";
          for (const std::string& n : names) known += ", \"" + n + "\"";
          return InvalidArgument(At(i) + ".inputs names \"" + in + "\", which is no node (" +
                                 "the nodes are " + known + ")");
        }
        if (it->second == static_cast<int>(i)) {
          return InvalidArgument(At(i) + ".inputs: node \"" + in + "\" reads itself");
        }
        inputs[i].push_back(it->second);
      }
    }
    const int n = static_cast<int>(inputs[i].size());
    if (n < type->min_inputs || (type->max_inputs >= 0 && n > type->max_inputs)) {
      const std::string want =
          type->max_inputs < 0 ? std::to_string(type->min_inputs) + " or more"
          : type->min_inputs == type->max_inputs
              ? std::to_string(type->min_inputs)
              : std::to_string(type->min_inputs) + " to " + std::to_string(type->max_inputs);
      return InvalidArgument(At(i) + " is a " + s.type + " layer, which reads " + want +
                             " input(s), but it is given " + std::to_string(n));
    }
  }
  return inputs;
}

// Spec indices in an order where every node follows its inputs; among the
// ready nodes the first listed goes first, so a chain keeps its order.
StatusOr<std::vector<int>> TopologicalOrder(const std::vector<std::vector<int>>& inputs,
                                            const std::vector<std::string>& names) {
  const size_t n = inputs.size();
  std::vector<int> waiting(n, 0);
  std::vector<std::vector<int>> readers(n);
  for (size_t i = 0; i < n; ++i) {
    for (int in : inputs[i]) {
      if (in < 0) continue;
      ++waiting[i];
      readers[static_cast<size_t>(in)].push_back(static_cast<int>(i));
    }
  }
  std::vector<int> order;
  std::vector<bool> done(n, false);
  while (order.size() < n) {
    int next = -1;
    for (size_t i = 0; i < n && next < 0; ++i) {
      if (!done[i] && waiting[i] == 0) next = static_cast<int>(i);
    }
    if (next < 0) {
      std::string cycle;
      for (size_t i = 0; i < n; ++i) {
        if (!done[i]) cycle += (cycle.empty() ? "" : ", ") + At(i) + " \"" + names[i] + "\"";
      }
      return InvalidArgument("model.layers: the inputs form a cycle through " + cycle);
    }
    done[static_cast<size_t>(next)] = true;
    order.push_back(next);
    for (int r : readers[static_cast<size_t>(next)]) --waiting[static_cast<size_t>(r)];
  }
  return order;
}

// The init and randomness streams of each node. A named node's come from
// its name. An unnamed one's come from its position, numbered as the
// sequential engine numbered its layers (a relu fused into the layer before
// it and a flatten of flat values took no number; dropout counted list
// entries), so every model written before nodes had names trains exactly
// as it did.
void AssignStreams(const std::vector<LayerSpec>& specs, const std::vector<bool>& is_alias,
                   std::vector<uint64_t>* init, std::vector<uint64_t>* rand) {
  init->assign(specs.size(), 0);
  rand->assign(specs.size(), 0);
  int position = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    const LayerSpec& s = specs[i];
    const bool fused_relu = s.type == "relu" && s.inputs.empty() && i > 0 &&
                            (specs[i - 1].type == "dense" || specs[i - 1].type == "conv2d");
    if (!s.name.empty()) {
      (*init)[i] = (*rand)[i] = NameStream(s.name);
    } else {
      (*init)[i] = 1000 + static_cast<uint64_t>(position);
      (*rand)[i] = 1000 + static_cast<uint64_t>(i);
    }
    if (!fused_relu && !is_alias[i]) ++position;
  }
}

bool SameParams(const Op& a, const Op& b) {
  const std::vector<ParamDecl> pa = a.Params(), pb = b.Params();
  if (pa.size() != pb.size()) return false;
  for (size_t k = 0; k < pa.size(); ++k) {
    if (pa[k].suffix != pb[k].suffix || pa[k].shape != pb[k].shape) return false;
  }
  return true;
}

std::string ParamShapes(const Op& op) {
  std::string s;
  for (const ParamDecl& p : op.Params()) {
    s += (s.empty() ? "" : ", ") + p.suffix + " {";
    for (size_t d = 0; d < p.shape.size(); ++d) s += (d ? "," : "") + std::to_string(p.shape[d]);
    s += "}";
  }
  return s.empty() ? "none" : s;
}

}  // namespace

void Graph::ArenaFree::operator()(std::byte* p) const { std::free(p); }

std::vector<Graph::NodeInfo> Graph::Nodes() const {
  std::vector<NodeInfo> out;
  for (const Node& n : nodes_)
    out.push_back({n.name, n.spec, n.inputs, n.output, n.fused_relu, n.tensors});
  return out;
}

StatusOr<std::unique_ptr<Graph>> Graph::Build(const std::vector<LayerSpec>& specs,
                                              const GraphInput& input, int max_batch,
                                              TensorLayout* layout) {
  if (specs.empty()) return InvalidArgument("model.layers is empty: list at least one dense layer");
  if (max_batch < 1) return InvalidArgument("batch size must be >= 1");
  const bool sparse = input.sparse_batch != nullptr;
  if (sparse && specs[0].type != "embedding") {
    return InvalidArgument(At(0) + ".type is \"" + specs[0].type +
                           "\" but sparse (LibSVM) data starts with an embedding layer, e.g. "
                           "{type = \"embedding\", dim = 1} for logistic regression");
  }
  // Names.
  std::vector<std::string> names(specs.size());
  std::map<std::string, int> counts;
  std::map<std::string, size_t> seen;
  for (size_t i = 0; i < specs.size(); ++i) {
    if (FindOpType(specs[i].type) == nullptr) {
      return InvalidArgument(At(i) + ".type is \"" + specs[i].type +
                             "\"; valid types: " + OpTypesText());
    }
    names[i] = specs[i].name.empty() ? AutoName(specs[i].type, &counts) : specs[i].name;
    if (names[i] == "input") {
      return InvalidArgument(At(i) + ".name: \"input\" is the data's name; choose another");
    }
    auto [it, fresh] = seen.emplace(names[i], i);
    if (!fresh) {
      return InvalidArgument(At(i) + ".name \"" + names[i] + "\" is also the name of " +
                             At(it->second) + " (unnamed nodes are named by type and count)");
    }
  }
  ASSIGN_OR_RETURN(std::vector<std::vector<int>> inputs, ResolveInputs(specs, names));
  ASSIGN_OR_RETURN(std::vector<int> order, TopologicalOrder(inputs, names));

  std::unique_ptr<Graph> g(new Graph());
  g->values_.push_back(Value{input.input});
  // The value each spec's node produces; a flatten of flat values is no
  // node and produces its input.
  std::vector<int> value_of(specs.size(), -1);
  std::vector<int> node_of(specs.size(), -1);
  std::vector<bool> is_alias(specs.size(), false);
  for (int i : order) {
    const LayerSpec& s = specs[static_cast<size_t>(i)];
    OpContext ctx{s, At(static_cast<size_t>(i)), {}, nullptr, nullptr, input.sparse_features};
    std::vector<int> in_values;
    for (int in : inputs[static_cast<size_t>(i)]) {
      const int v = in < 0 ? 0 : value_of[static_cast<size_t>(in)];
      if (v == 0 && sparse) {
        return InvalidArgument(ctx.at + " reads the data, but sparse (LibSVM) data is read only " +
                               "by the embedding layer");
      }
      in_values.push_back(v);
      ctx.inputs.push_back(g->values_[static_cast<size_t>(v)].shape);
    }
    if (s.type == "embedding" && i == 0 && sparse) {
      ctx.sparse_batch = input.sparse_batch;
      ctx.rows = input.rows;
    }
    if (s.type == "flatten" && !ctx.inputs[0].image.known()) {
      value_of[static_cast<size_t>(i)] = in_values[0];  // already flat: nothing to do
      is_alias[static_cast<size_t>(i)] = true;
      continue;
    }
    ASSIGN_OR_RETURN(std::unique_ptr<Op> op, FindOpType(s.type)->make(ctx));
    Value out{op->output()};
    out.producer = static_cast<int>(g->nodes_.size());
    g->values_.push_back(out);
    Node node;
    node.name = names[static_cast<size_t>(i)];
    node.spec = s;
    node.op = std::move(op);
    node.inputs = in_values;
    node.output = static_cast<int>(g->values_.size()) - 1;
    for (int v : in_values) ++g->values_[static_cast<size_t>(v)].consumers;
    value_of[static_cast<size_t>(i)] = node.output;
    node_of[static_cast<size_t>(i)] = static_cast<int>(g->nodes_.size());
    g->nodes_.push_back(std::move(node));
  }
  // The last listed node is the output; every other must be read.
  g->output_ = value_of.back();
  if (g->output_ == 0) return InvalidArgument("model.layers: the model computes nothing");
  for (size_t i = 0; i + 1 < specs.size(); ++i) {
    if (g->values_[static_cast<size_t>(value_of[i])].consumers == 0) {
      return InvalidArgument(At(i) + " \"" + names[i] + "\": nothing reads its output (the " +
                             "model's output is the last node; name this one in a later " +
                             "node's inputs)");
    }
  }
  std::vector<uint64_t> init_stream, rand_stream;
  AssignStreams(specs, is_alias, &init_stream, &rand_stream);
  for (size_t i = 0; i < specs.size(); ++i) {
    if (node_of[i] < 0) continue;
    Node& n = g->nodes_[static_cast<size_t>(node_of[i])];
    n.init_stream = init_stream[i];
    n.rand_stream = rand_stream[i];
  }
  // Parameters, in node order; shared ones after their owners exist.
  for (Node& n : g->nodes_) {
    const std::vector<ParamDecl> params = n.op->Params();
    if (params.empty()) continue;
    const size_t spec =
        static_cast<size_t>(std::find(names.begin(), names.end(), n.name) - names.begin());
    if (!specs[spec].share.empty()) continue;
    ParamGroup group{layout->count(), 0, n.name};
    for (const ParamDecl& p : params)
      n.tensors.push_back(layout->Add(n.name + "." + p.suffix, p.shape));
    group.last_tensor = layout->count();
    n.own_group = static_cast<int>(g->groups_.size());
    g->groups_.push_back(group);
  }
  for (size_t i = 0; i < specs.size(); ++i) {
    if (specs[i].share.empty()) continue;
    const auto owner = std::find(names.begin(), names.end(), specs[i].share);
    if (owner == names.end() || node_of[static_cast<size_t>(owner - names.begin())] < 0) {
      return InvalidArgument(At(i) + ".share names \"" + specs[i].share + "\", which is no node");
    }
    const Node& o =
        g->nodes_[static_cast<size_t>(node_of[static_cast<size_t>(owner - names.begin())])];
    Node& n = g->nodes_[static_cast<size_t>(node_of[i])];
    if (o.own_group < 0 ||
        specs[static_cast<size_t>(owner - names.begin())].type != specs[i].type ||
        !SameParams(*o.op, *n.op)) {
      return InvalidArgument(At(i) + ".share: \"" + o.name + "\" is a " +
                             specs[static_cast<size_t>(owner - names.begin())].type +
                             " node with parameters " + ParamShapes(*o.op) + "; this " +
                             specs[i].type + " node needs " + ParamShapes(*n.op));
    }
    n.tensors = o.tensors;
  }
  // Fusion: a dense or conv2d whose only reader is a relu computes it.
  for (size_t k = 0; k + 1 < g->nodes_.size(); ++k) {
    Node& n = g->nodes_[k];
    Value& v = g->values_[static_cast<size_t>(n.output)];
    if (v.consumers != 1 || n.output == g->output_) continue;
    auto* dense = dynamic_cast<DenseOp*>(n.op.get());
    auto* conv = dynamic_cast<Conv2DOp*>(n.op.get());
    if (dense == nullptr && conv == nullptr) continue;
    const auto reader = std::find_if(g->nodes_.begin(), g->nodes_.end(), [&](const Node& m) {
      return std::find(m.inputs.begin(), m.inputs.end(), n.output) != m.inputs.end();
    });
    if (reader == g->nodes_.end() || reader->op->Describe() != "relu") continue;
    if (dense != nullptr) dense->FuseRelu();
    if (conv != nullptr) conv->FuseRelu();
    n.fused_relu = true;
    v.consumers = 0;
    n.output = reader->output;
    g->values_[static_cast<size_t>(n.output)].producer = static_cast<int>(k);
    g->nodes_.erase(reader);
  }
  for (size_t k = 0; k < g->nodes_.size(); ++k) {
    g->values_[static_cast<size_t>(g->nodes_[k].output)].producer = static_cast<int>(k);
  }
  // Which groups each node is first to read (forward) and last to need
  // (backward: the earliest reader in forward order).
  std::vector<int> first_reader(g->groups_.size(), -1);
  for (size_t k = 0; k < g->nodes_.size(); ++k) {
    for (int t : g->nodes_[k].tensors) {
      for (size_t gi = 0; gi < g->groups_.size(); ++gi) {
        if (t >= g->groups_[gi].first_tensor && t < g->groups_[gi].last_tensor &&
            first_reader[gi] < 0) {
          first_reader[gi] = static_cast<int>(k);
          g->nodes_[k].groups_needed.push_back(static_cast<int>(gi));
        }
      }
    }
  }
  for (size_t gi = 0; gi < g->groups_.size(); ++gi) {
    g->nodes_[static_cast<size_t>(first_reader[gi])].groups_ready.push_back(static_cast<int>(gi));
  }
  // A value needs a gradient when a parameter lies upstream of it.
  for (Node& n : g->nodes_) {
    bool needs = !n.tensors.empty();
    for (int v : n.inputs) needs = needs || g->values_[static_cast<size_t>(v)].needs_grad;
    g->values_[static_cast<size_t>(n.output)].needs_grad = needs;
  }
  g->Plan(max_batch);
  return g;
}

void Graph::Plan(int max_batch) {
  // One arena: each live value, its gradient if needed, each node's scratch.
  std::vector<bool> live(values_.size(), false);
  for (const Node& n : nodes_) live[static_cast<size_t>(n.output)] = true;
  size_t total = 0;
  std::vector<size_t> data_at(values_.size()), grad_at(values_.size()), scratch_at(nodes_.size());
  std::vector<size_t> scratch_size(nodes_.size());
  for (size_t v = 1; v < values_.size(); ++v) {
    if (!live[v]) continue;
    const size_t bytes = AlignUp(static_cast<size_t>(max_batch) * values_[v].shape.size * 4);
    data_at[v] = total;
    total += bytes;
    if (values_[v].needs_grad) {
      grad_at[v] = total;
      total += bytes;
    }
  }
  for (size_t k = 0; k < nodes_.size(); ++k) {
    scratch_size[k] = AlignUp(nodes_[k].op->ScratchBytes(max_batch));
    scratch_at[k] = total;
    total += scratch_size[k];
  }
  arena_bytes_ = total;
  arena_.reset(
      static_cast<std::byte*>(std::aligned_alloc(kAlign, std::max<size_t>(total, kAlign))));
  PSTRAIN_CHECK(arena_ != nullptr) << "cannot allocate " << total << " bytes for the model";
  std::memset(arena_.get(), 0, total);
  for (size_t v = 1; v < values_.size(); ++v) {
    if (!live[v]) continue;
    values_[v].data = reinterpret_cast<float*>(arena_.get() + data_at[v]);
    if (values_[v].needs_grad)
      values_[v].grad = reinterpret_cast<float*>(arena_.get() + grad_at[v]);
  }
  for (size_t k = 0; k < nodes_.size(); ++k) {
    Node& n = nodes_[k];
    OpCall& c = n.call;
    for (size_t slot = 0; slot < n.inputs.size(); ++slot) {
      const Value& in = values_[static_cast<size_t>(n.inputs[slot])];
      c.in.push_back(in.data);
      c.din.push_back(in.grad);
      if (n.inputs[slot] == 0)
        input_uses_.emplace_back(static_cast<int>(k), static_cast<int>(slot));
    }
    c.out = values_[static_cast<size_t>(n.output)].data;
    c.dout = values_[static_cast<size_t>(n.output)].grad;
    c.w.assign(n.tensors.size(), nullptr);
    c.dw.assign(n.tensors.size(), nullptr);
    c.scratch = scratch_size[k] > 0 ? arena_.get() + scratch_at[k] : nullptr;
    c.stream = n.rand_stream;
  }
  // The first node to reach a gradient going back writes it; the later
  // ones add to it.
  std::vector<bool> value_seen(values_.size(), false);
  std::map<int, bool> tensor_seen;
  for (size_t k = nodes_.size(); k-- > 0;) {
    Node& n = nodes_[k];
    n.call.din_add.assign(n.inputs.size(), 0);
    for (size_t slot = 0; slot < n.inputs.size(); ++slot) {
      const size_t v = static_cast<size_t>(n.inputs[slot]);
      n.call.din_add[slot] = value_seen[v] ? 1 : 0;
      value_seen[v] = true;
    }
    n.call.dw_add.assign(n.tensors.size(), 0);
    for (size_t j = 0; j < n.tensors.size(); ++j) {
      n.call.dw_add[j] = tensor_seen[n.tensors[j]] ? 1 : 0;
      tensor_seen[n.tensors[j]] = true;
    }
  }
}

void Graph::Bind(const TensorLayout& layout, float* params, float* grads) {
  tensor_params_.assign(static_cast<size_t>(layout.count()), nullptr);
  tensor_grads_.assign(static_cast<size_t>(layout.count()), nullptr);
  for (int t = 0; t < layout.count(); ++t) {
    tensor_params_[static_cast<size_t>(t)] = params + layout[t].offset;
    tensor_grads_[static_cast<size_t>(t)] = grads + layout[t].offset;
  }
  RefreshParamPointers();
}

void Graph::BindTensors(const TensorLayout& layout, int first, int last, const float* params) {
  for (int t = first; t < last; ++t)
    tensor_params_[static_cast<size_t>(t)] = params + layout[t].offset;
  RefreshParamPointers();
}

void Graph::RefreshParamPointers() {
  for (Node& n : nodes_) {
    for (size_t k = 0; k < n.tensors.size(); ++k) {
      n.call.w[k] = tensor_params_[static_cast<size_t>(n.tensors[k])];
      n.call.dw[k] = tensor_grads_[static_cast<size_t>(n.tensors[k])];
    }
  }
}

void Graph::InitParams(const TensorLayout& layout, float* params, uint64_t seed) const {
  for (const Node& n : nodes_) {
    if (n.own_group < 0) continue;
    std::vector<float*> w;
    for (int t : n.tensors) w.push_back(params + layout[t].offset);
    Rng rng(seed, n.init_stream);
    n.op->InitParams(rng, w);
  }
}

float* Graph::Forward(const float* input, int batch, bool training, uint64_t step_seed,
                      const WeightsNeededFn& before) {
  for (const auto& [node, slot] : input_uses_) {
    nodes_[static_cast<size_t>(node)].call.in[static_cast<size_t>(slot)] = input;
  }
  for (Node& n : nodes_) {
    if (before) {
      for (int gi : n.groups_needed) {
        const ParamGroup& g = groups_[static_cast<size_t>(gi)];
        if (!before(g.first_tensor, g.last_tensor)) return nullptr;
      }
    }
    n.call.batch = batch;
    n.call.training = training;
    n.call.step_seed = step_seed;
    n.op->Forward(n.call);
  }
  return values_[static_cast<size_t>(output_)].data;
}

void Graph::Backward(int batch, const GradReadyFn& on_ready) {
  for (size_t k = nodes_.size(); k-- > 0;) {
    Node& n = nodes_[k];
    n.call.batch = batch;
    n.op->Backward(n.call);
    if (!on_ready) continue;
    for (int gi : n.groups_ready) {
      on_ready(groups_[static_cast<size_t>(gi)].first_tensor,
               groups_[static_cast<size_t>(gi)].last_tensor);
    }
  }
}

std::string Graph::Describe() const {
  std::string s;
  int previous = 0;
  for (const Node& n : nodes_) {
    if (!s.empty()) s += ", ";
    s += n.op->Describe();
    const bool chain = n.inputs.empty() || (n.inputs.size() == 1 && n.inputs[0] == previous);
    if (!chain) {
      s += " [" + n.name + " <- ";
      for (size_t k = 0; k < n.inputs.size(); ++k) {
        const int v = n.inputs[k];
        const int p = values_[static_cast<size_t>(v)].producer;
        s += (k ? " + " : "") +
             (v == 0 || p < 0 ? std::string("input") : nodes_[static_cast<size_t>(p)].name);
      }
      s += "]";
    }
    previous = n.output;
  }
  return s;
}

}  // namespace pstrain
