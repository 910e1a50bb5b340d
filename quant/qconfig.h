// QuantConfig: the `quant` block of a model cfg (DESIGN.md "Configuration"),
// and its check against a chip profile. Errors name the file, line, key and
// the allowed values: "resnet8.yaml:12: quant.weight_bits: 3 (bm1690 allows 4, 8)".
//
//   quant:
//     observer: percentile        # minmax | ema_minmax | percentile | mse
//     percentile: 99.99           # percentile observer
//     ema_momentum: 0.9           # ema_minmax observer
//     weight_bits: 8              # must be one of the profile's weights.bits
//     activation_bits: 8          # must be one of the profile's activations.bits
//     per_channel: true           # per-channel weights (profile must allow them)
//     power_of_two: false         # power-of-two scales
//     float_layers: [fc]          # hybrid: these layers stay float
//     int16_layers: [stem.0]      # 16-bit activations (profile must allow 16)
//     layer_bits: {layer3.conv2: 4}   # per-layer weight bits
//     ranges: {layer2.conv1: [-0.5, 3.0]}  # activation range of a layer, instead of
//                                # calibration (as editing tpu-mlir's calibration table);
//                                # ignored while the layer is in float_layers
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/status.h"
#include "quant/observer.h"
#include "simulator/profile.h"

namespace YAML {
class Node;
}

namespace qeval {

struct QuantConfig {
  ObserverOptions observer;
  int weight_bits = 8;
  int activation_bits = 8;
  bool per_channel = true;
  bool power_of_two = false;
  std::vector<std::string> float_layers;
  std::vector<std::string> int16_layers;
  std::map<std::string, int> layer_bits;
  std::map<std::string, std::vector<double>> ranges;  // layer -> [lo, hi]
  std::string source;  // "file:line" of the block, for later errors
};

// The `qat` block: fine-tuning recipe and fake quant choice.
//   qat:
//     epochs: 1                  # 0 = PTQ only
//     lr: 0.002                  # peak LR (SGD + Nesterov, cosine decay)
//     optimizer: sgd             # sgd | adam
//     schedule: cosine           # cosine | onecycle | constant
//     batch: 128
//     weight_decay: 0.0
//     fake_quant: lsq            # activations: lsq | ste
//     weight_fake_quant: minmax  # minmax (per-channel max, STE) | lsq
//     freeze_bn_epoch: 0         # BN statistics frozen from this epoch (0: from the start)
//     calib_images: 512          # training images the observers see
//     grad_clip: 0               # max gradient norm (0: off)
struct QatConfig {
  int epochs = 1;
  double lr = 2e-3;
  std::string optimizer = "sgd";
  std::string schedule = "cosine";
  int64_t batch = 128;
  double weight_decay = 0.0;
  std::string fake_quant = "lsq";
  std::string weight_fake_quant = "minmax";
  double freeze_bn_epoch = 0;
  int64_t calib_images = 512;
  double grad_clip = 0;
  std::string source;
};
Result<QatConfig> parse_qat_config(const YAML::Node& block, const std::string& source);

// A model cfg as `qeval quantize --cfg` reads it: `chip`, `quant` and `qat`
// (the other keys of DESIGN.md's cfg are accepted and left to run_eval).
struct QuantizeCfg {
  std::string chip = "bm1690";
  QuantConfig quant;
  QatConfig qat;
};
Result<QuantizeCfg> load_quantize_cfg(const std::string& path);
Result<QuantizeCfg> parse_quantize_cfg(const std::string& yaml_text, const std::string& source);

// Parses the block (a YAML mapping); `source` names the file.
Result<QuantConfig> parse_quant_config(const YAML::Node& block, const std::string& source);
Result<QuantConfig> parse_quant_config_text(const std::string& yaml_text, const std::string& source);

// Can `profile` run `cfg`? Bits, per-channel weights, 16-bit layers.
Status check_quant_config(const QuantConfig& cfg, const ChipProfile& profile);

// Weight and activation QuantSpec of a layer under `cfg` and `profile`.
QuantSpec weight_spec(const QuantConfig& cfg, const ChipProfile& profile, const std::string& layer);
QuantSpec activation_spec(const QuantConfig& cfg, const ChipProfile& profile, const std::string& layer);

}  // namespace qeval
