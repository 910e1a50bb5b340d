#include "models/eval_job.h"

#include <unistd.h>
#include <xxhash.h>

#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>

#include "core/file_io.h"
#include "datasets/image_folder.h"
#include "datasets/preprocess.h"
#include "harness/cfg.h"
#include "harness/metrics/similarity.h"
#include "models/cache.h"
#include "models/quantize.h"
#include "models/torchscript_import.h"
#include "models/train_loop.h"
#include "quant/aligned.h"
#include "simulator/onnx_import.h"
#include "simulator/program.h"

namespace qeval {

namespace fs = std::filesystem;

namespace {

// Bump when quantization or lowering changes what a cached quantized model holds.
constexpr const char* kQuantCodeVersion = "qeval-quant-2";  // 2: hybrid folded convs named after their BN

// Prefixes a failed result's message with "CFG: FIELD" (errors name the file and the field).
template <typename T>
Result<T> in_field(Result<T> r, const std::string& cfg, const std::string& field) {
  if (r.is_ok() || r.status().message().find(cfg) != std::string::npos) return r;  // already names the cfg
  return r.status().with_context(fmt::format("{}: {}", cfg, field));
}

class Job {
 public:
  explicit Job(const JobSpec& s) : spec_(s), t0_(std::chrono::steady_clock::now()) {}
  Status run(JobResult& r);

 private:
  void stage(const std::string& what);
  Result<ZooModel> external_model();
  // The cfg field the calibration images come from: calibration_dataset, else dataset.
  const char* calibration_field() const {
    return cfg_.calibration_dataset.empty() ? "dataset" : "calibration_dataset";
  }
  Result<std::vector<std::string>> calibration_files(int64_t count);
  Result<uint64_t> calibration_key(const std::vector<std::string>& files);
  Result<Tensor> calibration_images(const std::vector<std::string>& files);
  Status load_fp32(JobResult& r);
  Status quantize(JobResult& r);
  Status load_eval_data();
  Status make_models();
  Status evaluate(JobResult& r);
  Status compare_layers(JobResult& r);
  Status check_aligned(const std::map<std::string, Tensor>& senv, JobResult& r);
  void gate(JobResult& r);

