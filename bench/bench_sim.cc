// bench_sim: throughput of the integer simulator on a deployed program (.qmodel),
// measured the way bench/run_bench.sh measures every peer (bench/README.md):
// warm-up, then R timed rounds of whole-batch runs, images/s = the median round.
//
//   bench_sim MODEL.qmodel [--batch N | --input X.npy] [--save-input X.npy]
//             [--threads T] [--rounds R] [--round-seconds S] [--warmup-seconds S]
//             [--layers K]
//
// Input: the first N Fashion-MNIST test images, preprocessed as the zoo model
// named by the qmodel's metadata["zoo_model"] (ZOO.md: x/255, (x − mean)/std,
// zero pad), or a float32 [N, C, H, W] .npy. --save-input writes the batch, so
// the other peers run on exactly the same data.
//
// stdout: one JSON object per line (the driver collects them): the model's
// figures, then with --layers one line per timed conv layer. Notes go to stderr.
// Torch-free: links only the simulator, the zoo definitions and the IDX reader.
#include <sys/resource.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <tbb/global_control.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "core/graph.h"
#include "core/npy.h"
#include "datasets/idx.h"
#include "models/zoo.h"
#include "simulator/kernels/opt_kernels.h"
#include "simulator/profile.h"
#include "simulator/program.h"

namespace qeval {
namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

struct Timing {
  std::vector<double> round_seconds_per_run;  // one entry per timed round
  int64_t runs = 0;                           // runs timed, all rounds together
  double median_seconds_per_run() const {
    std::vector<double> v = round_seconds_per_run;
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  }
};

// Runs `fn` for `warmup_s` (at least once), then `rounds` rounds of at least
// `round_s` each (at least one run each). A round's figure is its mean time per
// run; the median over rounds resists the spikes of a shared machine.
Result<Timing> time_runs(const std::function<Status()>& fn, int rounds, double round_s,
                         double warmup_s) {
  auto seconds_since = [](Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
  };
  const auto w0 = Clock::now();
  do {
    QEVAL_RETURN_IF_ERROR(fn());
  } while (seconds_since(w0) < warmup_s);
  Timing t;
  for (int r = 0; r < rounds; ++r) {
    int64_t n = 0;
    const auto t0 = Clock::now();
    do {
      QEVAL_RETURN_IF_ERROR(fn());
      ++n;
    } while (seconds_since(t0) < round_s);
    t.round_seconds_per_run.push_back(seconds_since(t0) / n);
    t.runs += n;
  }
  return t;
}

// ZOO.md's classifier input: x/255, (x − mean)/std, then `pad` zeros on each side.
Result<Tensor> fashion_mnist_batch(const ZooModel& m, int64_t n) {
  QEVAL_ASSIGN_OR_RETURN(ImageSet test, load_fashion_mnist("test"));
  if (test.c != 1)
    return invalid_argument("Fashion-MNIST test set has {} channels, expected 1", test.c);
  const int64_t h = test.h + 2 * m.pad, w = test.w + 2 * m.pad;
  Tensor x(DType::kFloat32, {n, 1, h, w});  // zero-filled: the padding
  float* p = x.data<float>();
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* img = test.image(i % test.n);  // a batch over 10k images wraps around
    for (int64_t y = 0; y < test.h; ++y) {
      for (int64_t xx = 0; xx < test.w; ++xx) {
        const float v = static_cast<float>(img[y * test.w + xx]) / 255.0f;
        p[((i * h) + y + m.pad) * w + xx + m.pad] = (v - m.mean) / m.std;
      }
    }
  }
  return x;
}

int64_t peak_rss_kib() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;  // KiB on Linux
}

// Multiply-accumulates of a Conv2d or Linear node for its output `out`:
// every output element takes (weight elements / output channels) products.
int64_t node_macs(const Node& n, const Graph& g, const Shape& out) {
  if (n.op != OpKind::kConv2d && n.op != OpKind::kLinear) return 0;
  const Tensor* w = g.find_constant(n.inputs.at(1));
  if (!w || w->rank() < 2 || w->dim(0) == 0) return 0;
  return shape_numel(out) * (w->numel() / w->dim(0));
}

