#include "simulator/kernels/common.h"

namespace qeval::kern {

QView qview(const Graph& g, const std::string& value) {
  QView v;
  const ValueInfo* vi = g.find_value(value);
  if (!vi) return v;
  v.dtype = vi->dtype;
  if (vi->quant) {
    v.quantized = true;
    v.dtype = vi->quant->dtype;
    v.scale = vi->quant->scale;
    v.zp = vi->quant->zero_point;
    v.axis = vi->quant->axis;
  }
  if (is_integer(v.dtype)) {
    v.qmin = static_cast<int32_t>(std::max<int64_t>(dtype_min(v.dtype), INT32_MIN));
    v.qmax = static_cast<int32_t>(std::min<int64_t>(dtype_max(v.dtype), INT32_MAX));
  }
  return v;
}

bool same_quant(const QView& a, const QView& b) {
  return a.dtype == b.dtype && a.scale == b.scale && a.zp == b.zp;
}

bool is_integer_node(const Node& n, const Graph& g) {
  const ValueInfo* out = g.find_value(n.outputs[0]);
  if (!out) return false;
  if (n.op == OpKind::kQuantize || n.op == OpKind::kDequantize ||
      n.op == OpKind::kDynamicQuantize) {
    return false;  // conversions: handled by their own kernels
  }
  return out->quant.has_value() || is_integer(out->dtype);
}

float load_f(const Tensor& t, int64_t i) {
  if (t.dtype() == DType::kFloat32) return t.data<float>()[i];
  return static_cast<float>(t.get_double(i));
}

void store_i(Tensor& t, int64_t i, int32_t v) {
  switch (t.dtype()) {
    case DType::kInt8: t.data<int8_t>()[i] = static_cast<int8_t>(v); break;
    case DType::kUInt8: t.data<uint8_t>()[i] = static_cast<uint8_t>(v); break;
    case DType::kInt16: t.data<int16_t>()[i] = static_cast<int16_t>(v); break;
    case DType::kInt32: t.data<int32_t>()[i] = v; break;
    case DType::kInt64: t.data<int64_t>()[i] = v; break;
    case DType::kFloat32: t.data<float>()[i] = static_cast<float>(v); break;
  }
}

void store_f(Tensor& t, int64_t i, float v) {
  if (t.dtype() == DType::kFloat32) {
    t.data<float>()[i] = v;
  } else {
    store_i(t, i, static_cast<int32_t>(v));
  }
}

Result<Multiplier> profile_multiplier(double real, const ChipProfile& p) {
  return derive_multiplier(real, p.multiplier_bits, p.min_rshift, p.max_rshift);
}

Status store_requant(Node& node, const std::vector<double>& reals, const std::vector<float>& freals,
                     const ChipProfile& p, const std::string& prefix) {
  const int64_t c = static_cast<int64_t>(reals.size());
  if (p.requant == RequantScheme::kFloat) {
    node.params[prefix + "fscale"] = Tensor::from_vector<float>({c}, freals);
    return Status::ok();
  }
  std::vector<int32_t> m(c), r(c);
  for (int64_t i = 0; i < c; ++i) {
    auto mult = profile_multiplier(reals[i], p);
    if (!mult.is_ok()) return mult.status().with_context(node.describe());
    m[i] = mult->m;
    r[i] = mult->rshift;
  }
  node.params[prefix + "m"] = Tensor::from_vector<int32_t>({c}, m);
  node.params[prefix + "rshift"] = Tensor::from_vector<int32_t>({c}, r);
  return Status::ok();
}

Result<Requant> load_requant(const Node& node, const ChipProfile& p, const std::string& prefix) {
  Requant rq;
  rq.scheme = p.requant;
  rq.mode = p.rounding;
  if (p.requant == RequantScheme::kFloat) {
    auto it = node.params.find(prefix + "fscale");
    if (it == node.params.end() || it->second.dtype() != DType::kFloat32) {
      return invalid_argument("{}: lowered for another profile (no '{}fscale'); lower it again "
                              "for profile '{}'", node.describe(), prefix, p.name);
    }
    auto s = it->second.span<float>();
    rq.fscale.assign(s.begin(), s.end());
    return rq;
  }
  auto m = node.params.find(prefix + "m");
  auto r = node.params.find(prefix + "rshift");
  if (m == node.params.end() || r == node.params.end() || m->second.dtype() != DType::kInt32 ||
      r->second.dtype() != DType::kInt32 || m->second.numel() != r->second.numel()) {
    return invalid_argument("{}: lowered for another profile (no '{}m'/'{}rshift'); lower it "
                            "again for profile '{}'", node.describe(), prefix, prefix, p.name);
  }
  for (int64_t i = 0; i < m->second.numel(); ++i) {
    rq.mult.push_back({m->second.data<int32_t>()[i], r->second.data<int32_t>()[i]});
  }
  return rq;
}

Result<OutStage> make_out_stage(const KernelArgs& a) {
  OutStage st;
  st.y = qview(a.graph, a.node.outputs[0]);
  st.is_float = !is_integer_node(a.node, a.graph);
  if (st.is_float) return st;
  const QView x = qview(a.graph, a.node.inputs[0]), w = qview(a.graph, a.node.inputs[1]);
  if (!x.quantized || !w.quantized) {
    return invalid_argument("{}: integer output but input or weight has no quantization params",
                            a.node.describe());
  }
  if (!st.y.quantized) {
    if (st.y.dtype != DType::kInt32) {
      return invalid_argument("{}: unquantized integer output must be int32", a.node.describe());
    }
    st.raw = true;
    return st;
  }
  QEVAL_ASSIGN_OR_RETURN(st.rq, load_requant(a.node, a.profile));
  return st;
}

Result<Tensor> rescale_lut(const Node& n, const QView& in, const QView& out,
                           const ChipProfile& p) {
  QEVAL_RETURN_IF_ERROR(check_lut_input(n, in));
  if (p.requant == RequantScheme::kFloat) {
    return build_lut(in, out, p.quantize_rounding, [](float x) { return x; });
  }
  auto m = profile_multiplier(static_cast<double>(in.s()) / out.s(), p);
  if (!m.is_ok()) return m.status().with_context(n.describe());
  const int64_t len = static_cast<int64_t>(in.qmax) - in.qmin + 1;
  Tensor t(out.dtype, {len});
  for (int64_t i = 0; i < len; ++i) {
    const int32_t centered = static_cast<int32_t>(in.qmin + i) - in.z();
    store_i(t, i, requantize(centered, *m, out.z(), out.qmin, out.qmax, p.requant, p.rounding));
  }
  return t;
}

Status need_param(const Node& n, const char* key) {
  if (!n.params.count(key)) {
    return invalid_argument("{}: missing lowered parameter '{}' (run lowering first)", n.describe(),
                            key);
  }
  return Status::ok();
}

const Tensor& param(const Node& n, const char* key) { return n.params.at(key); }

Status check_lut_input(const Node& n, const QView& in) {
  if (in.dtype != DType::kInt8 && in.dtype != DType::kUInt8 && in.dtype != DType::kInt16) {
    return unsupported("{}: integer input of dtype {} (8 or 16-bit needed for a table)",
                       n.describe(), dtype_name(in.dtype));
  }
  return Status::ok();
}

Broadcaster::Broadcaster(const Shape& out, const Shape& in) {
  const size_t r = out.size();
  out_strides.assign(r, 1);
  in_strides.assign(r, 0);
  for (int i = static_cast<int>(r) - 2; i >= 0; --i) out_strides[i] = out_strides[i + 1] * out[i + 1];
  int64_t s = 1;
  for (int i = static_cast<int>(r) - 1; i >= 0; --i) {
    const int j = i - static_cast<int>(r - in.size());
    if (j < 0) break;
    in_strides[i] = in[j] == 1 ? 0 : s;
    s *= in[j];
  }
}

int64_t Broadcaster::map(int64_t i) const {
  int64_t off = 0;
  for (size_t d = 0; d < out_strides.size(); ++d) {
    const int64_t idx = i / out_strides[d];
    i -= idx * out_strides[d];
    off += idx * in_strides[d];
  }
  return off;
}

}  // namespace qeval::kern
