// Subcommands of the `qeval` binary. Each group lives in its own harness/cmd_*.cc
// file, registers its options on the CLI11 app and hands back the action to run
// when its subcommand was parsed. Actions return the process exit code:
// 0 success, 1 a check failed, 2 an error (one line on stderr naming the file).
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <vector>

#include "core/status.h"

namespace qeval {

struct Command {
  CLI::App* sub = nullptr;
  std::function<int()> run;
};
using CommandList = std::vector<Command>;

// Prints "qeval: error: <message>" on stderr and returns 2.
int fail(const Status& s);

void add_sim_commands(CLI::App& app, CommandList& cmds);      // cmd_sim.cc: sim, lower, profiles
void add_dataset_commands(CLI::App& app, CommandList& cmds);  // cmd_dataset.cc: dataset ...
void add_eval_coco_command(CLI::App& app, CommandList& cmds); // cmd_eval_coco.cc: eval-coco
#ifdef QEVAL_HAVE_TORCH
void add_train_commands(CLI::App& app, CommandList& cmds);    // cmd_train.cc: train, zoo
void add_quantize_command(CLI::App& app, CommandList& cmds);  // cmd_quantize.cc: quantize
void add_diagnose_command(CLI::App& app, CommandList& cmds);  // cmd_diagnose.cc: diagnose (needs run_eval)
#endif

}  // namespace qeval
