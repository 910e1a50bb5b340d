// Quantization plan: where a float graph gets quantizers under a QuantConfig
// and a chip profile (the `prepare` step of sophgo-mq / tpu-mq), and the
// converter that turns a float graph plus quantization parameters into a
// quantized qeval graph that the simulator lowers. Torch-free: the QAT core
// (quant/qat.h) fills the parameters, PTQ and tests use the same code.
//
// Rules (docs/quantization.md):
//   - Conv2d/Linear [+ BatchNorm folded] [+ Relu | Relu6 | Clip] is one
//     quantized op: one activation quantizer on the group's last value; the
//     intermediate values share it (the simulator requantizes the accumulator
//     straight to it, the activation is then a clamp table on the same scale).
//   - Add [+ Relu] likewise; Mul, Concat, pools with averaging, Sigmoid/SiLU/
//     GELU, Softmax, LayerNorm and a standalone activation: own quantizer
//     (Concat/Add inputs are rescaled by the simulator to the output scale).
//   - MaxPool, Flatten, Reshape, Upsample pass their input's quantization on.
//   - Graph inputs get a quantizer (a Quantize node in the deployed model);
//     graph outputs are dequantized.
//   - Weights of Conv2d/Linear: the profile's weight spec (per-channel
//     symmetric by default), with `layer_bits` overrides.
//   - `float_layers` (hybrid): the group runs in float; Dequantize/Quantize
//     nodes are inserted at its borders. `int16_layers`: 16-bit activations.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "quant/qconfig.h"

namespace qeval {

struct QuantPlan {
  // Activation values that own a quantizer, in graph order, with their spec.
  std::vector<std::string> act_order;
  std::map<std::string, QuantSpec> act;
  // Every quantized value -> the owner whose parameters it carries.
  std::map<std::string, std::string> share;
  // Conv2d/Linear node name -> weight spec (weights quantized per channel on axis 0).
  std::map<std::string, QuantSpec> weight;
  std::map<std::string, bool> weight_per_channel;
  // Conv2d node -> the BatchNorm folded into it.
  std::map<std::string, std::string> folded_bn;
  // Nodes that run in float (hybrid layers and what follows them pass-through).
  std::set<std::string> float_nodes;
  // The quantized-op group of each node (its head: the Conv2d/Linear/Add... name).
  std::map<std::string, std::string> group_of;
  // `quant.ranges`: activation ranges given in the cfg, by owner value; they
  // replace what calibration observed.
  std::map<std::string, Range> range_override;

  // The owner of value `v`'s quantization, or "" when `v` stays float.
  std::string owner(const std::string& v) const;
};

// Plans `g` (a float graph). Errors name the config key for unknown layers in
// float_layers / int16_layers / layer_bits (listing the layers there are).
Result<QuantPlan> plan_quantization(const Graph& g, const QuantConfig& cfg, const ChipProfile& profile);

// Names of the layers a config can refer to (Conv2d/Linear/... node names).
std::vector<std::string> quantizable_layers(const Graph& g);
// The heads of the groups `plan` quantizes (Conv2d/Linear/Add/... that own an
// activation quantizer or weights), in graph order: what `float_layers`,
// `int16_layers` and sensitivity analysis act on.
std::vector<std::string> quantized_group_heads(const Graph& g, const QuantPlan& plan);

// What the QAT core (or PTQ) determined, by plan entries.
struct DeployParams {
  std::map<std::string, QuantParams> act;     // by owner value
  std::map<std::string, QuantParams> weight;  // by Conv2d/Linear node
  // Float weight and bias of each Conv2d/Linear node after BN folding (bias may
  // be absent when the node has none and no BN was folded).
  std::map<std::string, Tensor> weight_f, bias_f;
  // Rounding of float weights to integers (the fake quant's; profile.quantize_rounding).
  RoundingMode rounding = RoundingMode::kHalfToEven;
};

// The quantized graph (not yet lowered): integer weights with per-channel
// QuantParams, int32 biases round(b / (s_x · s_w[c])) (half away from zero),
// QuantParams on every integer value, Quantize/Dequantize at the borders.
// Integer values keep the float graph's value names (graph outputs get ".q").
Result<Graph> build_quantized_graph(const Graph& g, const QuantPlan& plan, const DeployParams& dp);

// Int32 bias of a quantized Conv2d/Linear: round(b / (s_x · s_w)) computed in
// double, half away from zero, saturated to int32.
int32_t quantize_bias(float b, float s_x, float s_w);

}  // namespace qeval
