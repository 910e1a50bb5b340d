// ONNX QDQ export of a quantized qeval graph (quant/plan.h build_quantized_graph):
// every integer value v becomes QuantizeLinear(...) -> v and DequantizeLinear(v)
// -> v_dq, integer ops become their float ONNX op between DequantizeLinear and
// QuantizeLinear (Conv, Gemm(transB=1), Relu, Clip, Sigmoid, Add, Mul,
// GlobalAveragePool, AveragePool, MaxPool, Flatten, Reshape, Concat), weights
// are int8 initializers with per-channel DequantizeLinear (axis 0) and biases
// int32 with scale s_x·s_w[c] (as onnxruntime's quantizer writes them). The
// batch dimension is symbolic ("N"). Opset 13. Protobuf only, no LibTorch.
#pragma once

#include <string>

#include "core/graph.h"

namespace qeval {

Result<std::string> export_onnx_qdq(const Graph& quantized);
Status save_onnx_qdq(const Graph& quantized, const std::string& path);

}  // namespace qeval
