#!/usr/bin/python3
"""LibTorch peers of bench/run_bench.sh (bench/README.md says what each does).

  torch_bench.py infer --model M --input X.npy --peer int8|fp32 [--weights FP32.qmodel]
                       [--threads 2] [--rounds 5] [--round-seconds 1] [--warmup-seconds 1]
  torch_bench.py qat   --model M --images N --cfg bench/qat_bench.yaml [--weights FP32.qmodel]
                       [--threads 2] [--seed 0]

The model is the zoo's PyTorch mirror (models/peers/zoo_torch.py), with the fp32
weights and BN statistics of the qeval baseline when --weights is given (they
share state_dict names); without it, PyTorch's default initialisation (the
speed of dense kernels does not depend on the values, the note says so).

infer int8: torch.ao FX post-training quantization with the quantized engine
onednn and its default qconfig mapping (per-channel symmetric int8 weights,
HistogramObserver quint8 activations), calibrated on 512 training images,
converted (convert_fx) and run under inference_mode. infer fp32: the same
module in eval mode, eager, under inference_mode.

qat: torch.ao FX QAT (prepare_qat_fx, engine onednn) set up to do the work of
`qeval quantize --cfg bench/qat_bench.yaml` (batch, LR, calibration images read
from the same file; see it and the README).

stdout: one JSON line. Exit 77 when torch or its onednn engine is missing.
"""
import argparse, gzip, json, math, os, resource, statistics, struct, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "models", "peers"))

try:
    import numpy as np
    import torch
    import torch.ao.quantization as tq
    import torch.nn.intrinsic.qat as nniqat
    import yaml
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx, prepare_qat_fx
except ImportError as e:
    print(f"torch_bench: cannot import {e.name} ({e}); install python3-torch, python3-numpy and "
          f"python3-yaml (Debian) or torch, numpy and pyyaml from PyPI",
          file=sys.stderr)
    sys.exit(77)
import zoo_torch  # models/peers: the zoo's PyTorch mirrors
import fullsize  # models/peers: torchvision resnet18 / mobilenet_v2, the YOLOv5s-style detector

# ZOO.md's input normalisation; the mirror's input size gives the padding.
MEAN, STD = 0.2860, 0.3530


def fashion_mnist(split, limit):
    """The first `limit` images (uint8 N×28×28) and labels of a Fashion-MNIST split."""
    root = os.environ.get("QEVAL_FASHION_MNIST", "/usr/share/datasets/fashion-mnist")
    stem = "train" if split == "train" else "t10k"

    def idx(name):
        path = next(p for p in (os.path.join(root, name + ".gz"), os.path.join(root, name)) if os.path.exists(p))
        data = (gzip.open if path.endswith(".gz") else open)(path, "rb").read()
        ndim = data[3]
        dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
        return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)[:limit]

    return idx(f"{stem}-images-idx3-ubyte"), idx(f"{stem}-labels-idx1-ubyte").astype(np.int64)


def zoo_inputs(images, size):
    pad = (size - images.shape[1]) // 2
    x = (images.astype(np.float32) / np.float32(255.0) - np.float32(MEAN)) / np.float32(STD)
    return torch.from_numpy(np.pad(x, ((0, 0), (pad, pad), (pad, pad)))[:, None].copy())


