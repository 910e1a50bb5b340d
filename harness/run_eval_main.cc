// run_eval: the parallel, tolerance-gated regression runner (docs/run_eval.md).
//   run_eval [flags] CFG|LIST...
// Reads model cfgs (tpu-mlir .cfg or YAML) and model lists, plans one job per
// (cfg x chip x mode), runs each in its own worker process (this binary with
// --worker), stores every result in SQLite and prints the table.
// Exit: 0 all within tolerance, 1 a tolerance failed, 2 an error.
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>
#include <xxhash.h>

#include <tbb/global_control.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "core/file_io.h"
#include "datasets/export.h"
#include "harness/cfg.h"
#include "harness/runner.h"
#include "models/eval_job.h"
#include "reports/history.h"
#include "reports/report.h"
#include "reports/store.h"
#include "simulator/profile.h"

#ifndef QEVAL_GIT_SHA
#define QEVAL_GIT_SHA "unknown"
#endif

namespace qeval {
namespace {

namespace fs = std::filesystem;

int error(const std::string& msg) {
  std::cerr << "run_eval: error: " << msg << "\n";
  return 2;
}

int worker_main(const std::string& spec_path, const std::string& out_path) {
  // A worker dies with its parent (run_eval killed with SIGKILL): no orphan keeps
  // writing into a job folder that `run_eval --resume` reuses.
  const pid_t parent = getppid();
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) return 2;
  auto text = read_file(spec_path);
  if (!text.is_ok()) return error(text.status().message());
  auto spec = job_spec_from_json(*text, spec_path);
  if (!spec.is_ok()) return error(spec.status().message());
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, std::max(1, spec->threads));
  const JobResult r = run_eval_job(*spec);
  if (Status s = write_file_atomic(out_path, job_result_to_json(r)); !s.is_ok()) return error(s.message());
  return 0;
}

// XXH64 of a file's bytes ("" when it cannot be read): artifacts are stored by content.
std::string file_hash(const std::string& path) {
  auto bytes = read_file(path);
  return bytes.is_ok() ? fmt::format("{:016x}", XXH64(bytes->data(), bytes->size(), 0)) : "";
}

// Writes the requested report files; false (after a message) when one cannot be written.
bool write_reports(const std::string& markdown, const std::string& junit, const std::string& html, const RunInfo& ri,
                   const std::vector<JobResult>& results, const HtmlExtras& extras) {
  const std::vector<std::pair<std::string, std::string>> reports = {
      {markdown, markdown.empty() ? "" : results_markdown(ri, results)},
      {junit, junit.empty() ? "" : results_junit(ri, results)},
      {html, html.empty() ? "" : results_html(ri, results, extras)}};
  bool ok = true;
  for (const auto& [path, body] : reports) {
    if (path.empty()) continue;
    std::error_code ec;
    if (auto pp = fs::path(path).parent_path(); !pp.empty()) fs::create_directories(pp, ec);
    if (Status s = write_file_atomic(path, body); !s.is_ok()) {
      std::cerr << "run_eval: error: " << s.message() << "\n";
      ok = false;
    } else {
      std::cout << "wrote " << path << "\n";
    }
  }
  return ok;
}

std::atomic<bool> g_stop{false};
extern "C" void on_stop_signal(int) { g_stop.store(true); }

struct Flags {
  int64_t resume = 0;
  std::vector<std::string> cfgs, chips;
  bool fast_test = false, qat_eval = false, list = false;
  int pool_size = 2, threads = 1, torch_threads = 1;
  std::string device = "cpu";
  int64_t batch_size = 0, compare_count = 4;
  std::string qat_model_path, debug_cmd, db = "results/qeval.db", html, markdown, junit, out_dir = "results/runs";
  double timeout = 0;
  std::string shard, sweep;
};

