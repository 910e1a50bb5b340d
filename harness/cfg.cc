#include "harness/cfg.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <sstream>

#include "core/file_io.h"
#include "datasets/preprocess.h"
#include "simulator/yaml_util.h"

namespace qeval {

namespace {

namespace fs = std::filesystem;

// Top-level keys of a model cfg, in the order did_you_mean prefers on ties.
// clang-format off
const std::vector<std::string> kCfgKeys = {
    "model", "model_path", "qat_model_path", "dataset", "test_input", "input_shapes", "resize_dims",
    "mean", "scale", "pixel_format", "channel_format", "keep_aspect_ratio", "int8_sym_tolerance",
    "int8_asym_tolerance", "debug_cmd", "task", "metric_tolerance", "fast_test_count", "chip", "quant",
    "qat", "name", "base", "calibration_dataset"};
// clang-format on
const std::vector<std::string> kPreprocessKeys = {
    "input_shapes", "resize_dims", "mean", "scale", "pixel_format", "channel_format", "keep_aspect_ratio"};
const std::vector<std::string> kMetricKeys = {"top1_drop", "top5_drop", "map_ratio", "map_drop"};
const std::vector<std::string> kListKeys = {"models", "chips", "fast_test_count", "description"};
const std::vector<std::string> kEntryKeys = {"cfg", "chip", "fast_test_count"};
const std::vector<std::string> kSections = {"DEFAULT", "quant", "qat", "metric_tolerance"};
const std::vector<std::string> kTasks = {"classify", "detect", "raw"};

// String-valued keys; the path keys among them resolve against the cfg's folder.
// clang-format off
const std::map<std::string, std::string ModelCfg::*> kStringKeys = {
    {"name", &ModelCfg::name}, {"model", &ModelCfg::model}, {"model_path", &ModelCfg::model_path},
    {"qat_model_path", &ModelCfg::qat_model_path}, {"task", &ModelCfg::task},
    {"dataset", &ModelCfg::dataset}, {"test_input", &ModelCfg::test_input},
    {"debug_cmd", &ModelCfg::debug_cmd}, {"calibration_dataset", &ModelCfg::calibration_dataset}};
// clang-format on
const std::vector<std::string> kPathKeys = {"model_path", "qat_model_path", "dataset", "test_input",
                                           "calibration_dataset"};

bool contains(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

std::string join(const std::vector<std::string>& v, const char* sep) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : sep) + x;
  return s;
}

// "a, b", "[a, b]" -> {"a", "b"}: tpu-mlir writes lists as comma-separated strings.
std::vector<std::string> split_list(const std::string& raw) {
  std::vector<std::string> out;
  std::string item;
  std::istringstream in(raw);
  while (std::getline(in, item, ',')) {
    item.erase(std::remove(item.begin(), item.end(), '['), item.end());
    item.erase(std::remove(item.begin(), item.end(), ']'), item.end());
    item = trim(item);
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

std::string loc(const std::string& src, const YAML::Node& n) {
  return fmt::format("{}:{}", src, n.Mark().line + 1);
}

// A finite number, strictly parsed (from_chars: locale-independent, no trailing junk).
std::optional<double> to_double(const std::string& raw) {
  const std::string s = trim(raw);
  if (s.empty()) return std::nullopt;
  const char* first = s.data() + (s[0] == '+' ? 1 : 0);
  double v = 0;
  const auto [p, ec] = std::from_chars(first, s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

enum class Format { kIni, kYaml, kUnknown };

Format format_of(const std::string& path) {
  std::string ext = fs::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  if (ext == ".cfg" || ext == ".ini") return Format::kIni;
  if (ext == ".yaml" || ext == ".yml") return Format::kYaml;
  return Format::kUnknown;
}

// yaml-cpp keeps both pairs of a repeated key (and lookups see the first): an error instead.
Status check_duplicates(const YAML::Node& n, const std::string& src) {
  if (n.IsMap()) {
    std::map<std::string, int> seen;
    for (auto it = n.begin(); it != n.end(); ++it) {
      const auto [first, fresh] = seen.emplace(it->first.Scalar(), it->first.Mark().line + 1);
      if (!fresh) {
        return yaml::at(
            it->first, src,
            invalid_argument("key '{}' given twice (first at line {})", first->first, first->second));
      }
      QEVAL_RETURN_IF_ERROR(check_duplicates(it->second, src));
    }
  } else if (n.IsSequence()) {
    for (YAML::Node c : n) QEVAL_RETURN_IF_ERROR(check_duplicates(c, src));
  }
  return Status::ok();
}

// ${VAR} from the environment; ${CFG_DIR} is the cfg's folder.
Result<std::string> expand(const std::string& s, const std::string& cfg_dir) {
  std::string out;
  size_t pos = 0;
  for (size_t b; (b = s.find("${", pos)) != std::string::npos;) {
    const size_t e = s.find('}', b + 2);
    if (e == std::string::npos) return invalid_argument("unterminated '${{' in '{}'", s);
    const std::string var = s.substr(b + 2, e - b - 2);
    out += s.substr(pos, b - pos);
    if (var == "CFG_DIR") {
      out += cfg_dir;
    } else if (const char* v = var.empty() ? nullptr : std::getenv(var.c_str())) {
      out += v;
    } else {
      return invalid_argument("${{{}}} is not set", var);
    }
    pos = e + 1;
  }
  return out + s.substr(pos);
}

// Expands every scalar of the tree in place (assignment keeps the node's mark, so later
// errors still name the line). `key` is the dotted key for error messages.
Status expand_tree(YAML::Node n, const std::string& src, const std::string& key, const std::string& dir) {
  if (n.IsScalar()) {
    if (n.Scalar().find("${") == std::string::npos) return Status::ok();
    auto r = expand(n.Scalar(), dir);
    if (!r.is_ok()) return yaml::at(n, src, r.status().with_context(key));
    n = *r;
  } else if (n.IsMap()) {
    for (auto it = n.begin(); it != n.end(); ++it) {
      const std::string k = it->first.Scalar();
      QEVAL_RETURN_IF_ERROR(expand_tree(it->second, src, key.empty() ? k : key + "." + k, dir));
    }
  } else if (n.IsSequence()) {
    for (YAML::Node c : n) QEVAL_RETURN_IF_ERROR(expand_tree(c, src, key, dir));
  }
  return Status::ok();
}

// ---- INI -> YAML ------------------------------------------------------------------

// Cuts a trailing "# ..." or "; ..." comment (the mark must follow whitespace).
std::string strip_comment(const std::string& s) {
  for (size_t i = 1; i < s.size(); ++i) {
    if ((s[i] == '#' || s[i] == ';') && std::isspace(static_cast<unsigned char>(s[i - 1]))) {
      return trim(s.substr(0, i));
    }
  }
  return s;
}

std::string single_quoted(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

// tpu-mlir INI text as YAML, line for line, so that every later error (ours and
// parse_quant_config's) names the .cfg's own line. DEFAULT values become quoted
// strings ("[[1,3,224,224]]", "0.97,0.80" stay strings); block values stay raw YAML
// (numbers, booleans, [a, b] lists).
Result<std::string> ini_to_yaml(const std::string& text, const std::string& src) {
  std::string out, line, section = "DEFAULT";
  std::map<std::string, int> sections;
  std::istringstream in(text);
  for (int n = 1; std::getline(in, line); ++n) {
    std::string s = trim(line);
    if (s.empty() || s[0] == '#' || s[0] == ';') {
      out += "\n";
      continue;
    }
    s = strip_comment(s);
    if (s[0] == '[') {
      if (s.back() != ']') return invalid_argument("{}:{}: malformed section header '{}'", src, n, s);
      const std::string name = trim(s.substr(1, s.size() - 2));
      std::string upper = name;
      std::transform(upper.begin(), upper.end(), upper.begin(),
                     [](unsigned char c) { return std::toupper(c); });
      if (upper == "DEFAULT") {
        section = "DEFAULT";
        out += "\n";
        continue;
      }
      if (!contains(kSections, name)) {
        const std::string hint = did_you_mean(name, kSections);
        return invalid_argument("{}:{}: unknown section [{}] ({})", src, n, name,
                                hint.empty() ? "allowed: [DEFAULT], [quant], [qat], [metric_tolerance]"
                                             : fmt::format("did you mean [{}]?", hint));
      }
      const auto [first, fresh] = sections.emplace(name, n);
      if (!fresh) {
        return invalid_argument("{}:{}: section [{}] given twice (first at line {})", src, n, name,
                                first->second);
      }
      section = name;
      out += name + ":\n";
      continue;
    }
    const size_t eq = s.find('=');
    if (eq == std::string::npos) {
      return invalid_argument("{}:{}: expected 'key = value', got '{}'", src, n, s);
    }
    const std::string key = trim(s.substr(0, eq)), value = trim(s.substr(eq + 1));
    if (key.empty()) return invalid_argument("{}:{}: no key before '=' in '{}'", src, n, s);
    if (section == "DEFAULT") {
      out += single_quoted(key) + ": " + single_quoted(value) + "\n";
    } else {
      out += "  " + single_quoted(key) + ": " + value + "\n";
    }
  }
  return out;
}

// ---- values -------------------------------------------------------------------------

Result<std::string> string_of(const YAML::Node& n, const std::string& src, const std::string& key) {
  if (n.IsNull()) return std::string();
  if (!n.IsScalar()) return yaml::at(n, src, invalid_argument("{}: expected a string", key));
  return n.Scalar();
}

Result<double> number_of(const YAML::Node& n, const std::string& src, const std::string& key) {
  const std::optional<double> v = n.IsScalar() ? to_double(n.Scalar()) : std::nullopt;
  if (!v) {
    return yaml::at(n, src,
                    invalid_argument("{}: '{}' is not a number", key, n.IsScalar() ? n.Scalar() : "?"));
  }
  return *v;
}

Result<int64_t> count_of(const YAML::Node& n, const std::string& src, const std::string& key) {
  int64_t v = 0;
  const std::string s = n.IsScalar() ? trim(n.Scalar()) : "";
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size() || v < 1) {
    return yaml::at(n, src, invalid_argument("{}: '{}' is not an integer >= 1", key, s));
  }
  return v;
}

// `chip: bm1690`, `chip: bm1690, onnx-qdq` or `chip: [bm1690, onnx-qdq]`.
Result<std::vector<std::string>> chips_of(const YAML::Node& n, const std::string& src,
                                          const std::string& key) {
  if (n.IsNull()) return std::vector<std::string>{};
  if (n.IsScalar()) return split_list(n.Scalar());
  std::vector<std::string> out;
  if (n.IsSequence()) {
    for (YAML::Node c : n) {
      if (!c.IsScalar() || trim(c.Scalar()).empty()) break;
      out.push_back(trim(c.Scalar()));
    }
    if (out.size() == n.size()) return out;
  }
  return yaml::at(n, src, invalid_argument("{}: expected a chip name or a list of names", key));
}

// A preprocessing value as the raw string parse_preprocess_config reads: a flat list
// joins with ',', a nested one keeps its brackets ("[[1,3,224,224]]").
Status flow_text(const YAML::Node& n, bool brackets, std::string* out) {
  if (n.IsScalar()) {
    *out += n.Scalar();
    return Status::ok();
  }
  if (!n.IsSequence()) return invalid_argument("expected a value or a list");
  bool nested = brackets;
  for (YAML::Node c : n) nested = nested || c.IsSequence();
  if (nested) *out += "[";
  for (size_t i = 0; i < n.size(); ++i) {
    if (i) *out += ",";
    QEVAL_RETURN_IF_ERROR(flow_text(n[i], nested, out));
  }
  if (nested) *out += "]";
  return Status::ok();
}

Result<SimilarityTolerance> similarity_of(const YAML::Node& n, const std::string& src,
                                          const std::string& key) {
  std::vector<std::string> items;
  if (n.IsScalar()) {
    items = split_list(n.Scalar());
  } else if (n.IsSequence()) {
    for (YAML::Node c : n) items.push_back(c.IsScalar() ? c.Scalar() : "?");
  }
  if (items.size() != 2) {
    return yaml::at(n, src, invalid_argument("{}: expected two numbers cos,euclid (e.g. 0.99,0.90)", key));
  }
  double v[2];
  for (int i = 0; i < 2; ++i) {
    const std::optional<double> x = to_double(items[i]);
    if (!x) return yaml::at(n, src, invalid_argument("{}: '{}' is not a number", key, items[i]));
    if (*x < 0 || *x > 1) return yaml::at(n, src, invalid_argument("{}: {} is outside 0..1", key, items[i]));
    v[i] = *x;
  }
  SimilarityTolerance t;
  t.cos = v[0];
  t.euclid = v[1];
  t.source = loc(src, n);
  return t;
}

Status read_metric_tolerance(const YAML::Node& n, const std::string& src, MetricTolerance* m) {
  if (n.IsNull()) return Status::ok();
  if (!n.IsMap()) {
    return yaml::at(n, src,
                    invalid_argument("metric_tolerance: expected a mapping ({})", join(kMetricKeys, ", ")));
  }
  QEVAL_RETURN_IF_ERROR(yaml::check_keys(n, src, "metric_tolerance.", kMetricKeys));
  for (auto it = n.begin(); it != n.end(); ++it) {
    const std::string k = it->first.Scalar(), key = "metric_tolerance." + k;
    if (it->second.IsNull()) return yaml::at(it->first, src, invalid_argument("{}: no value", key));
    QEVAL_ASSIGN_OR_RETURN(const double v, number_of(it->second, src, key));
    auto bad = [&](const char* range) {
      return yaml::at(it->second, src,
                      invalid_argument("{}: {} is outside {}", key, it->second.Scalar(), range));
    };
    if (k == "top1_drop" || k == "top5_drop") {
      if (v < 0) return bad(">= 0 (points)");
      (k == "top1_drop" ? m->top1_drop : m->top5_drop) = v;
    } else if (k == "map_ratio") {
      if (v <= 0 || v > 1) return bad("(0, 1]");
      m->map_ratio = v;
    } else {
      if (v < 0 || v > 1) return bad("[0, 1]");
      m->map_drop = v;
    }
  }
  return Status::ok();
}

// Each preprocessing key through datasets' own parser, with the formats that decide
// its meaning (channel counts), so that an error names the key's own line.
Status check_preprocess(const ModelCfg& c, const std::map<std::string, std::string>& where) {
  std::map<std::string, std::string> formats;
  for (const char* k : {"pixel_format", "channel_format"}) {
    auto it = c.preprocess.find(k);
    if (it == c.preprocess.end()) continue;
    auto r = parse_preprocess_config({{k, it->second}}, where.at(k));
    if (!r.is_ok()) return r.status();
    formats[k] = it->second;
  }
  for (const auto& [k, v] : c.preprocess) {
    auto kv = formats;
    kv[k] = v;
    auto r = parse_preprocess_config(kv, where.at(k));
    if (!r.is_ok()) return r.status();
  }
  return Status::ok();
}

fs::path absolute_dir(const std::string& path) {
  std::error_code ec;
  fs::path p = fs::absolute(path, ec);
  if (ec) p = fs::path(path);
  return p.lexically_normal().parent_path();
}

Result<ModelCfg> read_model_cfg(const YAML::Node& root, const std::string& src) {
  ModelCfg c;
  c.path = src;
  c.name = fs::path(src).stem().string();
  c.quant.source = c.qat.source = c.metric_tolerance.source = src;
  if (!root || root.IsNull()) return c;
  if (!root.IsMap()) return yaml::at(root, src, invalid_argument("expected a mapping of cfg keys"));
  QEVAL_RETURN_IF_ERROR(check_duplicates(root, src));
  QEVAL_RETURN_IF_ERROR(yaml::check_keys(root, src, "", kCfgKeys));
  const fs::path dir = absolute_dir(src);
  QEVAL_RETURN_IF_ERROR(expand_tree(root, src, "", dir.string()));

  std::map<std::string, std::string> preprocess_at;  // key -> "file:line"
  std::string zoo_model, zoo_at;
  for (auto it = root.begin(); it != root.end(); ++it) {
    const std::string k = it->first.Scalar();
    const YAML::Node v = it->second;
    const YAML::Node at = v.IsNull() ? it->first : v;  // a null value's mark can be lines away
    if (v.IsNull() && (k == "int8_sym_tolerance" || k == "int8_asym_tolerance" || k == "fast_test_count")) {
      return yaml::at(at, src, invalid_argument("{}: no value", k));
    }
    if (k == "quant" || k == "qat") {
      // An empty block (an INI section with no keys) means the defaults.
      const YAML::Node block = v.IsNull() ? YAML::Node(YAML::NodeType::Map) : v;
      if (k == "quant") {
        QEVAL_ASSIGN_OR_RETURN(c.quant, parse_quant_config(block, src));
        if (v.IsNull()) c.quant.source = loc(src, at);
      } else {
        QEVAL_ASSIGN_OR_RETURN(c.qat, parse_qat_config(block, src));
        if (v.IsNull()) c.qat.source = loc(src, at);
        c.has_qat_block = true;
      }
    } else if (k == "metric_tolerance") {
      c.metric_tolerance.source = loc(src, it->first);
      QEVAL_RETURN_IF_ERROR(read_metric_tolerance(v, src, &c.metric_tolerance));
    } else if (k == "int8_sym_tolerance") {
      QEVAL_ASSIGN_OR_RETURN(c.int8_sym_tolerance, similarity_of(v, src, k));
    } else if (k == "int8_asym_tolerance") {
      QEVAL_ASSIGN_OR_RETURN(c.int8_asym_tolerance, similarity_of(v, src, k));
    } else if (k == "chip") {
      QEVAL_ASSIGN_OR_RETURN(c.chips, chips_of(v, src, k));
    } else if (k == "fast_test_count") {
      QEVAL_ASSIGN_OR_RETURN(c.fast_test_count, count_of(v, src, k));
      c.fast_test_count_set = true;
    } else if (contains(kPreprocessKeys, k)) {
      std::string text;
      Status s = flow_text(v, false, &text);
      if (!s.is_ok()) return yaml::at(at, src, s.with_context(k));
      c.preprocess[k] = text;
      preprocess_at[k] = loc(src, at);
    } else {
      QEVAL_ASSIGN_OR_RETURN(std::string s, string_of(v, src, k));
      if (k == "task" && !s.empty() && !contains(kTasks, s)) {
        const std::string hint = did_you_mean(s, kTasks);
        return yaml::at(at, src,
                        invalid_argument("task: '{}' (allowed: classify, detect, raw{})", s,
                                         hint.empty() ? "" : "; did you mean '" + hint + "'?"));
      }
      if (k == "model_path" && s.rfind("zoo:", 0) == 0) {  // a zoo model, not a file
        zoo_model = s.substr(4);
        zoo_at = loc(src, at);
        s.clear();
      } else if (contains(kPathKeys, k) && !s.empty()) {
        s = (dir / s).lexically_normal().string();  // an absolute s replaces dir
      }
      c.*kStringKeys.at(k) = s;
    }
  }
  if (!zoo_model.empty()) {
    if (!c.model.empty() && c.model != zoo_model) {
      return invalid_argument("{}: model_path: zoo:{} contradicts model: {}", zoo_at, zoo_model, c.model);
    }
    c.model = zoo_model;
  }
  if (c.name.empty()) c.name = fs::path(src).stem().string();
  QEVAL_RETURN_IF_ERROR(check_preprocess(c, preprocess_at));
  return c;
}

Result<std::vector<CfgEntry>> read_model_list(YAML::Node root, const std::string& src) {
  QEVAL_RETURN_IF_ERROR(check_duplicates(root, src));
  QEVAL_RETURN_IF_ERROR(yaml::check_keys(root, src, "", kListKeys));
  QEVAL_RETURN_IF_ERROR(expand_tree(root, src, "", absolute_dir(src).string()));
  const YAML::Node& list = root;
  std::vector<std::string> chips;
  int64_t fast_test_count = -1;
  if (list["chips"]) {
    QEVAL_ASSIGN_OR_RETURN(chips, chips_of(list["chips"], src, "chips"));
  }
  if (list["fast_test_count"]) {
    QEVAL_ASSIGN_OR_RETURN(fast_test_count, count_of(list["fast_test_count"], src, "fast_test_count"));
  }
  const YAML::Node models = list["models"];
  if (!models.IsSequence() || models.size() == 0) {
    return yaml::at(models, src, invalid_argument("models: expected a non-empty list of cfg files"));
  }
  // Entries are relative to the list's folder (kept relative when the list path is).
  const fs::path dir = fs::path(src).parent_path();
  std::vector<CfgEntry> out;
  for (const YAML::Node& e : models) {  // const: a lookup of a missing key must not add it
    CfgEntry entry{"", chips, fast_test_count};
    // A Node's operator= rebinds the node it shares with `e`: reset() instead.
    YAML::Node cfg = e;
    if (e.IsMap()) {
      QEVAL_RETURN_IF_ERROR(yaml::check_keys(e, src, "models.", kEntryKeys));
      if (!e["cfg"]) return yaml::at(e, src, invalid_argument("models: entry without a 'cfg' key"));
      cfg.reset(e["cfg"]);
      if (e["chip"]) {
        QEVAL_ASSIGN_OR_RETURN(entry.chips, chips_of(e["chip"], src, "models.chip"));
      }
      if (e["fast_test_count"]) {
        QEVAL_ASSIGN_OR_RETURN(entry.fast_test_count,
                               count_of(e["fast_test_count"], src, "models.fast_test_count"));
      }
    }
    if (!cfg.IsScalar() || trim(cfg.Scalar()).empty()) {
      return yaml::at(e, src,
                      invalid_argument("models: an entry is a cfg path or {{cfg: PATH, chip: NAME}}"));
    }
    entry.cfg_path = (dir / trim(cfg.Scalar())).lexically_normal().string();
    std::error_code ec;
    if (!fs::is_regular_file(entry.cfg_path, ec)) {
      return yaml::at(cfg, src, not_found("models: {}: no such file", entry.cfg_path));
    }
    out.push_back(std::move(entry));
  }
  return out;
}

}  // namespace


namespace {

// `base: FILE` (a cfg patch): the keys given here replace the base cfg's; inside
// the quant, qat and metric_tolerance blocks key by key.
Result<ModelCfg> apply_patch(ModelCfg base, const ModelCfg& p, const YAML::Node& root) {
  for (auto it = root.begin(); it != root.end(); ++it) {
    const std::string k = it->first.Scalar();
    const YAML::Node v = it->second;
    if (k == "base") continue;
    if (auto s = kStringKeys.find(k); s != kStringKeys.end()) {
      base.*(s->second) = p.*(s->second);
    } else if (contains(kPreprocessKeys, k)) {
      base.preprocess[k] = p.preprocess.at(k);
    } else if (k == "chip") {
      base.chips = p.chips;
    } else if (k == "fast_test_count") {
      base.fast_test_count = p.fast_test_count;
      base.fast_test_count_set = true;
    } else if (k == "int8_sym_tolerance") {
      base.int8_sym_tolerance = p.int8_sym_tolerance;
    } else if (k == "int8_asym_tolerance") {
      base.int8_asym_tolerance = p.int8_asym_tolerance;
    } else if (k == "metric_tolerance" && v.IsMap()) {
      for (auto m = v.begin(); m != v.end(); ++m) {
        const std::string mk = m->first.Scalar();
        if (mk == "top1_drop") base.metric_tolerance.top1_drop = p.metric_tolerance.top1_drop;
        if (mk == "top5_drop") base.metric_tolerance.top5_drop = p.metric_tolerance.top5_drop;
        if (mk == "map_ratio") base.metric_tolerance.map_ratio = p.metric_tolerance.map_ratio;
        if (mk == "map_drop") base.metric_tolerance.map_drop = p.metric_tolerance.map_drop;
      }
    } else if (k == "quant" && v.IsMap()) {
      QuantConfig& q = base.quant;
      const QuantConfig& pq = p.quant;
      for (auto m = v.begin(); m != v.end(); ++m) {
        const std::string qk = m->first.Scalar();
        if (qk == "observer") q.observer.kind = pq.observer.kind;
        if (qk == "percentile") q.observer.percentile = pq.observer.percentile;
        if (qk == "ema_momentum") q.observer.ema_momentum = pq.observer.ema_momentum;
        if (qk == "weight_bits") q.weight_bits = pq.weight_bits;
        if (qk == "activation_bits") q.activation_bits = pq.activation_bits;
        if (qk == "per_channel") q.per_channel = pq.per_channel;
        if (qk == "power_of_two") q.power_of_two = pq.power_of_two;
        if (qk == "float_layers") q.float_layers = pq.float_layers;
        if (qk == "int16_layers") q.int16_layers = pq.int16_layers;
        if (qk == "layer_bits") q.layer_bits = pq.layer_bits;
        if (qk == "ranges") q.ranges = pq.ranges;
      }
      q.source = pq.source;
    } else if (k == "qat" && v.IsMap()) {
      QatConfig& q = base.qat;
      const QatConfig& pq = p.qat;
      for (auto m = v.begin(); m != v.end(); ++m) {
        const std::string qk = m->first.Scalar();
        if (qk == "epochs") q.epochs = pq.epochs;
        if (qk == "lr") q.lr = pq.lr;
        if (qk == "optimizer") q.optimizer = pq.optimizer;
        if (qk == "schedule") q.schedule = pq.schedule;
        if (qk == "batch") q.batch = pq.batch;
        if (qk == "weight_decay") q.weight_decay = pq.weight_decay;
        if (qk == "fake_quant") q.fake_quant = pq.fake_quant;
        if (qk == "weight_fake_quant") q.weight_fake_quant = pq.weight_fake_quant;
        if (qk == "freeze_bn_epoch") q.freeze_bn_epoch = pq.freeze_bn_epoch;
        if (qk == "calib_images") q.calib_images = pq.calib_images;
        if (qk == "grad_clip") q.grad_clip = pq.grad_clip;
      }
      q.source = pq.source;
      base.has_qat_block = true;
    } else if (k == "quant" || k == "qat") {
      if (k == "qat") base.has_qat_block = true;  // an empty block: the base's values stay
    }
  }
  base.path = p.path;
  base.name = p.name;  // the patch's own name (its file stem unless it sets one)
  return base;
}

Result<ModelCfg> parse_model_cfg_at(const std::string& text, const std::string& path, int depth);

Result<ModelCfg> load_model_cfg_at(const std::string& path, int depth) {
  if (format_of(path) == Format::kUnknown) {
    return invalid_argument("{}: unknown cfg format (use .cfg or .yaml)", path);
  }
  QEVAL_ASSIGN_OR_RETURN(std::string text, read_file(path));
  return parse_model_cfg_at(text, path, depth);
}

Result<ModelCfg> parse_model_cfg_at(const std::string& text, const std::string& path, int depth) {
  const Format format = format_of(path);
  if (format == Format::kUnknown) return invalid_argument("{}: unknown cfg format (use .cfg or .yaml)", path);
  std::string yaml_text = text;
  if (format == Format::kIni) {
    QEVAL_ASSIGN_OR_RETURN(yaml_text, ini_to_yaml(text, path));
  }
  QEVAL_ASSIGN_OR_RETURN(YAML::Node root, yaml::load(yaml_text, path));
  const YAML::Node& croot = root;
  if (!croot.IsMap() || !croot["base"]) return read_model_cfg(root, path);
  const YAML::Node b = croot["base"];
  if (!b.IsScalar() || trim(b.Scalar()).empty()) {
    return yaml::at(b, path, invalid_argument("base: expected the path of the cfg this one patches"));
  }
  if (depth >= 8) return yaml::at(b, path, invalid_argument("base: more than 8 nested bases (a loop?)"));
  auto base_text = expand(trim(b.Scalar()), absolute_dir(path).string());
  if (!base_text.is_ok()) return yaml::at(b, path, base_text.status().with_context("base"));
  const std::string base_path = (absolute_dir(path) / *base_text).lexically_normal().string();
  std::error_code ec;
  if (!fs::is_regular_file(base_path, ec)) return yaml::at(b, path, not_found("base: {}: no such file", base_path));
  QEVAL_ASSIGN_OR_RETURN(ModelCfg base, load_model_cfg_at(base_path, depth + 1));
  QEVAL_RETURN_IF_ERROR(check_duplicates(root, path));
  YAML::Node rest(YAML::NodeType::Map);
  for (auto it = croot.begin(); it != croot.end(); ++it) {
    if (it->first.Scalar() != "base") rest[it->first] = it->second;
  }
  QEVAL_ASSIGN_OR_RETURN(ModelCfg patch, read_model_cfg(rest, path));
  return apply_patch(std::move(base), patch, rest);
}

}  // namespace

Result<ModelCfg> parse_model_cfg(const std::string& text, const std::string& path) {
  return parse_model_cfg_at(text, path, 0);
}

Result<ModelCfg> load_model_cfg(const std::string& path) { return load_model_cfg_at(path, 0); }

Result<std::vector<CfgEntry>> expand_cfg_argument(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return not_found("{}: no such file", path);
  if (format_of(path) == Format::kYaml) {
    QEVAL_ASSIGN_OR_RETURN(std::string text, read_file(path));
    QEVAL_ASSIGN_OR_RETURN(YAML::Node root, yaml::load(text, path));
    const YAML::Node& croot = root;
    if (croot.IsMap() && croot["models"]) return read_model_list(root, path);
  }
  return std::vector<CfgEntry>{CfgEntry{path, {}, -1}};
}

}  // namespace qeval
