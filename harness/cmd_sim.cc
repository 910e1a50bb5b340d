// qeval sim / lower / profiles: the simulator's subcommands.
//   qeval sim MODEL(.onnx|.qmodel) --input NAME=FILE ... --output-dir DIR
//             [--profile P] [--threads N] [--save-qmodel FILE]
//   qeval lower MODEL.onnx --profile P --out FILE.qmodel
//   qeval profiles
// Exit codes: 0 success, 2 error (one line on stderr naming the file and the problem).
#include <CLI/CLI.hpp>
#include <tbb/global_control.h>

#include <chrono>
#include <filesystem>
#include <iostream>

#include "core/npy.h"
#include "harness/commands.h"
#include "simulator/onnx_import.h"
#include "simulator/program.h"

namespace qeval {
namespace {

namespace fs = std::filesystem;

Result<Tensor> read_input_file(const std::string& path) {
  if (!fs::exists(path)) return not_found("{}: input file does not exist", path);
  if (path.ends_with(".npy")) return read_npy(path);
  if (path.ends_with(".pb")) return read_tensor_pb(path);
  return invalid_argument("{}: unknown input format (use .npy or an ONNX TensorProto .pb)", path);
}

Result<std::map<std::string, Tensor>> parse_inputs(const std::vector<std::string>& specs) {
  std::map<std::string, Tensor> out;
  for (const std::string& s : specs) {
    const auto eq = s.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == s.size()) {
      return invalid_argument("--input '{}': expected NAME=FILE", s);
    }
    QEVAL_ASSIGN_OR_RETURN(Tensor t, read_input_file(s.substr(eq + 1)));
    out[s.substr(0, eq)] = std::move(t);
  }
  return out;
}

// Loads MODEL as a program lowered for `profile_name` ("" = the model's own, or
// onnx-qdq for ONNX). ONNX inputs that an op needs as constants are folded.
Result<Graph> load_program(const std::string& model, std::string profile_name,
                           std::map<std::string, Tensor>& inputs, ChipProfile* profile) {
  if (!fs::exists(model)) return not_found("{}: model file does not exist", model);
  Graph g;
  if (model.ends_with(".onnx")) {
    OnnxImportOptions opts;
    opts.bindings = inputs;
    QEVAL_ASSIGN_OR_RETURN(g, import_onnx_file(model, opts));
    for (auto it = inputs.begin(); it != inputs.end();) {
      const bool folded = g.is_constant(it->first) &&
                          std::find(g.inputs.begin(), g.inputs.end(), it->first) == g.inputs.end();
      it = folded ? inputs.erase(it) : std::next(it);
    }
    if (profile_name.empty()) profile_name = "onnx-qdq";
  } else if (model.ends_with(".qmodel")) {
    QEVAL_ASSIGN_OR_RETURN(g, load_graph(model));
    if (profile_name.empty()) {
      auto it = g.metadata.find("profile");
      if (it == g.metadata.end()) return invalid_argument("{}: names no profile; pass --profile", model);
      profile_name = it->second;
    }
  } else {
    return invalid_argument("{}: unknown model format (use .onnx or .qmodel)", model);
  }
  QEVAL_ASSIGN_OR_RETURN(*profile, load_profile(profile_name));
  // Inputs with unknown dimensions take the shape of the given tensor.
  for (const std::string& in : g.inputs) {
    auto it = inputs.find(in);
    if (it == inputs.end()) continue;
    ValueInfo& v = g.value(in);
    bool symbolic = v.shape.empty() && it->second.rank() > 0;
    for (int64_t d : v.shape) symbolic |= d < 0;
    if (symbolic && v.shape.size() <= it->second.shape().size()) v.shape = it->second.shape();
  }
  const bool lowered = g.metadata.count("profile") && g.metadata["profile"] == profile->name;
  if (lowered) return g;
  auto r = lower_graph(std::move(g), *profile);
  if (!r.is_ok()) return r.status().with_context(model);
  return r;
}

std::string file_safe(std::string name) {
  for (char& c : name) {
    if (c == '/' || c == '\\' || c == ':' || c == ' ') c = '_';
  }
  return name;
}

int cmd_sim(const std::string& model, const std::vector<std::string>& input_specs,
            const std::string& out_dir, const std::string& profile_name, int threads,
            const std::string& save_qmodel) {
  tbb::global_control tc(tbb::global_control::max_allowed_parallelism,
                         static_cast<size_t>(std::max(1, threads)));
  auto inputs = parse_inputs(input_specs);
  if (!inputs.is_ok()) return fail(inputs.status());
  ChipProfile profile;
  auto program = load_program(model, profile_name, *inputs, &profile);
  if (!program.is_ok()) return fail(program.status());
  if (!save_qmodel.empty()) {
    Status s = save_graph(*program, save_qmodel);
    if (!s.is_ok()) return fail(s);
  }
  auto ex = Executor::create(std::move(program).value(), profile);
  if (!ex.is_ok()) return fail(ex.status().with_context(model));
  const auto t0 = std::chrono::steady_clock::now();
  auto out = ex->run(*inputs);
  if (!out.is_ok()) return fail(out.status().with_context(model));
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) return fail(io_error("{}: cannot create directory: {}", out_dir, ec.message()));
  for (const auto& [name, t] : *out) {
    const std::string path = (fs::path(out_dir) / (file_safe(name) + ".npy")).string();
    Status s = write_npy(path, t);
    if (!s.is_ok()) return fail(s);
    std::cout << path << "  " << dtype_name(t.dtype()) << " " << shape_str(t.shape()) << "\n";
  }
  std::cout << fmt::format("{}: {} nodes, profile {}, {:.2f} ms\n", model, ex->graph().nodes.size(),
                           profile.name, ms);
  return 0;
}

