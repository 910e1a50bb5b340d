#include "models/cache.h"

#include <xxhash.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>

#include "core/file_io.h"
#include "datasets/idx.h"

namespace qeval {

namespace fs = std::filesystem;

std::string cache_root() {
  if (const char* c = std::getenv("QEVAL_CACHE"); c && *c) return c;
  if (const char* h = std::getenv("HOME"); h && *h) return (fs::path(h) / ".cache" / "qeval").string();
  return (fs::temp_directory_path() / "qeval-cache").string();
}

Result<uint64_t> xxh64_files(const std::vector<std::string>& paths, const std::string& prefix, bool sizes) {
  const std::unique_ptr<XXH64_state_t, XXH_errorcode (*)(XXH64_state_t*)> st(XXH64_createState(),
                                                                             XXH64_freeState);
  XXH64_reset(st.get(), 0);
  XXH64_update(st.get(), prefix.data(), prefix.size());
  for (const std::string& f : paths) {
    QEVAL_ASSIGN_OR_RETURN(std::string bytes, read_file(f));
    if (sizes) {
      const uint64_t size = bytes.size();
      XXH64_update(st.get(), &size, sizeof size);
    }
    XXH64_update(st.get(), bytes.data(), bytes.size());
  }
  return static_cast<uint64_t>(XXH64_digest(st.get()));
}

Result<std::string> dataset_fingerprint(const ZooModel& m, const TrainOptions& opts) {
  // Both classifiers and det_tiny (its scenes are composited from it) derive from Fashion-MNIST.
  std::vector<std::string> files;
  for (const char* f : {"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                        "t10k-labels-idx1-ubyte"}) {
    files.push_back(fashion_mnist_file(opts.data_root, f));
  }
  QEVAL_ASSIGN_OR_RETURN(const uint64_t h, xxh64_files(files));
  return fmt::format("{:016x}", h);
}

Result<std::string> baseline_key(const ZooModel& m, const TrainOptions& opts) {
  QEVAL_ASSIGN_OR_RETURN(std::string data, dataset_fingerprint(m, opts));
  const TrainRecipe& r = m.recipe;
  const std::string canon = fmt::format(
      "model={};dataset={}:{};code={};opt={};lr={:.17g};mom={:.17g};nest={};wd={:.17g};batch={};epochs={};"
      "sched={};warm={:.17g};cyclemom={}:{:.17g}:{:.17g};hflip={};seed={};limit={}{}",
      m.name, m.dataset, data, kTrainerCodeVersion, r.optimizer, r.peak_lr, r.momentum, r.nesterov,
      r.weight_decay, r.batch, r.epochs, r.schedule, r.warmup, r.cycle_momentum, r.max_momentum, r.min_momentum,
      r.hflip, r.seed, r.train_limit, threads_key(opts.threads) + device_key(opts.device));
  return fmt::format("{:016x}", XXH64(canon.data(), canon.size(), 0));
}

namespace {

void fill_eval_from_metadata(const Graph& g, EvalResult* ev) {
  for (const char* m : {"top1", "mAP"}) {
    auto it = g.metadata.find(std::string("fp32_") + m);
    if (it == g.metadata.end()) continue;
    ev->metric = m;
    if (ev->metric == "mAP") ev->coco[0] = std::stod(it->second);
    else ev->top1 = std::stod(it->second);
  }
  if (auto it = g.metadata.find("fp32_eval_samples"); it != g.metadata.end()) ev->samples = std::stoll(it->second);
}

}  // namespace

Result<Baseline> fp32_baseline(const ZooModel& m, const TrainOptions& opts_in, CachePolicy policy) {
  Baseline b;
  QEVAL_ASSIGN_OR_RETURN(b.key, baseline_key(m, opts_in));
  const fs::path dir = fs::path(cache_root()) / "fp32";
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return io_error("{}: cannot create cache folder: {}", dir.string(), ec.message());
  b.path = (dir / fmt::format("{}-{}.qmodel", m.name, b.key)).string();
  // Bypass neither reads nor writes the entry, so it takes no lock (the ranks
  // of a data-parallel run train the same key together).
  std::optional<FileLock> lock;
  if (policy != CachePolicy::kBypass) {
    lock.emplace(b.path + ".lock");
    if (!lock->ok()) return io_error("{}.lock: cannot open lock file", b.path);
  }

  if (policy == CachePolicy::kUse && fs::exists(b.path)) {
    auto g = load_graph(b.path);
    if (g.is_ok() && g->metadata.count("cache_key") && g->metadata.at("cache_key") == b.key) {
      b.graph = std::move(g).value();
      b.cache_hit = true;
      fill_eval_from_metadata(b.graph, &b.eval);
      return b;
    }
    b.rebuilt_corrupt = true;
    std::cerr << fmt::format("[cache] {}: {}; rebuilding\n", b.path,
                             g.is_ok() ? "entry has a different key" : g.status().message());
    fs::remove(b.path, ec);
  }
  TrainOptions opts = opts_in;
  const std::string ckpt_dir = b.path.substr(0, b.path.size() - 7) + ".ckpt";
  if (policy != CachePolicy::kBypass && opts.checkpoint_dir.empty()) {
    opts.checkpoint_dir = ckpt_dir;
    opts.resume = policy == CachePolicy::kUse;
  }
  QEVAL_ASSIGN_OR_RETURN(b.train, train_zoo_model(m, opts));
  b.graph = b.train.graph;
  b.eval = b.train.eval;
  b.graph.metadata["cache_key"] = b.key;
  b.graph.metadata["code_version"] = kTrainerCodeVersion;
  if (policy == CachePolicy::kBypass) return b;
  QEVAL_RETURN_IF_ERROR(save_graph(b.graph, b.path));
  if (opts.checkpoint_dir == ckpt_dir) fs::remove_all(ckpt_dir, ec);
  return b;
}

}  // namespace qeval
