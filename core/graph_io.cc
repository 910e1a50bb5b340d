// Graph / qmodel file format (docs/qmodel.md):
//   bytes 0..7   magic "QEVALIR1"
//   bytes 8..15  u64 little-endian: JSON length J
//   bytes 16..23 u64: blob length B
//   bytes 24..31 u64: XXH64 (seed 0) of the J + B bytes that follow
//   J bytes      JSON structure (nodes, values, quant params, metadata, tensor refs)
//   B bytes      tensor data, each tensor at a 64-byte aligned offset
#include <xxhash.h>

#include <nlohmann/json.hpp>

#include "core/file_io.h"
#include "core/graph.h"

namespace qeval {

namespace {

using json = nlohmann::json;
constexpr char kMagic[8] = {'Q', 'E', 'V', 'A', 'L', 'I', 'R', '1'};
constexpr int kFormatVersion = 1;

class BlobWriter {
 public:
  json add(const Tensor& t) {
    size_t off = (blob_.size() + 63) / 64 * 64;
    blob_.resize(off + t.nbytes(), '\0');
    if (t.nbytes()) std::memcpy(blob_.data() + off, t.raw(), t.nbytes());
    return {{"dtype", dtype_name(t.dtype())}, {"shape", t.shape()}, {"offset", off},
            {"nbytes", t.nbytes()}};
  }
  std::string& blob() { return blob_; }

 private:
  std::string blob_;
};

json attr_to_json(const AttrValue& a) {
  return std::visit(
      [](const auto& v) -> json {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, int64_t>) return {{"i", v}};
        if constexpr (std::is_same_v<T, double>) return {{"f", v}};
        if constexpr (std::is_same_v<T, std::string>) return {{"s", v}};
        if constexpr (std::is_same_v<T, std::vector<int64_t>>) return {{"ints", v}};
        if constexpr (std::is_same_v<T, std::vector<double>>) return {{"floats", v}};
      },
      a);
}

Result<AttrValue> attr_from_json(const json& j) {
  if (j.contains("i")) return AttrValue{j["i"].get<int64_t>()};
  if (j.contains("f")) return AttrValue{j["f"].get<double>()};
  if (j.contains("s")) return AttrValue{j["s"].get<std::string>()};
  if (j.contains("ints")) return AttrValue{j["ints"].get<std::vector<int64_t>>()};
  if (j.contains("floats")) return AttrValue{j["floats"].get<std::vector<double>>()};
  return invalid_argument("attribute without a type key (i, f, s, ints, floats)");
}

Result<Tensor> tensor_from_ref(const json& ref, const std::string& blob) {
  QEVAL_ASSIGN_OR_RETURN(DType dt, dtype_from_name(ref.at("dtype").get<std::string>()));
  Shape shape = ref.at("shape").get<Shape>();
  for (int64_t d : shape) {
    if (d < 0) return data_loss("negative dimension in tensor shape {}", shape_str(shape));
  }
  const uint64_t off = ref.at("offset").get<uint64_t>();
  const uint64_t nbytes = ref.at("nbytes").get<uint64_t>();
  if (static_cast<uint64_t>(shape_numel(shape)) * dtype_size(dt) != nbytes) {
    return data_loss("tensor of shape {} {} claims {} bytes", shape_str(shape), dtype_name(dt),
                     nbytes);
  }
  if (off > blob.size() || nbytes > blob.size() - off) {
    return data_loss("tensor at offset {} (+{} bytes) lies outside the {}-byte blob", off, nbytes,
                     blob.size());
  }
  Tensor t(dt, shape);
  if (nbytes) std::memcpy(t.raw(), blob.data() + off, nbytes);
  return t;
}

void put_u64(std::string& s, uint64_t v) {
  for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint64_t get_u64(const std::string& s, size_t at) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(s[at + i])) << (8 * i);
  return v;
}

