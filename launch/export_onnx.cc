#include "launch/export_onnx.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <onnx/onnx_pb.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <vector>

#include "common/nn/graph.h"
#include "common/nn/ops/layer_norm.h"
#include "launch/checkpoint_tools.h"

namespace pstrain {
namespace {

constexpr int64_t kOpset = 13;
constexpr int64_t kIrVersion = 7;  // the IR of opset 13

// Builds the ONNX graph of a pstrain graph. Values are named after the
// nodes that write them; an image is NCHW in ONNX (pstrain keeps HWC), so
// a node that needs the other layout reads a converted copy, made once.
class OnnxBuilder {
 public:
  OnnxBuilder(const Model& model, onnx::GraphProto* g)
      : model_(model), graph_(model.graph()), g_(g) {}

  Status Build() {
    const ValueShape in = graph_.value_shape(0);
    AddIo(g_->add_input(), "input", in.size);
    names_[0] = "input";
    for (const Graph::NodeInfo& n : graph_.Nodes()) RETURN_IF_ERROR(AddNode(n));
    const std::string out = Flat(graph_.output_value());
    Node("Identity", {out}, "logits", "logits");
    onnx::NodeProto* softmax = Node("Softmax", {"logits"}, "probabilities", "probabilities");
    Int(softmax, "axis", 1);
    const int64_t classes = graph_.output_shape().size;
    AddIo(g_->add_output(), "logits", classes);
    AddIo(g_->add_output(), "probabilities", classes);
    return OkStatus();
  }

 private:
  static void AddIo(onnx::ValueInfoProto* v, const std::string& name, int64_t features) {
    v->set_name(name);
    onnx::TypeProto_Tensor* t = v->mutable_type()->mutable_tensor_type();
    t->set_elem_type(onnx::TensorProto::FLOAT);
    t->mutable_shape()->add_dim()->set_dim_param("batch");
    t->mutable_shape()->add_dim()->set_dim_value(features);
  }

