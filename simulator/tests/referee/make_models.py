#!/usr/bin/python3
"""Build small QDQ ONNX models (the format onnxruntime's quantizer writes) plus
random float inputs and a manifest, for the onnxruntime-vs-qeval referee test.

    make_models.py --out DIR [--seed S] [--weight-range full|safe]

Format of every model (opset 13):
  float graph input -> QuantizeLinear (per-tensor activation scale / zero point)
  DequantizeLinear before every op input; weights are int8 initializers with a
  per-channel (axis=0) DequantizeLinear, zero point 0; biases are int32
  initializers with DequantizeLinear scale = float32(x_scale * w_scale[c]), zero
  point 0; QuantizeLinear after every op output; DequantizeLinear before each
  float graph output.

Relu appears in three styles: (1) Conv -> Relu -> Q(zp = qmin) (onnxruntime's
ReluQuantFusion removes the Relu, then fuses QLinearConv), (2) Conv -> Q(zp = qmin)
with no Relu node (what onnxruntime's quantizer emits after folding), (3) a separate
DQ -> Relu -> Q (float Relu between integer tensors; with zp = qmin onnxruntime
again drops the Relu, otherwise it runs in float).

Weights: --weight-range full uses int8 [-128, 127]; safe uses [-64, 63] so that
onnxruntime's AVX2 (non-VNNI) u8s8 kernels, whose vpmaddubsw saturates pairs of
products at int16, stay exact (255*64*2 < 32768). Default: full when /proc/cpuinfo
has avx512_vnni or avx_vnni, else safe.
"""
import argparse
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qdq_common import (F32, NP_DTYPE, QRANGE, conv2d, dequantize_f32, has_vnni,  # noqa: E402
                        maxpool2d, quantize_f32, save_npy)

OPSET = 13
IR_VERSION = 8
ONNX_QTYPE = {"int8": TensorProto.INT8, "uint8": TensorProto.UINT8}


class QT:
    """A quantized tensor in the graph: name of the Q output, its parameters and the
    calibration-time values (q: integers, f: dequantized float)."""

    def __init__(self, name, scale, zp, qtype, q, src):
        self.name, self.scale, self.zp, self.qtype = name, F32(scale), int(zp), qtype
        self.q = q
        self.src = src  # float tensor the QuantizeLinear reads
        self.uses = 0
        self.f = dequantize_f32(q, self.scale, self.zp).astype(np.float64)

    @property
    def shape(self):
        return list(self.q.shape)


