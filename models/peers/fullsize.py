#!/usr/bin/python3
"""Full-size models for qeval (issue 12; docs/fullsize.md): torchvision
resnet18 and mobilenet_v2 at 224x224 and a YOLOv5s-style detector at 640x640,
exported to float ONNX for `run_eval` (model_path) and the benchmarks, plus an
ImageFolder of generated images to calibrate, fine-tune and score them on.

No pretrained weights exist on this machine: weights are torchvision's random
initialisation (seeded), and the BatchNorm running statistics come from
forward passes in training mode over the generated images, so activations
have realistic ranges (a random-init net with identity BN statistics explodes
or vanishes layer by layer).

  models/peers/fullsize.py images  OUT_DIR [--classes 10] [--per-class 20] [--size 256]
  models/peers/fullsize.py export  OUT_DIR [--models resnet18,mobilenet_v2,yolov5s]
                                   [--images DIR] [--bn-batches 8] [--seed 0]
  models/peers/fullsize.py noise   NAME --models DIR --images DIR [--count 4]

`export` writes NAME.onnx (opset 13, eval mode, batch dimension dynamic) and
NAME.pt (state_dict with the BN statistics), so peers run the same weights.
"""
import argparse
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn

MODELS = {"resnet18": 224, "mobilenet_v2": 224, "yolov5s": 640}
# ImageNet normalisation, as in the seed's resnet18_qat.cfg (mean, scale = 1/std).
MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)


# ---------------------------------------------------------------- YOLOv5s-style
# The layer structure of ultralytics YOLOv5s v6 (width 0.5, depth 0.33): Conv =
# Conv2d + BN + SiLU, C3 = CSP bottleneck block, SPPF = three chained 5x5 max
# pools concatenated, PANet neck with nearest upsampling and concatenation, and
# three 1x1 detection heads (strides 8, 16, 32; 3 anchors x (5 + 80 classes)).
# The heads are flattened and concatenated into one [N, 255, 8400] output, as
# YOLOv5's export concatenates its Detect outputs (decode is post-processing).
class Conv(nn.Module):
    def __init__(self, cin, cout, k=1, s=1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, s, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3, momentum=0.03)
        self.act = nn.SiLU()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    def __init__(self, c, shortcut=True):
        super().__init__()
        self.cv1 = Conv(c, c, 1)
        self.cv2 = Conv(c, c, 3)
        self.add = shortcut

    def forward(self, x):
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3(nn.Module):
    def __init__(self, cin, cout, n=1, shortcut=True):
        super().__init__()
        c = cout // 2
        self.cv1 = Conv(cin, c, 1)
        self.cv2 = Conv(cin, c, 1)
        self.cv3 = Conv(2 * c, cout, 1)
        self.m = nn.Sequential(*(Bottleneck(c, shortcut) for _ in range(n)))

    def forward(self, x):
        return self.cv3(torch.cat([self.m(self.cv1(x)), self.cv2(x)], 1))


class SPPF(nn.Module):
    def __init__(self, cin, cout, k=5):
        super().__init__()
        c = cin // 2
        self.cv1 = Conv(cin, c, 1)
        self.cv2 = Conv(c * 4, cout, 1)
        self.m = nn.MaxPool2d(k, 1, k // 2)

    def forward(self, x):
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat([x, y1, y2, self.m(y2)], 1))


class YoloV5s(nn.Module):
    def __init__(self, num_classes=80, anchors=3):
        super().__init__()
        no = anchors * (5 + num_classes)
        # backbone (CSPDarknet53, P1..P5)
        self.b0 = Conv(3, 32, 6, 2)       # P1/2 (v6 uses a 6x6 stem conv, padding 2)
        self.b0.conv.padding = (2, 2)
        self.b1 = Conv(32, 64, 3, 2)      # P2/4
        self.b2 = C3(64, 64, 1)
        self.b3 = Conv(64, 128, 3, 2)     # P3/8
        self.b4 = C3(128, 128, 2)
        self.b5 = Conv(128, 256, 3, 2)    # P4/16
        self.b6 = C3(256, 256, 3)
        self.b7 = Conv(256, 512, 3, 2)    # P5/32
        self.b8 = C3(512, 512, 1)
        self.b9 = SPPF(512, 512)
        # head (PANet)
        self.h10 = Conv(512, 256, 1)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.h13 = C3(512, 256, 1, False)
        self.h14 = Conv(256, 128, 1)
        self.h17 = C3(256, 128, 1, False)  # P3 out
        self.h18 = Conv(128, 128, 3, 2)
        self.h20 = C3(256, 256, 1, False)  # P4 out
        self.h21 = Conv(256, 256, 3, 2)
        self.h23 = C3(512, 512, 1, False)  # P5 out
        self.detect = nn.ModuleList(nn.Conv2d(c, no, 1) for c in (128, 256, 512))
        self.onnx_export = False

    def forward(self, x):
        x = self.b2(self.b1(self.b0(x)))
        p3 = self.b4(self.b3(x))
        p4 = self.b6(self.b5(p3))
        x = self.b9(self.b8(self.b7(p4)))
        t10 = self.h10(x)
        x = self.h13(torch.cat([self.up(t10), p4], 1))
        t14 = self.h14(x)
        o3 = self.h17(torch.cat([self.up(t14), p3], 1))
        o4 = self.h20(torch.cat([self.h18(o3), t14], 1))
        o5 = self.h23(torch.cat([self.h21(o4), t10], 1))
        ys = [m(o) for m, o in zip(self.detect, (o3, o4, o5))]
        if self.onnx_export:  # int(): constant shapes in the trace (no Shape/Slice arithmetic)
            outs = [y.reshape(int(y.shape[0]), int(y.shape[1]), -1) for y in ys]
        else:  # torch.fx traceable (the LibTorch peers of bench/)
            outs = [y.flatten(2) for y in ys]
        return torch.cat(outs, 2)


