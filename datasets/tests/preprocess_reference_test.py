#!/usr/bin/python3
"""qeval dataset preprocess against the same steps in cv2 + numpy.

The reference below follows tpu-mlir's python/utils/preprocess.py (class
`preprocess`, `ImageResizeTool`): cv2.imread (GRAYSCALE for gray, COLOR
otherwise), cv2.resize (INTER_LINEAR) to max(resize_dims, net dims) or the
letterbox resize, centre crop start = h//2 - crop_h//2, float32, BGR->RGB for
rgb, (x - mean) * scale with float32 mean/scale in pixel_format order. For nhwc
the reference crops H and W (tpu-mlir slices shape[2:] whatever the layout).

Writes 20 images of different sizes, aspect ratios, gray/colour/alpha, png/jpg,
runs `qeval dataset preprocess` for several cfg variants and requires
max |qeval - reference| <= 1e-5. Needs python3-opencv (no skip: a missing
module is a failure).
"""
import argparse
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np

TOL = 1e-5


def make_images(d):
    rng = np.random.default_rng(1234)
    sizes = [(17, 23), (32, 32), (48, 64), (64, 48), (100, 30), (30, 100), (75, 75), (120, 90),
             (9, 13), (200, 150), (41, 97), (97, 41), (56, 56), (33, 80), (80, 33), (128, 128),
             (21, 21), (64, 200), (150, 60), (45, 67)]
    paths = []
    for i, (h, w) in enumerate(sizes):
        yy, xx = np.mgrid[0:h, 0:w]
        base = (127 + 100 * np.sin(xx / (3 + i)) * np.cos(yy / (5 + i % 4))).astype(np.float64)
        noise = rng.integers(-30, 31, size=(h, w, 3))
        img = np.clip(base[..., None] + noise + np.array([0, 40, -40]) * (i % 3), 0, 255).astype(np.uint8)
        kind = i % 5
        if kind == 1:
            img = img[..., 1]  # gray file
        elif kind == 3:
            alpha = np.full((h, w, 1), 200, np.uint8)
            img = np.concatenate([img, alpha], axis=2)  # BGRA png
        ext = ".jpg" if i % 2 == 0 and kind != 3 else ".png"
        p = os.path.join(d, "img%02d%s" % (i, ext))
        assert cv2.imwrite(p, img), p
        paths.append(p)
    return paths


def letterbox(image, h, w, pad_value, pad_type):
    # ImageResizeTool.letterbox_resize
    ih, iw = image.shape[0], image.shape[1]
    scale = min(float(w) / iw, float(h) / ih)
    rw, rh = int(iw * scale), int(ih * scale)
    resized = cv2.resize(image, (rw, rh))
    shape = (h, w, 3) if image.ndim == 3 else (h, w)
    out = np.full(shape, pad_value, dtype=image.dtype)
    if pad_type == "center":
        ph, pw = (h - rh) // 2, (w - rw) // 2
        out[ph:ph + rh, pw:pw + rw] = resized
    else:
        out[:rh, :rw] = resized
    return out


