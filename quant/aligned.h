// Deploy-aligned forward: the QAT model evaluated with the deployed integer
// arithmetic, on LibTorch. Convolutions and matrix products run in float64 on
// centred integers (exact: |sums| < 2^53, DESIGN.md trap a), then the
// accumulator goes through the profile's requantization of core/numerics
// (kern::Requant, add_requantize) with the multipliers, shifts and tables the
// simulator's lowering derived, so every integer activation equals the
// simulator's. Independent of the simulator's loops: only the integer formulas
// are shared (the one definition), not the accumulation.
//
// Ops: Quantize, Dequantize, Conv2d, Linear, Relu/Relu6/Clip/Sigmoid/SiLU/GELU
// (tables), Add, GlobalAvgPool, MaxPool, Flatten, Reshape, Upsample, Concat,
// float nodes of hybrid models (float32, as the simulator). Integer schemes only.
//
// Includes LibTorch: include from quant/ and models/ sources only.
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>

#include "core/graph.h"
#include "simulator/profile.h"

namespace qeval {

// Runs the lowered `program` (lower_graph output) on the float input batch.
// Integer values come back as int32 tensors, float values as float32; with
// keep_all every value, else the graph outputs.
Result<std::map<std::string, torch::Tensor>> run_deploy_aligned(const Graph& program, const ChipProfile& profile,
                                                                const std::map<std::string, torch::Tensor>& inputs,
                                                                bool keep_all = false);

}  // namespace qeval