int cmd_lower(const std::string& model, const std::string& profile_name, const std::string& out) {
  std::map<std::string, Tensor> none;
  ChipProfile profile;
  auto program = load_program(model, profile_name, none, &profile);
  if (!program.is_ok()) return fail(program.status());
  Status s = save_graph(*program, out);
  if (!s.is_ok()) return fail(s);
  std::cout << fmt::format("{} -> {} ({} nodes, profile {})\n", model, out, program->nodes.size(),
                           profile.name);
  return 0;
}

}  // namespace

void add_sim_commands(CLI::App& app, CommandList& cmds) {
  struct Opts {
    std::string model, out_dir, profile, save_qmodel, lower_out;
    std::vector<std::string> inputs;
    int threads = 2;
  };
  auto o = std::make_shared<Opts>();
  auto* sim = app.add_subcommand("sim", "Run a quantized model (ONNX QDQ/QLinear or .qmodel) in "
                                        "the integer simulator");
  sim->add_option("model", o->model, "model file (.onnx or .qmodel)")->required();
  sim->add_option("--input", o->inputs, "NAME=FILE (.npy or ONNX TensorProto .pb), repeatable");
  sim->add_option("--output-dir", o->out_dir, "where to write <output name>.npy")->required();
  sim->add_option("--profile", o->profile, "chip profile name or .yaml (default: the qmodel's "
                                           "own, onnx-qdq for ONNX)");
  sim->add_option("--threads", o->threads, "worker threads")->check(CLI::Range(1, 256));
  sim->add_option("--save-qmodel", o->save_qmodel, "also write the lowered program to this file");
  cmds.push_back({sim, [o] {
                    return cmd_sim(o->model, o->inputs, o->out_dir, o->profile, o->threads,
                                   o->save_qmodel);
                  }});

  auto* lower = app.add_subcommand("lower", "Lower a quantized ONNX model to a .qmodel program");
  lower->add_option("model", o->model, "model file (.onnx or .qmodel)")->required();
  lower->add_option("--profile", o->profile, "chip profile (default onnx-qdq)");
  lower->add_option("--out", o->lower_out, "output .qmodel")->required();
  cmds.push_back({lower, [o] { return cmd_lower(o->model, o->profile, o->lower_out); }});

  auto* profiles = app.add_subcommand("profiles", "List the built-in chip profiles");
  cmds.push_back({profiles, [] {
                    for (const auto& n : builtin_profile_names()) {
                      auto p = load_profile(n);
                      std::cout << n << "\t" << (p.is_ok() ? p->description : p.status().message())
                                << "\n";
                    }
                    return 0;
                  }});
}

}  // namespace qeval

