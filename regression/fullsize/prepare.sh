#!/usr/bin/env bash
# Lays out the data of the full-size cfgs (docs/fullsize.md) the way tpu-mlir's
# regression folder does, under $REGRESSION_PATH (default: regression/fullsize/data):
#   dataset/ILSVRC2012/class_NNN/*.png   generated images (no ImageNet here), 10 x 20, 256x256
#   dataset/calib_small/class_NNN/*.png  4 x 4 images: calibration and QAT of the 640x640 detector
#   image/cat.jpg                        one generated image (the cfgs' test_input)
#   models/{resnet18,mobilenet_v2,yolov5s}.onnx (+ .pt state dicts)
# Models: torchvision resnet18 / mobilenet_v2 and a YOLOv5s-style detector
# (models/peers/fullsize.py), random init, BN statistics from the generated images.
#   regression/fullsize/prepare.sh [--force]
# then: REGRESSION_PATH=regression/fullsize/data build/bin/run_eval --fast_test regression/fullsize/list.yaml
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DATA=${REGRESSION_PATH:-$ROOT/regression/fullsize/data}
PY=/usr/bin/python3
FS="$PY $ROOT/models/peers/fullsize.py"
[ "${1:-}" = --force ] && rm -rf "$DATA"
if [ -f "$DATA/models/yolov5s.onnx" ] && [ -f "$DATA/image/cat.jpg" ]; then
  echo "prepare: $DATA is ready (--force remakes it)"
  exit 0
fi
mkdir -p "$DATA/image"
$FS images "$DATA/dataset/ILSVRC2012" --classes 10 --per-class 20 --size 256 --seed 0
$FS images "$DATA/dataset/calib_small" --classes 4 --per-class 4 --size 256 --seed 1
$PY - "$DATA" <<'PY'
import sys, glob
from PIL import Image
src = sorted(glob.glob(sys.argv[1] + "/dataset/calib_small/class_000/*.png"))[0]
Image.open(src).convert("RGB").save(sys.argv[1] + "/image/cat.jpg", quality=95)
PY
$FS export "$DATA/models" --images "$DATA/dataset/ILSVRC2012" 2>&1 | grep -v -i warning | grep -v '^ ' || true
for m in resnet18 mobilenet_v2 yolov5s; do
  [ -f "$DATA/models/$m.onnx" ] || { echo "prepare: $m.onnx was not written" >&2; exit 1; }
done
echo "prepare: $DATA ready"