Result<Graph> parse_json(const json& j, const std::string& blob) {
  Graph g;
  if (j.value("format", "") != "qeval-graph") return data_loss("not a qeval graph document");
  const int version = j.value("version", 0);
  if (version > kFormatVersion) {
    return unsupported("file format version {} is newer than this qeval reads ({}); update qeval",
                       version, kFormatVersion);
  }
  g.name = j.value("name", "");
  g.inputs = j.at("inputs").get<std::vector<std::string>>();
  g.outputs = j.at("outputs").get<std::vector<std::string>>();
  g.metadata = j.value("metadata", std::map<std::string, std::string>{});
  for (const json& v : j.at("values")) {
    ValueInfo& vi = g.value(v.at("name").get<std::string>());
    QEVAL_ASSIGN_OR_RETURN(vi.dtype, dtype_from_name(v.at("dtype").get<std::string>()));
    vi.shape = v.value("shape", Shape{});
    if (v.contains("quant")) {
      const json& q = v["quant"];
      QuantParams qp;
      QEVAL_ASSIGN_OR_RETURN(qp.dtype, dtype_from_name(q.at("dtype").get<std::string>()));
      qp.scale = q.at("scale").get<std::vector<float>>();
      qp.zero_point = q.at("zero_point").get<std::vector<int32_t>>();
      qp.axis = q.value("axis", -1);
      if (qp.scale.empty() || qp.scale.size() != qp.zero_point.size()) {
        return data_loss("value '{}': {} scales but {} zero points", vi.name, qp.scale.size(),
                         qp.zero_point.size());
      }
      vi.quant = qp;
    }
  }
  for (const auto& [name, ref] : j.at("constants").items()) {
    auto t = tensor_from_ref(ref, blob);
    if (!t.is_ok()) return t.status().with_context("constant '" + name + "'");
    g.constants[name] = std::move(t).value();
  }
  for (const json& jn : j.at("nodes")) {
    Node n;
    n.name = jn.at("name").get<std::string>();
    auto op = op_from_name(jn.at("op").get<std::string>());
    if (!op.is_ok()) return op.status().with_context("node '" + n.name + "'");
    n.op = *op;
    n.inputs = jn.at("inputs").get<std::vector<std::string>>();
    n.outputs = jn.at("outputs").get<std::vector<std::string>>();
    if (jn.contains("attrs")) {
      for (const auto& [k, a] : jn["attrs"].items()) {
        auto av = attr_from_json(a);
        if (!av.is_ok()) return av.status().with_context(n.describe() + " attribute '" + k + "'");
        n.attrs[k] = std::move(av).value();
      }
    }
    if (jn.contains("params")) {
      for (const auto& [k, ref] : jn["params"].items()) {
        auto t = tensor_from_ref(ref, blob);
        if (!t.is_ok()) return t.status().with_context(n.describe() + " param '" + k + "'");
        n.params[k] = std::move(t).value();
      }
    }
    g.nodes.push_back(std::move(n));
  }
  QEVAL_RETURN_IF_ERROR(g.validate());
  return g;
}

}  // namespace

Result<std::string> graph_to_bytes(const Graph& g) {
  BlobWriter blob;
  json j;
  j["format"] = "qeval-graph";
  j["version"] = kFormatVersion;
  j["name"] = g.name;
  j["inputs"] = g.inputs;
  j["outputs"] = g.outputs;
  j["metadata"] = g.metadata;
  json values = json::array();
  for (const auto& [name, v] : g.values) {
    json jv = {{"name", name}, {"dtype", dtype_name(v.dtype)}, {"shape", v.shape}};
    if (v.quant) {
      jv["quant"] = {{"dtype", dtype_name(v.quant->dtype)},
                     {"scale", v.quant->scale},
                     {"zero_point", v.quant->zero_point},
                     {"axis", v.quant->axis}};
    }
    values.push_back(std::move(jv));
  }
  j["values"] = std::move(values);
  json consts = json::object();
  for (const auto& [name, t] : g.constants) consts[name] = blob.add(t);
  j["constants"] = std::move(consts);
  json nodes = json::array();
  for (const Node& n : g.nodes) {
    json jn = {{"op", op_name(n.op)}, {"name", n.name}, {"inputs", n.inputs},
               {"outputs", n.outputs}};
    json attrs = json::object();
    for (const auto& [k, a] : n.attrs) attrs[k] = attr_to_json(a);
    jn["attrs"] = std::move(attrs);
    json params = json::object();
    for (const auto& [k, t] : n.params) params[k] = blob.add(t);
    jn["params"] = std::move(params);
    nodes.push_back(std::move(jn));
  }
  j["nodes"] = std::move(nodes);

  const std::string text = j.dump();
  std::string out(kMagic, sizeof(kMagic));
  put_u64(out, text.size());
  put_u64(out, blob.blob().size());
  XXH64_state_t* st = XXH64_createState();
  XXH64_reset(st, 0);
  XXH64_update(st, text.data(), text.size());
  XXH64_update(st, blob.blob().data(), blob.blob().size());
  put_u64(out, XXH64_digest(st));
  XXH64_freeState(st);
  out += text;
  out += blob.blob();
  return out;
}

Result<Graph> graph_from_bytes(const std::string& bytes, const std::string& source) {
  if (bytes.size() < 32 || std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) {
    return data_loss("{}: not a qeval model file (bad magic)", source);
  }
  const uint64_t jlen = get_u64(bytes, 8), blen = get_u64(bytes, 16), hash = get_u64(bytes, 24);
  if (jlen > bytes.size() - 32 || blen != bytes.size() - 32 - jlen) {
    return data_loss("{}: truncated or padded file ({} bytes, header says {})", source,
                     bytes.size(), 32 + jlen + blen);
  }
  if (XXH64(bytes.data() + 32, jlen + blen, 0) != hash) {
    return data_loss("{}: checksum mismatch, the file is corrupted", source);
  }
  try {
    json j = json::parse(bytes.begin() + 32, bytes.begin() + 32 + static_cast<int64_t>(jlen));
    auto g = parse_json(j, bytes.substr(32 + jlen));
    if (!g.is_ok()) return g.status().with_context(source);
    return g;
  } catch (const json::exception& e) {
    return data_loss("{}: malformed structure: {}", source, e.what());
  }
}

Status save_graph(const Graph& g, const std::string& path) {
  QEVAL_ASSIGN_OR_RETURN(std::string bytes, graph_to_bytes(g));
  return write_file_atomic(path, bytes);
}

Result<Graph> load_graph(const std::string& path) {
  QEVAL_ASSIGN_OR_RETURN(std::string bytes, read_file(path));
  return graph_from_bytes(bytes, path);
}

}  // namespace qeval
