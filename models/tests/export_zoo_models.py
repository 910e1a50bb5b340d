"""Exports a zoo model's PyTorch mirror (models/peers/zoo_torch.py) as
TorchScript and ONNX with Debian's python3-torch, together with its weights
(one .npy per state_dict entry), an input batch and PyTorch's logits, for
models/import_test.cc. Also writes two models with an op qeval does not
import (ELU), to check the error names it.

usage: export_zoo_models.py --out DIR [--model resnet8]
"""
import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "peers"))
import zoo_torch  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--model", default="resnet8")
    a = ap.parse_args()
    os.makedirs(os.path.join(a.out, "weights"), exist_ok=True)
    torch.manual_seed(0)
    m, size = zoo_torch.build(a.model)
    # Non-trivial BatchNorm parameters and statistics, so a BN mistake shows.
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.normal_(0, 0.1)
                mod.running_mean.normal_(0, 0.1)
                mod.running_var.uniform_(0.5, 2.0)
    m.eval()
    for name, t in m.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue
        np.save(os.path.join(a.out, "weights", name + ".npy"), t.detach().numpy().astype(np.float32))
    x = torch.randn(4, 1, size, size)
    with torch.no_grad():
        ref = m(x)
    np.save(os.path.join(a.out, "input.npy"), x.numpy())
    np.save(os.path.join(a.out, "torch_logits.npy"), ref.numpy())
    traced = torch.jit.trace(m, x)
    traced.save(os.path.join(a.out, a.model + ".pt"))
    torch.onnx.export(m, x, os.path.join(a.out, a.model + ".onnx"), opset_version=13,
                      input_names=["input"], output_names=["logits"])

    class Elu(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.elu(x)

    e = Elu().eval()
    torch.jit.trace(e, x).save(os.path.join(a.out, "elu.pt"))
    torch.onnx.export(e, x, os.path.join(a.out, "elu.onnx"), opset_version=13)
    print(f"exported {a.model} to {a.out}")


if __name__ == "__main__":
    main()