def qmodel_constants(path):
    """The float32 constants of a .qmodel (docs/qmodel.md: magic, JSON and blob lengths, checksum, JSON, blob)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"QEVALIR1":
        raise ValueError(f"{path}: not a qmodel")
    jlen, _, _ = struct.unpack("<QQQ", data[8:32])
    doc = json.loads(data[32:32 + jlen])
    blob = memoryview(data)[32 + jlen:]
    out = {}
    for name, ref in doc["constants"].items():
        if ref["dtype"] == "float32":
            a = np.frombuffer(blob[ref["offset"]:ref["offset"] + ref["nbytes"]], dtype=np.float32)
            out[name] = torch.from_numpy(a.reshape(ref["shape"]).copy())
    return out


# Activations and conv weights are channels-last (NHWC), the layout oneDNN
# computes in, as qeval's LibTorch code keeps them: with NCHW, Debian's torch
# (generic BLAS) runs fp32 convolutions as im2col + reference GEMM, several
# times slower, and that would measure the packaging, not the peer.
CL = torch.channels_last


def build_model(name, weights):
    """The mirror (channels-last), with the baseline's weights when given; and a note saying which.
    Full-size models (models/peers/fullsize.py) take the state dict export wrote (NAME.pt)."""
    if name in fullsize.MODELS:
        model = fullsize.build(name)
        if weights:
            model.load_state_dict(torch.load(weights))
        model = model.to(memory_format=CL)
        return model, fullsize.MODELS[name], f"weights of {os.path.basename(weights)}" if weights else "random init"
    model, size = zoo_torch.build(name)
    model = model.to(memory_format=CL)
    if not weights:
        return model, size, "PyTorch default init (no --weights)"
    consts = qmodel_constants(weights)
    state = model.state_dict()
    missing = [k for k in state if k not in consts and not k.endswith("num_batches_tracked")]
    if missing:
        raise ValueError(f"{weights}: lacks {', '.join(missing[:5])}")
    model.load_state_dict({k: consts.get(k, v) for k, v in state.items()})
    return model, size, f"weights of {os.path.basename(weights)}"


def fusable(model):
    """The mirror as an FX graph with torch.relu calls made F.relu: the mirror's
    BasicBlock calls torch.relu, which torch 1.13's conv-bn-relu fusion patterns
    do not list, so FX would quantize the conv output and the ReLU output
    separately; qeval's plan (and the same pattern written with F.relu) makes
    Conv+BN+ReLU one op with one quantizer."""
    gm = torch.fx.symbolic_trace(model)
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target is torch.relu:
            node.target = torch.nn.functional.relu
    gm.recompile()
    return gm


def time_runs(fn, rounds, round_s, warmup_s):
    """bench_sim's method: warm-up for warmup_s (at least one run), then `rounds`
    rounds of whole runs lasting at least round_s. Returns the seconds per run
    of each round and the number of runs timed."""
    t = time.perf_counter()
    fn()
    while time.perf_counter() - t < warmup_s:
        fn()
    per_run, runs = [], 0
    for _ in range(rounds):
        n, t0 = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            el = time.perf_counter() - t0
            if el >= round_s:
                break
        per_run.append(el / n)
        runs += n
    return per_run, runs


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def use_onednn(threads):
    if "onednn" not in torch.backends.quantized.supported_engines:
        print(f"torch_bench: this PyTorch has no onednn quantized engine "
              f"({torch.backends.quantized.supported_engines})", file=sys.stderr)
        sys.exit(77)
    torch.backends.quantized.engine = "onednn"
    torch.set_num_threads(threads)


def infer(a):
    use_onednn(a.threads)
    x = torch.from_numpy(np.load(a.input)).contiguous(memory_format=CL)
    model, size, note = build_model(a.model, a.weights)
    model.eval()
    if a.peer == "int8":
        if a.calib:  # full-size models: calibrate on the images qeval calibrated on
            calib = torch.from_numpy(np.load(a.calib)).contiguous(memory_format=CL)
        else:
            imgs, _ = fashion_mnist("train", 60000)
            calib = zoo_inputs(imgs[:: len(imgs) // 512][:512], size).contiguous(memory_format=CL)
        model = prepare_fx(fusable(model), tq.get_default_qconfig_mapping("onednn"), example_inputs=(x[:1],))
        with torch.inference_mode():
            step = 8 if a.calib else 128  # 640x640 batches of 128 would take 20 GB
            for b in range(0, len(calib), step):
                model(calib[b:b + step])
        model = convert_fx(model)

    def run():
        with torch.inference_mode():
            model(x)

    per_run, runs = time_runs(run, a.rounds, a.round_seconds, a.warmup_seconds)
    n = x.shape[0]
    print(json.dumps({
        "bench": "infer", "peer": f"torch-{a.peer}", "model": a.model, "batch": n, "threads": a.threads,
        "images_per_s": n / statistics.median(per_run), "round_images_per_s": [n / s for s in per_run],
        "runs": runs, "peak_rss_mib": peak_rss_mib(), "weights": note,
        "version": f"torch {torch.__version__}, quantized engine {torch.backends.quantized.engine}"}))


def is_weight_fq(name):
    return name.endswith("weight_fake_quant")


def qat(a):
    use_onednn(a.threads)
    with open(a.cfg) as f:
        cfg = yaml.safe_load(f)["qat"]
    batch, lr, calib_images = cfg["batch"], cfg["lr"], cfg["calib_images"]
    model, size, note = build_model(a.model, a.weights)
    imgs, labels = fashion_mnist("train", a.images)
    x, y = zoo_inputs(imgs, size), torch.from_numpy(labels)
    n = len(x)

    # Per-channel symmetric int8 weights whose scale is max|w| of the current
    # weights at every step (averaging constant 1: the moving average is the
    # latest value), as qeval's weight_fake_quant: minmax. 8-bit activations:
    # quint8, the only activation dtype onednn's quantized conv takes, as
    # qeval's onnx-qdq profile (bench/qat_bench.yaml).
    fq = tq.FusedMovingAvgObsFakeQuantize
    qconfig = tq.QConfig(
        activation=fq.with_args(observer=tq.MovingAverageMinMaxObserver, quant_min=0, quant_max=255,
                                dtype=torch.quint8, qscheme=torch.per_tensor_affine),
        weight=fq.with_args(observer=tq.MovingAveragePerChannelMinMaxObserver, averaging_constant=1.0,
                            quant_min=-128, quant_max=127, dtype=torch.qint8, qscheme=torch.per_channel_symmetric))
    mapping = tq.get_default_qat_qconfig_mapping("onednn").set_global(qconfig)
    model = prepare_qat_fx(fusable(model).train(), mapping, example_inputs=(x[:1].contiguous(memory_format=CL),))
    fqs = {name: m for name, m in model.named_modules() if isinstance(m, tq.FakeQuantizeBase)}
    # Calls per forward: an op that shares its input's observer (ReLU6, pooling,
    # flatten) calls that fake quant again.
    fq_calls = sum(n.op == "call_module" and isinstance(model.get_submodule(n.target), tq.FakeQuantizeBase)
                   for n in model.graph.nodes)
    conv_bn = sum(isinstance(m, (nniqat.ConvBn2d, nniqat.ConvBnReLU2d)) for m in model.modules())

    # Calibration as qeval's: observers on, fake quant off, eval mode (BN running
    # statistics), `calib_images` training images spread evenly over the set.
    model.apply(tq.disable_fake_quant)
    model.apply(tq.enable_observer)
    model.eval()
    count = min(calib_images, n)
    calib = x[torch.arange(count) * max(1, n // count)].contiguous(memory_format=CL)
    with torch.no_grad():
        for b in range(0, count, 128):
            model(calib[b:b + 128])
    # Fine-tuning as bench/qat_bench.yaml: activation scales fixed after
    # calibration (fake_quant: ste), weight scales recomputed every step, BN
    # folded into the conv (nniqat.ConvBn2d) with its statistics frozen from the
    # start (freeze_bn_epoch: 0).
    model.apply(tq.enable_fake_quant)
    for name, m in fqs.items():
        if not is_weight_fq(name):
            m.disable_observer()
    model.apply(nniqat.freeze_bn_stats)
    model.train()

    # SGD + Nesterov (momentum 0.9, no weight decay), cosine LR per step from
    # qat.lr to 0, random horizontal flips with p = 0.5: qeval's QAT loop.
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=0.0)
    steps = (n + batch - 1) // batch
    gen = torch.Generator().manual_seed(a.seed)
    perm = torch.randperm(n, generator=gen)
    losses = []
    t0 = time.perf_counter()
    for s in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr / 2 * (1 + math.cos(math.pi * s / steps))
        idx = perm[s * batch:(s + 1) * batch]
        xb = x.index_select(0, idx)
        flip = torch.rand(len(idx), generator=gen) < 0.5
        xb[flip] = xb[flip].flip(-1)
        xb = xb.contiguous(memory_format=CL)
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(xb), y.index_select(0, idx))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    seconds = time.perf_counter() - t0
    print(json.dumps({
        "bench": "qat", "peer": "torch-fx-qat", "model": a.model, "images": n, "batch": batch,
        "threads": a.threads, "seconds": seconds, "images_per_s": n / seconds, "mean_loss": sum(losses) / len(losses),
        "activation_fake_quants": sum(not is_weight_fq(k) for k in fqs), "activation_fake_quant_calls": fq_calls,
        "weight_fake_quants": sum(is_weight_fq(k) for k in fqs), "conv_bn_folded": conv_bn,
        "peak_rss_mib": peak_rss_mib(), "weights": note, "version": f"torch {torch.__version__}"}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", required=True, choices=sorted(zoo_torch.MODELS) + sorted(fullsize.MODELS))
    common.add_argument("--weights", help="fp32 baseline .qmodel (qeval train --out); full-size models: NAME.pt")
    common.add_argument("--threads", type=int, default=2)
    i = sub.add_parser("infer", parents=[common])
    i.add_argument("--input", required=True, help="float32 [N, C, H, W] .npy (bench_sim --save-input)")
    i.add_argument("--peer", required=True, choices=["int8", "fp32"])
    i.add_argument("--calib", default="", help="float32 .npy of calibration images (default: Fashion-MNIST)")
    i.add_argument("--rounds", type=int, default=5)
    i.add_argument("--round-seconds", type=float, default=1.0)
    i.add_argument("--warmup-seconds", type=float, default=1.0)
    q = sub.add_parser("qat", parents=[common])
    q.add_argument("--images", type=int, required=True, help="the first N training images, one epoch")
    q.add_argument("--cfg", required=True, help="the qeval cfg whose qat block (batch, lr, calib_images) to follow")
    q.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    infer(a) if a.cmd == "infer" else qat(a)


if __name__ == "__main__":
    main()
