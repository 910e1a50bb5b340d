// One run_eval job, run inside a worker process (LibTorch inside, none in this
// header):  fp32 baseline (artifact cache) -> PTQ / QAT per cfg (quantized-model
// cache) or an already quantized model (qat_model_path) -> simulator on the
// evaluation set -> metrics (top-1/top-5 or COCO mAP) against the fp32 model ->
// per-layer fp32 vs simulator similarity -> tolerance gate. See docs/run_eval.md.
#pragma once

#include "harness/job_result.h"

namespace qeval {

// Never throws: a failure becomes status "error" with the message.
JobResult run_eval_job(const JobSpec& spec);

}  // namespace qeval
