// Artifact cache of fp32 baselines: trained weights keyed by a hash of
// (model, dataset fingerprint, recipe, code version, LibTorch threads) under $QEVAL_CACHE or
// ~/.cache/qeval. A second request is a hit; an entry whose checksum fails
// (the qmodel container's XXH64) or whose key differs is rebuilt. Training
// writes per-epoch checkpoints beside the entry and resumes from them, so an
// interrupted training run loses at most one epoch. Concurrent requests for
// the same entry wait on a file lock instead of training twice.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "models/trainer.h"

namespace qeval {

// Bump when a zoo builder or the trainer changes what a recipe produces.
inline constexpr const char* kTrainerCodeVersion = "qeval-fp32-trainer-2";

std::string cache_root();  // $QEVAL_CACHE, else $HOME/.cache/qeval
// XXH64 (seed 0) of `prefix` followed by the bytes of every file in order,
// each preceded by its size (8 bytes) when `sizes`; a file's read error as is.
Result<uint64_t> xxh64_files(const std::vector<std::string>& paths, const std::string& prefix = {},
                             bool sizes = false);
// Hex XXH64 of the model's training data files (Fashion-MNIST IDX files).
Result<std::string> dataset_fingerprint(const ZooModel& m, const TrainOptions& opts);
Result<std::string> baseline_key(const ZooModel& m, const TrainOptions& opts);

// The LibTorch thread count is part of every training cache key: the trained
// weights depend on it (oneDNN's 1x1 convolution splits its weight-gradient
// reduction over the minibatch by thread count; measured in docs/run_eval.md).
inline std::string threads_key(int torch_threads) { return ";torch_threads=" + std::to_string(torch_threads); }
// The training device too (a GPU's kernels reduce in other orders); empty for the
// CPU, so the keys of CPU entries are what they were before devices existed.
inline std::string device_key(const std::string& device) {
  return device.empty() || device == "cpu" ? std::string() : ";device=" + device;
}

struct Baseline {
  Graph graph;
  std::string path;  // the cache entry
  std::string key;
  bool cache_hit = false;
  bool rebuilt_corrupt = false;
  EvalResult eval;           // from the entry's metadata on a hit
  TrainResult train;         // filled when trained now
};

enum class CachePolicy { kUse, kRefresh /* retrain and overwrite */, kBypass /* train, do not store */ };
Result<Baseline> fp32_baseline(const ZooModel& m, const TrainOptions& opts, CachePolicy policy = CachePolicy::kUse);

}  // namespace qeval
