// qeval: the stage-by-stage command line (DESIGN.md "Command line"). Each
// subcommand group lives in harness/cmd_*.cc and registers itself here.
// Exit codes: 0 success, 1 a check failed, 2 error (one line on stderr naming the file).
#include <iostream>

#include "harness/commands.h"

namespace qeval {

int fail(const Status& s) {
  std::cerr << "qeval: error: " << s.message() << "\n";
  return 2;
}

}  // namespace qeval

int main(int argc, char** argv) {
  CLI::App app{"qeval: quantized-model accuracy harness and bit-exact integer NPU simulator"};
  app.require_subcommand(1);
  qeval::CommandList cmds;
  qeval::add_sim_commands(app, cmds);
  qeval::add_dataset_commands(app, cmds);
  qeval::add_eval_coco_command(app, cmds);
#ifdef QEVAL_HAVE_TORCH
  qeval::add_train_commands(app, cmds);
  qeval::add_quantize_command(app, cmds);
  qeval::add_diagnose_command(app, cmds);
#endif
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  for (const auto& c : cmds) {
    if (c.sub->parsed()) return c.run();
  }
  return 2;
}