// One job per (cfg x chip x mode); every cfg and chip is checked before any job runs.
Result<std::vector<JobSpec>> plan(const Flags& f) {
  std::vector<JobSpec> specs;
  std::set<std::string> ids;
  for (const std::string& arg : f.cfgs) {
    QEVAL_ASSIGN_OR_RETURN(auto entries, expand_cfg_argument(arg));
    for (const CfgEntry& e : entries) {
      QEVAL_ASSIGN_OR_RETURN(ModelCfg cfg, load_model_cfg(e.cfg_path));
      std::vector<std::string> chips = !f.chips.empty()        ? f.chips
                                       : !e.chips.empty()      ? e.chips
                                       : !cfg.chips.empty()    ? cfg.chips
                                                               : std::vector<std::string>{"bm1690"};
      const bool has_qat_model = !f.qat_model_path.empty() || !cfg.qat_model_path.empty();
      std::string mode = has_qat_model ? "qat_model"
                         : (f.qat_eval || (cfg.has_qat_block && cfg.qat.epochs > 0)) ? "qat"
                                                                                   : "ptq";
      for (const std::string& chip : chips) {
        QEVAL_ASSIGN_OR_RETURN(ChipProfile p, load_profile(chip));
        if (mode != "qat_model") {
          if (Status s = check_quant_config(cfg.quant, p); !s.is_ok()) return s;
        }
        JobSpec s;
        s.id = fmt::format("{}/{}/{}", cfg.name, p.name, mode);
        if (!ids.insert(s.id).second) {
          return invalid_argument("{}: job {} is planned twice (the same cfg name, chip and mode)", e.cfg_path, s.id);
        }
        s.cfg_path = cfg.path;
        s.chip = p.name;
        s.mode = mode;
        s.fast_test = f.fast_test;
        const int64_t fast_count = e.fast_test_count > 0 && !cfg.fast_test_count_set ? e.fast_test_count
                                                                                     : cfg.fast_test_count;
        s.count = f.fast_test ? fast_count : 0;
        s.batch_size = f.batch_size;
        s.threads = f.threads;
        s.torch_threads = f.torch_threads;
        s.device = f.device;
        s.qat_model_path = f.qat_model_path;
        s.debug_cmd = f.debug_cmd;
        s.compare_count = f.compare_count;
        specs.push_back(s);
      }
    }
  }
  if (specs.empty()) return invalid_argument("no jobs: give model cfgs or model lists");
  return specs;
}

// The plan of a run, kept in its folder so `--resume` reruns exactly its jobs.
Status save_plan(const std::string& path, const std::vector<JobSpec>& specs) {
  std::string text = "[\n";
  for (size_t i = 0; i < specs.size(); ++i) text += (i ? ",\n" : "") + job_spec_to_json(specs[i]);
  return write_file_atomic(path, text + "]\n");
}

Result<std::vector<JobSpec>> load_plan(const std::string& path) {
  QEVAL_ASSIGN_OR_RETURN(std::string text, read_file(path));
  std::vector<JobSpec> specs;
  try {
    for (const auto& j : nlohmann::json::parse(text)) {
      QEVAL_ASSIGN_OR_RETURN(JobSpec s, job_spec_from_json(j.dump(), path));
      specs.push_back(s);
    }
  } catch (const std::exception& e) {
    return data_loss("{}: not a run plan: {}", path, first_line(e.what()));
  }
  return specs;
}

