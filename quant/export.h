// Deploy exports of a quantized graph (build_quantized_graph / convert_deploy
// output) that other toolchains read. Torch-free.
//
// tpu-mlir calibration table (as sophgo-mq's convert_deploy writes it):
//   # work_mode:QAT_all_int8          (QAT_mix_prec when any layer is not int8)
//   # weight_bits <layer> <bits>      one line per layer whose weights are not 8-bit
//   # op_name threshold min max
//   <value> <threshold> <min> <max>   one line per quantized activation:
//                                     threshold = s·(2^(bits−1) − 1) (symmetric),
//                                     min/max = (qmin − z)·s, (qmax − z)·s
//   #weight_scale
//   <layer>_weight <C> <s_1 … s_C> <C> <zp_1 … zp_C>
#pragma once

#include <string>

#include "core/graph.h"

namespace qeval {

Result<std::string> calibration_table(const Graph& quantized, const std::string& chip);

}  // namespace qeval
