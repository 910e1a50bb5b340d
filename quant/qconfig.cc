#include "quant/qconfig.h"

#include <algorithm>
#include <cmath>

#include "core/file_io.h"
#include "simulator/yaml_util.h"

namespace qeval {

namespace {

std::string join(const std::vector<int>& v) {
  std::string s;
  for (int x : v) s += (s.empty() ? "" : ", ") + std::to_string(x);
  return s;
}

bool contains(const std::vector<int>& v, int x) { return std::find(v.begin(), v.end(), x) != v.end(); }

}  // namespace

Result<QuantConfig> parse_quant_config(const YAML::Node& q, const std::string& src) {
  QuantConfig c;
  c.source = fmt::format("{}:{}", src, q.Mark().line + 1);
  if (!q.IsMap()) return yaml::at(q, src, invalid_argument("quant: expected a mapping of keys"));
  QEVAL_RETURN_IF_ERROR(yaml::check_keys(q, src, "quant.",
                                         {"observer", "percentile", "ema_momentum", "weight_bits",
                                          "activation_bits", "per_channel", "power_of_two", "float_layers",
                                          "int16_layers", "layer_bits", "ranges"}));
  QEVAL_RETURN_IF_ERROR(yaml::read(q, "observer", &c.observer.kind, src, "quant."));
  QEVAL_RETURN_IF_ERROR(yaml::read(q, "percentile", &c.observer.percentile, src, "quant."));
  QEVAL_RETURN_IF_ERROR(yaml::read(q, "ema_momentum", &c.observer.ema_momentum, src, "quant."));
  QEVAL_RETURN_IF_ERROR(yaml::read(q, "weight_bits", &c.weight_bits, src, "quant."));
  QEVAL_RETURN_IF_ERROR(yaml::read(q, "activation_bits", &c.activation_bits, src, "quant."));
  QEVAL_RETURN_IF_ERROR(yaml::read(q, "per_channel", &c.per_channel, src, "quant."));
  QEVAL_RETURN_IF_ERROR(yaml::read(q, "power_of_two", &c.power_of_two, src, "quant."));
  QEVAL_RETURN_IF_ERROR(yaml::read(q, "float_layers", &c.float_layers, src, "quant."));
  QEVAL_RETURN_IF_ERROR(yaml::read(q, "int16_layers", &c.int16_layers, src, "quant."));
  QEVAL_RETURN_IF_ERROR(yaml::read(q, "layer_bits", &c.layer_bits, src, "quant."));
  QEVAL_RETURN_IF_ERROR(yaml::read(q, "ranges", &c.ranges, src, "quant."));
  for (const auto& [layer, r] : c.ranges) {
    if (r.size() != 2 || !std::isfinite(r[0]) || !std::isfinite(r[1]) || r[0] > r[1]) {
      return yaml::at(q["ranges"], src,
                      invalid_argument("quant.ranges.{}: expected [lo, hi] with lo <= hi", layer));
    }
  }
  // The observer's own checks (kind, momentum, percentile) with this block's position.
  auto obs = make_observer(c.observer);
  if (!obs.is_ok()) {
    const YAML::Node at = q["observer"] ? q["observer"] : q;
    return yaml::at(at, src, obs.status().with_context("quant"));
  }
  return c;
}

Result<QuantConfig> parse_quant_config_text(const std::string& text, const std::string& source) {
  QEVAL_ASSIGN_OR_RETURN(YAML::Node root, yaml::load(text, source));
  return parse_quant_config(root, source);
}

Result<QatConfig> parse_qat_config(const YAML::Node& q, const std::string& src) {
  QatConfig c;
  c.source = fmt::format("{}:{}", src, q.Mark().line + 1);
  if (!q.IsMap()) return yaml::at(q, src, invalid_argument("qat: expected a mapping of keys"));
  QEVAL_RETURN_IF_ERROR(yaml::check_keys(q, src, "qat.",
                                         {"epochs", "lr", "optimizer", "schedule", "batch", "weight_decay",
                                          "fake_quant", "weight_fake_quant", "freeze_bn_epoch", "calib_images",
                                          "grad_clip"}));
  QEVAL_RETURN_IF_ERROR(yaml::read(q, "epochs", &c.epochs, src, "qat."));
  QEVAL_RETURN_IF_ERROR(yaml::read(q, "lr", &c.lr, src, "qat."));
  QEVAL_RETURN_IF_ERROR(yaml::read(q, "optimizer", &c.optimizer, src, "qat."));
  QEVAL_RETURN_IF_ERROR(yaml::read(q, "schedule", &c.schedule, src, "qat."));
  QEVAL_RETURN_IF_ERROR(yaml::read(q, "batch", &c.batch, src, "qat."));
  QEVAL_RETURN_IF_ERROR(yaml::read(q, "weight_decay", &c.weight_decay, src, "qat."));
  QEVAL_RETURN_IF_ERROR(yaml::read(q, "fake_quant", &c.fake_quant, src, "qat."));
  QEVAL_RETURN_IF_ERROR(yaml::read(q, "weight_fake_quant", &c.weight_fake_quant, src, "qat."));
  QEVAL_RETURN_IF_ERROR(yaml::read(q, "freeze_bn_epoch", &c.freeze_bn_epoch, src, "qat."));
  QEVAL_RETURN_IF_ERROR(yaml::read(q, "calib_images", &c.calib_images, src, "qat."));
  QEVAL_RETURN_IF_ERROR(yaml::read(q, "grad_clip", &c.grad_clip, src, "qat."));
  auto bad = [&](const char* key, const std::string& v, const char* allowed) {
    return yaml::at(q[key], src, invalid_argument("qat.{}: '{}' (allowed: {})", key, v, allowed));
  };
  if (c.optimizer != "sgd" && c.optimizer != "adam") return bad("optimizer", c.optimizer, "sgd, adam");
  if (c.schedule != "cosine" && c.schedule != "onecycle" && c.schedule != "constant") {
    return bad("schedule", c.schedule, "cosine, onecycle, constant");
  }
  if (c.fake_quant != "lsq" && c.fake_quant != "ste") return bad("fake_quant", c.fake_quant, "lsq, ste");
  if (c.weight_fake_quant != "minmax" && c.weight_fake_quant != "lsq") {
    return bad("weight_fake_quant", c.weight_fake_quant, "minmax, lsq");
  }
  auto positive = [&](const char* key, bool ok, const char* what) -> Status {
    return ok ? Status::ok() : yaml::at(q[key], src, invalid_argument("qat.{}: must be {}", key, what));
  };
  QEVAL_RETURN_IF_ERROR(positive("epochs", c.epochs >= 0, ">= 0"));
  QEVAL_RETURN_IF_ERROR(positive("lr", c.lr > 0, "> 0"));
  QEVAL_RETURN_IF_ERROR(positive("batch", c.batch > 0, "> 0"));
  QEVAL_RETURN_IF_ERROR(positive("calib_images", c.calib_images > 0, "> 0"));
  QEVAL_RETURN_IF_ERROR(positive("freeze_bn_epoch", c.freeze_bn_epoch >= 0, ">= 0"));
  QEVAL_RETURN_IF_ERROR(positive("grad_clip", c.grad_clip >= 0, ">= 0"));
  return c;
}

Result<QuantizeCfg> parse_quantize_cfg(const std::string& text, const std::string& src) {
  QEVAL_ASSIGN_OR_RETURN(YAML::Node root, yaml::load(text, src));
  QuantizeCfg c;
  c.quant.source = c.qat.source = src;
  if (!root || root.IsNull()) return c;
  if (!root.IsMap()) return yaml::at(root, src, invalid_argument("expected a mapping of cfg keys"));
  QEVAL_RETURN_IF_ERROR(yaml::check_keys(
      root, src, "",
      {"chip", "quant", "qat", "task", "name", "model", "model_path", "qat_model_path", "dataset", "test_input",
       "input_shapes", "resize_dims", "mean", "scale", "pixel_format", "channel_format", "keep_aspect_ratio",
       "int8_sym_tolerance", "int8_asym_tolerance", "debug_cmd", "metric_tolerance", "fast_test_count"}));
  QEVAL_RETURN_IF_ERROR(yaml::read(root, "chip", &c.chip, src, ""));
  if (root["quant"]) {
    QEVAL_ASSIGN_OR_RETURN(c.quant, parse_quant_config(root["quant"], src));
  }
  if (root["qat"]) {
    QEVAL_ASSIGN_OR_RETURN(c.qat, parse_qat_config(root["qat"], src));
  }
  return c;
}

Result<QuantizeCfg> load_quantize_cfg(const std::string& path) {
  QEVAL_ASSIGN_OR_RETURN(std::string text, read_file(path));
  return parse_quantize_cfg(text, path);
}

Status check_quant_config(const QuantConfig& c, const ChipProfile& p) {
  if (!contains(p.weight_bits, c.weight_bits)) {
    return invalid_argument("{}: quant.weight_bits: {} ({} allows {})", c.source, c.weight_bits, p.name,
                            join(p.weight_bits));
  }
  for (const auto& [layer, bits] : c.layer_bits) {
    if (!contains(p.weight_bits, bits)) {
      return invalid_argument("{}: quant.layer_bits.{}: {} ({} allows {})", c.source, layer, bits, p.name,
                              join(p.weight_bits));
    }
  }
  if (!contains(p.activation_bits, c.activation_bits)) {
    return invalid_argument("{}: quant.activation_bits: {} ({} allows {})", c.source, c.activation_bits,
                            p.name, join(p.activation_bits));
  }
  if (!c.int16_layers.empty() && !contains(p.activation_bits, 16)) {
    return invalid_argument("{}: quant.int16_layers: {} has no 16-bit activations (allows {})", c.source, p.name,
                            join(p.activation_bits));
  }
  if (c.per_channel && !p.weight_per_channel) {
    return invalid_argument("{}: quant.per_channel: true ({} has per-tensor weights only; allowed: false)",
                            c.source, p.name);
  }
  return Status::ok();
}

QuantSpec weight_spec(const QuantConfig& c, const ChipProfile& p, const std::string& layer) {
  QuantSpec s;
  auto it = c.layer_bits.find(layer);
  s.bits = it != c.layer_bits.end() ? it->second : c.weight_bits;
  s.is_signed = is_integer(p.weight_dtype) && dtype_min(p.weight_dtype) < 0;
  s.symmetric = p.weight_symmetric;
  s.narrow_range = p.weight_narrow_range;
  s.power_of_two = c.power_of_two || p.power_of_two_scales;
  return s;
}

QuantSpec activation_spec(const QuantConfig& c, const ChipProfile& p, const std::string& layer) {
  QuantSpec s;
  const bool wide = std::find(c.int16_layers.begin(), c.int16_layers.end(), layer) != c.int16_layers.end();
  s.bits = wide ? 16 : c.activation_bits;
  // 16-bit activations are signed (there is no uint16 dtype in the simulator).
  s.is_signed = wide || s.bits > 8 || dtype_min(p.activation_dtype) < 0;
  s.symmetric = p.activation_symmetric;
  s.power_of_two = c.power_of_two || p.power_of_two_scales;
  return s;
}

}  // namespace qeval
