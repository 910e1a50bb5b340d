// Graph IR: a list of nodes in topological order over named values.
//
// The same structure carries a float model, a quantized model (values carry
// QuantParams, weights are integer constants) and a lowered integer program
// (nodes additionally carry prepared `params`: multipliers, shifts, LUTs).
// Serialisation: a JSON document for the structure plus one binary blob for all
// tensors, in one file (see docs/qmodel.md).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "core/status.h"
#include "core/tensor.h"

namespace qeval {

enum class OpKind : uint8_t {
#define QEVAL_OP(Name, min_in, max_in, n_out) k##Name,
#include "core/ops.inc"
#undef QEVAL_OP
};

const char* op_name(OpKind op);
Result<OpKind> op_from_name(const std::string& name);
int op_count();

using AttrValue =
    std::variant<int64_t, double, std::string, std::vector<int64_t>, std::vector<double>>;

// Quantization parameters of a value: real = (q - zero_point) * scale.
// One entry = per tensor; several = per channel along `axis`.
struct QuantParams {
  DType dtype = DType::kInt8;
  std::vector<float> scale;
  std::vector<int32_t> zero_point;
  int axis = -1;
  int64_t qmin() const { return dtype_min(dtype); }
  int64_t qmax() const { return dtype_max(dtype); }
  bool per_channel() const { return scale.size() > 1; }
  bool operator==(const QuantParams&) const = default;
};

struct ValueInfo {
  std::string name;
  DType dtype = DType::kFloat32;
  Shape shape;  // empty until inferred; -1 for an unknown dimension
  std::optional<QuantParams> quant;
};

struct Node {
  OpKind op = OpKind::kRelu;
  std::string name;
  std::vector<std::string> inputs;  // "" = absent optional input
  std::vector<std::string> outputs;
  std::map<std::string, AttrValue> attrs;
  std::map<std::string, Tensor> params;  // prepared by lowering (qmodel only)

  bool has_attr(const std::string& k) const { return attrs.count(k) > 0; }
  int64_t attr_int(const std::string& k, int64_t def) const;
  double attr_float(const std::string& k, double def) const;
  std::string attr_str(const std::string& k, const std::string& def) const;
  std::vector<int64_t> attr_ints(const std::string& k, std::vector<int64_t> def) const;
  std::vector<double> attr_floats(const std::string& k, std::vector<double> def) const;
  // "node 'conv1' (Conv2d)" for error messages.
  std::string describe() const;
};

struct Graph {
  std::string name;
  std::vector<std::string> inputs;
  std::vector<std::string> outputs;
  std::vector<Node> nodes;
  std::map<std::string, ValueInfo> values;
  std::map<std::string, Tensor> constants;  // weights, biases
  std::map<std::string, std::string> metadata;  // profile, provenance hashes, ...

  ValueInfo& value(const std::string& name);  // creates if missing
  const ValueInfo* find_value(const std::string& name) const;
  const Tensor* find_constant(const std::string& name) const;
  bool is_constant(const std::string& name) const { return constants.count(name) > 0; }

  // Checks structure: unique value producers, every input defined before use,
  // op arity, outputs produced. Errors name the node.
  Status validate() const;
  // Fills ValueInfo::shape of every value from the graph inputs' shapes.
  Status infer_shapes();
};

// Shape inference of one node (generated dispatch over ops.inc).
Result<std::vector<Shape>> infer_node_shapes(const Node& node, const std::vector<Shape>& inputs);

// Serialisation.
// Input count within the op's range, required inputs named, an output present
// (part of Graph::validate; importers check each node before rewriting the graph).
Status check_node_arity(const Node& n);
Status save_graph(const Graph& g, const std::string& path);
Result<Graph> load_graph(const std::string& path);
Result<std::string> graph_to_bytes(const Graph& g);
Result<Graph> graph_from_bytes(const std::string& bytes, const std::string& source_name);

// Pooling/conv output size: floor or ceil((in + pad_begin + pad_end - dil*(k-1) - 1)/stride) + 1.
int64_t conv_out_size(int64_t in, int64_t k, int64_t stride, int64_t pad_begin, int64_t pad_end,
                      int64_t dilation, bool ceil_mode = false);

}  // namespace qeval
