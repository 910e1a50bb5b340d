#!/usr/bin/python3
"""Pure-numpy integer reference for the referee models, to check that onnxruntime's
outputs on this machine are what an exact integer computation gives.

    verify_numpy.py MANIFEST ORT_OUTDIR [--no-s8-to-u8] [--add-variant V] [-v]

It interprets each QDQ model the way onnxruntime (CPU EP, optimisation level 'all')
executes it after fusing QDQ node groups:

  * DQ -> Conv/Gemm -> [Relu ->] Q   (QLinearConv / QGemm; Relu only if Q's zp = qmin):
      acc = sum((x - zx) * (w - zw)) + bias_int32, exact in int64 (checked to fit int32)
      M_c = float32(float32(sx * sw_c) / sy)        (qlinearconv.cc / quant_gemm.cc)
      y   = clamp(rne(float32(acc) * M_c) + zy)     (MlasRequantizeOutput)
  * DQ -> GlobalAveragePool -> Q      (QLinearGlobalAveragePool):
      acc = sum(x) - zx * HW;  M = float32(sx / float32(sy * float32(HW)));  same requant
  * DQ, DQ -> Add -> [Relu ->] Q      (QLinearAdd, MLAS AVX2 kernel qladd_avx2.cpp):
      rA = f32(sA / sC), rB = f32(sB / sC), F = f32(zC) - fma(rA, zA, f32(rB*zB))
      y  = sat(rne(fma(a, rA, fma(b, rB, F))))   on raw stored values a, b
    (the source writes F = zC - (rA*zA + rB*zB); the 1.30 build contracts it into an
    fma, measured with the add_pairs models; --add-variant picks alternatives)
    onnxruntime on x86 first rewrites int8 activation Q/DQ pairs to uint8 (+128 on
    values and zero points; QDQS8ToU8Transformer), which changes these float
    roundings, so int8 Adds are evaluated in the uint8 domain (--no-s8-to-u8 to
    disable).
  * everything else (Q, DQ, Relu, MaxPool, Flatten, Concat) in float32 as the ONNX
    spec says (QLinearConcat's lookup table is exactly Q(DQ(x)); MaxPool/Flatten are
    exact on integers).

QuantizeLinear: clamp(rne(x / scale) + zp) with float32 division (MLAS).
Reports every element where onnxruntime differs from this reference.
"""
import argparse
import json
import os
import sys

import numpy as np
import onnx
from onnx import numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qdq_common import F32, QRANGE, conv2d, fma_f32, has_vnni, maxpool2d, requant_mlas  # noqa: E402

INT_TYPES = {np.dtype(np.int8): "int8", np.dtype(np.uint8): "uint8", np.dtype(np.int32): "int32"}


def attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def bcast_axis(p, ndim, axis):
    p = np.asarray(p)
    if p.ndim == 0 or p.size == 1:
        return p.reshape(())
    shape = [1] * ndim
    shape[axis] = p.size
    return p.reshape(shape)


