#!/usr/bin/env bash
# Issue 5 acceptance on the full Fashion-MNIST test set (label slow: ~1.5 h on
# 2 cores): fp32 baselines from the cache (trained when missing), then
#   resnet8, mobilenetv2_tiny @ bm1690 w8a8: PTQ(sim) >= fp32 - 1.0,
#     QAT(sim) >= fp32 - 0.3 and >= PTQ(sim), deploy-aligned == simulator (0 mismatches)
#   resnet8 @ bm1690 w4a8 after QAT: QAT(sim) >= fp32 - 2.0
# Prints the table of the issue's note.
set -u
QEVAL=$1
WORK=$2
rm -rf "$WORK" && mkdir -p "$WORK"
source "$(dirname "$0")/../../scripts/testlib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

field() { /usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }
ge() { /usr/bin/python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) >= float(sys.argv[2]) - 1e-9 else 1)" "$1" "$2"; }
sub() { /usr/bin/python3 -c "import sys; print(float(sys.argv[1]) - float(sys.argv[2]))" "$1" "$2"; }

echo "| model | cfg | fp32 | PTQ (sim) | QAT fake-quant | QAT (sim) | aligned mismatches |"
echo "|---|---|---|---|---|---|---|"
run() {  # run MODEL CFG COMPARE
  local m=$1 cfg=$2 out="$WORK/$1_$2"
  local extra=()
  [ "$3" = no ] && extra=(--no-compare)
  "$QEVAL" quantize --model "$m" --cfg "$ROOT/regression/quant/${m}_$cfg.yaml" --out "$out" "${extra[@]}" \
    >"$out.out" 2>"$out.err"
  check "$m $cfg exits 0" test $? -eq 0
  local s="$out/summary.json"
  echo "| $m | $cfg | $(field "$s" fp32_top1) | $(field "$s" ptq_sim_top1) | $(field "$s" qat_fake_quant_top1) |" \
       "$(field "$s" qat_sim_top1) | $(field "$s" aligned_mismatched) of $(field "$s" aligned_elements) |"
}
for m in resnet8 mobilenetv2_tiny; do
  run "$m" bm1690_w8a8 yes
  s="$WORK/${m}_bm1690_w8a8/summary.json"
  fp=$(field "$s" fp32_top1); ptq=$(field "$s" ptq_sim_top1); qat=$(field "$s" qat_sim_top1)
  check "$m PTQ >= fp32 - 1.0" ge "$ptq" "$(sub "$fp" 1.0)"
  check "$m QAT >= fp32 - 0.3" ge "$qat" "$(sub "$fp" 0.3)"
  check "$m QAT >= PTQ" ge "$qat" "$ptq"
  check "$m deploy-aligned == simulator" test "$(field "$s" aligned_mismatched)" = 0
done
run resnet8 bm1690_w4a8 no
s="$WORK/resnet8_bm1690_w4a8/summary.json"
check "resnet8 w4a8 QAT >= fp32 - 2.0" ge "$(field "$s" qat_sim_top1)" "$(sub "$(field "$s" fp32_top1)" 2.0)"
finish
