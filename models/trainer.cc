// Classifier trainer and evaluator (Fashion-MNIST), and the dispatch to the
// detector's (train_detect.cc).
#include "models/trainer.h"

#include <chrono>

#include "datasets/idx.h"
#include "models/train_loop.h"

namespace qeval {

void random_hflip(torch::Tensor& xb, uint64_t rng, int64_t first) {
  SplitMix64 flips(rng);
  for (int64_t k = 0; k < first; ++k) flips.next();
  std::vector<int64_t> flip;
  for (int64_t k = 0; k < xb.size(0); ++k) {
    if (flips.next() & 1) flip.push_back(k);
  }
  if (!flip.empty()) {
    torch::Tensor fi = torch::tensor(flip, torch::kInt64);
    xb.index_copy_(0, fi, xb.index_select(0, fi).flip({3}));
  }
}

Result<TrainResult> train_detector(const ZooModel& model, const TrainOptions& opts);
Result<EvalResult> evaluate_detector(const ZooModel& model, const Graph& g, const TrainOptions& opts);

// ZOO.md input: x/255, (x − mean)/std, then zero-padded by model.pad on each side.
torch::Tensor classifier_inputs(const ImageSet& s, const ZooModel& m, int64_t limit) {
  const int64_t n = limit > 0 ? std::min(limit, s.n) : s.n;
  torch::Tensor raw = torch::from_blob(const_cast<uint8_t*>(s.pixels.data()), {n, 1, s.h, s.w}, torch::kUInt8);
  torch::Tensor x = (raw.to(torch::kFloat32) / 255.0f - m.mean) / m.std;
  if (m.pad > 0) x = torch::constant_pad_nd(x, {m.pad, m.pad, m.pad, m.pad}, 0.0);
  return x.contiguous();
}

torch::Tensor labels_of(const ImageSet& s, int64_t limit) {
  const int64_t n = limit > 0 ? std::min(limit, s.n) : s.n;
  return torch::from_blob(const_cast<int64_t*>(s.labels.data()), {n}, torch::kInt64).clone();
}

Result<EvalResult> evaluate_classifier(const ZooModel& model, GraphModule& module, const TrainOptions& opts) {
  QEVAL_ASSIGN_OR_RETURN(ImageSet test, load_fashion_mnist("test", opts.data_root));
  const auto t0 = std::chrono::steady_clock::now();
  torch::Tensor x = classifier_inputs(test, model, opts.eval_limit);
  torch::Tensor y = labels_of(test, opts.eval_limit);
  torch::NoGradGuard ng;
  module.train(false);
  int64_t c1 = 0, c5 = 0;
  for (int64_t b = 0; b < x.size(0); b += 500) {
    const int64_t e = std::min<int64_t>(x.size(0), b + 500);
    QEVAL_ASSIGN_OR_RETURN(auto out, module.forward({x.slice(0, b, e)}));
    torch::Tensor top = std::get<1>(out[0].topk(5, 1));
    torch::Tensor yy = y.slice(0, b, e).unsqueeze(1);
    c1 += top.slice(1, 0, 1).eq(yy).sum().item<int64_t>();
    c5 += top.eq(yy).sum().item<int64_t>();
  }
  EvalResult r;
  r.metric = "top1";
  r.samples = x.size(0);
  r.top1 = 100.0 * c1 / r.samples;
  r.top5 = 100.0 * c5 / r.samples;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}


TrainResult make_train_result(Graph g, const ZooModel& m, const EvalResult& ev, const LoopResult& loop) {
  const TrainRecipe& r = m.recipe;
  g.metadata["recipe"] = fmt::format("{} lr={} momentum={} (cycled {} {}..{}) nesterov={} wd={} batch={} epochs={} schedule={} "
                                     "warmup={} hflip={} seed={} train_limit={}",
                                     r.optimizer, r.peak_lr, r.momentum, r.cycle_momentum, r.min_momentum,
                                     r.max_momentum, r.nesterov, r.weight_decay, r.batch,
                                     r.epochs, r.schedule, r.warmup, r.hflip, r.seed, r.train_limit);
  g.metadata["dataset"] = m.dataset;
  g.metadata["fp32_" + ev.metric] = fmt::format("{:.17g}", ev.primary());
  g.metadata["fp32_eval_samples"] = std::to_string(ev.samples);
  TrainResult res;
  res.graph = std::move(g);
  res.eval = ev;
  res.epoch_loss = loop.epoch_loss;
  res.train_seconds = loop.seconds;
  res.images_per_second = loop.images_per_second;
  res.first_epoch = loop.first_epoch;
  return res;
}

Result<TrainResult> train_zoo_model(const ZooModel& model, const TrainOptions& opts) {
  at::set_num_threads(std::max(1, opts.threads));
  if (model.task == "detect") return train_detector(model, opts);
  QEVAL_ASSIGN_OR_RETURN(ImageSet train, load_fashion_mnist("train", opts.data_root));
  torch::Tensor x = classifier_inputs(train, model, model.recipe.train_limit);
  torch::Tensor y = labels_of(train, model.recipe.train_limit);
  QEVAL_ASSIGN_OR_RETURN(Graph g0, build_zoo_graph(model.name, model.recipe.seed));
  QEVAL_ASSIGN_OR_RETURN(auto module, GraphModule::create(g0, /*channels_last=*/true));
  QEVAL_ASSIGN_OR_RETURN(torch::Device device, parse_device(opts.device));
  QEVAL_RETURN_IF_ERROR(module->to_device(device));
  const bool hflip = model.recipe.hflip;
  BatchLossFn loss_fn = [&](const std::vector<int64_t>& idx, uint64_t rng, int64_t first) {
    torch::Tensor ii = torch::from_blob(const_cast<int64_t*>(idx.data()), {static_cast<int64_t>(idx.size())},
                                        torch::kInt64);
    torch::Tensor xb = x.index_select(0, ii);
    if (hflip) random_hflip(xb, rng, first);
    auto out = module->forward({GraphModule::to_channels_last(xb)});
    if (!out.is_ok()) throw std::runtime_error(out.status().message());
    return torch::nn::functional::cross_entropy((*out)[0], y.index_select(0, ii).to((*out)[0].device()));
  };
  QEVAL_ASSIGN_OR_RETURN(LoopResult lr, run_train_loop(*module, model, x.size(0), loss_fn, opts));
  QEVAL_ASSIGN_OR_RETURN(EvalResult ev, evaluate_classifier(model, *module, opts));
  QEVAL_ASSIGN_OR_RETURN(Graph trained, module->to_graph());
  return make_train_result(std::move(trained), model, ev, lr);
}

Result<EvalResult> evaluate_zoo_model(const ZooModel& model, const Graph& g, const TrainOptions& opts) {
  at::set_num_threads(std::max(1, opts.threads));
  if (model.task == "detect") return evaluate_detector(model, g, opts);
  QEVAL_ASSIGN_OR_RETURN(auto module, GraphModule::create(g));
  return evaluate_classifier(model, *module, opts);
}

}  // namespace qeval
