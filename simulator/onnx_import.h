// ONNX import: QDQ models (QuantizeLinear/DequantizeLinear around float ops),
// QLinearConv/QLinearMatMul, ConvInteger/MatMulInteger and
// DynamicQuantizeLinear become a quantized qeval Graph, ready for lowering.
//
// DQ -> op -> Q groups are folded into one integer op, as onnxruntime fuses
// them (docs/onnx-qdq-semantics.md); a Relu/Clip in front of a Q that makes it
// redundant is dropped first, as onnxruntime does. Ops left between a DQ and a
// Q without a Q after them run in float.
#pragma once

#include <map>
#include <string>

#include "core/graph.h"

namespace qeval {

struct OnnxImportOptions {
  // Values of graph inputs. An input that an op needs as a constant (a scale
  // or zero point that the model takes as an input, as the ONNX backend node
  // tests do) is folded into a constant and leaves the graph's inputs; the
  // others stay inputs and must be fed at run time.
  std::map<std::string, Tensor> bindings;
  // Fold DQ -> op -> Q groups into integer ops (off: keep QDQ literally, float ops).
  bool fold_qdq = true;
};

Result<Graph> import_onnx_file(const std::string& path, const OnnxImportOptions& opts = {});
Result<Graph> import_onnx_bytes(const std::string& bytes, const std::string& source,
                                const OnnxImportOptions& opts = {});
// Reads a serialised onnx.TensorProto (.pb), as in ONNX test data sets.
Result<Tensor> read_tensor_pb(const std::string& path);
// Names of the graph inputs of an ONNX model file, in order (initializers excluded).
Result<std::vector<std::string>> onnx_input_names(const std::string& path);

}  // namespace qeval
