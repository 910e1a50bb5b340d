#include "harness/diagnose.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <tuple>

namespace qeval {

namespace {

Finding check(const std::string& name, const std::string& detail, double value = kNaN) {
  Finding f;
  f.kind = "check";
  f.subject = name;
  f.detail = detail;
  f.value = value;
  return f;
}

bool is_clamp(OpKind op) { return op == OpKind::kRelu || op == OpKind::kRelu6 || op == OpKind::kClip; }

bool is_power_of_two(float s) {
  if (!(s > 0)) return false;
  int e = 0;
  return std::frexp(s, &e) == 0.5f;
}

std::string quoted(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

std::string flow_list(const std::vector<std::string>& v) {
  std::vector<std::string> q;
  for (const auto& x : v) q.push_back(quoted(x));
  return fmt::format("[{}]", fmt::join(q, ", "));
}

}  // namespace

std::vector<Finding> program_checks(const Graph& fp32, const Graph& program, const QuantConfig& cfg,
                                    const ChipProfile& profile, const CheckThresholds& t) {
  std::vector<Finding> out;
  std::set<std::string> fp32_nodes;
  for (const Node& n : fp32.nodes) fp32_nodes.insert(n.name);
  const std::set<std::string> asked_float(cfg.float_layers.begin(), cfg.float_layers.end());
  const bool int16_allowed = std::find(profile.activation_bits.begin(), profile.activation_bits.end(), 16) !=
                             profile.activation_bits.end();
  for (const Node& n : program.nodes) {
    // A BatchNorm left in the program was not folded into its convolution.
    if (n.op == OpKind::kBatchNorm) {
      out.push_back(check("unfused_batchnorm",
                          fmt::format("{}: BatchNorm runs on its own in float (not folded into a convolution; its "
                                      "input has other readers or no conv produces it)", n.name)));
    }
    // A clamp with its own quantizer: not fused into the op that produces its input.
    if (is_clamp(n.op) && !n.inputs.empty()) {
      const ValueInfo* in = program.find_value(n.inputs[0]);
      const ValueInfo* o = program.find_value(n.outputs.at(0));
      if (in && o && in->quant && o->quant && !(*in->quant == *o->quant)) {
        out.push_back(check("unfused_activation",
                            fmt::format("{}: {} requantizes its input (scale {:.6g} -> {:.6g}): not fused into "
                                        "the layer before it", n.name, op_name(n.op), in->quant->scale.at(0),
                                        o->quant->scale.at(0))));
      }
    }
    // Float compute that the cfg did not ask for (the simulator's border ops excluded).
    const bool border = n.op == OpKind::kQuantize || n.op == OpKind::kDequantize || n.op == OpKind::kFlatten ||
                        n.op == OpKind::kReshape || n.op == OpKind::kMaxPool;
    const ValueInfo* ov = program.find_value(n.outputs.at(0));
    if (!border && n.op != OpKind::kBatchNorm && ov && ov->dtype == DType::kFloat32 && fp32_nodes.count(n.name) &&
        !asked_float.count(n.name)) {
      out.push_back(check("float_fallback", fmt::format("{}: {} runs in float although quant.float_layers does "
                                                        "not name it", n.name, op_name(n.op))));
    }
    // Inputs of Add/Concat on different scales: the smaller-scale input is requantized
    // to the output's scale and loses its resolution.
    if ((n.op == OpKind::kAdd || n.op == OpKind::kConcat) && n.inputs.size() >= 2) {
      float lo = 0, hi = 0;
      std::vector<std::string> parts;
      for (const std::string& i : n.inputs) {
        const ValueInfo* vi = program.find_value(i);
        if (!vi || !vi->quant || vi->quant->per_channel() || vi->quant->scale.empty() || program.is_constant(i)) {
          continue;
        }
        const float s = vi->quant->scale[0];
        lo = lo == 0 ? s : std::min(lo, s);
        hi = std::max(hi, s);
        parts.push_back(fmt::format("{} {:.6g}", i, s));
      }
      if (lo > 0 && hi / lo > t.scale_mismatch) {
        out.push_back(check("scale_mismatch",
                            fmt::format("{}: {} inputs on scales {:.2f}x apart ({})", n.name, op_name(n.op), hi / lo,
                                        fmt::join(parts, ", ")),
                            hi / lo));
      }
    }
    // Weights off the profile's rules.
    if ((n.op == OpKind::kConv2d || n.op == OpKind::kLinear) && n.inputs.size() >= 2) {
      const ValueInfo* w = program.find_value(n.inputs[1]);
      if (w && w->quant && program.is_constant(n.inputs[1])) {
        const QuantParams& q = *w->quant;
        const int64_t channels = w->shape.empty() ? 1 : w->shape[0];
        if (cfg.per_channel && profile.weight_per_channel && !q.per_channel() && channels > 1) {
          out.push_back(check("profile_rule", fmt::format("{}: per-tensor weights, but {} and the cfg ask for "
                                                          "per-channel", n.name, profile.name)));
        }
        const bool nonzero_zp =
            std::any_of(q.zero_point.begin(), q.zero_point.end(), [](int32_t z) { return z != 0; });
        if (profile.weight_symmetric && nonzero_zp) {
          out.push_back(check("profile_rule", fmt::format("{}: weight zero point is not 0 on symmetric {}", n.name,
                                                          profile.name)));
        }
      }
    }
  }
  // Activation quantizers off the profile's rules.
  const bool pow2 = cfg.power_of_two || profile.power_of_two_scales;
  for (const auto& [name, vi] : program.values) {
    if (!vi.quant || program.is_constant(name) || vi.dtype == DType::kFloat32) continue;
    const QuantParams& q = *vi.quant;
    const bool ok_dtype = q.dtype == profile.activation_dtype || (int16_allowed && q.dtype == DType::kInt16) ||
                          q.dtype == DType::kInt32;
    if (!ok_dtype) {
      out.push_back(check("profile_rule", fmt::format("{}: activation is {}, {} uses {}", name, dtype_name(q.dtype),
                                                      profile.name, dtype_name(profile.activation_dtype))));
    }
    if (q.dtype == DType::kInt32) continue;  // raw accumulators (bias-like values) carry no activation rule
    if (profile.activation_symmetric &&
        std::any_of(q.zero_point.begin(), q.zero_point.end(), [](int32_t z) { return z != 0; })) {
      out.push_back(check("profile_rule", fmt::format("{}: zero point {} on symmetric {}", name, q.zero_point.at(0),
                                                      profile.name)));
    }
    if (pow2 && std::any_of(q.scale.begin(), q.scale.end(), [](float s) { return !is_power_of_two(s); })) {
      out.push_back(check("profile_rule", fmt::format("{}: scale {:.6g} is not a power of two ({})", name,
                                                      q.scale.at(0), profile.power_of_two_scales
                                                                         ? profile.name + " requires them"
                                                                         : "quant.power_of_two")));
    }
  }
  return out;
}

std::vector<Finding> layer_checks(const std::vector<LayerResult>& layers, const CheckThresholds& t) {
  std::vector<Finding> out;
  for (const LayerResult& l : layers) {
    if (l.bits > 0 && std::isnan(l.lo)) {
      out.push_back(check("non_finite", fmt::format("{}: the fp32 activation holds NaN or Inf", l.name)));
      continue;
    }
    // MaxPool, Flatten, Reshape and Upsample carry their input's quantizer: the producer is the one flagged.
    if (l.op == "MaxPool" || l.op == "Flatten" || l.op == "Reshape" || l.op == "Upsample") continue;
    if (l.bits > 0 && l.saturation > t.saturation) {
      out.push_back(check("saturation",
                          fmt::format("{}: {:.2f}% of fp32 values are clipped (fp32 range [{:.4g}, {:.4g}], scale "
                                      "{:.4g}, {} bits)", l.name, 100 * l.saturation, l.lo, l.hi, l.scale, l.bits),
                          l.saturation));
    }
    if (l.bits > 0 && l.outlier > t.outlier) {
      out.push_back(check("outlier_range",
                          fmt::format("{}: max |x| is {:.1f}x the 99.9th percentile: outliers set the range "
                                      "(try quant.observer: percentile or mse)", l.name, l.outlier),
                          l.outlier));
    }
  }
  return out;
}

Result<GateMetric> gate_metric(const JobResult& job, double allowed_drop) {
  GateMetric g;
  const MetricResult* m = job.metric("top1");
  if (!m) m = job.metric("mAP");
  if (!m) return invalid_argument("{}: the job has no top1 or mAP metric ({})", job.id, job.status);
  g.name = m->name;
  g.fp32 = m->baseline;
  g.value = m->value;
  g.allowed_drop = std::isnan(allowed_drop) ? m->allowed_drop : allowed_drop;
  for (const MetricResult& x : job.metrics) {
    if (x.gated && !x.pass && x.name != g.name) {
      g.others_pass = false;
      g.other_failures.push_back(fmt::format("{} {} ({})", x.name, format_metric(x.name, x.value), x.tolerance));
    }
  }
  if (std::isnan(g.allowed_drop)) {
    return invalid_argument("{}: no tolerance for {} (set metric_tolerance in the cfg or pass --tolerance)",
                               job.id, g.name);
  }
  return g;
}

void rank_sensitivity(std::vector<Sensitivity>& rows, double fp32_metric, double all_quantized_metric,
                      double all_quantized_sqnr) {
  auto nz = [](double v) { return std::isnan(v) ? -1e300 : v; };
  auto key = [&](const Sensitivity& s) {
    return std::make_tuple(nz(s.only_float - all_quantized_metric), nz(fp32_metric - s.only_quantized),
                           nz(s.only_float_sqnr - all_quantized_sqnr), nz(-s.only_quantized_sqnr));
  };
  std::stable_sort(rows.begin(), rows.end(),
                   [&](const Sensitivity& a, const Sensitivity& b) { return key(a) > key(b); });
  for (size_t i = 0; i < rows.size(); ++i) rows[i].rank = static_cast<int64_t>(i + 1);
}

const char* fix_action_name(FixAction a) {
  switch (a) {
    case FixAction::kBits8: return "layer_bits 8";
    case FixAction::kInt16: return "int16";
    case FixAction::kFloat: return "float";
  }
  return "?";
}

Result<FixAction> parse_fix_action(const std::string& s) {
  if (s == "bits8") return FixAction::kBits8;
  if (s == "int16") return FixAction::kInt16;
  if (s == "float") return FixAction::kFloat;
  return invalid_argument("--fix_with: '{}' (allowed: auto, bits8, int16, float)", s);
}

Result<FixSearch> search_fix(const std::vector<std::string>& order, size_t max_layers, size_t batch,
                             const FixEvaluator& eval) {
  FixSearch r;
  batch = std::max<size_t>(1, batch);
  const size_t limit = max_layers == 0 ? order.size() : std::min(max_layers, order.size());
  auto run = [&](const std::vector<std::vector<std::string>>& sets) -> Result<std::vector<FixTrial>> {
    QEVAL_ASSIGN_OR_RETURN(std::vector<FixTrial> got, eval(sets));
    if (got.size() != sets.size()) return internal_error("fix evaluator returned {} of {} trials", got.size(), sets.size());
    for (size_t i = 0; i < got.size(); ++i) got[i].layers = sets[i];
    r.trials.insert(r.trials.end(), got.begin(), got.end());
    return got;
  };
  // 1. Growing prefixes of the ranking, `batch` at a time; the shortest passing one wins.
  for (size_t k = 1; k <= limit && !r.found; k += batch) {
    std::vector<std::vector<std::string>> sets;
    for (size_t j = k; j < k + batch && j <= limit; ++j) sets.emplace_back(order.begin(), order.begin() + j);
    QEVAL_ASSIGN_OR_RETURN(auto got, run(sets));
    for (const FixTrial& t : got) {
      if (t.pass) {
        r.found = true;
        r.layers = t.layers;
        r.metric = t.metric;
        break;
      }
    }
  }
  if (!r.found) return r;
  // 2. Drop layers the fix does not need: every single removal is tried, the best
  // passing one is kept, until none passes.
  while (r.layers.size() > 1) {
    std::vector<std::vector<std::string>> sets;
    for (size_t i = 0; i < r.layers.size(); ++i) {
      std::vector<std::string> s = r.layers;
      s.erase(s.begin() + static_cast<std::ptrdiff_t>(i));
      sets.push_back(s);
    }
    std::vector<FixTrial> got;
    for (size_t b = 0; b < sets.size(); b += batch) {
      std::vector<std::vector<std::string>> part(sets.begin() + static_cast<std::ptrdiff_t>(b),
                                                 sets.begin() + static_cast<std::ptrdiff_t>(std::min(sets.size(), b + batch)));
      QEVAL_ASSIGN_OR_RETURN(auto g, run(part));
      got.insert(got.end(), g.begin(), g.end());
    }
    const FixTrial* best = nullptr;
    for (const FixTrial& t : got) {
      if (t.pass && (!best || t.metric > best->metric)) best = &t;
    }
    if (!best) break;
    r.layers = best->layers;
    r.metric = best->metric;
  }
  return r;
}

std::string fix_patch_yaml(const std::string& base_cfg, const std::string& name, const QuantConfig& base,
                           const std::vector<std::string>& layers, FixAction action, const std::string& comment) {
  std::string out;
  if (!comment.empty()) {
    size_t start = 0;
    while (start < comment.size()) {
      size_t e = comment.find('\n', start);
      if (e == std::string::npos) e = comment.size();
      out += "# " + comment.substr(start, e - start) + "\n";
      start = e + 1;
    }
  }
  out += fmt::format("base: {}\nname: {}\nquant:\n", quoted(base_cfg), quoted(name));
  if (action == FixAction::kBits8) {
    std::map<std::string, int> bits = base.layer_bits;
    for (const auto& l : layers) bits[l] = 8;
    std::vector<std::string> kv;
    for (const auto& [l, b] : bits) kv.push_back(fmt::format("{}: {}", quoted(l), b));
    out += fmt::format("  layer_bits: {{{}}}\n", fmt::join(kv, ", "));
  } else {
    std::vector<std::string> v = action == FixAction::kInt16 ? base.int16_layers : base.float_layers;
    for (const auto& l : layers) {
      if (std::find(v.begin(), v.end(), l) == v.end()) v.push_back(l);
    }
    out += fmt::format("  {}: {}\n", action == FixAction::kInt16 ? "int16_layers" : "float_layers", flow_list(v));
  }
  return out;
}

std::string float_layers_patch_yaml(const std::string& base_cfg, const std::string& name,
                                    const std::vector<std::string>& float_layers) {
  return fmt::format("base: {}\nname: {}\nquant:\n  float_layers: {}\n", quoted(base_cfg), quoted(name),
                     flow_list(float_layers));
}

}  // namespace qeval