int run(const Flags& f, int argc, char** argv) {
  std::vector<JobSpec> specs;
  if (f.resume == 0) {
    auto planned = plan(f);
    if (!planned.is_ok()) return error(planned.status().message());
    specs = std::move(*planned);
    if (!f.shard.empty()) {
      auto shard = parse_shard(f.shard);
      if (!shard.is_ok()) return error(shard.status().message());
      specs = select_shard(specs, *shard);
    }
  } else if (!f.cfgs.empty() || !f.shard.empty()) {
    return error("--resume reruns a stored run's own plan; give no cfgs or --shard with it");
  }
  if (f.list) {
    std::cout << fmt::format("{} job(s){}{}:\n", specs.size(), f.fast_test ? " (fast test)" : "",
                             f.shard.empty() ? "" : ", shard " + f.shard);
    for (const JobSpec& s : specs) {
      std::cout << fmt::format("  {:<40} {}  samples: {}\n", s.id, s.cfg_path,
                               s.count > 0 ? std::to_string(s.count) : "all");
    }
    return 0;
  }
  auto store = ResultStore::open(f.db);
  if (!store.is_ok()) return error(store.status().message());
  RunInfo info;
  for (int i = 0; i < argc; ++i) info.command += (i ? " " : "") + std::string(argv[i]);
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  info.host = host;
  info.git_sha = QEVAL_GIT_SHA;
  info.fast_test = f.fast_test;
  if (!f.shard.empty()) {
    const char* array_job = std::getenv("SLURM_ARRAY_JOB_ID");
    info.sweep = !f.sweep.empty() ? f.sweep : array_job ? std::string("slurm-") + array_job : "";
    if (info.sweep.empty()) {
      return error("--shard needs --sweep ID (or SLURM_ARRAY_JOB_ID): `run_eval merge` joins the shards of a sweep");
    }
    info.shard = f.shard;
  }
  Result<int64_t> run_id = f.resume;
  size_t already = 0;
  if (f.resume > 0) {
    auto old = (*store)->run(f.resume);
    if (!old.is_ok()) return error(old.status().message());
    info = *old;
    const std::string plan_path = (fs::path(f.out_dir) / fmt::format("run-{}", f.resume) / "plan.json").string();
    auto all = load_plan(plan_path);
    if (!all.is_ok()) return error(all.status().message() + " (--out_dir must be the run's)");
    auto done = (*store)->jobs(f.resume);
    if (!done.is_ok()) return error(done.status().message());
    std::set<std::string> finished;
    for (const JobResult& j : *done) finished.insert(j.id);
    for (const JobSpec& s : *all) {
      if (!finished.count(s.id)) specs.push_back(s);
    }
    already = finished.size();
    std::cerr << fmt::format("[run_eval] resuming run {}: {} job(s) stored, {} to run\n", f.resume, already,
                             specs.size());
  } else {
    run_id = (*store)->begin_run(info);
    if (!run_id.is_ok()) return error(run_id.status().message());
  }
  const fs::path run_dir = fs::path(f.out_dir) / fmt::format("run-{}", *run_id);
  if (f.resume == 0) {
    for (JobSpec& s : specs) {
      s.work_dir = fs::absolute(run_dir / file_safe_name(s.id)).string();
      s.stage_file = (fs::path(s.work_dir) / "stage").string();
    }
    std::error_code ec;
    fs::create_directories(run_dir, ec);
    if (Status s = save_plan((run_dir / "plan.json").string(), specs); !s.is_ok()) return error(s.message());
  }
  const int sim_threads = specs.empty() ? f.threads : specs[0].threads;
  const int torch_threads = specs.empty() ? f.torch_threads : specs[0].torch_threads;
  std::cerr << fmt::format("[run_eval] run {}: {} job(s), pool {}, {} simulator / {} LibTorch thread(s) each{}; db {}; "
                           "logs {}\n",
                           *run_id, specs.size(), f.pool_size, sim_threads, torch_threads,
                           f.fast_test ? ", fast test" : "", f.db, run_dir.string());
  // Ctrl-C / SIGTERM: stop the workers, keep what finished, mark the run interrupted.
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  RunnerOptions ro;
  ro.pool_size = f.pool_size;
  ro.timeout_s = f.timeout;
  ro.worker_exe = fs::read_symlink("/proc/self/exe").string();
  ro.tty = isatty(2);
  ro.stop = &g_stop;
  Status store_error;
  // Jobs share cfgs and baselines: each file is hashed once per run.
  std::map<std::string, std::string> hashes;
  auto hash_of = [&](const std::string& path) {
    auto it = hashes.find(path);
    return it != hashes.end() ? it->second : hashes[path] = file_hash(path);
  };
  ro.on_done = [&](const JobResult& done) {  // serialised by the runner
    JobResult r = done;
    r.cfg_hash = hash_of(r.cfg_path);
    for (const auto& [kind, path] : r.artifacts) {
      if (kind != "log") r.artifact_hashes[kind] = hash_of(path);
    }
    if (Status s = (*store)->add_job(*run_id, r); !s.is_ok() && store_error.is_ok()) store_error = s;
  };
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<JobResult> results = run_jobs(specs, ro);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  int code = exit_code_of(results);
  if (!store_error.is_ok()) {
    std::cerr << "run_eval: error: results store: " << store_error.message() << "\n";
    code = 2;
  }
  const bool interrupted = g_stop.load();
  if (f.resume > 0) {
    // The table, reports and exit code cover the whole run: the jobs stored before too.
    auto all = (*store)->jobs(*run_id);
    if (all.is_ok()) {
      for (const JobResult& r : results) {
        if (r.status == "interrupted") all->push_back(r);
      }
      results = std::move(*all);
      code = store_error.is_ok() ? exit_code_of(results) : 2;
    }
  }
  (void)(*store)->finish_run(*run_id, interrupted ? "interrupted" : "done", code, seconds);
  std::cout << results_table_text(results);
  // The table cuts messages; errors are worth reading whole.
  for (const JobResult& r : results) {
    if (r.status == "error" || r.status == "crashed" || r.status == "timeout") {
      std::cout << fmt::format("{} {}: {}\n", r.id, r.status, r.message);
    }
  }
  int passed = 0, failed = 0, errors = 0;
  for (const auto& r : results) (r.status == "pass" ? passed : r.status == "fail" ? failed : errors)++;
  std::cout << fmt::format("{} job(s): {} passed, {} failed, {} error(s) in {:.0f}s; run {} in {}\n", results.size(),
                           passed, failed, errors, seconds, *run_id, f.db);
  if (interrupted) {
    std::cerr << fmt::format("run_eval: interrupted; finish it with: run_eval --resume {} --db {} --out_dir {}\n",
                             *run_id, f.db, f.out_dir);
  }
  auto info2 = (*store)->run(*run_id);
  const RunInfo& ri = info2.is_ok() ? *info2 : info;
  HtmlExtras extras;
  if (!f.html.empty()) {
    auto tr = trends_for_run(**store, *run_id, 20);
    if (tr.is_ok()) extras.trends = std::move(*tr);
    if (*run_id > 1) {
      auto d = compare_runs(**store, *run_id - 1, *run_id);
      if (d.is_ok()) {
        extras.baseline_run = *run_id - 1;
        extras.diff = std::move(*d);
      }
    }
  }
  if (!write_reports(f.markdown, f.junit, f.html, ri, results, extras)) code = 2;
  return code;
}

