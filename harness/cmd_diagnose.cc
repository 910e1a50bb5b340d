// qeval diagnose CFG: why a model misses its tolerance, and the fewest layers to
// change so that it holds (docs/diagnose.md). Every evaluation is a run_eval job
// (the run_eval binary next to this one, `--worker`), run on run_eval's process
// pool; the jobs, the checks, the sensitivity ranking and the fix go into the
// results store as one run, and into an HTML report.
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <set>

#include <fmt/ranges.h>

#include "core/file_io.h"
#include "datasets/export.h"
#include "harness/cfg.h"
#include "harness/commands.h"
#include "harness/diagnose.h"
#include "harness/runner.h"
#include "reports/diagnose_report.h"
#include "reports/store.h"

namespace qeval {

namespace {

namespace fs = std::filesystem;

struct DiagOpts {
  std::string cfg, chip, out = "results/diagnose", db = "results/qeval.db", html, fix_with = "auto";
  int64_t samples = 1000, profile_samples = 16;
  int max_fix_layers = 0, pool_size = 2, threads = 1, torch_threads = 1;
  double tolerance = kNaN, timeout = 0;
  bool fast_test = false, no_sensitivity = false, no_fix = false;
  std::string command;
};

std::string metric_text(const std::string& name, double v) { return format_metric(name, v); }

class Diagnosis {
 public:
  explicit Diagnosis(DiagOpts o) : o_(std::move(o)) {}
  int run();

 private:
  Status setup();
  JobSpec spec(const std::string& id, const std::string& cfg_path, const std::string& mode, int64_t compare) const;
  Result<std::vector<JobResult>> run_batch(const std::vector<JobSpec>& specs, const std::string& what);
  Result<std::string> write_variant(const std::string& file, const std::string& text);
  Status sensitivity();
  Status fix();
  void print_profile(const JobResult& j) const;
  std::string relative_cfg(const fs::path& from_dir) const;

