// MaxPool, AvgPool, GlobalAvgPool.
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "simulator/kernels/common.h"
#include "simulator/kernels/opt_kernels.h"

namespace qeval {

using namespace kern;

namespace {

struct Window {
  std::vector<int64_t> k, st, pads, dil;
  bool include_pad = false;
  explicit Window(const Node& n)
      : k(n.attr_ints("kernel", {1, 1})),
        st(n.attr_ints("strides", {1, 1})),
        pads(n.attr_ints("pads", {0, 0, 0, 0})),
        dil(n.attr_ints("dilations", {1, 1})),
        include_pad(n.attr_int("count_include_pad", 0) != 0) {}
};

// Calls f(plane_offset, out_index, h0, h1, w0, w1, full_count) for every output
// position; [h0,h1) x [w0,w1) is the window clipped to the image (dilation 1),
// full_count the kernel area (for count_include_pad).
template <typename F>
void for_windows(const Tensor& X, const Tensor& Y, const Window& w, F&& f) {
  const int64_t N = X.dim(0), C = X.dim(1), H = X.dim(2), W = X.dim(3);
  const int64_t OH = Y.dim(2), OW = Y.dim(3);
  for (int64_t nc = 0; nc < N * C; ++nc)
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow) {
        const int64_t hs = oh * w.st[0] - w.pads[0], ws = ow * w.st[1] - w.pads[1];
        f(nc * H * W, (nc * OH + oh) * OW + ow, hs, ws);
      }
}

}  // namespace

Status lower_MaxPool(Node& n, const Graph& g, const ChipProfile& p) {
  if (!is_integer_node(n, g)) return Status::ok();
  const QView in = qview(g, n.inputs[0]), out = qview(g, n.outputs[0]);
  if (!same_quant(in, out)) {
    QEVAL_ASSIGN_OR_RETURN(n.params["lut"], rescale_lut(n, in, out, p));
  }
  return Status::ok();
}