def reference(paths, cfg):
    pixel_format = cfg.get("pixel_format", "bgr")
    channel_format = cfg.get("channel_format", "nchw")
    c = 1 if pixel_format == "gray" else 3
    shape = [int(v) for v in cfg["input_shapes"].strip("[]").split(",")]
    net = shape[2:4] if channel_format == "nchw" else shape[1:3]
    resize = net
    if "resize_dims" in cfg:
        resize = [max(int(a), b) for a, b in zip(cfg["resize_dims"].split(","), net)]
    keep = cfg.get("keep_aspect_ratio", "0") in ("1", "true")
    pad_value = int(cfg.get("pad_value", "0"))
    pad_type = cfg.get("pad_type", "center")
    mean = np.array([float(s) for s in cfg.get("mean", "0,0,0").split(",")], dtype=np.float32)
    scale = np.array([float(s) for s in cfg.get("scale", "1,1,1").split(",")], dtype=np.float32)
    if mean.size == 1:
        mean = np.repeat(mean, c)
    if scale.size == 1:
        scale = np.repeat(scale, c)
    mean = mean[:c].reshape(1, c, 1, 1)
    scale = scale[:c].reshape(1, c, 1, 1)
    xs = []
    for p in paths:
        img = cv2.imread(p, cv2.IMREAD_GRAYSCALE if c == 1 else cv2.IMREAD_COLOR)
        if keep:
            img = letterbox(img, resize[0], resize[1], pad_value, pad_type)
        else:
            img = cv2.resize(img, (resize[1], resize[0]))
        img = img[None] if c == 1 else np.transpose(img, (2, 0, 1))
        xs.append(img[None])
    x = np.concatenate(xs, axis=0)
    if resize != net:
        h, w = x.shape[2:]
        sh, sw = h // 2 - net[0] // 2, w // 2 - net[1] // 2
        x = x[:, :, sh:sh + net[0], sw:sw + net[1]]
    x = x.astype(np.float32)
    if pixel_format == "rgb":
        x = x[:, [2, 1, 0], :, :]
    x = (x - mean) * scale
    if channel_format == "nhwc":
        x = np.transpose(x, (0, 2, 3, 1))
    return x


VARIANTS = {
    "gray_nchw_no_resize_dims": {
        "pixel_format": "gray", "input_shapes": "[[1,1,32,48]]", "mean": "10,20,30", "scale": "0.5"},
    "rgb_nchw_resize_crop_mean_scale": {
        "pixel_format": "rgb", "input_shapes": "[[1,3,56,56]]", "resize_dims": "64,72",
        "mean": "123.675,116.28,103.53", "scale": "0.0171,0.0175,0.0174"},
    "bgr_nhwc_keep_aspect_ratio": {
        "pixel_format": "bgr", "channel_format": "nhwc", "input_shapes": "[[1,60,40,3]]",
        "keep_aspect_ratio": "1", "mean": "103.94,116.78,123.68", "scale": "0.017,0.017,0.017"},
    "rgb_nonsquare": {
        "pixel_format": "rgb", "input_shapes": "[[1,3,40,64]]", "mean": "0,0,0",
        "scale": "0.0039216,0.0039216,0.0039216"},
    "rgb_nhwc_letterbox_pad114_crop": {
        "pixel_format": "rgb", "channel_format": "nhwc", "input_shapes": "[[1,48,48,3]]",
        "resize_dims": "52,60", "keep_aspect_ratio": "true", "pad_value": "114", "mean": "127.5",
        "scale": "0.0078125"},
    "gray_letterbox_normal_pad": {
        "pixel_format": "gray", "input_shapes": "[[1,1,36,36]]", "keep_aspect_ratio": "1",
        "pad_type": "normal", "pad_value": "7"},
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--qeval", required=True)
    ap.add_argument("--workdir", required=True)
    args = ap.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    os.makedirs(args.workdir)
    paths = make_images(args.workdir)
    failures = 0
    for name, cfg in VARIANTS.items():
        out = os.path.join(args.workdir, name + ".npy")
        cmd = [args.qeval, "dataset", "preprocess", "--out", out]
        for k, v in cfg.items():
            cmd += ["--cfg-kv", "%s=%s" % (k, v)]
        r = subprocess.run(cmd + paths, capture_output=True, text=True)
        if r.returncode != 0:
            print("FAIL %s: qeval exited %d: %s" % (name, r.returncode, r.stderr.strip()))
            failures += 1
            continue
        got = np.load(out)
        want = reference(paths, cfg)
        if got.shape != want.shape or got.dtype != np.float32:
            print("FAIL %s: qeval gave %s %s, reference %s" % (name, got.dtype, got.shape, want.shape))
            failures += 1
            continue
        diff = float(np.max(np.abs(got - want)))
        ok = diff <= TOL
        failures += not ok
        print("%s %s: shape %s, max abs diff %.3g" % ("ok  " if ok else "FAIL", name, list(got.shape), diff))
    print("%d variants, %d failed" % (len(VARIANTS), failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