  DiagOpts o_;
  ModelCfg cfg_;
  ChipProfile profile_;
  std::string mode_, worker_;
  fs::path dir_;
  std::unique_ptr<ResultStore> store_;
  int64_t run_id_ = 0;
  std::vector<Finding> findings_;
  JobResult main_, ptq_;
  GateMetric gate_;
  Graph fp32_, program_;
  QuantPlan plan_;
  std::vector<Sensitivity> sens_;
  bool fixed_ = false;
  int trial_ = 0;
};

std::string Diagnosis::relative_cfg(const fs::path& from_dir) const {
  std::error_code ec;
  const fs::path abs = fs::absolute(cfg_.path, ec).lexically_normal();
  const fs::path rel = fs::relative(abs, fs::absolute(from_dir, ec), ec);
  // Relative when the cfg is near (the patch moves with its tree), else absolute.
  int ups = 0;
  for (const auto& part : rel) ups += part == "..";
  return ec || rel.empty() || ups > 3 ? abs.string() : rel.string();
}

Status Diagnosis::setup() {
  QEVAL_ASSIGN_OR_RETURN(cfg_, load_model_cfg(o_.cfg));
  const std::string chip = !o_.chip.empty() ? o_.chip : !cfg_.chips.empty() ? cfg_.chips[0] : "bm1690";
  QEVAL_ASSIGN_OR_RETURN(profile_, load_profile(chip));
  mode_ = !cfg_.qat_model_path.empty()                     ? "qat_model"
          : (cfg_.has_qat_block && cfg_.qat.epochs > 0) ? "qat"
                                                           : "ptq";
  if (mode_ != "qat_model") QEVAL_RETURN_IF_ERROR(check_quant_config(cfg_.quant, profile_));
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  worker_ = (self.parent_path() / "run_eval").string();
  if (ec || !fs::is_regular_file(worker_)) {
    return not_found("{}: run_eval not found next to qeval (diagnose runs its jobs as run_eval workers)", worker_);
  }
  dir_ = fs::path(o_.out) / file_safe_name(cfg_.name + "-" + profile_.name);
  fs::remove_all(dir_ / "variants", ec);
  fs::create_directories(dir_ / "variants", ec);
  if (ec) return io_error("{}: cannot create: {}", dir_.string(), ec.message());
  QEVAL_ASSIGN_OR_RETURN(store_, ResultStore::open(o_.db));
  RunInfo info;
  info.command = o_.command;
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  info.host = host;
  info.fast_test = o_.fast_test;
  QEVAL_ASSIGN_OR_RETURN(run_id_, store_->begin_run(info));
  std::cerr << fmt::format("[diagnose] {} on {} ({}): run {} in {}; files in {}\n", cfg_.name, profile_.name, mode_,
                           run_id_, o_.db, dir_.string());
  return Status::ok();
}

JobSpec Diagnosis::spec(const std::string& id, const std::string& cfg_path, const std::string& mode,
                        int64_t compare) const {
  JobSpec s;
  s.id = id;
  s.cfg_path = cfg_path;
  s.chip = profile_.name;
  s.mode = mode;
  s.fast_test = o_.fast_test;
  s.count = o_.samples;
  s.threads = o_.threads;
  s.torch_threads = o_.torch_threads;
  s.compare_count = compare;
  s.work_dir = fs::absolute(dir_ / "jobs" / file_safe_name(id)).string();
  s.stage_file = (fs::path(s.work_dir) / "stage").string();
  return s;
}

Result<std::vector<JobResult>> Diagnosis::run_batch(const std::vector<JobSpec>& specs, const std::string& what) {
  RunnerOptions ro;
  ro.pool_size = o_.pool_size;
  ro.timeout_s = o_.timeout;
  ro.worker_exe = worker_;
  ro.tty = isatty(2);
  Status store_error;
  ro.on_done = [&](const JobResult& r) {
    if (Status s = store_->add_job(run_id_, r); !s.is_ok() && store_error.is_ok()) store_error = s;
  };
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<JobResult> out = run_jobs(specs, ro);
  QEVAL_RETURN_IF_ERROR(store_error);
  std::cerr << fmt::format("[diagnose] {}: {} job(s) in {:.0f}s\n", what, specs.size(),
                           std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return out;
}

Result<std::string> Diagnosis::write_variant(const std::string& file, const std::string& text) {
  const fs::path p = dir_ / "variants" / file;
  QEVAL_RETURN_IF_ERROR(write_file_atomic(p.string(), text));
  return p.string();
}

void Diagnosis::print_profile(const JobResult& j) const {
  std::cout << fmt::format("\nPer-layer profile: fp32 vs simulator on {} sample(s) ({})\n", o_.profile_samples, j.id);
  std::cout << fmt::format("{:<28} {:<13} {:>8} {:>7} {:>7} {:>5} {:>22} {:>7} {:>7} {:>10} {:>4}\n", "value", "op",
                           "cos", "euclid", "SQNR", "LSB", "fp32 range", "sat%", "outlier", "scale", "bits");
  for (const LayerResult& l : j.layers) {
    std::cout << fmt::format("{:<28} {:<13} {:>8.5f} {:>7.4f} {:>7.2f} {:>5} {:>22} {:>7} {:>7} {:>10} {:>4}\n",
                             l.name.size() > 28 ? l.name.substr(l.name.size() - 28) : l.name, l.op, l.cos, l.euclid,
                             l.sqnr, l.max_lsb >= 0 ? std::to_string(l.max_lsb) : "-",
                             std::isnan(l.lo) ? "-" : fmt::format("[{:.4g}, {:.4g}]", l.lo, l.hi),
                             std::isnan(l.saturation) ? "-" : fmt::format("{:.2f}", 100 * l.saturation),
                             std::isnan(l.outlier) ? "-" : fmt::format("{:.1f}", l.outlier),
                             std::isnan(l.scale) ? "-" : fmt::format("{:.4g}", l.scale),
                             l.bits ? std::to_string(l.bits) : "f32");
  }
}

Status Diagnosis::sensitivity() {
  // Sensitivity on PTQ (calibration only): QAT per variant would take an epoch each.
  const std::vector<std::string> heads = quantized_group_heads(fp32_, plan_);
  std::cerr << fmt::format("[diagnose] sensitivity: {} layers x 2 PTQ runs of {} samples\n", heads.size(),
                           o_.samples > 0 ? std::to_string(o_.samples) : "all");
  std::vector<JobSpec> specs;
  const std::string base = relative_cfg(dir_ / "variants");
  for (size_t i = 0; i < heads.size(); ++i) {
    std::vector<std::string> others = cfg_.quant.float_layers, only = cfg_.quant.float_layers;
    for (const auto& h : heads) {
      if (h != heads[i]) others.push_back(h);
    }
    only.push_back(heads[i]);
    const std::string qn = cfg_.name + ".q." + heads[i], fn = cfg_.name + ".f." + heads[i];
    QEVAL_ASSIGN_OR_RETURN(std::string qp, write_variant(fmt::format("q{:03}.yaml", i),
                                                         float_layers_patch_yaml(base, qn, others)));
    QEVAL_ASSIGN_OR_RETURN(std::string fp, write_variant(fmt::format("f{:03}.yaml", i),
                                                         float_layers_patch_yaml(base, fn, only)));
    specs.push_back(spec(qn + "/" + profile_.name + "/ptq", qp, "ptq", 1));
    specs.push_back(spec(fn + "/" + profile_.name + "/ptq", fp, "ptq", 1));
  }
  QEVAL_ASSIGN_OR_RETURN(auto res, run_batch(specs, "sensitivity"));
  const JobResult& ref = mode_ == "ptq" ? main_ : ptq_;
  QEVAL_ASSIGN_OR_RETURN(GateMetric all_q, gate_metric(ref, gate_.allowed_drop));
  const MetricResult* all_sqnr = ref.metric("output_sqnr");
  for (size_t i = 0; i < heads.size(); ++i) {
    const JobResult &q = res[2 * i], &f = res[2 * i + 1];
    for (const JobResult* j : {&q, &f}) {
      if (j->status == "error" || j->status == "crashed" || j->status == "timeout") {
        // One variant that cannot run leaves its layer unranked (last), not the whole analysis.
        std::cerr << fmt::format("[diagnose] warning: {} {}: {}\n", j->id, j->status, j->message);
      }
    }
    Sensitivity s;
    s.layer = heads[i];
    auto val = [](const JobResult& j, const char* m) {
      const MetricResult* x = j.metric(m);
      return x ? x->value : kNaN;
    };
    s.only_quantized = val(q, all_q.name.c_str());
    s.only_quantized_sqnr = val(q, "output_sqnr");
    s.only_float = val(f, all_q.name.c_str());
    s.only_float_sqnr = val(f, "output_sqnr");
    sens_.push_back(s);
  }
  rank_sensitivity(sens_, all_q.fp32, all_q.value, all_sqnr ? all_sqnr->value : kNaN);
  std::cout << fmt::format("\nSensitivity (PTQ, {} samples; fp32 {} {}, all quantized {}):\n",
                           o_.samples > 0 ? std::to_string(o_.samples) : "all", all_q.name,
                           metric_text(all_q.name, all_q.fp32), metric_text(all_q.name, all_q.value));
  std::cout << fmt::format("{:>4}  {:<28} {:>14} {:>10} {:>14} {:>10}\n", "rank", "layer", "only it float",
                           "SQNR", "only it quant", "SQNR");
  for (const Sensitivity& s : sens_) {
    std::cout << fmt::format("{:>4}  {:<28} {:>14} {:>10.2f} {:>14} {:>10.2f}\n", s.rank, s.layer,
                             metric_text(all_q.name, s.only_float), s.only_float_sqnr,
                             metric_text(all_q.name, s.only_quantized), s.only_quantized_sqnr);
    Finding f;
    f.kind = "sensitivity";
    f.subject = s.layer;
    f.rank = s.rank;
    f.value = s.only_quantized;
    f.value2 = s.only_float;
    f.detail = fmt::format("{} sqnr only quantized {:.2f} dB, only float {:.2f} dB", all_q.name,
                           s.only_quantized_sqnr, s.only_float_sqnr);
    findings_.push_back(f);
  }
  return Status::ok();
}

Status Diagnosis::fix() {
  // The change: raise low weight bits when the cfg lowers them, else 16-bit
  // activations when the profile has them, else float.
  FixAction action = FixAction::kFloat;
  bool low_bits = cfg_.quant.weight_bits < 8;
  for (const auto& [l, b] : cfg_.quant.layer_bits) low_bits = low_bits || b < 8;
  const bool has8 = std::count(profile_.weight_bits.begin(), profile_.weight_bits.end(), 8) > 0;
  const bool has16 = std::count(profile_.activation_bits.begin(), profile_.activation_bits.end(), 16) > 0;
  if (o_.fix_with == "auto") {
    action = low_bits && has8 ? FixAction::kBits8 : has16 ? FixAction::kInt16 : FixAction::kFloat;
  } else {
    QEVAL_ASSIGN_OR_RETURN(action, parse_fix_action(o_.fix_with));
  }
  std::vector<FixAction> tries = {action};
  if (o_.fix_with == "auto" && action != FixAction::kFloat) tries.push_back(FixAction::kFloat);
  const std::string base = relative_cfg(dir_ / "variants");
  for (FixAction a : tries) {
    std::vector<std::string> order;
    for (const Sensitivity& s : sens_) {
      if (a != FixAction::kBits8 || plan_.weight.count(s.layer)) order.push_back(s.layer);
    }
    std::cerr << fmt::format("[diagnose] fix search: {} on up to {} layers, {} {} drop <= {}\n", fix_action_name(a),
                             o_.max_fix_layers > 0 ? std::min<size_t>(order.size(), o_.max_fix_layers) : order.size(),
                             mode_, gate_.name, metric_text(gate_.name, gate_.allowed_drop));
    FixEvaluator eval = [&](const std::vector<std::vector<std::string>>& sets) -> Result<std::vector<FixTrial>> {
      std::vector<JobSpec> specs;
      for (const auto& s : sets) {
        const std::string name = fmt::format("{}.fix{}", cfg_.name, ++trial_);
        QEVAL_ASSIGN_OR_RETURN(std::string p, write_variant(fmt::format("fix{:03}.yaml", trial_),
                                                            fix_patch_yaml(base, name, cfg_.quant, s, a)));
        specs.push_back(spec(name + "/" + profile_.name + "/" + mode_, p, mode_, 1));
      }
      QEVAL_ASSIGN_OR_RETURN(auto res, run_batch(specs, "fix trials"));
      std::vector<FixTrial> out;
      for (size_t i = 0; i < res.size(); ++i) {
        auto g = gate_metric(res[i], gate_.allowed_drop);
        if (!g.is_ok()) return internal_error("fix trial {} {}: {}", res[i].id, res[i].status, res[i].message);
        out.push_back(FixTrial{{}, g->passes(), g->value});
        std::cerr << fmt::format("[diagnose]   {} layer(s) [{}]: {} {} -> {}{}\n", sets[i].size(),
                                 fmt::join(sets[i], ", "), gate_.name, metric_text(gate_.name, g->value),
                                 g->passes() ? "passes" : "fails",
                                 g->others_pass ? "" : fmt::format(" ({})", fmt::join(g->other_failures, "; ")));
      }
      return out;
    };
    QEVAL_ASSIGN_OR_RETURN(FixSearch r, search_fix(order, static_cast<size_t>(std::max(0, o_.max_fix_layers)),
                                                   static_cast<size_t>(o_.pool_size), eval));
    if (!r.found) {
      std::cout << fmt::format("\nNo fix with {}: every prefix of the ranking fails.\n", fix_action_name(a));
      continue;
    }
    const fs::path patch = dir_ / (cfg_.name + "_fix.yaml");
    const std::string comment = fmt::format(
        "Written by qeval diagnose {} (chip {}, {} samples, mode {}).\n{} fp32 {}: {} before, {} with this fix "
        "(allowed drop {}).\n{} layer(s) changed ({}): {}",
        cfg_.path, profile_.name, o_.samples > 0 ? std::to_string(o_.samples) : "all", mode_, gate_.name,
        metric_text(gate_.name, gate_.fp32), metric_text(gate_.name, gate_.value), metric_text(gate_.name, r.metric),
        metric_text(gate_.name, gate_.allowed_drop), r.layers.size(), fix_action_name(a), fmt::join(r.layers, ", "));
    std::string text = fix_patch_yaml(relative_cfg(dir_), cfg_.name + "_fix", cfg_.quant, r.layers, a, comment);
    if (o_.fast_test && o_.samples > 0) text += fmt::format("fast_test_count: {}\n", o_.samples);
    QEVAL_RETURN_IF_ERROR(write_file_atomic(patch.string(), text));
    for (const auto& l : r.layers) {
      Finding f;
      f.kind = "fix";
      f.subject = l;
      f.detail = fix_action_name(a);
      findings_.push_back(f);
    }
    Finding fr;
    fr.kind = "fix_result";
    fr.subject = gate_.name;
    fr.value = gate_.value;
    fr.value2 = r.metric;
    fr.rank = static_cast<int64_t>(r.layers.size());
    fr.detail = patch.string();
    findings_.push_back(fr);
    std::cout << fmt::format("\nFix: {} layer(s) -> {}: {}\n  {} {} -> {} (fp32 {}, allowed drop {}), {} trial run(s)\n"
                             "  cfg patch: {}\n  check it:  run_eval {}{}\n",
                             r.layers.size(), fix_action_name(a), fmt::join(r.layers, ", "), gate_.name,
                             metric_text(gate_.name, gate_.value), metric_text(gate_.name, r.metric),
                             metric_text(gate_.name, gate_.fp32), metric_text(gate_.name, gate_.allowed_drop),
                             r.trials.size(), patch.string(), o_.fast_test ? "--fast_test " : "", patch.string());
    fixed_ = true;
    return Status::ok();
  }
  return Status::ok();
}

int Diagnosis::run() {
  if (Status s = setup(); !s.is_ok()) return fail(s);
  const auto t0 = std::chrono::steady_clock::now();
  auto finish = [&](int code) {
    if (Status s = store_->set_findings(run_id_, findings_); !s.is_ok()) {
      std::cerr << "qeval: error: " << s.message() << "\n";
      code = 2;
    }
    (void)store_->finish_run(run_id_, "done", code,
                             std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    auto info = store_->run(run_id_);
    auto jobs = store_->jobs(run_id_);
    if (info.is_ok() && jobs.is_ok()) {
      const std::string html = !o_.html.empty() ? o_.html : (dir_ / "report.html").string();
      if (Status s = write_file_atomic(html, diagnose_html(*info, *jobs, findings_)); s.is_ok()) {
        std::cout << "wrote " << html << "\n";
      } else {
        std::cerr << "qeval: error: " << s.message() << "\n";
      }
    }
    return code;
  };
  // 1. The cfg as run_eval runs it, with the per-layer profile; PTQ too for the calibration ratio.
  std::vector<JobSpec> first = {spec(cfg_.name + "/" + profile_.name + "/" + mode_, cfg_.path, mode_,
                                     o_.profile_samples)};
  if (mode_ == "qat") first.push_back(spec(cfg_.name + "/" + profile_.name + "/ptq", cfg_.path, "ptq", 1));
  auto res = run_batch(first, "profile");
  if (!res.is_ok()) return finish(fail(res.status()));
  main_ = (*res)[0];
  ptq_ = mode_ == "qat" ? (*res)[1] : main_;
  for (const JobResult& j : *res) {
    if (j.status != "pass" && j.status != "fail") {
      return finish(fail(internal_error("{} {}: {}", j.id, j.status, j.message)));
    }
  }
  auto gate = gate_metric(main_, o_.tolerance);
  if (!gate.is_ok()) return finish(fail(gate.status()));
  gate_ = *gate;
  print_profile(main_);

  // 2. Checks.
  auto fp32 = load_graph(main_.artifacts["fp32"]);
  auto program = load_graph(main_.artifacts["qmodel"]);
  if (!fp32.is_ok()) return finish(fail(fp32.status()));
  if (!program.is_ok()) return finish(fail(program.status()));
  fp32_ = std::move(*fp32);
  program_ = std::move(*program);
  for (Finding& f : program_checks(fp32_, program_, cfg_.quant, profile_)) findings_.push_back(f);
  for (Finding& f : layer_checks(main_.layers)) findings_.push_back(f);
  if (auto pg = gate_metric(ptq_, gate_.allowed_drop); pg.is_ok() && pg->fp32 > 0) {
    Finding f;
    f.subject = "calibration_ratio";
    f.value = pg->value / pg->fp32;
    f.kind = f.value < CheckThresholds{}.calibration_ratio ? "check" : "measure";
    f.detail = fmt::format("PTQ {} {} / fp32 {} = {:.1f}%{}", pg->name, metric_text(pg->name, pg->value),
                           metric_text(pg->name, pg->fp32), 100 * f.value,
                           f.kind == "check" ? " (below 80%: look at calibration before QAT)" : "");
    findings_.insert(findings_.begin(), f);
  }
  {
    Finding f;
    f.kind = "measure";
    f.subject = "gate";
    f.value = gate_.value;
    f.value2 = gate_.fp32;
    f.detail = fmt::format("{} {}: {} vs fp32 {} (drop {}, allowed {}): {}{}", mode_, gate_.name,
                           metric_text(gate_.name, gate_.value), metric_text(gate_.name, gate_.fp32),
                           metric_text(gate_.name, gate_.drop()), metric_text(gate_.name, gate_.allowed_drop),
                           gate_.metric_passes() ? "within tolerance" : "FAILS",
                           gate_.others_pass ? "" : fmt::format("; other gates fail: {}",
                                                                fmt::join(gate_.other_failures, "; ")));
    findings_.insert(findings_.begin(), f);
  }
  std::cout << "\nChecks:\n";
  for (const Finding& f : findings_) {
    std::cout << fmt::format("  {:<6} {:<20} {}\n", f.kind == "check" ? "FLAG" : "info", f.subject, f.detail);
  }
  if (mode_ == "qat_model") {
    std::cout << "\nAn already quantized model (qat_model_path): no sensitivity analysis or fix (they re-quantize).\n";
    return finish(gate_.passes() ? 0 : 1);
  }
  auto plan = plan_quantization(fp32_, cfg_.quant, profile_);
  if (!plan.is_ok()) return finish(fail(plan.status()));
  plan_ = std::move(*plan);

  // 3. Sensitivity.
  if (!o_.no_sensitivity) {
    if (Status s = sensitivity(); !s.is_ok()) return finish(fail(s));
  }
  // 4. Fix.
  if (gate_.passes()) {
    std::cout << fmt::format("\n{} is within its tolerance on {}: no fix needed.\n", cfg_.name, profile_.name);
    return finish(0);
  }
  if (o_.no_fix || o_.no_sensitivity) return finish(1);
  if (Status s = fix(); !s.is_ok()) return finish(fail(s));
  return finish(fixed_ ? 0 : 1);
}

}  // namespace

void add_diagnose_command(CLI::App& app, CommandList& cmds) {
  auto o = std::make_shared<DiagOpts>();
  auto* d = app.add_subcommand("diagnose", "Per-layer profile, checks, sensitivity ranking and the fewest layers to "
                                           "raise to 8-bit weights / int16 / float so a cfg meets its tolerance");
  d->add_option("cfg", o->cfg, "model cfg (.cfg or .yaml, as run_eval takes)")->required();
  d->add_option("--chip", o->chip, "chip profile (default: the cfg's first, else bm1690)");
  d->add_option("--samples", o->samples, "evaluation samples of every job (0 = the whole test set)")
      ->check(CLI::NonNegativeNumber);
  d->add_option("--profile_samples", o->profile_samples, "samples of the per-layer profile")
      ->check(CLI::Range(int64_t{1}, int64_t{100000}));
  d->add_option("--tolerance", o->tolerance, "allowed drop of top-1 (points) or mAP (default: the cfg's "
                                             "metric_tolerance)");
  d->add_option("--fix_with", o->fix_with, "auto | bits8 | int16 | float (auto: bits8 when weights are below 8 "
                                           "bits, else int16 when the chip has it, else float)");
  d->add_option("--max_fix_layers", o->max_fix_layers, "layers the fix may change (0 = any)")
      ->check(CLI::NonNegativeNumber);
  d->add_flag("--fast_test", o->fast_test, "the short fp32 recipe and short QAT of run_eval --fast_test");
  d->add_flag("--no_sensitivity", o->no_sensitivity, "profile and checks only");
  d->add_flag("--no_fix", o->no_fix, "no fix search");
  d->add_option("--pool_size", o->pool_size, "worker processes at once")->check(CLI::Range(1, 256));
  d->add_option("--threads", o->threads, "simulator threads per worker")->check(CLI::Range(1, 256));
  d->add_option("--torch_threads", o->torch_threads, "LibTorch threads per worker")->check(CLI::Range(1, 256));
  d->add_option("--timeout", o->timeout, "seconds per job (0 = none)")->check(CLI::NonNegativeNumber);
  d->add_option("--out", o->out, "folder for the variants, the fix patch and the report");
  d->add_option("--db", o->db, "results store");
  d->add_option("--html", o->html, "HTML report (default OUT/NAME-CHIP/report.html)");
  cmds.push_back({d, [o] {
                    DiagOpts opts = *o;
                    opts.command = "qeval diagnose " + opts.cfg;
                    if (opts.fix_with != "auto") {
                      if (auto a = parse_fix_action(opts.fix_with); !a.is_ok()) return fail(a.status());
                    }
                    Diagnosis diag(opts);
                    return diag.run();
                  }});
}

}  // namespace qeval
