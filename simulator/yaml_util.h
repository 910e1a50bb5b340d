// Reading YAML config files with errors that name the file, the line and the key:
// "bm1690.yaml:7: unknown key 'weights.bitz' (did you mean 'bits'?)".
// Shared by chip profiles (simulator/profile.cc), quant configs (quant/qconfig.cc) and
// run_eval cfgs (harness/cfg.cc).
#pragma once

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <string>
#include <vector>

#include "core/status.h"
#include "core/text.h"

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
// An unknown key names the closest allowed one, else lists them in the given order:
//   "bm1690.yaml:7: unknown key 'weights.bitz' (did you mean 'bits'?)".
inline Status check_keys(const YAML::Node& n, const std::string& source, const std::string& where,
                         const std::vector<std::string>& allowed) {
  for (auto it = n.begin(); it != n.end(); ++it) {
    const std::string k = it->first.Scalar();  // "" for a non-scalar key: unknown, never a throw
    if (std::find(allowed.begin(), allowed.end(), k) != allowed.end()) continue;
    const std::string hint = did_you_mean(k, allowed);
    if (!hint.empty()) {
      return at(it->first, source, invalid_argument("unknown key '{}{}' (did you mean '{}'?)", where, k, hint));
    }
    std::string list;
    for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
    return at(it->first, source, invalid_argument("unknown key '{}{}' (allowed: {})", where, k, list));
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