class Builder:
    def __init__(self, name, act, rng, wlo, whi):
        self.name, self.act, self.rng = name, act, rng
        self.wlo, self.whi = wlo, whi
        self.nodes, self.inits, self.inputs, self.outputs = [], [], [], []
        self.input_values, self.output_info = {}, []
        self.dq_cache = {}
        self.counter = 0
        self.qmin, self.qmax = QRANGE[act]
        # activation zero points, "symmetric-ish", cycled through per tensor
        self.zps = [3, -5, 0, 7] if act == "int8" else [120, 128, 115, 131]
        self.zp_i = 0

    # -- naming / initializers
    def uid(self, base):
        self.counter += 1
        return f"{base}_{self.counter}"

    def init(self, name, arr):
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def next_zp(self):
        z = self.zps[self.zp_i % len(self.zps)]
        self.zp_i += 1
        return z

    def qparams(self, base, scale, zp):
        s = self.init(self.uid(base + "_scale"), np.array(F32(scale), dtype=np.float32))
        z = self.init(self.uid(base + "_zp"), np.array(zp, dtype=NP_DTYPE[self.act]))
        return s, z

    # -- calibration: choose a scale so that about (100 - pct)% of values saturate
    def calib_scale(self, f, zp, pct):
        pos_room, neg_room = self.qmax - zp, zp - self.qmin
        s = 0.0
        if pos_room > 0:
            s = max(s, np.percentile(np.maximum(f, 0), pct) / pos_room)
        if neg_room > 0:
            s = max(s, np.percentile(np.maximum(-f, 0), pct) / neg_room)
        return F32(max(s, 1e-4))

    def quantize(self, src_name, f, zp=None, pct=99.7, base="q", scale=None):
        """Emit QuantizeLinear(src_name) with a calibrated (or given) scale; return its QT."""
        if zp is None:
            zp = self.next_zp()
        if scale is None:
            scale = self.calib_scale(f, zp, pct)
        s, z = self.qparams(base, scale, zp)
        out = self.uid(base)
        self.nodes.append(helper.make_node("QuantizeLinear", [src_name, s, z], [out], name=out + "_Q"))
        return QT(out, scale, zp, self.act, quantize_f32(f.astype(np.float32), scale, zp, self.act), src_name)

    def requantize_same(self, src_name, qt_like, q, base):
        """QuantizeLinear with the same scale / zero point as qt_like (MaxPool, Flatten)."""
        s, z = self.qparams(base, qt_like.scale, qt_like.zp)
        out = self.uid(base)
        self.nodes.append(helper.make_node("QuantizeLinear", [src_name, s, z], [out], name=out + "_Q"))
        return QT(out, qt_like.scale, qt_like.zp, self.act, q, src_name)

    def consume(self, qt):
        """Name of a quantized tensor holding qt for one more consumer. uint8 models
        share one Q (and one DQ) between consumers; int8 models give every consumer
        its own Q -> DQ pair (the quantizer's DedicatedQDQPair style). On x86,
        onnxruntime converts int8 activation Q/DQ pairs to uint8 only where a Q has a
        single consumer; an int8 Q with several consumers stays int8, its consumers are
        not fused and run in float (see README.md)."""
        qt.uses += 1
        if self.act == "uint8" or qt.uses == 1:
            return qt.name
        s, z = self.qparams(qt.name + "_dup", qt.scale, qt.zp)
        out = self.uid(qt.name + "_dup")
        self.nodes.append(helper.make_node("QuantizeLinear", [qt.src, s, z], [out], name=out + "_Q"))
        return out

    def dq(self, qt):
        if self.act == "uint8" and qt.name in self.dq_cache:
            return self.dq_cache[qt.name]
        qn = self.consume(qt)
        s, z = self.qparams(qn + "_dq", qt.scale, qt.zp)
        out = qn + "_dq"
        self.nodes.append(helper.make_node("DequantizeLinear", [qn, s, z], [out], name=out))
        self.dq_cache[qt.name] = out
        return out

    # -- graph input / output
    def input(self, name, shape, scale_gain=1.0, pct=99.0):
        x = (self.rng.standard_normal(shape) * scale_gain).astype(np.float32)
        # heavier tails so the input QuantizeLinear saturates a little
        x += (self.rng.random(shape) < 0.02) * self.rng.standard_normal(shape).astype(np.float32) * 3 * scale_gain
        x = x.astype(np.float32)
        self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))
        self.input_values[name] = x
        return self.quantize(name, x.astype(np.float64), pct=pct, base=name + "_q")

    def input_exact(self, name, q, scale, zp):
        """Float input whose QuantizeLinear gives exactly the integers q."""
        x = dequantize_f32(q, scale, zp)
        self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(q.shape)))
        self.input_values[name] = x
        return self.quantize(name, x.astype(np.float64), zp=zp, scale=scale, base=name + "_q")

    def output(self, qt, name):
        s, z = self.qparams(name + "_dq", qt.scale, qt.zp)
        qn = self.consume(qt)
        self.nodes.append(helper.make_node("DequantizeLinear", [qn, s, z], [name], name=name + "_DQ"))
        self.outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, qt.shape))
        self.output_info.append({"name": name, "shape": qt.shape, "scale": float(qt.scale),
                                 "zero_point": qt.zp, "qtype": qt.qtype})

    # -- weights
    def weights(self, shape, fan_in):
        w_q = self.rng.integers(self.wlo, self.whi + 1, size=shape, dtype=np.int64).astype(np.int8)
        # float weight std ~ sqrt(2 / fan_in); uniform ints have std ~ whi / sqrt(3)
        base = np.sqrt(2.0 / fan_in) * np.sqrt(3.0) / self.whi
        w_scale = (base * self.rng.uniform(0.6, 1.4, size=shape[0])).astype(np.float32)
        return w_q, w_scale

    def weight_dq(self, base, w_q, w_scale):
        wn = self.init(self.uid(base + "_w"), w_q)
        ws = self.init(wn + "_scale", w_scale)
        wz = self.init(wn + "_zp", np.zeros(w_scale.shape, dtype=np.int8))
        out = wn + "_dq"
        self.nodes.append(helper.make_node("DequantizeLinear", [wn, ws, wz], [out], name=out, axis=0))
        return out

    def bias_dq(self, base, x_scale, w_scale, std):
        b_scale = (F32(x_scale) * w_scale.astype(np.float32)).astype(np.float32)  # float32 product
        b_f = self.rng.normal(0.0, std, size=w_scale.shape)
        b_q = np.clip(np.rint(b_f / b_scale.astype(np.float64)), -2**31, 2**31 - 1).astype(np.int32)
        bn = self.init(self.uid(base + "_b"), b_q)
        bs = self.init(bn + "_scale", b_scale)
        bz = self.init(bn + "_zp", np.zeros(w_scale.shape, dtype=np.int32))
        out = bn + "_dq"
        self.nodes.append(helper.make_node("DequantizeLinear", [bn, bs, bz], [out], name=out, axis=0))
        return out, b_q.astype(np.float64) * b_scale.astype(np.float64)

    # -- output stage with the three Relu styles
    def finish(self, op_out, f, relu, base, relu_zp="qmin"):
        """relu: None, 'node' (op -> Relu -> Q zp=qmin), 'zp' (op -> Q zp=qmin),
        'separate' (op -> Q -> DQ -> Relu -> Q; relu_zp 'qmin' or 'offset')."""
        if relu is None:
            return self.quantize(op_out, f, base=base)
        if relu == "node":
            r = self.uid(base + "_relu")
            self.nodes.append(helper.make_node("Relu", [op_out], [r], name=r))
            return self.quantize(r, np.maximum(f, 0), zp=self.qmin, base=base)
        if relu == "zp":
            return self.quantize(op_out, np.maximum(f, 0), zp=self.qmin, base=base)
        if relu == "separate":
            q1 = self.quantize(op_out, f, base=base)
            r = self.uid(base + "_relu")
            self.nodes.append(helper.make_node("Relu", [self.dq(q1)], [r], name=r))
            zp = self.qmin if relu_zp == "qmin" else self.qmin + 10
            return self.quantize(r, np.maximum(q1.f, 0), zp=zp, base=base + "_r")
        raise ValueError(relu)

    # -- ops
    def conv(self, x, m, k, stride=1, pads=None, dil=1, group=1, relu=None, relu_zp="qmin"):
        c = x.shape[1]
        if pads is None:
            p = dil * (k - 1) // 2
            pads = (p, p, p, p)
        w_q, w_s = self.weights((m, c // group, k, k), fan_in=(c // group) * k * k)
        wdq = self.weight_dq("conv", w_q, w_s)
        f = conv2d(x.f, w_q.astype(np.float64) * w_s.astype(np.float64)[:, None, None, None],
                   (stride, stride), pads, (dil, dil), group)
        bdq, b_f = self.bias_dq("conv", x.scale, w_s, std=0.3 * float(np.std(f)) + 1e-3)
        f = f + b_f[None, :, None, None]
        out = self.uid("conv")
        self.nodes.append(helper.make_node(
            "Conv", [self.dq(x), wdq, bdq], [out], name=out, kernel_shape=[k, k],
            strides=[stride, stride], pads=[pads[0], pads[1], pads[2], pads[3]],
            dilations=[dil, dil], group=group))
        return self.finish(out, f, relu, "conv_out", relu_zp)

    def add(self, a, b, relu=None, relu_zp="qmin", scale=None, zp=None):
        out = self.uid("add")
        self.nodes.append(helper.make_node("Add", [self.dq(a), self.dq(b)], [out], name=out))
        if scale is not None:
            return self.quantize(out, a.f + b.f, zp=zp, scale=scale, base="add_out")
        return self.finish(out, a.f + b.f, relu, "add_out", relu_zp)

    def concat(self, xs):
        out = self.uid("concat")
        self.nodes.append(helper.make_node("Concat", [self.dq(x) for x in xs], [out], name=out, axis=1))
        return self.quantize(out, np.concatenate([x.f for x in xs], axis=1), base="concat_out")

    def maxpool(self, x, k=2, s=2):
        out = self.uid("maxpool")
        self.nodes.append(helper.make_node("MaxPool", [self.dq(x)], [out], name=out,
                                           kernel_shape=[k, k], strides=[s, s]))
        return self.requantize_same(out, x, maxpool2d(x.q, (k, k), (s, s)), "maxpool_out")

    def gap(self, x):
        out = self.uid("gap")
        self.nodes.append(helper.make_node("GlobalAveragePool", [self.dq(x)], [out], name=out))
        return self.quantize(out, x.f.mean(axis=(2, 3), keepdims=True), base="gap_out")

    def flatten(self, x):
        out = self.uid("flatten")
        self.nodes.append(helper.make_node("Flatten", [self.dq(x)], [out], name=out, axis=1))
        return self.requantize_same(out, x, x.q.reshape(x.q.shape[0], -1), "flatten_out")

    def gemm(self, x, n, relu=None):
        k = x.shape[1]
        w_q, w_s = self.weights((n, k), fan_in=k)
        wdq = self.weight_dq("fc", w_q, w_s)
        f = x.f @ (w_q.astype(np.float64) * w_s.astype(np.float64)[:, None]).T
        bdq, b_f = self.bias_dq("fc", x.scale, w_s, std=0.3 * float(np.std(f)) + 1e-3)
        f = f + b_f[None, :]
        out = self.uid("gemm")
        self.nodes.append(helper.make_node("Gemm", [self.dq(x), wdq, bdq], [out], name=out, transB=1))
        return self.finish(out, f, relu, "gemm_out")

    def model(self):
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="qeval-referee")
        m.ir_version = IR_VERSION
        onnx.checker.check_model(m)
        return m


# ------------------------------------------------------------------------ models

def m_conv_chain(b):
    """(a) three 3x3 convs: Relu node folded; stride 2 with asymmetric pads and Relu
    folded into zp; dilation 2 with a separate Relu."""
    x = b.input("x", (2, 3, 12, 12))
    c1 = b.conv(x, 8, 3, relu="node")
    c2 = b.conv(c1, 8, 3, stride=2, pads=(0, 0, 1, 1), relu="zp")
    c3 = b.conv(c2, 8, 3, dil=2, relu="separate", relu_zp="offset" if b.act == "int8" else "qmin")
    b.output(c3, "y")


def m_residual(b):
    """(b) conv-relu-conv + identity shortcut, Add, Relu."""
    x = b.input("x", (2, 8, 8, 8))
    c1 = b.conv(x, 8, 3, relu="zp")
    c2 = b.conv(c1, 8, 3)
    if b.act == "int8":
        s = b.add(c2, x, relu="node")
    else:
        s = b.add(c2, x, relu="separate", relu_zp="qmin")
    b.output(s, "y")


def m_dw_pw(b):
    """(c) depthwise 3x3 (group = channels) + pointwise 1x1."""
    x = b.input("x", (2, 8, 10, 10))
    d = b.conv(x, 8, 3, group=8, relu="zp")
    d2 = b.conv(d, 8, 3, stride=2, group=8, relu="node")
    p = b.conv(d2, 16, 1, relu="separate", relu_zp="qmin" if b.act == "int8" else "offset")
    b.output(p, "y")


def m_linear_head(b):
    """(d) conv -> GlobalAveragePool -> Flatten -> Gemm(transB=1)."""
    x = b.input("x", (2, 3, 12, 12))
    c = b.conv(x, 16, 3, stride=2, relu="node")
    g = b.gap(c)
    f = b.flatten(g)
    y = b.gemm(f, 10)
    b.output(f, "feat")
    b.output(y, "logits")


def m_concat_pool(b):
    """(e) Concat of two conv branches with different output scales, MaxPool 2x2."""
    x = b.input("x", (2, 3, 12, 12))
    b1 = b.conv(x, 6, 3, relu="zp")
    b2 = b.conv(x, 4, 1)
    c = b.concat([b1, b2])
    mp = b.maxpool(c)
    b.output(mp, "y")


def _add_variants(a, b, sa, sb, sc, za, zb, zc, shift):
    """Fast float64 emulation of candidate QLinearAdd formulas (for choosing scales
    only; verify_numpy.py has the exact one). Returns dict name -> int results."""
    f64 = np.float64

    def fma(x, y, z):
        return (x.astype(f64) * f64(y) + f64(z)).astype(F32)

    def formulas(sh):
        A, B, zA, zB, zC = a + sh, b + sh, za + sh, zb + sh, zc + sh
        ra, rb = F32(sa) / F32(sc), F32(sb) / F32(sc)
        fixed_c = F32(F32(zC) - fma(np.array(ra), F32(zA), F32(rb * F32(zB))))
        fixed = F32(F32(zC) - (F32(ra * F32(zA)) + F32(rb * F32(zB))))
        af, bf = A.astype(F32), B.astype(F32)
        fma_v = fma(af, ra, fma(bf, rb, fixed_c))
        nc_v = fma(af, ra, fma(bf, rb, fixed))
        sse_v = (fixed + af * ra) + bf * rb
        return [np.rint(x).astype(np.int64) - sh for x in (fma_v, nc_v, sse_v)]

    fma_s, nc_s, sse_s = formulas(shift)
    out = {"avx2_fma": fma_s, "avx2_nocontract": nc_s, "sse": sse_s}
    if shift:
        out["no_s8_to_u8"] = formulas(0)[0]
    raw = (F32(sa) * (a - za).astype(F32) + F32(sb) * (b - zb).astype(F32)) / F32(sc)
    out["raw"] = np.rint(raw + F32(zc)).astype(np.int64)
    return out


def m_add_pairs(b):
    """(f) QLinearAdd on all 256 x 256 pairs of stored values; scales picked (by a
    deterministic search) so that the float formula matters: onnxruntime's AVX2
    kernel (fmas, int8 done in the uint8 domain) differs from other plausible
    formulas on some elements (see verify_numpy.py --add-variant)."""
    qmin, qmax = b.qmin, b.qmax
    qa, qb = np.meshgrid(np.arange(qmin, qmax + 1), np.arange(qmin, qmax + 1), indexing="ij")
    za, zb, zc = (3, -5, 1) if b.act == "int8" else (120, 131, 126)
    shift = 128 if b.act == "int8" else 0
    best = None
    for _ in range(200):
        sa = F32(b.rng.uniform(0.005, 0.05))
        sb = F32(sa * b.rng.uniform(0.3, 3.0))
        sc = F32((sa + sb) * b.rng.uniform(0.55, 1.1))
        v = _add_variants(qa, qb, sa, sb, sc, za, zb, zc, shift)
        ref = np.clip(v["avx2_fma"], qmin, qmax)
        score = min(int((np.clip(x, qmin, qmax) != ref).sum()) for k, x in v.items() if k != "avx2_fma")
        if best is None or score > best[0]:
            best = (score, sa, sb, sc)
    _, sa, sb, sc = best
    xa = b.input_exact("a", qa.reshape(1, 1, 256, 256), sa, za)
    xb = b.input_exact("b", qb.reshape(1, 1, 256, 256), sb, zb)
    y = b.add(xa, xb, scale=sc, zp=zc)
    b.output(y, "y")


MODELS = [("conv_chain", m_conv_chain), ("residual", m_residual), ("dw_pw", m_dw_pw),
          ("linear_head", m_linear_head), ("concat_pool", m_concat_pool), ("add_pairs", m_add_pairs)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--weight-range", choices=["full", "safe"], default=None)
    args = ap.parse_args()

    vnni = has_vnni()
    if args.weight_range is None:
        wr = "full" if vnni else "safe"
        why = "CPU has VNNI" if vnni else "CPU lacks avx512_vnni/avx_vnni (onnxruntime's AVX2 u8s8 kernels saturate)"
        print(f"make_models: weight range {wr} (default: {why})")
    else:
        wr = args.weight_range
        print(f"make_models: weight range {wr} (requested)")
        if wr == "full" and not vnni:
            print("make_models: warning: full-range weights on a CPU without VNNI; onnxruntime "
                  "may saturate in vpmaddubsw and differ from exact integer results")
    wlo, whi = (-128, 127) if wr == "full" else (-64, 63)

    os.makedirs(args.out, exist_ok=True)
    manifest = {"seed": args.seed, "weight_range": wr, "weight_int_range": [wlo, whi],
                "opset": OPSET, "ir_version": IR_VERSION, "models": []}
    for mi, (base, fn) in enumerate(MODELS):
        for ai, act in enumerate(["int8", "uint8"]):
            name = f"{base}_{'i8' if act == 'int8' else 'u8'}"
            rng = np.random.default_rng([args.seed, mi, ai])
            b = Builder(name, act, rng, wlo, whi)
            fn(b)
            m = b.model()
            onnx.save(m, os.path.join(args.out, name + ".onnx"))
            inputs = {}
            for iname, val in b.input_values.items():
                fname = f"{name}.input_{iname}.npy"
                save_npy(os.path.join(args.out, fname), val)
                inputs[iname] = fname
            manifest["models"].append({
                "name": name, "file": name + ".onnx", "activation": act, "doc": fn.__doc__.strip(),
                "inputs": inputs, "outputs": b.output_info,
                "elements": int(sum(np.prod(o["shape"]) for o in b.output_info)),
                "nodes": len(m.graph.node)})
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    total = sum(m["elements"] for m in manifest["models"])
    print(f"make_models: wrote {len(manifest['models'])} models, {total} output elements, "
          f"to {args.out}/manifest.json")


if __name__ == "__main__":
    main()
