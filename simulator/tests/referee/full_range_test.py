#!/usr/bin/python3
"""Full-range int8 weights: qeval sim vs the independent numpy integer reference.

onnxruntime is not exact with full-range weights on CPUs without VNNI (its u8 x s8
GEMM saturates pairs of products at int16: DESIGN.md trap c), so on such machines
the referee test uses weights in [-64, 63]. This test covers the full range
[-127, 127] everywhere, against verify_numpy.py (exact int64 accumulation and
onnxruntime's requantisation formulas), never against a saturating kernel.

    full_range_test.py --qeval PATH --workdir DIR [--seed S]
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--qeval", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    models = os.path.join(args.workdir, "models")
    out = os.path.join(args.workdir, "qeval")
    subprocess.run([sys.executable, os.path.join(HERE, "make_models.py"), "--out", models,
                    "--seed", str(args.seed), "--weight-range", "full"], check=True)
    manifest = os.path.join(models, "manifest.json")
    with open(manifest) as f:
        m = json.load(f)
    for model in m["models"]:
        cmd = [args.qeval, "sim", os.path.join(models, model["file"]), "--output-dir",
               os.path.join(out, model["name"]), "--profile", "onnx-qdq"]
        for name, path in model["inputs"].items():
            cmd += ["--input", f"{name}={os.path.join(models, path)}"]
        r = subprocess.run(cmd, stdout=subprocess.DEVNULL)
        if r.returncode != 0:
            print(f"full-range: qeval sim failed on {model['name']}")
            return 1
    # verify_numpy compares its exact reference with the outputs in `out`.
    r = subprocess.run([sys.executable, os.path.join(HERE, "verify_numpy.py"), manifest, out])
    print("full-range: " + ("PASS" if r.returncode == 0 else "FAIL"))
    return r.returncode


if __name__ == "__main__":
    sys.exit(main())