Result<int64_t> run_id_of(const ResultStore& store, const std::string& id) {
  if (id.empty() || id == "latest") return store.latest_run_id();
  if (id.rfind("sweep:", 0) == 0) {
    QEVAL_ASSIGN_OR_RETURN(int64_t v, store.sweep_run(id.substr(6)));
    if (v == 0) return not_found("{}: no merged run of sweep '{}' (run_eval merge the shard databases first)",
                                 store.path(), id.substr(6));
    return v;
  }
  try {
    size_t used = 0;
    const int64_t v = std::stoll(id, &used);
    if (used == id.size() && v > 0) {
      QEVAL_RETURN_IF_ERROR(store.run(v).status());
      return v;
    }
  } catch (const std::exception&) {
  }
  return invalid_argument("run '{}': give a run id, 'latest' or 'sweep:ID'", id);
}

struct ReportFlags {
  std::string db = "results/qeval.db", run = "latest", baseline, html, markdown, junit;
  int last = 20;
  bool exit_code = false;
};

int report_main(const ReportFlags& f) {
  auto store = ResultStore::open(f.db);
  if (!store.is_ok()) return error(store.status().message());
  auto id = run_id_of(**store, f.run);
  if (!id.is_ok()) return error(id.status().message());
  auto info = (*store)->run(*id);
  auto jobs = (*store)->jobs(*id);
  if (!info.is_ok() || !jobs.is_ok()) return error((info.is_ok() ? jobs.status() : info.status()).message());
  HtmlExtras extras;
  auto tr = trends_for_run(**store, *id, f.last);
  if (!tr.is_ok()) return error(tr.status().message());
  extras.trends = std::move(*tr);
  int64_t base = 0;
  if (!f.baseline.empty()) {
    auto b = run_id_of(**store, f.baseline);
    if (!b.is_ok()) return error(b.status().message());
    base = *b;
  } else {
    // The previous run: the newest one older than this.
    auto runs = (*store)->runs();
    if (runs.is_ok()) {
      for (const RunInfo& r : *runs) {
        if (r.id < *id) base = r.id;
      }
    }
  }
  if (base > 0) {
    auto d = compare_runs(**store, base, *id);
    if (!d.is_ok()) return error(d.status().message());
    extras.baseline_run = base;
    extras.diff = std::move(*d);
  }
  std::cout << fmt::format("run {} ({}, {}, exit {})\n", info->id, info->started, info->status, info->exit_code)
            << results_table_text(*jobs);
  if (!write_reports(f.markdown, f.junit, f.html, *info, *jobs, extras)) return 2;
  if (!f.exit_code) return 0;
  // The run's own verdict; a sweep missing shards or an interrupted run is an error.
  if (info->status != "done") return 2;
  return std::clamp(info->exit_code, 0, 2);
}

