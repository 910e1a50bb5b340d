#!/usr/bin/python3
"""onnxruntime vs the qeval simulator on a classifier exported by `qeval quantize`
(MODEL_qdq.onnx, chip onnx-qdq): runs both on the Fashion-MNIST test set and
reports the fraction of images with the same predicted class, and how many
logits are bit-identical.

  qdq_referee.py --qeval build/bin/qeval --onnx OUT/resnet8_qdq.onnx --workdir DIR
                 [--pad 2] [--limit N] [--min-agreement 0.999]

The zoo's input normalisation (ZOO.md): x/255, (x - 0.2860)/0.3530, zero pad.
Exit: 0 agreement >= --min-agreement, 1 below, 77 onnxruntime-node missing.
"""
import argparse, gzip, json, os, subprocess, sys
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REFEREE = os.path.join(HERE, "..", "..", "simulator", "tests", "referee")


def read_idx(path):
    opener = gzip.open if open(path, "rb").read(2) == b"\x1f\x8b" else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--qeval", required=True)
    ap.add_argument("--onnx", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--pad", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--min-agreement", type=float, default=0.999)
    a = ap.parse_args()
    root = os.environ.get("QEVAL_FASHION_MNIST", "/usr/share/datasets/fashion-mnist")
    name = "t10k-images-idx3-ubyte"
    path = next(os.path.join(root, n) for n in (name + ".gz", name) if os.path.exists(os.path.join(root, n)))
    x = read_idx(path).astype(np.float32)
    if a.limit:
        x = x[:a.limit]
    x = (x / np.float32(255.0) - np.float32(0.2860)) / np.float32(0.3530)
    x = np.pad(x, ((0, 0), (a.pad, a.pad), (a.pad, a.pad)))[:, None].astype(np.float32)
    os.makedirs(a.workdir, exist_ok=True)
    np.save(os.path.join(a.workdir, "input.npy"), x)
    os.symlink(os.path.abspath(a.onnx), os.path.join(a.workdir, "model.onnx")) if not os.path.exists(
        os.path.join(a.workdir, "model.onnx")) else None
    with open(os.path.join(a.workdir, "manifest.json"), "w") as f:
        json.dump({"models": [{"name": "model", "file": "model.onnx", "inputs": {"input": "input.npy"},
                               "outputs": [{"name": "logits"}]}]}, f)
    ort = subprocess.run(["node", os.path.join(REFEREE, "run_ort.js"), os.path.join(a.workdir, "manifest.json"),
                          os.path.join(a.workdir, "ort")])
    if ort.returncode == 77:
        print("qdq_referee: onnxruntime-node missing; skipped")
        return 77
    if ort.returncode:
        return 1
    sim_dir = os.path.join(a.workdir, "sim")
    r = subprocess.run([a.qeval, "sim", a.onnx, "--profile", "onnx-qdq", "--input",
                        "input=" + os.path.join(a.workdir, "input.npy"), "--output-dir", sim_dir])
    if r.returncode:
        return 1
    lo = np.load(os.path.join(a.workdir, "ort", "model", "logits.npy"))
    ls = np.load(os.path.join(sim_dir, "logits.npy"))
    agree = float(np.mean(lo.argmax(1) == ls.argmax(1)))
    same = int(np.sum(lo.view(np.uint32) == ls.view(np.uint32)))
    cpu = open("/proc/cpuinfo").read()
    vnni = "avx512_vnni" in cpu or "avx_vnni" in cpu
    print(f"qdq_referee: {len(x)} images, top-1 agreement {agree:.5f}, "
          f"bit-identical logits {same}/{lo.size}, CPU VNNI: {'yes' if vnni else 'no (onnxruntime u8s8 may saturate)'}")
    return 0 if agree >= a.min_agreement else 1


if __name__ == "__main__":
    sys.exit(main())