  JobSpec spec_;
  std::chrono::steady_clock::time_point t0_;
  ModelCfg cfg_;
  ZooModel zoo_;
  ChipProfile profile_;
  Graph fp32_, program_;
  // Built once from fp32_ / program_, used by evaluate() and compare_layers().
  std::unique_ptr<GraphModule> fp32_module_;
  std::optional<Executor> simulator_;
  std::string task_;
  // Evaluation data.
  torch::Tensor x_, labels_, compare_x_;
  std::vector<std::vector<DetBox>> boxes_;
  // Outputs of both models on x_.
  torch::Tensor out_fp32_, out_int8_;
  SimilarityTolerance sim_tol_;
  // A model from model_path without a zoo `model`: calibrated, fine-tuned
  // (distillation) and scored on the cfg's ImageFolder (docs/fullsize.md).
  bool external_ = false;
  std::string aligned_first_bad_;  // the first value where aligned and simulator differ
};

void Job::stage(const std::string& what) {
  const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  std::cerr << fmt::format("[{} {:.1f}s] {}", spec_.id, el, what) << std::endl;
  if (!spec_.stage_file.empty()) (void)write_file_atomic(spec_.stage_file, what);
}

// Fast test: the fp32 baselines train a short recipe (cached under its own key),
// so a cold `run_eval --fast_test` fits in minutes; nightly uses the full recipe.
ZooModel fast_recipe(ZooModel m) {
  if (m.task == "detect") {
    m.recipe.epochs = 4;
    m.recipe.train_limit = 3000;
  } else {
    m.recipe.epochs = 1;
  }
  return m;
}

// A model file without a zoo `model` (a torchvision export, the user's own
// network): its input shape comes from input_shapes or the file, its classes from
// its output, and its data from the cfg's ImageFolder.
Result<ZooModel> Job::external_model() {
  ZooModel m;
  m.name = cfg_.name;
  m.task = cfg_.task.empty() ? "classify" : cfg_.task;
  m.dataset = "image-folder";
  m.num_classes = std::numeric_limits<int>::max();  // from the output once loaded
  m.description = "external model " + cfg_.model_path;
  if (m.task == "detect") {
    return unsupported("{}: task: detect scores det_tiny's head layout (models/detect.h); score another "
                       "detector's raw outputs with task: raw", cfg_.path);
  }
  if (cfg_.dataset.empty()) {
    return invalid_argument("{}: dataset: not set; a model_path without a zoo `model` is calibrated, fine-tuned "
                            "and scored on an ImageFolder (dataset: DIR, or model: ZOO_NAME)", cfg_.path);
  }
  QEVAL_ASSIGN_OR_RETURN(PreprocessConfig p, parse_preprocess_config(cfg_.preprocess, cfg_.path));
  if (p.input_shape.size() == 4) m.input_shape = Shape(p.input_shape.begin(), p.input_shape.end());
  return m;
}

// The calibration / QAT image files: calibration_dataset (else dataset),
// `count` of them spread evenly over the folder's list (class by class, files
// by name), so that a slice covers every class; all of them when count <= 0
// or the folder has no more.
Result<std::vector<std::string>> Job::calibration_files(int64_t count) {
  const char* field = calibration_field();
  const std::string& root = cfg_.calibration_dataset.empty() ? cfg_.dataset : cfg_.calibration_dataset;
  if (root.empty()) return invalid_argument("{}: calibration_dataset: not set", cfg_.path);
  QEVAL_ASSIGN_OR_RETURN(ImageFolder folder, in_field(scan_image_folder(root), cfg_.path, field));
  const int64_t n = static_cast<int64_t>(folder.samples.size());
  const int64_t take = count > 0 ? std::min(count, n) : n;
  std::vector<std::string> paths;
  for (int64_t i = 0; i < take; ++i) paths.push_back(folder.samples[static_cast<size_t>(i * n / take)].path);
  stage(fmt::format("calibration images: {} of {} in {}", take, n, root));
  return paths;
}

// What the quantized model depends on in the calibration images: the bytes of
// every file, in order, and the preprocessing (decoding happens on a cache miss only).
Result<uint64_t> Job::calibration_key(const std::vector<std::string>& files) {
  std::string pre = fmt::format("shape={};", fmt::join(zoo_.input_shape, ","));
  for (const auto& [k, v] : cfg_.preprocess) pre += k + "=" + v + ";";
  Result<uint64_t> h = xxh64_files(files, pre, /*sizes=*/true);
  if (!h.is_ok()) return h.status().with_context(fmt::format("{}: calibration image", cfg_.path));
  return h;
}

// The calibration / QAT images themselves, through the cfg's preprocessing.
Result<Tensor> Job::calibration_images(const std::vector<std::string>& files) {
  QEVAL_ASSIGN_OR_RETURN(PreprocessConfig p, parse_preprocess_config(cfg_.preprocess, cfg_.path));
  if (p.input_shape.empty()) p.input_shape = zoo_.input_shape;
  stage(fmt::format("calibration images: decoding {}", files.size()));
  return in_field(load_and_preprocess(files, p), cfg_.path, calibration_field());
}

Status Job::load_fp32(JobResult& r) {
  stage("fp32 baseline");
  if (!cfg_.model_path.empty()) {
    const std::string ext = fs::path(cfg_.model_path).extension().string();
    if (ext == ".qmodel") {
      QEVAL_ASSIGN_OR_RETURN(fp32_, in_field(load_graph(cfg_.model_path), cfg_.path, "model_path"));
    } else if (ext == ".onnx") {
      QEVAL_ASSIGN_OR_RETURN(fp32_, in_field(import_onnx_file(cfg_.model_path), cfg_.path, "model_path"));
    } else if (ext == ".pt" || ext == ".pth") {
      QEVAL_ASSIGN_OR_RETURN(
          fp32_, in_field(import_torchscript_file(cfg_.model_path, zoo_.input_shape), cfg_.path, "model_path"));
    } else {
      return invalid_argument("{}: model_path: {}: unknown model format (use .qmodel, .onnx or .pt)", cfg_.path,
                              cfg_.model_path);
    }
    r.artifacts["fp32"] = cfg_.model_path;
    return Status::ok();
  }
  TrainOptions t;
  t.threads = spec_.torch_threads;
  t.device = spec_.device;
  t.progress = true;
  const ZooModel m = spec_.fast_test ? fast_recipe(zoo_) : zoo_;
  QEVAL_ASSIGN_OR_RETURN(Baseline b, fp32_baseline(m, t));
  fp32_ = std::move(b.graph);
  r.baseline_cache_hit = b.cache_hit;
  r.artifacts["fp32"] = b.path;
  return Status::ok();
}

std::string describe(const QuantConfig& q, const QatConfig& t) {
  std::string layer_bits;
  for (const auto& [k, v] : q.layer_bits) layer_bits += fmt::format("{}={},", k, v);
  // Added to the key only when set, so the cache entries made before quant.ranges existed stay valid.
  for (const auto& [k, v] : q.ranges) layer_bits += fmt::format("range:{}={:.17g}:{:.17g},", k, v.at(0), v.at(1));
  return fmt::format(
      "obs={}:{:.17g}:{:.17g}:{};wb={};ab={};pc={};p2={};float={};int16={};lb={};"
      "qat={}:{:.17g}:{}:{}:{}:{:.17g}:{}:{}:{:.17g}:{}:{:.17g}",
      q.observer.kind, q.observer.percentile, q.observer.ema_momentum, q.observer.sample_limit, q.weight_bits,
      q.activation_bits, q.per_channel, q.power_of_two, fmt::join(q.float_layers, ","),
      fmt::join(q.int16_layers, ","), layer_bits, t.epochs, t.lr, t.optimizer, t.schedule, t.batch,
      t.weight_decay, t.fake_quant, t.weight_fake_quant, t.freeze_bn_epoch, t.calib_images, t.grad_clip);
}

// An already quantized model: a .qmodel or QDQ .onnx file, or the first folder of
// a comma-separated list (tpu-mlir's --qat_model_path) that holds NAME.qmodel or
// NAME_qdq.onnx (NAME: the cfg's name or the zoo model's).
Result<std::string> find_quantized_model(const std::string& list, const std::vector<std::string>& names) {
  std::vector<std::string> tried;
  size_t start = 0;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    if (comma == std::string::npos) comma = list.size();
    const std::string p = list.substr(start, comma - start);
    start = comma + 1;
    if (p.empty()) continue;
    if (fs::is_regular_file(p)) return p;
    if (fs::is_directory(p)) {
      for (const auto& n : names) {
        for (const std::string& f : {n + ".qmodel", n + "_qdq.onnx"}) {
          const fs::path c = fs::path(p) / f;
          if (fs::is_regular_file(c)) return c.string();
          tried.push_back(c.string());
        }
      }
    } else {
      tried.push_back(p);
    }
  }
  return not_found("no quantized model found (tried {})", fmt::join(tried, ", "));
}

Status Job::quantize(JobResult& r) {
  if (spec_.mode == "qat_model") {
    stage("load quantized model");
    const std::string list = !spec_.qat_model_path.empty() ? spec_.qat_model_path : cfg_.qat_model_path;
    if (list.empty()) return invalid_argument("{}: qat_model_path is not set (cfg key or --qat_model_path)", cfg_.path);
    QEVAL_ASSIGN_OR_RETURN(std::string path,
                           in_field(find_quantized_model(list, {cfg_.name, zoo_.name}), cfg_.path, "qat_model_path"));
    Graph g;
    if (fs::path(path).extension() == ".onnx") {
      QEVAL_ASSIGN_OR_RETURN(g, in_field(import_onnx_file(path), cfg_.path, "qat_model_path"));
    } else {
      QEVAL_ASSIGN_OR_RETURN(g, in_field(load_graph(path), cfg_.path, "qat_model_path"));
    }
    auto prog = lower_batch_free(std::move(g), profile_);
    if (!prog.is_ok()) return prog.status().with_context(path);
    program_ = std::move(*prog);
    r.artifacts["qmodel"] = path;
    return Status::ok();
  }
  QuantizeOptions qo;
  qo.cfg.chip = profile_.name;
  qo.cfg.quant = cfg_.quant;
  qo.cfg.qat = cfg_.qat;
  qo.ptq_only = spec_.mode == "ptq";
  qo.threads = spec_.torch_threads;
  qo.device = spec_.device;
  qo.evaluate = false;
  qo.compare = false;
  if (spec_.fast_test) {
    // Short QAT: at most one epoch on a slice of the training data.
    qo.cfg.qat.epochs = std::min(qo.cfg.qat.epochs, 1);
    qo.cfg.qat.calib_images = std::min<int64_t>(qo.cfg.qat.calib_images, 256);
    qo.train_limit = task_ == "detect" ? 500 : 2048;
  }
  if (!qo.ptq_only && qo.cfg.qat.epochs < 1) qo.cfg.qat.epochs = 1;
  // Own calibration images: only the ones quantize reads (PTQ: the first
  // calib_images; QAT: the train_limit slice, or all), keyed by their files.
  std::string calib_key;
  std::vector<std::string> calib_files;
  if (external_ || !cfg_.calibration_dataset.empty()) {
    int64_t need = qo.ptq_only ? std::max<int64_t>(qo.cfg.qat.calib_images, 1) : 0;
    if (qo.train_limit > 0) need = need > 0 ? std::min(need, qo.train_limit) : qo.train_limit;
    QEVAL_ASSIGN_OR_RETURN(calib_files, calibration_files(need));
    QEVAL_ASSIGN_OR_RETURN(const uint64_t h, calibration_key(calib_files));
    calib_key = fmt::format(";calib={:016x}", h);
    qo.distill = true;
  }
  QEVAL_ASSIGN_OR_RETURN(std::string fp32_bytes, graph_to_bytes(fp32_));
  const std::string canon =
      fmt::format("{};fp32={:016x};chip={};mode={};{};train_limit={}{}{}", kQuantCodeVersion,
                  XXH64(fp32_bytes.data(), fp32_bytes.size(), 0), profile_.name, spec_.mode,
                  describe(qo.cfg.quant, qo.cfg.qat), qo.train_limit,
                  threads_key(qo.threads) + device_key(spec_.device), calib_key);
  const std::string key = fmt::format("{:016x}", XXH64(canon.data(), canon.size(), 0));
  const fs::path dir = fs::path(cache_root()) / "quant" / fmt::format("{}-{}-{}", zoo_.name, profile_.name, key);
  const fs::path qmodel = dir / (zoo_.name + ".qmodel");
  std::error_code ec;
  fs::create_directories(dir.parent_path(), ec);
  FileLock lock(dir.string() + ".lock");
  if (fs::is_regular_file(qmodel)) {
    auto g = load_graph(qmodel.string());
    if (g.is_ok()) {
      stage(fmt::format("quantize: cache hit {}", dir.string()));
      program_ = std::move(*g);
      r.quant_cache_hit = true;
    } else {
      std::cerr << fmt::format("[{}] quantized-model cache entry unusable ({}); rebuilding\n", spec_.id,
                               g.status().message());
      fs::remove_all(dir, ec);
    }
  }
  if (!r.quant_cache_hit) {
    if (!calib_files.empty()) {
      QEVAL_ASSIGN_OR_RETURN(Tensor ci, calibration_images(calib_files));
      qo.train_images = std::move(ci);
    }
    stage(qo.ptq_only ? "quantize: calibrate (PTQ)" : "quantize: calibrate + QAT");
    // Built in a scratch folder and renamed into place: a crash leaves no half entry.
    const fs::path tmp = dir.string() + fmt::format(".tmp{}", ::getpid());
    fs::remove_all(tmp, ec);
    qo.out_dir = tmp.string();
    QEVAL_ASSIGN_OR_RETURN(QuantizeResult q, in_field(quantize_zoo_model(zoo_, fp32_, qo), cfg_.path, "quantize"));
    fs::remove_all(tmp / "checkpoints", ec);
    fs::remove_all(dir, ec);
    fs::rename(tmp, dir, ec);
    if (ec) return io_error("{}: cannot move the quantized model into the cache: {}", dir.string(), ec.message());
    QEVAL_ASSIGN_OR_RETURN(program_, load_graph(qmodel.string()));
  }
  r.artifacts["qmodel"] = qmodel.string();
  for (const auto& [kind, suffix] : {std::pair<std::string, std::string>{"cali_table", "_cali_table"},
                                     {"qdq_onnx", "_qdq.onnx"}, {"ptq_qmodel", "_ptq.qmodel"}}) {
    const fs::path f = dir / (zoo_.name + suffix);
    if (fs::exists(f)) r.artifacts[kind] = f.string();
  }
  return Status::ok();
}

MetricResult metric(const std::string& name, double value, double baseline = kNaN) {
  MetricResult m;
  m.name = name;
  m.value = value;
  m.baseline = baseline;
  m.delta = value - baseline;
  return m;
}

// Evenly spread indices: k·total/n (an ImageFolder lists class by class).
std::vector<int64_t> spread(int64_t total, int64_t n) {
  std::vector<int64_t> idx;
  for (int64_t k = 0; k < n; ++k) idx.push_back(k * total / n);
  return idx;
}

Status Job::load_eval_data() {
  stage("load evaluation data");
  const int64_t n = spec_.count;
  std::optional<PreprocessConfig> pc;
  if (!cfg_.preprocess.empty() || !cfg_.dataset.empty() || !cfg_.test_input.empty()) {
    QEVAL_ASSIGN_OR_RETURN(PreprocessConfig p, parse_preprocess_config(cfg_.preprocess, cfg_.path));
    if (p.channel_format != "nchw") {
      return invalid_argument("{}: channel_format: qeval models take nchw input", cfg_.path);
    }
    if (p.input_shape.empty()) p.input_shape = zoo_.input_shape;
    pc = p;
  }
  if (!cfg_.dataset.empty()) {
    if (task_ != "classify" && !external_) {
      return unsupported("{}: dataset: a folder dataset is read for classifiers (ImageFolder); {} scores its "
                         "synthetic scenes (leave dataset unset)", cfg_.path, zoo_.name);
    }
    QEVAL_ASSIGN_OR_RETURN(ImageFolder folder, in_field(scan_image_folder(cfg_.dataset), cfg_.path, "dataset"));
    const int64_t total = static_cast<int64_t>(folder.samples.size());
    const int64_t count = n > 0 ? std::min(n, total) : total;
    std::vector<std::string> paths;
    std::vector<int64_t> labels;
    for (int64_t i : spread(total, count)) {
      paths.push_back(folder.samples[i].path);
      labels.push_back(folder.samples[i].label);
    }
    if (static_cast<int64_t>(folder.class_names.size()) > zoo_.num_classes) {
      return invalid_argument("{}: dataset: {} has {} classes, the model {}", cfg_.path, cfg_.dataset,
                              folder.class_names.size(), zoo_.num_classes);
    }
    QEVAL_ASSIGN_OR_RETURN(Tensor x, in_field(load_and_preprocess(paths, *pc), cfg_.path, "dataset"));
    x_ = to_torch(x).to(torch::kFloat32);
    labels_ = torch::tensor(labels, torch::kInt64);
  } else {
    QEVAL_ASSIGN_OR_RETURN(ImageSet test, load_fashion_mnist("test"));
    if (task_ == "detect") {
      const int64_t count = n > 0 ? std::min(n, kDetTestCount) : kDetTestCount;
      QEVAL_ASSIGN_OR_RETURN(DetSceneSet s, make_det_scenes(test, kDetTestSeed, count, zoo_));
      x_ = s.images;
      boxes_ = std::move(s.boxes);
    } else {
      x_ = classifier_inputs(test, zoo_, n);
      labels_ = labels_of(test, n);
    }
  }
  if (!cfg_.test_input.empty()) {
    QEVAL_ASSIGN_OR_RETURN(Tensor t, in_field(load_and_preprocess({cfg_.test_input}, *pc), cfg_.path, "test_input"));
    compare_x_ = to_torch(t).to(torch::kFloat32);
  } else {
    compare_x_ = x_.slice(0, 0, std::min<int64_t>(x_.size(0), std::max<int64_t>(1, spec_.compare_count)));
  }
  std::cerr << fmt::format("[{}] {} evaluation samples {}{}\n", spec_.id, x_.size(0),
                           cfg_.dataset.empty() ? "(zoo test set)" : "from " + cfg_.dataset,
                           cfg_.test_input.empty() ? "" : "; layer comparison on " + cfg_.test_input);
  return Status::ok();
}

// The simulator's dequantized value (integer values through their QuantParams).
torch::Tensor dequantized(const Graph& prog, const std::string& name, const Tensor& t) {
  torch::Tensor v = to_torch(t).to(torch::kFloat32);
  const ValueInfo* vi = prog.find_value(name);
  if (!vi || !vi->quant || t.dtype() == DType::kFloat32) return v;
  const QuantParams& q = *vi->quant;
  torch::Tensor s = torch::tensor(q.scale, torch::kFloat32);
  torch::Tensor z = torch::tensor(std::vector<float>(q.zero_point.begin(), q.zero_point.end()), torch::kFloat32);
  if (q.per_channel() && q.axis >= 0) {
    std::vector<int64_t> shape(v.dim(), 1);
    shape[q.axis] = -1;
    s = s.view(shape);
    z = z.view(shape);
  }
  return (v - z) * s;
}

Status Job::make_models() {
  if (!fp32_module_) {
    QEVAL_ASSIGN_OR_RETURN(fp32_module_, GraphModule::create(fp32_));
    fp32_module_->train(false);
  }
  if (!simulator_) {
    QEVAL_ASSIGN_OR_RETURN(Executor ex, Executor::create(program_, profile_));
    simulator_.emplace(std::move(ex));
  }
  return Status::ok();
}

Status Job::evaluate(JobResult& r) {
  const int64_t n = x_.size(0);
  const int64_t bs = spec_.batch_size > 0 ? spec_.batch_size : 100;
  stage(fmt::format("fp32 inference ({} samples)", n));
  QEVAL_RETURN_IF_ERROR(make_models());
  torch::NoGradGuard ng;
  std::vector<torch::Tensor> f, q;
  for (int64_t b = 0; b < n; b += bs) {
    QEVAL_ASSIGN_OR_RETURN(auto out, fp32_module_->forward({x_.slice(0, b, std::min(n, b + bs))}));
    f.push_back(out.at(0));
  }
  out_fp32_ = torch::cat(f);
  const std::string in = program_.inputs.at(0), out = program_.outputs.at(0);
  const auto ts = std::chrono::steady_clock::now();
  for (int64_t b = 0; b < n; b += bs) {
    stage(fmt::format("simulator {}/{}", b, n));
    QEVAL_ASSIGN_OR_RETURN(Tensor xt, from_torch(x_.slice(0, b, std::min(n, b + bs)).contiguous()));
    QEVAL_ASSIGN_OR_RETURN(auto env, simulator_->run({{in, xt}}));
    q.push_back(dequantized(program_, out, env.at(out)));
  }
  out_int8_ = torch::cat(q);
  std::cerr << fmt::format("[{}] simulator: {} samples in {:.1f}s\n", spec_.id, n,
                           std::chrono::duration<double>(std::chrono::steady_clock::now() - ts).count());
  r.samples = n;
  if (out_fp32_.sizes() != out_int8_.sizes()) {
    return internal_error("fp32 output {} and simulator output {} differ in shape",
                          fmt::join(out_fp32_.sizes().vec(), "x"), fmt::join(out_int8_.sizes().vec(), "x"));
  }
  stage("metrics");
  if (task_ == "detect") {
    QEVAL_ASSIGN_OR_RETURN(auto sf, score_det_heads(boxes_, out_fp32_));
    QEVAL_ASSIGN_OR_RETURN(auto sq, score_det_heads(boxes_, out_int8_));
    r.metrics.push_back(metric("mAP", sq[0], sf[0]));
    r.metrics.push_back(metric("mAP50", sq[1], sf[1]));
  } else if (task_ == "classify") {
    auto topk = [&](const torch::Tensor& logits, int k) {
      torch::Tensor top = std::get<1>(logits.topk(std::min<int64_t>(k, logits.size(1)), 1));
      return 100.0 * top.eq(labels_.unsqueeze(1)).sum().item<double>() / n;
    };
    for (int k : {1, 5}) {
      const double a = topk(out_int8_, k), b = topk(out_fp32_, k);
      r.metrics.push_back(metric(fmt::format("top{}", k), a, b));
    }
  }
  const torch::Tensor a = out_fp32_.contiguous(), b = out_int8_.contiguous();
  const Similarity s = similarity(a.data_ptr<float>(), b.data_ptr<float>(), a.numel());
  r.metrics.push_back(metric("output_cos", s.cos));
  r.metrics.push_back(metric("output_euclid", s.euclid));
  r.metrics.push_back(metric("output_sqnr", s.sqnr));
  return Status::ok();
}

// The fp32 activation against the simulator's quantizer of the same value
// (qeval diagnose's profile): range, the fraction clipped, how far the largest
// magnitude sits above the 99.9th percentile (outliers stretch the scale).
void profile_activation(const torch::Tensor& a, const ValueInfo* vi, DType sim_dtype, LayerResult& l) {
  if (a.numel() == 0) return;
  const torch::Tensor finite = a.isfinite();
  const bool all_finite = finite.all().item<bool>();
  const torch::Tensor f = all_finite ? a : a.masked_select(finite);
  if (f.numel() > 0) {
    l.lo = f.min().item<double>();
    l.hi = f.max().item<double>();
    torch::Tensor mag = f.abs().flatten();
    // The 99.9th percentile by k-th value (torch::quantile caps its input size).
    const int64_t k = std::clamp<int64_t>(static_cast<int64_t>(std::ceil(0.999 * mag.numel())), 1, mag.numel());
    const double p999 = std::get<0>(mag.kthvalue(k)).item<double>();
    const double mx = mag.max().item<double>();
    l.outlier = p999 > 0 ? mx / p999 : (mx > 0 ? std::numeric_limits<double>::infinity() : 1.0);
  }
  if (!all_finite) l.lo = l.hi = kNaN;  // a NaN/Inf activation: the profile says so
  if (!vi || !vi->quant || sim_dtype == DType::kFloat32) return;
  const QuantParams& q = *vi->quant;
  l.bits = static_cast<int>(dtype_size(q.dtype) * 8);
  l.scale = *std::max_element(q.scale.begin(), q.scale.end());
  l.zero_point = q.zero_point.empty() ? 0 : q.zero_point[0];
  if (!q.per_channel() && !q.scale.empty()) {
    const double s = q.scale[0], z = q.zero_point.empty() ? 0 : q.zero_point[0];
    // Values that round to qmin or qmax are representable: clipped means half an LSB beyond.
    const double lo = (static_cast<double>(q.qmin()) - z - 0.5) * s, hi = (static_cast<double>(q.qmax()) - z + 0.5) * s;
    const torch::Tensor d = a.to(torch::kFloat64);
    l.saturation = (d.lt(lo) | d.gt(hi)).sum().item<double>() / static_cast<double>(a.numel());
  }
}

// fp32 vs simulator on the comparison samples, every value both models compute
// (a folded Conv+BN+ReLU's output carries the name of the value it replaces).
Status Job::compare_layers(JobResult& r) {
  stage("per-layer comparison");
  QEVAL_RETURN_IF_ERROR(make_models());
  torch::NoGradGuard ng;
  QEVAL_ASSIGN_OR_RETURN(auto fenv, fp32_module_->forward_all({compare_x_}));
  QEVAL_ASSIGN_OR_RETURN(Tensor xt, from_torch(compare_x_.contiguous()));
  RunOptions ro;
  ro.keep_intermediates = true;
  QEVAL_ASSIGN_OR_RETURN(auto senv, simulator_->run({{program_.inputs.at(0), xt}}, ro));
  // A value whose only readers are clamping activations (Relu/Relu6/Clip) with the
  // same QuantParams shares their quantizer: with asymmetric activations it already
  // holds the clamped range, so it is compared at the activation's output instead.
  std::map<std::string, std::vector<const Node*>> readers;
  for (const Node& n : program_.nodes) {
    for (const std::string& i : n.inputs) readers[i].push_back(&n);
  }
  auto shares_activation_quantizer = [&](const std::string& v) {
    auto it = readers.find(v);
    const ValueInfo* vi = program_.find_value(v);
    if (it == readers.end() || !vi || !vi->quant) return false;
    for (const Node* n : it->second) {
      const bool clamp = n->op == OpKind::kRelu || n->op == OpKind::kRelu6 || n->op == OpKind::kClip;
      const ValueInfo* out = program_.find_value(n->outputs.at(0));
      if (!clamp || !out || !out->quant || !(*out->quant == *vi->quant)) return false;
    }
    return true;
  };
  std::vector<std::pair<std::string, std::string>> order;  // value, op
  for (const std::string& i : fp32_.inputs) order.push_back({i, "Input"});
  for (const Node& n : fp32_.nodes) order.push_back({n.outputs.at(0), op_name(n.op)});
  for (const auto& [v, op] : order) {
    auto fi = fenv.find(v);
    if (fi == fenv.end()) continue;
    std::string sname = program_.find_value(v + ".q") ? v + ".q" : v;
    auto si = senv.find(sname);
    if (si == senv.end() || shares_activation_quantizer(sname)) continue;
    torch::Tensor a = fi->second.detach().to(torch::kFloat32).contiguous();
    torch::Tensor b = dequantized(program_, sname, si->second).contiguous();
    if (a.numel() != b.numel()) continue;
    b = b.view(a.sizes());
    LayerResult l;
    l.name = v;
    l.op = op;
    const Similarity s = similarity(a.data_ptr<float>(), b.data_ptr<float>(), a.numel());
    l.cos = s.cos;
    l.euclid = s.euclid;
    l.sqnr = s.sqnr;
    const ValueInfo* vi = program_.find_value(sname);
    profile_activation(a, vi, si->second.dtype(), l);
    if (vi && vi->quant && !vi->quant->per_channel() && si->second.dtype() != DType::kFloat32) {
      const QuantParams& qp = *vi->quant;
      torch::Tensor qa = torch::clamp(torch::round(a.to(torch::kFloat64) / qp.scale[0]) + qp.zero_point[0],
                                      static_cast<double>(qp.qmin()), static_cast<double>(qp.qmax()));
      torch::Tensor qs = to_torch(si->second).to(torch::kFloat64).view(a.sizes());
      l.max_lsb = static_cast<int64_t>((qa - qs).abs().max().item<double>());
    }
    r.layers.push_back(l);
  }
  return check_aligned(senv, r);
}

// The deploy-aligned forward (quant/aligned.h: the QAT model evaluated with the
// deployed integer arithmetic on LibTorch) against the simulator, on the same
// samples: every integer activation must be equal (metric aligned_mismatch, gated
// at 0). A program the aligned forward cannot run (a float-format profile) is
// reported and not gated.
Status Job::check_aligned(const std::map<std::string, Tensor>& senv, JobResult& r) {
  stage("deploy-aligned vs simulator");
  torch::NoGradGuard ng;
  auto al = run_deploy_aligned(program_, profile_, {{program_.inputs.at(0), compare_x_}}, true);
  if (!al.is_ok()) {
    std::cerr << fmt::format("[{}] deploy-aligned comparison skipped: {}\n", spec_.id, al.status().message());
    return Status::ok();
  }
  int64_t elements = 0, mismatched = 0, values = 0;
  std::string first_bad;
  for (const auto& [name, vi] : program_.values) {
    if (!vi.quant || program_.is_constant(name)) continue;
    auto s = senv.find(name);
    auto a = al->find(name);
    if (s == senv.end() || a == al->end() || s->second.dtype() == DType::kFloat32) continue;
    torch::Tensor d = a->second.to(torch::kInt64).flatten().ne(to_torch(s->second).to(torch::kInt64).flatten());
    const int64_t bad = d.sum().item<int64_t>();
    if (bad > 0 && first_bad.empty()) first_bad = name;
    elements += d.numel();
    mismatched += bad;
    ++values;
  }
  std::cerr << fmt::format("[{}] deploy-aligned vs simulator: {} of {} integer elements differ ({} values){}\n",
                           spec_.id, mismatched, elements, values, first_bad.empty() ? "" : ", first: " + first_bad);
  r.metrics.push_back(metric("aligned_elements", static_cast<double>(elements)));
  r.metrics.push_back(metric("aligned_mismatch", static_cast<double>(mismatched)));
  aligned_first_bad_ = first_bad;
  return Status::ok();
}

void Job::gate(JobResult& r) {
  const MetricTolerance& t = cfg_.metric_tolerance;
  std::vector<std::string> failures;
  auto check = [&](MetricResult& m, bool pass, const std::string& rule) {
    m.gated = true;
    m.tolerance = rule;
    m.pass = pass && std::isfinite(m.value);
    if (!m.pass) failures.push_back(fmt::format("{} {} ({})", m.name, format_metric(m.name, m.value), rule));
  };
  for (MetricResult& m : r.metrics) {
    const double drop = m.baseline - m.value;
    if (m.name == "top1" && t.top1_drop >= 0) {
      check(m, drop <= t.top1_drop + 1e-9, fmt::format("drop <= {:.2f}", t.top1_drop));
      m.allowed_drop = t.top1_drop;
    }
    if (m.name == "top5" && t.top5_drop >= 0) {
      check(m, drop <= t.top5_drop + 1e-9, fmt::format("drop <= {:.2f}", t.top5_drop));
      m.allowed_drop = t.top5_drop;
    }
    if (m.name == "mAP" && t.map_ratio >= 0) {
      const double ratio = m.baseline > 0 ? m.value / m.baseline : (m.value >= 0 ? 1.0 : 0.0);
      check(m, ratio >= t.map_ratio - 1e-12, fmt::format("ratio >= {:.4f}", t.map_ratio));
      m.allowed_drop = (1.0 - t.map_ratio) * m.baseline;
    }
    if (m.name == "aligned_mismatch") {
      check(m, m.value == 0, fmt::format("== 0 (deploy-aligned QAT vs simulator{})",
                                         aligned_first_bad_.empty() ? "" : "; first: " + aligned_first_bad_));
    }
    if (m.name == "mAP" && t.map_drop >= 0) {
      check(m, drop <= t.map_drop + 1e-12, fmt::format("drop <= {:.4f}", t.map_drop));
      m.allowed_drop = std::isfinite(m.allowed_drop) ? std::min(m.allowed_drop, t.map_drop) : t.map_drop;
    }
  }
  // tpu-mlir's "cos,euclid" tolerance applies to every compared value: the worst one decides.
  if (!r.layers.empty()) {
    const LayerResult* worst_cos = &r.layers[0];
    const LayerResult* worst_euc = &r.layers[0];
    for (LayerResult& l : r.layers) {
      l.pass = l.cos >= sim_tol_.cos && l.euclid >= sim_tol_.euclid;
      if (l.cos < worst_cos->cos) worst_cos = &l;
      if (l.euclid < worst_euc->euclid) worst_euc = &l;
    }
    MetricResult c = metric("min_layer_cos", worst_cos->cos);
    MetricResult e = metric("min_layer_euclid", worst_euc->euclid);
    check(c, worst_cos->cos >= sim_tol_.cos, fmt::format(">= {:.4f} ({})", sim_tol_.cos, worst_cos->name));
    check(e, worst_euc->euclid >= sim_tol_.euclid, fmt::format(">= {:.4f} ({})", sim_tol_.euclid, worst_euc->name));
    r.metrics.push_back(c);
    r.metrics.push_back(e);
  }
  r.status = failures.empty() ? "pass" : "fail";
  r.message = failures.empty() ? "" : fmt::format("{}", fmt::join(failures, "; "));
}

Status Job::run(JobResult& r) {
  stage("read cfg");
  QEVAL_ASSIGN_OR_RETURN(cfg_, load_model_cfg(spec_.cfg_path));
  if (!spec_.debug_cmd.empty()) cfg_.debug_cmd = spec_.debug_cmd;
  r.model = cfg_.name;
  std::string zoo_name = cfg_.model;
  if (zoo_name.empty() && fs::path(cfg_.model_path).extension() == ".qmodel") {
    // A baseline written by `qeval train` names its zoo model.
    QEVAL_ASSIGN_OR_RETURN(Graph g, load_graph(cfg_.model_path));
    auto it = g.metadata.find("zoo_model");
    if (it != g.metadata.end()) zoo_name = it->second;
  }
  if (zoo_name.empty() && cfg_.model_path.empty()) {
    return invalid_argument("{}: model: not set; name the zoo model (model: resnet8), or give model_path "
                            "(a float .onnx, .pt or .qmodel) and dataset (an ImageFolder)", cfg_.path);
  }
  external_ = zoo_name.empty();
  if (external_) {
    QEVAL_ASSIGN_OR_RETURN(zoo_, external_model());
  } else {
    QEVAL_ASSIGN_OR_RETURN(zoo_, in_field(zoo_model(zoo_name), cfg_.path, "model"));
  }
  task_ = cfg_.task.empty() ? zoo_.task : cfg_.task;
  if (task_ != zoo_.task) {
    return invalid_argument("{}: task: {} but {} is a {} model", cfg_.path, task_, zoo_.name, zoo_.task);
  }
  r.task = task_;
  QEVAL_ASSIGN_OR_RETURN(profile_, load_profile(spec_.chip));
  sim_tol_ = profile_.activation_symmetric ? cfg_.int8_sym_tolerance : cfg_.int8_asym_tolerance;
  if (!sim_tol_.set()) {
    sim_tol_.cos = kDefaultCosTolerance;
    sim_tol_.euclid = kDefaultEuclidTolerance;
  }
  if (cfg_.debug_cmd.find("use_pil_resize") != std::string::npos) {
    std::cerr << fmt::format("[{}] debug_cmd use_pil_resize: qeval resizes with OpenCV INTER_LINEAR "
                             "(PIL's bilinear may differ by one level)\n", spec_.id);
  }
  QEVAL_RETURN_IF_ERROR(check_device(spec_.device).with_context("--device"));
  QEVAL_RETURN_IF_ERROR(load_fp32(r));
  if (external_) {
    // Input shape (batch 1) from the model file when input_shapes did not give it;
    // a classifier's class count from its output.
    if (zoo_.input_shape.empty() && !fp32_.inputs.empty()) {
      zoo_.input_shape = fp32_.value(fp32_.inputs[0]).shape;
      if (!zoo_.input_shape.empty()) zoo_.input_shape[0] = 1;
    }
    if (zoo_.input_shape.size() != 4 || *std::min_element(zoo_.input_shape.begin(), zoo_.input_shape.end()) < 1) {
      return invalid_argument("{}: input_shapes: not set and {} does not fix its input shape (input_shapes: "
                              "[[1,3,224,224]])", cfg_.path, cfg_.model_path);
    }
    // A free batch dimension (an ONNX dim_param) is fixed at 1 like the zoo graphs';
    // lowering frees it again (lower_batch_free).
    if (fp32_.inputs.size() == 1) {
      ValueInfo& in = fp32_.value(fp32_.inputs[0]);
      if (in.shape.size() == 4 && in.shape[0] < 0) in.shape[0] = 1;
      QEVAL_RETURN_IF_ERROR(fp32_.infer_shapes().with_context(cfg_.model_path));
    }
    const ValueInfo* out = fp32_.outputs.empty() ? nullptr : fp32_.find_value(fp32_.outputs[0]);
    if (task_ == "classify" && out && out->shape.size() == 2 && out->shape[1] > 0) zoo_.num_classes = out->shape[1];
  }
  QEVAL_RETURN_IF_ERROR(quantize(r));
  QEVAL_RETURN_IF_ERROR(load_eval_data());
  QEVAL_RETURN_IF_ERROR(evaluate(r));
  QEVAL_RETURN_IF_ERROR(compare_layers(r));
  gate(r);
  stage(fmt::format("done: {}", r.status));
  return Status::ok();
}

}  // namespace

JobResult run_eval_job(const JobSpec& spec) {
  JobResult r;
  r.id = spec.id;
  r.cfg_path = spec.cfg_path;
  r.chip = spec.chip;
  r.mode = spec.mode;
  const auto t0 = std::chrono::steady_clock::now();
  at::set_num_threads(std::max(1, spec.torch_threads));
  Job job(spec);
  Status s;
  try {
    s = job.run(r);
  } catch (const std::exception& e) {
    s = internal_error("{}", first_line(e.what()));
  }
  if (!s.is_ok()) {
    r.status = "error";
    r.message = s.message();
    r.metrics.clear();
    std::cerr << fmt::format("[{}] error: {}\n", spec.id, s.message());
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace qeval
