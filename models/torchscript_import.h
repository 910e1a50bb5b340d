// TorchScript import: a module saved with torch.jit.trace/script + save
// becomes a float IR graph. The module is frozen (parameters become
// constants, calls inlined) and its aten ops are mapped to IR ops: Conv,
// BatchNorm, Linear/addmm, ReLU/ReLU6(hardtanh)/clamp, SiLU, Sigmoid, GELU, add,
// mul, cat, max/avg pooling, adaptive average pooling to 1×1, flatten,
// view/reshape, nearest upsampling, softmax; dropout and contiguous vanish.
// Any other op: an error naming the op and the node's source line.
#pragma once

#include <string>

#include "core/graph.h"

namespace qeval {

// `input_shape` gives the one tensor input's shape (TorchScript carries none).
Result<Graph> import_torchscript_file(const std::string& path, const Shape& input_shape);

}  // namespace qeval
