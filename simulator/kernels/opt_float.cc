// Float nodes of hybrid programs (quant.float_layers, qeval diagnose's
// sensitivity runs): a Conv2d with float32 input, weights, bias and output,
// computed in the reference's exact order. Each output element starts at the
// bias and adds (double)x * (double)w over (ic, kh, kw) in that order,
// skipping padded taps, then rounds once to float; the product of two floats is
// exact in double, so vectorising across output columns (or contracting into
// an FMA) cannot change a bit. Parallel over (image, output channel) like the
// reference, so results never depend on the thread count.
#include <tbb/parallel_for.h>

#include <algorithm>
#include <vector>

#include "simulator/kernels/opt_kernels.h"

namespace qeval::kern::opt {

std::optional<EvalFn> prepare_conv2d_float(const KernelArgs& a, const EvalFn& reference) {
  const Node& n = a.node;
  const Tensor* Wc = a.graph.find_constant(n.inputs[1]);
  if (!Wc || Wc->rank() != 4 || Wc->dtype() != DType::kFloat32) return std::nullopt;
  const auto strides = n.attr_ints("strides", {1, 1});
  const auto pads = n.attr_ints("pads", {0, 0, 0, 0});
  const auto dil = n.attr_ints("dilations", {1, 1});
  const int64_t group = n.attr_int("group", 1);
  if (strides.size() != 2 || pads.size() != 4 || dil.size() != 2 || group < 1 || strides[0] < 1 ||
      strides[1] < 1 || dil[0] < 1 || dil[1] < 1) {
    return std::nullopt;
  }
  return EvalFn([=](const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) -> Status {
    const Tensor& X = *in[0];
    const Tensor& W = *in[1];
    const Tensor* B = in.size() > 2 ? in[2] : nullptr;
    Tensor& Y = *out[0];
    if (X.dtype() != DType::kFloat32 || W.dtype() != DType::kFloat32 || Y.dtype() != DType::kFloat32 ||
        (B && B->dtype() != DType::kFloat32) || X.rank() != 4 || W.rank() != 4 || Y.rank() != 4) {
      return reference(in, out);
    }
    const int64_t N = X.dim(0), C = X.dim(1), H = X.dim(2), Wd = X.dim(3);
    const int64_t M = W.dim(0), Cg = W.dim(1), KH = W.dim(2), KW = W.dim(3);
    const int64_t OH = Y.dim(2), OW = Y.dim(3);
    if (M % group != 0 || Y.dim(0) != N || Y.dim(1) != M) return reference(in, out);
    const int64_t Mg = M / group;
    const int64_t sh = strides[0], sw = strides[1], ph = pads[0], pw = pads[1], dh = dil[0], dw = dil[1];
    const float* x = X.data<float>();
    const float* w = W.data<float>();
    const float* b = B ? B->data<float>() : nullptr;
    float* y = Y.data<float>();
    // Per kw: the output columns whose input column is inside the image.
    std::vector<int64_t> lo(KW), hi(KW);
    for (int64_t kw = 0; kw < KW; ++kw) {
      const int64_t off = kw * dw - pw;  // iw = ow * sw + off
      int64_t l = 0;
      while (l < OW && l * sw + off < 0) ++l;
      int64_t h = OW;
      while (h > l && (h - 1) * sw + off >= Wd) --h;
      lo[kw] = l;
      hi[kw] = h;
    }
    tbb::parallel_for(int64_t{0}, N * M, [&](int64_t nm) {
      const int64_t nb = nm / M, m = nm % M, g0 = (m / Mg) * Cg;
      std::vector<double> acc(static_cast<size_t>(OW));
      const double bias = b ? static_cast<double>(b[m]) : 0.0;
      for (int64_t oh = 0; oh < OH; ++oh) {
        std::fill(acc.begin(), acc.end(), bias);
        for (int64_t ic = 0; ic < Cg; ++ic) {
          const float* xc = x + (nb * C + g0 + ic) * H * Wd;
          const float* wc = w + (m * Cg + ic) * KH * KW;
          for (int64_t kh = 0; kh < KH; ++kh) {
            const int64_t ih = oh * sh - ph + kh * dh;
            if (ih < 0 || ih >= H) continue;
            const float* xr = xc + ih * Wd;
            for (int64_t kw = 0; kw < KW; ++kw) {
              const double wv = wc[kh * KW + kw];
              const int64_t off = kw * dw - pw;
              double* ac = acc.data();
              if (sw == 1) {
                const float* xs = xr + off;
                for (int64_t ow = lo[kw]; ow < hi[kw]; ++ow) ac[ow] += static_cast<double>(xs[ow]) * wv;
              } else {
                for (int64_t ow = lo[kw]; ow < hi[kw]; ++ow) {
                  ac[ow] += static_cast<double>(xr[ow * sw + off]) * wv;
                }
              }
            }
          }
        }
        float* yr = y + ((nb * M + m) * OH + oh) * OW;
        for (int64_t ow = 0; ow < OW; ++ow) yr[ow] = static_cast<float>(acc[ow]);
      }
    });
    return Status::ok();
  });
}

}  // namespace qeval::kern::opt
