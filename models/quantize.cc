#include "models/quantize.h"

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <set>

#include <fmt/ranges.h>

#include "core/file_io.h"
#include "models/train_loop.h"
#include "quant/aligned.h"
#include "quant/export.h"
#include "quant/qat.h"
#include "simulator/onnx_export.h"
#include "simulator/program.h"

namespace qeval {

namespace fs = std::filesystem;

namespace {

constexpr int64_t kSimBatch = 250;

void note(bool on, const std::string& s) {
  if (on) std::cerr << s << "\n";
}

// Observers see `count` training images spread evenly over the set (fixed, so
// calibration is deterministic and a resumed run calibrates identically).
Status calibrate(QatModule& m, const torch::Tensor& x, int64_t count) {
  torch::NoGradGuard ng;
  m.enable_calibration();
  m.train(false);
  count = std::min<int64_t>(count, x.size(0));
  const int64_t stride = std::max<int64_t>(1, x.size(0) / count);
  torch::Tensor idx = torch::arange(0, count, torch::kInt64) * stride;
  torch::Tensor xc = x.index_select(0, idx);
  for (int64_t b = 0; b < count; b += 128) {
    auto out = m.forward({GraphModule::to_channels_last(xc.slice(0, b, std::min(count, b + 128)))});
    if (!out.is_ok()) return out.status().with_context("calibration");
  }
  return m.enable_quantization();
}

}  // namespace

Result<Graph> lower_batch_free(Graph g, const ChipProfile& p) {
  for (const std::string& in : g.inputs) {  // shapes are inferred for batch 1
    ValueInfo& vi = g.value(in);
    if (!vi.shape.empty() && vi.shape[0] < 0) vi.shape[0] = 1;
  }
  auto prog = lower_graph(std::move(g), p);
  if (!prog.is_ok()) return prog.status().with_context("lowering for " + p.name);
  for (const std::string& in : prog->inputs) {
    ValueInfo& vi = prog->value(in);
    if (!vi.shape.empty()) vi.shape[0] = -1;
  }
  return prog;
}

namespace {

// The simulator's name for the integer value of QAT owner `v`.
std::string sim_name(const Graph& program, const std::string& v) {
  return program.find_value(v + ".q") ? v + ".q" : v;
}

void accumulate(std::map<std::string, LayerAgreement>& acc, const std::string& v, const torch::Tensor& a,
                const torch::Tensor& b) {
  LayerAgreement& l = acc[v];
  l.value = v;
  torch::Tensor d = (a.to(torch::kInt64) - b.to(torch::kInt64)).abs();
  l.elements += d.numel();
  l.mismatched += d.ne(0).sum().item<int64_t>();
  if (d.numel() > 0) l.max_lsb = std::max(l.max_lsb, d.max().item<int64_t>());
}

std::vector<LayerAgreement> in_order(const Graph& program, std::map<std::string, LayerAgreement>& m) {
  std::vector<LayerAgreement> out;
  std::set<std::string> done;
  for (const Node& n : program.nodes) {
    for (const std::string& o : n.outputs) {
      std::string base = o;
      if (!m.count(base) && base.ends_with(".q")) base.resize(base.size() - 2);
      if (m.count(base) && done.insert(base).second) out.push_back(m[base]);
    }
  }
  return out;
}

struct SimPass {
  EvalResult eval;
  std::vector<LayerAgreement> aligned, fake_quant;
  int64_t aligned_elements = 0, aligned_mismatched = 0;
  double class_agreement = 0;
};

// Scores `program` in the simulator on the test set; with `qat`, compares the
// deploy-aligned forward and the plain fake-quant forward with it.
Result<SimPass> sim_pass(const ZooModel& model, const Graph& program, const ChipProfile& profile,
                         const torch::Tensor& x, const torch::Tensor& y, QatModule* qat, bool progress,
                         const std::string& what) {
  const Graph& g = program;
  const std::string in_name = g.inputs.at(0);
  QEVAL_ASSIGN_OR_RETURN(Executor ex, Executor::create(g, profile));
  const auto t0 = std::chrono::steady_clock::now();
  const bool tty = isatty(2);
  std::map<std::string, LayerAgreement> aligned, fq;
  int64_t c1 = 0, c5 = 0, same_class = 0;
  RunOptions ro;
  ro.keep_intermediates = qat != nullptr;
  for (int64_t b = 0; b < x.size(0); b += kSimBatch) {
    const int64_t e = std::min<int64_t>(x.size(0), b + kSimBatch);
    torch::Tensor xb = x.slice(0, b, e).contiguous();
    QEVAL_ASSIGN_OR_RETURN(Tensor xt, from_torch(xb));
    QEVAL_ASSIGN_OR_RETURN(auto env, ex.run({{in_name, xt}}, ro));
    torch::Tensor logits = to_torch(env.at(g.outputs.at(0)));
    torch::Tensor top = std::get<1>(logits.topk(5, 1));
    torch::Tensor yy = y.slice(0, b, e).unsqueeze(1);
    c1 += top.slice(1, 0, 1).eq(yy).sum().item<int64_t>();
    c5 += top.eq(yy).sum().item<int64_t>();
    if (qat) {
      QEVAL_ASSIGN_OR_RETURN(auto al, run_deploy_aligned(program, profile, {{in_name, xb}}, true));
      for (const auto& [name, vi] : program.values) {
        if (!vi.quant || program.is_constant(name)) continue;
        auto s = env.find(name);
        auto a = al.find(name);
        if (s == env.end() || a == al.end()) continue;
        accumulate(aligned, name, a->second, to_torch(s->second));
      }
      same_class += al.at(g.outputs.at(0)).argmax(1).eq(logits.argmax(1)).sum().item<int64_t>();
      std::map<std::string, torch::Tensor> cap;
      qat->set_capture(&cap);
      auto fwd = qat->forward({GraphModule::to_channels_last(xb)});
      qat->set_capture(nullptr);
      if (!fwd.is_ok()) return fwd.status();
      for (const auto& [v, q] : cap) {
        auto s = env.find(sim_name(program, v));
        if (s != env.end()) accumulate(fq, v, q, to_torch(s->second));
      }
    }
    if (progress) {
      const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::cerr << fmt::format("{}[{} {}] {} {}/{} images, top-1 {:.2f}%, {:.0f} img/s{}", tty ? "\r" : "",
                               what, model.name, qat ? "simulator + aligned check" : "simulator", e, x.size(0),
                               100.0 * c1 / e, e / std::max(1e-9, el), tty ? "\033[K" : "\n");
    }
  }
  if (progress && tty) std::cerr << "\n";
  SimPass r;
  r.eval.metric = "top1";
  r.eval.samples = x.size(0);
  r.eval.top1 = 100.0 * c1 / r.eval.samples;
  r.eval.top5 = 100.0 * c5 / r.eval.samples;
  r.eval.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (qat) {
    r.aligned = in_order(program, aligned);
    r.fake_quant = in_order(program, fq);
    for (const auto& l : r.aligned) {
      r.aligned_elements += l.elements;
      r.aligned_mismatched += l.mismatched;
    }
    r.class_agreement = static_cast<double>(same_class) / r.eval.samples;
  }
  return r;
}

Status write_text(const std::string& path, const std::string& text, std::vector<std::string>* files) {
  QEVAL_RETURN_IF_ERROR(write_file_atomic(path, text));
  files->push_back(path);
  return Status::ok();
}

}  // namespace

Result<QuantizeResult> quantize_zoo_model(const ZooModel& model, const Graph& fp32, const QuantizeOptions& opts) {
  const bool detect = model.task == "detect";
  if (detect && opts.evaluate) {
    return unsupported("{}: qeval quantize scores classifiers only; quantize and score a detector with "
                       "run_eval (regression/cfg/det_tiny.yaml)", model.name);
  }
  at::set_num_threads(std::max(1, opts.threads));
  // Data-parallel QAT: the other ranks calibrate and train, rank 0 scores and writes.
  const bool lead = !opts.dist || opts.dist->rank() == 0;
  const bool evaluate = opts.evaluate && lead;
  const QuantizeCfg& cfg = opts.cfg;
  QEVAL_ASSIGN_OR_RETURN(ChipProfile profile, load_profile(cfg.chip));
  QuantizeResult res;
  res.model = model.name;
  res.chip = profile.name;
  std::error_code ec;
  fs::create_directories(opts.out_dir, ec);
  if (ec) return io_error("{}: cannot create output folder: {}", opts.out_dir, ec.message());

  torch::Tensor xtr, ytr, xte, yte;
  DetSceneSet scenes;
  const bool distill = opts.distill || opts.train_images.has_value();
  if (opts.train_images) {
    if (evaluate) {
      return invalid_argument("{}: a model with its own calibration images is scored by run_eval "
                              "(QuantizeOptions.evaluate = false)", model.name);
    }
    xtr = to_torch(*opts.train_images).to(torch::kFloat32);
    if (opts.train_limit > 0 && xtr.size(0) > opts.train_limit) xtr = xtr.slice(0, 0, opts.train_limit);
    if (xtr.size(0) == 0) return invalid_argument("{}: no calibration images", model.name);
  } else if (detect) {
    QEVAL_ASSIGN_OR_RETURN(ImageSet train, load_fashion_mnist("train", opts.data_root));
    const int64_t count = opts.train_limit > 0 ? opts.train_limit : kDetDefaultTrainScenes;
    QEVAL_ASSIGN_OR_RETURN(scenes, make_det_scenes(train, kDetTrainSeedBase + opts.seed, count, model));
    xtr = scenes.images;
  } else {
    QEVAL_ASSIGN_OR_RETURN(ImageSet train, load_fashion_mnist("train", opts.data_root));
    xtr = classifier_inputs(train, model, opts.train_limit);
    ytr = labels_of(train, opts.train_limit);
  }
  if (evaluate) {
    QEVAL_ASSIGN_OR_RETURN(ImageSet test, load_fashion_mnist("test", opts.data_root));
    xte = classifier_inputs(test, model, opts.eval_limit);
    yte = labels_of(test, opts.eval_limit);
  }

  const QatConfig& qc = cfg.qat;
  const int epochs = opts.ptq_only ? 0 : qc.epochs;
  const int64_t steps_per_epoch = (xtr.size(0) + qc.batch - 1) / qc.batch;
  QatOptions qo;
  qo.act_fake_quant = qc.fake_quant;
  qo.weight_fake_quant = qc.weight_fake_quant;
  qo.freeze_bn_step = static_cast<int64_t>(qc.freeze_bn_epoch * steps_per_epoch);
  QEVAL_ASSIGN_OR_RETURN(auto qat, QatModule::create(fp32, cfg.quant, profile, qo, /*channels_last=*/true));
  // QAT on the device (a GPU with a CUDA LibTorch); the simulator stays on the CPU.
  QEVAL_ASSIGN_OR_RETURN(torch::Device device, parse_device(opts.device));
  QEVAL_RETURN_IF_ERROR(qat->to_device(device));
  note(opts.progress, fmt::format("[quantize {}] prepare: {} activation quantizers, {} weight quantizers, "
                                  "{} BN folded, {} float nodes",
                                  model.name, qat->plan().act.size(), qat->plan().weight.size(),
                                  qat->plan().folded_bn.size(), qat->plan().float_nodes.size()));
  TrainOptions topts;
  topts.threads = opts.threads;
  topts.progress = false;
  topts.eval_limit = opts.eval_limit;
  topts.data_root = opts.data_root;
  topts.device = opts.device;
  if (evaluate) {
    QEVAL_ASSIGN_OR_RETURN(auto fm, GraphModule::create(fp32, true));
    QEVAL_RETURN_IF_ERROR(fm->to_device(device));
    QEVAL_ASSIGN_OR_RETURN(res.fp32, evaluate_classifier(model, *fm, topts));
    note(opts.progress, fmt::format("[quantize {}] fp32 top-1 {:.2f}% on {} images; chip {}", model.name,
                                    res.fp32.top1, res.fp32.samples, profile.name));
  }

  const auto tc = std::chrono::steady_clock::now();
  QEVAL_RETURN_IF_ERROR(calibrate(*qat, xtr, qc.calib_images));
  note(opts.progress, fmt::format("[quantize {}] calibrate: {} images, observer {} ({})", model.name,
                                  std::min<int64_t>(qc.calib_images, xtr.size(0)), cfg.quant.observer.kind,
                                  format_duration(std::chrono::duration<double>(std::chrono::steady_clock::now() - tc).count())));

  // PTQ: the calibrated model as deployed.
  {
    QEVAL_ASSIGN_OR_RETURN(Graph q, qat->convert_deploy());
    QEVAL_ASSIGN_OR_RETURN(Graph prog, lower_batch_free(q, profile));
    if (opts.score_ptq && evaluate) {
      QEVAL_ASSIGN_OR_RETURN(SimPass p, sim_pass(model, prog, profile, xte, yte, nullptr, opts.progress, "ptq"));
      res.ptq_sim = p.eval;
    } else {
      res.ptq_sim.top1 = res.ptq_sim.top5 = -1;  // not scored
    }
    const std::string path = (fs::path(opts.out_dir) / (model.name + "_ptq.qmodel")).string();
    if (lead) {
      QEVAL_RETURN_IF_ERROR(save_graph(prog, path));
      res.files.push_back(path);
    }
    if (opts.score_ptq && evaluate) {
      note(opts.progress, fmt::format("[quantize {}] PTQ (simulator) top-1 {:.2f}%", model.name, res.ptq_sim.top1));
    }
  }

  if (epochs > 0) {
    ZooModel qm = model;
    qm.name = model.name + ".qat";
    TrainRecipe& r = qm.recipe;
    r.optimizer = qc.optimizer;
    r.peak_lr = qc.lr;
    r.schedule = qc.schedule;
    r.batch = qc.batch;
    r.epochs = epochs;
    r.weight_decay = qc.weight_decay;
    r.nesterov = qc.optimizer == "sgd";
    r.momentum = 0.9;
    r.cycle_momentum = false;
    r.grad_clip = qc.grad_clip;
    r.seed = opts.seed;
    r.train_limit = opts.train_limit;
    TrainOptions lo = topts;
    lo.progress = opts.progress;
    lo.checkpoint_dir = (fs::path(opts.out_dir) / "checkpoints").string();
    lo.resume = opts.resume;
    lo.dist = opts.dist;
    const bool hflip = r.hflip && !distill;
    QatModule* m = qat.get();
    std::unique_ptr<GraphModule> teacher;  // the fp32 model the distillation loss follows
    if (distill) {
      QEVAL_ASSIGN_OR_RETURN(teacher, GraphModule::create(fp32, true));
      QEVAL_RETURN_IF_ERROR(teacher->to_device(device));
      teacher->train(false);
    }
    GraphModule* t = teacher.get();
    BatchLossFn loss_fn = [&, m, t](const std::vector<int64_t>& idx, uint64_t rng, int64_t first) {
      torch::Tensor ii = torch::tensor(idx, torch::kInt64);
      torch::Tensor xb;
      DetBatch db;
      if (detect && !t) {
        db = det_batch(scenes, idx, rng, hflip, first);
        xb = db.images;
      } else {
        xb = xtr.index_select(0, ii);
        if (hflip) random_hflip(xb, rng, first);
      }
      xb = GraphModule::to_channels_last(xb);
      auto out = m->forward({xb});
      if (!out.is_ok()) throw std::runtime_error(out.status().message());
      torch::Tensor loss;
      if (t) {
        torch::Tensor target;
        {
          torch::NoGradGuard ng;
          auto tout = t->forward({xb});
          if (!tout.is_ok()) throw std::runtime_error(tout.status().message());
          target = (*tout)[0].detach();
        }
        loss = torch::mse_loss((*out)[0], target);
      } else {
        loss = detect ? det_loss((*out)[0], db)
                      : torch::nn::functional::cross_entropy((*out)[0], ytr.index_select(0, ii).to((*out)[0].device()));
      }
      if (!std::isfinite(loss.item<double>())) {
        // Find the first layer with non-finite values, then stop with a hint.
        m->set_check_finite(true);
        auto again = m->forward({xb});
        m->set_check_finite(false);
        const std::string where = again.is_ok() ? "the loss only" : again.status().message();
        throw std::runtime_error(fmt::format(
            "non-finite values at QAT step {}: {}; lower qat.lr, use a warmup (qat.schedule: onecycle) "
            "or clip gradients (qat.grad_clip: 1.0)", m->steps(), where));
      }
      m->step();
      return loss;
    };
    note(opts.progress, fmt::format("[quantize {}] QAT: {} epoch(s), lr {} ({}), batch {}, fake quant {} / weights {}, "
                                    "loss {}",
                                    model.name, epochs, qc.lr, qc.schedule, qc.batch, qc.fake_quant,
                                    qc.weight_fake_quant, distill ? "distillation (MSE to fp32 outputs)" : "task"));
    QEVAL_ASSIGN_OR_RETURN(LoopResult loop, run_train_loop(*qat, qm, xtr.size(0), loss_fn, lo));
    res.did_qat = true;
    res.qat_epoch_loss = loop.epoch_loss;
    res.qat_seconds = loop.seconds;
    res.qat_images_per_second = loop.images_per_second;
  }
  qat->freeze();
  if (!lead) return res;
  if (evaluate) {
    QEVAL_ASSIGN_OR_RETURN(res.qat_fake_quant, evaluate_classifier(model, *qat, topts));
    note(opts.progress, fmt::format("[quantize {}] {} fake-quant top-1 {:.2f}%", model.name,
                                    res.did_qat ? "QAT" : "PTQ", res.qat_fake_quant.top1));
  }

  QEVAL_ASSIGN_OR_RETURN(Graph q, qat->convert_deploy());
  if (evaluate) q.metadata["fp32_top1"] = fmt::format("{:.4f}", res.fp32.top1);
  QEVAL_ASSIGN_OR_RETURN(Graph prog, lower_batch_free(q, profile));
  if (evaluate) {
    QEVAL_ASSIGN_OR_RETURN(SimPass p, sim_pass(model, prog, profile, xte, yte, opts.compare ? qat.get() : nullptr,
                                               opts.progress, res.did_qat ? "qat" : "final"));
    res.qat_sim = p.eval;
    res.aligned = p.aligned;
    res.fake_quant = p.fake_quant;
    res.aligned_elements = p.aligned_elements;
    res.aligned_mismatched = p.aligned_mismatched;
    res.class_agreement_aligned = p.class_agreement;
  }

  res.float_nodes.assign(qat->plan().float_nodes.begin(), qat->plan().float_nodes.end());
  for (const auto& [name, vi] : prog.values) {
    if (vi.quant && vi.quant->dtype == DType::kInt16 && !prog.is_constant(name)) res.int16_values.push_back(name);
  }
  const fs::path out(opts.out_dir);
  const std::string qpath = (out / (model.name + ".qmodel")).string();
  QEVAL_RETURN_IF_ERROR(save_graph(prog, qpath));
  res.files.push_back(qpath);
  QEVAL_ASSIGN_OR_RETURN(std::string table, calibration_table(q, profile.name));
  QEVAL_RETURN_IF_ERROR(write_text((out / (model.name + "_cali_table")).string(), table, &res.files));
  const std::string onnx_path = (out / (model.name + "_qdq.onnx")).string();
  if (Status s = save_onnx_qdq(q, onnx_path); s.is_ok()) {
    res.files.push_back(onnx_path);
  } else if (s.code() == StatusCode::kUnsupported) {
    // The QDQ file is an extra for other runtimes; a model it cannot express (det_tiny's SiLU
    // has no ONNX op at opset 13) still deploys to the simulator.
    note(opts.progress, fmt::format("[quantize {}] no QDQ ONNX export: {}", model.name, s.message()));
  } else {
    return s;
  }
  QEVAL_RETURN_IF_ERROR(write_text((out / "summary.json").string(), quantize_summary_json(res), &res.files));
  return res;
}

std::string quantize_summary_json(const QuantizeResult& r) {
  auto quoted = [](const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "\"" : ", \"") + x + "\"";
    return s;
  };
  auto layers = [](const std::vector<LayerAgreement>& v) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) {
      s += fmt::format("{}\n    {{\"value\": \"{}\", \"elements\": {}, \"mismatched\": {}, \"max_lsb\": {}}}",
                       i ? "," : "", v[i].value, v[i].elements, v[i].mismatched, v[i].max_lsb);
    }
    return s + (v.empty() ? "]" : "\n  ]");
  };
  return fmt::format(
      "{{\n  \"model\": \"{}\",\n  \"chip\": \"{}\",\n  \"samples\": {},\n  \"fp32_top1\": {:.4f},\n"
      "  \"ptq_sim_top1\": {:.4f},\n  \"qat\": {},\n  \"qat_fake_quant_top1\": {:.4f},\n  \"qat_sim_top1\": {:.4f},\n"
      "  \"qat_epoch_loss\": [{:.6f}],\n  \"qat_seconds\": {:.3f},\n"
      "  \"aligned_elements\": {},\n  \"aligned_mismatched\": {},\n  \"aligned_class_agreement\": {:.6f},\n"
      "  \"float_layers\": [{}],\n  \"int16_activations\": [{}],\n"
      "  \"aligned_layers\": {},\n  \"fake_quant_layers\": {}\n}}\n",
      r.model, r.chip, r.qat_sim.samples, r.fp32.top1, r.ptq_sim.top1, r.did_qat ? "true" : "false",
      r.qat_fake_quant.top1, r.qat_sim.top1, fmt::join(r.qat_epoch_loss, ", "), r.qat_seconds, r.aligned_elements,
      r.aligned_mismatched, r.class_agreement_aligned, quoted(r.float_nodes), quoted(r.int16_values),
      layers(r.aligned), layers(r.fake_quant));
}

}  // namespace qeval
