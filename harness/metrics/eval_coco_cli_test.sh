#!/usr/bin/env bash
# qeval eval-coco end to end.
#   golden: the shared COCO pair prints the reference's AP line, and --json the
#           12 stats (pycocotools values, ../shared/testdata/coco/README.md).
#   errors: malformed input exits 2 with one stderr line naming the file.
set -u
QEVAL=$1
DATA=$2
WORK=$3
MODE=$4
rm -rf "$WORK" && mkdir -p "$WORK"
source "$(dirname "$0")/../../scripts/testlib.sh"
GT=$DATA/instances_val2014_100.json
DT=$DATA/instances_val2014_fakebbox100_results.json

if [ "$MODE" = golden ]; then
  if [ ! -f "$GT" ] || [ ! -f "$DT" ]; then
    echo "FAIL: golden COCO data missing: $GT, $DT (shared/ must sit beside the source tree)"
    exit 1
  fi
  "$QEVAL" eval-coco --gt "$GT" --dets "$DT" >"$WORK/out" 2>"$WORK/err"
  rc=$?
  cat "$WORK/out"
  want=' Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.505'
  if [ $rc -ne 0 ] || [ "$(head -n 1 "$WORK/out")" != "$want" ] || [ "$(wc -l <"$WORK/out")" -ne 12 ]; then
    echo "FAIL: eval-coco rc=$rc, stderr: $(cat "$WORK/err")"
    fails=$((fails + 1))
  fi
  "$QEVAL" eval-coco --gt "$GT" --dets "$DT" --json >"$WORK/json" 2>"$WORK/err"
  rc=$?
  if [ $rc -ne 0 ] || ! /usr/bin/python3 - "$WORK/json" <<'PY'
import json, sys
got = json.load(open(sys.argv[1]))
want = {"AP": 0.5045806987249628, "AP50": 0.6969727247299577, "AP75": 0.5729816669904824,
        "APs": 0.5856257209410443, "APm": 0.5193996948036719, "APl": 0.5013978986347466,
        "AR1": 0.38681277964578054, "AR10": 0.5936795762842003, "AR100": 0.595352982877607,
        "ARs": 0.6398109626113442, "ARm": 0.5664205978994309, "ARl": 0.5642905982905982}
assert list(got) == list(want), list(got)
bad = {k: (got[k], v) for k, v in want.items() if abs(got[k] - v) > 1e-9}
assert not bad, bad
PY
  then
    echo "FAIL: eval-coco --json rc=$rc: $(cat "$WORK/json" "$WORK/err")"
    fails=$((fails + 1))
  fi
  [ $fails -eq 0 ] && echo "ok: golden"
  exit $((fails > 0))
fi


GT=$WORK/gt.json  # the error cases need no shared data
printf '{"images": [{"id": 1}], "categories": [{"id": 1}], "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "area": 12}]}\n' >"$GT"
printf '{"images": [{"id": 1}], "annotations": [' >"$WORK/truncated.json"
printf '[{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3], "score": 0.5}]\n' >"$WORK/bbox3.json"
printf '[{"image_id": 123456789, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}]\n' >"$WORK/unknown_image.json"
printf '[{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5},]\n' >"$WORK/comma.json"
expect_error_fixed "malformed gt" "truncated.json: JSON parse error at byte" \
  "$QEVAL" eval-coco --gt "$WORK/truncated.json" --dets "$WORK/bbox3.json"
expect_error_fixed "malformed dets" "comma.json: JSON parse error at byte" \
  "$QEVAL" eval-coco --gt "$GT" --dets "$WORK/comma.json"
expect_error_fixed "bbox with 3 numbers" "bbox3.json: [0].bbox: expected 4 numbers" \
  "$QEVAL" eval-coco --gt "$GT" --dets "$WORK/bbox3.json"
expect_error_fixed "unknown image" "unknown_image.json: [0].image_id: 123456789 is not an image of the ground truth" \
  "$QEVAL" eval-coco --gt "$GT" --dets "$WORK/unknown_image.json"
expect_error_fixed "missing gt" "nope.json" \
  "$QEVAL" eval-coco --gt "$WORK/nope.json" --dets "$WORK/bbox3.json"
exit $((fails > 0))
