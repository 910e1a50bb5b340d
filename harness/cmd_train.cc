// qeval train / qeval zoo: the fp32 stage (LibTorch builds only).
//   qeval train MODEL [--epochs N] [--lr X] [--batch N] [--seed S] [--train-limit N]
//               [--eval-limit N] [--out FILE.qmodel] [--checkpoint-dir DIR] [--resume]
//               [--cache use|refresh|bypass] [--threads N]
//   qeval zoo list
//   qeval zoo build MODEL --out FILE.qmodel [--seed S]
//   qeval zoo eval MODEL --weights FILE.qmodel [--eval-limit N]
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
    std::string model, out, ckpt_dir, cache = "use", weights;
    int epochs = 0, threads = 2;
    double lr = 0;
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
                    topts.eval_limit = o->eval_limit;
                    topts.checkpoint_dir = o->ckpt_dir;
                    topts.resume = o->resume;
                    const CachePolicy policy = o->cache == "refresh"  ? CachePolicy::kRefresh
                                               : o->cache == "bypass" ? CachePolicy::kBypass
                                                                      : CachePolicy::kUse;
                    auto b = fp32_baseline(*m, topts, policy);
                    if (!b.is_ok()) return fail(b.status().with_context("train " + o->model));
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
