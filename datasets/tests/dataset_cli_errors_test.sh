#!/usr/bin/env bash
# qeval dataset on bad input: exit code 2 and one line on stderr that names the
# file and the field/problem; never a crash or a stack trace. Plus a few good
# runs (export round trip, make-detection determinism). Needs no installed
# dataset: a small Fashion-MNIST-shaped IDX set is made here.
set -u
QEVAL=$1
WORK=$2
rm -rf "$WORK" && mkdir -p "$WORK"
source "$(dirname "$0")/../../scripts/testlib.sh"


# A 10-image Fashion-MNIST-shaped set (IDX: magic 0x00000803 / 0x00000801, big-endian sizes).
FM=$WORK/fm
mkdir -p "$FM"
{ printf '\x00\x00\x08\x03\x00\x00\x00\x0a\x00\x00\x00\x1c\x00\x00\x00\x1c'; head -c 7840 /dev/urandom; } >"$FM/t10k-images-idx3-ubyte"
{ printf '\x00\x00\x08\x01\x00\x00\x00\x0a'; printf '\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09'; } >"$FM/t10k-labels-idx1-ubyte"
# The same set with the image file cut short.
CUT=$WORK/fm_cut
mkdir -p "$CUT"
head -c 5000 "$FM/t10k-images-idx3-ubyte" >"$CUT/t10k-images-idx3-ubyte"
cp "$FM/t10k-labels-idx1-ubyte" "$CUT/"
GZCUT=$WORK/fm_gzcut
mkdir -p "$GZCUT"
gzip -c "$FM/t10k-images-idx3-ubyte" | head -c 200 >"$GZCUT/t10k-images-idx3-ubyte.gz"
cp "$FM/t10k-labels-idx1-ubyte" "$GZCUT/"