namespace {

// The passes of the undilated MaxPool below, compiled at -O3 so that GCC
// vectorises them (at -O2 its cost model leaves these loops scalar; resnet18
// 224's MaxPool: 6% of the run scalar, measured). SSE2 is enough.
template <typename T>
__attribute__((optimize("O3"))) void max_into(T* v, const T* row, int64_t n) {
  for (int64_t c = 0; c < n; ++c) v[c] = v[c] < row[c] ? row[c] : v[c];
}

// Optimized integer MaxPool: the reference's window maximum, typed and over
// plane ranges in parallel (the reference reads each element through a dtype
// switch). The same values in the same windows, so equal on every element; a
// rescaling table (input and output quantized apart) maps the maximum the same
// way. Other dtypes or shapes than planned go to the reference.
std::optional<EvalFn> prepare_max_pool_opt(const KernelArgs& a, const Window& w, const EvalFn& reference) {
  if (!is_integer_node(a.node, a.graph)) return std::nullopt;
  const QView in = qview(a.graph, a.node.inputs[0]);
  const bool has_lut = a.node.params.count("lut") > 0;
  const Tensor lut = has_lut ? param(a.node, "lut") : Tensor();
  return EvalFn([=](const std::vector<const Tensor*>& ins, std::vector<Tensor*>& out) -> Status {
    const Tensor& X = *ins[0];
    Tensor& Y = *out[0];
    if (!opt::small_int(X.dtype()) || X.rank() != 4 || Y.rank() != 4 || (!has_lut && Y.dtype() != X.dtype())) {
      return reference(ins, out);
    }
    const int64_t planes = X.dim(0) * X.dim(1), H = X.dim(2), W = X.dim(3), OH = Y.dim(2), OW = Y.dim(3);
    dispatch_dtype(X.dtype(), [&](auto tx) {
      using T = decltype(tx);
      if constexpr (std::is_integral_v<T> && sizeof(T) <= 2) {
        const T* x = X.data<T>();
        const int64_t KH = w.k[0], KW = w.k[1];
        if (w.dil[0] == 1 && w.dil[1] == 1 && KW <= W && !has_lut) {
          // Undilated, no table: per output row the maximum over its clipped window
          // rows (vertical), then over each full KW-wide column window
          // (horizontal); both passes run over contiguous rows (vectorised).
          // Windows cut by the left/right padding are taken element by element.
          tbb::parallel_for(tbb::blocked_range<int64_t>(0, planes), [&](const tbb::blocked_range<int64_t>& r) {
            std::vector<T> vert(W), horiz(W);
            for (int64_t p = r.begin(); p < r.end(); ++p) {
              const T* xp = x + p * H * W;
              T* yp = Y.data<T>() + p * OH * OW;
              for (int64_t oh = 0; oh < OH; ++oh) {
                const int64_t h0 = std::max<int64_t>(0, oh * w.st[0] - w.pads[0]);
                const int64_t h1 = std::min<int64_t>(H, oh * w.st[0] - w.pads[0] + KH);
                if (h0 >= h1) {  // the window holds padding only: the reference's INT32_MIN
                  for (int64_t ow = 0; ow < OW; ++ow) yp[oh * OW + ow] = static_cast<T>(INT32_MIN);
                  continue;
                }
                T* v = vert.data();
                std::copy(xp + h0 * W, xp + h0 * W + W, v);
                for (int64_t h = h0 + 1; h < h1; ++h) max_into(v, xp + h * W, W);
                T* hz = horiz.data();
                const int64_t full = W - KW + 1;
                std::copy(v, v + full, hz);
                for (int64_t kw = 1; kw < KW; ++kw) max_into(hz, v + kw, full);
                for (int64_t ow = 0; ow < OW; ++ow) {
                  const int64_t ws = ow * w.st[1] - w.pads[1];
                  T out;
                  if (ws >= 0 && ws + KW <= W) {
                    out = hz[ws];
                  } else {
                    int32_t best = INT32_MIN;
                    for (int64_t c = std::max<int64_t>(0, ws); c < std::min<int64_t>(W, ws + KW); ++c) {
                      best = std::max<int32_t>(best, v[c]);
                    }
                    out = static_cast<T>(best);
                  }
                  yp[oh * OW + ow] = out;
                }
              }
            }
          });
          return;
        }
        tbb::parallel_for(tbb::blocked_range<int64_t>(0, planes), [&](const tbb::blocked_range<int64_t>& r) {
          for (int64_t p = r.begin(); p < r.end(); ++p) {
            const T* xp = x + p * H * W;
            for (int64_t oh = 0; oh < OH; ++oh) {
              const int64_t hs = oh * w.st[0] - w.pads[0];
              for (int64_t ow = 0; ow < OW; ++ow) {
                const int64_t ws = ow * w.st[1] - w.pads[1];
                int32_t best = INT32_MIN;
                for (int64_t kh = 0; kh < w.k[0]; ++kh) {
                  const int64_t h = hs + kh * w.dil[0];
                  if (h < 0 || h >= H) continue;
                  const T* row = xp + h * W;
                  for (int64_t kw = 0; kw < w.k[1]; ++kw) {
                    const int64_t c = ws + kw * w.dil[1];
                    if (c >= 0 && c < W) best = std::max<int32_t>(best, row[c]);
                  }
                }
                const int64_t oi = (p * OH + oh) * OW + ow;
                if (has_lut) store_i(Y, oi, load_i(lut, best - in.qmin));
                else Y.data<T>()[oi] = static_cast<T>(best);
              }
            }
          }
        });
      }
    });
    return Status::ok();
  });
}

}  // namespace

