// qeval dataset ...: the datasets/ library on the command line.
//   qeval dataset export fashion-mnist|cifar10 --out DIR [--split test] [--format imagefolder]
//                        [--limit N] [--root DIR]
//   qeval dataset make-detection --count N --seed S --out DIR [--split train|test] [--size 96]
//                        [--min-objects 1] [--max-objects 6] [--root DIR]
//   qeval dataset preprocess [--cfg FILE] [--cfg-kv KEY=VALUE]... --out X.npy IMAGE...
//   qeval dataset list DIR [--check]
// Exit codes: 0 success, 2 error (one line on stderr naming the file and the problem).
#include <fmt/ranges.h>
#include <tbb/parallel_for.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <filesystem>
#include <iostream>
#include <map>
#include <opencv2/imgcodecs.hpp>
#include <sstream>

#include "core/file_io.h"
#include "core/npy.h"
#include "datasets/cifar10.h"
#include "datasets/detection_synth.h"
#include "datasets/export.h"
#include "datasets/idx.h"
#include "datasets/image_folder.h"
#include "datasets/preprocess.h"
#include "harness/commands.h"

namespace qeval {
namespace {

namespace fs = std::filesystem;

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r") - b + 1);
}

Result<ImageSet> load_named_dataset(const std::string& name, const std::string& split,
                                    const std::string& root) {
  if (name == "fashion-mnist") return load_fashion_mnist(split, root);
  if (name == "cifar10") {
    if (root.empty())
      return invalid_argument("cifar10: pass --root (the cifar-10-batches-bin folder)");
    return load_cifar10(root, split);
  }
  return invalid_argument("dataset '{}': unknown (use fashion-mnist or cifar10)", name);
}

// tpu-mlir .cfg: "key = value" lines, '#' comments (also after a value),
// "[DEFAULT]"-style section headers. Keys other than the preprocessing ones are
// the model's and are ignored here.
Result<std::map<std::string, std::string>> read_cfg_file(const std::string& path) {
  auto text = read_file(path);
  if (!text.is_ok()) return text.status();
  std::map<std::string, std::string> kv;
  std::istringstream in(*text);
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    const size_t hash = line.find('#');
    if (hash != std::string::npos) line.resize(hash);
    line = trim(line);
    if (line.empty() || (line.front() == '[' && line.back() == ']')) continue;
    const size_t eq = line.find('=');
    if (eq == std::string::npos || eq == 0) {
      return invalid_argument("{}: line {}: expected 'key = value', got '{}'", path, line_no, line);
    }
    kv[trim(line.substr(0, eq))] = trim(line.substr(eq + 1));
  }
  return kv;
}

int cmd_export(const std::string& name, const std::string& split, const std::string& format,
               const std::string& root, const std::string& out, int64_t limit) {
  if (format != "imagefolder")
    return fail(invalid_argument("--format '{}': unknown (use imagefolder)", format));
  auto set = load_named_dataset(name, split, root);
  if (!set.is_ok()) return fail(set.status());
  auto stats = export_image_folder(*set, out, limit);
  if (!stats.is_ok()) return fail(stats.status());
  std::cout << fmt::format("{} {} -> {}: {} images, {} classes\n", name, split, out, stats->images,
                           stats->classes);
  return 0;
}

int cmd_make_detection(const DetectionSynthConfig& cfg, int64_t count, const std::string& split,
                       const std::string& root, const std::string& out) {
  auto set = load_fashion_mnist(split, root);
  if (!set.is_ok()) return fail(set.status());
  Status s = write_detection_set(*set, cfg, count, out);
  if (!s.is_ok()) return fail(s);
  std::cout << fmt::format("{}: {} scenes of {}x{} (seed {}), annotations.json\n", out, count,
                           cfg.size, cfg.size, cfg.seed);
  return 0;
}

int cmd_preprocess(const std::string& cfg_path, const std::vector<std::string>& cfg_kv,
                   const std::vector<std::string>& images, const std::string& out) {
  std::map<std::string, std::string> kv;
  std::string source = "--cfg-kv";
  if (!cfg_path.empty()) {
    auto file = read_cfg_file(cfg_path);
    if (!file.is_ok()) return fail(file.status());
    kv = std::move(file).value();
    source = cfg_kv.empty() ? cfg_path : cfg_path + " with --cfg-kv";
  }
  const auto& keys = preprocess_config_keys();
  for (const std::string& item : cfg_kv) {
    const size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0)
      return fail(invalid_argument("--cfg-kv '{}': expected KEY=VALUE", item));
    const std::string key = trim(item.substr(0, eq));
    if (std::find(keys.begin(), keys.end(), key) == keys.end()) {
      return fail(invalid_argument("--cfg-kv: unknown key '{}' (use one of: {})", key,
                                   fmt::join(keys, ", ")));
    }
    kv[key] = item.substr(eq + 1);
  }
  auto cfg = parse_preprocess_config(kv, source);
  if (!cfg.is_ok()) return fail(cfg.status());
  auto batch = load_and_preprocess(images, *cfg);
  if (!batch.is_ok()) return fail(batch.status());
  Status s = write_npy(out, *batch);
  if (!s.is_ok()) return fail(s);
  std::cout << out << "  " << dtype_name(batch->dtype()) << " " << shape_str(batch->shape())
            << "\n";
  return 0;
}