  onnx::NodeProto* Node(const std::string& op, const std::vector<std::string>& inputs,
                        const std::string& output, const std::string& name) {
    onnx::NodeProto* n = g_->add_node();
    n->set_op_type(op);
    n->set_name(name);
    for (const std::string& i : inputs) n->add_input(i);
    n->add_output(output);
    return n;
  }
  static void Int(onnx::NodeProto* n, const char* name, int64_t v) {
    onnx::AttributeProto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(v);
  }
  static void Ints(onnx::NodeProto* n, const char* name, const std::vector<int64_t>& v) {
    onnx::AttributeProto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INTS);
    for (int64_t x : v) a->add_ints(x);
  }
  // An initializer `name` of `dims` (once per name).
  const std::string& Floats(const std::string& name, const std::vector<int64_t>& dims,
                            const std::vector<float>& values) {
    if (made_.insert(name).second) {
      onnx::TensorProto* t = g_->add_initializer();
      t->set_name(name);
      t->set_data_type(onnx::TensorProto::FLOAT);
      for (int64_t d : dims) t->add_dims(d);
      // Little-endian floats, as ONNX's raw_data is on every machine pstrain runs on.
      t->set_raw_data(
          std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float)));
    }
    return *made_.find(name);
  }
  std::string Int64s(const std::string& name, const std::vector<int64_t>& values) {
    if (made_.insert(name).second) {
      onnx::TensorProto* t = g_->add_initializer();
      t->set_name(name);
      t->set_data_type(onnx::TensorProto::INT64);
      t->add_dims(static_cast<int64_t>(values.size()));
      for (int64_t v : values) t->add_int64_data(v);
    }
    return name;
  }
  std::string Scalar(float v) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "const:%.9g", static_cast<double>(v));
    return Floats(buf, {}, {v});
  }
  // A parameter tensor's values as the layout holds them.
  std::vector<float> Tensor(int t) const {
    const TensorSpec& s = model_.layout()[t];
    const float* p = model_.params().data() + s.offset;
    return std::vector<float>(p, p + s.size);
  }
  std::string Param(int t) {
    const TensorSpec& s = model_.layout()[t];
    return Floats(s.name, s.shape, Tensor(t));
  }

  // Value `v` as {batch, features}: an image goes back to HWC order first,
  // as pstrain flattens it.
  std::string Flat(int v) {
    const ValueShape s = graph_.value_shape(v);
    if (!s.image.known() || v == 0) return names_.at(v);
    if (auto it = flat_.find(v); it != flat_.end()) return it->second;
    const std::string& x = names_.at(v);
    Ints(Node("Transpose", {x}, x + ":nhwc", x + ":nhwc"), "perm", {0, 2, 3, 1});
    Int(Node("Flatten", {x + ":nhwc"}, x + ":flat", x + ":flat"), "axis", 1);
    return flat_[v] = x + ":flat";
  }
  // Value `v` as an NCHW image: the data is reshaped from its HWC rows.
  std::string Image(int v) {
    if (v != 0) return names_.at(v);
    if (!input_nchw_.empty()) return input_nchw_;
    const ImageShape s = graph_.value_shape(0).image;
    const std::string shape = Int64s("input:hwc_shape", {-1, s.height, s.width, s.channels});
    Node("Reshape", {"input", shape}, "input:nhwc", "input:nhwc");
    Ints(Node("Transpose", {"input:nhwc"}, "input:nchw", "input:nchw"), "perm", {0, 3, 1, 2});
    return input_nchw_ = "input:nchw";
  }
  // Value `v` in the layout of its kind: NCHW for images, else flat.
  std::string AsIs(int v) { return graph_.value_shape(v).image.known() ? Image(v) : Flat(v); }

  Status AddNode(const Graph::NodeInfo& n) {
    const std::string& type = n.spec.type;
    const std::string& out = n.name;
    const std::string pre = n.relu ? out + ":pre" : out;
    const bool image = graph_.value_shape(n.output).image.known();
    if (type == "dense") {
      // pstrain's W is {in, units}; Gemm reads it transposed ({units, in},
      // transB), the form every runtime takes.
      const TensorSpec& w = model_.layout()[n.tensors[0]];
      const int64_t in = w.shape[0], units = w.shape[1];
      const std::vector<float> iu = Tensor(n.tensors[0]);
      std::vector<float> ui(iu.size());
      for (int64_t i = 0; i < in; ++i)
        for (int64_t u = 0; u < units; ++u) ui[u * in + i] = iu[i * units + u];
      const std::string weight = Floats(w.name, {units, in}, ui);
      Int(Node("Gemm", {Flat(n.inputs[0]), weight, Param(n.tensors[1])}, pre, out), "transB", 1);
    } else if (type == "conv2d") {
      // pstrain's kernel is {k, k, in, filters}; ONNX's {filters, in, k, k}.
      const TensorSpec& w = model_.layout()[n.tensors[0]];
      const int64_t k = w.shape[0], c = w.shape[2], f = w.shape[3];
      const std::vector<float> hwio = Tensor(n.tensors[0]);
      std::vector<float> oihw(hwio.size());
      for (int64_t y = 0; y < k; ++y)
        for (int64_t x = 0; x < k; ++x)
          for (int64_t i = 0; i < c; ++i)
            for (int64_t o = 0; o < f; ++o)
              oihw[((o * c + i) * k + y) * k + x] = hwio[((y * k + x) * c + i) * f + o];
      const std::string weight = Floats(w.name + ":oihw", {f, c, k, k}, oihw);
      onnx::NodeProto* conv =
          Node("Conv", {Image(n.inputs[0]), weight, Param(n.tensors[1])}, pre, out);
      const int64_t stride = n.spec.stride > 0 ? n.spec.stride : 1, pad = n.spec.padding;
      Ints(conv, "kernel_shape", {k, k});
      Ints(conv, "strides", {stride, stride});
      Ints(conv, "pads", {pad, pad, pad, pad});
    } else if (type == "maxpool") {
      const int64_t size = n.spec.size, stride = n.spec.stride > 0 ? n.spec.stride : size;
      onnx::NodeProto* pool = Node("MaxPool", {Image(n.inputs[0])}, out, out);
      Ints(pool, "kernel_shape", {size, size});
      Ints(pool, "strides", {stride, stride});
    } else if (type == "relu" || type == "sigmoid" || type == "tanh") {
      const char* op = type == "relu" ? "Relu" : type == "sigmoid" ? "Sigmoid" : "Tanh";
      Node(op, {AsIs(n.inputs[0])}, out, out);
    } else if (type == "gelu") {
      // 0.5 x (1 + erf(x / sqrt 2)), as pstrain computes it.
      const std::string x = AsIs(n.inputs[0]);
      Node("Div", {x, Scalar(static_cast<float>(std::sqrt(2.0)))}, out + ":s", out + ":s");
      Node("Erf", {out + ":s"}, out + ":erf", out + ":erf");
      Node("Add", {out + ":erf", Scalar(1.0f)}, out + ":1p", out + ":1p");
      Node("Mul", {x, out + ":1p"}, out + ":x1p", out + ":x1p");
      Node("Mul", {out + ":x1p", Scalar(0.5f)}, out, out);
    } else if (type == "dropout" || type == "flatten") {
      // Dropout does nothing at inference; a flatten reads an image.
      Node("Identity", {type == "flatten" ? Flat(n.inputs[0]) : AsIs(n.inputs[0])}, out, out);
    } else if (type == "add") {
      std::string sum = AsIs(n.inputs[0]);
      for (size_t i = 1; i < n.inputs.size(); ++i) {
        const std::string to = i + 1 == n.inputs.size() ? out : out + ":" + std::to_string(i);
        Node("Add", {sum, AsIs(n.inputs[i])}, to, to);
        sum = to;
      }
      if (n.inputs.size() == 1) Node("Identity", {sum}, out, out);
    } else if (type == "concat") {
      // pstrain joins the last dimension: channels, axis 1 of NCHW.
      std::vector<std::string> in;
      for (int v : n.inputs) in.push_back(AsIs(v));
      Int(Node("Concat", in, out, out), "axis", 1);
    } else if (type == "layer_norm") {
      // Over the features (an image's channels: axis 1 of NCHW), eps as
      // pstrain's; LayerNormalization itself is opset 17.
      const std::string x = AsIs(n.inputs[0]);
      Ints(Node("ReduceMean", {x}, out + ":mean", out + ":mean"), "axes", {1});
      Node("Sub", {x, out + ":mean"}, out + ":c", out + ":c");
      Node("Mul", {out + ":c", out + ":c"}, out + ":sq", out + ":sq");
      Ints(Node("ReduceMean", {out + ":sq"}, out + ":var", out + ":var"), "axes", {1});
      Node("Add", {out + ":var", Scalar(kLayerNormEps)}, out + ":ve", out + ":ve");
      Node("Sqrt", {out + ":ve"}, out + ":sd", out + ":sd");
      Node("Div", {out + ":c", out + ":sd"}, out + ":n", out + ":n");
      std::string gamma = Param(n.tensors[0]), beta = Param(n.tensors[1]);
      if (image) {
        const TensorSpec& g = model_.layout()[n.tensors[0]];
        const TensorSpec& b = model_.layout()[n.tensors[1]];
        const int64_t c = g.shape[0];
        gamma = Floats(g.name + ":c11", {1, c, 1, 1}, Tensor(n.tensors[0]));
        beta = Floats(b.name + ":c11", {1, c, 1, 1}, Tensor(n.tensors[1]));
      }
      Node("Mul", {out + ":n", gamma}, out + ":g", out + ":g");
      Node("Add", {out + ":g", beta}, out, out);
    } else if (type == "embedding") {
      return InvalidArgument("node \"" + n.name +
                             "\" is an embedding of sparse features: ONNX export covers dense "
                             "models only");
    } else {
      return InvalidArgument("node \"" + n.name + "\": op \"" + type + "\" has no ONNX export yet");
    }
    if (n.relu) Node("Relu", {pre}, out, out + ":relu");
    names_[n.output] = out;
    return OkStatus();
  }

  const Model& model_;
  const Graph& graph_;
  onnx::GraphProto* g_;
  std::map<int, std::string> names_, flat_;
  std::string input_nchw_;
  std::set<std::string> made_;
};

}  // namespace

