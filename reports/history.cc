#include "reports/history.h"

#include <cmath>
#include <map>
#include <set>

namespace qeval {

std::string primary_metric_of(const JobResult& j) {
  if (j.task == "detect") return "mAP";
  if (j.task == "classify" || j.metric("top1")) return "top1";
  return "mAP";
}

Result<std::vector<Trend>> trends_for_run(const ResultStore& store, int64_t run_id, int last_n) {
  QEVAL_ASSIGN_OR_RETURN(std::vector<JobResult> jobs, store.jobs(run_id));
  QEVAL_ASSIGN_OR_RETURN(std::vector<RunInfo> runs, store.runs());
  std::vector<RunInfo> window;
  for (const RunInfo& r : runs) {
    if (r.id <= run_id) window.push_back(r);
  }
  if (static_cast<int>(window.size()) > last_n) window.erase(window.begin(), window.end() - last_n);
  std::vector<Trend> trends;
  std::map<std::string, size_t> index;
  for (const JobResult& j : jobs) {
    index[j.id] = trends.size();
    trends.push_back({j.id, primary_metric_of(j), {}});
  }
  for (const RunInfo& r : window) {
    QEVAL_ASSIGN_OR_RETURN(std::vector<JobResult> rj, r.id == run_id ? jobs : store.jobs(r.id));
    for (const JobResult& j : rj) {
      auto it = index.find(j.id);
      if (it == index.end()) continue;
      Trend& t = trends[it->second];
      const MetricResult* m = j.metric(t.metric);
      if (!m) continue;  // errored or crashed in that run: no point
      t.points.push_back({r.id, r.started, m->baseline, m->value});
    }
  }
  return trends;
}

Result<std::vector<MetricDiff>> compare_runs(const ResultStore& store, int64_t run_a, int64_t run_b) {
  QEVAL_ASSIGN_OR_RETURN(std::vector<JobResult> a, store.jobs(run_a));
  QEVAL_ASSIGN_OR_RETURN(std::vector<JobResult> b, store.jobs(run_b));
  std::map<std::string, const JobResult*> before;
  for (const JobResult& j : a) before[j.id] = &j;
  std::vector<MetricDiff> out;
  for (const JobResult& jb : b) {
    auto it = before.find(jb.id);
    if (it == before.end()) continue;
    const JobResult& ja = *it->second;
    if (ja.passed() && jb.status != "pass" && jb.status != "fail") {
      MetricDiff d;
      d.job_key = jb.id;
      d.metric = "job";
      d.before_status = ja.status;
      d.after_status = jb.status;
      d.regressed = true;
      d.rule = "job passed before, now " + jb.status;
      out.push_back(d);
      continue;
    }
    for (const MetricResult& mb : jb.metrics) {
      const MetricResult* ma = ja.metric(mb.name);
      if (!ma || !(mb.gated || ma->gated || mb.name == primary_metric_of(jb))) continue;
      MetricDiff d;
      d.job_key = jb.id;
      d.metric = mb.name;
      d.before = ma->value;
      d.after = mb.value;
      d.delta = mb.value - ma->value;
      d.before_status = ma->gated ? (ma->pass ? "PASS" : "FAIL") : "-";
      d.after_status = mb.gated ? (mb.pass ? "PASS" : "FAIL") : "-";
      if (ma->gated && ma->pass && mb.gated && !mb.pass) {
        d.regressed = true;
        d.rule = "PASS -> FAIL";
      } else if (std::isfinite(mb.allowed_drop) && std::isfinite(d.delta) && -d.delta > mb.allowed_drop + 1e-9) {
        d.regressed = true;
        d.rule = fmt::format("fell {:.4g} > allowed {:.4g}", -d.delta, mb.allowed_drop);
      }
      out.push_back(d);
    }
  }
  return out;
}

Result<std::vector<HistoryRow>> metric_history(const ResultStore& store, const std::string& model,
                                               const std::string& metric) {
  QEVAL_ASSIGN_OR_RETURN(std::vector<RunInfo> runs, store.runs());
  std::vector<HistoryRow> out;
  for (const RunInfo& r : runs) {
    QEVAL_ASSIGN_OR_RETURN(std::vector<JobResult> jobs, store.jobs(r.id));
    for (const JobResult& j : jobs) {
      if (j.model != model) continue;
      HistoryRow h;
      h.run_id = r.id;
      h.started = r.started;
      h.job_key = j.id;
      h.status = j.status;
      h.metric = metric.empty() ? primary_metric_of(j) : metric;
      if (const MetricResult* m = j.metric(h.metric)) {
        h.fp32 = m->baseline;
        h.int8 = m->value;
        h.pass = m->pass;
      }
      out.push_back(h);
    }
  }
  return out;
}

namespace {

// "i/N" -> N (0 when malformed).
int shard_count(const std::string& shard) {
  const size_t slash = shard.find('/');
  return slash == std::string::npos ? 0 : std::atoi(shard.c_str() + slash + 1);
}

// Folds shard run `r` (its jobs already read) into the sweep's merged run.
Status merge_shard(ResultStore& target, const RunInfo& r, const std::vector<JobResult>& jobs, MergeStats* st) {
  QEVAL_ASSIGN_OR_RETURN(int64_t id, target.sweep_run(r.sweep));
  RunInfo merged;
  if (id == 0) {
    merged = r;
    merged.uuid.clear();  // a new run; the shard's uuid goes to run_parts
    merged.shard.clear();
    QEVAL_ASSIGN_OR_RETURN(id, target.import_run(merged));
    ++st->runs_added;
  }
  QEVAL_ASSIGN_OR_RETURN(merged, target.run(id));
  for (const JobResult& j : jobs) {
    QEVAL_RETURN_IF_ERROR(target.add_job(id, j));
    ++st->jobs_added;
  }
  QEVAL_RETURN_IF_ERROR(target.add_run_part(id, {r.uuid, r.shard, r.status}));
  ++st->shards_merged;
  // The sweep: from its first shard's start to its last shard's end; wall time
  // and exit code of the slowest / worst shard; done once every shard is in.
  QEVAL_ASSIGN_OR_RETURN(std::vector<RunPart> parts, target.run_parts(id));
  merged.started = std::min(merged.started, r.started);
  merged.finished = std::max(merged.finished, r.finished);
  merged.seconds = std::max(merged.seconds, r.seconds);
  merged.exit_code = std::max(merged.exit_code, r.exit_code);
  std::set<std::string> shards;
  bool interrupted = false;
  for (const RunPart& p : parts) {
    shards.insert(p.shard);
    interrupted |= p.status != "done";
  }
  merged.status = interrupted ? "interrupted"
                  : static_cast<int>(shards.size()) < shard_count(r.shard) ? "partial"
                                                                            : "done";
  return target.update_run(merged);
}

}  // namespace

Result<MergeStats> merge_into(ResultStore& target, const std::string& source_path) {
  QEVAL_ASSIGN_OR_RETURN(auto source, ResultStore::open(source_path));
  QEVAL_ASSIGN_OR_RETURN(std::vector<RunInfo> runs, source->runs());
  MergeStats st;
  for (const RunInfo& r : runs) {
    QEVAL_ASSIGN_OR_RETURN(bool known, target.has_run_uuid(r.uuid));
    if (known) {
      ++st.runs_skipped;
      continue;
    }
    QEVAL_ASSIGN_OR_RETURN(std::vector<JobResult> jobs, source->jobs(r.id));
    if (!r.shard.empty() && !r.sweep.empty()) {
      QEVAL_RETURN_IF_ERROR(merge_shard(target, r, jobs, &st));
      continue;
    }
    QEVAL_ASSIGN_OR_RETURN(int64_t id, target.import_run(r));
    for (const JobResult& j : jobs) {
      QEVAL_RETURN_IF_ERROR(target.add_job(id, j));
      ++st.jobs_added;
    }
    QEVAL_ASSIGN_OR_RETURN(std::vector<Finding> findings, source->findings(r.id));
    if (!findings.empty()) QEVAL_RETURN_IF_ERROR(target.set_findings(id, findings));
    ++st.runs_added;
  }
  return st;
}

}  // namespace qeval
