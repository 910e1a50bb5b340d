#include "models/train_loop.h"

#include <malloc.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <numeric>

#include <fmt/ranges.h>

#include "core/file_io.h"

namespace qeval {

namespace fs = std::filesystem;

namespace {
double cos_anneal(double a, double b, double p) { return b + (a - b) / 2 * (1 + std::cos(M_PI * p)); }
}  // namespace

double scheduled_momentum(const TrainRecipe& r, int64_t t, int64_t total) {
  if (r.schedule != "onecycle" || !r.cycle_momentum || r.optimizer != "sgd") return r.momentum;
  const double warm = std::max(1.0, r.warmup * total);
  if (t < warm) return cos_anneal(r.max_momentum, r.min_momentum, t / warm);
  return cos_anneal(r.min_momentum, r.max_momentum, (t - warm) / std::max(1.0, total - warm));
}

double scheduled_lr(const TrainRecipe& r, int64_t t, int64_t total) {
  if (r.schedule == "constant") return r.peak_lr;
  if (r.schedule == "cosine") return cos_anneal(r.peak_lr, 0, static_cast<double>(t) / std::max<int64_t>(1, total));
  const double start = r.peak_lr / 25, end = start / 1e4;
  const double warm = std::max(1.0, r.warmup * total);
  if (t < warm) return cos_anneal(start, r.peak_lr, t / warm);
  return cos_anneal(r.peak_lr, end, (t - warm) / std::max(1.0, total - warm));
}

namespace {

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const std::vector<torch::Tensor>& params,
                                                        const TrainRecipe& r) {
  if (r.optimizer == "adam") {
    return std::make_unique<torch::optim::Adam>(
        params, torch::optim::AdamOptions(r.peak_lr).weight_decay(r.weight_decay));
  }
  return std::make_unique<torch::optim::SGD>(
      params, torch::optim::SGDOptions(r.peak_lr).momentum(r.momentum).nesterov(r.nesterov).weight_decay(r.weight_decay));
}

void set_lr(torch::optim::Optimizer& opt, double lr, double momentum, bool sgd) {
  for (auto& g : opt.param_groups()) {
    g.options().set_lr(lr);
    if (sgd) static_cast<torch::optim::SGDOptions&>(g.options()).momentum(momentum);
  }
}

std::string ckpt_path(const std::string& dir, const std::string& model, int epoch, const char* ext) {
  return (fs::path(dir) / fmt::format("{}.epoch{:03d}{}", model, epoch, ext)).string();
}

}  // namespace

Result<std::shared_ptr<const Distributed>> distributed_from_env() {
  QEVAL_ASSIGN_OR_RETURN(DistOptions o, dist_options_from_env());
  if (o.world_size <= 1) return std::shared_ptr<const Distributed>();
  QEVAL_ASSIGN_OR_RETURN(std::shared_ptr<Distributed> d, Distributed::create(o));
  return std::shared_ptr<const Distributed>(std::move(d));
}

bool is_lead_rank(const Distributed* dist) { return !dist || dist->rank() == 0; }

Status check_device(const std::string& device) { return parse_device(device).status(); }