expect_ok "export imagefolder" "$QEVAL" dataset export fashion-mnist --root "$FM" --split test --format imagefolder --out "$WORK/folder"
expect_ok "list --check" "$QEVAL" dataset list "$WORK/folder" --check
if grep -q "10 images, 10 classes" "$WORK/out"; then pass=$((pass + 1)); else echo "FAIL: list output"; cat "$WORK/out"; fails=$((fails + 1)); fi
PNG=$(ls "$WORK"/folder/Trouser/*.png | head -1)

# Truncated and fake images.
head -c 60 "$PNG" >"$WORK/cut.png"
{ printf '\xff\xd8\xff\xe0\x00\x10JFIF\x00'; head -c 300 /dev/urandom | tr -d '\377'; } >"$WORK/cut.jpg"
echo "hello" >"$WORK/text.png"
mkdir -p "$WORK/badfolder/cls"
cp "$WORK/cut.png" "$WORK/badfolder/cls/a.png"
mkdir -p "$WORK/emptyfolder"

expect_error "truncated IDX" "fm_cut/t10k-images-idx3-ubyte: IDX data is truncated" \
  "$QEVAL" dataset export fashion-mnist --root "$CUT" --out "$WORK/o"
expect_error "truncated gzip IDX" "t10k-images-idx3-ubyte.gz: gzip" \
  "$QEVAL" dataset export fashion-mnist --root "$GZCUT" --out "$WORK/o"
expect_error "missing dataset folder" "nope_fm" \
  "$QEVAL" dataset export fashion-mnist --root "$WORK/nope_fm" --out "$WORK/o"
expect_error "unknown split" "split 'val'" \
  "$QEVAL" dataset export fashion-mnist --root "$FM" --split val --out "$WORK/o"
expect_error "unknown format" "format 'tfrecord'" \
  "$QEVAL" dataset export fashion-mnist --root "$FM" --format tfrecord --out "$WORK/o"
expect_error "missing image folder" "nope_dir: image folder does not exist" \
  "$QEVAL" dataset list "$WORK/nope_dir"
expect_error "empty image folder" "emptyfolder: image folder has no class sub-folders" \
  "$QEVAL" dataset list "$WORK/emptyfolder"
expect_error "truncated image in folder" "cls/a.png: PNG is truncated" \
  "$QEVAL" dataset list "$WORK/badfolder" --check
expect_error "truncated png" "cut.png: PNG is truncated" \
  "$QEVAL" dataset preprocess --cfg-kv 'input_shapes=[[1,3,8,8]]' --out "$WORK/x.npy" "$PNG" "$WORK/cut.png"
expect_error "truncated jpg" "cut.jpg: JPEG is truncated" \
  "$QEVAL" dataset preprocess --cfg-kv 'input_shapes=[[1,3,8,8]]' --out "$WORK/x.npy" "$WORK/cut.jpg"
expect_error "not an image" "text.png: not a PNG, JPEG or BMP" \
  "$QEVAL" dataset preprocess --out "$WORK/x.npy" "$WORK/text.png"
expect_error "missing image" "nothere.png" \
  "$QEVAL" dataset preprocess --out "$WORK/x.npy" "$WORK/nothere.png"
expect_error "unknown pixel_format" "pixel_format: unknown value 'rgba' (use rgb, bgr or gray)" \
  "$QEVAL" dataset preprocess --cfg-kv pixel_format=rgba --out "$WORK/x.npy" "$PNG"
printf '[DEFAULT]\nmodel_path = m.onnx\ninput_shapes = [[1,3,28,28]]\npixel_format = RGBA  # typo\n' >"$WORK/model.cfg"
expect_error "unknown pixel_format in cfg file" "model.cfg: pixel_format: unknown value 'RGBA'" \
  "$QEVAL" dataset preprocess --cfg "$WORK/model.cfg" --out "$WORK/x.npy" "$PNG"
expect_error "mean count" "mean: 2 values for the 3 channels" \
  "$QEVAL" dataset preprocess --cfg-kv mean=1,2 --out "$WORK/x.npy" "$PNG"
expect_error "input_shapes vs gray" "input_shapes: \[1, 3, 8, 8\] has 3 channels" \
  "$QEVAL" dataset preprocess --cfg-kv pixel_format=gray --cfg-kv 'input_shapes=[[1,3,8,8]]' --out "$WORK/x.npy" "$PNG"
expect_error "unknown cfg key" "unknown key 'resize'" \
  "$QEVAL" dataset preprocess --cfg-kv resize=8,8 --out "$WORK/x.npy" "$PNG"

# CIFAR-10 with a short last record.
CF=$WORK/cifar
mkdir -p "$CF"
head -c $((3073 * 2 + 1000)) /dev/zero >"$CF/test_batch.bin"
expect_error "truncated CIFAR-10" "test_batch.bin: record 2 is truncated (1000 of 3073 bytes)" \
  "$QEVAL" dataset export cifar10 --root "$CF" --out "$WORK/o"

# Detection scenes: bad size; same seed gives the same bytes, another seed other bytes.
expect_error "scene too small" "size 20" \
  "$QEVAL" dataset make-detection --count 2 --seed 1 --size 20 --root "$FM" --out "$WORK/o"
expect_ok "make-detection a" "$QEVAL" dataset make-detection --count 5 --seed 7 --root "$FM" --out "$WORK/det_a"
expect_ok "make-detection b" "$QEVAL" dataset make-detection --count 5 --seed 7 --root "$FM" --out "$WORK/det_b"
expect_ok "make-detection c" "$QEVAL" dataset make-detection --count 5 --seed 8 --root "$FM" --out "$WORK/det_c"
if diff -r "$WORK/det_a" "$WORK/det_b" >/dev/null; then pass=$((pass + 1)); echo "ok: same seed, same files"; else echo "FAIL: same seed gave different files"; fails=$((fails + 1)); fi
if ! cmp -s "$WORK/det_a/images/000000.png" "$WORK/det_c/images/000000.png"; then pass=$((pass + 1)); echo "ok: other seed, other scene"; else echo "FAIL: seed has no effect"; fails=$((fails + 1)); fi

echo "$pass passed, $fails failed"
[ "$fails" -eq 0 ]
