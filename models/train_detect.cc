// det_tiny: trained on synthetic scenes composited from Fashion-MNIST training
// images, scored (COCO bbox mAP) on kDetTestCount held-out scenes composited
// from the test images. Loss: CenterNet's penalty-reduced focal loss on the
// class heatmaps + L1 on offset and log-size at object centres.
#include <chrono>

#include "datasets/coco_json.h"
#include "datasets/detection_synth.h"
#include "datasets/idx.h"
#include "harness/metrics/coco_eval.h"
#include "models/detect.h"
#include "models/train_loop.h"

namespace qeval {

Result<DetSceneSet> make_det_scenes(const ImageSet& source, uint64_t seed, int64_t count, const ZooModel& m) {
  DetectionSynthConfig cfg;
  cfg.size = kDetInputSize;
  cfg.seed = seed;
  DetSceneSet s;
  s.images = torch::empty({count, 1, kDetInputSize, kDetInputSize}, torch::kFloat32);
  float* dst = s.images.data_ptr<float>();
  s.boxes.resize(count);
  for (int64_t i = 0; i < count; ++i) {
    QEVAL_ASSIGN_OR_RETURN(DetScene sc, make_detection_scene(source, cfg, i));
    if (sc.h != kDetInputSize || sc.w != kDetInputSize) {
      return internal_error("scene {} is {}x{}, expected {}", i, sc.h, sc.w, kDetInputSize);
    }
    for (int64_t p = 0; p < sc.h * sc.w; ++p) {
      dst[i * sc.h * sc.w + p] = (sc.pixels[p] / 255.0f - m.mean) / m.std;
    }
    for (const DetObject& o : sc.objects) {
      s.boxes[i].push_back({o.category_id - 1, o.x, o.y, o.w, o.h, 1.f});
    }
  }
  return s;
}

DetBatch det_batch(const DetSceneSet& s, const std::vector<int64_t>& idx, uint64_t rng, bool hflip,
                   int64_t first) {
  constexpr int64_t G = kDetGrid;
  const int64_t n = static_cast<int64_t>(idx.size());
  DetBatch b;
  b.images = torch::empty({n, 1, kDetInputSize, kDetInputSize});
  b.heat = torch::empty({n, kDetClasses, G, G});
  b.reg = torch::empty({n, 4, G, G});
  b.mask = torch::empty({n, G, G});
  SplitMix64 flips(rng);
  for (int64_t k = 0; hflip && k < first; ++k) flips.next();
  for (int64_t k = 0; k < n; ++k) {
    std::vector<DetBox> boxes = s.boxes[idx[k]];
    torch::Tensor img = s.images[idx[k]];
    if (hflip && (flips.next() & 1)) {
      img = img.flip({2});
      for (DetBox& box : boxes) box.x = kDetInputSize - box.x - box.w;
    }
    b.images[k].copy_(img);
    const DetTargets t = encode_det_targets(boxes);
    b.heat[k].copy_(torch::from_blob(const_cast<float*>(t.heat.data()), {kDetClasses, G, G}));
    b.reg[k].copy_(torch::from_blob(const_cast<float*>(t.reg.data()), {4, G, G}));
    b.mask[k].copy_(torch::from_blob(const_cast<float*>(t.reg_mask.data()), {G, G}));
  }
  return b;
}

// CenterNet focal loss (Zhou et al. 2019, eq. 1) with alpha = 2, beta = 4.
torch::Tensor det_loss(const torch::Tensor& head, const DetBatch& b) {
  // The targets live on the CPU; the head may be on a GPU (docs/cuda.md).
  const torch::Tensor heat = b.heat.to(head.device());
  const torch::Tensor reg = b.reg.to(head.device()), mask = b.mask.to(head.device());
  const torch::Tensor logits = head.slice(1, 0, kDetClasses);
  const torch::Tensor p = torch::sigmoid(logits).clamp(1e-4, 1 - 1e-4);
  const torch::Tensor pos = heat.eq(1.0f).to(torch::kFloat32);
  const torch::Tensor pos_loss = torch::log(p) * torch::pow(1 - p, 2) * pos;
  const torch::Tensor neg_loss = torch::log(1 - p) * torch::pow(p, 2) * torch::pow(1 - heat, 4) * (1 - pos);
  const torch::Tensor npos = pos.sum().clamp_min(1.0);
  const torch::Tensor focal = -(pos_loss.sum() + neg_loss.sum()) / npos;
  const torch::Tensor m = mask.unsqueeze(1);
  const torch::Tensor l1 = (torch::abs(head.slice(1, kDetClasses, kDetClasses + 4) - reg) * m).sum() / npos;
  return focal + l1;
}

Result<std::array<double, 12>> score_det_heads(const std::vector<std::vector<DetBox>>& truth,
                                               const torch::Tensor& heads) {
  const torch::Tensor h = heads.to(torch::kFloat32).contiguous();
  const int64_t count = h.size(0);
  if (static_cast<int64_t>(truth.size()) < count) {
    return internal_error("{} detector outputs for {} annotated scenes", count, truth.size());
  }
  CocoDataset gt;
  for (int64_t c = 0; c < kDetClasses; ++c) gt.categories.push_back({c + 1, fashion_mnist_class_names()[c]});
  std::vector<CocoDetection> dets;
  int64_t ann_id = 1;
  for (int64_t i = 0; i < count; ++i) {
    gt.images.push_back({i + 1, fmt::format("{:06d}.png", i), kDetInputSize, kDetInputSize});
    for (const DetBox& box : truth[i]) {
      gt.annotations.push_back({ann_id++, i + 1, box.category + 1, {box.x, box.y, box.w, box.h},
                                static_cast<double>(box.w) * box.h, false});
    }
    for (const DetBox& d : decode_det_head(h[i].data_ptr<float>())) {
      dets.push_back({i + 1, d.category + 1, {d.x, d.y, d.w, d.h}, d.score});
    }
  }
  QEVAL_ASSIGN_OR_RETURN(CocoEvalResult ev, evaluate_coco_bbox(gt, dets));
  std::array<double, 12> stats{};
  for (int k = 0; k < 12; ++k) stats[k] = ev.stats[k];
  return stats;
}

Result<EvalResult> evaluate_detector(const ZooModel& model, const Graph& g, const TrainOptions& opts) {
  QEVAL_ASSIGN_OR_RETURN(ImageSet test, load_fashion_mnist("test", opts.data_root));
  const int64_t count = opts.eval_limit > 0 ? std::min(opts.eval_limit, kDetTestCount) : kDetTestCount;
  const auto t0 = std::chrono::steady_clock::now();
  QEVAL_ASSIGN_OR_RETURN(DetSceneSet scenes, make_det_scenes(test, kDetTestSeed, count, model));
  QEVAL_ASSIGN_OR_RETURN(auto module, GraphModule::create(g));
  module->train(false);
  torch::NoGradGuard ng;
  std::vector<torch::Tensor> heads;
  for (int64_t b = 0; b < count; b += 100) {
    QEVAL_ASSIGN_OR_RETURN(auto out, module->forward({scenes.images.slice(0, b, std::min(count, b + 100))}));
    heads.push_back(out[0]);
  }
  EvalResult r;
  r.metric = "mAP";
  r.samples = count;
  QEVAL_ASSIGN_OR_RETURN(r.coco, score_det_heads(scenes.boxes, torch::cat(heads)));
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

Result<TrainResult> train_detector(const ZooModel& model, const TrainOptions& opts) {
  QEVAL_ASSIGN_OR_RETURN(ImageSet train, load_fashion_mnist("train", opts.data_root));
  const int64_t count = model.recipe.train_limit > 0 ? model.recipe.train_limit : kDetDefaultTrainScenes;
  QEVAL_ASSIGN_OR_RETURN(DetSceneSet scenes,
                         make_det_scenes(train, kDetTrainSeedBase + model.recipe.seed, count, model));
  QEVAL_ASSIGN_OR_RETURN(Graph g0, build_zoo_graph(model.name, model.recipe.seed));
  QEVAL_ASSIGN_OR_RETURN(auto module, GraphModule::create(g0, /*channels_last=*/true));
  QEVAL_ASSIGN_OR_RETURN(torch::Device device, parse_device(opts.device));
  QEVAL_RETURN_IF_ERROR(module->to_device(device));
  const bool hflip = model.recipe.hflip;
  BatchLossFn loss_fn = [&](const std::vector<int64_t>& idx, uint64_t rng, int64_t first) {
    DetBatch b = det_batch(scenes, idx, rng, hflip, first);
    auto out = module->forward({GraphModule::to_channels_last(b.images)});
    if (!out.is_ok()) throw std::runtime_error(out.status().message());
    return det_loss((*out)[0], b);
  };
  QEVAL_ASSIGN_OR_RETURN(LoopResult lr, run_train_loop(*module, model, count, loss_fn, opts));
  QEVAL_ASSIGN_OR_RETURN(Graph trained, module->to_graph());
  QEVAL_ASSIGN_OR_RETURN(EvalResult ev, evaluate_detector(model, trained, opts));
  return make_train_result(std::move(trained), model, ev, lr);
}

}  // namespace qeval
