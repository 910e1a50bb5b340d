// Reading YAML config files with errors that name the file, the line and the key:
// "bm1690.yaml:7: unknown key 'weights.bitz' (allowed: bits, dtype, ...)".
// Shared by chip profiles (simulator/profile.cc) and quant configs (quant/qconfig.cc).
#pragma once

#include <yaml-cpp/yaml.h>

#include <set>
#include <string>

#include "core/status.h"

namespace qeval::yaml {

inline Status at(const YAML::Node& n, const std::string& source, Status s) {
  return s.with_context(fmt::format("{}:{}", source, n.Mark().line + 1));
}

// Parses YAML text; a syntax error names source:line.
inline Result<YAML::Node> load(const std::string& text, const std::string& source) {
  try {
    return YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    return invalid_argument("{}:{}: YAML syntax error: {}", source, e.mark.line + 1, e.msg);
  }
}

// Every key of mapping `n` must be in `allowed`; `where` prefixes key names ("weights.").
inline Status check_keys(const YAML::Node& n, const std::string& source, const std::string& where,
                         const std::set<std::string>& allowed) {
  for (auto it = n.begin(); it != n.end(); ++it) {
    const std::string k = it->first.as<std::string>();
    if (!allowed.count(k)) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      return at(it->first, source, invalid_argument("unknown key '{}{}' (allowed: {})", where, k, list));
    }
  }
  return Status::ok();
}

// Reads parent[key] into *out when present; a value of the wrong type is an error.
template <typename T>
Status read(const YAML::Node& parent, const char* key, T* out, const std::string& source,
            const std::string& where) {
  YAML::Node n = parent[key];
  if (!n) return Status::ok();
  try {
    *out = n.as<T>();
  } catch (const YAML::Exception&) {
    return at(n, source, invalid_argument("key '{}{}' has a value of the wrong type", where, key));
  }
  return Status::ok();
}

}  // namespace qeval::yaml
