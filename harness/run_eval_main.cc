// run_eval: the parallel, tolerance-gated regression runner (docs/run_eval.md).
//   run_eval [flags] CFG|LIST...
// Reads model cfgs (tpu-mlir .cfg or YAML) and model lists, plans one job per
// (cfg x chip x mode), runs each in its own worker process (this binary with
// --worker), stores every result in SQLite and prints the table.
// Exit: 0 all within tolerance, 1 a tolerance failed, 2 an error.
#include <unistd.h>

#include <tbb/global_control.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <set>

#include "core/file_io.h"
#include "harness/cfg.h"
#include "harness/runner.h"
#include "models/eval_job.h"
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
  auto text = read_file(spec_path);
  if (!text.is_ok()) return error(text.status().message());
  auto spec = job_spec_from_json(*text, spec_path);
  if (!spec.is_ok()) return error(spec.status().message());
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, std::max(1, spec->threads));
  const JobResult r = run_eval_job(*spec);
  if (Status s = write_file_atomic(out_path, job_result_to_json(r)); !s.is_ok()) return error(s.message());
  return 0;
}

std::string now_iso() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

std::string safe(const std::string& id) {
  std::string s = id;
  for (char& c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') c = '_';
  }
  return s;
}

struct Flags {
  std::vector<std::string> cfgs, chips;
  bool fast_test = false, qat_eval = false, list = false;
  int pool_size = 2, threads = 1;
  int64_t batch_size = 0, compare_count = 4;
  std::string qat_model_path, debug_cmd, db = "results/qeval.db", html, markdown, junit, out_dir = "results/runs";
  double timeout = 0;
};

// One job per (cfg x chip x mode); every cfg and chip is checked before any job runs.
Result<std::vector<JobSpec>> plan(const Flags& f, std::vector<ModelCfg>* cfgs_out) {
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
        s.qat_model_path = f.qat_model_path;
        s.debug_cmd = f.debug_cmd;
        s.compare_count = f.compare_count;
        specs.push_back(s);
      }
      cfgs_out->push_back(cfg);
    }
  }
  if (specs.empty()) return invalid_argument("no jobs: give model cfgs or model lists");
  return specs;
}

int run(const Flags& f, int argc, char** argv) {
  std::vector<ModelCfg> cfgs;
  auto planned = plan(f, &cfgs);
  if (!planned.is_ok()) return error(planned.status().message());
  std::vector<JobSpec> specs = std::move(*planned);
  if (f.list) {
    std::cout << fmt::format("{} job(s){}:\n", specs.size(), f.fast_test ? " (fast test)" : "");
    for (const JobSpec& s : specs) {
      std::cout << fmt::format("  {:<40} {}  samples: {}\n", s.id, s.cfg_path,
                               s.count > 0 ? std::to_string(s.count) : "all");
    }
    return 0;
  }
  auto store = ResultStore::open(f.db);
  if (!store.is_ok()) return error(store.status().message());
  RunInfo info;
  info.started = now_iso();
  for (int i = 0; i < argc; ++i) info.command += (i ? " " : "") + std::string(argv[i]);
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  info.host = host;
  info.git_sha = QEVAL_GIT_SHA;
  info.fast_test = f.fast_test;
  auto run_id = (*store)->begin_run(info);
  if (!run_id.is_ok()) return error(run_id.status().message());
  const fs::path run_dir = fs::path(f.out_dir) / fmt::format("run-{}", *run_id);
  for (JobSpec& s : specs) {
    s.work_dir = fs::absolute(run_dir / safe(s.id)).string();
    s.stage_file = (fs::path(s.work_dir) / "stage").string();
  }
  std::cerr << fmt::format("[run_eval] run {}: {} job(s), pool {}, {} thread(s) each{}; db {}; logs {}\n", *run_id,
                           specs.size(), f.pool_size, f.threads, f.fast_test ? ", fast test" : "", f.db,
                           run_dir.string());
  RunnerOptions ro;
  ro.pool_size = f.pool_size;
  ro.timeout_s = f.timeout;
  ro.worker_exe = fs::read_symlink("/proc/self/exe").string();
  ro.tty = isatty(2);
  Status store_error;
  ro.on_done = [&](const JobResult& r) {
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
  (void)(*store)->finish_run(*run_id, "done", code, seconds);
  std::cout << results_table_text(results);
  int passed = 0, failed = 0, errors = 0;
  for (const auto& r : results) (r.status == "pass" ? passed : r.status == "fail" ? failed : errors)++;
  std::cout << fmt::format("{} job(s): {} passed, {} failed, {} error(s) in {:.0f}s; run {} in {}\n", results.size(),
                           passed, failed, errors, seconds, *run_id, f.db);
  auto info2 = (*store)->run(*run_id);
  const RunInfo& ri = info2.is_ok() ? *info2 : info;
  const std::vector<std::pair<std::string, std::string>> reports = {
      {f.markdown, f.markdown.empty() ? "" : results_markdown(ri, results)},
      {f.junit, f.junit.empty() ? "" : results_junit(ri, results)},
      {f.html, f.html.empty() ? "" : results_html(ri, results)}};
  for (const auto& [path, body] : reports) {
    if (path.empty()) continue;
    std::error_code ec;
    if (auto pp = fs::path(path).parent_path(); !pp.empty()) fs::create_directories(pp, ec);
    if (Status s = write_file_atomic(path, body); !s.is_ok()) {
      std::cerr << "run_eval: error: " << s.message() << "\n";
      code = 2;
    } else {
      std::cout << "wrote " << path << "\n";
    }
  }
  return code;
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
  app.add_option("--threads", f.threads, "LibTorch/simulator threads per worker (default 1; part of determinism)")
      ->check(CLI::Range(1, 256));
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
  app.add_option("--timeout", f.timeout, "seconds per job before its worker is killed (0 = none)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--compare_count", f.compare_count, "samples of the per-layer comparison (default 4)")
      ->check(CLI::Range(1, 1000));
  app.add_option("--worker", worker, "(internal) run one job spec")->group("");
  app.add_option("--worker-out", worker_out, "(internal) where the worker writes its result")->group("");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  if (!worker.empty()) return worker_main(worker, worker_out);
  return run(f, argc, argv);
}
