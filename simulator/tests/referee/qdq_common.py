"""Shared numpy helpers for the onnxruntime referee test (make_models.py, verify_numpy.py).

Only numpy is needed. Integer helpers are exact (int64); float helpers used for
ONNX/onnxruntime semantics are written so every step is one IEEE float32 operation
(numpy float32 arithmetic rounds each operation to nearest even).
"""
from fractions import Fraction

import numpy as np

F32 = np.float32

QRANGE = {
    "int8": (-128, 127),
    "uint8": (0, 255),
}
NP_DTYPE = {"int8": np.int8, "uint8": np.uint8}


def has_vnni():
    """True when /proc/cpuinfo lists avx512_vnni or avx_vnni (onnxruntime's u8s8
    GEMM is exact there; on AVX2-only CPUs vpmaddubsw saturates pairs at int16)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = set()
            for line in f:
                if line.startswith("flags"):
                    flags.update(line.split(":", 1)[1].split())
        return "avx512_vnni" in flags or "avx_vnni" in flags
    except OSError:
        return False


# ---------------------------------------------------------------- float32 semantics

def quantize_f32(x, scale, zp, qtype):
    """ONNX QuantizeLinear as onnxruntime/MLAS does it: x / scale (float32 division),
    round half to even, + zero point, saturate."""
    qmin, qmax = QRANGE[qtype]
    x = np.asarray(x, dtype=F32)
    v = np.rint(x / F32(scale)).astype(np.int64) + int(zp)
    return np.clip(v, qmin, qmax)


def dequantize_f32(q, scale, zp):
    """ONNX DequantizeLinear: (q - zp) * scale in float32."""
    return (np.asarray(q, dtype=np.int64) - int(zp)).astype(F32) * F32(scale)


def requant_mlas(acc, mult, zp, qtype):
    """MlasRequantizeOutput: float32(acc) * float32 multiplier, round half even
    (cvtps2dq), clamp to [qmin - zp, qmax - zp], + zp. acc is int64 (must fit int32)."""
    acc = np.asarray(acc, dtype=np.int64)
    assert np.all(np.abs(acc) < 2**31), "accumulator overflows int32"
    qmin, qmax = QRANGE[qtype]
    v = acc.astype(F32) * np.asarray(mult, dtype=F32)
    v = np.rint(v).astype(np.int64) + int(zp)
    return np.clip(v, qmin, qmax)


def round_to_f32(fr):
    """Correctly round an exact Fraction to float32 (round half to even)."""
    d = float(fr)  # correctly rounded to float64
    f = F32(d)
    if Fraction(d) == fr:
        return f
    # float64 -> float32 may double-round only if d is exactly a float32 midpoint
    lo = np.nextafter(f, F32(-np.inf)) if float(f) > d else f
    hi = np.nextafter(f, F32(np.inf)) if float(f) < d else f
    if lo == hi:
        return f
    mid = (Fraction(float(lo)) + Fraction(float(hi))) / 2
    if Fraction(d) != mid:
        return f
    return lo if fr < mid else hi


def fma_f32(a, b, c):
    """Elementwise float32 fused multiply-add (one rounding), exact via Fractions."""
    a = np.asarray(a, dtype=F32)
    b = np.asarray(b, dtype=F32)
    c = np.asarray(c, dtype=F32)
    shape = np.broadcast_shapes(a.shape, b.shape, c.shape)
    a, b, c = (np.broadcast_to(v, shape).reshape(-1) for v in (a, b, c))
    # fast path: product of two float32 is exact in float64; the float64 sum is exact
    # when the float64 TwoSum error term is zero.
    p = a.astype(np.float64) * b.astype(np.float64)
    s = p + c.astype(np.float64)
    bb = s - p
    err = (p - (s - bb)) + (c.astype(np.float64) - bb)
    out = s.astype(F32)
    # exact float64 sums can still double-round at float32 midpoints; redo those and
    # every inexact sum with Fractions.
    mid_suspect = np.abs(out.astype(np.float64) - s) > 0
    redo = (err != 0) | mid_suspect
    for i in np.nonzero(redo)[0]:
        fr = Fraction(float(a[i])) * Fraction(float(b[i])) + Fraction(float(c[i]))
        out[i] = round_to_f32(fr)
    return out.reshape(shape)


# ---------------------------------------------------------------- tensor ops (any dtype)

def conv2d(x, w, stride=(1, 1), pads=(0, 0, 0, 0), dil=(1, 1), group=1, pad_value=0):
    """NCHW conv, w: [M, C/group, kh, kw]; pads = (top, left, bottom, right).
    Works on int64 (exact) or float64 arrays. pad_value is the value used for padding
    (the input zero point when x holds raw quantized values)."""
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    assert c == cg * group and m % group == 0
    pt, pl, pb, pr = pads
    xp = np.full((n, c, h + pt + pb, wd + pl + pr), pad_value, dtype=x.dtype)
    xp[:, :, pt:pt + h, pl:pl + wd] = x
    sh, sw = stride
    dh, dw = dil
    oh = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + pl + pr - dw * (kw - 1) - 1) // sw + 1
    mg = m // group
    out = np.zeros((n, m, oh, ow), dtype=np.result_type(x.dtype, w.dtype))
    for g in range(group):
        xg = xp[:, g * cg:(g + 1) * cg]
        wg = w[g * mg:(g + 1) * mg]
        for i in range(kh):
            for j in range(kw):
                patch = xg[:, :, i * dh: i * dh + sh * (oh - 1) + 1: sh,
                           j * dw: j * dw + sw * (ow - 1) + 1: sw]
                out[:, g * mg:(g + 1) * mg] += np.einsum("nchw,mc->nmhw", patch, wg[:, :, i, j])
    return out


def maxpool2d(x, k=(2, 2), stride=(2, 2)):
    n, c, h, w = x.shape
    oh = (h - k[0]) // stride[0] + 1
    ow = (w - k[1]) // stride[1] + 1
    out = None
    for i in range(k[0]):
        for j in range(k[1]):
            p = x[:, :, i:i + stride[0] * (oh - 1) + 1:stride[0], j:j + stride[1] * (ow - 1) + 1:stride[1]]
            out = p.copy() if out is None else np.maximum(out, p)
    return out


# ---------------------------------------------------------------- .npy writing

def save_npy(path, arr):
    np.save(path, np.ascontiguousarray(arr), allow_pickle=False)