// The int8 MAC/s peak of the cores used. On a CPU with AVX-512 VNNI it is
// measured, not assumed: `cores` threads at once each run a loop of
// independent vpdpbusd (zmm: 64 u8 x s8 MACs each, 12 accumulator chains, no
// memory operands) for about 0.3 s; with AMX-INT8 a loop of tdpbusd on tiles
// held in registers (16 x 16 x 64 = 16384 MACs each, four independent
// accumulator tiles) is measured the same way and reported beside it. The
// fractions of peak are against the VNNI figure (what a vector kernel could
// reach), the AMX one is a second ceiling. Without VNNI the figure is the AVX2
// assumption: vpmaddwd on int16 (16 MACs per 256-bit instruction), two per
// cycle per core (Zen 2-4, Skylake ports 0 and 1) at /proc/cpuinfo's "cpu MHz".
#if defined(__x86_64__)
__attribute__((target("avx512f,avx512vnni"))) int64_t vnni_macs(double seconds) {
  constexpr int kChains = 12;
  constexpr int64_t kIters = 1 << 16;
  __m512i acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_epi32(i);
  const __m512i a = _mm512_set1_epi32(0x01020304), b = _mm512_set1_epi32(0x01ff01ff);
  int64_t macs = 0;
  const auto t0 = std::chrono::steady_clock::now();
  do {
    for (int64_t it = 0; it < kIters; ++it) {
      for (int i = 0; i < kChains; ++i) acc[i] = _mm512_dpbusd_epi32(acc[i], a, b);
    }
    macs += kIters * kChains * 64;
  } while (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < seconds);
  __m512i sum = acc[0];
  for (int i = 1; i < kChains; ++i) sum = _mm512_add_epi32(sum, acc[i]);
  alignas(64) int32_t lanes[16];
  _mm512_store_si512(lanes, sum);
  volatile int32_t sink = lanes[0];  // keeps the loop
  (void)sink;
  return macs;
}

struct alignas(64) AmxTileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

__attribute__((target("amx-tile,amx-int8"))) int64_t amx_macs(double seconds) {
  AmxTileConfig cfg;
  for (int t = 0; t < 8; ++t) cfg.rows[t] = 16, cfg.colsb[t] = 64;
  _tile_loadconfig(&cfg);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  _tile_zero(4);
  _tile_zero(5);
  _tile_zero(6);
  _tile_zero(7);
  constexpr int64_t kIters = 1 << 12;
  int64_t macs = 0;
  const auto t0 = std::chrono::steady_clock::now();
  do {
    for (int64_t it = 0; it < kIters; ++it) {
      _tile_dpbusd(0, 4, 6);
      _tile_dpbusd(1, 4, 7);
      _tile_dpbusd(2, 5, 6);
      _tile_dpbusd(3, 5, 7);
    }
    macs += kIters * 4 * 16 * 16 * 64;
  } while (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < seconds);
  _tile_release();
  return macs;
}
#endif

// GMAC/s of `cores` threads running f(seconds) at once.
template <typename F>
double measure_gmacs(int cores, F f) {
  constexpr double kSeconds = 0.3;
  std::vector<int64_t> macs(cores, 0);
  std::vector<std::thread> threads;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < cores; ++i) threads.emplace_back([&, i] { macs[i] = f(kSeconds); });
  for (std::thread& t : threads) t.join();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  double total = 0;
  for (int64_t m : macs) total += static_cast<double>(m);
  return total / s / 1e9;
}

json cpu_peak(int threads) {
  static json cached;  // measured once per process
  if (!cached.is_null()) return cached;
  std::ifstream f("/proc/cpuinfo");
  std::string line, model;
  double mhz = 0;
  bool avx2 = false, vnni = false, amx = false;
  while (std::getline(f, line)) {
    auto value = [&] { return line.substr(line.find(':') + 2); };
    if (model.empty() && line.starts_with("model name")) model = value();
    if (mhz == 0 && line.starts_with("cpu MHz")) mhz = std::stod(value());
    if (line.starts_with("flags")) {
      std::istringstream in(value());
      for (std::string flag; in >> flag;) {
        avx2 |= flag == "avx2";
        vnni |= flag == "avx512_vnni";
        amx |= flag == "amx_int8";
      }
    }
  }
  const int cores = std::min<int>(threads, static_cast<int>(std::thread::hardware_concurrency()));
  json j = {{"cpu", model}, {"cpu_mhz", mhz}, {"cores", cores},
            {"avx2", avx2}, {"vnni", vnni},   {"amx", amx && kern::opt::amx_usable()}};
#if defined(__x86_64__)
  if (vnni && kern::opt::cpu_has(kern::opt::Isa::kAvx512Vnni)) {
    j["peak_gmac_per_s"] = measure_gmacs(cores, vnni_macs);
    j["peak_assumption"] =
        "measured: cores x a loop of independent vpdpbusd zmm (64 int8 MACs each), AVX-512 VNNI";
    if (kern::opt::amx_usable()) {
      j["amx_peak_gmac_per_s"] = measure_gmacs(cores, amx_macs);
      j["peak_note"] = fmt::format(
          "AMX-INT8 tiles (tdpbusd, registers only, measured the same way): {:.1f} GMAC/s",
          j["amx_peak_gmac_per_s"].get<double>());
    }
    cached = j;
    return j;
  }
#endif
  j["peak_gmac_per_s"] = cores * 2 * 16 * mhz / 1000.0;
  j["peak_assumption"] = "cores x 2 vpmaddwd/cycle x 16 int8 MACs x cpu MHz (AVX2, no VNNI)";
  if (!avx2) j["peak_note"] = "this CPU lacks AVX2: the AVX2 figure overstates its peak";
  cached = j;
  return j;
}