int cmd_list(const std::string& dir, bool check) {
  auto folder = scan_image_folder(dir);
  if (!folder.is_ok()) return fail(folder.status());
  std::vector<int64_t> counts(folder->class_names.size(), 0);
  for (const auto& s : folder->samples) ++counts[s.label];
  if (check) {
    std::vector<Status> errors(folder->samples.size());
    tbb::parallel_for(size_t{0}, folder->samples.size(), [&](size_t i) {
      auto img = read_image(folder->samples[i].path, cv::IMREAD_UNCHANGED);
      if (!img.is_ok()) errors[i] = img.status();
    });
    for (const Status& e : errors) {
      if (!e.is_ok()) return fail(e);
    }
  }
  for (size_t k = 0; k < counts.size(); ++k) {
    std::cout << fmt::format("{}\t{}\t{}\n", k, folder->class_names[k], counts[k]);
  }
  std::cout << fmt::format("{}: {} images, {} classes{}\n", dir, folder->samples.size(),
                           counts.size(), check ? ", all decode" : "");
  return 0;
}

}  // namespace

void add_dataset_commands(CLI::App& app, CommandList& cmds) {
  struct Opts {
    std::string name, split = "test", format = "imagefolder", root, out, cfg, dir;
    int64_t limit = -1, count = 0;
    std::vector<std::string> cfg_kv, images;
    DetectionSynthConfig det;
    bool check = false;
  };
  auto o = std::make_shared<Opts>();
  auto* ds =
      app.add_subcommand("dataset", "Datasets: export, synthetic detection scenes, preprocessing");
  ds->require_subcommand(1);

  auto* exp =
      ds->add_subcommand("export", "Write a dataset as an ImageFolder tree of PNGs + labels.txt");
  exp->add_option("dataset", o->name, "fashion-mnist or cifar10")->required();
  exp->add_option("--split", o->split, "train or test (default test)");
  exp->add_option("--format", o->format, "output format (imagefolder)");
  exp->add_option("--out", o->out, "output folder")->required();
  exp->add_option("--limit", o->limit, "export only the first N images");
  exp->add_option("--root", o->root, "dataset folder (default: Debian's Fashion-MNIST)");
  cmds.push_back(
      {exp, [o] { return cmd_export(o->name, o->split, o->format, o->root, o->out, o->limit); }});

  auto* det = ds->add_subcommand("make-detection",
                                 "Synthetic detection scenes of Fashion-MNIST objects, COCO json");
  det->add_option("--count", o->count, "number of scenes")
      ->required()
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  det->add_option("--seed", o->det.seed, "random seed")->required();
  det->add_option("--out", o->out, "output folder (images/, annotations.json)")->required();
  det->add_option("--split", o->split, "Fashion-MNIST split the objects come from (default test)");
  det->add_option("--size", o->det.size, "scene width and height in pixels (default 96)");
  det->add_option("--min-objects", o->det.min_objects, "fewest objects per scene (default 1)");
  det->add_option("--max-objects", o->det.max_objects, "most objects per scene (default 6)");
  det->add_option("--root", o->root, "Fashion-MNIST folder (default: Debian's)");
  cmds.push_back(
      {det, [o] { return cmd_make_detection(o->det, o->count, o->split, o->root, o->out); }});

  auto* pre = ds->add_subcommand("preprocess",
                                 "Preprocess images as a tpu-mlir cfg says; write one .npy batch");
  pre->add_option("--cfg", o->cfg, "cfg file (key = value; the preprocessing keys are used)");
  pre->add_option("--cfg-kv", o->cfg_kv,
                  "KEY=VALUE, repeatable, overrides --cfg (e.g. pixel_format=rgb)")
      ->allow_extra_args(false);
  pre->add_option("--out", o->out, "output .npy (float32, [N,C,H,W] or [N,H,W,C])")->required();
  pre->add_option("images", o->images, "image files")->required();
  cmds.push_back({pre, [o] { return cmd_preprocess(o->cfg, o->cfg_kv, o->images, o->out); }});

  auto* list = ds->add_subcommand("list", "List an ImageFolder's classes and image counts");
  list->add_option("dir", o->dir, "ImageFolder root")->required();
  list->add_flag("--check", o->check, "decode every image");
  cmds.push_back({list, [o] { return cmd_list(o->dir, o->check); }});
}

}  // namespace qeval