class Interp:
    def __init__(self, model, s8_to_u8=True, add_variant="avx2"):
        self.g = model.graph
        self.inits = {t.name: numpy_helper.to_array(t) for t in self.g.initializer}
        self.prod = {o: n for n in self.g.node for o in n.output}
        self.cons = {}
        for n in self.g.node:
            for i in n.input:
                self.cons.setdefault(i, []).append(n)
        self.s8_to_u8 = s8_to_u8
        self.add_variant = add_variant
        self.env, self.qtype = {}, {}
        self.fused = []  # (op, output) descriptions

    # -- helpers
    def val(self, name):
        return self.env[name] if name in self.env else self.inits[name]

    def dq_params(self, name):
        """If `name` is produced by DequantizeLinear: (q, scale, zp, qtype, axis)."""
        n = self.prod.get(name)
        if n is None or n.op_type != "DequantizeLinear":
            return None
        q = np.asarray(self.val(n.input[0]))
        qt = self.qtype.get(n.input[0]) or INT_TYPES[np.asarray(self.inits[n.input[0]]).dtype]
        scale = np.asarray(self.val(n.input[1]), dtype=F32)
        zp = np.asarray(self.val(n.input[2])).astype(np.int64) if len(n.input) > 2 else np.zeros((), np.int64)
        return q.astype(np.int64), scale, zp, qt, attr(n, "axis", 1)

    def q_after(self, out):
        """The QuantizeLinear consuming `out` (possibly through a Relu that onnxruntime's
        ReluQuantFusion removes because Q's zero point is qmin): (qnode, relu_or_None)."""
        cs = self.cons.get(out, [])
        if len(cs) != 1:
            return None, None
        c = cs[0]
        if c.op_type == "QuantizeLinear":
            return c, None
        if c.op_type == "Relu":
            cs2 = self.cons.get(c.output[0], [])
            if len(cs2) == 1 and cs2[0].op_type == "QuantizeLinear":
                qn = cs2[0]
                zp = np.asarray(self.val(qn.input[2]))
                if int(zp) == QRANGE[INT_TYPES[zp.dtype]][0]:
                    return qn, c
        return None, None

    def q_params(self, qn):
        zp = np.asarray(self.val(qn.input[2]))
        return F32(self.val(qn.input[1])), int(zp), INT_TYPES[zp.dtype]

    # -- evaluation
    def run(self, feeds):
        self.env.update({k: v.astype(F32) for k, v in feeds.items()})
        done = set()
        for n in self.g.node:
            if id(n) in done:
                continue
            op = n.op_type
            if op in ("Conv", "Gemm", "Add", "GlobalAveragePool"):
                qn, relu = self.q_after(n.output[0])
                ins = [self.dq_params(i) for i in n.input if i]
                if qn is not None and all(p is not None for p in ins):
                    sy, zy, qty = self.q_params(qn)
                    self.env[qn.output[0]] = getattr(self, "fused_" + op)(n, ins, sy, zy, qty)
                    self.qtype[qn.output[0]] = qty
                    done.add(id(qn))
                    if relu is not None:
                        done.add(id(relu))
                    self.fused.append(f"{op}{'+Relu' if relu is not None else ''}->{qn.output[0]}")
                    continue
                self.fused.append(f"UNFUSED {op} {n.name} (float; not a bit-exact reference)")
            getattr(self, "op_" + op)(n)
        return {o.name: self.env[o.name] for o in self.g.output}

    # float32 ops (ONNX semantics)
    def op_QuantizeLinear(self, n):
        x = np.asarray(self.val(n.input[0]), dtype=F32)
        s = F32(self.val(n.input[1]))
        zp = np.asarray(self.val(n.input[2]))
        qt = INT_TYPES[zp.dtype]
        qmin, qmax = QRANGE[qt]
        q = np.clip(np.rint(x / s).astype(np.int64) + int(zp), qmin, qmax)
        self.env[n.output[0]], self.qtype[n.output[0]] = q, qt

    def op_DequantizeLinear(self, n):
        q = np.asarray(self.val(n.input[0])).astype(np.int64)
        s = np.asarray(self.val(n.input[1]), dtype=F32)
        zp = np.asarray(self.val(n.input[2])).astype(np.int64)
        axis = attr(n, "axis", 1)
        if s.size > 1:
            s, zp = bcast_axis(s, q.ndim, axis), bcast_axis(zp, q.ndim, axis)
        self.env[n.output[0]] = (q - zp).astype(F32) * s

    def op_Relu(self, n):
        self.env[n.output[0]] = np.maximum(self.val(n.input[0]), F32(0))

    def op_MaxPool(self, n):
        k, s = attr(n, "kernel_shape"), attr(n, "strides", [1, 1])
        assert not any(attr(n, "pads", [0, 0, 0, 0]))
        self.env[n.output[0]] = maxpool2d(self.val(n.input[0]), tuple(k), tuple(s))

    def op_Flatten(self, n):
        x = self.val(n.input[0])
        a = attr(n, "axis", 1)
        self.env[n.output[0]] = x.reshape(int(np.prod(x.shape[:a])), -1)

    def op_Concat(self, n):
        self.env[n.output[0]] = np.concatenate([self.val(i) for i in n.input], axis=attr(n, "axis"))

    def op_Add(self, n):
        self.env[n.output[0]] = self.val(n.input[0]) + self.val(n.input[1])

    def op_GlobalAveragePool(self, n):
        x = self.val(n.input[0]).astype(np.float64)
        self.env[n.output[0]] = x.mean(axis=(2, 3), keepdims=True).astype(F32)

    def op_Conv(self, n):
        x, w = self.val(n.input[0]).astype(np.float64), self.val(n.input[1]).astype(np.float64)
        y = conv2d(x, w, tuple(attr(n, "strides", [1, 1])), tuple(attr(n, "pads", [0, 0, 0, 0])),
                   tuple(attr(n, "dilations", [1, 1])), attr(n, "group", 1))
        if len(n.input) > 2:
            y = y + self.val(n.input[2]).astype(np.float64)[None, :, None, None]
        self.env[n.output[0]] = y.astype(F32)

    def op_Gemm(self, n):
        a, b = self.val(n.input[0]).astype(np.float64), self.val(n.input[1]).astype(np.float64)
        if attr(n, "transB", 0):
            b = b.T
        y = a @ b
        if len(n.input) > 2:
            y = y + self.val(n.input[2]).astype(np.float64)
        self.env[n.output[0]] = y.astype(F32)

    # fused integer kernels (onnxruntime's QLinear* semantics)
    def fused_Conv(self, n, ins, sy, zy, qty):
        (xq, sx, zx, _, _), (wq, sw, zw, _, _) = ins[0], ins[1]
        acc = conv2d(xq - int(zx), wq - bcast_axis(zw, 4, 0),
                     tuple(attr(n, "strides", [1, 1])), tuple(attr(n, "pads", [0, 0, 0, 0])),
                     tuple(attr(n, "dilations", [1, 1])), attr(n, "group", 1))
        if len(ins) > 2:
            acc = acc + ins[2][0][None, :, None, None]
        m = (F32(sx) * np.atleast_1d(sw).astype(F32)).astype(F32) / F32(sy)
        return requant_mlas(acc, m.astype(F32)[None, :, None, None] if m.size > 1 else m[0], zy, qty)

    def fused_Gemm(self, n, ins, sy, zy, qty):
        (aq, sa, za, _, _), (bq, sb, zb, _, _) = ins[0], ins[1]
        assert attr(n, "transB", 0) == 1 and attr(n, "transA", 0) == 0
        assert attr(n, "alpha", 1.0) == 1.0 and attr(n, "beta", 1.0) == 1.0
        acc = (aq - int(za)) @ (bq - bcast_axis(zb, 2, 0)).T
        if len(ins) > 2:
            acc = acc + ins[2][0][None, :]
        m = (F32(sa) * np.atleast_1d(sb).astype(F32)).astype(F32) / F32(sy)
        return requant_mlas(acc, m.astype(F32)[None, :] if m.size > 1 else m[0], zy, qty)

    def fused_GlobalAveragePool(self, n, ins, sy, zy, qty):
        xq, sx, zx, _, _ = ins[0]
        hw = xq.shape[2] * xq.shape[3]
        acc = xq.sum(axis=(2, 3), keepdims=True) - int(zx) * hw
        m = F32(sx) / (F32(sy) * F32(hw))
        return requant_mlas(acc, m, zy, qty)

    def fused_Add(self, n, ins, sc, zc, qty):
        (a, sa, za, qta, _), (b, sb, zb, qtb, _) = ins
        za, zb = int(za), int(zb)
        shift = 128 if (self.s8_to_u8 and qty == "int8") else 0
        a, b, za, zb, zc = a + shift, b + shift, za + shift, zb + shift, zc + shift
        lo, hi = (0, 255) if shift or qty == "uint8" else (-128, 127)
        ra, rb = F32(sa) / F32(sc), F32(sb) / F32(sc)
        af, bf = a.astype(F32), b.astype(F32)
        if self.add_variant == "avx2":
            # qladd_avx2.cpp as built in onnxruntime 1.30 (GCC contracts the scalar
            # "zC - (rA*zA + rB*zB)" into zC - fma(rA, zA, rB*zB); measured, see README)
            fixed = F32(zc) - fma_f32(ra, F32(za), F32(rb * F32(zb)))
            v = fma_f32(af, ra, fma_f32(bf, rb, F32(fixed)))
        elif self.add_variant == "avx2_nocontract":  # same source, fixed part without fma
            fixed = F32(zc) - (F32(ra * F32(za)) + F32(rb * F32(zb)))
            v = fma_f32(af, ra, fma_f32(bf, rb, F32(fixed)))
        elif self.add_variant == "sse":         # qladd.cpp SSE2 path, no fma
            fixed = F32(zc) - (F32(ra * F32(za)) + F32(rb * F32(zb)))
            v = (F32(fixed) + af * ra) + bf * rb
        elif self.add_variant == "raw":         # qladd.cpp scalar fallback
            v = ((F32(sa) * (a - za).astype(F32)) + (F32(sb) * (b - zb).astype(F32))) / F32(sc)
            v = v + F32(zc)
        else:
            raise ValueError(self.add_variant)
        y = np.clip(np.rint(np.asarray(v, dtype=F32)).astype(np.int64), lo, hi)
        return y - shift


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("manifest")
    ap.add_argument("ort_outdir")
    ap.add_argument("--no-s8-to-u8", action="store_true")
    ap.add_argument("--add-variant", default="avx2",
                    choices=["avx2", "avx2_nocontract", "sse", "raw"])
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()

    man = json.load(open(args.manifest))
    base = os.path.dirname(os.path.abspath(args.manifest))
    print(f"verify_numpy: weights {man['weight_range']} {man['weight_int_range']}, "
          f"CPU VNNI: {'yes' if has_vnni() else 'no (AVX2 only)'}, QLinearAdd model: {args.add_variant}, "
          f"int8->uint8 rewrite: {'off' if args.no_s8_to_u8 else 'on'}")
    tot = bad = 0
    for m in man["models"]:
        model = onnx.load(os.path.join(base, m["file"]))
        it = Interp(model, not args.no_s8_to_u8, args.add_variant)
        feeds = {k: np.load(os.path.join(base, f)) for k, f in m["inputs"].items()}
        outs = it.run(feeds)
        for o in m["outputs"]:
            ref = outs[o["name"]].astype(F32)
            ort = np.load(os.path.join(args.ort_outdir, m["name"], o["name"] + ".npy"))
            assert ref.shape == ort.shape, (ref.shape, ort.shape)
            neq = ref.view(np.uint32) != ort.astype(F32).view(np.uint32)
            k = int(neq.sum())
            lsb = np.abs(ref.astype(np.float64) - ort.astype(np.float64)) / o["scale"]
            tot += ref.size
            bad += k
            print(f"  {m['name']:16s} {o['name']:7s} {ref.size:5d} elements, {k:4d} differ"
                  f" (max {lsb.max():.0f} LSB)")
            if k and args.verbose:
                for idx in list(zip(*np.nonzero(neq)))[:10]:
                    print(f"      at {tuple(int(i) for i in idx)}: numpy {ref[idx]!r} ort {ort[idx]!r}"
                          f" ({lsb[idx]:.0f} LSB)")
        if args.verbose:
            print("      groups: " + "; ".join(it.fused))
        unf = [f for f in it.fused if f.startswith("UNFUSED")]
        if unf:
            print("      " + "; ".join(unf))
    print(f"verify_numpy: {len(man['models'])} models, {tot - bad}/{tot} elements equal to the outputs given")
    sys.exit(0 if bad == 0 else 1)


if __name__ == "__main__":
    main()
