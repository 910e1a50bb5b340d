#!/usr/bin/python3
"""onnxruntime referee test for `qeval sim --profile onnx-qdq`.

    referee_test.py --qeval PATH/TO/qeval --workdir DIR [--seed S]
                    [--weight-range full|safe] [--threads N ...] [--ort-only]

1. make_models.py builds the QDQ models, inputs and manifest in DIR/models
2. run_ort.js runs them with onnxruntime-node into DIR/ort (optimised graphs in
   DIR/ort_optimized, to check which QDQ groups onnxruntime fused)
3. `qeval sim MODEL --input NAME=FILE ... --output-dir DIR/qeval[-tN]/<model>
   --profile onnx-qdq [--threads N]` per model
4. every output element must be bit-identical (float32 bit patterns after the final
   DequantizeLinear, i.e. equal quantized integers).

Exit 0: all equal; 1: a mismatch or error; 77: skipped (onnxruntime-node missing).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SKIP = 77
# ops onnxruntime should have turned into integer kernels; if one is left in the
# default domain it ran in float and is not an integer referee for that model
FLOAT_COMPUTE = {"Conv", "Gemm", "MatMul", "Add", "GlobalAveragePool", "AveragePool", "Mul"}


def run(cmd, **kw):
    print("+ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, **kw)


def ort_fusion_report(opt_dir, manifest):
    """One line per model with the op types of onnxruntime's optimised graph."""
    try:
        import onnx
    except ImportError:
        print("referee: (python onnx missing; fusion report skipped)")
        return {}
    unfused = {}
    for m in manifest["models"]:
        p = os.path.join(opt_dir, m["name"] + ".optimized.onnx")
        if not os.path.exists(p):
            continue
        g = onnx.load(p).graph
        ops = [(n.domain + "." if n.domain else "") + n.op_type for n in g.node]
        bad = [o for o in ops if o in FLOAT_COMPUTE]
        if bad:
            unfused[m["name"]] = bad
        kernels = sorted({o.split(".")[-1] for o in ops if o.startswith("com.microsoft")})
        print(f"  ort graph {m['name']:16s} {', '.join(kernels)}"
              + (f"  [FLOAT: {', '.join(bad)}]" if bad else ""))
    return unfused


def compare(manifest, ort_dir, sim_dir):
    total = equal = 0
    ok = True
    for m in manifest["models"]:
        for o in m["outputs"]:
            ref_p = os.path.join(ort_dir, m["name"], o["name"] + ".npy")
            sim_p = os.path.join(sim_dir, m["name"], o["name"] + ".npy")
            n = int(np.prod(o["shape"]))
            total += n
            if not os.path.exists(sim_p):
                print(f"  {m['name']:16s} {o['name']:7s} {n:6d} elements: MISSING {sim_p}")
                ok = False
                continue
            ref, sim = np.load(ref_p), np.load(sim_p)
            if sim.dtype != np.float32 or tuple(sim.shape) != tuple(ref.shape):
                print(f"  {m['name']:16s} {o['name']:7s} {n:6d} elements: qeval gave {sim.dtype}"
                      f"{list(sim.shape)}, expected float32{list(ref.shape)}")
                ok = False
                continue
            neq = ref.view(np.uint32) != sim.view(np.uint32)
            bad = int(neq.sum())
            lsb = float(np.max(np.abs(ref.astype(np.float64) - sim.astype(np.float64)))) / o["scale"]
            equal += n - bad
            line = (f"  {m['name']:16s} {o['name']:7s} {n:6d} elements, {bad:6d} mismatches, "
                    f"max |diff| {lsb:.0f} LSB")
            if bad:
                ok = False
                idx = tuple(int(i) for i in np.argwhere(neq)[0])
                line += f"  (first at {idx}: ort {ref[idx]!r}, qeval {sim[idx]!r})"
            print(line)
    return ok, equal, total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qeval", help="path to the qeval binary")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--weight-range", choices=["full", "safe"])
    ap.add_argument("--threads", type=int, action="append",
                    help="run qeval with --threads N (repeatable; default: not passed)")
    ap.add_argument("--node", default=shutil.which("node") or "node")
    ap.add_argument("--ort-only", action="store_true", help="stop after steps 1-2 (models + onnxruntime)")
    args = ap.parse_args()

    if not os.path.isdir(os.path.join(HERE, "node_modules", "onnxruntime-node")):
        print("referee: SKIP: onnxruntime-node is not installed. Install it with\n"
              f"  cd {HERE} && npm install --ignore-scripts")
        return SKIP
    if not args.ort_only and not args.qeval:
        ap.error("--qeval is required unless --ort-only")

    work = os.path.abspath(args.workdir)
    models, ort_dir, opt_dir = (os.path.join(work, d) for d in ("models", "ort", "ort_optimized"))
    for d in (models, ort_dir, opt_dir):
        shutil.rmtree(d, ignore_errors=True)

    cmd = [sys.executable, os.path.join(HERE, "make_models.py"), "--out", models, "--seed", str(args.seed)]
    if args.weight_range:
        cmd += ["--weight-range", args.weight_range]
    if run(cmd).returncode != 0:
        print("referee: FAIL: make_models.py failed")
        return 1
    manifest_p = os.path.join(models, "manifest.json")
    manifest = json.load(open(manifest_p))

    env = dict(os.environ, QEVAL_ORT_OPTIMIZED_DIR=opt_dir)
    if run([args.node, os.path.join(HERE, "run_ort.js"), manifest_p, ort_dir], env=env).returncode != 0:
        print("referee: FAIL: run_ort.js failed")
        return 1
    unfused = ort_fusion_report(opt_dir, manifest)
    for name, ops in unfused.items():
        print(f"referee: warning: onnxruntime left {ops} of {name} in float; "
              "its output is not an integer-kernel reference")
    n_elems = sum(m["elements"] for m in manifest["models"])
    if args.ort_only:
        print(f"referee: ort-only: {len(manifest['models'])} models, {n_elems} output elements in {ort_dir}")
        return 0

    qeval = os.path.abspath(args.qeval)
    if not (os.path.isfile(qeval) and os.access(qeval, os.X_OK)):
        print(f"referee: FAIL: qeval binary not found at {qeval} (build it first)")
        return 1

    all_ok = True
    summary = []
    for threads in (args.threads or [None]):
        tag = "qeval" if threads is None else f"qeval-t{threads}"
        sim_dir = os.path.join(work, tag)
        shutil.rmtree(sim_dir, ignore_errors=True)
        for m in manifest["models"]:
            out = os.path.join(sim_dir, m["name"])
            os.makedirs(out, exist_ok=True)
            cmd = [qeval, "sim", os.path.join(models, m["file"])]
            for name, f in m["inputs"].items():
                cmd += ["--input", f"{name}={os.path.join(models, f)}"]
            cmd += ["--output-dir", out, "--profile", "onnx-qdq"]
            if threads is not None:
                cmd += ["--threads", str(threads)]
            r = run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if r.returncode != 0:
                print(f"referee: qeval sim failed on {m['name']} (exit {r.returncode}):\n{r.stdout[-4000:]}")
                all_ok = False
        print(f"referee: comparing {tag} with onnxruntime")
        ok, equal, total = compare(manifest, ort_dir, sim_dir)
        all_ok = all_ok and ok
        summary.append(f"referee{'' if threads is None else f' (threads {threads})'}: "
                       f"{len(manifest['models'])} models, {equal}/{total} elements equal")
    for line in summary:
        print(line)
    print("referee: PASS" if all_ok else "referee: FAIL")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
