// qeval train / qeval zoo: the fp32 stage (LibTorch builds only).
//   qeval train MODEL [--epochs N] [--lr X] [--batch N] [--seed S] [--train-limit N]
//               [--eval-limit N] [--out FILE.qmodel] [--checkpoint-dir DIR] [--resume]
//               [--cache use|refresh|bypass] [--threads N]
//   qeval zoo list
//   qeval zoo build MODEL --out FILE.qmodel [--seed S]
//   qeval zoo eval MODEL --weights FILE.qmodel [--eval-limit N]
//   qeval zoo diff A.qmodel B.qmodel [--tol X]
// Data parallel (train, quantize): torchrun's RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "harness/commands.h"
#include "models/cache.h"
#include "models/zoo.h"

namespace qeval {

namespace {

std::string score_line(const EvalResult& e) {
  if (e.metric == "mAP") {
    return fmt::format("mAP@[.50:.95] {:.4f}, mAP@.50 {:.4f} ({} scenes)", e.coco[0], e.coco[1], e.samples);
  }
  return fmt::format("top-1 {:.2f}%, top-5 {:.2f}% ({} test images)", e.top1, e.top5, e.samples);
}

}  // namespace

void add_train_commands(CLI::App& app, CommandList& cmds) {
  struct Opts {
    std::string model, out, ckpt_dir, cache = "use", weights, diff_a, diff_b;
    int epochs = 0, threads = 2;
    std::string device = "cpu";
    double lr = 0, tol = 0;
    int64_t batch = 0, train_limit = -1, eval_limit = 0;
    uint64_t seed = 0;
    bool seed_set = false, resume = false;
  };
  auto o = std::make_shared<Opts>();
  auto* train = app.add_subcommand("train", "Train a zoo model's fp32 baseline (cached under $QEVAL_CACHE "
                                            "or ~/.cache/qeval)");
  train->add_option("model", o->model, "zoo model (qeval zoo list)")->required();
  train->add_option("--epochs", o->epochs, "epochs (default: the model's recipe)")->check(CLI::Range(1, 1000));
  train->add_option("--lr", o->lr, "peak learning rate (default: recipe)")->check(CLI::PositiveNumber);
  train->add_option("--batch", o->batch, "batch size (default: recipe)")->check(CLI::Range(1, 65536));
  auto* seed_opt = train->add_option("--seed", o->seed, "seed for weights, shuffling and augmentation");
  train->add_option("--train-limit", o->train_limit, "train on the first N samples (0 = all)")
      ->check(CLI::NonNegativeNumber);
  train->add_option("--eval-limit", o->eval_limit, "score on the first N test samples (0 = all)")
      ->check(CLI::NonNegativeNumber);
  train->add_option("--out", o->out, "also write the trained graph here (.qmodel)");
  train->add_option("--checkpoint-dir", o->ckpt_dir, "per-epoch checkpoints (default: beside the cache entry)");
  train->add_flag("--resume", o->resume, "continue from the newest checkpoint in --checkpoint-dir");
  train->add_option("--cache", o->cache, "use (default), refresh (retrain, overwrite) or bypass")
      ->check(CLI::IsMember({"use", "refresh", "bypass"}));
  train->add_option("--threads", o->threads, "LibTorch threads")->check(CLI::Range(1, 256));
  train->add_option("--device", o->device, "LibTorch device: cpu (default), cuda, cuda:N (docs/cuda.md)");
  cmds.push_back({train, [o, seed_opt] {
                    auto m = zoo_model(o->model);
                    if (!m.is_ok()) return fail(m.status());
                    if (o->epochs) m->recipe.epochs = o->epochs;
                    if (o->lr > 0) m->recipe.peak_lr = o->lr;
                    if (o->batch) m->recipe.batch = o->batch;
                    if (seed_opt->count()) m->recipe.seed = o->seed;
                    if (o->train_limit >= 0) m->recipe.train_limit = o->train_limit;
                    TrainOptions topts;
                    topts.threads = o->threads;
                    topts.device = o->device;
                    if (Status s = check_device(o->device); !s.is_ok()) return fail(s);
                    topts.eval_limit = o->eval_limit;
                    topts.checkpoint_dir = o->ckpt_dir;
                    topts.resume = o->resume;
                    auto dist = distributed_from_env();  // torchrun's RANK/WORLD_SIZE: data-parallel training
                    if (!dist.is_ok()) return fail(dist.status());
                    topts.dist = *dist;
                    const bool lead = is_lead_rank(topts.dist.get());
                    if (topts.dist && o->cache != "bypass") {
                      return fail(invalid_argument(
                          "train {}: data-parallel training (WORLD_SIZE={}) does not use the cache; give --cache "
                          "bypass and --out FILE",
                          o->model, std::getenv("WORLD_SIZE")));
                    }
                    const CachePolicy policy = o->cache == "refresh"  ? CachePolicy::kRefresh
                                               : o->cache == "bypass" ? CachePolicy::kBypass
                                                                      : CachePolicy::kUse;
                    auto b = fp32_baseline(*m, topts, policy);
                    if (!b.is_ok()) return fail(b.status().with_context("train " + o->model));
                    if (!lead) return 0;  // rank 0 reports and writes
                    if (b->cache_hit) {
                      std::cout << fmt::format("{}: cache hit {} (fp32 {})\n", o->model, b->path,
                                               score_line(b->eval));
                    } else {
                      const std::string resumed =
                                          b->train.first_epoch > 0
                                              ? fmt::format(" (resumed after epoch {})", b->train.first_epoch)
                                              : "";
                      std::cout << fmt::format("{}: {} after {} epochs in {}{} ({:.0f} img/s){}\n", o->model,
                                               score_line(b->eval), m->recipe.epochs,
                                               format_duration(b->train.train_seconds), resumed,
                                               b->train.images_per_second,
                                               policy == CachePolicy::kBypass ? "" : "; cached at " + b->path);
                    }
                    if (!o->out.empty()) {
                      Status s = save_graph(b->graph, o->out);
                      if (!s.is_ok()) return fail(s);
                      std::cout << "wrote " << o->out << "\n";
                    }
                    return 0;
                  }});

  auto* zoo = app.add_subcommand("zoo", "The model zoo: list, build untrained graphs, score weights");
  zoo->require_subcommand(1);
  auto* list = zoo->add_subcommand("list", "List the zoo models");
  cmds.push_back({list, [] {
                    for (const auto& n : zoo_names()) {
                      auto m = zoo_model(n);
                      std::cout << fmt::format("{:<18} {:<9} {:<16} {}\n", n, m->task, m->dataset, m->description);
                    }
                    return 0;
                  }});
  auto* build = zoo->add_subcommand("build", "Write a freshly initialised zoo graph");
  build->add_option("model", o->model, "zoo model")->required();
  build->add_option("--out", o->out, "output .qmodel")->required();
  build->add_option("--seed", o->seed, "weight initialisation seed");
  cmds.push_back({build, [o] {
                    auto g = build_zoo_graph(o->model, o->seed);
                    if (!g.is_ok()) return fail(g.status());
                    Status s = save_graph(*g, o->out);
                    if (!s.is_ok()) return fail(s);
                    std::cout << fmt::format("{}: {} nodes, {} constants -> {}\n", o->model, g->nodes.size(),
                                             g->constants.size(), o->out);
                    return 0;
                  }});
  auto* diff = zoo->add_subcommand(
      "diff", "Compare the constants of two graphs (weights, running statistics, QAT scales): largest difference "
              "relative to each tensor's largest magnitude; exit 1 above --tol");
  diff->add_option("a", o->diff_a, "first .qmodel")->required();
  diff->add_option("b", o->diff_b, "second .qmodel")->required();
  diff->add_option("--tol", o->tol, "largest relative difference allowed (default 0: bit-identical)")
      ->check(CLI::NonNegativeNumber);
  cmds.push_back({diff, [o] {
                    auto a = load_graph(o->diff_a);
                    if (!a.is_ok()) return fail(a.status());
                    auto b = load_graph(o->diff_b);
                    if (!b.is_ok()) return fail(b.status());
                    double worst = 0;
                    std::string worst_name;
                    int64_t elements = 0, differing = 0;
                    for (const auto& [name, ta] : a->constants) {
                      auto it = b->constants.find(name);
                      if (it == b->constants.end() || it->second.shape() != ta.shape()) {
                        return fail(invalid_argument("{} and {}: constant '{}' is missing or has another shape",
                                                     o->diff_a, o->diff_b, name));
                      }
                      double mag = 0, d = 0;
                      for (int64_t i = 0; i < ta.numel(); ++i) {
                        const double x = ta.get_double(i), y = it->second.get_double(i);
                        mag = std::max({mag, std::abs(x), std::abs(y)});
                        d = std::max(d, std::abs(x - y));
                        differing += x != y;
                      }
                      elements += ta.numel();
                      const double rel = mag > 0 ? d / mag : 0;
                      if (rel > worst || worst_name.empty()) {
                        worst = rel;
                        worst_name = name;
                      }
                    }
                    if (a->constants.size() != b->constants.size()) {
                      return fail(invalid_argument("{} has {} constants, {} has {}", o->diff_a, a->constants.size(),
                                                   o->diff_b, b->constants.size()));
                    }
                    std::cout << fmt::format("{} constants, {} elements, {} differ; largest relative difference "
                                             "{:.3g} ({})\n",
                                             a->constants.size(), elements, differing, worst, worst_name);
                    return worst <= o->tol ? 0 : 1;
                  }});
  auto* eval = zoo->add_subcommand("eval", "Score a zoo model's float weights on its test data");
  eval->add_option("model", o->model, "zoo model")->required();
  eval->add_option("--weights", o->weights, ".qmodel with the trained float graph")->required();
  eval->add_option("--eval-limit", o->eval_limit, "first N test samples (0 = all)");
  eval->add_option("--threads", o->threads, "LibTorch threads")->check(CLI::Range(1, 256));
  cmds.push_back({eval, [o] {
                    auto m = zoo_model(o->model);
                    if (!m.is_ok()) return fail(m.status());
                    auto g = load_graph(o->weights);
                    if (!g.is_ok()) return fail(g.status());
                    TrainOptions topts;
                    topts.threads = o->threads;
                    topts.eval_limit = o->eval_limit;
                    auto e = evaluate_zoo_model(*m, *g, topts);
                    if (!e.is_ok()) return fail(e.status().with_context(o->weights));
                    std::cout << fmt::format("{}: {}\n", o->model, score_line(*e));
                    return 0;
                  }});
}

}  // namespace qeval
