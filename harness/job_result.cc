#include "harness/job_result.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>

namespace qeval {

namespace {

using Json = nlohmann::ordered_json;

// JSON has no NaN: null stands for "not measured".
Json num(double v) { return std::isfinite(v) ? Json(v) : Json(nullptr); }
double num_of(const Json& j) { return j.is_number() ? j.get<double>() : kNaN; }

}  // namespace

const MetricResult* JobResult::metric(const std::string& name) const {
  for (const auto& m : metrics) {
    if (m.name == name) return &m;
  }
  return nullptr;
}

std::string job_result_to_json(const JobResult& r) {
  Json j;
  j["id"] = r.id;
  j["model"] = r.model;
  j["chip"] = r.chip;
  j["mode"] = r.mode;
  j["task"] = r.task;
  j["cfg"] = r.cfg_path;
  j["status"] = r.status;
  j["message"] = r.message;
  j["signal"] = r.signal;
  j["log_tail"] = r.log_tail;
  j["seconds"] = r.seconds;
  j["samples"] = r.samples;
  j["baseline_cache_hit"] = r.baseline_cache_hit;
  j["quant_cache_hit"] = r.quant_cache_hit;
  Json ms = Json::array();
  for (const auto& m : r.metrics) {
    ms.push_back({{"name", m.name}, {"value", num(m.value)}, {"baseline", num(m.baseline)},
                  {"delta", num(m.delta)}, {"tolerance", m.tolerance}, {"gated", m.gated}, {"pass", m.pass},
                  {"allowed_drop", num(m.allowed_drop)}});
  }
  j["metrics"] = ms;
  Json ls = Json::array();
  for (const auto& l : r.layers) {
    ls.push_back({{"name", l.name}, {"op", l.op}, {"cos", num(l.cos)}, {"euclid", num(l.euclid)},
                  {"sqnr", num(l.sqnr)}, {"max_lsb", l.max_lsb}, {"pass", l.pass}, {"lo", num(l.lo)},
                  {"hi", num(l.hi)}, {"saturation", num(l.saturation)}, {"outlier", num(l.outlier)},
                  {"scale", num(l.scale)}, {"zero_point", l.zero_point}, {"bits", l.bits}});
  }
  j["layers"] = ls;
  j["artifacts"] = r.artifacts;
  return j.dump(1) + "\n";
}

Result<JobResult> job_result_from_json(const std::string& text, const std::string& source) {
  try {
    const Json j = Json::parse(text);
    JobResult r;
    r.id = j.at("id").get<std::string>();
    r.model = j.at("model").get<std::string>();
    r.chip = j.at("chip").get<std::string>();
    r.mode = j.at("mode").get<std::string>();
    r.task = j.value("task", "");
    r.cfg_path = j.value("cfg", "");
    r.status = j.at("status").get<std::string>();
    r.message = j.value("message", "");
    r.signal = j.value("signal", 0);
    r.log_tail = j.value("log_tail", std::vector<std::string>{});
    r.seconds = j.value("seconds", 0.0);
    r.samples = j.value("samples", int64_t{0});
    r.baseline_cache_hit = j.value("baseline_cache_hit", false);
    r.quant_cache_hit = j.value("quant_cache_hit", false);
    for (const Json& m : j.value("metrics", Json::array())) {
      MetricResult x;
      x.name = m.at("name").get<std::string>();
      x.value = num_of(m.value("value", Json()));
      x.baseline = num_of(m.value("baseline", Json()));
      x.delta = num_of(m.value("delta", Json()));
      x.tolerance = m.value("tolerance", "");
      x.gated = m.value("gated", false);
      x.pass = m.value("pass", true);
      x.allowed_drop = num_of(m.value("allowed_drop", Json()));
      r.metrics.push_back(x);
    }
    for (const Json& l : j.value("layers", Json::array())) {
      LayerResult x;
      x.name = l.at("name").get<std::string>();
      x.op = l.value("op", "");
      x.cos = num_of(l.value("cos", Json()));
      x.euclid = num_of(l.value("euclid", Json()));
      x.sqnr = num_of(l.value("sqnr", Json()));
      x.max_lsb = l.value("max_lsb", int64_t{-1});
      x.pass = l.value("pass", true);
      x.lo = num_of(l.value("lo", Json()));
      x.hi = num_of(l.value("hi", Json()));
      x.saturation = num_of(l.value("saturation", Json()));
      x.outlier = num_of(l.value("outlier", Json()));
      x.scale = num_of(l.value("scale", Json()));
      x.zero_point = l.value("zero_point", int64_t{0});
      x.bits = l.value("bits", 0);
      r.layers.push_back(x);
    }
    r.artifacts = j.value("artifacts", std::map<std::string, std::string>{});
    static const char* kStatuses[] = {"pass", "fail", "error", "crashed", "timeout"};
    bool known = false;
    for (const char* s : kStatuses) known |= r.status == s;
    if (!known) return data_loss("{}: unknown job status '{}'", source, r.status);
    return r;
  } catch (const std::exception& e) {
    return data_loss("{}: not a job result: {}", source, first_line(e.what()));
  }
}

std::string job_spec_to_json(const JobSpec& s) {
  Json j = {{"id", s.id}, {"cfg", s.cfg_path}, {"chip", s.chip}, {"mode", s.mode}, {"fast_test", s.fast_test},
            {"count", s.count}, {"batch_size", s.batch_size}, {"threads", s.threads},
            {"torch_threads", s.torch_threads},
            {"qat_model_path", s.qat_model_path}, {"debug_cmd", s.debug_cmd}, {"work_dir", s.work_dir},
            {"stage_file", s.stage_file}, {"compare_count", s.compare_count},
            {"device", s.device}};
  return j.dump(1) + "\n";
}

Result<JobSpec> job_spec_from_json(const std::string& text, const std::string& source) {
  try {
    const Json j = Json::parse(text);
    JobSpec s;
    s.id = j.at("id").get<std::string>();
    s.cfg_path = j.at("cfg").get<std::string>();
    s.chip = j.at("chip").get<std::string>();
    s.mode = j.at("mode").get<std::string>();
    s.fast_test = j.at("fast_test").get<bool>();
    s.count = j.at("count").get<int64_t>();
    s.batch_size = j.at("batch_size").get<int64_t>();
    s.threads = j.at("threads").get<int>();
    s.torch_threads = j.value("torch_threads", 1);  // plans written before it existed
    s.qat_model_path = j.at("qat_model_path").get<std::string>();
    s.debug_cmd = j.at("debug_cmd").get<std::string>();
    s.work_dir = j.at("work_dir").get<std::string>();
    s.stage_file = j.at("stage_file").get<std::string>();
    s.compare_count = j.at("compare_count").get<int64_t>();
    s.device = j.value("device", "cpu");  // plans written before it existed
    return s;
  } catch (const std::exception& e) {
    return data_loss("{}: not a job spec: {}", source, first_line(e.what()));
  }
}

std::string format_metric(const std::string& metric, double v, bool sign) {
  if (std::isnan(v)) return "-";
  if (metric.starts_with("aligned_")) return fmt::format("{:.0f}", v);  // element counts
  const int d = metric.starts_with("top") ? 2 : 4;
  return sign ? fmt::format("{:+.{}f}", v, d) : fmt::format("{:.{}f}", v, d);
}

int exit_code_of(const std::vector<JobResult>& jobs) {
  bool failed = false;
  for (const auto& j : jobs) {
    if (j.status == "error" || j.status == "crashed" || j.status == "timeout" || j.status == "interrupted") return 2;
    failed |= j.status == "fail";
  }
  return failed ? 1 : 0;
}

Result<Shard> parse_shard(const std::string& text) {
  Shard sh;
  char slash = 0, extra = 0;
  if (std::sscanf(text.c_str(), "%d%c%d%c", &sh.index, &slash, &sh.count, &extra) != 3 || slash != '/' ||
      sh.count < 1 || sh.index < 1 || sh.index > sh.count) {
    return invalid_argument("--shard {}: expected i/N with 1 <= i <= N (e.g. 1/4)", text);
  }
  return sh;
}

std::vector<JobSpec> select_shard(const std::vector<JobSpec>& plan, const Shard& shard) {
  std::vector<std::string> cfgs;  // in plan order
  for (const JobSpec& s : plan) {
    if (std::find(cfgs.begin(), cfgs.end(), s.cfg_path) == cfgs.end()) cfgs.push_back(s.cfg_path);
  }
  std::vector<int> owner(plan.size());
  if (static_cast<int>(cfgs.size()) < shard.count) {
    for (size_t j = 0; j < plan.size(); ++j) owner[j] = static_cast<int>(j % shard.count);
  } else {
    std::vector<int64_t> load(shard.count, 0);
    std::map<std::string, int> cfg_owner;
    for (const std::string& c : cfgs) {
      const int to = static_cast<int>(std::min_element(load.begin(), load.end()) - load.begin());
      cfg_owner[c] = to;
      load[to] += std::count_if(plan.begin(), plan.end(), [&](const JobSpec& s) { return s.cfg_path == c; });
    }
    for (size_t j = 0; j < plan.size(); ++j) owner[j] = cfg_owner[plan[j].cfg_path];
  }
  std::vector<JobSpec> out;
  for (size_t j = 0; j < plan.size(); ++j) {
    if (owner[j] == shard.index - 1) out.push_back(plan[j]);
  }
  return out;
}

}  // namespace qeval
