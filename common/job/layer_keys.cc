#include <algorithm>

#include "common/job/schema.h"
#include "common/nn/ops/dropout.h"
#include "common/nn/ops/registry.h"

namespace pstrain::jobfile {

namespace {

std::string JoinKeys(const std::vector<std::string>& keys) {
  std::string s;
  for (const std::string& k : keys) s += (s.empty() ? "" : ", ") + k;
  return s.empty() ? "nothing but its type" : s;
}

// An integer layer key within [lo, hi].
Status LayerInt(const toml::node& v, const std::string& key, int lo, int hi, int* out) {
  if (!v.is_integer()) return InvalidArgument(key + " must be an integer, got " + NodeText(v));
  const int64_t u = *v.value<int64_t>();
  if (u < lo || u > hi) {
    return InvalidArgument(key + " must be >= " + std::to_string(lo) +
                           " and <= " + std::to_string(hi) + ", got " + std::to_string(u));
  }
  *out = static_cast<int>(u);
  return OkStatus();
}

Status ParseLayerValue(const std::string& name, const toml::node& v, const std::string& key,
                       LayerSpec* spec) {
  const std::string full = key + "." + name;
  if (name == "units") return LayerInt(v, full, 1, 1 << 20, &spec->units);
  if (name == "dim") return LayerInt(v, full, 1, 4096, &spec->dim);
  if (name == "filters") return LayerInt(v, full, 1, 1 << 16, &spec->filters);
  if (name == "kernel") return LayerInt(v, full, 1, 1024, &spec->kernel);
  if (name == "stride") return LayerInt(v, full, 1, 1024, &spec->stride);
  if (name == "padding") return LayerInt(v, full, 0, 1024, &spec->padding);
  if (name == "size") return LayerInt(v, full, 1, 1024, &spec->size);
  if (name == "rate") {
    if (!v.is_number()) return InvalidArgument(full + " must be a number, got " + NodeText(v));
    spec->rate = *v.value<double>();
    return CheckDropoutRate(spec->rate, full, NodeText(v));
  }
  if (name == "init") {
    const std::string v_text = v.is_string() ? *v.value<std::string>() : NodeText(v);
    if (v_text == "he") {
      spec->init = InitKind::kHe;
    } else if (v_text == "torch") {
      spec->init = InitKind::kTorch;
    } else if (v_text == "xavier") {
      spec->init = InitKind::kXavier;
    } else {
      return InvalidArgument(full + " is " + NodeText(v) +
                             "; valid values: \"he\", \"torch\", \"xavier\"");
    }
    return OkStatus();
  }
  return InvalidArgument(
      "unknown key " + full +
      " (a layer has: type, name, inputs, share, units, init, filters, kernel, stride, padding, "
      "size, rate, dim)");
}

// A node's name, inputs or share: names of nodes.
Status ParseNodeLink(const std::string& name, const toml::node& v, const std::string& key,
                     LayerSpec* spec) {
  const std::string full = key + "." + name;
  auto node_name = [&](const toml::node& e, std::string* out) {
    if (!e.is_string() || e.value<std::string>()->empty()) {
      return InvalidArgument(full + " must be a node's name (a non-empty string), got " +
                             NodeText(e));
    }
    *out = *e.value<std::string>();
    return OkStatus();
  };
  if (name == "name") return node_name(v, &spec->name);
  if (name == "share") return node_name(v, &spec->share);
  const toml::array* arr = v.as_array();
  if (arr == nullptr || arr->empty()) {
    return InvalidArgument(
        full + " must be a list of node names, e.g. [\"conv2\", \"pool1\"], got " + NodeText(v));
  }
  for (const toml::node& e : *arr) RETURN_IF_ERROR(node_name(e, &spec->inputs.emplace_back()));
  return OkStatus();
}

}  // namespace

Status ParseLayers(const toml::node* n, const Where& where, std::vector<LayerSpec>* out) {
  const std::string at = where.At("model.layers", n);
  if (n == nullptr) {
    return InvalidArgument(at + "model.layers is missing: list the layers, e.g. " +
                           "layers = [{type = \"dense\", units = 10}]");
  }
  const toml::array* arr = n->as_array();
  if (arr == nullptr) {
    return InvalidArgument(at + "model.layers must be an array of layer tables, got " +
                           NodeText(*n));
  }
  for (size_t i = 0; i < arr->size(); ++i) {
    const toml::node& e = *arr->get(i);
    const std::string key = "model.layers[" + std::to_string(i) + "]";
    const std::string eat = where.At("model.layers", &e);
    const toml::table* t = e.as_table();
    if (t == nullptr) {
      return InvalidArgument(
          eat + key + " must be a table like {type = \"dense\", units = 64}, got " + NodeText(e));
    }
    LayerSpec spec;
    const toml::node* type = t->get("type");
    if (type == nullptr) {
      return InvalidArgument(eat + key + " has no type; valid types: " + OpTypesText());
    }
    if (!type->is_string()) {
      return InvalidArgument(eat + key + ".type must be a string, got " + NodeText(*type));
    }
    spec.type = *type->value<std::string>();
    const OpType* kind = FindOpType(spec.type);
    if (kind == nullptr) {
      return InvalidArgument(eat + key + ".type is \"" + spec.type +
                             "\"; valid types: " + OpTypesText());
    }
    for (const auto& [k, v] : *t) {
      const std::string name(k.str());
      if (name == "type") continue;
      if (name == "name" || name == "inputs" || name == "share") {
        Status parsed = ParseNodeLink(name, v, key, &spec);
        if (!parsed.ok()) return InvalidArgument(eat + parsed.message());
        continue;
      }
      Status parsed = ParseLayerValue(name, v, key, &spec);
      if (!parsed.ok()) return InvalidArgument(eat + parsed.message());
      if (std::find(kind->keys.begin(), kind->keys.end(), name) == kind->keys.end()) {
        return InvalidArgument(eat + key + "." + name + ": a " + spec.type + " layer has no " +
                               name + " (it takes " + JoinKeys(kind->keys) + ")");
      }
    }
    for (const std::string& needed : kind->required) {
      if (!t->contains(needed)) {
        return InvalidArgument(eat + key + " is a " + spec.type + " layer without " + needed);
      }
    }
    out->push_back(spec);
  }
  if (out->empty()) return InvalidArgument(at + "model.layers is empty");
  return OkStatus();
}

}  // namespace pstrain::jobfile