Result<EvalFn> prepare_MaxPool(const KernelArgs& a) {
  const Window w(a.node);
  const bool integer = is_integer_node(a.node, a.graph);
  const QView in = qview(a.graph, a.node.inputs[0]);
  const bool has_lut = a.node.params.count("lut") > 0;
  const Tensor lut = has_lut ? param(a.node, "lut") : Tensor();
  EvalFn ref([=](const std::vector<const Tensor*>& ins, std::vector<Tensor*>& out) -> Status {
    const Tensor& X = *ins[0];
    Tensor& Y = *out[0];
    const int64_t H = X.dim(2), W = X.dim(3);
    for_windows(X, Y, w, [&](int64_t plane, int64_t oi, int64_t hs, int64_t ws) {
      double best = -INFINITY;
      int32_t qbest = INT32_MIN;
      for (int64_t kh = 0; kh < w.k[0]; ++kh) {
        const int64_t h = hs + kh * w.dil[0];
        if (h < 0 || h >= H) continue;
        for (int64_t kw = 0; kw < w.k[1]; ++kw) {
          const int64_t x = ws + kw * w.dil[1];
          if (x < 0 || x >= W) continue;
          if (integer) qbest = std::max(qbest, load_i(X, plane + h * W + x));
          else best = std::max(best, static_cast<double>(load_f(X, plane + h * W + x)));
        }
      }
      if (!integer) store_f(Y, oi, static_cast<float>(best));
      else store_i(Y, oi, has_lut ? load_i(lut, qbest - in.qmin) : qbest);
    });
    return Status::ok();
  });
  return optimized_or(a, ref, [&](const EvalFn& r) { return prepare_max_pool_opt(a, w, r); });
}

// AvgPool.
//  float scheme (onnxruntime QLinearAveragePool, docs/onnx-qdq-semantics.md 6):
//    xf = x_scale * float(q - zx); sum in f32 in window order; sum /= float(count);
//    y = clamp(nearbyintf(sum / y_scale + float(zy)))
//    (a window covering the whole unpadded image uses the GlobalAvgPool formula).
//  integer schemes: y = requantize(sum(q - zx), s_x / (s_y * count)) + zy, one
//    multiplier per possible count (params m[count], rshift[count]).
Status lower_AvgPool(Node& n, const Graph& g, const ChipProfile& p) {
  if (!is_integer_node(n, g)) return Status::ok();
  const QView in = qview(g, n.inputs[0]), out = qview(g, n.outputs[0]);
  if (!in.quantized || !out.quantized) {
    return invalid_argument("{}: integer AvgPool needs quantized input and output", n.describe());
  }
  if (p.requant == RequantScheme::kFloat) return Status::ok();
  const Window w(n);
  const int64_t area = w.k[0] * w.k[1];
  std::vector<double> reals(area + 1, 0.0);
  std::vector<float> freals(area + 1, 0.0f);
  for (int64_t c = 1; c <= area; ++c) {
    reals[c] = static_cast<double>(in.s()) / (static_cast<double>(out.s()) * c);
  }
  return store_requant(n, reals, freals, p);
}

Result<EvalFn> prepare_AvgPool(const KernelArgs& a) {
  const Window w(a.node);
  const bool integer = is_integer_node(a.node, a.graph);
  const QView qi = qview(a.graph, a.node.inputs[0]), qo = qview(a.graph, a.node.outputs[0]);
  const bool float_scheme = a.profile.requant == RequantScheme::kFloat;
  Requant rq;
  if (integer && !float_scheme) {
    QEVAL_ASSIGN_OR_RETURN(rq, load_requant(a.node, a.profile));
  }
  for (int64_t d : w.dil) {
    if (d != 1) return unsupported("{}: dilated AvgPool", a.node.describe());
  }
  return EvalFn([=](const std::vector<const Tensor*>& ins, std::vector<Tensor*>& out) -> Status {
    const Tensor& X = *ins[0];
    Tensor& Y = *out[0];
    const int64_t H = X.dim(2), W = X.dim(3);
    const bool global = w.k[0] == H && w.k[1] == W && w.pads == std::vector<int64_t>{0, 0, 0, 0};
    const float gm = qi.s() / (qo.s() * static_cast<float>(H * W));
    for_windows(X, Y, w, [&](int64_t plane, int64_t oi, int64_t hs, int64_t ws) {
      const int64_t h0 = std::max<int64_t>(hs, 0), h1 = std::min(hs + w.k[0], H);
      const int64_t w0 = std::max<int64_t>(ws, 0), w1 = std::min(ws + w.k[1], W);
      const int64_t count = w.include_pad ? w.k[0] * w.k[1] : (h1 - h0) * (w1 - w0);
      if (!integer) {
        double s = 0;
        for (int64_t h = h0; h < h1; ++h)
          for (int64_t x = w0; x < w1; ++x) s += load_f(X, plane + h * W + x);
        store_f(Y, oi, static_cast<float>(s / static_cast<double>(count)));
        return;
      }
      if (float_scheme && !global) {
        float s = 0.0f;
        for (int64_t h = h0; h < h1; ++h)
          for (int64_t x = w0; x < w1; ++x)
            s = s + qi.s() * static_cast<float>(load_i(X, plane + h * W + x) - qi.z());
        s = s / static_cast<float>(count);
        const int32_t q = static_cast<int32_t>(std::nearbyint(s / qo.s() + static_cast<float>(qo.z())));
        store_i(Y, oi, static_cast<int32_t>(clamp_i64(q, qo.qmin, qo.qmax)));
        return;
      }
      int64_t s = 0;
      for (int64_t h = h0; h < h1; ++h)
        for (int64_t x = w0; x < w1; ++x) s += load_i(X, plane + h * W + x) - qi.z();
      if (float_scheme) {
        store_i(Y, oi, requantize_float(saturate_int32(s), gm, qo.z(), qo.qmin, qo.qmax));
      } else {
        store_i(Y, oi, rq.apply(saturate_int32(s), count, qo.z(), qo.qmin, qo.qmax));
      }
    });
    return Status::ok();
  });
}