Result<LoopResult> run_train_loop(GraphModule& module, const ZooModel& model, int64_t num_samples,
                                  const BatchLossFn& loss_fn, const TrainOptions& opts) {
  // Each step allocates and frees the same multi-MB activations. With glibc's
  // defaults they are mmap()ed and returned every time, and page faults take
  // half the time (measured: mobilenetv2_tiny 168 -> 311 img/s on 2 cores).
  // Keep them on the heap instead.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  const TrainRecipe& r = model.recipe;
  if (r.optimizer != "sgd" && r.optimizer != "adam") {
    return invalid_argument("{}: optimizer '{}' (use sgd or adam)", model.name, r.optimizer);
  }
  if (r.schedule != "onecycle" && r.schedule != "cosine" && r.schedule != "constant") {
    return invalid_argument("{}: schedule '{}' (use onecycle, cosine or constant)", model.name, r.schedule);
  }
  if (r.batch <= 0 || r.epochs <= 0) return invalid_argument("{}: batch and epochs must be > 0", model.name);
  const Distributed* dist = opts.dist && opts.dist->active() ? opts.dist.get() : nullptr;
  const bool lead = !dist || dist->rank() == 0;  // prints and checkpoints
  if (dist) {
    // Every rank starts from rank 0's state: weights, running statistics and,
    // for QAT, the calibrated scales and stage (all in the checkpoint graph).
    module.set_distributed(opts.dist);
    QEVAL_ASSIGN_OR_RETURN(Graph g0, module.to_graph());
    QEVAL_ASSIGN_OR_RETURN(std::string bytes, graph_to_bytes(g0));
    QEVAL_ASSIGN_OR_RETURN(bytes, dist->broadcast_bytes(bytes));
    if (dist->rank() != 0) {
      QEVAL_ASSIGN_OR_RETURN(Graph g, graph_from_bytes(bytes, "rank 0's model"));
      QEVAL_RETURN_IF_ERROR(module.load_weights(g).with_context("data-parallel start"));
    }
  }
  auto opt = make_optimizer(module.parameters(), r);
  const int64_t steps_per_epoch = (num_samples + r.batch - 1) / r.batch;
  const int64_t total_steps = steps_per_epoch * r.epochs;
  LoopResult out;

  // Resume: the newest complete checkpoint (weights + optimizer state).
  if (opts.resume && !opts.checkpoint_dir.empty()) {
    for (int e = r.epochs; e >= 1; --e) {
      const std::string gp = ckpt_path(opts.checkpoint_dir, model.name, e, ".qmodel");
      const std::string op = ckpt_path(opts.checkpoint_dir, model.name, e, ".optim.pt");
      if (!fs::exists(gp) || !fs::exists(op)) continue;
      auto g = load_graph(gp);
      if (!g.is_ok()) return g.status().with_context("resume");
      QEVAL_RETURN_IF_ERROR(module.load_weights(*g).with_context(gp));
      try {
        torch::load(*opt, op);
      } catch (const std::exception& ex) {
        return data_loss("{}: cannot read optimizer state: {}", op, ex.what());
      }
      out.first_epoch = e;
      // The checkpoint carries the losses of all epochs so far ("l1,l2,...").
      auto it = g->metadata.find("train_losses");
      if (it == g->metadata.end()) return data_loss("{}: checkpoint lacks metadata 'train_losses'", gp);
      for (size_t pos = 0; pos < it->second.size();) {
        const size_t comma = std::min(it->second.find(',', pos), it->second.size());
        out.epoch_loss.push_back(std::stod(it->second.substr(pos, comma - pos)));
        pos = comma + 1;
      }
      if (opts.progress && lead) {
        std::cerr << fmt::format("[train {}] resumed after epoch {} from {}\n", model.name, e, gp);
      }
      break;
    }
  }

  const bool tty = isatty(2);
  const auto t_start = std::chrono::steady_clock::now();
  int64_t images_done = 0;
  module.train(true);
  for (int epoch = out.first_epoch; epoch < r.epochs; ++epoch) {
    // Permutation of epoch e from (seed, e): Fisher–Yates with SplitMix64.
    std::vector<int64_t> perm(num_samples);
    std::iota(perm.begin(), perm.end(), 0);
    SplitMix64 rng(r.seed * 1000003ull + static_cast<uint64_t>(epoch) * 7919ull + 17);
    for (int64_t i = num_samples - 1; i > 0; --i) {
      std::swap(perm[i], perm[rng.next() % static_cast<uint64_t>(i + 1)]);
    }
    double loss_sum = 0;
    int64_t loss_n = 0;
    auto last_print = std::chrono::steady_clock::now();
    for (int64_t s = 0; s < steps_per_epoch; ++s) {
      const int64_t b0 = s * r.batch, b1 = std::min(num_samples, b0 + r.batch);
      // Data parallel: rank k takes the k-th of world-size near-equal slices and
      // scales its mean loss by its share, so the summed gradients are the
      // global batch's. A batch smaller than the world (an epoch's tail) is
      // skipped by every rank alike.
      int64_t first = 0, count = b1 - b0;
      if (dist) {
        const int64_t w = dist->world_size(), k = dist->rank();
        if (count < w) continue;
        first = k * (count / w) + std::min(k, count % w);
        count = count / w + (k < count % w ? 1 : 0);
      }
      std::vector<int64_t> idx(perm.begin() + b0 + first, perm.begin() + b0 + first + count);
      const int64_t step = epoch * steps_per_epoch + s;
      set_lr(*opt, scheduled_lr(r, step, total_steps), scheduled_momentum(r, step, total_steps),
             r.optimizer == "sgd");
      torch::Tensor loss;
      try {
        opt->zero_grad();
        loss = loss_fn(idx, rng.state() ^ (static_cast<uint64_t>(s) * 0x9E3779B97F4A7C15ull), first);
        if (dist) loss = loss * (static_cast<double>(count) / static_cast<double>(b1 - b0));
        loss.backward();
        if (dist) {
          dist->all_reduce_gradients(module.parameters());
          loss = loss.detach().clone();
          dist->all_reduce_sum(loss);  // the global batch's mean loss
        }
        if (r.grad_clip > 0) torch::nn::utils::clip_grad_norm_(module.parameters(), r.grad_clip);
        opt->step();
      } catch (const std::exception& ex) {
        return internal_error("{}: training step failed: {}", model.name, first_line(ex.what()));
      }
      const double lv = loss.item<double>();
      if (!std::isfinite(lv)) {
        return internal_error("{}: loss is {} at epoch {} step {} (lr {:.3g}); lower the learning rate",
                              model.name, lv, epoch + 1, s, scheduled_lr(r, epoch * steps_per_epoch + s, total_steps));
      }
      loss_sum += lv * static_cast<double>(b1 - b0);
      loss_n += b1 - b0;
      images_done += b1 - b0;
      const auto now = std::chrono::steady_clock::now();
      const double since = std::chrono::duration<double>(now - last_print).count();
      if (lead && opts.progress && (s + 1 == steps_per_epoch || since > (tty ? 0.5 : 30.0))) {
        last_print = now;
        const double el = std::chrono::duration<double>(now - t_start).count();
        const double ips = images_done / std::max(1e-9, el);
        const int64_t left = (r.epochs - epoch - 1) * num_samples + (num_samples - b1);
        std::cerr << fmt::format("{}[train {}] epoch {}/{} step {}/{} loss {:.4f} lr {:.4f} {:.0f} img/s ETA {}{}",
                                 tty ? "\r" : "", model.name, epoch + 1, r.epochs, s + 1, steps_per_epoch,
                                 loss_sum / loss_n, scheduled_lr(r, epoch * steps_per_epoch + s, total_steps), ips,
                                 format_duration(left / std::max(1.0, ips)), tty ? "\033[K" : "\n");
      }
    }
    if (lead && opts.progress && tty) std::cerr << "\n";
    out.epoch_loss.push_back(loss_sum / std::max<int64_t>(1, loss_n));
    if (lead && !opts.checkpoint_dir.empty()) {
      std::error_code ec;
      fs::create_directories(opts.checkpoint_dir, ec);
      if (ec) return io_error("{}: cannot create checkpoint folder: {}", opts.checkpoint_dir, ec.message());
      QEVAL_ASSIGN_OR_RETURN(Graph g, module.to_graph());
      g.metadata["epoch"] = std::to_string(epoch + 1);
      g.metadata["train_losses"] = fmt::format("{:.17g}", fmt::join(out.epoch_loss, ","));
      // Optimizer first, graph last: a graph file marks a complete checkpoint.
      const std::string op = ckpt_path(opts.checkpoint_dir, model.name, epoch + 1, ".optim.pt");
      try {
        torch::save(*opt, op + ".tmp");
      } catch (const std::exception& ex) {
        return io_error("{}: cannot write optimizer state: {}", op, ex.what());
      }
      fs::rename(op + ".tmp", op, ec);
      if (ec) return io_error("{}: {}", op, ec.message());
      QEVAL_RETURN_IF_ERROR(save_graph(g, ckpt_path(opts.checkpoint_dir, model.name, epoch + 1, ".qmodel")));
    }
  }
  module.train(false);
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  out.images_per_second = images_done / std::max(1e-9, out.seconds);
  return out;
}

}  // namespace qeval
