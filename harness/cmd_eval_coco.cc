// qeval eval-coco: the 12 COCO bbox stats of a results file, as pycocotools'
// COCOeval(iouType='bbox').summarize() prints them (harness/metrics/coco_eval.h).
//   qeval eval-coco --gt GT.json --dets DETS.json [--json]
// --json prints {"AP": ..., "AP50": ..., ..., "ARl": ...} with every digit.
// Exit codes: 0 success, 2 error (one line on stderr naming the file and the problem).
#include <CLI/CLI.hpp>
#include <iostream>
#include <nlohmann/json.hpp>

#include "datasets/coco_json.h"
#include "harness/commands.h"
#include "harness/metrics/coco_eval.h"

namespace qeval {
namespace {

int cmd_eval_coco(const std::string& gt_path, const std::string& dets_path, bool as_json) {
  auto gt = read_coco_instances(gt_path);
  if (!gt.is_ok()) return fail(gt.status());
  auto dets = read_coco_results(dets_path);
  if (!dets.is_ok()) return fail(dets.status());
  // The only data error left is a detection on an image the gt lacks: name the results file.
  auto r = evaluate_coco_bbox(*gt, *dets);
  if (!r.is_ok()) return fail(r.status().with_context(dets_path));
  if (as_json) {
    nlohmann::ordered_json out;
    for (size_t i = 0; i < r->stats.size(); ++i) out[coco_stat_names()[i]] = r->stats[i];
    std::cout << out.dump(2) << "\n";
  } else {
    std::cout << format_coco_summary(*r);
  }
  return 0;
}

}  // namespace

void add_eval_coco_command(CLI::App& app, CommandList& cmds) {
  struct Opts {
    std::string gt, dets;
    bool json = false;
  };
  auto o = std::make_shared<Opts>();
  auto* sub = app.add_subcommand(
      "eval-coco", "COCO bbox mAP of a results file (the 12 stats of pycocotools COCOeval)");
  sub->add_option("--gt", o->gt, "ground truth, COCO instances JSON")->required();
  sub->add_option("--dets", o->dets, "detections, COCO results JSON")->required();
  sub->add_flag("--json", o->json, "print the 12 stats as a JSON object");
  cmds.push_back({sub, [o] { return cmd_eval_coco(o->gt, o->dets, o->json); }});
}

}  // namespace qeval