// GlobalAvgPool.
//  float scheme (onnxruntime QLinearGlobalAveragePool): M = x_scale / (y_scale * float(HW)),
//    y = requantize_float(sum(q) - zx * HW, M, zy)
//  integer schemes: y = requantize(sum(q - zx), s_x / (s_y * HW)) + zy.
Status lower_GlobalAvgPool(Node& n, const Graph& g, const ChipProfile& p) {
  if (!is_integer_node(n, g)) return Status::ok();
  const QView in = qview(g, n.inputs[0]), out = qview(g, n.outputs[0]);
  const ValueInfo* vi = g.find_value(n.inputs[0]);
  if (!in.quantized || !out.quantized || !vi || vi->shape.size() < 3) {
    return invalid_argument("{}: integer GlobalAvgPool needs quantized input/output of known shape",
                            n.describe());
  }
  int64_t area = 1;
  for (size_t d = 2; d < vi->shape.size(); ++d) area *= vi->shape[d];
  return store_requant(n, {static_cast<double>(in.s()) / (static_cast<double>(out.s()) * area)},
                       {in.s() / (out.s() * static_cast<float>(area))}, p);
}

Result<EvalFn> prepare_GlobalAvgPool(const KernelArgs& a) {
  const bool integer = is_integer_node(a.node, a.graph);
  const QView qi = qview(a.graph, a.node.inputs[0]), qo = qview(a.graph, a.node.outputs[0]);
  Requant rq;
  if (integer) {
    QEVAL_ASSIGN_OR_RETURN(rq, load_requant(a.node, a.profile));
  }
  EvalFn ref([=](const std::vector<const Tensor*>& ins, std::vector<Tensor*>& out) -> Status {
    const Tensor& X = *ins[0];
    Tensor& Y = *out[0];
    const int64_t planes = X.dim(0) * X.dim(1), area = X.numel() / planes;
    for (int64_t p = 0; p < planes; ++p) {
      if (integer) {
        int64_t s = 0;
        for (int64_t i = 0; i < area; ++i) s += load_i(X, p * area + i) - qi.z();
        store_i(Y, p, rq.apply(saturate_int32(s), 0, qo.z(), qo.qmin, qo.qmax));
      } else {
        double s = 0;
        for (int64_t i = 0; i < area; ++i) s += load_f(X, p * area + i);
        store_f(Y, p, static_cast<float>(s / static_cast<double>(area)));
      }
    }
    return Status::ok();
  });
  return optimized_or(a, ref,
                      [&](const EvalFn& r) { return opt::prepare_global_avg_pool(a, rq, r); });
}

}  // namespace qeval