// A program of one node of `g`: its activation inputs become graph inputs (batch
// dimension free), its weights stay constants, its lowered params come along.
Graph one_node_graph(const Graph& g, const Node& n) {
  Graph one;
  one.name = g.name + ":" + n.name;
  one.metadata = g.metadata;
  for (const std::string& in : n.inputs) {
    if (in.empty()) continue;
    if (const ValueInfo* vi = g.find_value(in)) one.values[in] = *vi;
    if (const Tensor* c = g.find_constant(in)) {
      one.constants[in] = *c;
    } else {
      one.inputs.push_back(in);
      Shape& s = one.value(in).shape;
      if (!s.empty()) s[0] = -1;
    }
  }
  for (const std::string& out : n.outputs) {
    if (const ValueInfo* vi = g.find_value(out)) one.values[out] = *vi;
    one.outputs.push_back(out);
  }
  one.nodes.push_back(n);
  return one;
}

struct Options {
  std::string model, input, save_input, name;  // name: the model in the output ("" = the program's)
  int64_t batch = 1;
  int threads = 2, rounds = 5, layers = 0;
  double round_s = 1.0, warmup_s = 1.0;
};

Status run(const Options& o) {
  tbb::global_control tc(tbb::global_control::max_allowed_parallelism,
                         static_cast<size_t>(o.threads));
  QEVAL_ASSIGN_OR_RETURN(Graph program, load_graph(o.model));
  if (!o.name.empty()) program.name = o.name;
  auto meta = [&](const std::string& k) {
    auto it = program.metadata.find(k);
    return it == program.metadata.end() ? std::string() : it->second;
  };
  if (meta("profile").empty()) {
    return invalid_argument(
        "{}: not a lowered program (no metadata 'profile'); use the MODEL.qmodel "
        "that `qeval quantize` or `qeval lower` writes",
        o.model);
  }
  QEVAL_ASSIGN_OR_RETURN(ChipProfile profile, load_profile(meta("profile")));
  if (program.inputs.size() != 1) {
    return unsupported("{}: {} graph inputs; bench_sim feeds one", o.model, program.inputs.size());
  }

  Tensor x;
  if (!o.input.empty()) {
    QEVAL_ASSIGN_OR_RETURN(x, read_npy(o.input));
    if (x.dtype() != DType::kFloat32 || x.rank() != 4) {
      return invalid_argument("{}: {} {}, expected float32 [N, C, H, W]", o.input,
                              dtype_name(x.dtype()), shape_str(x.shape()));
    }
  } else {
    const std::string zoo = meta("zoo_model");
    if (zoo.empty())
      return invalid_argument("{}: no metadata 'zoo_model'; give the batch with --input", o.model);
    QEVAL_ASSIGN_OR_RETURN(ZooModel zm, zoo_model(zoo));
    QEVAL_ASSIGN_OR_RETURN(x, fashion_mnist_batch(zm, o.batch));
  }
  if (!o.save_input.empty()) QEVAL_RETURN_IF_ERROR(write_npy(o.save_input, x));
  const int64_t n = x.dim(0);

  QEVAL_ASSIGN_OR_RETURN(Executor ex, Executor::create(program, profile));
  const std::map<std::string, Tensor> feeds{{program.inputs[0], x}};
  auto whole = [&]() -> Status { return ex.run(feeds).status(); };
  QEVAL_ASSIGN_OR_RETURN(Timing t, time_runs(whole, o.rounds, o.round_s, o.warmup_s));
  // Read before the per-layer timing, whose keep-intermediates run holds every
  // activation at once: this is the peak of plain inference.
  const int64_t rss_kib = peak_rss_kib();

  // One run keeping every value gives each node's output shape at this batch.
  RunOptions keep;
  keep.keep_intermediates = true;
  QEVAL_ASSIGN_OR_RETURN(auto env, ex.run(feeds, keep));
  struct Layer {
    const Node* node;
    int64_t macs;
  };
  std::vector<Layer> convs;
  int64_t model_macs = 0;
  for (const Node& nd : program.nodes) {
    auto it = env.find(nd.outputs.at(0));
    if (it == env.end()) continue;
    const int64_t macs = node_macs(nd, program, it->second.shape());
    model_macs += macs;
    if (nd.op == OpKind::kConv2d && macs > 0) convs.push_back({&nd, macs});
  }

  const double spr = t.median_seconds_per_run();
  json rounds = json::array();
  for (double s : t.round_seconds_per_run) rounds.push_back(n / s);
  const json peak = cpu_peak(o.threads);
  const double model_gmacs = model_macs / spr / 1e9;
  const char* kernels =
      std::getenv("QEVAL_SIM_KERNELS");  // the simulator's kernel choice, when set
  json line = {{"bench", "infer"},
               {"peer", "qeval-sim-int8"},
               {"model", program.name},
               {"profile", profile.name},
               {"sim_kernels", kernels ? kernels : "default"},
               {"batch", n},
               {"threads", o.threads},
               {"images_per_s", n / spr},
               {"round_images_per_s", rounds},
               {"runs", t.runs},
               {"peak_rss_mib", rss_kib / 1024.0},
               {"macs_per_image", model_macs / n},
               {"gmac_per_s", model_gmacs},
               {"peak_fraction", model_gmacs / peak["peak_gmac_per_s"].get<double>()},
               {"cpu_peak", peak}};
  std::cout << line.dump() << std::endl;

  // The largest convolutions, each run alone as a one-node program on its real input.
  std::stable_sort(convs.begin(), convs.end(),
                   [](const Layer& a, const Layer& b) { return a.macs > b.macs; });
  if (o.layers > 0 && convs.size() > static_cast<size_t>(o.layers)) convs.resize(o.layers);
  for (size_t i = 0; o.layers > 0 && i < convs.size(); ++i) {
    const Node& nd = *convs[i].node;
    Graph one = one_node_graph(program, nd);
    std::map<std::string, Tensor> in;
    for (const std::string& v : one.inputs) in[v] = env.at(v);
    QEVAL_ASSIGN_OR_RETURN(Executor lx, Executor::create(std::move(one), profile));
    auto layer = [&]() -> Status { return lx.run(in).status(); };
    QEVAL_ASSIGN_OR_RETURN(Timing lt, time_runs(layer, o.rounds, o.round_s / 2, o.warmup_s / 2));
    const double lspr = lt.median_seconds_per_run();
    const Tensor& w = *program.find_constant(nd.inputs.at(1));
    const double gmacs = convs[i].macs / lspr / 1e9;
    json l = {{"bench", "layer"},
              {"peer", "qeval-sim-int8"},
              {"model", program.name},
              {"batch", n},
              {"threads", o.threads},
              {"node", nd.name},
              {"weight_shape", w.shape()},
              {"input_shape", env.at(nd.inputs[0]).shape()},
              {"output_shape", env.at(nd.outputs[0]).shape()},
              {"group", nd.attr_int("group", 1)},
              {"macs", convs[i].macs},
              {"ms_per_run", lspr * 1e3},
              {"share_of_model_time", lspr / spr},
              {"gmac_per_s", gmacs},
              {"peak_fraction", gmacs / peak["peak_gmac_per_s"].get<double>()}};
    std::cout << l.dump() << std::endl;
  }
  return Status::ok();
}

}  // namespace
}  // namespace qeval