def build(name, seed=0):
    torch.manual_seed(seed)
    if name == "resnet18":
        import torchvision
        return torchvision.models.resnet18(num_classes=1000)
    if name == "mobilenet_v2":
        import torchvision
        return torchvision.models.mobilenet_v2(num_classes=1000)
    if name == "yolov5s":
        m = YoloV5s()
        # YOLOv5's detection bias prior (objectness ~ 8 objects per 640 image).
        for s, conv in zip((8, 16, 32), m.detect):
            b = conv.bias.detach().view(3, -1)
            b[:, 4] += math.log(8 / (640 / s) ** 2)
            b[:, 5:] += math.log(0.6 / 79.99)
        return m
    raise SystemExit(f"fullsize.py: unknown model '{name}' (one of {', '.join(MODELS)})")


# ---------------------------------------------------------------- generated images
def make_image(rng, cls, size):
    """A colour image whose content depends on its class: a gradient background
    in the class's hue, a few filled ellipses and rectangles, and noise."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    hue = cls * 0.61803398875 % 1.0
    base = np.stack([np.cos(2 * np.pi * (hue + k / 3)) for k in range(3)]) * 0.5 + 0.5
    ang = rng.uniform(0, 2 * np.pi)
    grad = (np.cos(ang) * xx + np.sin(ang) * yy)[None]
    img = base[:, None, None] * (0.35 + 0.5 * grad) * 255
    for _ in range(rng.integers(2, 6)):
        cx, cy, rx, ry = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.3), rng.uniform(0.05, 0.3)
        colour = rng.uniform(0, 255, 3)
        if (cls + _) % 2:
            mask = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 < 1
        else:
            mask = (abs(xx - cx) < rx) & (abs(yy - cy) < ry)
        img[:, mask] = colour[:, None]
    img += rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8).transpose(1, 2, 0)  # HWC RGB


def cmd_images(a):
    from PIL import Image
    rng = np.random.default_rng(a.seed)
    n = 0
    for c in range(a.classes):
        d = os.path.join(a.out, f"class_{c:03d}")
        os.makedirs(d, exist_ok=True)
        for i in range(a.per_class):
            Image.fromarray(make_image(rng, c, a.size)).save(os.path.join(d, f"img_{i:04d}.png"))
            n += 1
    print(f"fullsize.py: {n} images, {a.classes} classes, {a.size}x{a.size} in {a.out}")


def load_images(folder, size, limit):
    """The ImageFolder's images, resized to size x size, normalised as the cfg says."""
    from PIL import Image
    files = sorted(os.path.join(r, f) for r, _, fs in os.walk(folder) for f in fs if f.endswith(".png"))
    if not files:
        raise SystemExit(f"fullsize.py: --images {folder}: no .png files (make them: fullsize.py images DIR)")
    step = max(1, len(files) // limit)
    out = []
    for f in files[::step][:limit]:
        im = np.asarray(Image.open(f).convert("RGB").resize((size, size), Image.BILINEAR), np.float32)
        out.append((im - np.array(MEAN, np.float32)) / np.array(STD, np.float32))
    return torch.from_numpy(np.stack(out).transpose(0, 3, 1, 2).copy())


def free_batch(path):
    import onnx
    from onnx import numpy_helper
    model = onnx.load(path)
    g = model.graph
    consts = {i.name: i for i in g.initializer}
    for n in g.node:
        if n.op_type == "Constant":
            consts[n.output[0]] = n.attribute[0].t
    for n in g.node:
        if n.op_type == "Reshape" and n.input[1] in consts:
            t = consts[n.input[1]]
            shape = numpy_helper.to_array(t).copy()
            if shape[0] == 1:
                shape[0] = 0
                t.CopyFrom(numpy_helper.from_array(shape, t.name))
    for v in list(g.input) + list(g.output):
        v.type.tensor_type.shape.dim[0].dim_param = "batch"
    del g.value_info[:]
    onnx.checker.check_model(model)
    onnx.save(model, path)


def cmd_export(a):
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    os.makedirs(a.out, exist_ok=True)
    for name in a.models.split(","):
        size = MODELS.get(name)
        m = build(name, a.seed)
        if a.images:
            # BN statistics: cumulative averages over the generated images in training mode.
            for mod in m.modules():
                if isinstance(mod, nn.BatchNorm2d):
                    mod.reset_running_stats()
                    mod.momentum = None
            x = load_images(a.images, size, a.bn_batches * a.bn_batch_size)
            m.train()
            with torch.no_grad():
                for i in range(0, x.shape[0], a.bn_batch_size):
                    m(x[i:i + a.bn_batch_size])
        m.eval()
        torch.save(m.state_dict(), os.path.join(a.out, name + ".pt"))
        m.onnx_export = True
        path = os.path.join(a.out, name + ".onnx")
        dummy = torch.zeros(1, 3, size, size)
        # Exported at batch 1 (a dynamic batch turns YOLO's flatten into Shape/Slice/Concat
        # arithmetic), then the batch made free: Reshape targets [1, ...] become [0, ...]
        # (ONNX: 0 copies the input's dimension) and the batch dimension symbolic.
        torch.onnx.export(m, dummy, path, opset_version=13, input_names=["input"], output_names=["output"],
                          do_constant_folding=True)
        free_batch(path)
        params = sum(p.numel() for p in m.parameters())
        print(f"fullsize.py: {path}: {params / 1e6:.2f} M parameters, input 1x3x{size}x{size}")


def cmd_noise(a):
    """How the fp32 network itself amplifies int8-sized noise: uniform noise of
    +-half an LSB (symmetric int8, scale max|x|/127 per activation) added at every
    activation-module output (ReLU, ReLU6, SiLU); prints the cosine of each
    top-level block's output and of the model output against the clean forward.
    Random-weight networks have no training-made noise robustness; this separates
    what the network does from what the quantizer does (docs/fullsize.md)."""
    m = build(a.model, a.seed)
    m.load_state_dict(torch.load(os.path.join(a.models, a.model + ".pt")))
    m.eval()
    x = load_images(a.images, MODELS[a.model], a.count)
    torch.manual_seed(a.seed)
    noisy = [False]
    def add_noise(mod, inp, out):
        if noisy[0]:
            s = out.abs().max() / 127
            return out + (torch.rand_like(out) - 0.5) * s
    feats = {}
    for name, mod in m.named_modules():
        if isinstance(mod, (nn.ReLU, nn.ReLU6, nn.SiLU)):
            mod.register_forward_hook(add_noise)
    blocks = m.features if hasattr(m, "features") else [c for c in m.children() if not isinstance(c, nn.ModuleList)]
    for i, b in enumerate(blocks):
        b.register_forward_hook(lambda mod, inp, out, i=i: feats.__setitem__((noisy[0], i), out.detach()))
    with torch.no_grad():
        clean = m(x)
        noisy[0] = True
        dirty = m(x)
    cos = lambda u, v: float(u.flatten() @ v.flatten() / (u.norm() * v.norm()))
    per_block = [cos(feats[(False, i)], feats[(True, i)]) for i in range(len(blocks)) if (True, i) in feats]
    print(f"fullsize.py noise {a.model}: block output cos " + " ".join(f"{c:.3f}" for c in per_block))
    print(f"fullsize.py noise {a.model}: min block cos {min(per_block):.4f}, model output cos {cos(clean, dirty):.4f}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    pi = sub.add_parser("images")
    pi.add_argument("out")
    pi.add_argument("--classes", type=int, default=10)
    pi.add_argument("--per-class", type=int, default=20)
    pi.add_argument("--size", type=int, default=256)
    pi.add_argument("--seed", type=int, default=0)
    pe = sub.add_parser("export")
    pe.add_argument("out")
    pe.add_argument("--models", default=",".join(MODELS))
    pe.add_argument("--images", default="")
    pe.add_argument("--bn-batches", type=int, default=8)
    pe.add_argument("--bn-batch-size", type=int, default=8)
    pe.add_argument("--seed", type=int, default=0)
    pn = sub.add_parser("noise")
    pn.add_argument("model")
    pn.add_argument("--models", required=True, help="folder of NAME.pt (export)")
    pn.add_argument("--images", required=True)
    pn.add_argument("--count", type=int, default=4)
    pn.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    {"images": cmd_images, "export": cmd_export, "noise": cmd_noise}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