StatusOr<std::string> ExportOnnx(const Model& model, const std::string& name,
                                 const std::string& producer_version) {
  onnx::ModelProto m;
  m.set_ir_version(kIrVersion);
  m.set_producer_name("pstrain");
  m.set_producer_version(producer_version);
  m.set_doc_string(
      "input: features as pstrain reads them (image pixels / 255, row by row, "
      "channels adjacent); outputs: logits and softmax probabilities");
  onnx::OperatorSetIdProto* opset = m.add_opset_import();
  opset->set_domain("");
  opset->set_version(kOpset);
  onnx::GraphProto* g = m.mutable_graph();
  g->set_name(name);
  OnnxBuilder b(model, g);
  RETURN_IF_ERROR(b.Build());
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    if (!m.SerializeToCodedStream(&coded)) return Internal("the ONNX model did not serialise");
  }
  return bytes;
}

int RunExport(const CommandLine& cl, const std::string& producer_version) {
  const auto format = cl.options.find("format");
  if (format != cl.options.end() && format->second != "onnx") {
    return Fail(2, InvalidArgument("--format " + format->second + ": export writes onnx"));
  }
  const auto output = cl.options.find("output");
  if (output == cl.options.end() || output->second.empty()) {
    return Fail(2, InvalidArgument("export needs -o FILE: pstrain export DIR -o model.onnx"));
  }
  int code = 0;
  StatusOr<LoadedCheckpoint> ck = LoadCheckpoint(cl, "export", &code);
  if (!ck.ok()) return Fail(code, ck.status());
  StatusOr<std::string> bytes = ExportOnnx(*ck->model, ck->config.name, producer_version);
  if (!bytes.ok()) return Fail(2, bytes.status());
  const std::string& path = output->second;
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f.write(bytes->data(), static_cast<std::streamsize>(bytes->size()));
    f.close();
    if (!f) {
      std::filesystem::remove(tmp);
      return Fail(1, Unavailable(path + ": cannot write it"));
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return Fail(1, Unavailable(path + ": " + ec.message()));
  std::printf("wrote %s: %s, opset %lld, %zu bytes, from %s\n", path.c_str(),
              ck->model->Describe().c_str(), static_cast<long long>(kOpset), bytes->size(),
              ck->folder.c_str());
  return 0;
}

}  // namespace pstrain