int compare_main(const std::string& db, const std::string& a, const std::string& b) {
  auto store = ResultStore::open(db);
  if (!store.is_ok()) return error(store.status().message());
  auto ra = run_id_of(**store, a);
  auto rb = run_id_of(**store, b);
  if (!ra.is_ok() || !rb.is_ok()) return error((ra.is_ok() ? rb.status() : ra.status()).message());
  auto diff = compare_runs(**store, *ra, *rb);
  if (!diff.is_ok()) return error(diff.status().message());
  std::cout << fmt::format("run {} -> run {}\n", *ra, *rb);
  std::cout << fmt::format("{:<36} {:<18} {:>9} {:>9} {:>9}  {:<6} {:<6} {}\n", "job", "metric", "before", "after",
                           "delta", "before", "after", "regression");
  int regressions = 0;
  for (const MetricDiff& d : *diff) {
    regressions += d.regressed;
    std::cout << fmt::format("{:<36} {:<18} {:>9} {:>9} {:>9}  {:<6} {:<6} {}\n", d.job_key, d.metric,
                             format_metric(d.metric, d.before), format_metric(d.metric, d.after),
                             std::isfinite(d.delta) ? fmt::format("{:+.4f}", d.delta) : "-", d.before_status,
                             d.after_status, d.regressed ? "REGRESSED: " + d.rule : "");
  }
  std::cout << fmt::format("{} comparison(s), {} regression(s)\n", diff->size(), regressions);
  return regressions ? 1 : 0;
}

int merge_main(const std::vector<std::string>& sources, const std::string& into) {
  auto target = ResultStore::open(into);
  if (!target.is_ok()) return error(target.status().message());
  for (const std::string& src : sources) {
    if (!fs::is_regular_file(src)) return error(src + ": no such results database");
    auto st = merge_into(**target, src);
    if (!st.is_ok()) return error(st.status().message());
    std::cout << fmt::format("{}: {} run(s) added, {} shard(s) merged into a sweep run ({} job(s)), {} already in {}\n",
                             src, st->runs_added, st->shards_merged, st->jobs_added, st->runs_skipped, into);
  }
  return 0;
}

int history_main(const std::string& db, const std::string& model, const std::string& metric) {
  auto store = ResultStore::open(db);
  if (!store.is_ok()) return error(store.status().message());
  auto rows = metric_history(**store, model, metric);
  if (!rows.is_ok()) return error(rows.status().message());
  if (rows->empty()) return error(fmt::format("{}: no jobs of model '{}'", db, model));
  std::cout << fmt::format("{:>5}  {:<20}  {:<36} {:>9} {:>9} {:>9}  {}\n", "run", "started", "job",
                           "fp32", "int8", "delta", "result");
  for (const HistoryRow& h : *rows) {
    const std::string& m = h.metric;
    const bool has = std::isfinite(h.int8);
    std::cout << fmt::format("{:>5}  {:<20}  {:<36} {:>9} {:>9} {:>9}  {}\n", h.run_id, h.started, h.job_key,
                             format_metric(m, h.fp32), format_metric(m, h.int8),
                             has && std::isfinite(h.fp32) ? fmt::format("{:+.4f}", h.int8 - h.fp32) : "-",
                             has ? (h.pass ? "PASS" : "FAIL") : h.status);
  }
  return 0;
}

}  // namespace
}  // namespace qeval

