// qeval quantize: calibrate, PTQ, QAT fine-tune and deploy one zoo classifier
// for a chip profile (LibTorch builds only). See models/quantize.h.
//   qeval quantize --model M --cfg CFG.yaml --out DIR [--ptq] [--qat-epochs N]
//                  [--weights FP32.qmodel] [--resume] [--eval-limit N] [--train-limit N]
//                  [--no-compare] [--threads N]
#include <iostream>

#include <fmt/ranges.h>

#include "harness/commands.h"
#include "models/cache.h"
#include "models/quantize.h"
#include "models/zoo.h"

namespace qeval {

void add_quantize_command(CLI::App& app, CommandList& cmds) {
  struct Opts {
    std::string model, cfg, out, weights;
    bool ptq = false, resume = false, no_compare = false, no_ptq_eval = false;
    int qat_epochs = -1, threads = 2;
    std::string device = "cpu";
    int64_t eval_limit = 0, train_limit = 0;
  };
  auto o = std::make_shared<Opts>();
  auto* q = app.add_subcommand("quantize", "Calibrate, fine-tune (QAT) and deploy a zoo classifier for a chip "
                                           "profile; scores fp32, PTQ and QAT in the simulator");
  q->add_option("--model", o->model, "zoo model (qeval zoo list)")->required();
  q->add_option("--cfg", o->cfg, "model cfg (YAML): chip, quant and qat blocks (docs/quantization.md)");
  q->add_option("--out", o->out, "output folder (qmodel, cali table, summary.json, checkpoints)")->required();
  q->add_flag("--ptq", o->ptq, "calibration only, no fine-tuning");
  q->add_option("--qat-epochs", o->qat_epochs, "QAT epochs (default: the cfg's qat.epochs)")
      ->check(CLI::Range(0, 1000));
  q->add_option("--weights", o->weights, "fp32 weights (.qmodel; default: the cached baseline, trained if missing)");
  q->add_flag("--resume", o->resume, "continue QAT from DIR/checkpoints");
  q->add_option("--eval-limit", o->eval_limit, "score on the first N test images (0 = all)")
      ->check(CLI::NonNegativeNumber);
  q->add_option("--train-limit", o->train_limit, "calibrate and fine-tune on the first N training images")
      ->check(CLI::NonNegativeNumber);
  q->add_flag("--no-ptq-eval", o->no_ptq_eval, "do not score the PTQ model (it is still written; top-1 -1)");
  q->add_flag("--no-compare", o->no_compare, "skip the deploy-aligned / fake-quant vs simulator comparison");
  q->add_option("--threads", o->threads, "LibTorch threads")->check(CLI::Range(1, 256));
  q->add_option("--device", o->device, "LibTorch device of calibration and QAT: cpu (default), cuda, cuda:N "
                                       "(docs/cuda.md); the simulator runs on the CPU");
  cmds.push_back({q, [o] {
                    auto m = zoo_model(o->model);
                    if (!m.is_ok()) return fail(m.status());
                    QuantizeOptions qo;
                    if (!o->cfg.empty()) {
                      auto c = load_quantize_cfg(o->cfg);
                      if (!c.is_ok()) return fail(c.status());
                      qo.cfg = *c;
                    }
                    if (o->qat_epochs >= 0) qo.cfg.qat.epochs = o->qat_epochs;
                    qo.ptq_only = o->ptq;
                    qo.threads = o->threads;
                    qo.device = o->device;
                    if (Status s = check_device(o->device); !s.is_ok()) return fail(s);
                    qo.out_dir = o->out;
                    qo.resume = o->resume;
                    qo.eval_limit = o->eval_limit;
                    qo.train_limit = o->train_limit;
                    qo.compare = !o->no_compare;
                    qo.score_ptq = !o->no_ptq_eval;
                    auto dist = distributed_from_env();  // torchrun's RANK/WORLD_SIZE: data-parallel QAT
                    if (!dist.is_ok()) return fail(dist.status());
                    qo.dist = *dist;
                    Graph fp32;
                    if (!o->weights.empty()) {
                      auto g = load_graph(o->weights);
                      if (!g.is_ok()) return fail(g.status());
                      fp32 = std::move(*g);
                    } else {
                      TrainOptions t;
                      t.threads = o->threads;
                      t.device = o->device;
                      auto b = fp32_baseline(*m, t);
                      if (!b.is_ok()) return fail(b.status().with_context("fp32 baseline of " + o->model));
                      fp32 = std::move(b->graph);
                    }
                    auto r = quantize_zoo_model(*m, fp32, qo);
                    if (!r.is_ok()) return fail(r.status().with_context("quantize " + o->model));
                    if (!is_lead_rank(qo.dist.get())) return 0;  // rank 0 reports and writes
                    std::cout << fmt::format("| model | chip | fp32 | PTQ (sim) | {} fake-quant | {} (sim) |\n"
                                             "|---|---|---|---|---|---|\n"
                                             "| {} | {} | {:.2f} | {:.2f} | {:.2f} | {:.2f} |\n",
                                             r->did_qat ? "QAT" : "PTQ", r->did_qat ? "QAT" : "PTQ", r->model,
                                             r->chip, r->fp32.top1, r->ptq_sim.top1, r->qat_fake_quant.top1,
                                             r->qat_sim.top1);
                    if (!r->float_nodes.empty()) {
                      std::cout << "hybrid: runs in float on the chip: " << fmt::format("{}", fmt::join(r->float_nodes, ", "))
                                << "\n";
                    }
                    if (!r->int16_values.empty()) {
                      std::cout << "16-bit activations: " << fmt::format("{}", fmt::join(r->int16_values, ", ")) << "\n";
                    }
                    if (qo.compare) {
                      std::cout << fmt::format("deploy-aligned vs simulator: {} of {} integer activations differ; "
                                               "top-1 agreement {:.4f}\n",
                                               r->aligned_mismatched, r->aligned_elements,
                                               r->class_agreement_aligned);
                      std::cout << "fake quant vs simulator, per activation (mismatched/elements, max LSB):\n";
                      for (const auto& l : r->fake_quant) {
                        std::cout << fmt::format("  {:<28} {:>9}/{:<10} {:.3f}%  max {} LSB\n", l.value, l.mismatched,
                                                 l.elements, 100.0 * l.mismatched / std::max<int64_t>(1, l.elements),
                                                 l.max_lsb);
                      }
                    }
                    for (const auto& f : r->files) std::cout << "wrote " << f << "\n";
                    return 0;
                  }});
}

}  // namespace qeval