int main(int argc, char** argv) {
  qeval::Options o;
  CLI::App app{
      "Throughput (images/s), peak RSS and conv MAC/s of the qeval simulator on a .qmodel"};
  app.add_option("model", o.model, "lowered program (.qmodel)")
      ->required()
      ->check(CLI::ExistingFile);
  auto* batch = app.add_option("--batch", o.batch,
                               "first N Fashion-MNIST test images, preprocessed as the zoo model")
                    ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  app.add_option("--input", o.input, "the batch as a float32 [N, C, H, W] .npy instead")
      ->check(CLI::ExistingFile)
      ->excludes(batch);
  app.add_option("--save-input", o.save_input, "write the batch as .npy (for the other peers)");
  app.add_option("--name", o.name, "model name in the output (default: the program's graph name)");
  app.add_option("--threads", o.threads, "TBB worker threads (tbb::global_control)")
      ->check(CLI::Range(1, 256));
  app.add_option("--rounds", o.rounds, "timed rounds; images/s is their median")
      ->check(CLI::Range(1, 1000));
  app.add_option("--round-seconds", o.round_s, "minimum length of a round (whole runs)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--warmup-seconds", o.warmup_s, "untimed runs first, at least one")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--layers", o.layers,
                 "also time the K largest conv layers alone (MAC/s vs the CPU's peak)")
      ->check(CLI::NonNegativeNumber);
  CLI11_PARSE(app, argc, argv);
  qeval::Status s = qeval::run(o);
  if (!s.is_ok()) {
    std::cerr << "bench_sim: error: " << s.message() << "\n";
    return 2;
  }
  return 0;
}