int main(int argc, char** argv) {
  using namespace qeval;
  Flags f;
  std::string worker, worker_out;
  CLI::App app{"run_eval: quantize, simulate and score models under per-model tolerances (docs/run_eval.md)"};
  app.add_option("cfg", f.cfgs, "model cfgs (.cfg tpu-mlir style, .yaml) or model lists (YAML with `models:`)");
  app.add_flag("--fast_test", f.fast_test, "first fast_test_count samples (default 30), short QAT, short fp32 recipe");
  app.add_flag("--qat_eval", f.qat_eval, "evaluate QAT models: qat_model_path when set, else QAT per the cfg");
  app.add_option("--pool_size", f.pool_size, "worker processes at once")->check(CLI::Range(1, 256));
  app.add_option("--batch_size", f.batch_size, "inference batch (default 100)")->check(CLI::Range(1, 100000));
  app.add_option("--threads", f.threads, "simulator threads per worker (default 1; speed only, never the numbers)")
      ->check(CLI::Range(1, 256));
  app.add_option("--torch_threads", f.torch_threads,
                 "LibTorch threads per worker for training and fp32 inference (default 1; the trained weights depend "
                 "on it, so it is part of the cache keys)")
      ->check(CLI::Range(1, 256));
  app.add_option("--device", f.device,
                 "LibTorch device of fp32 training and QAT: cpu (default), cuda, cuda:N (a CUDA LibTorch build, "
                 "docs/cuda.md); the simulator always runs on the CPU")
      ->check([](const std::string& d) {
        const bool ok = d == "cpu" || d == "cuda" ||
                        (d.rfind("cuda:", 0) == 0 && d.size() > 5 &&
                         d.find_first_not_of("0123456789", 5) == std::string::npos);
        return ok ? std::string() : "--device: '" + d + "' (allowed: cpu, cuda, cuda:N)";
      });
  app.add_option("--qat_model_path", f.qat_model_path,
                 "already quantized models: a file, or folders (comma-separated) holding NAME.qmodel / NAME_qdq.onnx");
  app.add_option("--chip", f.chips, "chip profile (repeatable; overrides the cfgs)")
      ->allow_extra_args(false);
  app.add_option("--debug_cmd", f.debug_cmd, "tpu-mlir debug_cmd, overrides the cfgs'");
  app.add_option("--db", f.db, "results database (default results/qeval.db)");
  app.add_option("--out_dir", f.out_dir, "job folders: logs, specs, results (default results/runs)");
  app.add_option("--html", f.html, "write an HTML report");
  app.add_option("--markdown", f.markdown, "write a Markdown summary");
  app.add_option("--junit", f.junit, "write JUnit XML");
  app.add_flag("--list", f.list, "print the job plan and exit");
  app.add_option("--shard", f.shard, "run shard i of N of the plan (i/N; docs/run_eval.md, Sharded sweeps)");
  app.add_option("--sweep", f.sweep,
                 "sweep ID shared by the shards (default with --shard: slurm-$SLURM_ARRAY_JOB_ID); merge joins them");
  app.add_option("--resume", f.resume, "finish run ID: rerun the jobs of its plan that are not stored yet")
      ->check(CLI::PositiveNumber);
  app.add_option("--timeout", f.timeout, "seconds per job before its worker is killed (0 = none)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--compare_count", f.compare_count, "samples of the per-layer comparison (default 4)")
      ->check(CLI::Range(1, 1000));
  app.add_option("--worker", worker, "(internal) run one job spec")->group("");
  app.add_option("--worker-out", worker_out, "(internal) where the worker writes its result")->group("");
  ReportFlags rf;
  auto* rep = app.add_subcommand("report", "Write the reports of a stored run (HTML with trends and a diff)");
  rep->add_option("--db", rf.db, "results database");
  rep->add_option("--run", rf.run, "run id, 'latest' or 'sweep:ID' (the merged run of a sharded sweep)");
  rep->add_option("--baseline", rf.baseline, "run the diff compares against (default: the previous run)");
  rep->add_option("--last", rf.last, "runs in the trend plots")->check(CLI::Range(1, 10000));
  rep->add_option("--html", rf.html, "HTML report");
  rep->add_option("--markdown", rf.markdown, "Markdown summary");
  rep->add_option("--junit", rf.junit, "JUnit XML");
  rep->add_flag("--exit_code", rf.exit_code,
                "exit with the run's own code (0 pass, 1 a tolerance failed, 2 errors, or a sweep missing shards)");
  std::string cdb = "results/qeval.db", run_a, run_b;
  auto* cmp = app.add_subcommand("compare", "Metric deltas between two runs; exit 1 on a regression");
  cmp->add_option("run_a", run_a, "the earlier run (id, 'latest' or 'sweep:ID')")->required();
  cmp->add_option("run_b", run_b, "the later run (id, 'latest' or 'sweep:ID')")->required();
  cmp->add_option("--db", cdb, "results database");
  std::vector<std::string> merge_sources;
  std::string merge_into_db;
  auto* mrg = app.add_subcommand("merge", "Merge results databases (sharded sweeps); runs already there are skipped");
  mrg->add_option("sources", merge_sources, "databases to read")->required();
  mrg->add_option("--into", merge_into_db, "database to write")->required();
  std::string hdb = "results/qeval.db", hmodel, hmetric;
  auto* his = app.add_subcommand("history", "One model's metric over all stored runs");
  his->add_option("model", hmodel, "model (cfg name)")->required();
  his->add_option("--metric", hmetric, "metric (default: top1, or mAP for detectors)");
  his->add_option("--db", hdb, "results database");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  if (!worker.empty()) return worker_main(worker, worker_out);
  if (*rep) return report_main(rf);
  if (*cmp) return compare_main(cdb, run_a, run_b);
  if (*mrg) return merge_main(merge_sources, merge_into_db);
  if (*his) return history_main(hdb, hmodel, hmetric);
  return run(f, argc, argv);
}
