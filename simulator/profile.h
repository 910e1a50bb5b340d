// Chip profiles: what integer arithmetic a target NPU performs.
// Loaded from simulator/profiles/<name>.yaml (docs/profiles.md lists the keys).
#pragma once

#include <string>
#include <vector>

#include "core/numerics.h"
#include "core/tensor.h"

namespace qeval {

enum class NonlinearMode { kLut, kFloat };

struct ChipProfile {
  std::string name;
  std::string description;
  // Weights.
  DType weight_dtype = DType::kInt8;
  bool weight_symmetric = true;
  bool weight_per_channel = true;
  bool weight_narrow_range = false;  // [-127, 127] instead of [-128, 127]
  std::vector<int> weight_bits = {8};
  // Activations.
  DType activation_dtype = DType::kInt8;
  bool activation_symmetric = true;
  std::vector<int> activation_bits = {8};
  bool power_of_two_scales = false;
  // Requantization of accumulators.
  RequantScheme requant = RequantScheme::kSingleRounding;
  RoundingMode rounding = RoundingMode::kHalfUp;
  int multiplier_bits = 32;
  int min_rshift = 0;
  int max_rshift = 63;
  // Float -> integer at graph inputs (Quantize nodes) and when building LUTs.
  RoundingMode quantize_rounding = RoundingMode::kHalfToEven;
  // Sigmoid/SiLU/GELU on 8/16-bit data: a table built from the scales, or
  // dequantize-compute-quantize at run time. Softmax/LayerNorm likewise.
  NonlinearMode nonlinear = NonlinearMode::kLut;
  NonlinearMode softmax = NonlinearMode::kFloat;
  // Saturate the int32 accumulator (true on every profile shipped).
  bool saturate_accumulator = true;

  int64_t weight_qmin() const;
  int64_t weight_qmax() const;
};

// Parses a profile from YAML text; `source` names the file in errors.
Result<ChipProfile> parse_profile(const std::string& yaml_text, const std::string& source);
// Finds profile `name` (a path to a .yaml, or a name looked up in
// $QEVAL_PROFILE_DIR, then the source tree's simulator/profiles/).
Result<ChipProfile> load_profile(const std::string& name_or_path);
// Names of the shipped profiles.
std::vector<std::string> builtin_profile_names();

}  // namespace qeval
